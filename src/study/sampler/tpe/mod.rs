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
use crate::study::settings::TpeSettings;
use crate::study::space::{Distribution, SearchSpace};
use crate::study::trial::TrialState;
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
mod tests;
