//! Samplers propose the configuration of a trial number from the study's records. Each is
//! one type behind [`Sampler`], owning its settings and state: the grid its points, TPE its
//! wait rule, [`Enqueued`] the configurations evaluated first. A proposal depends only on the
//! study seed, the trial's number and draw index, and finished trials — never on timing —
//! so the same seed gives the same configurations whatever the number of workers.

pub mod bench;
mod enqueued;
mod grid;
mod nsga2;
mod random;
mod tpe;

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;

pub use enqueued::Enqueued;
pub use grid::{Grid, GridSampler};
pub use nsga2::Nsga2Sampler;
pub use random::RandomSampler;
pub use tpe::TpeSampler;

use super::objectives::Objective;
use super::settings::SamplerKind;
use super::space::{Distribution, SearchSpace};
use super::trial::{TrialRecord, TrialState, trial_seed};
use crate::error::Result;
use crate::model::Params;

/// One finished trial as a sampler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation<'a> {
    /// Borrowed from the trial records: a proposal over 10,000 trials copies none of them.
    pub params: std::borrow::Cow<'a, Params>,
    /// Best val_acc of a complete or pruned trial; `None` for infeasible or failed ones,
    /// which count as worse than any trained trial (so TPE learns to avoid them).
    pub value: Option<f64>,
    /// Epochs a pruned or paused trial reached before it stopped; `None` for a trial that
    /// trained to its own end. TPE ranks such trials at the rung they reached.
    pub stopped_at: Option<usize>,
    /// In a study with several objectives: each objective's cost (smaller is better; see
    /// [`crate::study::objectives::costs`]), which multi-objective TPE ranks by; `None` with
    /// one objective, or for a trial missing a measure.
    pub costs: Option<Vec<f64>>,
}

/// What a sampler is asked.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The trial's number.
    pub number: usize,
    /// Configurations drawn before this one in the study (re-runs of lost trials excluded):
    /// seeds the draw, so it does not depend on which numbers re-runs took.
    pub draw: usize,
    /// This sampler's own count: `draw` minus what samplers before it (the queue) drew.
    pub index: usize,
    /// Every trial recorded so far (any worker's), by number.
    pub trials: &'a BTreeMap<usize, TrialRecord>,
}

impl Ask<'_> {
    /// The generator of this draw: a function of the study seed and the draw index only.
    pub fn rng(&self, study_seed: u64) -> StdRng {
        StdRng::seed_from_u64(trial_seed(study_seed, self.draw) ^ 0x5A17)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Proposal {
    Params(Params),
    /// Earlier results are needed first (TPE's `history_lag` rule): ask again later.
    Wait,
    /// Nothing left to propose (the grid is exhausted).
    Exhausted,
}

pub trait Sampler: Send {
    fn propose(&self, space: &SearchSpace, ask: &Ask) -> Proposal;
}

/// The study's sampler: `queue` (the seed's network, `study.enqueue`) first, then the
/// configured one.
pub fn build(space: &SearchSpace, queue: Vec<Params>) -> Result<Box<dyn Sampler>> {
    let inner: Box<dyn Sampler> = match space.study.sampler {
        SamplerKind::Random => Box::new(RandomSampler),
        SamplerKind::Grid => Box::new(GridSampler::new(space)?),
        SamplerKind::Tpe => Box::new(TpeSampler::from_space(space)),
        SamplerKind::Nsga2 => Box::new(Nsga2Sampler::from_space(space)),
    };
    Ok(if queue.is_empty() { inner } else { Box::new(Enqueued::new(queue, inner)) })
}

/// Finished trials below `before`, as observations; with two `objectives` or more, each with
/// its costs.
pub fn observations<'t>(
    trials: &'t BTreeMap<usize, TrialRecord>,
    before: usize,
    objectives: &[Objective],
) -> Vec<Observation<'t>> {
    trials
        .range(..before)
        .map(|(_, t)| {
            let stopped_at = matches!(t.state, TrialState::Pruned | TrialState::Paused).then_some(t.history.len());
            Observation {
                params: std::borrow::Cow::Borrowed(&t.params),
                value: t.value(),
                stopped_at,
                // Only trials trained to their end are ranked by front: the shape inference
                // behind a size is skipped for the (many) stopped ones.
                costs: if objectives.len() >= 2 && stopped_at.is_none() {
                    super::objectives::costs(t, objectives)
                } else {
                    None
                },
            }
        })
        .collect()
}

/// Draws one value of a distribution uniformly (log-uniformly where asked).
pub fn draw(dist: &Distribution, rng: &mut StdRng) -> crate::model::Value {
    random::draw(dist, rng)
}

/// One dictionary drawn uniformly from the space (inactive block parameters included).
pub fn random_params(space: &SearchSpace, rng: &mut StdRng) -> Params {
    random::sample(space, rng)
}
