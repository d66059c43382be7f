//! A trial's life in this worker: its configuration sampled and recorded, its files written,
//! its process launched, each epoch recorded and judged by the scheduler, its end recorded.

use super::*;

pub(super) struct Running {
    pub(super) kill: Option<oneshot::Sender<()>>,
    pub(super) started: Instant,
    pub(super) pruned: Option<String>,
    /// The scheduler paused it at a rung (why): its process is stopped, its checkpoint kept.
    pub(super) paused: Option<String>,
    /// Stopped at the deadline after an epoch: not finished, resumes next time.
    pub(super) stopped: bool,
    /// Another worker declared it lost (this one was unreachable too long): its process is
    /// stopped and nothing more of it is recorded.
    pub(super) disowned: bool,
}

impl Running {
    /// Sends the trial its stop signal, once; false when it was already sent.
    pub(super) fn stop(&mut self) -> bool {
        match self.kill.take() {
            Some(k) => {
                let _ = k.send(());
                true
            }
            None => false,
        }
    }
}

impl Study {
    /// Samples the configuration of a reserved number and records it (launched by the
    /// caller unless infeasible). Trial n's configuration and seed depend only on the study
    /// seed, its draw index and the results of trials < n − history_lag, whichever worker
    /// samples it.
    pub(super) fn create_reserved(&mut self, r: Reservation) -> Result<Next> {
        self.sync()?;
        let (n, draw) = (r.number, r.draw);
        let ask = Ask { number: n, draw, index: draw, trials: &self.trials };
        let params = match self.sampler.propose(&self.resolved.space, &ask) {
            Proposal::Params(p) => p,
            Proposal::Wait => return Ok(Next::Wait),
            Proposal::Exhausted => return Ok(Next::Exhausted),
        };
        let study = &self.resolved.space.study;
        // Seeded by the draw, like the configuration: a re-run that took an earlier number
        // leaves the later draws' seeds as in a run without faults (draw = number when no
        // trial was ever re-run).
        let seed = trial_seed(study.seed, draw);
        let infeasible = feasibility(&params, &self.resolved.space).err();
        let created =
            Event::Created { number: n, params, seed, infeasible: infeasible.clone(), retry_of: None, fork: None };
        if !self.storage.create(&created)? {
            tracing::warn!("trial number {n} was re-queued by another worker before it was sampled here");
            return Ok(Next::Lost);
        }
        crate::study::events::apply(&mut self.trials, crate::study::events::Stamped::now(created));
        self.sync()?;
        if let Some(reason) = infeasible {
            tracing::info!("trial {n} infeasible, not launched: {reason}");
            self.consecutive_infeasible += 1;
            if self.consecutive_infeasible >= MAX_CONSECUTIVE_INFEASIBLE {
                return Err(TuneError::InfeasibleSpace {
                    file: self.resolved.space.file.clone(),
                    key: "params".into(),
                    problem: format!(
                        "{MAX_CONSECUTIVE_INFEASIBLE} sampled networks in a row collapse (last: {reason})"
                    ),
                    fix: "narrow filter, stride, pool and depth ranges, or add padding".into(),
                });
            }
        } else {
            self.consecutive_infeasible = 0;
        }
        Ok(Next::Created(n))
    }

    pub(super) fn write_trial_files(&self, n: usize) -> Result<PathBuf> {
        let t = &self.trials[&n];
        let dir = self.trial_dir(n);
        // A re-run of a lost trial starts from that trial's last checkpoint when it can see
        // it (artifacts on a shared file system, or the same machine).
        if let Some(lost) = t.retry_of
            && !dir.exists()
            && self.trial_dir(lost).is_dir()
        {
            crate::files::copy_dir(&self.trial_dir(lost), &dir)?;
            tracing::info!("trial {n} resumes trial {lost}'s checkpoint");
        }
        // A fork whose directory has no run yet (a crash came between its creation and the
        // copy of its parent's checkpoint) takes that checkpoint now, so it never trains from
        // scratch under a fork's name.
        if let Some(fork) = &t.fork
            && !dir.join("state.json").is_file()
        {
            let snapshot = scheduling::snapshot_dir(&self.trial_dir(fork.parent), fork.epoch);
            if snapshot.is_dir() {
                crate::files::copy_files(&snapshot, &dir)?;
                // The snapshot holds the parent's params; the fork trains its own.
                crate::model::params::write_params(&dir.join("params.toml"), &t.params)?;
                tracing::info!(
                    "trial {n} (a fork) takes trial {}'s checkpoint after epoch {}",
                    fork.parent,
                    fork.epoch
                );
            }
        }
        std::fs::create_dir_all(&dir).map_err(|e| TuneError::io(&dir, e))?;
        let params_path = dir.join("params.toml");
        if !params_path.exists() {
            crate::model::params::write_params(&params_path, &t.params)?;
        }
        let cfg = TrainConfig {
            seed: t.seed,
            split_seed: self.resolved.split_seed,
            ..self.resolved.space.study.training.clone()
        };
        crate::files::write_atomic(&dir.join("train.toml"), toml::to_string(&cfg).expect("serialisable").as_bytes())?;
        Ok(dir)
    }

