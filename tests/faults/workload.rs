//! The two workloads of the harness: real tiny trainings and instant-objective trials.

use crate::common::workers::*;
use crate::{GRACE_SECS, MAX_RETRIES};

/// What the workers' trials do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workload {
    /// Real tiny trainings of 8 epochs on 3,000 images.
    Training,
    /// Trials that report 3 epochs 100 ms apart and train nothing.
    Instant,
}

impl Workload {
    /// Trials of a study: bounded (in `cargo test`) or in a soak.
    pub(crate) fn trials(self, soak: bool) -> usize {
        match (self, soak) {
            (Workload::Training, false) => 24,
            (Workload::Training, true) => 60,
            (Workload::Instant, false) => 240,
            (Workload::Instant, true) => 600,
        }
    }

    /// The study's space for `trials` trials.
    pub(crate) fn space(self, name: &str, trials: usize) -> String {
        let extra =
            format!("heartbeat = \"1s\"\ngrace = \"{GRACE_SECS}s\"\nstore_wait = \"3m\"\nmax_retries = {MAX_RETRIES}");
        match self {
            Workload::Training => random_space(name, trials, &extra, 8, 3000),
            Workload::Instant => random_space(name, trials, &extra, 3, 300),
        }
    }

    /// Extra `tune run` flags of a worker (`reference`: the fault-free run, whose pace does
    /// not matter).
    pub(crate) fn flags(self, reference: bool) -> Vec<&'static str> {
        match (self, reference) {
            (Workload::Training, _) => vec![],
            (Workload::Instant, false) => vec!["--instant-objective-ms", "100"],
            (Workload::Instant, true) => vec!["--instant-objective-ms", "1"],
        }
    }
}
