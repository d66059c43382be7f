//! `tune run`: the study loop. Samples dictionaries, rejects impossible networks before launch,
//! runs trials as child processes in parallel slots, prunes across trials, journals every
//! event, and resumes whatever was left running.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::journal::{Event, Journal, replay};
use super::launch::{Exit, Launcher, Message};
use super::leaderboard;
use super::pruner::{Curve, should_prune};
use super::sampler::{self, Grid, Observation};
use super::space::{Distribution, SamplerKind, SearchSpace};
use super::trial::{TrialRecord, TrialState, trial_seed};
use crate::error::{Result, TuneError};
use crate::model::{Architecture, Params, Value, infer};
use crate::training::TrainConfig;

/// Command-line overrides of the space's `[study]` settings.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub space_file: PathBuf,
    pub runs_dir: PathBuf,
    pub trials: Option<usize>,
    pub concurrency: Option<usize>,
    pub max_epochs: Option<usize>,
    pub subset: Option<usize>,
    pub seed: Option<u64>,
    pub data_dir: Option<PathBuf>,
    pub split_seed: u64,
}

/// Resolved settings written into the study directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resolved {
    pub space: SearchSpace,
    pub concurrency: usize,
    pub threads_per_trial: usize,
    pub split_seed: u64,
    pub data_dir: Option<PathBuf>,
}

impl Resolved {
    /// Reads a study directory's `settings.json`; `None` when the study has none yet.
    pub fn load(dir: &Path) -> Result<Option<Resolved>> {
        let path = dir.join("settings.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(TuneError::io(&path, e)),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| TuneError::CorruptStudy {
            path,
            problem: e.to_string(),
            fix: "the study directory is damaged: move it away to start the study afresh".into(),
        })
    }
}

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
}

const MAX_CONSECUTIVE_INFEASIBLE: usize = 200;

/// Runs (or resumes) a study to completion.
pub fn run(opts: RunOptions) -> Result<Summary> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| TuneError::Study(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(run_async(opts))
}

fn prepare(opts: &RunOptions) -> Result<(PathBuf, Resolved)> {
    let mut space = SearchSpace::from_file(&opts.space_file)?;
    let file = space.file.clone();
    let s = &mut space.study;
    // Flags join the same checked paths as the file's values.
    s.training = s
        .training
        .as_layer(&file, "study.training.")
        .flag("epochs", "--max-epochs", opts.max_epochs)?
        .flag("subset", "--subset", opts.subset)?
        .flag("split_seed", "--split-seed", Some(opts.split_seed))?
        .build()?;
    if let Some(v) = opts.trials { s.trials = v; }
    if let Some(v) = opts.seed { s.seed = v; }
    if let Some(v) = opts.concurrency { s.concurrency = Some(v); }
    let flag_err = |key: &str, problem: String, fix: String| TuneError::Config { file: file.clone(), key: key.into(), problem, fix };
    super::space::check_study(s, &flag_err)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let concurrency = s.concurrency.unwrap_or(cores).max(1);
    let resolved = Resolved { threads_per_trial: (cores / concurrency).max(1), concurrency, split_seed: opts.split_seed, data_dir: opts.data_dir.clone(), space };
    let dir = opts.runs_dir.join(&resolved.space.study.name);
    Ok((dir, resolved))
}

/// The configurations evaluated first: the seed's network (when the space holds it), then
/// `study.enqueue`, each completed with the space's fixed values and checked, so a bad entry
/// is an error naming it rather than a wasted or infeasible trial.
fn enqueued(space: &SearchSpace) -> Result<Vec<Params>> {
    let mut queue = Vec::new();
    if space.study.enqueue_default && space.study.sampler != SamplerKind::Grid {
        match default_config(space) {
            Some(p) => queue.push(p),
            None => tracing::info!("the seed's default network lies outside this space; not enqueued"),
        }
    }
    for (i, p) in space.study.enqueue.iter().enumerate() {
        let p = space.complete(p).map_err(|(key, problem)| TuneError::Config {
            file: space.file.clone(),
            key: format!("study.enqueue[{i}].{key}"),
            problem,
            fix: "give every active parameter of the space a value its distribution can produce (fixed values may be left out)".into(),
        })?;
        if let Err(reason) = feasibility(&p, space) {
            return Err(TuneError::InfeasibleSpace {
                file: space.file.clone(),
                key: format!("study.enqueue[{i}]"),
                problem: reason,
                fix: "change this configuration so its shapes fit, or remove it".into(),
            });
        }
        queue.push(p);
    }
    Ok(queue)
}

