//! `tune bench` (training and evaluation throughput), `tune bench storage`, `tune bench sampler`.

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
    Storage(crate::study::storage::bench::StorageBenchArgs),
    /// Each sampler's own time to propose one configuration with a long history.
    Sampler(crate::study::sampler::bench::SamplerBenchArgs),
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.what {
        Some(BenchCommand::Storage(a)) => crate::study::storage::bench::run(&a),
        Some(BenchCommand::Sampler(a)) => crate::study::sampler::bench::run(&a),
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
