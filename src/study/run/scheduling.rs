//! What the loop does with the scheduler's answers: a free slot resumes a paused trial, forks
//! one (PBT), or goes to a new configuration; a paused trial's exit records its pause (and
//! its snapshot); a spent budget closes the paused trials never promoted.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use super::Study;
use crate::error::Result;
use crate::study::events::Event;
use crate::study::launch::Message;
use crate::study::leaderboard;
use crate::study::scheduler::{self, Slot};
use crate::study::trial::{Fork, TrialState, trial_seed};

/// What the scheduler did with a free slot.
pub(super) enum Started {
    /// A trial was resumed or forked there (or another worker took it first: look again).
    Yes,
    /// Nothing: the slot goes to a new configuration if the budget has room.
    No,
    /// Nothing yet: the scheduler waits for running trials.
    Wait,
}

/// Where a paused trial's checkpoint is kept as it was at epoch `epoch` (PBT forks start there).
pub(super) fn snapshot_dir(trial_dir: &Path, epoch: usize) -> PathBuf {
    trial_dir.join(format!("pbt-epoch-{epoch}"))
}

impl Study {
    /// A slot is free: asks the scheduler what runs there.
    pub(super) fn next_from_scheduler(&mut self, tx: &mpsc::UnboundedSender<Message>) -> Result<Started> {
        self.sync()?;
        let can_sample = !self.stop.grid_done && !self.stop.budget_spent;
        match self.scheduler.next(&self.curves(), can_sample) {
            Slot::Sample => Ok(Started::No),
            Slot::Wait => Ok(Started::Wait),
            Slot::Resume(n) => self.resume(n, tx),
            Slot::Fork { replaces, parent, epoch } => self.fork(replaces, parent, epoch, tx),
        }
    }

    /// Claims and relaunches paused trial `n`. Another worker claiming it first makes this
    /// slot wait for the next tick (by then its record is read), not ask again at once.
    fn resume(&mut self, n: usize, tx: &mpsc::UnboundedSender<Message>) -> Result<Started> {
        if !self.storage.resume(n)? {
            self.sync()?;
            return Ok(Started::Wait);
        }
        crate::study::events::apply(&mut self.trials, crate::study::events::Stamped::now(Event::Resumed { number: n }));
        tracing::info!("trial {n} promoted: resumes from its checkpoint after epoch {}", self.trials[&n].history.len());
        self.launch(n, tx)?;
        Ok(Started::Yes)
    }

