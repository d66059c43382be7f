//! The median pruner (Optuna's MedianPruner): after the warm-up epochs, and once enough
//! trials have finished, stop a trial whose best val_acc is below the median of the others at
//! the same epoch.

use super::{Curve, Pruner};

pub struct Median {
    pub warmup_epochs: usize,
    pub startup_trials: usize,
}

impl Pruner for Median {
    fn decide(&self, trial: &Curve, all: &[Curve]) -> Option<String> {
        median(self, trial, all, trial.val_acc.len())
    }
}

fn median(s: &Median, trial: &Curve, all: &[Curve], epoch: usize) -> Option<String> {
    if epoch <= s.warmup_epochs
        || all.iter().filter(|c| c.finished && c.number != trial.number).count() < s.startup_trials
    {
        return None;
    }
    let mut others: Vec<f64> =
        all.iter().filter(|c| c.number != trial.number).filter_map(|c| c.best_at(epoch)).collect();
    if others.is_empty() {
        return None;
    }
    others.sort_by(|a, b| a.total_cmp(b));
    let m = others.len();
    let med = if m % 2 == 1 { others[m / 2] } else { (others[m / 2 - 1] + others[m / 2]) / 2.0 };
    let value = trial.best_at(epoch)?;
    (value < med).then(|| format!("median (epoch {epoch}): val_acc {value:.4} below the median {med:.4} of {m} trials"))
}
