//! Command-line interface: argument types and the dispatch to the library. `main.rs` only
//! parses, calls [`execute`] and maps the error to an exit code.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::data::{self, FashionMnist, SplitConfig, Splits};
use crate::error::{Result, TuneError};
use crate::model::{self, Architecture};
use crate::training::{self, Display, TrainConfig, TrainData};

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
    /// Retrain the best (or any) trial on the 50k train split and test it once.
    Retrain(crate::retrain::RetrainArgs),
    /// Evaluate a saved model (a directory with params.toml and best.bpk) on one split.
    Eval(EvalArgs),
    /// Time training and evaluation of the default model and the data load, or a study store (`tune bench storage`).
    Bench(BenchArgs),
    /// List or delete the studies in a store.
    #[command(subcommand)]
    Study(StudyCommand),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Search space TOML (see search_spaces/).
    pub space: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Trials to train (infeasible configurations are recorded but not counted); overrides study.trials.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=crate::study::space::MAX_TRIALS as u64))]
    pub trials: Option<usize>,
    /// Parallel trial slots (default: one per core); overrides study.concurrency.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=crate::study::space::MAX_CONCURRENCY as u64))]
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
    #[arg(long, value_parser = crate::study::space::parse_timeout)]
    pub timeout: Option<std::time::Duration>,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Compute threads of each trial (default: cores / concurrency). Set it when several workers share one machine.
    #[arg(long, value_parser = threads_parser())]
    pub threads: Option<usize>,
    /// Where trial directories (checkpoints, metrics.csv) go; default <runs-dir>/<study>/trials. On a shared file system a lost worker's trial resumes from its checkpoint on another machine.
    #[arg(long)]
    pub artifacts: Option<PathBuf>,
}

/// Where studies are kept when not in a journal under the runs directory.
#[derive(Args, Debug, Clone, Default)]
pub struct StorageArgs {
    /// Shared study store, postgresql://user@host:port/database: workers on any number of machines join the same study. Overrides study.storage; default: a journal under the runs directory.
    #[arg(long, env = "TUNE_STORAGE", hide_env_values = true)]
    pub storage: Option<String>,
}

