//! The faults the harness injects, and the report of what a seed (or a soak) did and found.

use std::collections::BTreeMap;
use std::fmt;

use crate::common::workers::*;
use libtest_mimic::Failed;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Fault {
    Partition,
    OneWayPartition,
    LatencyAndLoss,
    Freeze,
    KillWorker,
    KillPostmaster,
    FullArtifactsDisk,
}

impl Fault {
    pub(crate) const ALL: [Fault; 7] = [
        Fault::Partition,
        Fault::OneWayPartition,
        Fault::LatencyAndLoss,
        Fault::Freeze,
        Fault::KillWorker,
        Fault::KillPostmaster,
        Fault::FullArtifactsDisk,
    ];
}

/// What one seed (or a soak) did and found.
#[derive(Default)]
pub(crate) struct Report {
    pub(crate) seeds: Vec<u64>,
    /// Fault → how many times it was injected.
    pub(crate) injected: BTreeMap<Fault, usize>,
    pub(crate) trials: usize,
    pub(crate) lost: usize,
    pub(crate) restarts: usize,
    pub(crate) secs: f64,
    pub(crate) anomalies: Vec<String>,
    /// Findings not yet understood that break no invariant of the store: printed, not failed.
    /// (A live owner of a lost trial that never logged the verdict: seen once in CI, seed 3.)
    pub(crate) unconfirmed: Vec<String>,
}

impl Report {
    pub(crate) fn absorb(&mut self, other: Report) {
        self.seeds.extend(other.seeds);
        for (f, n) in other.injected {
            *self.injected.entry(f).or_default() += n;
        }
        self.trials += other.trials;
        self.lost += other.lost;
        self.restarts += other.restarts;
        self.secs += other.secs;
        self.anomalies.extend(other.anomalies);
        self.unconfirmed.extend(other.unconfirmed);
    }

    pub(crate) fn verdict(&self) -> Result<(), Failed> {
        check(self.anomalies.is_empty(), format!("{} anomalies:\n{}", self.anomalies.len(), self.anomalies.join("\n")))
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        writeln!(
            f,
            "seeds {:?}: {} trials ({} declared lost and re-run), {} worker restarts, {:.0} s, {} anomalies",
            self.seeds,
            self.trials,
            self.lost,
            self.restarts,
            self.secs,
            self.anomalies.len()
        )?;
        writeln!(f, "| fault | injected |")?;
        writeln!(f, "| --- | --- |")?;
        for fault in Fault::ALL {
            writeln!(f, "| {fault:?} | {} |", self.injected.get(&fault).unwrap_or(&0))?;
        }
        for a in &self.anomalies {
            writeln!(f, "anomaly: {a}")?;
        }
        for u in &self.unconfirmed {
            writeln!(f, "unconfirmed (not failed): {u}")?;
        }
        Ok(())
    }
}
