//! How a run ends: the deadline (running trials stop after their next epoch), Ctrl-C or an
//! error (every trial stopped, its last epochs drained), then the unfinished trials handed
//! back and the run's figures.

use super::*;

impl Study {
    /// The wall-clock budget ran out: no new trial starts, and each running trial is stopped
    /// once it reports its next epoch (so no finished epoch is lost).
    pub(super) fn time_out(&mut self) {
        self.stop.timed_out = true;
        tracing::info!(
            "time budget reached: no new trials; {} running trial(s) stop after their current epoch",
            self.running.len()
        );
    }

    pub(super) fn stop_after_epoch(&mut self, n: usize) {
        if let Some(r) = self.running.get_mut(&n)
            && r.stop()
        {
            r.stopped = true;
        }
    }

    /// Stops every running trial; they stay `running` in the records and resume next time.
    pub(super) fn interrupt(&mut self) {
        self.stop.interrupted = true;
        for r in self.running.values_mut() {
            r.stop();
        }
    }

    /// After an interruption: lets the stopped trials report their last epochs, records nothing else.
    pub(super) async fn drain(&mut self, rx: &mut mpsc::UnboundedReceiver<Message>) -> Result<()> {
        while !self.running.is_empty() {
            match rx.recv().await {
                Some(Message::Exit { number, outcome }) => {
                    // A pause decided before the interruption is recorded as one.
                    if matches!(outcome, Exit::Killed | Exit::Interrupted)
                        && let Some(reason) = self.running.get(&number).and_then(|r| r.paused.clone())
                    {
                        self.on_paused(number, reason)?;
                    } else if self.running.remove(&number).is_some_and(|r| !r.disowned) {
                        self.unfinished.push(number);
                    }
                }
                Some(Message::Epoch(n, m)) => self.on_epoch(n, m)?,
                None => break,
            }
        }
        Ok(())
    }

    /// Hands unfinished trials back, writes the final leaderboard and the run's figures.
    pub(super) fn finish(mut self) -> Result<Summary> {
        self.bar.finish_and_clear();
        // An unsampled reservation goes back too: another worker (or the next run) samples it.
        self.unfinished.extend(self.pending.take().map(|r| r.number));
        self.storage.release(&self.unfinished)?;
        leaderboard::write_csv_with(
            &self.dir.join("leaderboard.csv"),
            &self.trials,
            &self.resolved.space.study.objectives,
        )?;
        if let Some(what) = self.stop.disk_full.take() {
            return Err(TuneError::NoSpace { what });
        }
        Ok(Summary {
            counts: leaderboard::state_counts(&self.trials),
            wall_secs: self.started.elapsed().as_secs_f64(),
            epochs_run: self.work.epochs_run,
            images_trained: self.work.images,
            epoch_secs: self.work.epoch_secs,
            interrupted: self.stop.interrupted,
            timed_out: self.stop.timed_out,
            slots: self.resolved.concurrency,
            objectives: self.resolved.space.study.objectives.clone(),
            trials: self.trials,
            dir: self.dir,
        })
    }
}
