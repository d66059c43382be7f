//! Tree-structured Parzen Estimator (Bergstra et al. 2011; Optuna's TPE). Finished trials
//! are split into the best γ(n) = min(⌈0.1·n⌉, 25) ("good") and the rest; infeasible and
//! failed trials are always "bad". Candidates are drawn from the good density l(x) and the
//! one maximising l(x)/g(x) is kept: jointly over all parameters (`multivariate`, default;
//! see `joint.rs`) or parameter by parameter (univariate, the earlier behaviour). A share
//! `exploration` of draws after the start-up is uniform, so the search never stops looking.
//! A study with several objectives splits by non-dominated front instead (`pareto.rs`).

use rand::Rng;
use rand::rngs::StdRng;
use statrs::distribution::{Continuous, ContinuousCDF, Normal};

mod joint;
mod pareto;

use super::{Ask, Observation, Proposal, Sampler, observations, random};
use crate::model::{Params, Value};
use crate::study::TrialState;
use crate::study::settings::TpeSettings;
use crate::study::space::{Distribution, SearchSpace};
use joint::Axis;

const PRIOR_WEIGHT: f64 = 1.0;

/// TPE with its settings: random start-up, the wait rule, joint or univariate estimation.
pub struct TpeSampler {
    /// Trials with a value needed before TPE replaces uniform draws.
    startup_trials: usize,
    /// Trial n is sampled from trials < n − history_lag only, and waits for them.
    history_lag: usize,
    settings: TpeSettings,
    /// The study's objectives: with two or more, the good group is the first fronts.
    objectives: Vec<crate::study::objectives::Objective>,
}

impl TpeSampler {
    pub fn from_space(space: &SearchSpace) -> TpeSampler {
        TpeSampler {
            startup_trials: space.study.startup_trials,
            history_lag: space.study.history_lag,
            settings: space.study.tpe.clone(),
            objectives: space.study.objectives.clone(),
        }
    }

    /// The configuration for `history` (the finished trials it may see).
    pub fn sample_from(&self, space: &SearchSpace, history: &[Observation], rng: &mut StdRng) -> Params {
        let informative = history.iter().filter(|o| o.value.is_some()).count();
        let mut params = if informative < self.startup_trials || rng.random::<f64>() < self.settings.exploration {
            random::sample(space, rng)
        } else if self.settings.multivariate {
            let (good, bad) = split(history, self.settings.max_bad);
            joint::sample(
                space,
                good.iter().map(|o| o.params.as_ref()).collect(),
                bad.iter().map(|o| o.params.as_ref()).collect(),
                self.settings.candidates,
                rng,
            )
        } else {
            sample(space, history, self.settings.candidates, self.settings.max_bad, rng)
        };
        SearchSpace::prune_inactive(&mut params);
        params
    }
}

impl Sampler for TpeSampler {
    fn propose(&self, space: &SearchSpace, ask: &Ask) -> Proposal {
        // Every trial below the visible horizon must be finished — including numbers another
        // worker reserved but has not recorded yet — so the proposal is the same whoever asks.
        let visible = ask.number.saturating_sub(self.history_lag);
        if (0..visible).any(|m| ask.trials.get(&m).is_none_or(|t| t.state == TrialState::Running)) {
            return Proposal::Wait;
        }
        let history = observations(ask.trials, visible, &self.objectives);
        Proposal::Params(self.sample_from(space, &history, &mut ask.rng(space.study.seed)))
    }
}

fn gamma(n: usize) -> usize {
    ((n as f64 * 0.1).ceil() as usize).clamp(1, 25)
}

/// How an observation ranks, best first: trials trained to their end by value, then pruned
/// and paused ones by the rung they reached (further is better) and their value there (as
/// Optuna ranks pruned trials), then unvalued ones (infeasible, failed). A trial stopped at
/// epoch 1 is thus never compared with a finished one on a value it had no epochs to reach.
fn rank_key(o: &Observation) -> (u8, usize, f64) {
    match (o.value, o.stopped_at) {
        (Some(v), None) => (2, 0, v),
        (Some(v), Some(epochs)) => (1, epochs, v),
        (None, _) => (0, 0, f64::NEG_INFINITY),
    }
}

