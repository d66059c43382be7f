//! A trial's record: its number, dictionary, seed, state and epoch history.

use serde::{Deserialize, Serialize};

use crate::model::Params;
use crate::study::stamp::Stamp;
use crate::training::EpochMetrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    Running,
    /// Stopped at a rung by a promoting scheduler, its checkpoint kept: any worker may resume
    /// it when it is promoted. A study whose budget is spent closes the ones never promoted
    /// as pruned.
    Paused,
    Complete,
    Pruned,
    Failed,
    /// Rejected by shape inference: never launched.
    Infeasible,
}

impl TrialState {
    pub fn name(self) -> &'static str {
        match self {
            TrialState::Running => "running",
            TrialState::Paused => "paused",
            TrialState::Complete => "complete",
            TrialState::Pruned => "pruned",
            TrialState::Failed => "failed",
            TrialState::Infeasible => "infeasible",
        }
    }

    /// Terminal: it will never train again (running and paused trials will).
    pub fn is_finished(self) -> bool {
        !matches!(self, TrialState::Running | TrialState::Paused)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    pub number: usize,
    pub params: Params,
    pub seed: u64,
    pub state: TrialState,
    /// Why it was pruned, failed or infeasible.
    pub reason: Option<String>,
    pub history: Vec<EpochMetrics>,
    /// Wall seconds of the trial's process(es).
    pub secs: f64,
    /// The trial whose configuration this one runs again after its worker was lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<usize>,
    /// PBT: the trial this one was forked from, at which epoch, with which changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork: Option<Fork>,
    /// When (and on which worker) it was created, each epoch ended, and it finished.
    #[serde(default)]
    pub times: Times,
    /// Its network's size, once computed (never stored).
    #[serde(skip)]
    pub size_cache: SizeCache,
}

/// A trial's network size, computed once from its dictionary: shape inference is what a
/// multi-objective sampler would otherwise repeat for every trial at every proposal. A cache,
/// not data: two records are equal whatever their caches hold.
#[derive(Debug, Clone, Default)]
pub struct SizeCache(std::sync::OnceLock<Option<(usize, u64)>>);

impl PartialEq for SizeCache {
    fn eq(&self, _: &SizeCache) -> bool {
        true
    }
}

/// The stamps of a trial's records: created, each epoch (beside `history`), finished.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Times {
    pub created: Stamp,
    pub epochs: Vec<Stamp>,
    pub finished: Stamp,
}

impl Times {
    /// Wall seconds from creation to the finish (or the last epoch, while it runs).
    pub fn duration_secs(&self) -> Option<f64> {
        let end = self.finished.unix_secs().or_else(|| self.epochs.last()?.unix_secs())?;
        Some(end - self.created.unix_secs()?)
    }

    /// The worker that ran its last epoch (or created it).
    pub fn worker(&self) -> Option<&str> {
        self.epochs.iter().rev().chain([&self.created]).find_map(|s| s.worker.as_deref())
    }
}

/// Where a forked trial comes from (population-based training): it starts from `parent`'s
/// checkpoint after `epoch`, with `changes` made to its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fork {
    pub parent: usize,
    pub epoch: usize,
    pub changes: Vec<Change>,
    /// The paused trial this fork replaced (PBT); `None` for a retrain's replayed schedule.
    /// A worker that lost its connection mid-replacement finds its fork by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<usize>,
}

/// One parameter a fork changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub key: String,
    pub from: crate::model::Value,
    pub to: crate::model::Value,
}

impl Fork {
    /// `lr 0.001 → 0.0012, aug_shift 1 → 2`.
    pub fn describe(&self) -> String {
        if self.changes.is_empty() {
            return "no changes".into();
        }
        self.changes.iter().map(|c| format!("{} {} → {}", c.key, c.from, c.to)).collect::<Vec<_>>().join(", ")
    }
}

impl TrialRecord {
    /// A trial of one epoch at `val_acc` (unit tests of what ranks and samples trials).
    #[cfg(test)]
    pub(crate) fn one_epoch(number: usize, params: Params, state: TrialState, val_acc: f64) -> TrialRecord {
        let m = EpochMetrics::at(1, val_acc);
        TrialRecord {
            number,
            params,
            seed: 1,
            state,
            reason: None,
            history: vec![m],
            secs: 1.0,
            retry_of: None,
            fork: None,
            times: Times::default(),
            size_cache: SizeCache::default(),
        }
    }

    /// Best val_acc and its epoch, if any epoch ran.
    pub fn best(&self) -> Option<(f64, usize)> {
        crate::training::metrics::best_epoch(&self.history)
    }

    /// Whether it takes a place in the trial budget: every sampled configuration does,
    /// once; an infeasible draw, a re-run after a lost worker and a PBT fork do not.
    pub fn counts_toward_budget(&self) -> bool {
        self.state != TrialState::Infeasible && !self.is_extra()
    }

    /// A number outside the budget and the sampler's draws: a re-run or a fork.
    pub fn is_extra(&self) -> bool {
        self.retry_of.is_some() || self.fork.is_some()
    }

    /// Its network's trainable and non-trainable parameters and forward FLOPs per image, from
    /// its dictionary (shape inference; nothing measured); `None` for a network that cannot be built.
    pub fn size(&self) -> Option<(usize, u64)> {
        *self.size_cache.0.get_or_init(|| {
            let arch = crate::model::Architecture::from_params(&self.params, std::path::Path::new("")).ok()?;
            let summary = crate::model::shape::infer(&arch).ok()?;
            Some((summary.total(), summary.forward_flops()))
        })
    }

    /// Its network's inference latency, measured after its first epoch (none before that, or
    /// in records written before tune measured it).
    pub fn latency(&self) -> Option<crate::training::Latency> {
        self.history.iter().find_map(|m| m.latency)
    }

    /// The value samplers rank by: best val_acc of a trained trial.
    pub fn value(&self) -> Option<f64> {
        match self.state {
            TrialState::Complete | TrialState::Pruned | TrialState::Paused => self.best().map(|b| b.0),
            _ => None,
        }
    }
}

/// Seed of trial `n`: a function of the study seed and the number only, never of timing.
/// Kept below 2^63 so it fits TOML's integers.
pub fn trial_seed(study_seed: u64, n: usize) -> u64 {
    let mut z = study_seed.wrapping_add((n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) >> 1
}
