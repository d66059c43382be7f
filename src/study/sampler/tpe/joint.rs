//! The joint (multivariate) Parzen estimator of TPE, as Optuna's `multivariate=True,
//! group=True`: one kernel per observation over all its parameters, so values that worked
//! together are proposed together (a depth with the widths that went with it). A parameter an
//! observation does not have — a block that did not exist in it — gets the uniform prior in
//! that observation's kernel, which is what makes conditional depth work.

use rand::Rng;
use rand::rngs::StdRng;
use statrs::distribution::{Continuous, ContinuousCDF, Normal};

use super::random;
use crate::model::{Params, Value};
use crate::study::space::{Distribution, SearchSpace};

/// Probability that a categorical kernel moves off its observation's value.
const CATEGORICAL_MOVE: f64 = 0.2;

/// A numerical parameter in the coordinates its kernels live in (log where asked; integers
/// widened by half a step so every integer has the same width).
#[derive(Debug, Clone, Copy)]
pub struct Axis {
    pub lo: f64,
    pub hi: f64,
    log: bool,
    int_step: Option<(i64, i64, i64)>,
}

impl Axis {
    pub fn of(dist: &Distribution) -> Option<Axis> {
        let (low, high, log, int_step) = match dist {
            Distribution::Int { low, high, step, log } => {
                (*low as f64 - 0.5 * *step as f64, *high as f64 + 0.5 * *step as f64, *log, Some((*low, *high, *step)))
            }
            Distribution::Float { low, high, log } => (*low, *high, *log, None),
            _ => return None,
        };
        let (lo, hi) = if log {
            (low.max(if int_step.is_some() { 0.5 } else { low }).max(1e-300).ln(), high.max(1e-300).ln())
        } else {
            (low, high)
        };
        Some(Axis { lo, hi, log, int_step })
    }

    pub fn internal(&self, v: &Value) -> Option<f64> {
        v.as_f64().map(|x| if self.log { x.max(1e-300).ln() } else { x })
    }

    pub fn value(&self, x: f64) -> Value {
        let x = if self.log { x.exp() } else { x };
        match self.int_step {
            Some((low, high, step)) => {
                Value::Int((low + ((x - low as f64) / step as f64).round() as i64 * step).clamp(low, high))
            }
            None => Value::Float(
                x.clamp(if self.log { self.lo.exp() } else { self.lo }, if self.log { self.hi.exp() } else { self.hi }),
            ),
        }
    }

    fn width(&self) -> f64 {
        (self.hi - self.lo).max(1e-12)
    }

    /// A normal truncated to the axis.
    fn kernel(&self, mu: f64, sigma: f64) -> (Normal, f64) {
        let n = Normal::new(mu, sigma.max(1e-12)).expect("positive sigma");
        let mass = (n.cdf(self.hi) - n.cdf(self.lo)).max(1e-300);
        (n, mass)
    }

    pub fn sample_near(&self, mu: f64, sigma: f64, rng: &mut StdRng) -> f64 {
        truncated_normal(mu, sigma, self.lo, self.hi, rng)
    }

    fn density_near(&self, x: f64, mu: f64, sigma: f64) -> f64 {
        let (n, mass) = self.kernel(mu, sigma);
        n.pdf(x) / mass
    }
}

/// A draw of N(mu, sigma) truncated to [lo, hi], by inverse CDF.
pub fn truncated_normal(mu: f64, sigma: f64, lo: f64, hi: f64, rng: &mut StdRng) -> f64 {
    let n = Normal::new(mu, sigma.max(1e-12)).expect("positive sigma");
    let (a, b) = (n.cdf(lo), n.cdf(hi));
    let u = a + rng.random::<f64>() * (b - a).max(1e-300);
    n.inverse_cdf(u.clamp(1e-12, 1.0 - 1e-12)).clamp(lo, hi)
}

/// The joint density of a set of observations (plus a uniform prior component).
pub struct Joint<'a> {
    points: Vec<&'a Params>,
    /// Kernel width per numerical parameter: Scott's rule in d dimensions, as Optuna's
    /// multivariate TPE, never below 1/100 of the axis.
    bandwidth: f64,
}

