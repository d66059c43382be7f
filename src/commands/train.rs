//! `tune train`: one network with early stopping (also the trial process of a study, with
//! `--json`).

use std::path::PathBuf;

use clap::Args;

use super::{DataArgs, threads_parser};
use crate::error::Result;
use crate::model;
use crate::training::{self, Display, TrainConfig, TrainData};

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Params TOML; default: the seed's model.
    #[arg(long)]
    pub params: Option<PathBuf>,
    /// Training settings TOML (fields of the training config); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Most epochs (default 50; early stopping usually ends sooner).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Train on a stratified subset of N images.
    #[arg(long)]
    pub subset: Option<usize>,
    /// Seed of the weights, batch order and dropout (default 1).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Early-stopping patience: epochs without a better val_acc (default 10); under the plateau schedule only, since cosine and one-cycle run to their end.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Epochs without a better val_acc before the learning rate is multiplied by 0.1 (default 5).
    #[arg(long)]
    pub lr_patience: Option<usize>,
    /// Adam learning rate (default 1e-3).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Images per training step (default 100).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// L2 weight decay (default 0).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Augmentation: shift training images by up to N pixels each way (default 0).
    #[arg(long)]
    pub aug_shift: Option<usize>,
    /// Augmentation: flip half of the training images left-right.
    #[arg(long)]
    pub aug_flip: bool,
    /// Augmentation: chance that a training image gets a random rectangle of noise (default 0).
    #[arg(long)]
    pub aug_erase: Option<f64>,
    /// Largest fraction of the image one erasing covers (default 0.4).
    #[arg(long)]
    pub aug_erase_area: Option<f64>,
    /// Label smoothing of the training loss (default 0).
    #[arg(long)]
    pub label_smoothing: Option<f64>,
    /// Learning-rate schedule: `plateau` (default), `cosine` or `onecycle`.
    #[arg(long, value_parser = crate::training::config::LrSchedule::NAMES)]
    pub lr_schedule: Option<String>,
    /// Epochs of linear warm-up before the cosine decay (default 0).
    #[arg(long)]
    pub warmup_epochs: Option<usize>,
    /// Optimiser: `adam` (default; weight decay as L2), `adamw` (decoupled) or `sgd` (Nesterov).
    #[arg(long, value_parser = crate::training::config::OptimizerKind::NAMES)]
    pub optimizer: Option<String>,
    /// SGD's momentum (default 0.9).
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Convolution products in `fp32` (default) or `bf16` (bf16 inputs, f32 sums; CPUs with AVX512-BF16).
    #[arg(long, value_parser = ["fp32", "bf16"])]
    pub precision: Option<String>,
    /// Output directory.
    #[arg(long, default_value = "runs/train")]
    pub out: PathBuf,
    /// Compute threads (default: all cores).
    #[arg(long, value_parser = threads_parser())]
    pub threads: Option<usize>,
    /// Continue from the state in --out instead of starting afresh.
    #[arg(long)]
    pub resume: bool,
    /// Stream one JSON object per epoch on stdout (the trial protocol).
    #[arg(long)]
    pub json: bool,
    /// Stop when stdin closes (set by `tune run`, so trials die with their study).
    #[arg(long, hide = true)]
    pub exit_on_stdin_eof: bool,
}

/// Resolves the training settings: defaults, then --config, then the params' training keys,
/// then flags, merged and checked once (errors name the key and the file or flag that set it).
pub fn resolve_config(args: &TrainArgs, params: &model::Params) -> Result<TrainConfig> {
    let mut layers = training::layers::Layered::default();
    if let Some(path) = &args.config {
        layers = layers.file(path)?;
    }
    if let Some(p) = &args.params {
        layers = layers.dictionary(params, p);
    }
    layers
        .flag("epochs", "--epochs", args.epochs)?
        .flag("subset", "--subset", args.subset)?
        .flag("seed", "--seed", args.seed)?
        .flag("patience", "--patience", args.patience)?
        .flag("lr_patience", "--lr-patience", args.lr_patience)?
        .flag("lr", "--lr", args.lr)?
        .flag("batch_size", "--batch-size", args.batch_size)?
        .flag("weight_decay", "--weight-decay", args.weight_decay)?
        .flag("aug_shift", "--aug-shift", args.aug_shift)?
        .flag("aug_flip", "--aug-flip", args.aug_flip.then_some(true))?
        .flag("aug_erase", "--aug-erase", args.aug_erase)?
        .flag("aug_erase_area", "--aug-erase-area", args.aug_erase_area)?
        .flag("label_smoothing", "--label-smoothing", args.label_smoothing)?
        .flag("lr_schedule", "--lr-schedule", args.lr_schedule.as_deref())?
        .flag("warmup_epochs", "--warmup-epochs", args.warmup_epochs)?
        .flag("optimizer", "--optimizer", args.optimizer.as_deref())?
        .flag("momentum", "--momentum", args.momentum)?
        .flag("precision", "--precision", args.precision.as_deref())?
        .flag("split_seed", "--split-seed", Some(args.data.split_seed))?
        .build()
}

/// In a trial process: exit as soon as the parent study's pipe closes.
fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        use std::io::Read;
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(143);
    });
}

pub fn run(args: TrainArgs) -> Result<()> {
    crate::backend::set_threads(args.threads);
    if args.exit_on_stdin_eof {
        exit_when_stdin_closes();
    }
    let (arch, params) = model::load_params(args.params.as_deref())?;
    let cfg = resolve_config(&args, &params)?;
    let shapes = model::infer(&arch)?; // an impossible network writes nothing
    let (data, splits) = args.data.load()?;
    let train_idx = training::training_indices(&data.train, &splits, &cfg);
    training::write_run_files(&args.out, &arch, &params, &cfg)?;
    let train_data = TrainData {
        train_images: &data.train,
        train: train_idx,
        val_images: &data.official_test,
        val: splits.validation.clone(),
    };
    let device = crate::backend::device();
    let display = if args.json { Display::Silent } else { Display::Human };
    if !args.json {
        tracing::info!(
            "training {} params on {} images (validation {}), up to {} epochs, backend {}",
            model::shape::group(shapes.total()),
            train_data.train.len(),
            train_data.val.len(),
            cfg.epochs,
            crate::backend::description()
        );
    }
    let json = args.json;
    let outcome = training::train(&train_data, &arch, &cfg, &args.out, &device, args.resume, display, &mut |m| {
        if json {
            println!("{}", serde_json::to_string(m).expect("serialisable"));
        }
    })?;
    if !json {
        println!(
            "best val_acc {:.4} at epoch {} of {}{}; wrote {}/{{metrics.csv,best.bpk,params.toml}}",
            outcome.best_val_acc,
            outcome.best_epoch,
            outcome.history.len(),
            if outcome.stopped_early { " (early stop)" } else { "" },
            args.out.display()
        );
    }
    Ok(())
}