/// `tune study …`: manage the studies in a store.
#[derive(Subcommand, Debug)]
pub enum StudyCommand {
    /// List the studies in a store (or under a runs directory).
    List {
        #[command(flatten)]
        storage: StorageArgs,
        /// Runs directory to list when no --storage is given.
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
    },
    /// Delete a study and all its records from a store (trial directories are left alone).
    Delete {
        /// The study's name.
        name: String,
        #[command(flatten)]
        storage: StorageArgs,
        /// Confirm the deletion (it cannot be undone).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Fill data/fashion-mnist/ from Debian's package or the official mirror (verified by SHA-256).
    Fetch {
        #[arg(long, default_value = data::source::LOCAL_DIR)]
        dest: PathBuf,
    },
    /// Per-split, per-class image counts.
    Summary(DataArgs),
    /// A grid of 5 random images per class.
    Samples {
        #[command(flatten)]
        data: DataArgs,
        /// PNG file for the image grid.
        #[arg(long)]
        out: Option<PathBuf>,
        /// PNG file for the per-split class distribution chart.
        #[arg(long)]
        distribution: Option<PathBuf>,
        /// Seed of the random choice of images.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
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

#[derive(Subcommand, Debug)]
pub enum ModelCommand {
    /// Keras-style table of layers, output shapes and parameter counts.
    Summary {
        /// Params TOML (keys conv{i}_*, fc{i}_*, drop_rate, ...); default: the seed's model.
        #[arg(long)]
        params: Option<PathBuf>,
    },
}

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
    /// Early-stopping patience: epochs without a better val_acc (default 10).
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

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A runs directory (every study in it) or one study directory.
    #[arg(default_value = "runs")]
    pub path: PathBuf,
    /// Rows of the terminal leaderboard.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// With --storage: the study to report (default: every study in the store).
    #[arg(long, requires = "storage")]
    pub study: Option<String>,
    /// With --storage: where the report's files go (default <runs>/<study>/report; with several studies, DIR/<study>).
    #[arg(long, requires = "storage")]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Directory written by `tune train`, `tune retrain` or a study trial.
    #[arg(long, required_unless_present = "trial")]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// With --storage: the study whose trial to evaluate.
    #[arg(long, requires_all = ["storage", "trial"])]
    pub study: Option<String>,
    /// With --storage and --study: the trial to evaluate (parameters from the store, weights from <artifacts>/N/best.bpk).
    #[arg(long, requires = "study", conflicts_with = "model")]
    pub trial: Option<usize>,
    /// Where the study's trial directories are (default runs/<study>/trials).
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
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// A shared study store under simulated workers (epochs reported instantly, no training): trials/s and create/report latencies.
    Storage(crate::study::storage::bench::StorageBenchArgs),
    /// Each sampler's own time to propose one configuration with a long history.
    Sampler(crate::study::sampler::bench::SamplerBenchArgs),
}

/// Runs a parsed command.
pub fn execute(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Data(cmd) => data_command(cmd),
        Command::Model(ModelCommand::Summary { params }) => {
            let (arch, _) = load_params(params.as_deref())?;
            print!("{}", model::infer(&arch)?.render());
            Ok(())
        }
        Command::Train(args) => train_command(args),
        Command::Run(args) => run_command(args),
        Command::Eval(args) => crate::evaluation::eval_command(&args),
        Command::Report(args) => report_command(&args),
        Command::Retrain(args) => {
            let s = crate::retrain::run(&args)?;
            if s.test_accuracy.len() > 1 {
                println!("test accuracy over {} seeds: {:.4} ± {:.4} (mean ± sample std)", s.test_accuracy.len(), s.mean, s.std);
            }
            println!("wrote {}", s.study.join("retrain").display());
            Ok(())
        }
        Command::Bench(BenchArgs { what: Some(BenchCommand::Storage(args)), .. }) => crate::study::storage::bench::run(&args),
        Command::Bench(BenchArgs { what: Some(BenchCommand::Sampler(args)), .. }) => crate::study::sampler::bench::run(&args),
        Command::Bench(args) => crate::bench::run(&args),
        Command::Study(cmd) => study_command(cmd),
    }
}

fn study_command(cmd: StudyCommand) -> Result<()> {
    use crate::study::storage::{PgStorage, StorageSpec};
    match cmd {
        StudyCommand::List { storage, runs_dir } => match StorageSpec::parse(storage.storage.as_deref(), "--storage", &runs_dir)? {
            StorageSpec::Postgres(url) => {
                let studies = PgStorage::list(&url)?;
                println!("{:<32} {:<17} {:>7} {:>8}", "study", "created", "trials", "running");
                for s in &studies {
                    println!("{:<32} {:<17} {:>7} {:>8}", s.name, s.created, s.trials, s.running);
                }
                println!("{} studies in {}", studies.len(), crate::study::storage::redact(&url));
                Ok(())
            }
            StorageSpec::Journal(runs) => {
                for dir in crate::report::find_studies(&runs)? {
                    let trials = crate::study::run::load_trials(&dir)?;
                    println!("{:<32} {}", dir.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned()), crate::report::counts_line(&trials));
                }
                Ok(())
            }
        },
        StudyCommand::Delete { name, storage, yes } => {
            let Some(url) = storage.storage else {
                return Err(TuneError::Config { file: "<command line>".into(), key: "--storage".into(), problem: "deleting works on a store".into(), fix: format!("pass --storage URL; a journal study is a directory: remove runs/{name} yourself") });
            };
            let StorageSpec::Postgres(url) = StorageSpec::parse(Some(&url), "--storage", Path::new("runs"))? else { unreachable!("a URL") };
            if !yes {
                return Err(TuneError::Config { file: "<command line>".into(), key: "--yes".into(), problem: format!("deleting study `{name}` and all its records cannot be undone"), fix: "add --yes to confirm".into() });
            }
            if PgStorage::delete(&url, &name)? {
                println!("deleted study `{name}` from {}", crate::study::storage::redact(&url));
                Ok(())
            } else {
                Err(TuneError::Study(format!("{}: there is no study `{name}`; see `tune study list --storage URL`", crate::study::storage::redact(&url))))
            }
        }
    }
}