/// Networks drawn to probe a space before a study starts, and the share that must be feasible.
const PROBE_DRAWS: usize = 400;
const PROBE_MIN_FEASIBLE: usize = 8;

/// Refuses a space where nearly every network collapses (or exceeds `max_params`) before
/// anything is recorded: such a study would only fill its journal with infeasible trials.
fn probe_feasibility(space: &SearchSpace) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(space.study.seed ^ 0xFEA5);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut feasible = 0;
    for _ in 0..PROBE_DRAWS {
        let mut p = super::sampler::random_params(space, &mut rng);
        SearchSpace::prune_inactive(&mut p);
        match feasibility(&p, space) {
            Ok(()) => feasible += 1,
            Err(reason) => *reasons.entry(reason.split(':').next().unwrap_or_default().to_string()).or_default() += 1,
        }
        if feasible >= PROBE_MIN_FEASIBLE {
            return Ok(());
        }
    }
    let (layer, count) = reasons.into_iter().max_by_key(|(_, n)| *n).unwrap_or_default();
    Err(TuneError::InfeasibleSpace {
        file: space.file.clone(),
        key: "params".into(),
        problem: format!("only {feasible} of {PROBE_DRAWS} networks drawn from this space can be built ({count} fail at `{layer}`)"),
        fix: "narrow filter, stride, pool and depth ranges, add padding, or raise study.max_params".into(),
    })
}

/// The frozen settings of an existing study must agree with the file on everything but the
/// trial budget and the concurrency, or results from two different studies would mix.
fn check_frozen(dir: &Path, resolved: &Resolved) -> Result<()> {
    let Some(frozen) = Resolved::load(dir)? else { return Ok(()) };
    let (a, b) = (&frozen.space, &resolved.space);
    let same = a.params == b.params && a.study.seed == b.study.seed && a.study.sampler == b.study.sampler && a.study.pruner == b.study.pruner
        && a.study.training == b.study.training && a.study.pruning == b.study.pruning && frozen.split_seed == resolved.split_seed;
    if !same {
        return Err(TuneError::Config {
            file: resolved.space.file.clone(),
            key: "study.name".into(),
            problem: format!("study `{}` already exists in {} with other parameters, seed, sampler, pruner or training settings", b.study.name, dir.display()),
            fix: "give the study a new name, run the original space file again to resume it, or move the old directory away".into(),
        });
    }
    Ok(())
}

/// Takes the study's OS lock (`.lock`), held until the returned file is dropped — or the
/// process dies, even by kill -9. The holder's pid is written inside for the message.
fn lock(dir: &Path) -> Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    let path = dir.join(".lock");
    let mut file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(|e| TuneError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {
            let pid = std::process::id().to_string();
            file.set_len(0).and_then(|_| file.rewind()).and_then(|_| file.write_all(pid.as_bytes())).map_err(|e| TuneError::io(&path, e))?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = if holder.trim().is_empty() { "another process".to_string() } else { format!("process {}", holder.trim()) };
            Err(TuneError::Study(format!("{}: study is being run by {holder}; wait for it or stop it first", dir.display())))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(TuneError::io(&path, e)),
    }
}

/// What sampling the next trial gave.
enum Next {
    /// Trial n was recorded (running, or infeasible and never launched).
    Created(usize),
    /// TPE must wait for earlier trials to finish (see `history_lag`).
    Wait,
    /// The grid has no point left.
    Exhausted,
}

struct Running {
    kill: Option<oneshot::Sender<()>>,
    started: Instant,
    pruned: Option<String>,
}

struct Study {
    dir: PathBuf,
    resolved: Resolved,
    journal: Journal,
    trials: BTreeMap<usize, TrialRecord>,
    running: HashMap<usize, Running>,
    queue: Vec<Params>,
    grid: Option<Grid>,
    launcher: Launcher,
    next_number: usize,
    consecutive_infeasible: usize,
    epoch_secs: f64,
    epochs_run: usize,
    images: f64,
}

