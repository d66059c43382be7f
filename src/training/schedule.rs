//! Learning-rate and stopping rules. Per-epoch decisions on val_acc — early stopping and
//! reduction on plateau — with Keras' semantics (an epoch improves when it beats the best
//! strictly; `patience` epochs without improvement trigger), as pure state machines resumable
//! from their fields; and the step-wise schedules (cosine, one-cycle), pure functions of the
//! step, so a resumed run follows the same rates as an uninterrupted one.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

use super::config::LrSchedule;

/// One-cycle's shape, PyTorch's OneCycleLR defaults: the peak at 30% of the steps, a start
/// at peak/25 and an end at start/10,000.
const ONE_CYCLE_RISE: f64 = 0.3;
const ONE_CYCLE_DIV: f64 = 25.0;
const ONE_CYCLE_FINAL_DIV: f64 = 1e4;

/// A learning rate set per step from the step's place in the run (cosine, one-cycle).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepSchedule {
    pub kind: LrSchedule,
    /// The peak rate (the configured `lr`).
    pub lr: f64,
    /// Where cosine ends.
    pub min_lr: f64,
    /// Steps in the whole run (epochs × batches).
    pub total: usize,
    /// Steps of cosine's linear warm-up.
    pub warmup: usize,
}

impl StepSchedule {
    /// The rate of step `step` (0-based); `None` for the plateau rule, which is not step-wise.
    pub fn lr_at(&self, step: usize) -> Option<f64> {
        let last = self.total.saturating_sub(1).max(1) as f64;
        // From `from` at pct 0 to `to` at pct 1 along half a cosine.
        let anneal = |from: f64, to: f64, pct: f64| to + (from - to) * 0.5 * (1.0 + (PI * pct.clamp(0.0, 1.0)).cos());
        match self.kind {
            LrSchedule::Plateau => None,
            LrSchedule::Cosine if step < self.warmup => Some(self.lr * (step + 1) as f64 / self.warmup as f64),
            LrSchedule::Cosine => {
                let span = self.total.saturating_sub(self.warmup + 1).max(1) as f64;
                Some(anneal(self.lr, self.min_lr.min(self.lr), (step - self.warmup) as f64 / span))
            }
            LrSchedule::OneCycle => {
                let start = self.lr / ONE_CYCLE_DIV;
                let peak_step = (ONE_CYCLE_RISE * self.total as f64 - 1.0).max(1.0);
                let step = step as f64;
                Some(if step <= peak_step {
                    anneal(start, self.lr, step / peak_step)
                } else {
                    anneal(self.lr, start / ONE_CYCLE_FINAL_DIV, (step - peak_step) / (last - peak_step).max(1.0))
                })
            }
        }
    }
}

/// Stops training after `patience` epochs without a new best val_acc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    pub patience: usize,
    pub best: f64,
    pub best_epoch: usize,
    pub wait: usize,
}

impl EarlyStopping {
    pub fn new(patience: usize) -> Self {
        EarlyStopping { patience, best: f64::NEG_INFINITY, best_epoch: 0, wait: 0 }
    }

    /// Records epoch `epoch`'s value; returns (improved, should_stop).
    pub fn update(&mut self, epoch: usize, value: f64) -> (bool, bool) {
        if value > self.best {
            self.best = value;
            self.best_epoch = epoch;
            self.wait = 0;
            (true, false)
        } else {
            self.wait += 1;
            (false, self.wait >= self.patience)
        }
    }
}

/// Multiplies the learning rate by `factor` after `patience` epochs without improvement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plateau {
    pub patience: usize,
    pub factor: f64,
    pub min_lr: f64,
    pub best: f64,
    pub wait: usize,
}

impl Plateau {
    pub fn new(patience: usize, factor: f64, min_lr: f64) -> Self {
        Plateau { patience, factor, min_lr, best: f64::NEG_INFINITY, wait: 0 }
    }

