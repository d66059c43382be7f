//! The training loop: Adam on cross-entropy, validation after every epoch, early stopping and
//! learning-rate reduction on val_acc, the best epoch's weights kept, and a resumable state
//! written after every epoch (so kill -9 loses at most the epoch in flight).

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::config::LrSchedule;
use super::config::TrainConfig;
use super::metrics::{self, EpochMetrics};
use super::schedule::{EarlyStopping, Plateau, StepSchedule};
use crate::data::augment::Augment;
use crate::data::{Images, PIXELS};
use crate::error::{Result, TuneError};
use crate::model::{Architecture, Cnn};

/// Images and the index lists to train and validate on.
pub struct TrainData<'a> {
    pub train_images: &'a Images,
    pub train: Vec<usize>,
    pub val_images: &'a Images,
    pub val: Vec<usize>,
}

/// How a run shows its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// A bar per epoch on a terminal, a log line per epoch otherwise.
    Human,
    /// Nothing but what the observer does (trial processes stream JSON).
    Silent,
}

/// Files in a training output directory.
pub struct RunFiles {
    pub dir: PathBuf,
}

impl RunFiles {
    pub fn best(&self) -> PathBuf {
        self.dir.join("best.bpk")
    }
    fn last(&self) -> PathBuf {
        self.dir.join("last.bpk")
    }
    fn last_optim(&self) -> PathBuf {
        self.dir.join("last_optim.bpk")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.csv")
    }
}

/// Everything needed to continue a run after the last finished epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    pub history: Vec<EpochMetrics>,
    pub early: EarlyStopping,
    pub plateau: Plateau,
    pub lr: f64,
    /// Early stopping ended the run.
    pub finished: bool,
    /// The configured learning rate the run last trained with: a run resumed with another one
    /// (a PBT fork, a replayed schedule) rescales its current rate to it, plateau cuts kept.
    #[serde(default)]
    pub base_lr: Option<f64>,
    /// The steps a step-wise schedule spans, fixed when the run starts: a resume with more
    /// epochs continues at the schedule's final rate instead of re-planning what was run.
    #[serde(default)]
    pub plan_steps: Option<usize>,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub history: Vec<EpochMetrics>,
    pub best_epoch: usize,
    pub best_val_acc: f64,
    pub stopped_early: bool,
}

/// Loss, accuracy and the predicted class of every evaluated image.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub loss: f64,
    pub acc: f64,
    pub predictions: Vec<u8>,
}

fn mix(seed: u64, salt: u64) -> u64 {
    // SplitMix64 finaliser: distinct, well-spread seeds per (seed, epoch).
    let mut z = seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One batch as tensors; `prepare` sees the scaled pixels first (training augmentation).
fn batch_tensors(
    images: &Images,
    idx: &[usize],
    device: &Device,
    px: &mut Vec<f32>,
    labels: &mut Vec<i64>,
    prepare: &mut dyn FnMut(&mut [f32]),
) -> (Tensor<4>, Tensor<1, Int>) {
    images.gather(idx, px, labels);
    prepare(px);
    let n = idx.len();
    let x = Tensor::<4>::from_data(TensorData::new(std::mem::take(px), [n, 1, 28, 28]), device);
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [n]), device);
    (x, y)
}

/// Writes a run directory's `params.toml` (every architecture key explicit, plus the
/// dictionary's training keys) and `train.toml` (the resolved settings).
pub fn write_run_files(
    dir: &Path,
    arch: &Architecture,
    params: &crate::model::Params,
    cfg: &TrainConfig,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| TuneError::io(dir, e))?;
    for (name, text) in run_files(arch, params, cfg) {
        crate::files::write_atomic(&dir.join(name), text.as_bytes())?;
    }
    Ok(())
}

