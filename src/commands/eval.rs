//! `tune eval`: a saved model (or a store's trial) on one split.

use std::path::PathBuf;

use clap::Args;

use super::{DataArgs, StorageArgs, threads_parser};
use crate::error::Result;
use crate::evaluation::{evaluate_dir, evaluate_store_trial};

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Directory written by `tune train`, `tune retrain` or a study trial.
    #[arg(long, required_unless_present = "trial")]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// The study whose trial to evaluate: its name in --storage; else its directory, or its name under --runs-dir.
    #[arg(long, requires = "trial")]
    pub study: Option<String>,
    /// Where the studies' journals are (without --storage) and where a study keeps its trial directories.
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// With --study: the trial to evaluate (parameters from the store, weights from <artifacts>/N/best.bpk).
    #[arg(long, requires = "study", conflicts_with = "model")]
    pub trial: Option<usize>,
    /// Where the study's trial directories are (default: the study's trials/).
    #[arg(long, requires = "trial")]
    pub artifacts: Option<PathBuf>,
    /// The split to evaluate on.
    #[arg(long, value_enum, default_value = "test")]
    pub split: EvalSplit,
    /// Compute threads (default: all cores).
    #[arg(long, value_parser = threads_parser())]
    pub threads: Option<usize>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalSplit {
    /// The balanced 10,000-image test split (read only here and by retrain).
    Test,
    /// The official 10,000 images used for validation.
    Val,
    /// The 50,000 training images (to compare train and validation behaviour).
    Train,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    crate::backend::set_threads(args.threads);
    let (data, splits) = args.data.load()?;
    let (images, indices, name) = match args.split {
        EvalSplit::Test => (&data.train, &splits.test, "test"),
        EvalSplit::Val => (&data.official_test, &splits.validation, "validation"),
        EvalSplit::Train => (&data.train, &splits.train, "train"),
    };
    let report = match (&args.model, args.trial) {
        (Some(dir), _) => evaluate_dir(dir, images, indices, name)?,
        (None, Some(n)) => {
            let study = args.study.as_deref().expect("clap requires --study with --trial");
            evaluate_store_trial(
                args.storage.url().as_deref(),
                &args.runs_dir,
                study,
                n,
                args.artifacts.as_deref(),
                images,
                indices,
                name,
            )?
        }
        (None, None) => unreachable!("clap requires --model or --trial"),
    };
    print!("{}", report.render());
    Ok(())
}
