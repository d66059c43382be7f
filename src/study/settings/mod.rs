//! The `[study]` table of a search space: its settings with their defaults (the sampler, the
//! pruner and scheduler, budgets, shared-storage timing, `[study.training]`, `[study.pruning]`,
//! `[study.tpe]`, `[study.pbt]`) and the one check of them, whose errors name the key and the fix.

use serde::{Deserialize, Serialize};

use super::objectives::Objective;

mod check;
mod placement;
mod timing;

pub use crate::error::ErrFn;
use crate::error::Result;
use crate::model::Params;
use crate::training::TrainConfig;
pub use check::{MAX_CONCURRENCY, MAX_GRID_POINTS, MAX_NAME_LEN, MAX_TRIALS, check_study};
pub use placement::DEFAULT_TRIALS_PER_GPU;
pub use timing::{DEFAULT_STORE_WAIT, Liveness, MAX_TIMEOUT, Timing, parse_timeout};

/// Which cross-trial pruner stops weak trials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrunerKind {
    None,
    Median,
    Asha,
    Hyperband,
    /// The one-epoch baseline (Egele et al. 2023): every trial trains one epoch, and only the
    /// top 1/η of the first epochs seen so far go on to the end.
    FirstEpoch,
}

/// What a rung decision does to a trial that is not in the top 1/η: stop it for good (Optuna's
/// pruners, Ray Tune's ASHA), or pause it and let it go on later when enough trials have
/// reached the rung for it to be in the top 1/η after all (Li et al.'s promotion ASHA, Syne
/// Tune's `type = "promotion"`), so a late bloomer is never judged on too few peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerKind {
    #[default]
    Stop,
    Promote,
    /// Population-based training (Jaderberg et al. 2017, Ray Tune's defaults): every
    /// `[study.pbt] interval` epochs the bottom quartile is replaced by forks of the top
    /// quartile's checkpoints with perturbed training keys.
    Pbt,
}