impl Study {
    fn trained(&self) -> usize {
        self.trials.values().filter(|t| t.state != TrialState::Infeasible).count()
    }

    fn trial_dir(&self, n: usize) -> PathBuf {
        self.dir.join("trials").join(n.to_string())
    }

    /// Samples and records the next trial number (launched by the caller unless infeasible).
    fn create_next(&mut self) -> Result<Next> {
        let n = self.next_number;
        let study = &self.resolved.space.study;
        let params = if n < self.queue.len() {
            self.queue[n].clone()
        } else {
            let visible = n.saturating_sub(study.history_lag);
            if study.sampler == SamplerKind::Tpe && (0..visible).any(|m| self.trials.get(&m).is_some_and(|t| t.state == TrialState::Running)) {
                return Ok(Next::Wait);
            }
            let history: Vec<Observation> =
                (0..visible).filter_map(|m| self.trials.get(&m)).map(|t| Observation { params: t.params.clone(), value: t.value() }).collect();
            let mut rng = StdRng::seed_from_u64(trial_seed(study.seed, n) ^ 0x5A17);
            match sampler::sample(&self.resolved.space, &history, n, &mut rng, self.grid.as_ref()) {
                Some(p) => p,
                None => return Ok(Next::Exhausted),
            }
        };
        let seed = trial_seed(study.seed, n);
        let infeasible = feasibility(&params, &self.resolved.space).err();
        self.journal.append(&Event::Created { number: n, params: params.clone(), seed, infeasible: infeasible.clone() })?;
        self.next_number += 1;
        let state = if infeasible.is_some() { TrialState::Infeasible } else { TrialState::Running };
        self.trials.insert(n, TrialRecord { number: n, params, seed, state, reason: infeasible.clone(), history: Vec::new(), secs: 0.0 });
        if let Some(reason) = infeasible {
            tracing::info!("trial {n} infeasible, not launched: {reason}");
            self.consecutive_infeasible += 1;
            if self.consecutive_infeasible >= MAX_CONSECUTIVE_INFEASIBLE {
                return Err(TuneError::InfeasibleSpace {
                    file: self.resolved.space.file.clone(),
                    key: "params".into(),
                    problem: format!("{MAX_CONSECUTIVE_INFEASIBLE} sampled networks in a row collapse (last: {reason})"),
                    fix: "narrow filter, stride, pool and depth ranges, or add padding".into(),
                });
            }
        } else {
            self.consecutive_infeasible = 0;
        }
        Ok(Next::Created(n))
    }

    fn write_trial_files(&self, n: usize) -> Result<PathBuf> {
        let t = &self.trials[&n];
        let dir = self.trial_dir(n);
        std::fs::create_dir_all(&dir).map_err(|e| TuneError::io(&dir, e))?;
        let params_path = dir.join("params.toml");
        if !params_path.exists() {
            crate::model::params::write_params(&params_path, &t.params)?;
        }
        let cfg = TrainConfig { seed: t.seed, split_seed: self.resolved.split_seed, ..self.resolved.space.study.training.clone() };
        crate::storage::write_atomic(&dir.join("train.toml"), toml::to_string(&cfg).expect("serialisable").as_bytes())?;
        Ok(dir)
    }

    fn launch(&mut self, n: usize, tx: &mpsc::UnboundedSender<Message>) -> Result<()> {
        let dir = self.write_trial_files(n)?;
        let kill = self.launcher.spawn(n, &dir, tx.clone()).map_err(|e| TuneError::io(&self.launcher.exe, e))?;
        self.running.insert(n, Running { kill: Some(kill), started: Instant::now(), pruned: None });
        Ok(())
    }

    fn curves(&self) -> Vec<Curve> {
        self.trials
            .values()
            .filter(|t| !t.history.is_empty())
            .map(|t| Curve { number: t.number, val_acc: t.history.iter().map(|m| m.val_acc).collect(), finished: t.state.is_finished() })
            .collect()
    }