    pub(super) fn launch(&mut self, n: usize, tx: &mpsc::UnboundedSender<Message>) -> Result<()> {
        let dir = self.write_trial_files(n)?;
        let kill = self.launcher.spawn(n, &dir, tx.clone()).map_err(|e| TuneError::io(&dir, e))?;
        self.running.insert(
            n,
            Running {
                kill: Some(kill),
                started: Instant::now(),
                pruned: None,
                paused: None,
                stopped: false,
                disowned: false,
            },
        );
        Ok(())
    }

    pub(super) fn curves(&self) -> Vec<Curve> {
        self.trials
            .values()
            // Running trials without an epoch yet count too: a PBT generation waits for them.
            .filter(|t| !t.history.is_empty() || t.state == TrialState::Running)
            .map(curve)
            .collect()
    }

    pub(super) fn on_epoch(&mut self, n: usize, m: crate::training::EpochMetrics) -> Result<()> {
        let Some(t) = self.trials.get(&n) else { return Ok(()) };
        if m.epoch != t.history.len() + 1 || self.running.get(&n).is_none_or(|r| r.disowned || r.paused.is_some()) {
            // Replayed on resume (already recorded), no longer this worker's, or trained past
            // its pause (its checkpoint has it: the resumed process reports it again).
            return Ok(());
        }
        if let Some((what, v)) = m.first_non_finite() {
            // Trials refuse to report such an epoch; a line that does is not recorded.
            tracing::warn!("trial {n}: epoch {} reports {what} = {v}; not recorded", m.epoch);
            return Ok(());
        }
        self.record(&Event::Epoch { number: n, metrics: m.clone() })?;
        self.work.epochs_run += 1;
        self.work.epoch_secs += m.secs;
        let images = self.resolved.space.study.training.subset.unwrap_or(usize::MAX);
        self.work.images += images.min(self.train_size) as f64;
        let verdict = self.scheduler.on_epoch(&curve(&self.trials[&n]), &self.curves());
        let Some(r) = self.running.get_mut(&n) else { return Ok(()) };
        if r.pruned.is_some() {
            return Ok(());
        }
        match verdict {
            Verdict::Continue => {}
            Verdict::Stop(reason) => {
                tracing::info!("trial {n} pruned: {reason}");
                r.pruned = Some(reason);
                r.stop();
            }
            Verdict::Pause(reason) => {
                tracing::info!("trial {n} paused: {reason}");
                r.paused = Some(reason);
                r.stop();
            }
        }
        Ok(())
    }

    /// Records a trial's end; returns false when the study was interrupted.
    pub(super) fn on_exit(&mut self, n: usize, outcome: Exit) -> Result<bool> {
        let Some(r) = self.running.remove(&n) else { return Ok(true) };
        if r.disowned {
            return Ok(true);
        }
        let secs = r.started.elapsed().as_secs_f64();
        let (state, reason) = match (outcome, r.pruned) {
            (_, Some(reason)) => (TrialState::Pruned, Some(reason)),
            (Exit::Success, None) => (TrialState::Complete, None),
            (Exit::Interrupted, None) | (Exit::Killed, None) => {
                self.unfinished.push(n);
                return Ok(false);
            }
            (Exit::Failed(why), None) => (TrialState::Failed, Some(why.trim().to_string())),
            (Exit::NoSpace(why), None) => {
                tracing::warn!("trial {n} stopped: its disk is full ({}); the study stops", why.trim());
                self.unfinished.push(n);
                self.stop.disk_full.get_or_insert(format!("trial {n}: {}", why.trim()));
                return Ok(false);
            }
        };
        if state == TrialState::Failed {
            tracing::warn!("trial {n} failed: {}", reason.as_deref().unwrap_or(""));
        }
        if !self.record(&Event::Finished { number: n, state, reason, secs })? {
            // Its process ended while this worker was cut off or frozen past the grace: the
            // store's verdict stands, and this result is not recorded.
            tracing::warn!(
                "trial {n} was declared lost by another worker while this one was out of reach; its result here is not recorded"
            );
            return Ok(true);
        }
        leaderboard::write_csv_with(
            &self.dir.join("leaderboard.csv"),
            &self.trials,
            &self.resolved.space.study.objectives,
        )?;
        Ok(true)
    }
}

/// A trial's val_acc curve, as schedulers see it.
pub(super) fn curve(t: &TrialRecord) -> Curve {
    Curve {
        number: t.number,
        val_acc: t.history.iter().map(|m| m.val_acc).collect(),
        finished: t.state.is_finished(),
        paused: t.state == TrialState::Paused,
        born: t.fork.as_ref().map_or(0, |f| f.epoch),
    }
}
