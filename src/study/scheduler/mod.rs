//! The scheduler seam of the study loop (Ray Tune's `TrialScheduler`, Syne Tune's
//! schedulers): after each epoch a trial reports, it says continue, pause or stop; when a slot
//! frees, it says whether a paused trial goes on there before the sampler proposes a new one.
//! Schedulers are pure functions of the trials' curves, so their decisions are tested with
//! tables of cases.

mod pbt;
mod promotion;

pub use pbt::{Pbt, perturb};
pub use promotion::Promotion;

use super::pruner::{Curve, Pruning};
use super::settings::{PrunerKind, SchedulerKind};
use super::space::SearchSpace;

/// What happens to a trial after the epoch it just reported.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Continue,
    /// Stop it now and keep its checkpoint: it may be resumed later (why, for the records).
    Pause(String),
    /// Stop it for good (pruned, and why).
    Stop(String),
}

/// What a free slot runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    /// A new configuration from the sampler (when the budget has room).
    Sample,
    /// Nothing yet: a paused trial waits for running ones to catch up.
    Wait,
    /// Paused trial n, from its checkpoint.
    Resume(usize),
    /// Paused trial `replaces` ends; a new trial starts from `parent`'s checkpoint after
    /// `epoch` with perturbed training keys (PBT's exploit and explore).
    Fork { replaces: usize, parent: usize, epoch: usize },
}

pub trait Scheduler: Send {
    /// Decides for `trial` after its latest epoch; `all` holds every trial's curve.
    fn on_epoch(&self, trial: &Curve, all: &[Curve]) -> Verdict;

    /// A slot is free: the paused trial that goes on in it, if any (before any new trial).
    fn promote(&self, _all: &[Curve]) -> Option<usize> {
        None
    }

    /// A slot is free: what runs there. `can_sample`: the budget has room for a new
    /// configuration. By default a promotion if there is one, else a new configuration.
    fn next(&self, all: &[Curve], _can_sample: bool) -> Slot {
        self.promote(all).map_or(Slot::Sample, Slot::Resume)
    }

    /// Whether a paused trial's checkpoint is kept as it was at the pause (forks start there).
    fn snapshots(&self) -> bool {
        false
    }

    /// Why paused trial `trial` ends for good when the study has nothing left to run.
    fn close_reason(&self, trial: &Curve, _all: &[Curve]) -> String {
        format!("paused after epoch {} and never resumed", trial.val_acc.len())
    }
}

/// Today's pruners as stop-only schedulers: their decisions, unchanged.
pub struct Stopping(pub Pruning);

impl Scheduler for Stopping {
    fn on_epoch(&self, trial: &Curve, all: &[Curve]) -> Verdict {
        match self.0.should_stop(trial, all) {
            Some(reason) => Verdict::Stop(reason),
            None => Verdict::Continue,
        }
    }
}

/// The study's scheduler, as its `[study]` table says.
pub fn of(space: &SearchSpace) -> Box<dyn Scheduler> {
    let s = &space.study;
    match (s.scheduler, s.pruner) {
        (SchedulerKind::Promote, PrunerKind::Asha) => Box::new(Promotion::asha(&s.pruning, s.training.epochs)),
        (SchedulerKind::Promote, PrunerKind::Hyperband) => {
            Box::new(Promotion::hyperband(&s.pruning, s.training.epochs))
        }
        (SchedulerKind::Pbt, _) => Box::new(Pbt::new(&s.pbt, s.training.epochs)),
        // The space's check refuses `promote` with any other pruner.
        _ => Box::new(Stopping(Pruning::of(space))),
    }
}

#[cfg(test)]
mod loop_tests;