/// Reads a params file (or the default) into an architecture and its dictionary.
pub fn load_params(path: Option<&Path>) -> Result<(Architecture, model::Params)> {
    match path {
        None => {
            let arch = Architecture::default();
            let params = arch.to_params();
            Ok((arch, params))
        }
        Some(p) => {
            let params = model::params::read_params(p)?;
            Ok((Architecture::from_params(&params, p)?, params))
        }
    }
}

/// Loads the data and computes the seed's splits.
pub fn load_data(args: &DataArgs) -> Result<(FashionMnist, Splits)> {
    let started = std::time::Instant::now();
    let data = FashionMnist::load(args.data_dir.as_deref())?;
    let splits = Splits::new(&data.train, &data.official_test, SplitConfig { seed: args.split_seed, test_per_class: None });
    tracing::debug!("data loaded from {} in {:.3}s", data.origin.display(), started.elapsed().as_secs_f64());
    Ok((data, splits))
}

/// Sets the size of the compute thread pool (once per process).
pub fn set_threads(threads: Option<usize>) {
    if let Some(n) = threads.filter(|n| *n > 0) {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    }
}

fn data_command(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Fetch { dest } => {
            for path in data::source::fetch(&dest)? {
                println!("verified {}", path.display());
            }
            Ok(())
        }
        DataCommand::Summary(args) => {
            let (data, splits) = load_data(&args)?;
            println!("source: {}", data.origin.display());
            println!("split fingerprint (seed {}): {}", args.split_seed, &splits.fingerprint()[..16]);
            println!("{:<13}{:>9}{:>9}{:>12}", "class", "train", "test", "validation");
            let counts = split_counts(&data, &splits);
            for (c, name) in data::CLASS_NAMES.iter().enumerate() {
                println!("{:<13}{:>9}{:>9}{:>12}", name, counts[0].1[c], counts[1].1[c], counts[2].1[c]);
            }
            let total = |i: usize| counts[i].1.iter().sum::<usize>();
            println!("{:<13}{:>9}{:>9}{:>12}", "total", total(0), total(1), total(2));
            Ok(())
        }
        DataCommand::Samples { data: args, out, distribution, seed } => {
            if out.is_none() && distribution.is_none() {
                return Err(TuneError::Config {
                    file: PathBuf::from("<command line>"),
                    key: "--out".into(),
                    problem: "nothing to draw".into(),
                    fix: "pass --out FILE.png and/or --distribution FILE.png".into(),
                });
            }
            let (data, splits) = load_data(&args)?;
            if let Some(out) = out {
                data::plots::samples_grid(&data.train, &splits.train, 5, seed, &out)?;
                println!("wrote {}", out.display());
            }
            if let Some(path) = distribution {
                data::plots::distribution_chart(&split_counts(&data, &splits), &path)?;
                println!("wrote {}", path.display());
            }
            Ok(())
        }
    }
}

fn split_counts(data: &FashionMnist, s: &Splits) -> Vec<(&'static str, [usize; data::CLASSES])> {
    vec![
        ("train", data.train.class_counts(s.train.iter().copied())),
        ("test (balanced)", data.train.class_counts(s.test.iter().copied())),
        ("validation", data.official_test.class_counts(s.validation.iter().copied())),
    ]
}

/// Seeds are stored in TOML files, whose integers stop at 2^63 − 1.
pub fn seed_parser() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(0..=i64::MAX as u64)
}

/// Compute threads: at least one, at most 1024.
pub fn threads_parser() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024)
}

/// Resolves the training settings: defaults, then --config, then the params' training keys,
/// then flags, merged and checked once (errors name the key and the file or flag that set it).
pub fn resolve_config(args: &TrainArgs, params: &model::Params) -> Result<TrainConfig> {
    let mut layers = training::config::Layered::default();
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
        .flag("split_seed", "--split-seed", Some(args.data.split_seed))?
        .build()
}

