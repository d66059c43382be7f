//! One seed's study under faults from start to verdict, the soak over many seeds, and the harness's state.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::WORKERS;
use crate::common::netns::Netns;
use crate::common::workers::*;
use crate::common::*;
use crate::report::{Fault, Report};
use crate::workload::Workload;
use libtest_mimic::Failed;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tune::study::{TrialRecord, TrialState};

/// Seeds from `first` on, each a study of 60 training trials or 600 instant ones by turns,
/// until `length` has passed; one table.
pub(crate) fn soak(first: u64, length: Duration) -> Result<(), Failed> {
    let started = Instant::now();
    let mut total = Report::default();
    let mut seed = first;
    while started.elapsed() < length {
        let workload = if (seed - first).is_multiple_of(2) { Workload::Training } else { Workload::Instant };
        let report = run_seed_of(seed, workload, workload.trials(true))?;
        eprintln!("{report}");
        total.absorb(report);
        seed += 1;
    }
    eprintln!("soak of {:.0} min, seeds {first}..{}:\n{total}", started.elapsed().as_secs_f64() / 60.0, seed - 1);
    total.verdict()
}

/// One worker: its namespace, its store URL through the namespace's relay, its process and
/// log, and the pids it ran as (a restart is a new pid).
pub(crate) struct Slot {
    pub(crate) ns: Netns,
    pub(crate) via: String,
    pub(crate) child: Option<Child>,
    pub(crate) log: PathBuf,
    pub(crate) pids: Vec<u32>,
}

pub(crate) struct Harness {
    pub(crate) f: Fixture,
    pub(crate) url: String,
    pub(crate) ctl: String,
    pub(crate) space: PathBuf,
    pub(crate) budget: usize,
    pub(crate) artifacts: PathBuf,
    pub(crate) slots: Vec<Slot>,
    pub(crate) report: Report,
    /// The workload's extra `tune run` flags for every worker.
    pub(crate) flags: Vec<&'static str>,
    /// While the artifacts disk is full, an exit of 5 (disk full) is expected.
    pub(crate) disk_full: bool,
    /// Worker processes that the harness killed, or that stopped on the full disk: their
    /// lost trials cannot have been noticed by them.
    pub(crate) ended_early: Vec<u32>,
}

/// One seed's study in `cargo test`'s bounded size.
pub(crate) fn run_seed(seed: u64, workload: Workload) -> Result<Report, Failed> {
    run_seed_of(seed, workload, workload.trials(false))
}

fn run_seed_of(seed: u64, workload: Workload, trials: usize) -> Result<Report, Failed> {
    let url = url().unwrap();
    let ctl = std::env::var("TUNE_TEST_PG_CTL")?;
    let f = Fixture::new(4000, 60);
    let name = unique(&format!("faults-{seed}"));
    let study = |name: &str| workload.space(name, trials);
    // The reference: the same study without faults, in one process with the journal.
    let reference = f.write("reference.toml", &study("reference"));
    let mut args = vec!["run", reference.to_str().unwrap(), "--concurrency", "1", "--data-dir", "data"];
    args.extend(workload.flags(true));
    ok(f.run(&args));
    let reference = tune::study::run::load_trials(&f.path("runs/reference"))?;

    let space = f.write("faults.toml", &study(&name));
    let artifacts = f.path("artifacts");
    std::fs::create_dir_all(&artifacts)?;
    let mount = Command::new("mount").args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"]).arg(&artifacts).output()?;
    check(mount.status.success(), format!("mount tmpfs: {}", text(&mount)))?;
    let _unmount = Unmount(artifacts.clone());
    let mut slots = Vec::new();
    for i in 0..WORKERS {
        let ns = Netns::new(40 + i as u8)?;
        let via = store_via(&ns, &url, Duration::ZERO)?;
        slots.push(Slot { ns, via, child: None, log: f.path(&format!("worker{i}.log")), pids: Vec::new() });
    }
    let mut h = Harness {
        f,
        url,
        ctl,
        space,
        budget: trials,
        artifacts,
        slots,
        report: Report { seeds: vec![seed], ..Report::default() },
        flags: workload.flags(false),
        disk_full: false,
        ended_early: Vec::new(),
    };
    let started = Instant::now();
    for i in 0..WORKERS {
        h.start(i)?;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    // Faults while the study runs, one at a time, each healed before the next.
    while !h.done(&name) && started.elapsed() < Duration::from_secs(240) {
        h.pause(Duration::from_millis(rng.random_range(300..1500)), &name)?;
        if h.done(&name) {
            break;
        }
        let fault = Fault::ALL[rng.random_range(0..Fault::ALL.len())];
        let victim = rng.random_range(0..WORKERS);
        eprintln!("seed {seed} at {:>5.1} s: {fault:?} of worker {victim}", started.elapsed().as_secs_f64());
        h.inject(fault, victim, &mut rng, &name)?;
        *h.report.injected.entry(fault).or_default() += 1;
    }
    // Healed: the workers finish the study (a fresh one if every worker has exited).
    while !h.done(&name) {
        check(started.elapsed() < Duration::from_secs(420), "the study never finished after the faults".into())?;
        if h.slots.iter().all(|s| s.child.is_none()) {
            h.revive(&name)?;
        }
        h.pause(Duration::from_millis(300), &name)?;
    }
    for i in 0..WORKERS {
        h.wait_exit(i, Duration::from_secs(60))?;
    }
    h.report.secs = started.elapsed().as_secs_f64();
    let recorded = store_trials(&h.url, &name);
    h.check_store(&recorded, &reference);
    h.check_logs(&recorded);
    h.report.trials = recorded.len();
    h.report.lost = recorded.values().filter(|t| lost(t)).count();
    let budget = trials_budget(&recorded);
    if budget != trials {
        h.report.anomalies.push(format!("{budget} trials count toward the budget of {trials}"));
    }
    if !h.report.anomalies.is_empty() || !h.report.unconfirmed.is_empty() {
        h.keep_evidence(seed, &recorded);
    }
    Ok(h.report)
}

pub(crate) fn trials_budget(trials: &BTreeMap<usize, TrialRecord>) -> usize {
    trials.values().filter(|t| t.counts_toward_budget()).count()
}

pub(crate) fn lost(t: &TrialRecord) -> bool {
    t.state == TrialState::Failed && t.reason.as_deref().unwrap_or("").starts_with("worker lost")
}

/// Unmounts the artifacts tmpfs when a seed ends, however it ends.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
