//! `tune run`: run or resume a study, then print its leaderboard and throughput.

use std::path::PathBuf;

use clap::Args;

use super::{DataArgs, StorageArgs, seed_parser, threads_parser};
use crate::error::{Result, TuneError};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Search space TOML (see search_spaces/).
    pub space: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Trials to train (infeasible configurations are recorded but not counted); overrides study.trials.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=crate::study::settings::MAX_TRIALS as u64))]
    pub trials: Option<usize>,
    /// Parallel trial slots (default: one per core); overrides study.concurrency.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=crate::study::settings::MAX_CONCURRENCY as u64))]
    pub concurrency: Option<usize>,
    /// Most epochs of every trial; overrides study.training.max_epochs.
    #[arg(long)]
    pub max_epochs: Option<usize>,
    /// Train every trial on a stratified subset of N images.
    #[arg(long)]
    pub subset: Option<usize>,
    /// Study seed (configurations and trial seeds derive from it); overrides study.seed.
    #[arg(long, value_parser = seed_parser())]
    pub seed: Option<u64>,
    /// Where studies live: <runs-dir>/<study name>/.
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Wall-clock budget of this run ("2h", "90m"); at the deadline no new trial starts and running trials stop after their epoch, resumable. Overrides study.timeout.
    #[arg(long, value_parser = crate::study::settings::parse_timeout)]
    pub timeout: Option<std::time::Duration>,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Compute threads of each trial (default: cores / concurrency). Set it when several workers share one machine.
    #[arg(long, value_parser = threads_parser())]
    pub threads: Option<usize>,
    /// Devices the trials train on, e.g. `cuda:0,cuda:1` (or `cpu`): each trial process sees only its own GPU, and the slots are devices × --trials-per-device. Overrides study.devices; default: the CPU, or GPU 0 on a CUDA build.
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<String>,
    /// Trials trained at once on each device (default 1 with --devices, 4 on a CUDA build's GPU 0). Overrides study.trials_per_device.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=crate::study::settings::MAX_CONCURRENCY as u64))]
    pub trials_per_device: Option<usize>,
    /// Where trial directories (checkpoints, metrics.csv) go; default <runs-dir>/<study>/trials. On a shared file system a lost worker's trial resumes from its checkpoint on another machine.
    #[arg(long)]
    pub artifacts: Option<PathBuf>,
    /// For tests and benchmarks: trials train nothing, each reports its epochs MS milliseconds apart with a val_acc fixed by its parameters (the data set is not loaded).
    #[arg(long, hide = true, value_name = "MS")]
    pub instant_objective_ms: Option<u64>,
}

pub fn run(args: RunArgs) -> Result<()> {
    let launcher: Option<Box<dyn crate::study::launch::Launch>> = args.instant_objective_ms.map(|ms| {
        Box::new(crate::study::instant::InstantLauncher { epoch: std::time::Duration::from_millis(ms) }) as _
    });
    let summary = crate::study::run::run_with(
        crate::study::RunOptions {
            space_file: args.space,
            runs_dir: args.runs_dir,
            trials: args.trials,
            concurrency: args.concurrency,
            max_epochs: args.max_epochs,
            subset: args.subset,
            seed: args.seed,
            data_dir: args.data.data_dir.clone(),
            split_seed: args.data.split_seed,
            timeout: args.timeout,
            storage: args.storage.url(),
            artifacts: args.artifacts,
            threads: args.threads,
            devices: args.devices,
            trials_per_device: args.trials_per_device,
            known_train_size: args.instant_objective_ms.map(|_| 1),
        },
        launcher,
    )
    .inspect_err(|e| {
        if e.is_disk_full() {
            eprintln!(
                "a disk is full: the study stopped, and what it recorded is kept. After freeing space: {}",
                resume_command()
            );
        }
    })?;
    println!("{}", crate::study::leaderboard::render_with(&summary.trials, 10, &summary.objectives));
    let count = |s: crate::study::TrialState| summary.counts.get(&s).copied().unwrap_or(0);
    use crate::study::TrialState as S;
    let sampled = summary.counts.values().sum::<usize>().max(1);
    println!(
        "{} complete, {} pruned, {} failed, {} infeasible ({:.0}% of sampled networks, never launched)",
        count(S::Complete),
        count(S::Pruned),
        count(S::Failed),
        count(S::Infeasible),
        100.0 * count(S::Infeasible) as f64 / sampled as f64
    );
    if summary.epochs_run > 0 {
        let hours = summary.wall_secs / 3600.0;
        println!(
            "this run: {} trial-epochs in {:.0}s = {:.1} trial-epochs/hour, {:.0} training images/s aggregate; epochs fill {:.0}% of slot time",
            summary.epochs_run,
            summary.wall_secs,
            summary.epochs_run as f64 / hours,
            summary.images_trained / summary.wall_secs,
            100.0 * summary.epoch_secs / (summary.wall_secs * summary.slots as f64)
        );
    }
    println!("leaderboard: {}", summary.dir.join("leaderboard.csv").display());
    if summary.timed_out {
        let left = summary.counts.get(&crate::study::TrialState::Running).copied().unwrap_or(0);
        let paused = summary.counts.get(&crate::study::TrialState::Paused).copied().unwrap_or(0);
        println!(
            "time budget reached: {left} trial(s) stopped after their last finished epoch, {paused} paused at a rung. Continue with: {}",
            resume_command()
        );
    }
    if summary.interrupted {
        eprintln!("interrupted: running trials keep their last finished epoch. Resume with: {}", resume_command());
        return Err(TuneError::Interrupted);
    }
    Ok(())
}

/// This very command line, to run again.
fn resume_command() -> String {
    std::env::args().enumerate().map(|(i, a)| if i == 0 { "tune".into() } else { a }).collect::<Vec<String>>().join(" ")
}