    fn on_epoch(&mut self, n: usize, m: crate::training::EpochMetrics) -> Result<()> {
        let Some(t) = self.trials.get_mut(&n) else { return Ok(()) };
        if m.epoch != t.history.len() + 1 {
            return Ok(()); // replayed on resume: already journaled
        }
        if let Some((what, v)) = m.first_non_finite() {
            // Trials refuse to report such an epoch; a line that does is not recorded.
            tracing::warn!("trial {n}: epoch {} reports {what} = {v}; not recorded", m.epoch);
            return Ok(());
        }
        self.journal.append(&Event::Epoch { number: n, metrics: m.clone() })?;
        t.history.push(m.clone());
        self.epochs_run += 1;
        self.epoch_secs += m.secs;
        let images = self.resolved.space.study.training.subset.unwrap_or(usize::MAX);
        self.images += images.min(train_size_hint()) as f64;
        let space = &self.resolved.space.study;
        let curve = Curve { number: n, val_acc: self.trials[&n].history.iter().map(|m| m.val_acc).collect(), finished: false };
        if let Some(reason) = should_prune(space.pruner, &space.pruning, space.training.epochs, &curve, &self.curves())
            && let Some(r) = self.running.get_mut(&n)
            && r.pruned.is_none()
        {
            tracing::info!("trial {n} pruned: {reason}");
            r.pruned = Some(reason);
            if let Some(k) = r.kill.take() {
                let _ = k.send(());
            }
        }
        Ok(())
    }

    /// Records a trial's end; returns false when the study was interrupted.
    fn on_exit(&mut self, n: usize, outcome: Exit) -> Result<bool> {
        let Some(r) = self.running.remove(&n) else { return Ok(true) };
        let secs = r.started.elapsed().as_secs_f64();
        let (state, reason) = match (outcome, r.pruned) {
            (_, Some(reason)) => (TrialState::Pruned, Some(reason)),
            (Exit::Success, None) => (TrialState::Complete, None),
            (Exit::Interrupted, None) | (Exit::Killed, None) => return Ok(false),
            (Exit::Failed(why), None) => (TrialState::Failed, Some(why.trim().to_string())),
        };
        if state == TrialState::Failed {
            tracing::warn!("trial {n} failed: {}", reason.as_deref().unwrap_or(""));
        }
        self.journal.append(&Event::Finished { number: n, state, reason: reason.clone(), secs })?;
        if let Some(t) = self.trials.get_mut(&n) {
            t.state = state;
            t.reason = reason;
            t.secs += secs;
        }
        leaderboard::write_csv(&self.dir.join("leaderboard.csv"), &self.trials)?;
        Ok(true)
    }
}

/// Why a sampled dictionary must not be trained: its shapes collapse, or it is larger than
/// `study.max_params`.
pub fn feasibility(params: &Params, space: &SearchSpace) -> std::result::Result<(), String> {
    let arch = Architecture::from_params(params, &space.file).map_err(|e| e.to_string())?;
    let summary = infer(&arch).map_err(|e| e.to_string())?;
    match space.study.max_params {
        Some(max) if summary.total() > max => Err(format!(
            "too large: {} parameters > study.max_params {}",
            crate::model::shape::group(summary.total()),
            crate::model::shape::group(max)
        )),
        _ => Ok(()),
    }
}

/// Training images per epoch when no subset is set (for throughput figures).
fn train_size_hint() -> usize {
    TRAIN_SIZE.load(std::sync::atomic::Ordering::Relaxed)
}
static TRAIN_SIZE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The seed's default network, restricted to the space's parameters, if the space holds it.
fn default_config(space: &SearchSpace) -> Option<Params> {
    let seed = Architecture::default().to_params();
    let tr = &space.study.training;
    let mut p = Params::new();
    for (key, dist) in &space.params {
        let v = match (key.as_str(), dist) {
            (_, Distribution::Fixed(v)) => v.clone(),
            (k, _) if seed.contains_key(k) => seed[k].clone(),
            ("lr", _) => Value::Float(tr.lr),
            ("batch_size", _) => Value::Int(tr.batch_size as i64),
            ("weight_decay", _) => Value::Float(tr.weight_decay),
            _ => continue,
        };
        p.insert(key.clone(), v);
    }
    SearchSpace::prune_inactive(&mut p);
    space.complete(&p).ok()
}