fn report_command(args: &ReportArgs) -> Result<()> {
    use crate::study::storage::{PgStorage, StorageSpec, StudyStorage};
    let mut generated = Vec::new();
    match StorageSpec::parse(args.storage.storage.as_deref(), "--storage", &args.path)? {
        StorageSpec::Journal(_) => {
            for study in crate::report::find_studies(&args.path)? {
                generated.push((study.display().to_string(), crate::report::generate(&study)?));
            }
        }
        StorageSpec::Postgres(url) => {
            let names = match &args.study {
                Some(n) => vec![n.clone()],
                None => PgStorage::list(&url)?.into_iter().map(|s| s.name).collect(),
            };
            for name in &names {
                let mut store = PgStorage::connect(&url, name)?;
                if store.settings()?.is_none() {
                    return Err(TuneError::Study(format!("{}: there is no study `{name}`; see `tune study list --storage URL`", crate::study::storage::redact(&url))));
                }
                let trials = store.trials()?;
                let out = match (&args.out, names.len()) {
                    (Some(dir), 1) => dir.clone(),
                    (Some(dir), _) => dir.join(name),
                    (None, _) => args.path.join(name).join("report"),
                };
                // `tune retrain --storage` trains under <runs>/<study>/retrain on the machine that ran it.
                let retrain_dir = args.path.join(name).join("retrain");
                generated.push((format!("{} (study `{name}`)", crate::study::storage::redact(&url)), crate::report::generate_at(name, trials, &retrain_dir, &out)?));
            }
        }
    }
    for (what, g) in generated {
        println!("study {what}: {}", crate::report::counts_line(&g.trials));
        println!("{}", crate::study::leaderboard::render(&g.trials, args.top));
        for r in &g.retrains {
            println!("retrain {}", r.line());
        }
        println!("report: {} ({} files)\n", g.dir.join("index.html").display(), g.files.len());
    }
    Ok(())
}

fn run_command(args: RunArgs) -> Result<()> {
    let summary = crate::study::run(crate::study::RunOptions {
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
        storage: args.storage.storage,
        artifacts: args.artifacts,
        threads: args.threads,
    })?;
    println!("{}", crate::study::leaderboard::render(&summary.trials, 10));
    let count = |s: crate::study::TrialState| summary.counts.get(&s).copied().unwrap_or(0);
    use crate::study::TrialState as S;
    let sampled = summary.counts.values().sum::<usize>().max(1);
    println!(
        "{} complete, {} pruned, {} failed, {} infeasible ({:.0}% of sampled networks, never launched)",
        count(S::Complete), count(S::Pruned), count(S::Failed), count(S::Infeasible), 100.0 * count(S::Infeasible) as f64 / sampled as f64
    );
    if summary.epochs_run > 0 {
        let hours = summary.wall_secs / 3600.0;
        println!(
            "this run: {} trial-epochs in {:.0}s = {:.1} trial-epochs/hour, {:.0} training images/s aggregate; epochs fill {:.0}% of slot time",
            summary.epochs_run, summary.wall_secs, summary.epochs_run as f64 / hours, summary.images_trained / summary.wall_secs,
            100.0 * summary.epoch_secs / (summary.wall_secs * summary.slots as f64)
        );
    }
    println!("leaderboard: {}", summary.dir.join("leaderboard.csv").display());
    if summary.timed_out {
        let left = summary.counts.get(&crate::study::TrialState::Running).copied().unwrap_or(0);
        println!("time budget reached: {left} trial(s) stopped after their last finished epoch. Continue with: {}", resume_command());
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

fn train_command(args: TrainArgs) -> Result<()> {
    set_threads(args.threads);
    if args.exit_on_stdin_eof {
        exit_when_stdin_closes();
    }
    let (arch, params) = load_params(args.params.as_deref())?;
    let cfg = resolve_config(&args, &params)?;
    let shapes = model::infer(&arch)?; // an impossible network writes nothing
    let (data, splits) = load_data(&args.data)?;
    let train_idx = training::training_indices(&data.train, &splits, &cfg);
    training::write_run_files(&args.out, &arch, &params, &cfg)?;
    let train_data = TrainData { train_images: &data.train, train: train_idx, val_images: &data.official_test, val: splits.validation.clone() };
    let device = crate::backend::device();
    let display = if args.json { Display::Silent } else { Display::Human };
    if !args.json {
        tracing::info!(
            "training {} params on {} images (validation {}), up to {} epochs, backend {}",
            model::shape::group(shapes.total()), train_data.train.len(), train_data.val.len(), cfg.epochs, crate::backend::description()
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
