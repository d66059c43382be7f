//! The checked start of `tune run`: everything is checked before anything is written — the
//! space and flags, the data, the enqueued configurations and the space's feasibility — then
//! the study directory is created, locked, compared with its frozen settings and (re)written.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::devices::Placement;
pub use super::resolved::Resolved;
use super::sampler::Sampler;
use super::settings::SamplerKind;
use super::settings::Timing;
use super::space::{Distribution, SearchSpace};
use super::storage::{StorageSpec, StudyStorage};
use super::trial::TrialRecord;
use crate::error::{Result, TuneError};
use crate::model::Value;
use crate::model::params::block_index;
use crate::model::{Architecture, Params, infer};

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
    /// Wall-clock budget of this run; overrides `study.timeout`.
    pub timeout: Option<std::time::Duration>,
    /// `--storage`/`TUNE_STORAGE`: a shared store's URL; overrides `study.storage`.
    pub storage: Option<String>,
    /// `--artifacts`: where trial directories go (default `<runs>/<study>/trials`).
    pub artifacts: Option<PathBuf>,
    /// `--threads`: compute threads per trial (default: cores / concurrency).
    pub threads: Option<usize>,
    /// `--devices`: devices the trials train on; overrides `study.devices`.
    pub devices: Vec<String>,
    /// `--trials-per-device`: overrides `study.trials_per_device`.
    pub trials_per_device: Option<usize>,
    /// The training split's size when the caller knows it (the replay benchmark, whose
    /// trials train nothing): the data set is then not loaded.
    pub known_train_size: Option<usize>,
}

/// A study ready to run: checked, locked, its frozen settings written, its records replayed.
pub struct Opened {
    pub dir: PathBuf,
    pub resolved: Resolved,
    /// Configurations to evaluate first (trial n takes `queue[n]`).
    /// Proposes configurations: the enqueued ones first, then the configured sampler.
    pub sampler: Box<dyn Sampler>,
    pub trials: BTreeMap<usize, TrialRecord>,
    /// Images in the train split (for throughput figures when no subset is set).
    pub train_size: usize,
    /// The study's records, opened for writing by this process.
    pub storage: Box<dyn StudyStorage>,
    /// Where trial directories (checkpoints, metrics.csv) live.
    pub artifacts: PathBuf,
    /// Other workers may share the study (a database): poll, heartbeat, reap lost trials.
    pub shared: bool,
    pub timing: Timing,
    /// The devices trial slots are placed on (`None`: the CPU, `concurrency` slots).
    pub placement: Option<Placement>,
}

/// Checks everything, then opens (creating or resuming) the study.
pub fn open(opts: &RunOptions) -> Result<Opened> {
    let (dir, resolved, placement) = prepare(opts)?;
    let space = &resolved.space;
    let train_size = match opts.known_train_size {
        Some(n) => n,
        None => {
            let data = crate::data::FashionMnist::load(opts.data_dir.as_deref())?;
            let split = crate::data::SplitConfig { seed: opts.split_seed, test_per_class: None };
            crate::data::Splits::new(&data.train, &data.official_test, split).train.len()
        }
    };
    let queue = enqueued(space)?;
    probe_feasibility(space)?;
    let sampler = super::sampler::build(space, queue)?;
    let original = crate::files::read_text(&opts.space_file)?;

    let spec = storage_spec(opts, &resolved)?;
    let timing = space.study.timing().expect("checked by check_study");
    let mut storage = spec.open(&space.study.name, timing.store_wait)?;
    storage.create_or_open(&resolved, &original)?;
    // A journal's directory holds its records; a store's study keeps its files there too.
    std::fs::create_dir_all(&dir).map_err(|e| TuneError::io(&dir, e))?;
    let artifacts = opts.artifacts.clone().unwrap_or_else(|| dir.join("trials"));
    std::fs::create_dir_all(&artifacts).map_err(|e| TuneError::io(&artifacts, e))?;
    let trials = storage.trials()?;
    Ok(Opened {
        dir,
        resolved,
        sampler,
        trials,
        train_size,
        storage,
        artifacts,
        shared: spec.is_shared(),
        timing,
        placement,
    })
}

/// `--storage` / `TUNE_STORAGE` (already in `opts`), else the space's `study.storage`, else
/// the journal under the runs directory.
fn storage_spec(opts: &RunOptions, resolved: &Resolved) -> Result<StorageSpec> {
    match &opts.storage {
        Some(url) => StorageSpec::parse(Some(url), "--storage", &opts.runs_dir),
        None => StorageSpec::parse(
            resolved.space.study.storage.as_deref(),
            &resolved.space.file.display().to_string(),
            &opts.runs_dir,
        ),
    }
}