fn study_bar(total: usize) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template("study [{bar:30}] {pos}/{len} trials {msg} ({elapsed})").expect("static").progress_chars("=> "));
    bar
}

fn bar_message(trials: &BTreeMap<usize, TrialRecord>) -> String {
    let c = leaderboard::state_counts(trials);
    let get = |s| c.get(&s).copied().unwrap_or(0);
    let best = trials.values().filter_map(|t| t.value().map(|v| (v, t.number))).max_by(|a, b| a.0.total_cmp(&b.0));
    format!(
        "done {} · pruned {} · failed {} · infeasible {} · running {} · best {}",
        get(TrialState::Complete), get(TrialState::Pruned), get(TrialState::Failed), get(TrialState::Infeasible), get(TrialState::Running),
        best.map_or("-".into(), |(v, n)| format!("{v:.4} (#{n})"))
    )
}

/// Everything is checked before anything is written: the space and flags, the data, the
/// enqueued configurations and the space's feasibility. Then the study directory is created,
/// locked, compared with its frozen settings and (re)written.
async fn run_async(opts: RunOptions) -> Result<Summary> {
    let (dir, resolved) = prepare(&opts)?;
    let space = &resolved.space;
    let data = crate::data::FashionMnist::load(opts.data_dir.as_deref())?;
    let splits = crate::data::Splits::new(&data.train, &data.official_test, crate::data::SplitConfig { seed: opts.split_seed, test_per_class: None });
    TRAIN_SIZE.store(splits.train.len(), std::sync::atomic::Ordering::Relaxed);
    drop(data);
    let queue = enqueued(space)?;
    probe_feasibility(space)?;
    let grid = (space.study.sampler == SamplerKind::Grid).then(|| Grid::new(space)).transpose()?;
    let original = crate::storage::read_text(&opts.space_file)?;

    std::fs::create_dir_all(dir.join("trials")).map_err(|e| TuneError::io(&dir, e))?;
    let _lock = lock(&dir)?;
    check_frozen(&dir, &resolved)?;
    // Frozen copies: the space as written, and every resolved setting.
    if !dir.join("space.toml").exists() {
        crate::storage::write_atomic(&dir.join("space.toml"), original.as_bytes())?;
    }
    crate::storage::write_atomic(&dir.join("settings.json"), serde_json::to_string_pretty(&resolved).expect("serialisable").as_bytes())?;

    let trials = replay(&dir)?;
    let fail_trials = std::env::var("TUNE_TEST_FAIL_TRIALS").ok().map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect()).unwrap_or_default();
    let launcher = Launcher {
        exe: std::env::current_exe().map_err(|e| TuneError::io("tune", e))?,
        threads: resolved.threads_per_trial,
        data_dir: opts.data_dir.clone(),
        split_seed: opts.split_seed,
        fail_trials,
    };
    let next_number = trials.keys().max().map_or(0, |m| m + 1);
    let resumable: Vec<usize> = trials.values().filter(|t| t.state == TrialState::Running).map(|t| t.number).collect();
    if !trials.is_empty() {
        tracing::info!("resuming study `{}`: {} trials recorded, {} to continue", space.study.name, trials.len(), resumable.len());
    }
    tracing::info!(
        "study `{}`: {} trials, {} slots × {} threads, sampler {:?}, pruner {:?}, up to {} epochs each → {}",
        space.study.name, space.study.trials, resolved.concurrency, resolved.threads_per_trial, space.study.sampler, space.study.pruner,
        space.study.training.epochs, dir.display()
    );
    let mut study = Study {
        journal: Journal::open(&dir),
        dir: dir.clone(),
        resolved,
        trials,
        running: HashMap::new(),
        queue,
        grid,
        launcher,
        next_number,
        consecutive_infeasible: 0,
        epoch_secs: 0.0,
        epochs_run: 0,
        images: 0.0,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let started = Instant::now();
    let budget = study.resolved.space.study.trials;
    let bar = study_bar(budget);
    bar.set_position(study.trials.values().filter(|t| t.state.is_finished() && t.state != TrialState::Infeasible).count() as u64);
    let mut pending_resume = resumable.into_iter();
    let mut interrupted = false;
    let mut grid_done = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        // Fill free slots: resumed trials first, then new ones.
        while !interrupted && study.running.len() < study.resolved.concurrency {
            if let Some(n) = pending_resume.next() {
                study.launch(n, &tx)?;
                continue;
            }
            if grid_done || study.trained() >= budget {
                break;
            }
            match study.create_next() {
                Ok(Next::Created(n)) => {
                    if study.trials[&n].state == TrialState::Running {
                        study.launch(n, &tx)?;
                    }
                }
                Ok(Next::Wait) => break,
                Ok(Next::Exhausted) => {
                    tracing::info!("grid exhausted after {} points", study.next_number);
                    grid_done = true;
                }
                Err(e) => {
                    for r in study.running.values_mut() {
                        if let Some(k) = r.kill.take() {
                            let _ = k.send(());
                        }
                    }
                    return Err(e);
                }
            }
        }
        bar.set_message(bar_message(&study.trials));
        if study.running.is_empty() {
            break;
        }
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Message::Epoch(n, m)) => study.on_epoch(n, m)?,
                Some(Message::Exit { number, outcome }) => {
                    if !study.on_exit(number, outcome)? {
                        interrupted = true;
                    } else {
                        bar.inc(1);
                        let t = &study.trials[&number];
                        if bar.is_hidden() {
                            tracing::info!("trial {number} {}: best val_acc {} after {} epochs", t.state.name(), t.best().map_or("-".into(), |b| format!("{:.4}", b.0)), t.history.len());
                        }
                    }
                }
                None => break,
            },
            _ = &mut ctrl_c, if !interrupted => {
                interrupted = true;
                for r in study.running.values_mut() {
                    if let Some(k) = r.kill.take() {
                        let _ = k.send(());
                    }
                }
            }
        }
        if interrupted {
            // Let the killed trials report, but record nothing: they stay running and resume.
            for r in study.running.values_mut() {
                if let Some(k) = r.kill.take() {
                    let _ = k.send(());
                }
            }
            while !study.running.is_empty() {
                match rx.recv().await {
                    Some(Message::Exit { number, .. }) => {
                        study.running.remove(&number);
                    }
                    Some(Message::Epoch(n, m)) => study.on_epoch(n, m)?,
                    None => break,
                }
            }
            break;
        }
    }
    bar.finish_and_clear();
    leaderboard::write_csv(&dir.join("leaderboard.csv"), &study.trials)?;
    Ok(Summary {
        dir,
        counts: leaderboard::state_counts(&study.trials),
        wall_secs: started.elapsed().as_secs_f64(),
        epochs_run: study.epochs_run,
        images_trained: study.images,
        epoch_secs: study.epoch_secs,
        interrupted,
    })
}