/// The good and the bad observations: best first (see [`rank_key`], or by front with several
/// objectives), unvalued always bad.
/// The bad group keeps at most `max_bad` observations, evenly spaced along its ranking, so a
/// proposal's cost stops growing with the history (below the cap nothing changes).
fn split<'h, 'a>(
    history: &'h [Observation<'a>],
    max_bad: usize,
) -> (Vec<&'h Observation<'a>>, Vec<&'h Observation<'a>>) {
    let valued = history.iter().filter(|o| o.value.is_some()).count();
    // With several objectives, the trials trained to their end with every measure rank by
    // front; until there is one, val_acc ranks as with one objective.
    let complete = history.iter().filter(|o| o.stopped_at.is_none() && o.costs.is_some()).count();
    let (ranked, mut bad) = if complete > 0 {
        pareto::split(history, gamma(complete))
    } else {
        let mut ranked: Vec<&Observation> = history.iter().collect();
        // Stable, so ties keep trial order.
        ranked.sort_by(|a, b| {
            let (ka, kb) = (rank_key(a), rank_key(b));
            (kb.0, kb.1).cmp(&(ka.0, ka.1)).then(kb.2.total_cmp(&ka.2))
        });
        let bad = ranked.split_off(gamma(valued).min(valued));
        (ranked, bad)
    };
    if bad.len() > max_bad.max(1) {
        let (n, keep) = (bad.len(), max_bad.max(1));
        bad = (0..keep).map(|i| bad[i * n / keep]).collect();
    }
    (ranked, bad)
}

/// Univariate TPE: each active parameter on its own.
pub fn sample(
    space: &SearchSpace,
    history: &[Observation],
    candidates: usize,
    max_bad: usize,
    rng: &mut StdRng,
) -> Params {
    let (good, bad) = split(history, max_bad);
    let (good, bad) = (good.as_slice(), bad.as_slice());
    let mut params = Params::new();
    for (key, dist) in &space.params {
        let fallback = random::draw(dist, rng);
        if !SearchSpace::is_active(key, &params) {
            continue;
        }
        let values =
            |set: &[&Observation]| -> Vec<Value> { set.iter().filter_map(|o| o.params.get(key).cloned()).collect() };
        let value = match dist {
            Distribution::Fixed(v) => v.clone(),
            Distribution::Choice(choices) => categorical(choices, &values(good), &values(bad), candidates, rng),
            Distribution::Int { .. } | Distribution::Float { .. } => {
                let (g, b) = (values(good), values(bad));
                if g.is_empty() { fallback } else { numerical(dist, &g, &b, candidates, rng) }
            }
        };
        params.insert(key.clone(), value);
    }
    params
}

fn categorical(choices: &[Value], good: &[Value], bad: &[Value], candidates: usize, rng: &mut StdRng) -> Value {
    let weights = |obs: &[Value]| -> Vec<f64> {
        let mut w: Vec<f64> = choices
            .iter()
            .map(|c| PRIOR_WEIGHT / choices.len() as f64 + obs.iter().filter(|o| *o == c).count() as f64)
            .collect();
        let total: f64 = w.iter().sum();
        w.iter_mut().for_each(|x| *x /= total);
        w
    };
    let (l, g) = (weights(good), weights(bad));
    let mut best = (f64::NEG_INFINITY, 0);
    for _ in 0..candidates {
        let mut u = rng.random::<f64>();
        let i = l
            .iter()
            .position(|p| {
                u -= p;
                u <= 0.0
            })
            .unwrap_or(l.len() - 1);
        let score = l[i].ln() - g[i].ln();
        if score > best.0 {
            best = (score, i);
        }
    }
    choices[best.1].clone()
}

/// A mixture of normals truncated to [low, high], one per observation plus a wide prior.
struct Parzen {
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    low: f64,
    high: f64,
}

impl Parzen {
    fn new(points: &[f64], low: f64, high: f64) -> Parzen {
        let range = (high - low).max(1e-12);
        let mut mus: Vec<f64> = points.to_vec();
        mus.push((low + high) / 2.0);
        let mut order: Vec<usize> = (0..mus.len()).collect();
        order.sort_by(|&a, &b| mus[a].total_cmp(&mus[b]));
        let mut sigmas = vec![range; mus.len()];
        let floor = range / (1.0 + mus.len() as f64).min(100.0);
        for (rank, &i) in order.iter().enumerate() {
            let left = if rank == 0 { mus[i] - low } else { mus[i] - mus[order[rank - 1]] };
            let right = if rank + 1 == order.len() { high - mus[i] } else { mus[order[rank + 1]] - mus[i] };
            sigmas[i] = left.max(right).clamp(floor, range);
        }
        let prior = mus.len() - 1;
        sigmas[prior] = range;
        Parzen { mus, sigmas, low, high }
    }

