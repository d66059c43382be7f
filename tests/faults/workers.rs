//! The harness's worker processes: started in their namespaces, revived, reaped, waited for.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::WORKERS;
use crate::seed::{Harness, trials_budget};
use libtest_mimic::Failed;

impl Harness {
    pub(crate) fn start(&mut self, i: usize) -> Result<(), Failed> {
        let slot = &mut self.slots[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&slot.log)?;
        let mut args = vec![
            "run",
            self.space.to_str().unwrap(),
            "--storage",
            &slot.via,
            "--concurrency",
            "1",
            "--data-dir",
            "data",
            "--artifacts",
            self.artifacts.to_str().unwrap(),
        ];
        args.extend(self.flags.iter().copied());
        let child = self
            .f
            .cmd_via(&slot.ns.wrapper(), &args)
            .env("TUNE_LOG", "info")
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?;
        slot.pids.push(child.id());
        slot.child = Some(child);
        Ok(())
    }

    /// Starts again every worker that is not running, unless the study is done.
    pub(crate) fn revive(&mut self, name: &str) -> Result<(), Failed> {
        for i in 0..WORKERS {
            if self.slots[i].child.is_none() && !self.done(name) {
                self.start(i)?;
                self.report.restarts += 1;
            }
        }
        Ok(())
    }

    /// Whether every trial is terminal and the budget spent (from the host, not a namespace).
    pub(crate) fn done(&self, name: &str) -> bool {
        let Ok(mut store) = tune::study::storage::PgStorage::connect(&self.url, name) else { return false };
        let Ok(trials) = tune::study::storage::StudyStorage::trials(&mut store) else { return false };
        !trials.is_empty() && trials.values().all(|t| t.state.is_finished()) && trials_budget(&trials) >= self.budget
    }

    /// Sleeps `d`, reaping workers that exit meanwhile. Exit 0 is a worker with nothing left
    /// to do; exit 9 (a full disk) is expected while the disk is full (the worker starts again once it has
    /// room); any other exit the harness did not cause is an anomaly.
    pub(crate) fn pause(&mut self, d: Duration, name: &str) -> Result<(), Failed> {
        let until = Instant::now() + d;
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
            for i in 0..WORKERS {
                let Some(child) = self.slots[i].child.as_mut() else { continue };
                let Some(status) = child.try_wait()? else { continue };
                let pid = child.id();
                self.slots[i].child = None;
                if status.success() {
                    continue;
                }
                self.ended_early.push(pid);
                if !(self.disk_full && status.code() == Some(9)) {
                    let tail = tail(&self.slots[i].log);
                    self.report.anomalies.push(format!("worker {i} exited with {status} on its own:\n{tail}"));
                }
                if !self.disk_full {
                    self.revive(name)?;
                }
            }
        }
        Ok(())
    }

    pub(crate) fn wait_exit(&mut self, i: usize, limit: Duration) -> Result<(), Failed> {
        let Some(mut child) = self.slots[i].child.take() else { return Ok(()) };
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    let tail = tail(&self.slots[i].log);
                    self.report.anomalies.push(format!("worker {i} ended with {status}:\n{tail}"));
                }
                return Ok(());
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                self.report.anomalies.push(format!("worker {i} did not exit after the study ended"));
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn pid(&self, i: usize) -> Option<u32> {
        self.slots[i].child.as_ref().map(Child::id)
    }
}

/// The last 30 lines of a log.
pub(crate) fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
