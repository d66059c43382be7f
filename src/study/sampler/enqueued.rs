//! Configurations evaluated before any sampler draws: the seed's network (when the space
//! holds it) and `study.enqueue`, in order, by draw index — so a grid behind them still
//! visits every point, and a lost worker's re-run shifts nothing.

use super::{Ask, Proposal, Sampler};
use crate::model::Params;
use crate::study::space::SearchSpace;

pub struct Enqueued {
    queue: Vec<Params>,
    then: Box<dyn Sampler>,
}

impl Enqueued {
    pub fn new(queue: Vec<Params>, then: Box<dyn Sampler>) -> Enqueued {
        Enqueued { queue, then }
    }
}

impl Sampler for Enqueued {
    fn propose(&self, space: &SearchSpace, ask: &Ask) -> Proposal {
        match self.queue.get(ask.index) {
            Some(p) => Proposal::Params(p.clone()),
            None => self.then.propose(space, &Ask { index: ask.index - self.queue.len(), ..*ask }),
        }
    }
}