impl SchedulerKind {
    /// Whether this scheduler can run with `pruner`: promotion needs rungs (ASHA, Hyperband),
    /// PBT replaces pruning (none), stopping takes any pruner.
    pub fn fits(self, pruner: PrunerKind) -> bool {
        match self {
            SchedulerKind::Stop => true,
            SchedulerKind::Promote => matches!(pruner, PrunerKind::Asha | PrunerKind::Hyperband),
            SchedulerKind::Pbt => pruner == PrunerKind::None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    Random,
    Grid,
    Tpe,
    /// NSGA-II (Deb et al. 2002), for `objectives`: parents by tournament on front and
    /// crowding, uniform crossover, mutation by a fresh draw.
    Nsga2,
}

/// The `[study]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySettings {
    pub name: String,
    /// Only `val_acc` is tracked per epoch; kept explicit so the file says what it optimises.
    #[serde(default = "default_metric")]
    pub metric: String,
    #[serde(default = "default_direction")]
    pub direction: String,
    #[serde(default = "default_trials")]
    pub trials: usize,
    /// Trial slots; default: one per core (1-thread trials give the most images/s on CPU).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Devices the trials train on (`["cuda:0", "cuda:1"]`), each trial process seeing only
    /// its own; with them, the slots are `devices × trials_per_device` and `concurrency` is not
    /// used. Left out: the CPU, or GPU 0 on a CUDA build.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Trials trained at once on each device (default 1 with `devices`, 4 on a CUDA build's GPU 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trials_per_device: Option<usize>,
    #[serde(default = "default_sampler")]
    pub sampler: SamplerKind,
    #[serde(default = "default_pruner")]
    pub pruner: PrunerKind,
    /// `stop` (default): the pruner stops weak trials; `promote`: its rungs pause them and
    /// promote the best paused ones as slots free (asha and hyperband only).
    #[serde(default, skip_serializing_if = "is_stop")]
    pub scheduler: SchedulerKind,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Evaluate the seed's default configuration first (when it lies in the space).
    #[serde(default = "yes")]
    pub enqueue_default: bool,
    /// Other configurations to evaluate first, as parameter dictionaries.
    #[serde(default)]
    pub enqueue: Vec<Params>,
    /// Networks with more parameters than this are recorded infeasible and never trained
    /// (as Keras Tuner's max_model_size): one 44M-parameter draw can hold a slot for hours.
    #[serde(default)]
    pub max_params: Option<usize>,
    /// Wall-clock budget of one `tune run` ("2h", "90m"): at the deadline no new trial starts
    /// and running trials stop after their current epoch, resumable (Optuna's `timeout`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Where the study's records live: a `postgresql://` URL shared by workers on many
    /// machines; left out, a journal under the runs directory. `--storage` and
    /// `TUNE_STORAGE` take precedence.
    #[serde(default)]
    pub storage: Option<String>,
    /// With shared storage: how often each worker renews the heartbeat of its trials ("60s").
    #[serde(default)]
    pub heartbeat: Option<String>,
    /// A running trial whose heartbeat is older than this lost its worker ("120s"): it is
    /// marked failed and its configuration re-run by another worker.
    #[serde(default)]
    pub grace: Option<String>,
    /// How many times one configuration is re-run after lost workers.
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,
    /// How long a worker waits for a shared store that went away before it stops ("10m").
    #[serde(default)]
    pub store_wait: Option<String>,
    /// Points per float parameter for the grid sampler.
    #[serde(default = "default_grid_points")]
    pub grid_points: usize,
    /// TPE random start-up trials.
    #[serde(default = "default_startup")]
    pub startup_trials: usize,
    /// Trial n is sampled from the results of trials < n − history_lag only, and waits for them:
    /// the same seed then gives the same configurations whatever the concurrency.
    #[serde(default = "default_lag")]
    pub history_lag: usize,
    /// `[study.training]`: settings of every trial (a `[params]` entry of the same name wins);
    /// the same settings, defaults and checks as `tune train`'s.
    #[serde(default)]
    pub training: TrainConfig,
    #[serde(default)]
    pub pruning: PrunerSettings,
    /// `[study.tpe]`: how TPE models the history.
    #[serde(default)]
    pub tpe: TpeSettings,
    /// `[study.pbt]`: population-based training (with `scheduler = "pbt"`).
    #[serde(default, skip_serializing_if = "PbtSettings::is_default")]
    pub pbt: PbtSettings,
    /// Several objectives (val_acc first): the leaderboard ranks by non-dominated front and the
    /// `nsga2` sampler searches the front. Empty: val_acc alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objectives: Vec<Objective>,
    /// `[study.nsga2]`: with `sampler = "nsga2"`.
    #[serde(default, skip_serializing_if = "NsgaSettings::is_default")]
    pub nsga2: NsgaSettings,
}

/// `[study.nsga2]`, with Optuna's defaults where it has them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NsgaSettings {
    /// Trials of the first, random generation, and of the parents kept after it.
    pub population: usize,
    /// Chance that a child's parameter is drawn afresh; default 1 / (number of parameters).
    pub mutation_probability: Option<f64>,
    /// Chance that a parameter comes from the second parent rather than the first.
    pub swapping_probability: f64,
}

impl Default for NsgaSettings {
    fn default() -> Self {
        NsgaSettings { population: 20, mutation_probability: None, swapping_probability: 0.5 }
    }
}

impl NsgaSettings {
    fn is_default(&self) -> bool {
        *self == NsgaSettings::default()
    }
}

/// `[study.pbt]`, with Ray Tune's defaults. The population is the study's `trials`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PbtSettings {
    /// Epochs between exploit/explore steps (Ray's perturbation_interval).
    pub interval: usize,
    /// Share of the population replaced at each step, and the share forked from.
    pub quantile: f64,
    /// Chance that a perturbed key is drawn afresh from its distribution instead.
    pub resample_probability: f64,
}

impl Default for PbtSettings {
    fn default() -> Self {
        PbtSettings { interval: 2, quantile: 0.25, resample_probability: 0.25 }
    }
}

