//! Population-based training (Jaderberg et al. 2017), asynchronous, as Ray Tune's
//! `PopulationBasedTraining` with its defaults. The population is the study's trial budget.
//! Every `interval` epochs a trial pauses with a snapshot of its checkpoint. Once the budget's
//! configurations are all sampled, a free slot takes the paused trial with the fewest epochs:
//! in the bottom quantile of the trials that reached that epoch, it ends and is replaced by a
//! fork of a top-quantile trial's snapshot at that epoch, whose training keys are perturbed
//! (×0.8 or ×1.2, or drawn afresh with `resample_probability`); otherwise it goes on.
//! Pausing (not copying a running trial's files) is what makes every fork start from a
//! checkpoint that exists and is whole (Ray Tune's PBT has exploited trials that never
//! checkpointed, ray#27170).

use rand::Rng;
use rand::rngs::StdRng;

use super::{Scheduler, Slot, Verdict};
use crate::model::params::{Params, Value};
use crate::study::pruner::Curve;
use crate::study::settings::PbtSettings;
use crate::study::space::{Distribution, SearchSpace};
use crate::study::trial::Change;

/// The keys PBT may change as a trial trains: they change no weight's shape and no part of
/// the optimiser's state (so not `optimizer`), nor a schedule planned over the whole run.
pub const MUTABLE_KEYS: [&str; 8] =
    ["lr", "weight_decay", "drop_rate", "aug_shift", "aug_flip", "aug_erase", "aug_erase_area", "label_smoothing"];

pub struct Pbt {
    interval: usize,
    quantile: f64,
    max_epochs: usize,
}

impl Pbt {
    pub fn new(s: &PbtSettings, max_epochs: usize) -> Pbt {
        Pbt { interval: s.interval.max(1), quantile: s.quantile, max_epochs }
    }

    /// Trials compared at `epoch`: those that trained through it themselves (a fork born
    /// at or after it holds its parent's values there), best first, as (value, number).
    fn ranked_at(&self, epoch: usize, all: &[Curve]) -> Vec<(f64, usize)> {
        let mut peers: Vec<(f64, usize)> =
            all.iter().filter(|c| c.born < epoch).filter_map(|c| c.best_at(epoch).map(|v| (v, c.number))).collect();
        peers.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        peers
    }
}

impl Scheduler for Pbt {
    fn on_epoch(&self, trial: &Curve, _all: &[Curve]) -> Verdict {
        let epoch = trial.val_acc.len();
        if epoch.is_multiple_of(self.interval) && epoch < self.max_epochs {
            Verdict::Pause(format!("PBT step at epoch {epoch}: waits for the population"))
        } else {
            Verdict::Continue
        }
    }

    fn next(&self, all: &[Curve], can_sample: bool) -> Slot {
        // The population first: every configuration of the budget is sampled before any
        // trial is judged against it.
        if can_sample {
            return Slot::Sample;
        }
        let Some(trial) = all.iter().filter(|c| c.paused).min_by_key(|c| (c.val_acc.len(), c.number)) else {
            return Slot::Sample;
        };
        let epoch = trial.val_acc.len();
        // A generation is judged whole: trials still training towards this epoch (or pausing
        // at it, their snapshot not yet taken) are waited for, so the verdict does not depend
        // on which trial happened to pause first, and every parent has its snapshot.
        if all.iter().any(|c| !c.finished && !c.paused && c.val_acc.len() <= epoch) {
            return Slot::Wait;
        }
        let ranked = self.ranked_at(epoch, all);
        let n = ranked.len();
        let cut = ((n as f64 * self.quantile).floor() as usize).max(1);
        // Too few peers to tell a quantile apart (Ray needs two at least; a quartile, four).
        if (n as f64) * self.quantile < 1.0 {
            return Slot::Resume(trial.number);
        }
        let rank = ranked.iter().position(|(_, m)| *m == trial.number).unwrap_or(0);
        if rank < n - cut {
            return Slot::Resume(trial.number);
        }
        // A top-quantile parent, picked by the trial's number and epoch (reproducible), among
        // those with a snapshot at this epoch: not one that ended there (early stopping), so
        // never paused at it.
        let ended_here = |n: usize| all.iter().any(|c| c.number == n && c.finished && c.val_acc.len() == epoch);
        let parents: Vec<usize> = ranked[..cut].iter().map(|(_, n)| *n).filter(|n| !ended_here(*n)).collect();
        if parents.is_empty() {
            return Slot::Resume(trial.number);
        }
        let parent = parents[(trial.number + epoch) % parents.len()];
        Slot::Fork { replaces: trial.number, parent, epoch }
    }

