//! The checker after a seed: the store's invariants, the workers' logs, and the evidence kept on a finding.

use std::collections::BTreeMap;
use std::path::Path;

use crate::MAX_RETRIES;
use crate::seed::{Harness, lost};
use crate::workers::tail;
use tune::study::TrialRecord;

impl Harness {
    /// The store's invariants: every trial terminal; epochs 1, 2, … once each; nothing recorded
    /// after a trial finished (a frozen or cut-off worker's late writes refused); re-runs of a
    /// trial at most `max_retries`, each with its configuration; the budget's configurations
    /// those of the fault-free run, in order.
    pub(crate) fn check_store(
        &mut self,
        trials: &BTreeMap<usize, TrialRecord>,
        reference: &BTreeMap<usize, TrialRecord>,
    ) {
        let a = &mut self.report.anomalies;
        for t in trials.values() {
            if !t.state.is_finished() {
                a.push(format!("trial {} is not terminal: {:?}", t.number, t.state));
            }
            let epochs: Vec<usize> = t.history.iter().map(|m| m.epoch).collect();
            if epochs != (1..=epochs.len()).collect::<Vec<_>>() {
                a.push(format!("trial {}: epochs {epochs:?}", t.number));
            }
            let finished = t.times.finished.unix_secs();
            if let Some(late) =
                t.times.epochs.iter().filter_map(|s| s.unix_secs()).find(|e| finished.is_some_and(|f| *e > f))
            {
                a.push(format!("trial {}: an epoch recorded at {late} after it finished at {finished:?}", t.number));
            }
            let mut depth = 0;
            let mut at = t;
            while let Some(of) = at.retry_of {
                depth += 1;
                let Some(original) = trials.get(&of) else {
                    a.push(format!("trial {} re-runs {of}, which is not in the store", at.number));
                    break;
                };
                if original.params != t.params || original.seed != t.seed {
                    a.push(format!("trial {} re-runs {of} with another configuration", at.number));
                }
                at = original;
            }
            if depth > MAX_RETRIES {
                a.push(format!("trial {}: {depth} re-runs, more than max_retries = {MAX_RETRIES}", t.number));
            }
        }
        let drawn: Vec<_> = trials.values().filter(|t| t.retry_of.is_none()).map(|t| (&t.params, t.seed)).collect();
        let expected: Vec<_> = reference.values().map(|t| (&t.params, t.seed)).collect();
        if let Some(k) = (0..drawn.len().max(expected.len())).find(|k| drawn.get(*k) != expected.get(*k)) {
            a.push(format!(
                "draw {k} (of {} drawn, {} expected) differs from the fault-free run's: {:?} vs {:?}",
                drawn.len(),
                expected.len(),
                drawn.get(k),
                expected.get(k)
            ));
        }
    }

    /// Keeps what a seed with a finding leaves behind, which the fixture's directory would
    /// delete: every worker's whole log and the store's records, under the test target's
    /// temporary directory (`target/tmp/faults/seed-N/`), and says where.
    pub(crate) fn keep_evidence(&self, seed: u64, trials: &BTreeMap<usize, TrialRecord>) {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults").join(format!("seed-{seed}"));
        let kept = std::fs::create_dir_all(&dir).and_then(|()| {
            for (i, slot) in self.slots.iter().enumerate() {
                std::fs::copy(&slot.log, dir.join(format!("worker-{i}.log")))?;
            }
            let records: Vec<String> = trials.values().map(|t| format!("{t:?}")).collect();
            std::fs::write(dir.join("trials.txt"), records.join("\n"))
        });
        match kept {
            Ok(()) => eprintln!("seed {seed}: whole worker logs and the store's trials kept in {}", dir.display()),
            Err(e) => eprintln!("seed {seed}: could not keep the logs in {}: {e}", dir.display()),
        }
    }

    /// A worker whose trial was declared lost while it was frozen or cut off says so in its log
    /// and stops that trial's process; no worker panics.
    pub(crate) fn check_logs(&mut self, trials: &BTreeMap<usize, TrialRecord>) {
        let logs: Vec<String> =
            self.slots.iter().map(|s| std::fs::read_to_string(&s.log).unwrap_or_default()).collect();
        for (i, log) in logs.iter().enumerate() {
            if log.contains("panicked") {
                self.report.anomalies.push(format!("worker {i} panicked:\n{}", tail(&self.slots[i].log)));
            }
        }
        for t in trials.values().filter(|t| lost(t)) {
            // The worker that ran the lost trial, unless the harness killed it or it stopped
            // on the full disk, woke up or reconnected: it must have learned the verdict.
            let Some(pid) = t.times.worker().and_then(|w| w.rsplit(':').next()?.parse::<u32>().ok()) else {
                continue;
            };
            let Some(i) = self.slots.iter().position(|s| s.pids.contains(&pid)) else { continue };
            if self.ended_early.contains(&pid) {
                continue;
            }
            if !logs[i].contains(&format!("trial {} was declared lost", t.number)) {
                self.report.unconfirmed.push(format!(
                    "trial {} was declared lost, but worker {i} (pid {pid}) that ran it never said so:\n{}",
                    t.number,
                    tail(&self.slots[i].log)
                ));
            }
        }
    }
}
