//! The server itself going away mid-study: a clean restart and a postmaster killed with -9.

use std::time::{Duration, Instant};

use crate::common::workers::*;
use crate::common::*;
use libtest_mimic::Failed;
use tune::study::TrialState;

pub(crate) fn server_restart() -> Result<(), Failed> {
    outage(false)
}

/// As [`server_restart`], but the postmaster is killed with -9 (crash recovery on restart,
/// not a clean shutdown); its orphaned backends may hold the shared memory a moment longer.
pub(crate) fn postmaster_killed() -> Result<(), Failed> {
    outage(true)
}

fn outage(crash: bool) -> Result<(), Failed> {
    let (url, ctl) = (url().unwrap(), std::env::var("TUNE_TEST_PG_CTL").unwrap());
    let f = Fixture::new(600, 60);
    let name = unique("restart");
    let s =
        f.write("r.toml", &random_space(&name, 4, "heartbeat = \"1s\"\ngrace = \"4s\"\nstore_wait = \"2m\"", 4, 300));
    let w = worker(&f, &s, &url, &[]);
    let started = Instant::now();
    loop {
        check(started.elapsed() < Duration::from_secs(60), "no epoch recorded before the restart".into())?;
        if store_trials(&url, &name).values().any(|t| !t.history.is_empty()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if crash {
        let pid_file = std::path::Path::new(&ctl).with_file_name("data").join("postmaster.pid");
        let pid = std::fs::read_to_string(&pid_file)?.lines().next().unwrap_or("").trim().to_string();
        let kill = std::process::Command::new("kill").args(["-9", &pid]).output()?;
        check(kill.status.success(), format!("kill -9 {pid}: {}", text(&kill)))?;
    } else {
        let stop = std::process::Command::new(&ctl).args(["stop", "-m", "fast"]).output()?;
        check(stop.status.success(), format!("pg_ctl stop: {}", text(&stop)))?;
    }
    std::thread::sleep(Duration::from_secs(4));
    let mut start = std::process::Command::new(&ctl).arg("start").output()?;
    for _ in 0..20 {
        if start.status.success() || !crash {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        start = std::process::Command::new(&ctl).arg("start").output()?;
    }
    check(start.status.success(), format!("pg_ctl start: {}", text(&start)))?;
    let out = finish(w, "the worker")?;
    let trials = store_trials(&url, &name);
    check(out.contains("store reachable again"), format!("the worker met the outage and waited it out:\n{out}"))?;
    check(
        trials.len() == 4 && trials.values().all(|t| t.state == TrialState::Complete && t.history.len() == 4),
        format!("nothing lost: {trials:?}\n{out}"),
    )?;
    let epochs: Vec<usize> = trials.values().flat_map(|t| t.history.iter().map(|m| m.epoch)).collect();
    check(epochs.len() == 16, format!("each epoch recorded once: {epochs:?}"))
}
