//! `tune retrain --best --top K`: the study's last rung, at the retrain's fidelity.
//!
//! A study ranks trials on its own budget (a subset, a few epochs), which rewards networks
//! that fit fast; the retrain gives all the data and many more epochs. So the K best trials
//! each train their first seed at the retrain's budget, and the one with the best validation
//! accuracy there goes on to its other seeds and to the test split. The others are never
//! tested: the pick is made on validation alone, and the test split is still looked at once.
//! The record itself ([`TopRung`], `retrain/top.json`) lives with the other retrain files the
//! report reads.

pub use crate::report::retrains::{TopCandidate, TopRung};
use crate::study::TrialRecord;
use crate::training::Outcome;

/// One candidate: what the study measured, and what its first retrain seed did.
pub fn candidate(trial: &TrialRecord, outcome: &Outcome) -> TopCandidate {
    TopCandidate {
        trial: trial.number,
        study_val_acc: trial.best().map_or(0.0, |(v, _)| v),
        val_acc: outcome.best_val_acc,
        epoch: outcome.best_epoch,
        stopped_early: outcome.stopped_early,
    }
}

/// The best validation accuracy wins; a tie goes to the study's better-ranked trial (the
/// candidates come in the study's order).
pub fn decide(candidates: Vec<TopCandidate>) -> TopRung {
    let chosen = candidates
        .iter()
        .fold(None::<&TopCandidate>, |best, c| match best {
            Some(b) if b.val_acc >= c.val_acc => Some(b),
            _ => Some(c),
        })
        .expect("at least one candidate")
        .trial;
    TopRung { candidates, chosen }
}

/// A table of the candidates, the pick marked.
pub fn render(rung: &TopRung) -> String {
    let mut out = String::from("top trials at the retrain's fidelity (first seed; picked on val_acc, untested):\n");
    out.push_str("  trial  study val_acc  retrain val_acc (epoch)\n");
    for c in &rung.candidates {
        let mark = if c.trial == rung.chosen { "  ← picked" } else { "" };
        out.push_str(&format!(
            "  {:>5}  {:>13.4}  {:>15.4} ({:>2}){mark}\n",
            c.trial, c.study_val_acc, c.val_acc, c.epoch
        ));
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(trial: usize, study_val_acc: f64, val_acc: f64) -> TopCandidate {
        TopCandidate { trial, study_val_acc, val_acc, epoch: 30, stopped_early: true }
    }

    #[test]
    fn the_best_at_the_retrains_fidelity_is_picked_and_a_tie_goes_to_the_study_order() {
        let rung = decide(vec![c(41, 0.93, 0.947), c(18, 0.92, 0.951), c(1, 0.91, 0.949)]);
        assert_eq!(rung.chosen, 18, "the study's second is the best on the full data");
        let tie = decide(vec![c(41, 0.93, 0.95), c(18, 0.92, 0.95)]);
        assert_eq!(tie.chosen, 41);
        assert_eq!(decide(vec![c(7, 0.9, 0.5)]).chosen, 7);
        let table = render(&rung);
        assert!(table.lines().any(|l| l.contains("18") && l.contains("0.9510") && l.contains("picked")), "{table}");
        assert_eq!(table.matches("picked").count(), 2, "the header and one row: {table}");
    }
}
