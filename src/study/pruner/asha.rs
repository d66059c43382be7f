//! Asynchronous successive halving (ASHA, Li et al. 2018; Optuna's SuccessiveHalvingPruner):
//! rungs at `min_resource · η^k` epochs; at a rung a trial goes on only if its best val_acc so
//! far is in the top ⌊n/η⌋ of the trials that reached that rung.

use super::{Curve, Pruner};

pub struct Asha {
    pub min_resource: usize,
    pub reduction_factor: usize,
}

impl Pruner for Asha {
    fn decide(&self, trial: &Curve, all: &[Curve]) -> Option<String> {
        successive_halving(self.min_resource, self.reduction_factor, trial, all.iter(), trial.val_acc.len(), "ASHA")
    }
}

pub(super) fn successive_halving<'a>(
    min_resource: usize,
    eta: usize,
    trial: &Curve,
    peers: impl Iterator<Item = &'a Curve>,
    epoch: usize,
    name: &str,
) -> Option<String> {
    // Rungs at min_resource · eta^k epochs; decide only when this epoch is a rung.
    let mut rung_epoch = min_resource.max(1);
    let mut rung = 0;
    while rung_epoch < epoch {
        rung_epoch = rung_epoch.saturating_mul(eta.max(2));
        rung += 1;
    }
    if rung_epoch != epoch {
        return None;
    }
    let value = trial.best_at(epoch)?;
    let mut competing: Vec<f64> = peers.filter(|c| c.number != trial.number).filter_map(|c| c.best_at(epoch)).collect();
    competing.push(value);
    competing.sort_by(|a, b| b.total_cmp(a));
    // Optuna's rule: promotable when within the top ⌊n/η⌋ (at least the best one).
    let keep = (competing.len() / eta).max(1);
    let cutoff = competing[keep - 1];
    (value < cutoff).then(|| {
        format!(
            "{name} rung {rung} (epoch {epoch}): val_acc {value:.4} not in the top {keep} of {} (cut-off {cutoff:.4})",
            competing.len()
        )
    })
}
