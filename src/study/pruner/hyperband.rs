//! Hyperband (Li et al. 2017) as Optuna runs it: ASHA in brackets with different minimum
//! resources; trial n competes only with the trials of its bracket (n mod brackets).

use super::asha::successive_halving;
use super::{Curve, Pruner};
use crate::study::settings::PrunerSettings;

pub struct Hyperband {
    min_resource: usize,
    reduction_factor: usize,
    brackets: usize,
}

impl Hyperband {
    pub fn new(s: &PrunerSettings, max_epochs: usize) -> Hyperband {
        Hyperband {
            min_resource: s.min_resource,
            reduction_factor: s.reduction_factor,
            brackets: hyperband_brackets(s, max_epochs),
        }
    }
}

impl Pruner for Hyperband {
    fn decide(&self, trial: &Curve, all: &[Curve]) -> Option<String> {
        let bracket = trial.number % self.brackets;
        let min_resource = self.min_resource.saturating_mul(self.reduction_factor.saturating_pow(bracket as u32));
        let peers = all.iter().filter(|c| c.number % self.brackets == bracket);
        successive_halving(
            min_resource,
            self.reduction_factor,
            trial,
            peers,
            trial.val_acc.len(),
            &format!("Hyperband bracket {bracket}"),
        )
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