    /// PBT's exploit and explore: paused trial `replaces` ends, and a new trial starts from
    /// `parent`'s snapshot after `epoch` with perturbed training keys. Its epochs up to there
    /// are recorded as its parent's, so its curve continues the parent's.
    fn fork(
        &mut self,
        replaces: usize,
        parent: usize,
        epoch: usize,
        tx: &mpsc::UnboundedSender<Message>,
    ) -> Result<Started> {
        // Checked before anything is recorded: when the parent's snapshot is not here (its
        // artifacts are on another machine), the trial goes on instead of being replaced.
        let snapshot = snapshot_dir(&self.trial_dir(parent), epoch);
        if !snapshot.is_dir() {
            tracing::warn!(
                "PBT: trial {parent}'s checkpoint at epoch {epoch} is not at {}; trial {replaces} goes on instead of being replaced (with several workers, give them one --artifacts directory on a shared file system)",
                snapshot.display()
            );
            return self.resume(replaces, tx);
        }
        let study = &self.resolved.space.study;
        let (value, parent_value) = (self.trials[&replaces].best(), super::curve(&self.trials[&parent]).best_at(epoch));
        let reason = format!(
            "PBT step at epoch {epoch}: val_acc {} in the bottom {:.0}%; replaced by a fork of trial {parent} ({})",
            value.map_or("-".into(), |v| format!("{:.4}", v.0)),
            100.0 * study.pbt.quantile,
            parent_value.map_or("-".into(), |v| format!("{v:.4}")),
        );
        let closed = Event::Finished { number: replaces, state: TrialState::Pruned, reason: Some(reason), secs: 0.0 };
        let mut rng = rand::SeedableRng::seed_from_u64(trial_seed(study.seed ^ 0x5EED_F0C5, replaces * 1000 + epoch));
        let (params, changes) =
            scheduler::perturb(&self.resolved.space, &self.trials[&parent].params, &study.pbt, &mut rng);
        let fork = Fork { parent, epoch, changes, replaces: Some(replaces) };
        let study_seed = study.seed;
        let created = |number| Event::Created {
            number,
            params: params.clone(),
            seed: trial_seed(study_seed, number),
            infeasible: None,
            retry_of: None,
            fork: Some(fork.clone()),
        };
        let Some(number) = self.storage.replace_paused(&closed, &created)? else {
            self.sync()?;
            return Ok(Started::Wait); // another worker decided first
        };
        // Applied here too: a shared store shows them to readers only once every older
        // transaction has ended, and the fork runs now.
        let journal = crate::study::events::Stamped::now;
        crate::study::events::apply(&mut self.trials, journal(closed));
        crate::study::events::apply(&mut self.trials, journal(created(number)));
        tracing::info!("trial {replaces} replaced: fork of trial {parent} after epoch {epoch} ({})", fork.describe());
        self.sync()?;
        // Files first, then the inherited epochs: a crash in between leaves a fork whose
        // process resumes its checkpoint and reports those epochs itself.
        let dir = self.trial_dir(number);
        crate::files::copy_files(&snapshot, &dir)?;
        crate::model::params::write_params(&dir.join("params.toml"), &params)?;
        let inherited: Vec<_> = self.trials[&parent].history.iter().take(epoch).cloned().collect();
        for metrics in inherited {
            self.record(&Event::Epoch { number, metrics })?;
        }
        self.launch(number, tx)?;
        Ok(Started::Yes)
    }

    /// The budget is spent and nothing runs anywhere: paused trials that were not promoted
    /// never will be, so they end as pruned (a study stopped early keeps them paused).
    pub(super) fn close_paused_if_idle(&mut self) -> Result<()> {
        self.sync()?;
        if !self.running.is_empty()
            || self.pending.is_some()
            || self.trials.values().any(|t| t.state == TrialState::Running)
        {
            return Ok(());
        }
        let curves = self.curves();
        for c in curves.iter().filter(|c| c.paused) {
            let reason = self.scheduler.close_reason(c, &curves);
            let finished =
                Event::Finished { number: c.number, state: TrialState::Pruned, reason: Some(reason), secs: 0.0 };
            if self.storage.close_paused(&finished)? {
                crate::study::events::apply(&mut self.trials, crate::study::events::Stamped::now(finished));
            }
        }
        self.sync()?;
        leaderboard::write_csv_with(
            &self.dir.join("leaderboard.csv"),
            &self.trials,
            &self.resolved.space.study.objectives,
        )
    }

    /// A trial the scheduler paused has stopped: its pause is recorded, so any worker may
    /// resume it from its checkpoint.
    pub(super) fn on_paused(&mut self, n: usize, reason: String) -> Result<()> {
        let Some(r) = self.running.remove(&n) else { return Ok(()) };
        if r.disowned {
            return Ok(());
        }
        let secs = r.started.elapsed().as_secs_f64();
        if self.scheduler.snapshots() {
            let dir = self.trial_dir(n);
            crate::files::copy_files(&dir, &snapshot_dir(&dir, self.trials[&n].history.len()))?;
        }
        self.record(&Event::Paused { number: n, reason, secs })?;
        leaderboard::write_csv_with(
            &self.dir.join("leaderboard.csv"),
            &self.trials,
            &self.resolved.space.study.objectives,
        )
    }
}