impl<'a> Joint<'a> {
    pub fn new(space: &SearchSpace, points: Vec<&'a Params>) -> Joint<'a> {
        let dims = space.params.iter().filter(|(_, d)| !matches!(d, Distribution::Fixed(_))).count().max(1) as f64;
        let n = points.len().max(1) as f64;
        Joint { points, bandwidth: (n.powf(-1.0 / (dims + 4.0))).clamp(0.01, 1.0) }
    }

    /// Draws a configuration: picks one kernel (an observation, or the prior) and draws each
    /// active parameter near that observation's value.
    pub fn draw(&self, space: &SearchSpace, rng: &mut StdRng) -> Params {
        let k = rng.random_range(0..=self.points.len());
        let centre = self.points.get(k).copied();
        let mut params = Params::new();
        for (key, dist) in &space.params {
            let uniform = random::draw(dist, rng);
            if !SearchSpace::is_active(key, &params) {
                continue;
            }
            let near = centre.and_then(|c| c.get(key));
            let value = match (dist, near) {
                (Distribution::Fixed(v), _) => v.clone(),
                (_, None) => uniform,
                (Distribution::Choice(_), Some(v)) => {
                    if rng.random::<f64>() < CATEGORICAL_MOVE {
                        uniform
                    } else {
                        v.clone()
                    }
                }
                (_, Some(v)) => {
                    let axis = Axis::of(dist).expect("numerical");
                    match axis.internal(v) {
                        Some(mu) => axis.value(axis.sample_near(mu, self.bandwidth * axis.width(), rng)),
                        None => uniform,
                    }
                }
            };
            params.insert(key.clone(), value);
        }
        params
    }

    /// log of the mixture density at `x` over the parameters active in `x`.
    pub fn log_density(&self, space: &SearchSpace, x: &Params) -> f64 {
        let dims: Vec<(&String, &Distribution, &Value)> = space
            .params
            .iter()
            .filter(|(_, d)| !matches!(d, Distribution::Fixed(_)))
            .filter_map(|(k, d)| x.get(k).map(|v| (k, d, v)))
            .collect();
        let uniform = |d: &Distribution| match d {
            Distribution::Choice(c) => 1.0 / c.len().max(1) as f64,
            _ => 1.0 / Axis::of(d).map_or(1.0, |a| a.width()),
        };
        let prior: f64 = dims.iter().map(|(_, d, _)| uniform(d).ln()).sum();
        let mut logs: Vec<f64> = vec![prior];
        for p in &self.points {
            let mut sum = 0.0;
            for (key, dist, v) in &dims {
                let density = match (dist, p.get(*key)) {
                    (_, None) => uniform(dist),
                    (Distribution::Choice(c), Some(at)) => {
                        let base = CATEGORICAL_MOVE / c.len().max(1) as f64;
                        if at == *v { 1.0 - CATEGORICAL_MOVE + base } else { base }
                    }
                    (_, Some(at)) => match (Axis::of(dist), dist) {
                        (Some(axis), _) => match (axis.internal(at), axis.internal(v)) {
                            (Some(mu), Some(xv)) => axis.density_near(xv, mu, self.bandwidth * axis.width()),
                            _ => uniform(dist),
                        },
                        _ => uniform(dist),
                    },
                };
                sum += density.max(1e-300).ln();
            }
            logs.push(sum);
        }
        // log-mean-exp over the kernels
        let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        max + (logs.iter().map(|l| (l - max).exp()).sum::<f64>() / logs.len() as f64).ln()
    }
}

/// The candidate among `candidates` draws from the good density that maximises l(x)/g(x).
pub fn sample(
    space: &SearchSpace,
    good: Vec<&Params>,
    bad: Vec<&Params>,
    candidates: usize,
    rng: &mut StdRng,
) -> Params {
    let (l, g) = (Joint::new(space, good), Joint::new(space, bad));
    let mut best: Option<(f64, Params)> = None;
    for _ in 0..candidates.max(1) {
        let x = l.draw(space, rng);
        let score = l.log_density(space, &x) - g.log_density(space, &x);
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, x));
        }
    }
    best.expect("at least one candidate").1
}