/// Trial slots recorded in a study's settings (1 when unknown).
pub fn slots(dir: &Path) -> usize {
    Resolved::load(dir).ok().flatten().map_or(1, |r| r.concurrency)
}

/// Loads a study directory's records (for `tune report` and `tune retrain`).
pub fn load_trials(dir: &Path) -> Result<BTreeMap<usize, TrialRecord>> {
    replay(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feasibility_rejects_collapsing_and_oversized_networks() {
        let space = |extra: &str| SearchSpace::parse(&format!("[study]\nname = \"f\"\n{extra}\n[params]\nconv0_channels = 8\n"), Path::new("f.toml")).unwrap();
        let seed_net = Architecture::default().to_params();
        assert!(feasibility(&seed_net, &space("")).is_ok());
        let err = feasibility(&seed_net, &space("max_params = 1000000")).unwrap_err();
        assert!(err.contains("too large: 3,467,402 parameters > study.max_params 1,000,000"), "{err}");
        let mut collapsing = seed_net.clone();
        for i in 0..3 {
            collapsing.insert(format!("conv{i}_stride"), Value::Int(3));
            collapsing.insert(format!("conv{i}_pool"), Value::Int(3));
        }
        let err = feasibility(&collapsing, &space("")).unwrap_err();
        assert!(err.contains("conv1_pool") && err.contains('×'), "{err}");
    }
}
