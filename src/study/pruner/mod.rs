//! Cross-trial pruners: after each epoch of a trial, decide from the epoch histories whether
//! to stop it. Epochs are the resource; a trial's value at an epoch is its best val_acc so far
//! (what early stopping would keep). Each pruner is one type behind [`Pruner`] with its own
//! settings, one file each.

mod asha;
mod first_epoch;
mod hyperband;
mod median;

pub use asha::Asha;
pub use first_epoch::FirstEpoch;
pub use hyperband::{Hyperband, hyperband_brackets};
pub use median::Median;

use super::settings::{PrunerKind, PrunerSettings};
use super::space::SearchSpace;

/// The val_acc curve of one trial.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub number: usize,
    pub val_acc: Vec<f64>,
    /// Finished (complete, pruned or stopped early): counts for the median pruner's start-up.
    pub finished: bool,
    /// Paused at a rung by a promoting scheduler (it may go on later).
    pub paused: bool,
    /// The epoch it started after: 0, or a PBT fork's epoch (its earlier epochs are its parent's).
    pub born: usize,
}

impl Curve {
    /// Best value up to and including `epoch` (1-based), if the trial got that far.
    pub fn best_at(&self, epoch: usize) -> Option<f64> {
        (epoch >= 1 && self.val_acc.len() >= epoch)
            .then(|| self.val_acc[..epoch].iter().copied().fold(f64::NEG_INFINITY, f64::max))
    }
}

pub trait Pruner: Send {
    /// `Some(reason)`: stop `trial` now, after its epoch `trial.val_acc.len()`, which is
    /// neither 0 nor the last one (see [`Pruning`]). `all` holds every trial's curve.
    fn decide(&self, trial: &Curve, all: &[Curve]) -> Option<String>;
}

/// Never stops a trial (`pruner = "none"`): each still stops itself early on val_acc.
pub struct NoPruner;

impl Pruner for NoPruner {
    fn decide(&self, _trial: &Curve, _all: &[Curve]) -> Option<String> {
        None
    }
}

/// The study's pruner, with the rule shared by all: no decision before the first epoch or
/// at the last one (a finished trial is not pruned).
pub struct Pruning {
    max_epochs: usize,
    pruner: Box<dyn Pruner>,
}

impl Pruning {
    pub fn new(kind: PrunerKind, s: &PrunerSettings, max_epochs: usize) -> Pruning {
        let pruner: Box<dyn Pruner> = match kind {
            PrunerKind::None => Box::new(NoPruner),
            PrunerKind::Median => Box::new(Median { warmup_epochs: s.warmup_epochs, startup_trials: s.startup_trials }),
            PrunerKind::Asha => Box::new(Asha { min_resource: s.min_resource, reduction_factor: s.reduction_factor }),
            PrunerKind::Hyperband => Box::new(Hyperband::new(s, max_epochs)),
            PrunerKind::FirstEpoch => Box::new(FirstEpoch { reduction_factor: s.reduction_factor }),
        };
        Pruning { max_epochs, pruner }
    }

    pub fn of(space: &SearchSpace) -> Pruning {
        let s = &space.study;
        Pruning::new(s.pruner, &s.pruning, s.training.epochs)
    }

    /// Decides for `trial` after its latest epoch; `Some(reason)` means stop it now.
    pub fn should_stop(&self, trial: &Curve, all: &[Curve]) -> Option<String> {
        let epoch = trial.val_acc.len();
        if epoch == 0 || epoch >= self.max_epochs {
            return None;
        }
        self.pruner.decide(trial, all)
    }
}

/// One decision with a freshly built pruner (tests, and callers without a study).
pub fn should_prune(
    kind: PrunerKind,
    s: &PrunerSettings,
    max_epochs: usize,
    trial: &Curve,
    all: &[Curve],
) -> Option<String> {
    Pruning::new(kind, s, max_epochs).should_stop(trial, all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(number: usize, v: &[f64]) -> Curve {
        Curve { number, val_acc: v.to_vec(), finished: true, paused: false, born: 0 }
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
        assert!(
            should_prune(PrunerKind::Asha, &s, 30, &alone, std::slice::from_ref(&alone)).is_none(),
            "the first trial is never pruned"
        );
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
        let s = PrunerSettings {
            min_resource: 4_611_686_018_427_387_904,
            reduction_factor: 4,
            warmup_epochs: 0,
            startup_trials: 0,
        };
        assert_eq!(hyperband_brackets(&s, 2), 1);
        let t = curve(7, &[0.5]);
        for kind in [PrunerKind::Asha, PrunerKind::Hyperband] {
            assert!(
                should_prune(kind, &s, 100, &t, &[t.clone(), curve(1, &[0.9])]).is_none(),
                "{kind:?}: epoch 1 is no rung"
            );
        }
        let wide =
            PrunerSettings { min_resource: 1, reduction_factor: usize::MAX, warmup_epochs: 0, startup_trials: 0 };
        assert_eq!(hyperband_brackets(&wide, usize::MAX), 1);
        assert!(
            should_prune(PrunerKind::Hyperband, &wide, usize::MAX, &curve(3, &[0.1, 0.1]), &[curve(1, &[0.9, 0.9])])
                .is_none()
        );
    }

    #[test]
    fn hyperband_brackets_compete_separately() {
        let s = PrunerSettings { min_resource: 1, reduction_factor: 3, warmup_epochs: 0, startup_trials: 0 };
        assert_eq!(hyperband_brackets(&s, 27), 3);
        // Trial 3 is in bracket 0 with trial 0; trial 1 (bracket 1) is far better but elsewhere.
        let all = vec![curve(0, &[0.5]), curve(1, &[0.99]), curve(3, &[0.6])];
        assert!(should_prune(PrunerKind::Hyperband, &s, 27, &all[2], &all).is_none());
        let worse = curve(3, &[0.4]);
        assert!(
            should_prune(PrunerKind::Hyperband, &s, 27, &worse, &[all[0].clone(), all[1].clone(), worse.clone()])
                .is_some()
        );
    }
}
