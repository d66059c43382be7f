//! Cross-trial pruners, pure functions of the epoch histories: after each epoch of a trial,
//! decide whether to stop it. Epochs are the resource; a trial's value at an epoch is its best
//! val_acc so far (what early stopping would keep).

use super::space::{PrunerKind, PrunerSettings};

/// The val_acc curve of one trial.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub number: usize,
    pub val_acc: Vec<f64>,
    /// Finished (complete, pruned or stopped early): counts for the median pruner's start-up.
    pub finished: bool,
}

impl Curve {
    /// Best value up to and including `epoch` (1-based), if the trial got that far.
    pub fn best_at(&self, epoch: usize) -> Option<f64> {
        (epoch >= 1 && self.val_acc.len() >= epoch).then(|| self.val_acc[..epoch].iter().copied().fold(f64::NEG_INFINITY, f64::max))
    }
}

/// Decides for `trial` after its latest epoch; `Some(reason)` means stop it now.
pub fn should_prune(kind: PrunerKind, s: &PrunerSettings, max_epochs: usize, trial: &Curve, all: &[Curve]) -> Option<String> {
    let epoch = trial.val_acc.len();
    if epoch == 0 || epoch >= max_epochs {
        return None;
    }
    match kind {
        PrunerKind::None => None,
        PrunerKind::Median => median(s, trial, all, epoch),
        PrunerKind::Asha => successive_halving(s.min_resource, s.reduction_factor, trial, all.iter(), epoch, "ASHA"),
        PrunerKind::Hyperband => {
            let brackets = hyperband_brackets(s, max_epochs);
            let bracket = trial.number % brackets;
            let min_resource = s.min_resource.saturating_mul(s.reduction_factor.saturating_pow(bracket as u32));
            let peers = all.iter().filter(|c| c.number % brackets == bracket);
            successive_halving(min_resource, s.reduction_factor, trial, peers, epoch, &format!("Hyperband bracket {bracket}"))
        }
    }
}

/// Number of Hyperband brackets: one per rung level that fits in `max_epochs`. Saturating
/// arithmetic bounds the loop (at most log2(max_epochs) + 1 rounds) whatever the settings.
pub fn hyperband_brackets(s: &PrunerSettings, max_epochs: usize) -> usize {
    let eta = s.reduction_factor.max(2);
    let mut n = 1;
    let mut rung = s.min_resource.max(1).saturating_mul(eta);
    while rung < max_epochs {
        n += 1;
        rung = rung.saturating_mul(eta);
    }
    n
}

fn successive_halving<'a>(min_resource: usize, eta: usize, trial: &Curve, peers: impl Iterator<Item = &'a Curve>, epoch: usize, name: &str) -> Option<String> {
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
        format!("{name} rung {rung} (epoch {epoch}): val_acc {value:.4} not in the top {keep} of {} (cut-off {cutoff:.4})", competing.len())
    })
}