fn prepare(opts: &RunOptions) -> Result<(PathBuf, Resolved, Option<Placement>)> {
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
    if let Some(v) = opts.trials {
        s.trials = v;
    }
    if let Some(v) = opts.seed {
        s.seed = v;
    }
    if let Some(v) = opts.concurrency {
        s.concurrency = Some(v);
    }
    if !opts.devices.is_empty() {
        s.devices = opts.devices.clone();
    }
    if let Some(v) = opts.trials_per_device {
        s.trials_per_device = Some(v);
    }
    // Re-checked with the flags applied (they are range-checked by clap as well).
    let err = |key: &str, problem: String, fix: String| TuneError::Config {
        file: file.clone(),
        key: key.into(),
        problem,
        fix,
    };
    super::settings::check_study(s, &err)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let placement = s.placement(crate::backend::NAME).expect("checked by check_study");
    let concurrency = match &placement {
        Some(p) => p.slots(),
        None => s.concurrency.unwrap_or(cores).max(1),
    };
    let resolved = Resolved {
        threads_per_trial: opts.threads.unwrap_or(cores / concurrency).max(1),
        concurrency,
        split_seed: opts.split_seed,
        data_dir: opts.data_dir.clone(),
        space,
    };
    let dir = opts.runs_dir.join(&resolved.space.study.name);
    Ok((dir, resolved, placement))
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
        problem: format!(
            "only {feasible} of {PROBE_DRAWS} networks drawn from this space can be built ({count} fail at `{layer}`)"
        ),
        fix: "narrow filter, stride, pool and depth ranges, add padding, or raise study.max_params".into(),
    })
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

/// The seed's default network, restricted to the space's parameters, if the space holds it.
fn default_config(space: &SearchSpace) -> Option<Params> {
    let seed = Architecture::default().to_params();
    let tr = &space.study.training;
    let mut p = Params::new();
    for (key, dist) in &space.params {
        let v = match (key.as_str(), dist) {
            (_, Distribution::Fixed(v)) => v.clone(),
            (k, _) if seed.contains_key(k) => seed[k].clone(),
            // The seed's blocks are plain; its params leave the key out where it is off.
            (k, _) if block_index(k, "conv").is_some() && k.ends_with("_residual") => Value::Int(0),
            (k, _) => match tr.dictionary_value(k) {
                Some(v) => v,
                None => continue,
            },
        };
        p.insert(key.clone(), v);
    }
    SearchSpace::prune_inactive(&mut p);
    space.complete(&p).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A space that searches residual blocks still holds the seed's (plain) network, and
    /// enqueues it first.
    #[test]
    fn the_seed_is_enqueued_when_residual_blocks_are_searched() {
        let text = "[study]\nname = \"r\"\n[params]\nn_conv = 3\n\"conv*_channels\" = { choice = [32, 64, 128] }\n\
                    conv0_pool = 1\n\"conv*_pool\" = 2\n\"conv*_residual\" = { int = [0, 1] }\nn_fc = 2\nfc0_neurons = 512\nfc1_neurons = 256\n";
        let space = SearchSpace::parse(text, Path::new("r.toml")).unwrap();
        let queue = enqueued(&space).unwrap();
        assert_eq!(queue.len(), 1, "the seed's network is in the space");
        assert_eq!(queue[0].get("conv2_residual"), Some(&Value::Int(0)));
        assert_eq!(Architecture::from_params(&queue[0], Path::new("q")).unwrap(), Architecture::default());
    }

    /// What README tells people to run must start: every shipped space parses, its enqueued
    /// networks (the seed's first, where the space holds it) are complete and feasible, and
    /// enough of its random networks can be built.
    #[test]
    fn every_shipped_space_passes_the_start_checks() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("search_spaces");
        let mut checked = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let space = SearchSpace::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
                let queue = enqueued(&space).unwrap_or_else(|e| panic!("{e}"));
                probe_feasibility(&space).unwrap_or_else(|e| panic!("{e}"));
                checked.push((path.file_name().unwrap().to_string_lossy().into_owned(), queue.len()));
            }
        }
        checked.sort();
        let names: Vec<&str> = checked.iter().map(|c| c.0.as_str()).collect();
        for shipped in
            ["cnn.toml", "cnn_aug_searched.toml", "cnn_fixed_recipe.toml", "quick.toml", "seed_sagemaker.toml"]
        {
            assert!(names.contains(&shipped), "{shipped} in {names:?}");
        }
        // The main job (the hand-made recipe), its predecessor and its baseline evaluate the
        // seed's network first.
        for main in ["cnn.toml", "cnn_aug_searched.toml", "cnn_fixed_recipe.toml"] {
            assert!(checked.iter().any(|(n, q)| n == main && *q >= 1), "{main}: {checked:?}");
        }
    }

    #[test]
    fn feasibility_rejects_collapsing_and_oversized_networks() {
        let space = |extra: &str| {
            SearchSpace::parse(
                &format!("[study]\nname = \"f\"\n{extra}\n[params]\nconv0_channels = 8\n"),
                Path::new("f.toml"),
            )
            .unwrap()
        };
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