impl PbtSettings {
    fn is_default(&self) -> bool {
        *self == PbtSettings::default()
    }
}

/// `[study.tpe]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TpeSettings {
    /// One joint density over all parameters (Optuna's multivariate, group TPE), so depth
    /// and the widths that went with it are proposed together; false: each parameter alone.
    pub multivariate: bool,
    /// Share of draws after the start-up taken uniformly, so the search never stops looking.
    pub exploration: f64,
    /// Candidates drawn from the good density per proposal.
    pub candidates: usize,
    /// Most observations in the bad density, evenly spaced along the ranking: proposals stay
    /// within milliseconds at 10,000 trials; studies below the cap propose exactly as before.
    pub max_bad: usize,
}

impl Default for TpeSettings {
    fn default() -> Self {
        TpeSettings { multivariate: true, exploration: 0.1, candidates: 24, max_bad: DEFAULT_MAX_BAD }
    }
}

/// The default cap of TPE's bad group (see `TpeSettings::max_bad`).
pub const DEFAULT_MAX_BAD: usize = 400;

/// `[study.pruning]`: rungs at `min_resource · reduction_factor^k` epochs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrunerSettings {
    pub min_resource: usize,
    pub reduction_factor: usize,
    /// Median pruner: epochs before any pruning, and finished trials needed first.
    pub warmup_epochs: usize,
    pub startup_trials: usize,
}

impl Default for PrunerSettings {
    fn default() -> Self {
        PrunerSettings { min_resource: 1, reduction_factor: 3, warmup_epochs: 2, startup_trials: 3 }
    }
}

fn is_stop(s: &SchedulerKind) -> bool {
    *s == SchedulerKind::Stop
}
fn default_metric() -> String {
    "val_acc".into()
}
fn default_max_retries() -> usize {
    3
}
fn default_direction() -> String {
    "maximize".into()
}
fn default_trials() -> usize {
    20
}
fn default_sampler() -> SamplerKind {
    SamplerKind::Tpe
}
fn default_pruner() -> PrunerKind {
    PrunerKind::Asha
}
fn default_seed() -> u64 {
    42
}
fn yes() -> bool {
    true
}
fn default_grid_points() -> usize {
    3
}
fn default_startup() -> usize {
    8
}
fn default_lag() -> usize {
    4
}

#[cfg(test)]
mod tests {
    use crate::study::space::SearchSpace;
    use std::path::Path;

    /// Every duration is parsed in one place: the defaults, each key's value, and each bad
    /// value refused under its own key.
    #[test]
    fn durations_are_parsed_once_with_their_keys() {
        let study = |extra: &str| {
            SearchSpace::parse(&format!("[study]\nname = \"t\"\n{extra}\n[params]\nlr = 0.001\n"), Path::new("s.toml"))
        };
        let t = study("").unwrap().study.timing().unwrap();
        assert_eq!(t.timeout, None);
        assert_eq!(t.store_wait, crate::study::storage::postgres_patience());
        assert!(t.liveness.grace > t.liveness.heartbeat);
        let t = study("timeout = \"1h 30m\"\nheartbeat = \"5s\"\ngrace = \"20s\"\nstore_wait = \"2m\"")
            .unwrap()
            .study
            .timing()
            .unwrap();
        let secs = |d: std::time::Duration| d.as_secs();
        assert_eq!(
            (t.timeout.map(secs), secs(t.liveness.heartbeat), secs(t.liveness.grace), secs(t.store_wait)),
            (Some(5400), 5, 20, 120)
        );
        for (line, key) in [
            ("timeout = \"soon\"", "study.timeout"),
            ("heartbeat = \"0s\"", "study.heartbeat"),
            ("grace = \"x\"", "study.grace"),
            ("heartbeat = \"1m\"\ngrace = \"30s\"", "study.grace"),
            ("store_wait = \"400 days\"", "study.store_wait"),
        ] {
            let msg = study(line).unwrap_err().to_string();
            assert!(msg.contains(&format!("`{key}`")) && msg.contains("duration"), "{line}: {msg}");
        }
    }
}