    fn snapshots(&self) -> bool {
        true
    }
}

/// The parameters of a fork of `parent`: each mutable key the space searches is multiplied
/// by 0.8 or 1.2 (kept inside its distribution's range; choices step to a neighbour), or
/// drawn afresh with `resample_probability`. Returns them with the list of changes.
pub fn perturb(space: &SearchSpace, parent: &Params, s: &PbtSettings, rng: &mut StdRng) -> (Params, Vec<Change>) {
    let mut params = parent.clone();
    let mut changes = Vec::new();
    for (key, dist) in &space.params {
        if !MUTABLE_KEYS.contains(&key.as_str()) || matches!(dist, Distribution::Fixed(_)) {
            continue;
        }
        let Some(old) = parent.get(key) else { continue };
        let new = if rng.random::<f64>() < s.resample_probability {
            crate::study::sampler::draw(dist, rng)
        } else {
            let factor = if rng.random::<bool>() { 1.2 } else { 0.8 };
            scaled(dist, old, factor)
        };
        if &new != old {
            changes.push(Change { key: key.clone(), from: old.clone(), to: new.clone() });
            params.insert(key.clone(), new);
        }
    }
    (params, changes)
}

/// `v × factor` inside the distribution: floats clipped to the range, whole numbers rounded
/// away from their value (so ×1.2 of 1 is 2, not 1) and clipped, choices one step up or down.
fn scaled(dist: &Distribution, v: &Value, factor: f64) -> Value {
    match (dist, v) {
        (Distribution::Float { low, high, .. }, _) => {
            let x = v.as_f64().unwrap_or(*low);
            Value::Float((x * factor).clamp(*low, *high))
        }
        (Distribution::Int { low, high, .. }, _) => {
            let x = v.as_f64().unwrap_or(*low as f64);
            let moved = if factor > 1.0 { (x * factor).ceil().max(x + 1.0) } else { (x * factor).floor().min(x - 1.0) };
            Value::Int((moved as i64).clamp(*low, *high))
        }
        (Distribution::Choice(choices), _) => {
            let i = choices.iter().position(|c| c == v).unwrap_or(0);
            let j = if factor > 1.0 { (i + 1).min(choices.len() - 1) } else { i.saturating_sub(1) };
            choices[j].clone()
        }
        (Distribution::Fixed(f), _) => f.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn settings() -> PbtSettings {
        PbtSettings { interval: 2, quantile: 0.25, resample_probability: 0.25 }
    }

    fn curve(number: usize, v: &[f64], paused: bool, born: usize) -> Curve {
        Curve { number, val_acc: v.to_vec(), finished: false, paused, born }
    }

    #[test]
    fn steps_pause_at_each_interval_but_the_last_epoch() {
        let pbt = Pbt::new(&settings(), 6);
        let verdicts: Vec<bool> = (1..=6)
            .map(|e| matches!(pbt.on_epoch(&curve(0, &vec![0.5; e], false, 0), &[]), Verdict::Pause(_)))
            .collect();
        assert_eq!(verdicts, [false, true, false, true, false, false]);
    }

    #[test]
    fn free_slots_sample_then_resume_the_top_and_fork_over_the_bottom() {
        let pbt = Pbt::new(&settings(), 8);
        // Four trials with values 0.9, 0.8, 0.7, 0.6 at epoch 2 (trial 3 the worst): paused
        // there, or already gone on to epoch 3.
        let four = |paused: [bool; 4]| -> Vec<Curve> {
            [0.9, 0.8, 0.7, 0.6]
                .iter()
                .enumerate()
                .map(
                    |(i, v)| if paused[i] { curve(i, &[0.1, *v], true, 0) } else { curve(i, &[0.1, *v, *v], false, 0) },
                )
                .collect()
        };
        // (curves, budget has room, expected, why)
        let cases: Vec<(Vec<Curve>, bool, Slot, &str)> = vec![
            (four([true; 4]), true, Slot::Sample, "the population is sampled first"),
            (four([false, false, true, false]), false, Slot::Resume(2), "not in the bottom quartile: goes on"),
            (
                four([false, false, false, true]),
                false,
                Slot::Fork { replaces: 3, parent: 0, epoch: 2 },
                "the bottom quartile (1 of 4) forks the top one",
            ),
            (four([false; 4]), false, Slot::Sample, "nothing paused"),
            (
                {
                    let mut c = four([false, false, false, true]);
                    c[0] = Curve { finished: true, ..curve(0, &[0.1, 0.9], false, 0) };
                    c
                },
                false,
                Slot::Resume(3),
                "the only top trial early-stopped at the step (no snapshot there): the bottom one goes on",
            ),
            (
                vec![curve(0, &[0.1, 0.9], true, 0), curve(1, &[0.2], false, 0)],
                false,
                Slot::Wait,
                "trial 1 still trains towards epoch 2: the generation waits for it",
            ),
            (
                vec![curve(0, &[0.1, 0.9, 0.9], false, 0), curve(1, &[0.1, 0.2], true, 0)],
                false,
                Slot::Resume(1),
                "two peers cannot make a quartile",
            ),
            (
                {
                    let mut c = four([false, false, false, true]);
                    c[2].val_acc.pop();
                    c
                },
                false,
                Slot::Wait,
                "trial 3 must wait: trial 2 is running at epoch 2, pausing there (no snapshot yet)",
            ),
        ];
        for (all, can_sample, want, why) in cases {
            assert_eq!(pbt.next(&all, can_sample), want, "{why}");
        }
        // A fork born at epoch 2 holds its parent's values there: it is no peer at epoch 2.
        let mut all = four([false, false, false, true]);
        all.push(curve(9, &[0.1, 0.9, 0.9], false, 2));
        all.push(curve(10, &[0.1, 0.9, 0.9], false, 2));
        assert_eq!(pbt.next(&all, false), Slot::Fork { replaces: 3, parent: 0, epoch: 2 });
    }

    #[test]
    fn perturbations_stay_in_the_space_and_touch_only_training_keys() {
        let space = SearchSpace::parse(
            "[study]\nname = \"p\"\n[params]\nlr = { float = [1e-4, 1e-2], log = true }\naug_shift = { int = [0, 2] }\nconv0_channels = { choice = [8, 16] }\n",
            std::path::Path::new("p.toml"),
        )
        .unwrap();
        let parent: Params = [
            ("lr".to_string(), Value::Float(1e-2)),
            ("aug_shift".to_string(), Value::Int(1)),
            ("conv0_channels".to_string(), Value::Int(8)),
        ]
        .into();
        let mut rng = StdRng::seed_from_u64(1);
        let mut lrs = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let (p, changes) = perturb(&space, &parent, &settings(), &mut rng);
            assert_eq!(p["conv0_channels"], Value::Int(8), "the architecture is never changed");
            let lr = p["lr"].as_f64().unwrap();
            assert!((1e-4..=1e-2).contains(&lr), "lr stays in its range: {lr}");
            let shift = p["aug_shift"].as_f64().unwrap();
            assert!((0.0..=2.0).contains(&shift));
            assert!(changes.iter().all(|c| p[&c.key] == c.to && parent[&c.key] == c.from));
            lrs.insert((lr * 1e6).round() as i64);
        }
        assert!(lrs.contains(&8000), "×0.8 of 0.01");
        assert!(lrs.contains(&10000), "×1.2 clipped to the range's top");
        assert!(lrs.len() > 10, "and resampled values: {}", lrs.len());
    }
}
