//! `tune bench` (training and evaluation throughput), `tune bench storage`, `tune bench sampler`,
//! `tune bench search`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{DataArgs, threads_parser};
use crate::error::Result;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// What to time instead of training (default: training and evaluation).
    #[command(subcommand)]
    pub what: Option<BenchCommand>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Timed training steps per round (after 2 warm-up steps).
    #[arg(long, default_value_t = 20, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub steps: usize,
    /// Rounds; with --pytorch each round runs tune then PyTorch, and medians are compared.
    #[arg(long, default_value_t = 3, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100))]
    pub rounds: usize,
    /// Compute threads (default: all cores).
    #[arg(long, value_parser = threads_parser())]
    pub threads: Option<usize>,
    /// Params TOML; default: the seed's model.
    #[arg(long)]
    pub params: Option<PathBuf>,
    /// Also time the same model in PyTorch (benches/pytorch_cnn.py) with this Python, and print the ratio.
    #[arg(long)]
    pub pytorch: Option<PathBuf>,
    /// Time the convolutions' products in `bf16` (CPUs with AVX512-BF16) instead of `fp32`.
    #[arg(long, value_parser = ["fp32", "bf16"], default_value = "fp32")]
    pub precision: String,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// A shared study store under simulated workers (epochs reported instantly, no training): trials/s and create/report latencies.
    Storage(StorageBenchArgs),
    /// Each sampler's own time to propose one configuration with a long history.
    Sampler(SamplerBenchArgs),
    /// Samplers × pruners × worker counts on recorded learning curves, replayed on a simulated clock.
    Search(SearchBenchArgs),
    /// How well each rung rule (value so far, slope, a fitted curve model) predicts the final value: Spearman ρ per epoch.
    Rungs(RungsBenchArgs),
}

#[derive(Args, Debug)]
pub struct StorageBenchArgs {
    /// The store to measure: postgresql://user@host:port/database (a scratch study is created and deleted).
    #[arg(long, env = "TUNE_STORAGE", hide_env_values = true)]
    pub storage: String,
    /// Concurrent simulated workers, one round each (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 8, 32, 64])]
    pub workers: Vec<usize>,
    /// Trials per round (all workers together).
    #[arg(long, default_value_t = 10_000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(10..=1_000_000))]
    pub trials: usize,
    /// Epochs each simulated trial reports.
    #[arg(long, default_value_t = 3, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100))]
    pub epochs: usize,
}

#[derive(Args, Debug)]
pub struct SamplerBenchArgs {
    /// The space to sample.
    #[arg(long, default_value = "search_spaces/quick.toml")]
    pub space: PathBuf,
    /// Finished trials in the history (comma-separated sizes).
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000])]
    pub history: Vec<usize>,
    /// Proposals timed per sampler and size.
    #[arg(long, default_value_t = 20, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub proposals: usize,
}

#[derive(Args, Debug)]
pub struct RungsBenchArgs {
    /// The learning-curve table (gzip JSON lines, see benches/curves/README.md).
    #[arg(long, default_value = "benches/curves/quick.jsonl.gz")]
    pub table: PathBuf,
}

#[derive(Args, Debug)]
pub struct SearchBenchArgs {
    /// The learning-curve table (gzip JSON lines, see benches/curves/README.md).
    #[arg(long, default_value = "benches/curves/quick.jsonl.gz")]
    pub table: PathBuf,
    /// The space the table was recorded from.
    #[arg(long, default_value = "benches/curves/quick_record.toml")]
    pub space: PathBuf,
    /// sampler+pruner pairs, +promote for the promoting scheduler, +pbt for PBT (pruner none); the two baselines (random+none, random+first_epoch) are always run.
    #[arg(long, value_delimiter = ',', value_parser = crate::study::search_bench::Method::parse,
          default_values = ["random+asha", "random+hyperband", "random+asha+promote", "random+hyperband+promote", "tpe+none", "tpe+asha", "tpe+hyperband", "tpe+asha+promote", "tpe+hyperband+promote", "tpe+median", "random+none+pbt", "tpe+none+pbt"])]
    pub methods: Vec<crate::study::search_bench::Method>,
    /// Simulated workers (comma-separated counts).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 8, 32],
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub workers: Vec<usize>,
    /// Paired seeds per method and worker count.
    #[arg(long, default_value_t = 20, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub seeds: usize,
    /// The simulated budget: this many whole recorded trials' time in all, shared by the workers (wall budget = K × mean trial seconds / workers).
    #[arg(long, default_value_t = 64.0, value_parser = positive_budget)]
    pub budget_trials: f64,
    /// Per-seed rows of another tool to aggregate alongside (benches/optuna_replay.py's CSV).
    #[arg(long)]
    pub extra: Vec<PathBuf>,
    /// Write every run's per-seed rows here as CSV.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `--budget-trials`: a positive, finite number of whole trials (0 would time nothing, and a
/// negative or infinite budget is no duration).
fn positive_budget(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1e6 => Ok(v),
        _ => Err(format!("`{text}`: give a number of whole trials above 0 (at most 1e6), e.g. 64")),
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.what {
        Some(BenchCommand::Storage(a)) => crate::study::storage::bench::run(&a.storage, &a.workers, a.trials, a.epochs),
        Some(BenchCommand::Sampler(a)) => crate::study::sampler::bench::run(&a.space, &a.history, a.proposals),
        Some(BenchCommand::Rungs(a)) => {
            crate::study::rung_stats::print(&crate::study::replay::CurveTable::load(&a.table)?);
            Ok(())
        }
        Some(BenchCommand::Search(a)) => {
            use crate::study::search_bench::{Method, SearchBenchOptions, run};
            use crate::study::settings::{PrunerKind, SamplerKind};
            let mut methods = vec![
                Method::new(SamplerKind::Random, PrunerKind::None),
                Method::new(SamplerKind::Random, PrunerKind::FirstEpoch),
            ];
            for m in a.methods {
                if !methods.contains(&m) {
                    methods.push(m);
                }
            }
            run(&SearchBenchOptions {
                table: a.table,
                space: a.space,
                methods,
                workers: a.workers,
                seeds: a.seeds,
                budget_trials: a.budget_trials,
                extra: a.extra,
                out: a.out,
            })
        }
        None => crate::bench::run(&crate::bench::BenchOptions {
            data_dir: args.data.data_dir,
            steps: args.steps,
            rounds: args.rounds,
            threads: args.threads,
            params: args.params,
            pytorch: args.pytorch,
            bf16: args.precision == "bf16",
        }),
    }
}