    /// Records a value; returns the learning rate for the next epoch.
    pub fn update(&mut self, value: f64, lr: f64) -> f64 {
        if value > self.best {
            self.best = value;
            self.wait = 0;
            return lr;
        }
        self.wait += 1;
        if self.wait >= self.patience && lr > self.min_lr {
            self.wait = 0;
            return (lr * self.factor).max(self.min_lr);
        }
        lr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_stopping_table() {
        // (values, patience, epoch it stops at (1-based) or None, best epoch, why)
        type Case<'a> = (&'a [f64], usize, Option<usize>, usize, &'a str);
        let cases: &[Case] = &[
            (&[0.5, 0.6, 0.7], 2, None, 3, "always improving never stops"),
            (&[0.5, 0.6, 0.6, 0.6], 2, Some(4), 2, "equal is not an improvement"),
            (&[0.5, 0.4, 0.6, 0.5, 0.5], 2, Some(5), 3, "improvement resets the wait"),
            (&[0.9, 0.1], 1, Some(2), 1, "patience 1 stops at the first miss"),
            (&[0.9, 0.8, 0.8, 0.8, 0.95], 10, None, 5, "long patience waits"),
        ];
        for (values, patience, stop_at, best_epoch, why) in cases {
            let mut es = EarlyStopping::new(*patience);
            let mut stopped = None;
            for (i, v) in values.iter().enumerate() {
                if es.update(i + 1, *v).1 {
                    stopped = Some(i + 1);
                    break;
                }
            }
            assert_eq!(stopped, *stop_at, "{why}");
            assert_eq!(es.best_epoch, *best_epoch, "{why}");
        }
    }

    #[test]
    fn step_schedules_follow_their_shapes() {
        let at = |kind, warmup, step| {
            StepSchedule { kind, lr: 1e-2, min_lr: 1e-6, total: 1000, warmup }.lr_at(step).unwrap()
        };
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 + 1e-6 * b.abs();
        // Cosine: a linear warm-up to the peak, the peak right after it, half way at the middle
        // of the decay, min_lr at the last step.
        assert!(close(at(LrSchedule::Cosine, 100, 0), 1e-4) && close(at(LrSchedule::Cosine, 100, 99), 1e-2));
        assert!(close(at(LrSchedule::Cosine, 100, 100), 1e-2));
        assert!(close(at(LrSchedule::Cosine, 0, 0), 1e-2), "no warm-up starts at the peak");
        let mid = at(LrSchedule::Cosine, 0, 999 / 2);
        assert!((mid - (1e-2 + 1e-6) / 2.0).abs() < 1e-4, "{mid}");
        assert!(close(at(LrSchedule::Cosine, 100, 999), 1e-6));
        // One-cycle: lr/25 at the start, the peak at 30%, lr/250,000 at the end.
        assert!(close(at(LrSchedule::OneCycle, 0, 0), 4e-4));
        assert!(close(at(LrSchedule::OneCycle, 0, 299), 1e-2));
        assert!(close(at(LrSchedule::OneCycle, 0, 999), 4e-8));
        // Both are monotone on each side of their peak.
        for (kind, peak) in [(LrSchedule::Cosine, 100), (LrSchedule::OneCycle, 299)] {
            let rates: Vec<f64> = (0..1000).map(|s| at(kind, 100, s)).collect();
            assert!(rates[..=peak].windows(2).all(|w| w[1] >= w[0]), "{kind:?} rises");
            assert!(rates[peak..].windows(2).all(|w| w[1] <= w[0]), "{kind:?} falls");
        }
        assert_eq!(
            StepSchedule { kind: LrSchedule::Plateau, lr: 1e-3, min_lr: 0.0, total: 9, warmup: 0 }.lr_at(3),
            None
        );
    }

    #[test]
    fn plateau_table() {
        // (values, patience, learning rates after each epoch, why)
        let cases: &[(&[f64], usize, &[f64], &str)] = &[
            (&[0.5, 0.6], 1, &[1e-3, 1e-3], "improving keeps the rate"),
            (&[0.5, 0.5, 0.5], 2, &[1e-3, 1e-3, 1e-4], "reduced after patience misses"),
            (&[0.5, 0.4, 0.4, 0.4, 0.4], 2, &[1e-3, 1e-3, 1e-4, 1e-4, 1e-5], "wait restarts after a cut"),
            (&[0.5, 0.4, 0.4, 0.4], 1, &[1e-3, 1e-4, 1e-5, 1e-5], "floored at min_lr"),
        ];
        for (values, patience, expected, why) in cases {
            let mut p = Plateau::new(*patience, 0.1, 1e-5);
            let mut lr = 1e-3;
            let got: Vec<f64> = values
                .iter()
                .map(|v| {
                    lr = p.update(*v, lr);
                    lr
                })
                .collect();
            for (g, e) in got.iter().zip(expected.iter()) {
                assert!((g - e).abs() < 1e-12, "{why}: {got:?} vs {expected:?}");
            }
        }
    }
}
