//! The one-epoch baseline (Egele et al. 2023, "one-epoch is all you need"): every trial trains
//! one epoch; it goes on to the end only if its first epoch is in the top ⌊n/η⌋ of the first
//! epochs seen so far, and is never judged again. Every replay table carries it as a baseline.

use super::asha::successive_halving;
use super::{Curve, Pruner};

pub struct FirstEpoch {
    pub reduction_factor: usize,
}

impl Pruner for FirstEpoch {
    fn decide(&self, trial: &Curve, all: &[Curve]) -> Option<String> {
        (trial.val_acc.len() == 1)
            .then(|| successive_halving(1, self.reduction_factor, trial, all.iter(), 1, "the one-epoch baseline"))
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(number: usize, val_acc: &[f64]) -> Curve {
        Curve { number, val_acc: val_acc.to_vec(), finished: false, paused: false, born: 0 }
    }

    #[test]
    fn judges_the_first_epoch_only() {
        let p = FirstEpoch { reduction_factor: 3 };
        let peers = [curve(0, &[0.9, 0.91]), curve(1, &[0.8]), curve(2, &[0.85])];
        // (trial, pruned?, why)
        let rows = [
            (curve(3, &[0.7]), true, "worst of four first epochs: outside the top ⌊4/3⌋ = 1"),
            (curve(3, &[0.95]), false, "best first epoch"),
            (curve(3, &[0.7, 0.71]), false, "past the first epoch nothing is judged"),
        ];
        for (trial, pruned, why) in rows {
            assert_eq!(p.decide(&trial, &peers).is_some(), pruned, "{why}");
        }
    }
}