fn median(s: &PrunerSettings, trial: &Curve, all: &[Curve], epoch: usize) -> Option<String> {
    if epoch <= s.warmup_epochs || all.iter().filter(|c| c.finished && c.number != trial.number).count() < s.startup_trials {
        return None;
    }
    let mut others: Vec<f64> = all.iter().filter(|c| c.number != trial.number).filter_map(|c| c.best_at(epoch)).collect();
    if others.is_empty() {
        return None;
    }
    others.sort_by(|a, b| a.total_cmp(b));
    let m = others.len();
    let med = if m % 2 == 1 { others[m / 2] } else { (others[m / 2 - 1] + others[m / 2]) / 2.0 };
    let value = trial.best_at(epoch)?;
    (value < med).then(|| format!("median (epoch {epoch}): val_acc {value:.4} below the median {med:.4} of {m} trials"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(number: usize, v: &[f64]) -> Curve {
        Curve { number, val_acc: v.to_vec(), finished: true }
    }

    #[test]
    fn asha_rung_decisions() {
        let s = PrunerSettings { min_resource: 1, reduction_factor: 3, warmup_epochs: 0, startup_trials: 0 };
        let others = vec![curve(0, &[0.80, 0.85, 0.88]), curve(1, &[0.70, 0.75, 0.80]), curve(2, &[0.60, 0.62, 0.65])];
        // (trial curve, prune?, why)
        let cases: Vec<(Vec<f64>, bool, &str)> = vec![
            (vec![0.85], false, "best at rung 0 (epoch 1) is promoted"),
            (vec![0.79], true, "4 competitors at rung 0 keep the top 1: 0.80 beats 0.79"),
            (vec![0.85, 0.86], false, "epoch 2 is not a rung: no decision"),
            (vec![0.85, 0.86, 0.87], true, "rung 1 (epoch 3): 0.88 is the only one kept"),
            (vec![0.85, 0.86, 0.90], false, "rung 1: the best value is kept"),
            (vec![0.95, 0.10, 0.10], false, "the value at a rung is the best so far"),
        ];
        for (v, prune, why) in cases {
            let t = curve(9, &v);
            let mut all = others.clone();
            all.push(t.clone());
            let got = should_prune(PrunerKind::Asha, &s, 30, &t, &all);
            assert_eq!(got.is_some(), prune, "{why}: {got:?}");
        }
        let alone = curve(0, &[0.1]);
        assert!(should_prune(PrunerKind::Asha, &s, 30, &alone, std::slice::from_ref(&alone)).is_none(), "the first trial is never pruned");
        let last = curve(9, &[0.1, 0.1, 0.1]);
        assert!(should_prune(PrunerKind::Asha, &s, 3, &last, &others).is_none(), "no pruning at the last epoch");
    }

    #[test]
    fn median_decisions() {
        let s = PrunerSettings { min_resource: 1, reduction_factor: 3, warmup_epochs: 1, startup_trials: 2 };
        let others = vec![curve(0, &[0.5, 0.6, 0.7]), curve(1, &[0.5, 0.8, 0.9])];
        let cases: Vec<(Vec<f64>, bool, &str)> = vec![
            (vec![0.1], false, "warm-up epoch"),
            (vec![0.5, 0.69], true, "below the median 0.70 of epoch 2"),
            (vec![0.5, 0.71], false, "above the median"),
        ];
        for (v, prune, why) in cases {
            let t = curve(5, &v);
            assert_eq!(should_prune(PrunerKind::Median, &s, 30, &t, &others).is_some(), prune, "{why}");
        }
        let few = vec![curve(0, &[0.9, 0.9])];
        assert!(should_prune(PrunerKind::Median, &s, 30, &curve(5, &[0.1, 0.1]), &few).is_none(), "start-up trials");
    }

    #[test]
    fn huge_settings_end_quickly_without_overflow() {
        // The settings that once spun forever after epoch 1 (pow overflowed and wrapped).
        let s = PrunerSettings { min_resource: 4_611_686_018_427_387_904, reduction_factor: 4, warmup_epochs: 0, startup_trials: 0 };
        assert_eq!(hyperband_brackets(&s, 2), 1);
        let t = curve(7, &[0.5]);
        for kind in [PrunerKind::Asha, PrunerKind::Hyperband] {
            assert!(should_prune(kind, &s, 100, &t, &[t.clone(), curve(1, &[0.9])]).is_none(), "{kind:?}: epoch 1 is no rung");
        }
        let wide = PrunerSettings { min_resource: 1, reduction_factor: usize::MAX, warmup_epochs: 0, startup_trials: 0 };
        assert_eq!(hyperband_brackets(&wide, usize::MAX), 1);
        assert!(should_prune(PrunerKind::Hyperband, &wide, usize::MAX, &curve(3, &[0.1, 0.1]), &[curve(1, &[0.9, 0.9])]).is_none());
    }

    #[test]
    fn hyperband_brackets_compete_separately() {
        let s = PrunerSettings { min_resource: 1, reduction_factor: 3, warmup_epochs: 0, startup_trials: 0 };
        assert_eq!(hyperband_brackets(&s, 27), 3);
        // Trial 3 is in bracket 0 with trial 0; trial 1 (bracket 1) is far better but elsewhere.
        let all = vec![curve(0, &[0.5]), curve(1, &[0.99]), curve(3, &[0.6])];
        assert!(should_prune(PrunerKind::Hyperband, &s, 27, &all[2], &all).is_none());
        let worse = curve(3, &[0.4]);
        assert!(should_prune(PrunerKind::Hyperband, &s, 27, &worse, &[all[0].clone(), all[1].clone(), worse.clone()]).is_some());
    }
}
