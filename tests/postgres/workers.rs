//! Workers of the real binary sharing one study: each trial run once, and a worker killed, frozen or paused.

use std::time::{Duration, Instant};

use crate::common::workers::*;
use crate::common::*;
use crate::running_trial_with_an_epoch;
use libtest_mimic::Failed;
use tune::study::TrialState;

/// A worker pauses a trial at a rung and dies by kill -9; the pause is durable, nobody declares
/// the paused trial lost, and another worker promotes it and resumes it from its checkpoint.
pub(crate) fn paused_survives_kill() -> Result<(), Failed> {
    let url = url().unwrap();
    // Epochs long enough (3,000 images) that the victim is still in trial 1's first epoch
    // when it dies.
    let f = Fixture::new(4000, 60);
    let name = unique("paused");
    // Trial 0 learns (lr 1e-2) and pauses alone at rung 0 (epoch 1); trials 1 and 2 cannot
    // learn (lr 1e-7), so trial 0 is promoted once a second trial reaches the rung.
    let text = random_space(
        &name,
        3,
        "heartbeat = \"1s\"\ngrace = \"3s\"\nscheduler = \"promote\"\nenqueue_default = false\nenqueue = [ { lr = 1e-2, conv0_channels = 8 }, { lr = 1e-7, conv0_channels = 8 }, { lr = 1e-7, conv0_channels = 8 } ]\n[study.pruning]\nmin_resource = 1\nreduction_factor = 2\n",
        2,
        3000,
    )
    .replace("pruner = \"none\"", "pruner = \"asha\"")
    .replace("{ float = [1e-3, 1e-2], log = true }", "{ float = [1e-7, 1e-2], log = true }");
    let s = f.write("p.toml", &text);
    let mut victim = worker(&f, &s, &url, &["--artifacts", "shared"]);
    let started = Instant::now();
    loop {
        check(started.elapsed() < Duration::from_secs(90), "the victim never paused trial 0".into())?;
        if store_trials(&url, &name).get(&0).is_some_and(|t| t.state == TrialState::Paused) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    victim.kill()?;
    let before = store_trials(&url, &name);
    check(before[&0].state == TrialState::Paused, format!("killed while trial 0 is paused: {:?}", before[&0]))?;
    let epoch1 = before[&0].history.clone();
    let rescuer = worker(&f, &s, &url, &["--artifacts", "shared"]);
    let out = finish(rescuer, "the rescuer")?;
    let trials = store_trials(&url, &name);
    let t = &trials[&0];
    check(
        t.state == TrialState::Complete && t.history.len() == 2 && t.history[..1] == epoch1[..],
        format!("trial 0 promoted and resumed from its checkpoint by the rescuer: {t:?}\n{out}"),
    )?;
    check(trials.values().all(|t| t.state.is_finished()), format!("every trial terminal, none paused: {trials:?}"))
}

pub(crate) fn three_workers() -> Result<(), Failed> {
    let url = url().unwrap();
    let f = Fixture::new(400, 60);
    let name = unique("three");
    // The reference: one process, the journal.
    let single = f.write("single.toml", &space("single", 8, "", 2));
    ok(f.run(&["run", single.to_str().unwrap(), "--concurrency", "1", "--data-dir", "data"]));
    let reference = tune::study::run::load_trials(&f.path("runs/single"))?;

    let s = f.write("three.toml", &space(&name, 8, "heartbeat = \"1s\"\ngrace = \"5s\"", 2));
    let workers: Vec<Worker> = (0..3).map(|i| worker(&f, &s, &url, &["--artifacts", &format!("art{i}")])).collect();
    for (i, w) in workers.into_iter().enumerate() {
        finish(w, &format!("worker {i}"))?;
    }
    let trials = store_trials(&url, &name);
    check(trials.len() == 8, format!("the budget is exact: {} trials", trials.len()))?;
    check(
        trials.values().all(|t| t.state == TrialState::Complete && t.history.len() == 2),
        format!("every trial once, complete, each epoch once: {trials:?}"),
    )?;
    let ran: Vec<usize> =
        (0..3).map(|i| std::fs::read_dir(f.path(&format!("art{i}"))).map_or(0, |d| d.count())).collect();
    check(
        ran.iter().sum::<usize>() == 8 && ran.iter().filter(|n| **n > 0).count() >= 2,
        format!("the trials spread over the workers: {ran:?}"),
    )?;
    for (n, t) in &trials {
        let r = &reference[n];
        check(
            t.params == r.params && t.seed == r.seed,
            format!("trial {n}: same configuration as the single worker\n{:?}\n{:?}", t.params, r.params),
        )?;
    }
    Ok(())
}

pub(crate) fn killed_worker() -> Result<(), Failed> {
    let url = url().unwrap();
    // Epochs of 3,000 images: on an idle machine 300-image epochs took 7 ms, and the victim
    // finished its trial (or the whole study) between two polls.
    let f = Fixture::new(4000, 60);
    let name = unique("killed");
    let s = f.write("k.toml", &random_space(&name, 4, "heartbeat = \"1s\"\ngrace = \"3s\"", 6, 3000));
    // Both workers see one artifacts directory (as on NFS): the re-run resumes the checkpoint.
    let mut victim = worker(&f, &s, &url, &["--artifacts", "shared"]);
    // Wait until the victim has a trial under way (an epoch recorded), then kill -9 it.
    let victim_trial = running_trial_with_an_epoch(&url, &name, "the victim")?;
    victim.kill()?;
    let rescuer = worker(&f, &s, &url, &["--artifacts", "shared"]);
    let out = finish(rescuer, "the rescuer")?;
    let trials = store_trials(&url, &name);
    let lost = &trials[&victim_trial];
    check(
        lost.state == TrialState::Failed && lost.reason.as_deref().unwrap_or("").starts_with("worker lost"),
        format!("{lost:?}\n{out}"),
    )?;
    let retry = trials.values().find(|t| t.retry_of == Some(victim_trial));
    check(
        retry.is_some_and(|r| r.state == TrialState::Complete && r.params == lost.params),
        format!("re-run by the rescuer: {retry:?}"),
    )?;
    // Resumed, not restarted: its first epoch is the lost trial's, replayed from the copied
    // checkpoint (a retrained epoch would differ at least in its seconds).
    let retry = retry.unwrap();
    check(
        retry.history.len() == 6 && retry.history[0] == lost.history[0],
        format!("resumed from the checkpoint:\n{:?}\n{:?}", lost.history, retry.history),
    )?;
    let complete = trials.values().filter(|t| t.state == TrialState::Complete && t.retry_of.is_none()).count();
    check(
        complete == 3 && trials.values().filter(|t| t.counts_toward_budget()).count() == 4,
        format!("the study completes its budget: {trials:?}"),
    )
}

/// A worker killed mid-trial; the next worker starts after the grace, so it re-runs the lost
/// trial under the next number and draws the rest after it. A re-run takes a number but not a
/// draw: the k-th drawn trial keeps the k-th seed of a run without faults (the fault harness
/// found drawn trials after a re-run training with other seeds than without faults).
pub(crate) fn rerun_before_draws() -> Result<(), Failed> {
    let url = url().unwrap();
    let f = Fixture::new(4000, 60);
    let name = unique("rerun-first");
    let s = f.write("k.toml", &random_space(&name, 3, "heartbeat = \"1s\"\ngrace = \"2s\"", 6, 3000));
    let reference = f.write("reference.toml", &random_space("reference", 3, "", 6, 3000));
    ok(f.run(&["run", reference.to_str().unwrap(), "--concurrency", "1", "--data-dir", "data"]));
    let reference = tune::study::run::load_trials(&f.path("runs/reference"))?;
    let mut victim = worker(&f, &s, &url, &[]);
    running_trial_with_an_epoch(&url, &name, "the victim")?;
    victim.kill()?;
    std::thread::sleep(Duration::from_secs(3));
    let out = finish(worker(&f, &s, &url, &[]), "the rescuer")?;
    let trials = store_trials(&url, &name);
    check(trials.get(&1).is_some_and(|t| t.retry_of == Some(0)), format!("trial 0 re-run as 1: {trials:?}\n{out}"))?;
    let drawn: Vec<_> = trials.values().filter(|t| t.retry_of.is_none()).map(|t| (&t.params, t.seed)).collect();
    let expected: Vec<_> = reference.values().map(|t| (&t.params, t.seed)).collect();
    check(drawn == expected, format!("the drawn trials' configurations and seeds:\n{drawn:?}\n{expected:?}"))?;
    every_epoch_once_and_the_budget_exact(&trials, 3)
}

/// A worker frozen (SIGSTOP of it and its trial processes) past the grace while its trial runs:
/// another worker declares the trial lost and re-runs it; resumed (SIGCONT), the frozen worker
/// believes it still owns the trial, but none of its late epochs or its finish is recorded, it
/// stops its trial process, and the study ends with every trial once and the budget exact.
pub(crate) fn frozen_worker() -> Result<(), Failed> {
    let url = url().unwrap();
    let f = Fixture::new(4000, 60);
    let name = unique("frozen");
    let s = f.write("z.toml", &random_space(&name, 4, "heartbeat = \"1s\"\ngrace = \"3s\"", 6, 3000));
    let frozen = worker(&f, &s, &url, &["--artifacts", "shared"]);
    let pid = frozen.0.as_ref().unwrap().id();
    let started = Instant::now();
    let victim_trial = running_trial_with_an_epoch(&url, &name, "the worker")?;
    let tree = process_tree(pid);
    signal(&tree, "STOP")?;
    let rescuer = worker(&f, &s, &url, &["--artifacts", "shared"]);
    // Wait for the verdict, then thaw the frozen worker.
    let verdict = loop {
        let t = store_trials(&url, &name).remove(&victim_trial).unwrap();
        if t.state == TrialState::Failed {
            break t;
        }
        if started.elapsed() > Duration::from_secs(90) {
            signal(&tree, "CONT")?;
            return Err(format!("never declared lost: {t:?}").into());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    signal(&tree, "CONT")?;
    let rescued = finish(rescuer, "the rescuer")?;
    let thawed = finish(frozen, "the thawed worker")?;
    let trials = store_trials(&url, &name);
    let lost = &trials[&victim_trial];
    check(
        lost.state == TrialState::Failed
            && lost.reason.as_deref().unwrap_or("").starts_with("worker lost")
            && lost.history == verdict.history,
        format!("the lost trial changed after its verdict:\n{verdict:?}\n{lost:?}\n{thawed}"),
    )?;
    check(
        thawed.contains(&format!("trial {victim_trial} was declared lost by another worker")),
        format!("the thawed worker did not stop its trial:\n{thawed}"),
    )?;
    let retry = trials.values().find(|t| t.retry_of == Some(victim_trial));
    check(
        retry.is_some_and(|r| r.state == TrialState::Complete && r.params == lost.params),
        format!("re-run: {retry:?}\n{rescued}"),
    )?;
    for t in trials.values() {
        let epochs: Vec<usize> = t.history.iter().map(|m| m.epoch).collect();
        check(epochs == (1..=epochs.len()).collect::<Vec<_>>(), format!("trial {}: epochs {epochs:?}", t.number))?;
        check(t.state.is_finished(), format!("trial {} is not finished: {t:?}", t.number))?;
    }
    let complete = trials.values().filter(|t| t.state == TrialState::Complete && t.retry_of.is_none()).count();
    check(
        complete == 3 && trials.values().filter(|t| t.counts_toward_budget()).count() == 4,
        format!("the study completes its budget: {trials:?}"),
    )
}
