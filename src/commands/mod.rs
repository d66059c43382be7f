//! The command line: one file per command, each owning its argument types and turning them
//! into calls to the library. `main.rs` only parses, calls [`execute`] and maps the error to an
//! exit code; dependencies run one way, main → commands → library.

mod bench;
mod dashboard;
mod data;
mod eval;
mod model;
mod report;
mod retrain;
mod run;
mod study;
mod train;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use bench::{BenchArgs, BenchCommand};
pub use dashboard::DashboardArgs;
pub use data::DataCommand;
pub use eval::{EvalArgs, EvalSplit};
pub use model::ModelCommand;
pub use report::ReportArgs;
pub use retrain::RetrainArgs;
pub use run::RunArgs;
pub use study::StudyCommand;
pub use train::{TrainArgs, resolve_config};

use crate::data::{FashionMnist, Splits};
use crate::error::Result;

#[derive(Parser, Debug)]
#[command(name = "tune", version, about = "Hyperparameter tuning for burn CNNs on Fashion-MNIST")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fetch, inspect and plot the data set.
    #[command(subcommand)]
    Data(DataCommand),
    /// Inspect a network built from a parameter dictionary.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Train one network with early stopping; writes metrics.csv and the best checkpoint.
    Train(TrainArgs),
    /// Run (or resume) a study: sample, train in parallel, prune, rank.
    Run(RunArgs),
    /// Leaderboard, exports, plots and an HTML page for a study (or every study in a runs dir).
    Report(ReportArgs),
    /// A live web page of a study (or every study in a runs dir or store): curves, history, parallel coordinates, timeline.
    Dashboard(DashboardArgs),
    /// Retrain the best (or any) trial on the 50k train split and test it once.
    Retrain(RetrainArgs),
    /// Evaluate a saved model (a directory with params.toml and best.bpk) on one split.
    Eval(EvalArgs),
    /// Time training and evaluation of the default model and the data load, or a study store (`tune bench storage`).
    Bench(BenchArgs),
    /// List or delete the studies in a store.
    #[command(subcommand)]
    Study(StudyCommand),
}

/// Runs a parsed command.
pub fn execute(cli: Cli) -> Result<()> {
    // Every command that runs the kernels runs them as the environment says; training and the
    // bench install them again with their precision.
    crate::backend::configure_kernels(false).expect("the kernel settings from this CPU's own levels run here");
    match cli.command {
        Command::Data(cmd) => data::run(cmd),
        Command::Model(cmd) => model::run(cmd),
        Command::Train(args) => train::run(args),
        Command::Run(args) => run::run(args),
        Command::Eval(args) => eval::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Dashboard(args) => dashboard::run(&args),
        Command::Retrain(args) => retrain::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Study(cmd) => study::run(cmd),
    }
}

/// Where studies are kept when not in a journal under the runs directory.
#[derive(Args, Debug, Clone, Default)]
pub struct StorageArgs {
    /// Shared study store, postgresql://user@host:port/database: workers on any number of machines join the same study. Overrides study.storage; default: a journal under the runs directory.
    #[arg(long, env = "TUNE_STORAGE", hide_env_values = true)]
    storage: Option<String>,
    /// The store's password, as the first line of this file (else the URL's, PGPASSWORD, or ~/.pgpass), so it is in no URL, command line or process list.
    #[arg(long, env = "TUNE_STORAGE_PASSWORD_FILE")]
    storage_password_file: Option<PathBuf>,
}

impl StorageArgs {
    /// The store's URL, if one is given; its password file (if any) then serves every
    /// connection this process makes.
    pub fn url(&self) -> Option<String> {
        if let Some(file) = &self.storage_password_file {
            crate::study::storage::use_password_file(file.clone());
        }
        self.storage.clone()
    }
}

#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Directory with the four IDX files (gzip or raw) or the two Kaggle CSV files.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Seed of the balanced test split.
    #[arg(long, default_value_t = 27, value_parser = seed_parser())]
    pub split_seed: u64,
}

impl DataArgs {
    /// The data and the seed's splits.
    pub fn load(&self) -> Result<(FashionMnist, Splits)> {
        crate::data::load_with_splits(self.data_dir.as_deref(), self.split_seed)
    }
}

/// Seeds are stored in TOML files, whose integers stop at 2^63 − 1.
pub fn seed_parser() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(0..=i64::MAX as u64)
}

/// Compute threads: at least one, at most 1024.
pub fn threads_parser() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024)
}
