//! Samplers: pure functions of the space, the finished trials and the trial's own seed.
//! Random and TPE draw one dictionary per call; grid enumerates distinct networks.

mod grid;
mod random;
mod tpe;

pub use grid::Grid;

use rand::rngs::StdRng;

use super::space::{Distribution, SamplerKind, SearchSpace};
use crate::model::Params;

/// One finished trial as a sampler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub params: Params,
    /// Best val_acc of a complete or pruned trial; `None` for infeasible or failed ones,
    /// which count as worse than any trained trial (so TPE learns to avoid them).
    pub value: Option<f64>,
}

/// Draws the next dictionary. `grid` is the enumerated grid for the grid sampler; `drawn`
/// counts the configurations the sampler produced before this one (enqueued ones are not
/// drawn, so they never push grid points out).
pub fn sample(space: &SearchSpace, history: &[Observation], drawn: usize, rng: &mut StdRng, grid: Option<&Grid>) -> Option<Params> {
    let mut params = match space.study.sampler {
        SamplerKind::Random => random::sample(space, rng),
        SamplerKind::Grid => return grid.and_then(|g| g.point(drawn)),
        SamplerKind::Tpe => {
            let informative = history.iter().filter(|o| o.value.is_some()).count();
            if informative < space.study.startup_trials {
                random::sample(space, rng)
            } else {
                tpe::sample(space, history, rng)
            }
        }
    };
    SearchSpace::prune_inactive(&mut params);
    Some(params)
}

/// Draws one value of a distribution uniformly (log-uniformly where asked).
pub fn draw(dist: &Distribution, rng: &mut StdRng) -> crate::model::Value {
    random::draw(dist, rng)
}

/// One dictionary drawn uniformly from the space (inactive block parameters included).
pub fn random_params(space: &SearchSpace, rng: &mut StdRng) -> Params {
    random::sample(space, rng)
}
