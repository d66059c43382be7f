//! Promotion ASHA (Li et al. 2020, "A System for Massively Parallel Hyperparameter Tuning")
//! and Hyperband on top of it. Rungs sit at `min_resource · η^k` epochs. A trial reaching a
//! rung pauses there; when a slot frees, the best paused trial of the highest rung goes on if
//! it is in the top ⌊n/η⌋ of the n trials that reached that rung so far. A slow starter is
//! therefore judged against more and more peers instead of the first few, and a trial it
//! loses to early can be overtaken later, where a stopping rung would have ended it at once.
//! A trial that would be promoted at once is not paused at all (no process restart).

use super::{Scheduler, Verdict};
use crate::study::pruner::{Curve, hyperband_brackets};
use crate::study::settings::PrunerSettings;

pub struct Promotion {
    min_resource: usize,
    eta: usize,
    max_epochs: usize,
    /// Hyperband's brackets (trial n is in bracket n mod brackets); 1 for ASHA.
    brackets: usize,
    name: &'static str,
}

/// A paused trial at its rung: what promotion ranks.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    number: usize,
    epoch: usize,
    value: f64,
}

impl Promotion {
    pub fn asha(s: &PrunerSettings, max_epochs: usize) -> Promotion {
        Promotion {
            min_resource: s.min_resource.max(1),
            eta: s.reduction_factor.max(2),
            max_epochs,
            brackets: 1,
            name: "ASHA",
        }
    }

    pub fn hyperband(s: &PrunerSettings, max_epochs: usize) -> Promotion {
        Promotion { brackets: hyperband_brackets(s, max_epochs), name: "Hyperband", ..Promotion::asha(s, max_epochs) }
    }

    /// The rung epochs of trial `number`'s bracket, below the last epoch (which is no rung).
    fn rungs(&self, number: usize) -> Vec<usize> {
        let bracket = (number % self.brackets) as u32;
        let mut epoch = self.min_resource.saturating_mul(self.eta.saturating_pow(bracket));
        let mut rungs = Vec::new();
        while epoch < self.max_epochs {
            rungs.push(epoch);
            epoch = epoch.saturating_mul(self.eta);
        }
        rungs
    }

    /// `trial` as a candidate at the highest rung it reached, ranked among its bracket's peers.
    fn candidate(&self, trial: &Curve, all: &[Curve]) -> Option<Candidate> {
        let rungs = self.rungs(trial.number);
        let rung = rungs.iter().rposition(|r| *r <= trial.val_acc.len())?;
        let epoch = rungs[rung];
        let value = trial.best_at(epoch)?;
        let bracket = trial.number % self.brackets;
        let mut values: Vec<f64> = all
            .iter()
            .filter(|c| c.number % self.brackets == bracket && c.number != trial.number)
            .filter_map(|c| c.best_at(epoch))
            .chain([value])
            .collect();
        values.sort_by(|a, b| b.total_cmp(a));
        let keep = values.len() / self.eta;
        let promotable = keep > 0 && value >= values[keep - 1];
        promotable.then_some(Candidate { number: trial.number, epoch, value })
    }

    /// The promotion a free slot makes among `paused` (the highest rung first, then the best
    /// value, then the lowest number).
    fn best_promotion<'a>(&self, paused: impl Iterator<Item = &'a Curve>, all: &[Curve]) -> Option<Candidate> {
        paused.filter_map(|c| self.candidate(c, all)).max_by(|a, b| {
            (a.epoch, a.value).partial_cmp(&(b.epoch, b.value)).expect("finite").then(b.number.cmp(&a.number))
        })
    }

    fn bracket_name(&self, number: usize) -> String {
        match self.brackets {
            1 => self.name.to_string(),
            n => format!("{} bracket {}", self.name, number % n),
        }
    }
}

impl Scheduler for Promotion {
    fn on_epoch(&self, trial: &Curve, all: &[Curve]) -> Verdict {
        let epoch = trial.val_acc.len();
        let rungs = self.rungs(trial.number);
        let Some(rung) = rungs.iter().position(|r| *r == epoch) else { return Verdict::Continue };
        // Paused here, would the slot it frees take it straight back?
        let paused = all.iter().filter(|c| c.paused && c.number != trial.number).chain([trial]);
        if self.best_promotion(paused, all).is_some_and(|c| c.number == trial.number) {
            return Verdict::Continue;
        }
        let value = trial.best_at(epoch).unwrap_or(f64::NAN);
        let peers = all.iter().filter(|c| c.number % self.brackets == trial.number % self.brackets);
        let reached = peers.filter(|c| c.number != trial.number && c.best_at(epoch).is_some()).count() + 1;
        Verdict::Pause(format!(
            "{} rung {rung} (epoch {epoch}): val_acc {value:.4} waits for promotion (top ⌊n/{}⌋ of the n = {reached} trials at this rung so far{})",
            self.bracket_name(trial.number),
            self.eta,
            if reached < self.eta { ", too few yet" } else { "" }
        ))
    }

    fn promote(&self, all: &[Curve]) -> Option<usize> {
        self.best_promotion(all.iter().filter(|c| c.paused), all).map(|c| c.number)
    }

