//! Independent uniform sampling of every active parameter.

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use super::{Ask, Proposal, Sampler};
use crate::model::{Params, Value};
use crate::study::space::{Distribution, SearchSpace};

/// Every draw uniform and independent of the history.
pub struct RandomSampler;

impl Sampler for RandomSampler {
    fn propose(&self, space: &SearchSpace, ask: &Ask) -> Proposal {
        let mut params = sample(space, &mut ask.rng(space.study.seed));
        SearchSpace::prune_inactive(&mut params);
        Proposal::Params(params)
    }
}

pub fn sample(space: &SearchSpace, rng: &mut StdRng) -> Params {
    let mut params = Params::new();
    for (key, dist) in &space.params {
        // Draw even when inactive so one parameter's draws never shift another's.
        let value = draw(dist, rng);
        if SearchSpace::is_active(key, &params) {
            params.insert(key.clone(), value);
        }
    }
    params
}

pub fn draw(dist: &Distribution, rng: &mut StdRng) -> Value {
    match dist {
        Distribution::Int { low, high, step, log: false } => {
            Value::Int(low + step * rng.random_range(0..=(high - low) / step))
        }
        Distribution::Int { low, high, log: true, .. } => {
            let x = rng.random_range((*low as f64 - 0.5).max(0.5).ln()..(*high as f64 + 0.5).ln()).exp();
            Value::Int((x.round() as i64).clamp(*low, *high))
        }
        Distribution::Float { low, high, log } => {
            if low == high {
                Value::Float(*low)
            } else if *log {
                Value::Float(rng.random_range(low.ln()..high.ln()).exp())
            } else {
                Value::Float(rng.random_range(*low..*high))
            }
        }
        Distribution::Choice(c) => c.choose(rng).expect("checked non-empty").clone(),
        Distribution::Fixed(v) => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn draws_stay_in_range_and_on_the_step() {
        let mut rng = StdRng::seed_from_u64(1);
        let int = Distribution::Int { low: 8, high: 64, step: 8, log: false };
        let logf = Distribution::Float { low: 1e-4, high: 1e-1, log: true };
        let logi = Distribution::Int { low: 1, high: 512, step: 1, log: true };
        for _ in 0..500 {
            assert!(matches!(draw(&int, &mut rng), Value::Int(x) if (8..=64).contains(&x) && x % 8 == 0));
            assert!(matches!(draw(&logf, &mut rng), Value::Float(x) if (1e-4..=1e-1).contains(&x)));
            assert!(matches!(draw(&logi, &mut rng), Value::Int(x) if (1..=512).contains(&x)));
        }
    }
}
