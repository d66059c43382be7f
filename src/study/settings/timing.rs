//! The study's durations (`timeout`, `heartbeat`, `grace`, `store_wait`), parsed from their
//! text in one place.

use std::time::Duration;

use super::StudySettings;

/// How long a worker waits for a shared store that went away, unless `study.store_wait` says.
pub const DEFAULT_STORE_WAIT: Duration = Duration::from_secs(600);

/// How workers tell each other they are alive (Optuna's heartbeat_interval and grace_period).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Liveness {
    /// How often a worker refreshes the heartbeat of each trial it runs.
    pub heartbeat: Duration,
    /// A running trial whose heartbeat is older than this has lost its worker.
    pub grace: Duration,
    /// How many times one configuration is re-run after lost workers.
    pub max_retries: usize,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness { heartbeat: Duration::from_secs(60), grace: Duration::from_secs(120), max_retries: 3 }
    }
}

/// The study's durations, parsed from their text once: the run's budget, the workers'
/// liveness, and how long a worker waits for a store that went away.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub timeout: Option<std::time::Duration>,
    pub liveness: Liveness,
    pub store_wait: std::time::Duration,
}

/// A bad duration: the key, the problem and the fix.
type BadDuration = (&'static str, String, &'static str);

impl StudySettings {
    /// The durations of `timeout`, `heartbeat`, `grace` and `store_wait`, with their defaults;
    /// `Err` names the bad key (`check_study` reports it, so a loaded study's parse cannot fail).
    pub fn timing(&self) -> std::result::Result<Timing, BadDuration> {
        let parse = |text: &Option<String>, key: &'static str, fix: &'static str| {
            text.as_deref().map(parse_timeout).transpose().map_err(|problem| (key, problem, fix))
        };
        const SHORT: &str = "write a duration such as \"30s\" or \"2m\"; the grace must be longer than the heartbeat";
        let timeout = parse(&self.timeout, "study.timeout", "write a duration such as \"90m\" or \"2h 30m\"")?;
        let mut liveness = Liveness { max_retries: self.max_retries, ..Default::default() };
        if let Some(d) = parse(&self.heartbeat, "study.heartbeat", SHORT)? {
            liveness.heartbeat = d;
        }
        if let Some(d) = parse(&self.grace, "study.grace", SHORT)? {
            liveness.grace = d;
        }
        if liveness.grace <= liveness.heartbeat {
            return Err((
                "study.grace",
                format!(
                    "{:?} is not longer than the heartbeat {:?}: live workers would be declared lost",
                    liveness.grace, liveness.heartbeat
                ),
                SHORT,
            ));
        }
        let store_wait = parse(&self.store_wait, "study.store_wait", "write a duration such as \"10m\"")?
            .unwrap_or(DEFAULT_STORE_WAIT);
        Ok(Timing { timeout, liveness, store_wait })
    }
}

/// Longest wall-clock budget accepted.
pub const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(366 * 24 * 3600);

/// Parses a wall-clock budget ("2h", "90m", "1h 30m"): more than 0, at most a year.
pub fn parse_timeout(text: &str) -> std::result::Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("`{text}` is not a duration ({e})"))?;
    if d.is_zero() || d > MAX_TIMEOUT {
        return Err(format!("`{text}` is not between 1 second and 366 days"));
    }
    Ok(d)
}
