//! Network faults between a worker in its own namespace and the store: partitions, latency and loss.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::workers::*;
use crate::common::*;
use crate::running_trial_with_an_epoch;
use libtest_mimic::Failed;
use tune::study::TrialState;

pub(crate) fn partitioned() -> Result<(), Failed> {
    partition(false)
}

pub(crate) fn partitioned_one_way() -> Result<(), Failed> {
    partition(true)
}

/// A worker in its own network namespace is cut off from the store (both ways, or only its
/// own packets dropped) while its trial runs, past the grace. A worker on the host declares
/// the trial lost and re-runs it. Healed, the cut-off worker records nothing into the lost
/// trial, and the study ends with every trial once and the budget exact.
fn partition(one_way: bool) -> Result<(), Failed> {
    let url = url().unwrap();
    let ns = common::netns::Netns::new(if one_way { 11 } else { 10 })?;
    let via = store_via(&ns, &url, Duration::ZERO)?;
    let f = Fixture::new(4000, 60);
    let name = unique(if one_way { "one-way" } else { "partition" });
    let s =
        f.write("p.toml", &random_space(&name, 4, "heartbeat = \"1s\"\ngrace = \"3s\"\nstore_wait = \"2m\"", 6, 3000));
    let args = [
        "run",
        s.to_str().unwrap(),
        "--storage",
        &via,
        "--concurrency",
        "1",
        "--data-dir",
        "data",
        "--artifacts",
        "shared",
    ];
    let cut_off = Worker(Some(f.cmd_via(&ns.wrapper(), &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?));
    let cut = |on: bool| match (one_way, on) {
        (true, true) => ns.drop_outgoing(),
        (true, false) => ns.clear_rules(),
        (false, _) => ns.partition(on),
    };
    let started = Instant::now();
    let victim_trial = running_trial_with_an_epoch(&url, &name, "the worker")?;
    cut(true)?;
    let rescuer = worker(&f, &s, &url, &["--artifacts", "shared"]);
    let verdict = loop {
        let t = store_trials(&url, &name).remove(&victim_trial).unwrap();
        if t.state == TrialState::Failed {
            break t;
        }
        if started.elapsed() > Duration::from_secs(90) {
            cut(false)?;
            return Err(format!("never declared lost: {t:?}").into());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    std::thread::sleep(Duration::from_secs(1));
    cut(false)?;
    let rescued = finish(rescuer, "the rescuer")?;
    let healed = finish(cut_off, "the cut-off worker")?;
    let trials = store_trials(&url, &name);
    let lost = &trials[&victim_trial];
    check(
        lost.state == TrialState::Failed
            && lost.reason.as_deref().unwrap_or("").starts_with("worker lost")
            && lost.history == verdict.history,
        format!("the lost trial changed after its verdict:\n{verdict:?}\n{lost:?}\n{healed}"),
    )?;
    let retry = trials.values().find(|t| t.retry_of == Some(victim_trial));
    check(
        retry.is_some_and(|r| r.state == TrialState::Complete && r.params == lost.params),
        format!("re-run: {retry:?}\n{rescued}"),
    )?;
    every_epoch_once_and_the_budget_exact(&trials, 4)
}

/// Two workers, one behind 20 ms each way and 3 % packet loss each way (TCP retransmits
/// take 200 ms and more): every trial runs once, none is declared lost, and the budget is exact.
pub(crate) fn lossy_study() -> Result<(), Failed> {
    let url = url().unwrap();
    let ns = common::netns::Netns::new(12)?;
    let via = store_via(&ns, &url, Duration::from_millis(20))?;
    ns.lossy(3)?;
    let f = Fixture::new(4000, 60);
    let name = unique("lossy");
    let s = f.write("n.toml", &random_space(&name, 6, "heartbeat = \"1s\"\ngrace = \"10s\"", 3, 3000));
    let args = ["run", s.to_str().unwrap(), "--storage", &via, "--concurrency", "1", "--data-dir", "data"];
    let slow = Worker(Some(
        f.cmd_via(&ns.wrapper(), &args)
            .env("TUNE_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?,
    ));
    // The local worker joins once the slow one is training, so both share the study.
    running_trial_with_an_epoch(&url, &name, "the worker behind the faults")?;
    let local = worker(&f, &s, &url, &[]);
    let slow_out = finish(slow, "the worker behind latency and loss")?;
    finish(local, "the local worker")?;
    let dropped = ns.dropped()?;
    check(dropped > 0, "the loss rules dropped no packet".into())?;
    eprintln!("{dropped} packets dropped between the worker and the store");
    check(
        slow_out.contains(" complete: best val_acc"),
        format!("the worker behind the faults finished no trial:\n{slow_out}"),
    )?;
    let trials = store_trials(&url, &name);
    check(
        trials.len() == 6 && trials.values().all(|t| t.state == TrialState::Complete && t.history.len() == 3),
        format!("every trial once, complete: {trials:?}\n{slow_out}"),
    )?;
    every_epoch_once_and_the_budget_exact(&trials, 6)
}
