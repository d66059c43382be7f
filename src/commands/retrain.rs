//! `tune retrain`: the flags, handed to [`crate::retrain`], and the closing lines.

use std::path::PathBuf;

use clap::Args;

use super::{DataArgs, StorageArgs, threads_parser};
use crate::error::Result;

#[derive(Args, Debug)]
pub struct RetrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Retrain the study's best trial.
    #[arg(long, conflicts_with = "trial")]
    pub best: bool,
    /// Retrain this trial instead.
    #[arg(long)]
    pub trial: Option<usize>,
    /// The study: its directory, or its name under --runs-dir (default: the only study there); with --storage, its name in the store.
    #[arg(long)]
    pub study: Option<PathBuf>,
    /// Where studies live on this machine: searched for the only study without --study, and where a store's study keeps its retrains.
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// With --best, also consider pruned trials (by default only complete ones qualify).
    #[arg(long, conflicts_with = "trial")]
    pub include_pruned: bool,
    /// With --best, the best network of at most N parameters (the accuracy-versus-size front's pick under a budget).
    #[arg(long, conflicts_with = "trial", value_name = "N")]
    pub max_params: Option<usize>,
    /// With --best, the best network that infers one image in at most MS milliseconds (each trial times itself after its first epoch, on its own threads).
    #[arg(long, conflicts_with = "trial", value_name = "MS", value_parser = positive_ms)]
    pub max_latency_ms: Option<f64>,
    /// With --best: train the first seed of the K best trials at the retrain's budget, and go on (more seeds, the test split) with the one that validates best there; the others are never tested. The study's last rung, at the fidelity that counts.
    #[arg(long, conflicts_with = "trial", value_name = "K", value_parser = clap::value_parser!(u32).range(1..=20))]
    pub top: Option<u32>,
    /// Most epochs (default: the study's max_epochs).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Early-stopping patience under the plateau schedule (default: the study's). A study sized for short trials stops a longer retrain early: with patience 4 and lr-patience 3, each reduced rate gets one epoch to show a gain.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Epochs without a better val_acc before the plateau schedule reduces the learning rate (default: the study's).
    #[arg(long)]
    pub lr_patience: Option<usize>,
    /// Repeat with this many seeds and report mean ± standard deviation.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub seeds: u32,
    /// Stratified training subset (quick checks; the real retrain uses all 50,000).
    #[arg(long)]
    pub subset: Option<usize>,
    /// Compute threads (default: all cores).
    #[arg(long, value_parser = threads_parser())]
    pub threads: Option<usize>,
    /// Train every seed from scratch, replacing an earlier retrain of this trial (by default the same command resumes it, and other settings are refused).
    #[arg(long)]
    pub fresh: bool,
}

pub fn run(args: RetrainArgs) -> Result<()> {
    let s = crate::retrain::run(&crate::retrain::RetrainOptions {
        data_dir: args.data.data_dir,
        split_seed: args.data.split_seed,
        best: args.best,
        trial: args.trial,
        study: args.study,
        runs_dir: args.runs_dir,
        storage: args.storage.url(),
        include_pruned: args.include_pruned,
        caps: crate::retrain::Caps { max_params: args.max_params, max_latency_ms: args.max_latency_ms },
        epochs: args.epochs,
        patience: args.patience,
        lr_patience: args.lr_patience,
        seeds: args.seeds,
        subset: args.subset,
        threads: args.threads,
        fresh: args.fresh,
        top: args.top.map(|k| k as usize),
    })?;
    if s.test_accuracy.len() > 1 {
        println!(
            "test accuracy over {} seeds: {:.4} ± {:.4} (mean ± sample std)",
            s.test_accuracy.len(),
            s.mean,
            s.std
        );
    }
    println!("wrote {}", s.study.join("retrain").display());
    Ok(())
}

/// A latency cap: a positive, finite number of milliseconds.
fn positive_ms(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(ms) if ms.is_finite() && ms > 0.0 => Ok(ms),
        _ => Err(format!("`{text}` is not a positive number of milliseconds (e.g. 2.5)")),
    }
}