/// The files that describe a run (`params.toml`, `train.toml`) and their contents.
fn run_files(arch: &Architecture, params: &crate::model::Params, cfg: &TrainConfig) -> [(&'static str, String); 2] {
    let mut resolved = arch.to_params();
    resolved.extend(
        params
            .iter()
            .filter(|(k, _)| crate::model::params::TRAINING_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    [
        ("params.toml", toml::to_string(&resolved).expect("a flat map of numbers and strings serialises")),
        ("train.toml", toml::to_string(cfg).expect("serialisable")),
    ]
}

/// Whether `dir` holds a run of exactly this network and these settings (so it may be resumed).
/// The settings are compared as settings, not as text, so a run written before a setting
/// existed (its default then implied) is still the same run.
pub fn same_run(dir: &Path, arch: &Architecture, params: &crate::model::Params, cfg: &TrainConfig) -> bool {
    let [(params_name, params_text), (train_name, _)] = run_files(arch, params, cfg);
    let read = |name: &str| std::fs::read_to_string(dir.join(name));
    let cfg = TrainConfig { plan_epochs: None, ..cfg.clone() };
    read(params_name).is_ok_and(|found| found == params_text)
        && read(train_name).is_ok_and(|found| toml::from_str::<TrainConfig>(&found).is_ok_and(|c| c == cfg))
}

/// The training indices of a run: the train split, or its stratified subset.
pub fn training_indices(images: &Images, splits: &crate::data::Splits, cfg: &TrainConfig) -> Vec<usize> {
    match cfg.subset {
        Some(n) => crate::data::split::stratified_subset(images, &splits.train, n, cfg.seed),
        None => splits.train.clone(),
    }
}

fn checkpoint_err(path: &Path, e: impl std::fmt::Display) -> TuneError {
    TuneError::Checkpoint { path: path.to_path_buf(), problem: e.to_string() }
}

/// Saves a model through a temporary file so a crash never leaves a torn checkpoint.
pub fn save_model(model: &Cnn, path: &Path) -> Result<()> {
    let tmp = crate::files::tmp_path(path);
    model.clone().save_file(&tmp).map_err(|e| checkpoint_err(path, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TuneError::io(path, e))
}

/// Loads weights saved by [`save_model`] into a freshly built model of the same architecture.
pub fn load_model(arch: &Architecture, path: &Path, device: &Device) -> Result<Cnn> {
    if !path.is_file() {
        return Err(checkpoint_err(path, "file not found"));
    }
    Cnn::new(arch, device)?.try_load_file(path).map_err(|e| checkpoint_err(path, e))
}

/// Evaluates `model` (switched to inference) on `indices` of `images`, in batches of 500.
pub fn evaluate(model: &Cnn, images: &Images, indices: &[usize], device: &Device) -> Evaluation {
    let device = device.clone().inner();
    let model = model.valid();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let (mut px, mut labels) = (Vec::with_capacity(500 * PIXELS), Vec::new());
    let (mut loss_sum, mut correct, mut predictions) = (0.0f64, 0usize, Vec::with_capacity(indices.len()));
    for chunk in indices.chunks(500) {
        let (x, y) = batch_tensors(images, chunk, &device, &mut px, &mut labels, &mut |_| {});
        let logits = model.forward(x);
        loss_sum += loss_fn.forward(logits.clone(), y).into_scalar::<f32>() as f64 * chunk.len() as f64;
        let pred: Vec<i64> =
            logits.argmax(1).into_data().convert::<i64>().try_to_vec::<i64>().expect("argmax gives integers");
        correct += pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
        predictions.extend(pred.iter().map(|&p| p as u8));
    }
    let n = indices.len().max(1) as f64;
    Evaluation { loss: loss_sum / n, acc: correct as f64 / n, predictions }
}

/// Trains `arch` and writes `metrics.csv`, `best.bpk` and the resumable state into `out`.
/// With `resume`, continues from the state found there. `observer` sees every epoch as it ends.
#[allow(clippy::too_many_arguments)]
pub fn train(
    data: &TrainData,
    arch: &Architecture,
    cfg: &TrainConfig,
    out: &Path,
    device: &Device,
    resume: bool,
    display: Display,
    observer: &mut dyn FnMut(&EpochMetrics),
) -> Result<Outcome> {
    std::fs::create_dir_all(out).map_err(|e| TuneError::io(out, e))?;
    let files = RunFiles { dir: out.to_path_buf() };
    crate::backend::configure_kernels(cfg.precision == super::config::Precision::Bf16).map_err(|why| {
        TuneError::Config {
            file: out.join("train.toml"),
            key: "precision".into(),
            problem: format!("bf16 is not available here: {why}"),
            fix: "use precision = \"fp32\" (the default)".into(),
        }
    })?;
    let ad = device.clone().autodiff();
    let mut optim = super::optimizer::build(cfg);

    let resumed = if resume && files.state().is_file() { Some(read_state(&files.state())?) } else { None };
    let (mut model, mut state) = match resumed {
        Some(mut state) => {
            if let Some(base) = state.base_lr
                && base != cfg.lr
            {
                state.lr = cfg.lr * state.lr / base;
            }
            state.base_lr = Some(cfg.lr);
            if state.finished && !cfg.lr_schedule.stops_early() && state.history.len() < cfg.epochs {
                // Stopped at its patience by a tune from before step-wise schedules ran to
                // their end: the epochs so far are what a run to the end trains, so it goes on.
                tracing::info!(
                    "{}: the {:?} schedule was stopped early at epoch {}; it now runs to its end",
                    out.display(),
                    cfg.lr_schedule,
                    state.history.len()
                );
                state.finished = false;
            }
            let model = load_model(arch, &files.last(), &ad)?;
            optim = optim.load(files.last_optim()).map_err(|e| checkpoint_err(&files.last_optim(), e))?;
            (model, state)
        }
        None => {
            crate::backend::seed(&ad, cfg.seed);
            let state = RunState {
                history: Vec::new(),
                early: EarlyStopping::new(cfg.patience),
                plateau: Plateau::new(cfg.lr_patience, cfg.lr_factor, cfg.min_lr),
                lr: cfg.lr,
                finished: false,
                base_lr: Some(cfg.lr),
                plan_steps: None,
            };
            (Cnn::new(arch, &ad)?, state)
        }
    };
    for m in &state.history {
        observer(m);
    }

    // Label smoothing shapes the training loss only; evaluation scores the plain one.
    let smoothing = (cfg.label_smoothing > 0.0).then_some(cfg.label_smoothing as f32);
    let loss_fn = CrossEntropyLossConfig::new().with_smoothing(smoothing).init(&ad);
    let (mut px, mut labels) = (Vec::with_capacity(cfg.batch_size * PIXELS), Vec::new());
    let batches = data.train.len().div_ceil(cfg.batch_size) as u64;
    let planned = cfg.plan_epochs.unwrap_or(cfg.epochs) * batches as usize;
    if cfg.lr_schedule != super::config::LrSchedule::Plateau
        && let Some(kept) = state.plan_steps
        && kept != planned
    {
        tracing::warn!(
            "{}: the {:?} schedule was planned over {kept} steps when this run started; it keeps that plan (steps past it run at its final rate)",
            out.display(),
            cfg.lr_schedule
        );
    }
    let total = *state.plan_steps.get_or_insert(planned);
    let steps = StepSchedule {
        kind: cfg.lr_schedule,
        lr: cfg.lr,
        min_lr: cfg.min_lr,
        total,
        warmup: cfg.warmup_epochs * batches as usize,
    };
    while !state.finished && state.history.len() < cfg.epochs {
        let epoch = state.history.len() + 1;
        let started = Instant::now();
        crate::backend::seed(&ad, mix(cfg.seed, epoch as u64));
        let mut order = data.train.clone();
        order.shuffle(&mut StdRng::seed_from_u64(mix(cfg.seed, 1000 + epoch as u64)));
        let bar = epoch_bar(display, batches, epoch, cfg.epochs);
        let augment =
            Augment { shift: cfg.aug_shift, flip: cfg.aug_flip, erase: cfg.aug_erase, erase_area: cfg.aug_erase_area };
        let mut augment_rng = StdRng::seed_from_u64(mix(cfg.seed, 2000 + epoch as u64));
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for (batch, chunk) in order.chunks(cfg.batch_size).enumerate() {
            if let Some(lr) = steps.lr_at((epoch - 1) * batches as usize + batch) {
                state.lr = lr;
            }
            let (x, y) = batch_tensors(data.train_images, chunk, &ad, &mut px, &mut labels, &mut |px| {
                augment.apply(px, &mut augment_rng)
            });
            let logits = model.forward(x);
            let loss = loss_fn.forward(logits.clone(), y.clone());
            let hits = logits.argmax(1).flatten::<1>(0, 1).equal(y).int().sum().into_scalar::<i64>();
            let loss_value = loss.clone().into_scalar::<f32>() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(state.lr, model, grads);
            loss_sum += loss_value * chunk.len() as f64;
            correct += hits as usize;
            seen += chunk.len();
            let rate = seen as f64 / started.elapsed().as_secs_f64();
            bar.set_message(format!(
                "loss {:.4} acc {:.4} {:.0} img/s",
                loss_sum / seen as f64,
                correct as f64 / seen as f64,
                rate
            ));
            bar.inc(1);
        }
        bar.finish_and_clear();
        let val = evaluate(&model, data.val_images, &data.val, device);
        let metrics = EpochMetrics {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_acc: correct as f64 / seen.max(1) as f64,
            val_loss: val.loss,
            val_acc: val.acc,
            lr: state.lr,
            secs: started.elapsed().as_secs_f64(),
            // Timed after the epoch's clock stops, once per run: the first epoch's record
            // carries it, so pruned trials have it too.
            latency: if epoch == 1 {
                super::latency::measure(&model, data.val_images, &data.val, device)
            } else {
                None
            },
        };
        // Only finite figures are recorded: a diverged run keeps its last finite epoch.
        if let Some((what, value)) = metrics.first_non_finite() {
            return Err(TuneError::Diverged { epoch, what, value });
        }
        let (improved, stop) = state.early.update(epoch, val.acc);
        // The plateau rule always keeps its count (its state must hold a finite best to be
        // written), but sets the rate only when it is the schedule.
        let plateau_lr = state.plateau.update(val.acc, state.lr);
        if cfg.lr_schedule == LrSchedule::Plateau {
            state.lr = plateau_lr;
        }
        state.history.push(metrics.clone());
        // Early stopping ends a run for good (under the schedules it applies to); the epoch
        // limit does not (a resume may raise it).
        state.finished = stop && cfg.lr_schedule.stops_early();
        if improved {
            save_model(&model, &files.best())?;
        }
        // Checkpoints first, state last: the state never points at weights not yet on disk.
        save_model(&model, &files.last())?;
        let tmp = crate::files::tmp_path(&files.last_optim());
        optim.save(&tmp).map_err(|e| checkpoint_err(&files.last_optim(), e))?;
        std::fs::rename(&tmp, files.last_optim()).map_err(|e| TuneError::io(files.last_optim(), e))?;
        write_state(&files.state(), &state)?;
        metrics::write_csv(&files.metrics(), &state.history)?;
        if display == Display::Human {
            tracing::info!(
                "epoch {epoch}/{}: loss {:.4} acc {:.4} | val_loss {:.4} val_acc {:.4} | lr {:.0e} | {:.1}s ({:.0} img/s){}{}",
                cfg.epochs,
                metrics.train_loss,
                metrics.train_acc,
                metrics.val_loss,
                metrics.val_acc,
                metrics.lr,
                metrics.secs,
                seen as f64 / metrics.secs,
                if improved { " *best*" } else { "" },
                metrics.latency.map_or(String::new(), |l| format!(
                    " | inference {:.2} ms/image alone, {:.3} ms/image in batches of 100",
                    l.batch_1, l.batch_100
                ))
            );
        }
        observer(&metrics);
    }
    Ok(Outcome {
        best_epoch: state.early.best_epoch,
        best_val_acc: state.early.best,
        stopped_early: state.finished,
        history: state.history,
    })
}

fn epoch_bar(display: Display, batches: u64, epoch: usize, epochs: usize) -> ProgressBar {
    if display == Display::Silent {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(batches), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    bar
}

pub fn read_state(path: &Path) -> Result<RunState> {
    let text = std::fs::read_to_string(path).map_err(|e| TuneError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| TuneError::Checkpoint {
        path: path.to_path_buf(),
        problem: format!("unreadable run state ({e}); delete the run directory to start the run afresh"),
    })
}

fn write_state(path: &Path, state: &RunState) -> Result<()> {
    crate::files::write_atomic(path, serde_json::to_string(state).expect("serialisable").as_bytes())
}