    fn close_reason(&self, trial: &Curve, all: &[Curve]) -> String {
        let rungs = self.rungs(trial.number);
        let Some(rung) = rungs.iter().rposition(|r| *r <= trial.val_acc.len()) else {
            return format!("paused after epoch {} and never promoted", trial.val_acc.len());
        };
        let epoch = rungs[rung];
        let peers = all.iter().filter(|c| c.number % self.brackets == trial.number % self.brackets);
        let reached = peers.filter(|c| c.best_at(epoch).is_some()).count();
        format!(
            "{} rung {rung} (epoch {epoch}): val_acc {:.4} never reached the top ⌊{reached}/{}⌋ = {} of its rung; closed when the budget was spent",
            self.bracket_name(trial.number),
            trial.best_at(epoch).unwrap_or(f64::NAN),
            self.eta,
            reached / self.eta,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> PrunerSettings {
        PrunerSettings { min_resource: 1, reduction_factor: 3, warmup_epochs: 0, startup_trials: 0 }
    }

    fn running(number: usize, v: &[f64]) -> Curve {
        Curve { number, val_acc: v.to_vec(), finished: false, paused: false, born: 0 }
    }

    fn paused(number: usize, v: &[f64]) -> Curve {
        Curve { paused: true, ..running(number, v) }
    }

    fn done(number: usize, v: &[f64]) -> Curve {
        Curve { finished: true, ..running(number, v) }
    }

    #[test]
    fn rung_decisions_pause_or_continue() {
        // Rungs at epochs 1, 3 (and 9, beyond max_epochs 9: the last epoch is no rung).
        let asha = Promotion::asha(&settings(), 9);
        assert_eq!(asha.rungs(0), vec![1, 3]);
        // (trial, others, pause?, why)
        let cases: Vec<(Curve, Vec<Curve>, bool, &str)> = vec![
            (running(0, &[0.5]), vec![], true, "alone at rung 0: ⌊1/3⌋ = 0 may go on, so it waits"),
            (running(3, &[0.9]), vec![paused(0, &[0.5]), paused(1, &[0.6])], false, "best of 3 at rung 0: goes on"),
            (running(3, &[0.4]), vec![paused(0, &[0.5]), paused(1, &[0.6])], true, "worst of 3: waits"),
            (running(3, &[0.9, 0.91]), vec![], false, "epoch 2 is no rung"),
            (running(3, &[0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]), vec![], false, "the last epoch is no rung"),
            (
                running(3, &[0.9]),
                vec![
                    paused(0, &[0.5, 0.6, 0.95]),
                    done(1, &[0.4, 0.5, 0.6]),
                    done(2, &[0.3, 0.5, 0.7]),
                    paused(4, &[0.1]),
                ],
                true,
                "promotable, but a paused trial of a higher rung (0 at rung 1) is promotable too and goes first",
            ),
        ];
        for (trial, mut others, pause, why) in cases {
            others.push(trial.clone());
            let v = asha.on_epoch(&trial, &others);
            assert_eq!(matches!(v, Verdict::Pause(_)), pause, "{why}: {v:?}");
            assert!(!matches!(v, Verdict::Stop(_)), "promotion never stops a trial: {why}");
        }
    }

    #[test]
    fn promotion_picks_the_highest_rung_then_the_best_and_only_the_top_third() {
        let asha = Promotion::asha(&settings(), 9);
        let cases: Vec<(Vec<Curve>, Option<usize>, &str)> = vec![
            (vec![paused(0, &[0.5]), paused(1, &[0.6])], None, "2 at rung 0: ⌊2/3⌋ = 0 promoted"),
            (vec![paused(0, &[0.5]), paused(1, &[0.6]), paused(2, &[0.7])], Some(2), "3 at rung 0: the best"),
            (
                vec![paused(0, &[0.5]), paused(1, &[0.6]), running(2, &[0.7, 0.7])],
                None,
                "the top one already went on: the rest wait",
            ),
            (
                vec![
                    paused(0, &[0.5]),
                    paused(1, &[0.6]),
                    running(2, &[0.7, 0.7]),
                    done(5, &[0.2]),
                    done(6, &[0.3]),
                    done(7, &[0.55]),
                ],
                Some(1),
                "6 at rung 0 keep 2: 0.7 went on, 0.6 is next",
            ),
            (
                vec![
                    paused(0, &[0.5, 0.6, 0.9]),
                    done(1, &[0.9, 0.9, 0.8]),
                    done(2, &[0.5, 0.5, 0.5]),
                    paused(3, &[0.99]),
                ],
                Some(0),
                "rung 1 (epoch 3) before rung 0; the value there is the best so far",
            ),
            (vec![paused(0, &[0.1]), paused(1, &[0.1]), paused(2, &[0.1])], Some(0), "ties: the lowest number"),
        ];
        for (all, want, why) in cases {
            assert_eq!(asha.promote(&all), want, "{why}");
        }
    }

    #[test]
    fn hyperband_promotes_within_each_bracket() {
        // 27 epochs, η 3: brackets 0..3 with first rungs at epochs 1, 3 and 9.
        let hb = Promotion::hyperband(&settings(), 27);
        assert_eq!((hb.rungs(0), hb.rungs(1), hb.rungs(2)), (vec![1, 3, 9], vec![3, 9], vec![9]));
        // Bracket 0 holds 0, 3, 6: three at rung 0; bracket 1's trial 1 is far better but elsewhere.
        let all = vec![paused(0, &[0.5]), running(1, &[0.99]), paused(3, &[0.6]), paused(6, &[0.4])];
        assert_eq!(hb.promote(&all), Some(3));
        assert!(matches!(hb.on_epoch(&all[1], &all), Verdict::Continue), "epoch 1 is no rung of bracket 1");
    }

    #[test]
    fn closing_names_the_rung() {
        let asha = Promotion::asha(&settings(), 9);
        let all = vec![paused(0, &[0.5]), done(1, &[0.6, 0.6, 0.6]), done(2, &[0.7, 0.7, 0.7])];
        let why = asha.close_reason(&all[0], &all);
        assert!(why.contains("rung 0 (epoch 1)") && why.contains("0.5000"), "{why}");
    }
}