    fn sample(&self, rng: &mut StdRng) -> f64 {
        let i = rng.random_range(0..self.mus.len());
        joint::truncated_normal(self.mus[i], self.sigmas[i], self.low, self.high, rng)
    }

    fn log_density(&self, x: f64) -> f64 {
        let w = 1.0 / self.mus.len() as f64;
        let p: f64 = self
            .mus
            .iter()
            .zip(&self.sigmas)
            .map(|(&m, &s)| {
                let n = Normal::new(m, s).expect("positive sigma");
                w * n.pdf(x) / (n.cdf(self.high) - n.cdf(self.low)).max(1e-300)
            })
            .sum();
        p.max(1e-300).ln()
    }
}

fn numerical(dist: &Distribution, good: &[Value], bad: &[Value], candidates: usize, rng: &mut StdRng) -> Value {
    let axis = Axis::of(dist).expect("numerical distributions only");
    let pts = |vals: &[Value]| -> Vec<f64> { vals.iter().filter_map(|v| axis.internal(v)).collect() };
    let l = Parzen::new(&pts(good), axis.lo, axis.hi);
    let g = Parzen::new(&pts(bad), axis.lo, axis.hi);
    let mut best = (f64::NEG_INFINITY, axis.lo);
    for _ in 0..candidates {
        let x = l.sample(rng);
        let score = l.log_density(x) - g.log_density(x);
        if score > best.0 {
            best = (score, x);
        }
    }
    axis.value(best.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::path::Path;

    #[test]
    fn the_bad_group_is_capped_evenly_along_its_ranking() {
        let history: Vec<Observation> = (0..41)
            .map(|n| Observation {
                params: std::borrow::Cow::Owned([("n".to_string(), Value::Int(n))].into()),
                value: Some(n as f64 / 100.0),
                stopped_at: None,
                costs: None,
            })
            .collect();
        let (good, bad) = split(&history, 4);
        assert_eq!(good.len(), 5, "γ(41) = 5: the good group is never capped");
        let kept: Vec<String> = bad.iter().map(|o| o.params["n"].to_string()).collect();
        assert_eq!(kept, ["35", "26", "17", "8"], "4 of the 36 bad ones, best to worst, evenly spaced");
        assert_eq!(split(&history, 1000).1.len(), 36, "below the cap nothing changes");
    }

    #[test]
    fn stopped_trials_rank_at_the_rung_they_reached() {
        let o = |n: i64, value: Option<f64>, stopped_at: Option<usize>| Observation {
            params: std::borrow::Cow::Owned([("n".to_string(), Value::Int(n))].into()),
            value,
            stopped_at,
            costs: None,
        };
        // (observation, why it ranks where it does)
        let history = vec![
            o(0, Some(0.95), Some(1)), // best value, but judged after one epoch
            o(1, Some(0.80), None),    // trained to its end: above every stopped trial
            o(2, None, None),          // failed: last
            o(3, Some(0.85), Some(3)), // reached epoch 3: above those stopped at epoch 1
            o(4, Some(0.90), None),
            o(5, Some(0.70), Some(3)),
        ];
        let (good, bad) = split(&history, usize::MAX);
        let order: Vec<String> = good.iter().chain(&bad).map(|o| o.params["n"].to_string()).collect();
        assert_eq!(order, ["4", "1", "3", "5", "0", "2"]);
        assert_eq!(good.len(), 1, "γ(5 valued) = 1");
    }

    fn space(sampler: &str, tpe: &str) -> SearchSpace {
        SearchSpace::parse(
            &format!("[study]\nname = \"toy\"\nsampler = \"{sampler}\"\nstartup_trials = 8\n[study.tpe]\n{tpe}\n[params]\nweight_decay = {{ float = [0.0, 1.0] }}\ndrop_rate = {{ float = [0.0, 0.99] }}\nconv0_channels = {{ int = [1, 64] }}\nconv0_activation = {{ choice = [\"relu\", \"elu\", \"tanh\", \"sigmoid\"] }}"),
            Path::new("toy.toml"),
        )
        .unwrap()
    }

    /// Peak at weight_decay = 0.8, drop_rate = 0.2, 48 channels, tanh.
    fn objective(p: &Params) -> f64 {
        let f = |k: &str| p[k].as_f64().unwrap();
        let act = if p["conv0_activation"] == Value::Str("tanh".into()) { 0.0 } else { 0.3 };
        -(f("weight_decay") - 0.8).powi(2)
            - (f("drop_rate") - 0.2).powi(2)
            - ((f("conv0_channels") - 48.0) / 64.0).powi(2)
            - act
    }

    /// Values of `trials` sequential trials on the toy objective.
    fn run(space: &SearchSpace, seed: u64, trials: usize, objective: &dyn Fn(&Params) -> f64) -> Vec<(Params, f64)> {
        let tpe = TpeSampler::from_space(space);
        let mut history: Vec<Observation> = Vec::new();
        for n in 0..trials {
            let mut rng = StdRng::seed_from_u64(seed * 1000 + n as u64);
            let p = if space.study.sampler == crate::study::settings::SamplerKind::Random {
                let mut p = random::sample(space, &mut rng);
                SearchSpace::prune_inactive(&mut p);
                p
            } else {
                tpe.sample_from(space, &history, &mut rng)
            };
            history.push(Observation {
                value: Some(objective(&p)),
                params: std::borrow::Cow::Owned(p),
                stopped_at: None,
                costs: None,
            });
        }
        history.into_iter().map(|o| (o.params.into_owned(), o.value.unwrap())).collect()
    }

    fn late_mean(v: &[(Params, f64)]) -> f64 {
        v[30..].iter().map(|x| x.1).sum::<f64>() / (v.len() - 30) as f64
    }

    #[test]
    fn tpe_concentrates_on_the_good_region_faster_than_random_joint_or_not() {
        for tpe in ["multivariate = true", "multivariate = false"] {
            let (mut tpe_late, mut random_late) = (0.0, 0.0);
            for seed in 0..5 {
                tpe_late += late_mean(&run(&space("tpe", tpe), seed, 60, &objective));
                random_late += late_mean(&run(&space("random", ""), seed, 60, &objective));
            }
            assert!(
                tpe_late > random_late + 0.1,
                "{tpe}: TPE mean of trials 30–59 {tpe_late:.3} vs random {random_late:.3} (sum over 5 seeds)"
            );
        }
    }

    /// Two objectives that trade weight_decay against itself, with drop_rate adding to the
    /// second: every Pareto-optimal point has drop_rate 0, whatever its weight_decay.
    fn two_costs(p: &Params) -> Vec<f64> {
        let f = |k: &str| p[k].as_f64().unwrap();
        vec![f("weight_decay"), 1.0 - f("weight_decay") + 3.0 * f("drop_rate")]
    }

    /// Late trials' mean drop_rate and mean weight_decay, over 5 seeds of 60 trials, with the
    /// two costs given to TPE (multi-objective) or only the first as the value.
    fn late_on_two_costs(multi: bool) -> (f64, f64) {
        let space = space("tpe", "");
        let tpe = TpeSampler::from_space(&space);
        let (mut drop_late, mut decay_late) = (0.0, 0.0);
        for seed in 0..5 {
            let mut history: Vec<Observation> = Vec::new();
            for n in 0..60 {
                let p = tpe.sample_from(&space, &history, &mut StdRng::seed_from_u64(seed * 1000 + n));
                let costs = two_costs(&p);
                history.push(Observation {
                    value: Some(-costs[0]),
                    params: std::borrow::Cow::Owned(p),
                    stopped_at: None,
                    costs: multi.then_some(costs),
                });
            }
            let late = &history[30..];
            drop_late += late.iter().map(|o| o.params["drop_rate"].as_f64().unwrap()).sum::<f64>() / 30.0;
            decay_late += late.iter().map(|o| o.params["weight_decay"].as_f64().unwrap()).sum::<f64>() / 30.0;
        }
        (drop_late / 5.0, decay_late / 5.0)
    }

    #[test]
    fn with_two_objectives_tpe_moves_towards_the_front_and_spreads_along_it() {
        let (multi_drop, multi_decay) = late_on_two_costs(true);
        let (single_drop, single_decay) = late_on_two_costs(false);
        // The front is at drop_rate 0, all along weight_decay; the first objective alone
        // knows nothing of drop_rate and piles onto weight_decay 0.
        assert!(
            multi_drop < 0.8 * single_drop,
            "nearer the front: mean drop_rate {multi_drop:.3} against {single_drop:.3} on the first objective alone"
        );
        assert!(
            multi_decay > 1.5 * single_decay,
            "spread along it, not piled at weight_decay 0: mean {multi_decay:.3} against {single_decay:.3}"
        );
    }

    #[test]
    fn seeded_and_deterministic() {
        let s = space("tpe", "");
        let values = |seed| run(&s, seed, 20, &objective).into_iter().map(|x| x.1).collect::<Vec<_>>();
        assert_eq!(values(3), values(3));
        assert_ne!(values(3), values(4));
    }

    #[test]
    fn conditional_blocks_are_proposed_exactly_when_they_exist() {
        let s = SearchSpace::parse(
            "[study]\nname = \"c\"\nstartup_trials = 4\n[params]\nn_conv = { int = [1, 3] }\n\"conv*_channels\" = { int = [4, 64] }\nlr = { float = [1e-4, 1e-2], log = true }\n",
            Path::new("c.toml"),
        )
        .unwrap();
        // Deeper is better, and wider blocks better still: the joint model must keep each
        // block's width with its depth.
        let objective = |p: &Params| {
            let n = p["n_conv"].as_f64().unwrap();
            n + (0..n as usize).map(|i| p[&format!("conv{i}_channels")].as_f64().unwrap() / 64.0).sum::<f64>()
        };
        for (p, _) in run(&s, 1, 40, &objective) {
            let n = p["n_conv"].as_f64().unwrap() as usize;
            for i in 0..3 {
                assert_eq!(p.contains_key(&format!("conv{i}_channels")), i < n, "block {i} with n_conv = {n}: {p:?}");
            }
        }
    }

    #[test]
    fn no_collapse_onto_a_cheap_region_that_is_worse() {
        // Narrow networks (the cheap region, channels ≤ 16) score worse; TPE's late proposals
        // stay away from it, while exploration still looks there now and then.
        let s = space("tpe", "exploration = 0.1");
        let objective =
            |p: &Params| (p["conv0_channels"].as_f64().unwrap() / 64.0) - 0.1 * p["drop_rate"].as_f64().unwrap();
        let mut late_cheap = 0;
        let mut late = 0;
        for seed in 0..5 {
            for (p, _) in run(&s, seed, 60, &objective).into_iter().skip(30) {
                late += 1;
                late_cheap += usize::from(p["conv0_channels"].as_f64().unwrap() <= 16.0);
            }
        }
        assert!(late_cheap * 10 < late, "{late_cheap} of {late} late proposals in the cheap, worse region");
    }

    #[test]
    fn unvalued_trials_push_tpe_away_from_their_region() {
        // Every trial with channels < 32 was infeasible; good ones were near 48.
        let s = space("tpe", "multivariate = false");
        let mut history = Vec::new();
        let mut rng = StdRng::seed_from_u64(9);
        for i in 0..40 {
            let mut p = random::sample(&s, &mut rng);
            let ch = if i % 2 == 0 { 1 + i % 31 } else { 32 + i % 33 };
            p.insert("conv0_channels".into(), Value::Int(ch as i64));
            let value = (ch >= 32).then(|| objective(&p));
            history.push(Observation { params: std::borrow::Cow::Owned(p), value, stopped_at: None, costs: None });
        }
        for multivariate in [false, true] {
            let mut sampler = TpeSampler::from_space(&s);
            sampler.settings = TpeSettings { multivariate, exploration: 0.0, ..sampler.settings.clone() };
            let draws: Vec<i64> = (0..30)
                .map(
                    |seed| match &sampler.sample_from(&s, &history, &mut StdRng::seed_from_u64(seed))["conv0_channels"]
                    {
                        Value::Int(c) => *c,
                        _ => 0,
                    },
                )
                .collect();
            let low = draws.iter().filter(|c| **c < 32).count();
            assert!(low <= 3, "multivariate {multivariate}: TPE kept proposing the infeasible region: {draws:?}");
        }
    }
}
