//! Per-epoch decisions on val_acc: early stopping and learning-rate reduction on plateau,
//! with Keras' semantics (an epoch improves when it beats the best strictly; `patience`
//! epochs without improvement trigger). Pure state machines, resumable from their fields.

use serde::{Deserialize, Serialize};

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
