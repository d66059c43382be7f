//! `tune run`: the study loop. Samples dictionaries, rejects impossible networks before launch,
//! runs trials as child processes in parallel slots, prunes across trials, journals every
//! event, and resumes whatever was left running.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
// tokio's clock, not std's: under `run_simulated` it is the simulated one.
use tokio::time::Instant;

use indicatif::ProgressBar;
use tokio::sync::{mpsc, oneshot};

mod progress;
mod scheduling;
mod stopping;
mod store_sync;
mod trials;

use progress::study_bar;
use scheduling::Started;
use trials::{Running, curve};

use super::devices::DevicePool;
use super::events::Event;
use super::launch::{Exit, Launch, Message, ProcessLauncher};
use super::leaderboard;
use super::pruner::Curve;
use super::sampler::{Ask, Proposal, Sampler};
use super::scheduler::{self, Scheduler, Verdict};
use super::start::{self, Opened};
pub use super::start::{Resolved, RunOptions, feasibility};
use super::storage::{Cursor, Liveness, Queued, Reservation, StudyStorage, replay};
use super::trial::{TrialRecord, TrialState, trial_seed};
use crate::error::{Result, TuneError};
use crate::training::TrainConfig;

/// Figures of a finished (or interrupted) study run.
#[derive(Debug, Clone)]
pub struct Summary {
    pub dir: PathBuf,
    pub counts: BTreeMap<TrialState, usize>,
    pub wall_secs: f64,
    pub epochs_run: usize,
    pub images_trained: f64,
    pub epoch_secs: f64,
    pub interrupted: bool,
    /// The wall-clock budget ran out: trials it stopped stay running and resume next time.
    pub timed_out: bool,
    /// Every trial of the study at the end of this run (all workers').
    pub trials: BTreeMap<usize, TrialRecord>,
    /// This worker's trial slots.
    pub slots: usize,
    /// What the study optimises (empty: val_acc alone); the leaderboard ranks by it.
    pub objectives: Vec<crate::study::objectives::Objective>,
}

const MAX_CONSECUTIVE_INFEASIBLE: usize = 200;

/// Runs (or resumes) a study to completion, each trial a child process.
pub fn run(opts: RunOptions) -> Result<Summary> {
    run_with(opts, None)
}

/// Runs a study whose trials `launcher` starts (`None`: child processes). Tests script trials here.
pub fn run_with(opts: RunOptions, launcher: Option<Box<dyn Launch>>) -> Result<Summary> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| TuneError::Study(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(run_async(opts, launcher))
}

