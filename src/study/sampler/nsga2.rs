//! NSGA-II (Deb et al. 2002), as Optuna's `NSGAIISampler` runs it on a search space of mixed
//! parameters: the first `population` configurations are random; after that, the `population`
//! best evaluated trials (by non-dominated front, then crowding distance) are the parents, two
//! are picked by binary tournament, each parameter comes from one of them (uniform crossover)
//! and is drawn afresh with the mutation probability. Elitism is over every evaluated trial,
//! so a good network is never forgotten. Pruned trials count with the val_acc they reached;
//! failed and infeasible ones are never parents.

use rand::Rng;

use super::{Ask, Proposal, Sampler, random};
use crate::model::Params;
use crate::study::objectives::{self, Metric, Objective};
use crate::study::settings::NsgaSettings;
use crate::study::space::SearchSpace;
use crate::study::trial::TrialRecord;

pub struct Nsga2Sampler {
    settings: NsgaSettings,
    objectives: Vec<Objective>,
}

impl Nsga2Sampler {
    pub fn from_space(space: &SearchSpace) -> Nsga2Sampler {
        let objectives = if space.study.objectives.is_empty() {
            vec![Objective { metric: Metric::ValAcc, direction: objectives::Direction::Maximize }]
        } else {
            space.study.objectives.clone()
        };
        Nsga2Sampler { settings: space.study.nsga2.clone(), objectives }
    }

    /// The parents: the best `population` evaluated trials, each with (front, crowding).
    fn parents<'a>(&self, trials: impl Iterator<Item = &'a TrialRecord>) -> Vec<(&'a TrialRecord, usize, f64)> {
        let scored: Vec<(&TrialRecord, Vec<f64>)> =
            trials.filter_map(|t| objectives::costs(t, &self.objectives).map(|c| (t, c))).collect();
        let points: Vec<Vec<f64>> = scored.iter().map(|s| s.1.clone()).collect();
        let fronts = objectives::fronts(&points);
        let crowd = objectives::crowding_by_front(&points, &fronts);
        let mut ranked: Vec<(&TrialRecord, usize, f64)> =
            scored.iter().enumerate().map(|(i, (t, _))| (*t, fronts[i], crowd[i])).collect();
        ranked.sort_by(|a, b| a.1.cmp(&b.1).then(b.2.total_cmp(&a.2)).then(a.0.number.cmp(&b.0.number)));
        ranked.truncate(self.settings.population);
        ranked
    }
}

/// The better of two parents: lower front, then the lonelier one, then the older.
fn better<'a>(a: (&'a TrialRecord, usize, f64), b: (&'a TrialRecord, usize, f64)) -> &'a TrialRecord {
    let a_wins = a.1 < b.1 || (a.1 == b.1 && (a.2 > b.2 || (a.2 == b.2 && a.0.number < b.0.number)));
    if a_wins { a.0 } else { b.0 }
}

impl Sampler for Nsga2Sampler {
    fn propose(&self, space: &SearchSpace, ask: &Ask) -> Proposal {
        let mut rng = ask.rng(space.study.seed);
        let parents = self.parents(ask.trials.range(..ask.number).map(|(_, t)| t));
        if ask.index < self.settings.population || parents.len() < 2 {
            let mut params = random::sample(space, &mut rng);
            SearchSpace::prune_inactive(&mut params);
            return Proposal::Params(params);
        }
        let pick = |rng: &mut rand::rngs::StdRng| {
            let i = rng.random_range(0..parents.len());
            let j = (i + rng.random_range(1..parents.len())) % parents.len();
            better(parents[i], parents[j])
        };
        let first = pick(&mut rng);
        let second = pick(&mut rng);
        let mutation = self.settings.mutation_probability.unwrap_or(1.0 / space.params.len().max(1) as f64);
        let mut child = Params::new();
        for (key, dist) in &space.params {
            // Every draw is made whatever is kept, so one parameter never shifts another's.
            let fresh = random::draw(dist, &mut rng);
            let swap = rng.random_bool(self.settings.swapping_probability);
            let mutate = rng.random_bool(mutation);
            let (a, b) = if swap { (second, first) } else { (first, second) };
            let inherited = a.params.get(key).or_else(|| b.params.get(key)).filter(|v| dist.produces(v));
            let value = match inherited {
                Some(v) if !mutate => v.clone(),
                _ => fresh,
            };
            if SearchSpace::is_active(key, &child) {
                child.insert(key.clone(), value);
            }
        }
        SearchSpace::prune_inactive(&mut child);
        Proposal::Params(child)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::trial::TrialState;
    use std::collections::BTreeMap;
    use std::path::Path;

    const SPACE: &str = "[study]\nname = \"n\"\nsampler = \"nsga2\"\nobjectives = [{ metric = \"val_acc\", direction = \"maximize\" }, { metric = \"params\", direction = \"minimize\" }]\n[study.nsga2]\npopulation = 4\nmutation_probability = 0.1\n[params]\nconv0_channels = { choice = [8, 16, 32, 64] }\nlr = { float = [1e-4, 1e-2], log = true }\n";

    fn trial(number: usize, params: Params, acc: f64) -> TrialRecord {
        TrialRecord::one_epoch(number, params, TrialState::Complete, acc)
    }

    fn propose(sampler: &Nsga2Sampler, space: &SearchSpace, trials: &BTreeMap<usize, TrialRecord>, n: usize) -> Params {
        match sampler.propose(space, &Ask { number: n, draw: n, index: n, trials }) {
            Proposal::Params(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_first_generation_is_random_then_children_inherit_from_the_front() {
        let space = SearchSpace::parse(SPACE, Path::new("n.toml")).unwrap();
        let sampler = Nsga2Sampler::from_space(&space);
        let mut trials = BTreeMap::new();
        // The first generation: random, and deterministic in the draw.
        let first: Vec<Params> = (0..4).map(|n| propose(&sampler, &space, &trials, n)).collect();
        assert_eq!(first[2], propose(&sampler, &space, &trials, 2));
        // A front of two (small and weak, large and strong), and two dominated trials.
        let p = |c: i64, lr: f64| -> Params {
            [
                ("conv0_channels".to_string(), crate::model::Value::Int(c)),
                ("lr".to_string(), crate::model::Value::Float(lr)),
            ]
            .into()
        };
        trials.insert(0, trial(0, p(8, 1e-3), 0.88));
        trials.insert(1, trial(1, p(64, 2e-3), 0.92));
        trials.insert(2, trial(2, p(32, 5e-3), 0.85));
        trials.insert(3, trial(3, p(64, 7e-3), 0.80));
        let parents = sampler.parents(trials.values());
        let fronts: Vec<(usize, usize)> = parents.iter().map(|p| (p.0.number, p.1)).collect();
        assert_eq!(fronts[..2], [(0, 0), (1, 0)], "the front first (extremes equally crowded, older first)");
        // Children take their values from parents; tournaments favour the front.
        let mut from_front = 0;
        for n in 4..104 {
            let child = propose(&sampler, &space, &trials, n);
            assert!(space.get("lr").unwrap().produces(&child["lr"]));
            if child["lr"] == crate::model::Value::Float(1e-3) || child["lr"] == crate::model::Value::Float(2e-3) {
                from_front += 1;
            }
        }
        assert!(from_front > 60, "most children carry a front parent's lr (5/6 × 0.9 expected): {from_front} of 100");
    }
}