/// Runs a study on a simulated clock: a single-threaded runtime whose paused time jumps to the
/// next timer whenever every task waits, so trials that sleep through recorded epochs (the
/// replay launcher) finish hours of study in moments. Everything the loop times reads this clock.
pub fn run_simulated(opts: RunOptions, launcher: Box<dyn Launch>) -> Result<Summary> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(|e| TuneError::Study(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(run_async(opts, Some(launcher)))
}

/// What sampling the next trial gave.
enum Next {
    /// Trial n was recorded (running, or infeasible and never launched).
    Created(usize),
    /// The reservation was lost meanwhile (this worker was unreachable too long).
    Lost,
    /// TPE must wait for earlier trials to finish (see `history_lag`).
    Wait,
    /// The grid has no point left.
    Exhausted,
}

/// Why a run takes no new trial: each is learnt during the run and never unlearnt.
#[derive(Debug, Default)]
struct Stop {
    /// Ctrl-C: running trials are handed back unfinished.
    interrupted: bool,
    /// The wall-clock budget ran out: no new trial, running ones stop after their epoch.
    timed_out: bool,
    /// `reserve` found every place of the budget taken.
    budget_spent: bool,
    /// The grid has no point left.
    grid_done: bool,
    /// Why a trial could not go on: its disk is full. The study stops and says so.
    disk_full: Option<String>,
}

/// What this run trained (every worker's own; the summary's figures).
#[derive(Debug, Default)]
struct Work {
    epochs_run: usize,
    epoch_secs: f64,
    /// Training images seen, over all epochs.
    images: f64,
}

/// One run of a study: its records, its running trials and the figures of this run.
struct Study {
    dir: PathBuf,
    artifacts: PathBuf,
    resolved: Resolved,
    storage: Box<dyn StudyStorage>,
    /// Every trial of the study (all workers'), as of the last `sync`.
    trials: BTreeMap<usize, TrialRecord>,
    cursor: Cursor,
    /// Other workers may share the study: wait for their trials, heartbeat, reap.
    shared: bool,
    liveness: Liveness,
    last_beat: Option<Instant>,
    running: HashMap<usize, Running>,
    /// Trials this run stopped unfinished (Ctrl-C, the deadline): handed back at the end.
    unfinished: Vec<usize>,
    /// A number reserved and not sampled yet (TPE waits for earlier results).
    pending: Option<Reservation>,
    sampler: Box<dyn Sampler>,
    scheduler: Box<dyn Scheduler>,
    launcher: Box<dyn Launch>,
    /// Why this run takes no new trial, as it learns it.
    stop: Stop,
    consecutive_infeasible: usize,
    /// What this run trained, for its summary.
    work: Work,
    train_size: usize,
    bar: ProgressBar,
    started: Instant,
}

impl Study {
    /// Trials that took a place in the budget (each trained configuration once).
    fn budgeted(&self) -> usize {
        self.trials.values().filter(|t| t.counts_toward_budget()).count()
    }

    fn trial_dir(&self, n: usize) -> PathBuf {
        self.artifacts.join(n.to_string())
    }
}

impl Study {
    /// A study opened by [`start::open`], launching trials through `launcher`.
    fn new(opened: Opened, launcher: Box<dyn Launch>) -> Study {
        let Opened { dir, resolved, sampler, trials, train_size, storage, artifacts, shared, timing, placement: _ } =
            opened;
        let liveness = timing.liveness;
        let space = &resolved.space.study;
        let left_running = trials.values().filter(|t| t.state == TrialState::Running).count();
        if !trials.is_empty() {
            tracing::info!(
                "resuming study `{}`: {} trials recorded, {} running or queued",
                space.name,
                trials.len(),
                left_running
            );
        }
        tracing::info!(
            "study `{}`: {} trials, {} slots × {} threads, sampler {:?}, pruner {:?}, up to {} epochs each → {} ({})",
            space.name,
            space.trials,
            resolved.concurrency,
            resolved.threads_per_trial,
            space.sampler,
            space.pruner,
            space.training.epochs,
            dir.display(),
            storage.location()
        );
        let bar = study_bar(space.trials);
        let scheduler = scheduler::of(&resolved.space);
        Study {
            scheduler,
            storage,
            dir,
            artifacts,
            resolved,
            trials: BTreeMap::new(),
            cursor: Cursor::START,
            shared,
            liveness,
            last_beat: None,
            running: HashMap::new(),
            unfinished: Vec::new(),
            pending: None,
            sampler,
            launcher,
            stop: Stop::default(),
            consecutive_infeasible: 0,
            work: Work::default(),
            train_size,
            bar,
            started: Instant::now(),
        }
    }

    /// Fills free slots: queued trials first (left running by an earlier run, released by a
    /// stopped worker, re-runs of lost ones), then new ones, until the budget is allocated,
    /// TPE must wait for earlier results, or the grid is exhausted.
    fn fill_slots(&mut self, tx: &mpsc::UnboundedSender<Message>) -> Result<()> {
        while !self.stop.interrupted && !self.stop.timed_out && self.running.len() < self.resolved.concurrency {
            if self.pending.is_none() {
                match self.storage.take_queued()? {
                    Some(Queued::Run(n)) => {
                        if self.await_record(n)? {
                            self.launch(n, tx)?;
                            continue;
                        }
                        self.storage.release(&[n])?;
                        break;
                    }
                    Some(Queued::Sample(r)) => self.pending = Some(r),
                    None => match self.next_from_scheduler(tx)? {
                        Started::Yes => continue,
                        Started::Wait => break,
                        Started::No if self.stop.grid_done => {
                            self.close_paused_if_idle()?;
                            break;
                        }
                        Started::No => match self.storage.reserve(self.resolved.space.study.trials)? {
                            Some(r) => self.pending = Some(r),
                            None if !self.stop.budget_spent => {
                                // Every place in the budget is taken: the scheduler may still
                                // have paused trials to resume or fork.
                                self.stop.budget_spent = true;
                                continue;
                            }
                            None => {
                                self.close_paused_if_idle()?;
                                break;
                            }
                        },
                    },
                }
            }
            let r = self.pending.expect("reserved above");
            match self.create_reserved(r)? {
                Next::Created(n) => {
                    self.pending = None;
                    if self.trials[&n].state == TrialState::Running {
                        self.launch(n, tx)?;
                    }
                }
                Next::Lost => self.pending = None,
                Next::Wait => break,
                Next::Exhausted => {
                    self.pending = None;
                    self.storage.cancel(r)?;
                    tracing::info!("grid exhausted after {} points", self.trials.len());
                    self.stop.grid_done = true;
                }
            }
        }
        self.show_progress();
        Ok(())
    }

    /// Whether this worker has nothing left to do: no trial of its own, and (when others
    /// share the study) none of theirs it might have to take over.
    fn done(&self) -> bool {
        if !self.running.is_empty() {
            return false;
        }
        if !self.shared || self.stop.interrupted || self.stop.timed_out {
            return true;
        }
        if self.pending.is_some() {
            return false;
        }
        let allocated = self.stop.grid_done || self.budgeted() >= self.resolved.space.study.trials;
        allocated && self.trials.values().all(|t| t.state.is_finished())
    }

    /// Periodic work: read other workers' records; with shared storage, renew this worker's
    /// heartbeats and re-queue trials whose workers were lost.
    fn tick(&mut self) -> Result<()> {
        self.sync()?;
        if self.shared && self.last_beat.is_none_or(|t| t.elapsed() >= self.liveness.heartbeat) {
            self.last_beat = Some(Instant::now());
            let mine: Vec<usize> = self.running.keys().copied().chain(self.pending.map(|r| r.number)).collect();
            self.storage.heartbeat(&mine)?;
            let reaped = self.storage.reap(&self.liveness)?;
            for r in &reaped {
                tracing::warn!("trial {}: {}", r.lost, r.reason);
            }
            if !reaped.is_empty() {
                self.sync()?; // the failures and re-runs just recorded
            }
        }
        self.show_progress();
        Ok(())
    }

    /// Handles one message from a trial.
    fn handle(&mut self, msg: Message) -> Result<()> {
        match msg {
            Message::Epoch(n, m) => {
                self.on_epoch(n, m)?;
                if self.stop.timed_out {
                    self.stop_after_epoch(n);
                }
                Ok(())
            }
            Message::Exit { number, outcome } => {
                if matches!(outcome, Exit::Killed | Exit::Interrupted)
                    && let Some(reason) = self.running.get(&number).and_then(|r| r.paused.clone())
                {
                    return self.on_paused(number, reason);
                }
                let stopped = self.running.get(&number).is_some_and(|r| r.stopped && r.pruned.is_none());
                if stopped && matches!(outcome, Exit::Killed | Exit::Interrupted) {
                    // Stopped at the deadline: nothing to record, it resumes from its last epoch.
                    self.running.remove(&number);
                    self.unfinished.push(number);
                    return Ok(());
                }
                if !self.on_exit(number, outcome)? {
                    self.interrupt();
                    return Ok(());
                }
                if let Some(t) = self.trials.get(&number)
                    && self.bar.is_hidden()
                {
                    tracing::info!(
                        "trial {number} {}: best val_acc {} after {} epochs",
                        t.state.name(),
                        t.best().map_or("-".into(), |b| format!("{:.4}", b.0)),
                        t.history.len()
                    );
                }
                Ok(())
            }
        }
    }
}

/// How often the loop wakes without messages: to read other workers' records, and (shared
/// storage) to heartbeat. Short enough that an idle worker notices new results promptly.
fn tick_period(liveness: &Liveness) -> std::time::Duration {
    liveness.heartbeat.min(std::time::Duration::from_secs(1))
}

/// Opens the study, then alternates filling slots and handling trial messages until this
/// worker has nothing left to do (budget allocated and trials done, grid exhausted, Ctrl-C).
async fn run_async(opts: RunOptions, launcher: Option<Box<dyn Launch>>) -> Result<Summary> {
    let opened = start::open(&opts)?;
    let budget = opts.timeout.or(opened.timing.timeout);
    let deadline = budget.map(|b| tokio::time::Instant::now() + b);
    if let Some(p) = &opened.placement {
        tracing::info!("trials placed on {p}, each process seeing only its own device");
    }
    let launcher = match launcher {
        Some(l) => l,
        None => Box::new(ProcessLauncher {
            exe: std::env::current_exe().map_err(|e| TuneError::io("tune", e))?,
            threads: opened.resolved.threads_per_trial,
            data_dir: opts.data_dir.clone(),
            split_seed: opts.split_seed,
            devices: opened.placement.as_ref().map(DevicePool::new),
        }),
    };
    let mut study = Study::new(opened, launcher);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    // Without a budget the deadline is never polled (the branch below is disabled).
    let out_of_time = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now));
    tokio::pin!(out_of_time);
    let mut ticker = tokio::time::interval(tick_period(&study.liveness));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = async {
        study.tick()?;
        loop {
            study.fill_slots(&tx)?;
            if study.done() {
                break;
            }
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => study.handle(msg)?,
                    None => break,
                },
                _ = ticker.tick() => study.tick()?,
                _ = &mut ctrl_c, if !study.stop.interrupted => study.interrupt(),
                _ = &mut out_of_time, if deadline.is_some() && !study.stop.timed_out => study.time_out(),
            }
            if study.stop.interrupted {
                study.drain(&mut rx).await?;
                break;
            }
        }
        Ok::<(), TuneError>(())
    }
    .await;
    if let Err(e) = result {
        // Stop the trial processes; what was recorded stays, and the same command resumes.
        study.interrupt();
        return Err(e);
    }
    study.finish()
}

/// Loads a study directory's records (for `tune report` and `tune retrain`).
pub fn load_trials(dir: &Path) -> Result<BTreeMap<usize, TrialRecord>> {
    replay(dir)
}

#[cfg(test)]
mod tests;
