//! The PostgreSQL backend and workers sharing one study, against a real server.
//!
//! The server comes from `TUNE_TEST_PG_URL` (`.ci/run` starts a throwaway one with
//! `.ci/postgres`); `TUNE_TEST_PG_CTL` is its pg_ctl wrapper, for the stop/restart test.
//! Without them every test here is reported as *ignored*, with the reason printed, never as
//! passed. (A custom harness, because libtest can only ignore tests at compile time.)

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::workers::*;
use common::*;
use libtest_mimic::{Arguments, Failed, Trial};
use tune::study::TrialState;
use tune::study::journal::Event;
use tune::study::storage::{self, Liveness, PgStorage, Queued, StudyStorage};

fn main() {
    let mut args = Arguments::from_args();
    // One at a time: the restart test stops the server every other test uses.
    args.test_threads = Some(1);
    let reason = match (url(), std::env::var("TUNE_TEST_PG_CTL")) {
        (None, _) => Some(
            "TUNE_TEST_PG_URL is not set: no PostgreSQL server to test against (start one with `eval \"$(.ci/postgres start DIR)\"`)",
        ),
        (Some(_), Err(_)) => Some("TUNE_TEST_PG_CTL is not set (the restart test needs it)"),
        _ => None,
    };
    if let Some(why) = reason {
        eprintln!("postgres tests ignored: {why}");
    }
    type Test = fn() -> Result<(), Failed>;
    let tests: Vec<(&str, Test)> = vec![
        ("the_postgres_backend_conforms", conforms),
        ("a_lost_worker_is_reaped_once_and_its_configuration_rerun", reaped_once),
        ("concurrent_workers_claim_every_number_exactly_once", concurrent_claims),
        ("a_schema_newer_than_the_binary_is_refused", newer_schema),
        ("a_version_1_schema_is_upgraded_in_place", older_schema),
        ("a_paused_trial_survives_kill_9_of_its_worker_and_resumes_on_another", paused_survives_kill),
        ("three_workers_run_each_trial_once_with_the_single_worker_configurations", three_workers),
        ("a_killed_worker_is_declared_lost_and_its_trial_rerun_elsewhere", killed_worker),
        ("a_rerun_numbered_before_later_draws_leaves_their_seeds_as_without_faults", rerun_before_draws),
        ("a_frozen_worker_resumed_after_the_grace_writes_nothing_into_its_lost_trial", frozen_worker),
        ("a_server_restart_mid_study_loses_nothing", server_restart),
        ("a_postmaster_killed_with_9_mid_study_loses_nothing", postmaster_killed),
        ("netns_a_worker_partitioned_both_ways_past_the_grace_writes_nothing_into_its_lost_trial", partitioned),
        ("netns_a_worker_partitioned_one_way_past_the_grace_writes_nothing_into_its_lost_trial", partitioned_one_way),
        ("netns_workers_behind_latency_and_packet_loss_run_each_trial_once", lossy_study),
        ("report_retrain_eval_dashboard_and_study_commands_read_the_store", read_commands),
        ("the_password_comes_from_a_file_env_or_pgpass_and_is_written_nowhere", secrets),
        ("tls_sslmode_and_sslrootcert_are_checked_like_libpq", tls),
    ];
    let no_tls = std::env::var_os("TUNE_TEST_PG_TLS").is_none();
    if reason.is_none() && no_tls {
        eprintln!(
            "postgres TLS test ignored: TUNE_TEST_PG_TLS is not set (.ci/postgres sets it up when openssl is installed)"
        );
    }
    let no_netns = if reason.is_none() { common::netns::unavailable() } else { None };
    if let Some(why) = &no_netns {
        eprintln!(
            "postgres network-fault tests ignored: no network namespace can be made here ({why}); they need root and iproute2"
        );
    }
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            let ignored = reason.is_some()
                || (name.starts_with("tls_") && no_tls)
                || (name.starts_with("netns_") && no_netns.is_some());
            Trial::test(name, f).with_ignored_flag(ignored)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

fn conforms() -> Result<(), Failed> {
    let (url, name) = (url().unwrap(), unique("conformance"));
    storage::conformance::records(&|| Box::new(PgStorage::connect(&url, &name).unwrap()));
    let paused = unique("conformance-paused");
    storage::conformance::pauses(&|| Box::new(PgStorage::connect(&url, &paused).unwrap()), true);
    Ok(())
}

fn resolved(name: &str) -> tune::study::run::Resolved {
    let space = tune::study::SearchSpace::parse(
        &format!("[study]\nname = \"{name}\"\n[params]\nconv0_channels = 8\n"),
        std::path::Path::new("x.toml"),
    )
    .unwrap();
    tune::study::run::Resolved { space, concurrency: 1, threads_per_trial: 1, split_seed: 27, data_dir: None }
}

fn created(number: usize) -> Event {
    let params = [("conv0_channels".to_string(), tune::model::Value::Int(8))].into();
    Event::Created { number, params, seed: 100 + number as u64, infeasible: None, retry_of: None, fork: None }
}

fn reaped_once() -> Result<(), Failed> {
    let (url, name) = (url().unwrap(), unique("reap"));
    let r = resolved(&name);
    let mut a = PgStorage::connect(&url, &name)?;
    let mut b = PgStorage::connect(&url, &name)?;
    a.create_or_open(&r, "")?;
    b.create_or_open(&r, "")?;
    let r = a.reserve(10)?.expect("room in the budget");
    check(r.number == 0 && a.create(&created(0))?, "a claims trial 0".into())?;
    let liveness =
        Liveness { heartbeat: Duration::from_millis(200), grace: Duration::from_millis(800), max_retries: 1 };
    a.heartbeat(&[0])?;
    check(b.reap(&liveness)?.is_empty(), "a fresh heartbeat is not lost".into())?;
    std::thread::sleep(Duration::from_millis(1200));
    let reaped = b.reap(&liveness)?;
    check(
        reaped.len() == 1 && reaped[0].lost == 0 && reaped[0].retry == Some(1),
        format!("trial 0 lost, re-run as 1: {reaped:?}"),
    )?;
    check(a.reap(&liveness)?.is_empty(), "a lost trial is reaped once".into())?;
    // The lost worker wakes up and reports: its verdict stands.
    a.record(&Event::Finished { number: 0, state: TrialState::Complete, reason: None, secs: 1.0 })?;
    let trials = b.trials()?;
    check(
        trials[&0].state == TrialState::Failed && trials[&0].reason.as_deref().unwrap_or("").starts_with("worker lost"),
        format!("{:?}", trials[&0]),
    )?;
    check(
        trials[&1].retry_of == Some(0) && trials[&1].params == trials[&0].params && trials[&1].seed == trials[&0].seed,
        format!("{:?}", trials[&1]),
    )?;
    check(!trials[&1].counts_toward_budget(), "a re-run takes no place in the budget".into())?;
    check(
        b.take_queued()? == Some(Queued::Run(1)) && a.take_queued()?.is_none(),
        "the re-run is taken by one worker".into(),
    )?;
    // A worker lost between reserving a number and sampling it: the number is re-queued
    // unsampled, with its draw index, and taken by one other worker.
    let r = a.reserve(10)?.expect("room");
    std::thread::sleep(Duration::from_millis(1200));
    let reaped = b.reap(&liveness)?;
    check(
        reaped.iter().any(|x| x.lost == r.number && x.retry == Some(r.number)),
        format!("the reservation is re-queued: {reaped:?}"),
    )?;
    // Trial 1 (the re-run) sent no heartbeat either: lost again, and not re-run a second time.
    check(reaped.iter().any(|x| x.lost == 1 && x.retry.is_none()), format!("retries are capped at 1: {reaped:?}"))?;
    check(b.take_queued()? == Some(Queued::Sample(r)), "taken, to be sampled".into())?;
    check(!a.create(&created(r.number))?, "the lost holder cannot record it any more".into())?;
    check(b.create(&created(r.number))?, "its new holder records it".into())?;
    Ok(())
}

fn concurrent_claims() -> Result<(), Failed> {
    let (url, name) = (url().unwrap(), unique("claims"));
    PgStorage::connect(&url, &name)?.create_or_open(&resolved(&name), "")?;
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let (url, name) = (url.clone(), name.clone());
            std::thread::spawn(move || {
                let mut s = PgStorage::connect(&url, &name).unwrap();
                s.create_or_open(&resolved(&name), "").unwrap();
                let mut mine = Vec::new();
                while let Some(r) = s.reserve(200).unwrap() {
                    // Every fifth draw of worker 0 is infeasible: its place goes back to the budget.
                    let infeasible = (i == 0 && mine.len() % 5 == 0).then(|| "collapses".to_string());
                    let e = Event::Created {
                        number: r.number,
                        params: Default::default(),
                        seed: 1,
                        infeasible: infeasible.clone(),
                        retry_of: None,
                        fork: None,
                    };
                    assert!(s.create(&e).unwrap());
                    mine.push((r.number, infeasible.is_none()));
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<(usize, bool)> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    all.sort();
    let numbers: Vec<usize> = all.iter().map(|x| x.0).collect();
    check(numbers == (0..all.len()).collect::<Vec<_>>(), format!("numbers without holes or duplicates: {numbers:?}"))?;
    check(
        all.iter().filter(|x| x.1).count() == 200,
        format!("exactly the budget of feasible trials: {}", all.iter().filter(|x| x.1).count()),
    )?;
    let trials = PgStorage::connect(&url, &name)?.trials()?;
    check(trials.len() == all.len(), format!("{} trials recorded", trials.len()))
}

/// A fresh database of its own on the test server: (admin client, its name, its URL).
fn scratch_database(prefix: &str) -> Result<(postgres::Client, String, String), Failed> {
    let url = url().unwrap();
    let db = format!("{prefix}_{}", std::process::id());
    let mut admin = postgres::Client::connect(&url, postgres::NoTls)?;
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))?;
    admin.batch_execute(&format!("CREATE DATABASE {db}"))?;
    let db_url = format!("{}/{db}", url.rsplit_once('/').unwrap().0);
    Ok((admin, db, db_url))
}

/// A role that logs in with `password` and owns database `db`, both made afresh (a role left
/// by an interrupted earlier run may own objects here); returns the admin connection.
fn role_with_database(admin_url: &str, role: &str, password: &str, db: &str) -> Result<postgres::Client, Failed> {
    let mut admin = postgres::Client::connect(admin_url, postgres::NoTls)?;
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))?;
    admin.batch_execute(&format!(
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN \
         REASSIGN OWNED BY {role} TO postgres; DROP OWNED BY {role}; DROP ROLE {role}; END IF; END $$"
    ))?;
    admin.batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"))?;
    admin.batch_execute(&format!("CREATE DATABASE {db} OWNER {role}"))?;
    Ok(admin)
}

fn newer_schema() -> Result<(), Failed> {
    let (mut admin, db, db_url) = scratch_database("tune_newer")?;
    let mut c = postgres::Client::connect(&db_url, postgres::NoTls)?;
    c.batch_execute("CREATE TABLE tune_schema (version integer NOT NULL); INSERT INTO tune_schema VALUES (99)")?;
    drop(c);
    let err = PgStorage::connect(&db_url, "x").err().map(|e| e.to_string()).unwrap_or_default();
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))?;
    check(
        err.contains("version 99") && err.contains("newer") && err.contains("fix:"),
        format!("refused with both versions and a fix: {err}"),
    )
}

/// A database written by a version-1 binary (no paused trials) is upgraded in place, and
/// its studies read on.
fn older_schema() -> Result<(), Failed> {
    let (mut admin, db, db_url) = scratch_database("tune_older")?;
    let r = resolved("old");
    {
        let mut s = PgStorage::connect(&db_url, "old")?;
        s.create_or_open(&r, "")?;
        let n = s.reserve(5)?.expect("room").number;
        check(s.create(&created(n))?, "created".into())?;
    }
    // Version 1 is version 2 without the column of paused trials.
    let mut c = postgres::Client::connect(&db_url, postgres::NoTls)?;
    c.batch_execute(
        "ALTER TABLE tune_trials DROP COLUMN paused; DELETE FROM tune_schema; INSERT INTO tune_schema VALUES (1)",
    )?;
    let mut s = PgStorage::connect(&db_url, "old")?;
    s.create_or_open(&r, "")?;
    let version: i32 = c.query_one("SELECT max(version) FROM tune_schema", &[])?.get(0);
    let paused_column: bool = c
        .query_one("SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'tune_trials' AND column_name = 'paused')", &[])?
        .get(0);
    let paused = s.record(&Event::Paused { number: 0, reason: "rung 0".into(), secs: 1.0 })?;
    let state = s.trials()?[&0].state;
    drop((s, c));
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))?;
    check(version == 2 && paused_column, format!("upgraded to version {version}, paused column {paused_column}"))?;
    check(paused && state == TrialState::Paused, format!("the old study's trial pauses: {paused} {state:?}"))
}

/// A worker pauses a trial at a rung and dies by kill -9; the pause is durable, nobody declares
/// the paused trial lost, and another worker promotes it and resumes it from its checkpoint.
fn paused_survives_kill() -> Result<(), Failed> {
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

fn three_workers() -> Result<(), Failed> {
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

/// Polls the store until a trial of study `name` is running with an epoch recorded (a fault
/// then strikes mid-trial) and returns its number; `who` names the worker in the error after
/// a minute without one.
fn running_trial_with_an_epoch(url: &str, name: &str, who: &str) -> Result<usize, Failed> {
    let started = Instant::now();
    loop {
        check(started.elapsed() < Duration::from_secs(60), format!("{who} never recorded an epoch"))?;
        if let Some(t) =
            store_trials(url, name).values().find(|t| !t.history.is_empty() && t.state == TrialState::Running)
        {
            return Ok(t.number);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn killed_worker() -> Result<(), Failed> {
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
fn rerun_before_draws() -> Result<(), Failed> {
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
fn frozen_worker() -> Result<(), Failed> {
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

fn partitioned() -> Result<(), Failed> {
    partition(false)
}

fn partitioned_one_way() -> Result<(), Failed> {
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
fn lossy_study() -> Result<(), Failed> {
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

fn server_restart() -> Result<(), Failed> {
    outage(false)
}

/// As [`server_restart`], but the postmaster is killed with -9 (crash recovery on restart,
/// not a clean shutdown); its orphaned backends may hold the shared memory a moment longer.
fn postmaster_killed() -> Result<(), Failed> {
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

fn read_commands() -> Result<(), Failed> {
    let url = url().unwrap();
    let f = Fixture::new(400, 60);
    let name = unique("read");
    let s = f.write("read.toml", &random_space(&name, 3, "", 1, 300));
    finish(worker(&f, &s, &url, &["--artifacts", "shared-art"]), "the worker")?;
    // report
    let out = ok(f.run(&["report", "--storage", &url, "--study", &name, "--out", "rep"]));
    check(out.contains("3 complete") || out.contains("complete 3"), format!("report counts: {out}"))?;
    for file in ["leaderboard.csv", "leaderboard.json", "leaderboard.md", "index.html"] {
        check(f.path("rep").join(file).is_file(), format!("report wrote {file}"))?;
    }
    // eval (parameters from the store, weights from the artifacts)
    let out = ok(f.run(&[
        "eval",
        "--storage",
        &url,
        "--study",
        &name,
        "--trial",
        "0",
        "--artifacts",
        "shared-art",
        "--split",
        "val",
        "--data-dir",
        "data",
    ]));
    check(out.contains("validation split") && out.contains("accuracy"), out.clone())?;
    // retrain (only the parameters are needed)
    let out = ok(f.run(&[
        "retrain",
        "--best",
        "--storage",
        &url,
        "--study",
        &name,
        "--epochs",
        "1",
        "--subset",
        "200",
        "--data-dir",
        "data",
    ]));
    check(
        out.contains("test split")
            && std::fs::read_dir(f.path(&format!("runs/{name}/retrain")))
                .is_ok_and(|mut d| d.any(|t| t.is_ok_and(|t| t.path().join("seed-0/test.json").is_file()))),
        out.clone(),
    )?;
    // the dashboard over the store: the study, its trials with their stamps, the retrain
    {
        let d = common::dashboard::Dashboard::start(&f, &["--storage", &url]);
        let list = d.json("api/studies");
        let listed = list["studies"].as_array().unwrap().iter().find(|s| s["name"] == name.as_str()).cloned();
        check(
            listed.as_ref().is_some_and(|s| s["states"]["complete"] == 3),
            format!("dashboard lists {name}: {list}"),
        )?;
        let all = d.json(&format!("api/studies/{name}?since=0"));
        let trials = all["trials"].as_array().unwrap();
        check(
            trials.len() == 3
                && trials.iter().all(|t| {
                    t["created"].is_f64() && t["finished"].is_f64() && t["val"].as_array().unwrap().len() == 1
                }),
            format!("dashboard trials from the store: {all}"),
        )?;
        let quiet = d.json(&format!("api/studies/{name}?since={}", all["version"]));
        check(quiet["trials"].as_array().unwrap().is_empty(), format!("nothing new: {quiet}"))?;
        let seeds = d.json(&format!("api/studies/{name}/retrains"));
        check(
            seeds[0]["test_accuracy"].is_f64() && seeds[0]["confusion"].as_array().is_some_and(|m| m.len() == 10),
            format!("the retrain with its confusion matrix: {seeds}"),
        )?;
    }
    // list and delete
    let out = ok(f.run(&["study", "list", "--storage", &url]));
    check(out.contains(&name), format!("listed: {out}"))?;
    let refused = f.run(&["study", "delete", &name, "--storage", &url]);
    check(refused.status.code() == Some(2) && text(&refused).contains("--yes"), text(&refused))?;
    ok(f.run(&["study", "delete", &name, "--storage", &url, "--yes"]));
    check(!ok(f.run(&["study", "list", "--storage", &url])).contains(&name), "deleted".into())?;
    let again = f.run(&["report", "--storage", &url, "--study", &name]);
    check(!again.status.success() && text(&again).contains("no study"), text(&again))
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes())) {
                found.push(path);
            }
        }
    }
    found
}

/// A role that signs in with a password (SCRAM, `.ci/postgres`'s pg_hba line): the password
/// from `--storage-password-file`, `PGPASSWORD` or a `PGPASSFILE`; a wrong one is exit 8
/// naming the user and not the password; and after a study, its report, a retrain and a
/// listing, the password is in no file the study wrote and in none of the commands' output
/// — even when it was given in the URL.
fn secrets() -> Result<(), Failed> {
    let admin_url = url().unwrap();
    let password = format!("s3cret-{}", std::process::id());
    // The least-privileged role README describes: it logs in and owns one database, nothing more.
    let db = "tune_secret_test";
    let mut admin = role_with_database(&admin_url, "tune_secret", &password, db)?;
    let server = admin_url.trim_start_matches("postgresql://postgres@").rsplit_once('/').unwrap().0.to_string();
    let host = format!("{server}/{db}");
    let bare = format!("postgresql://tune_secret@{host}");
    let f = Fixture::new(400, 60);
    let name = unique("secret");
    let s = f.write("secret.toml", &random_space(&name, 2, "", 1, 300));
    let file = f.write("pw", &format!("{password}\n"));
    let wrong = f.write("wrong", "not-it\n");
    let mut outputs = Vec::new();
    // A wrong password: exit 8, naming the user, not the password.
    let o = f.run(&["study", "list", "--storage", &bare, "--storage-password-file", wrong.to_str().unwrap()]);
    check(o.status.code() == Some(8), format!("wrong password: {}", text(&o)))?;
    check(text(&o).contains("tune_secret") && !text(&o).contains("not-it"), text(&o))?;
    // Without any password: refused too.
    let o = f
        .cmd(&["study", "list", "--storage", &bare])
        .env_remove("PGPASSWORD")
        .env("PGPASSFILE", "/nonexistent")
        .output()?;
    check(o.status.code() == Some(8), format!("no password: {}", text(&o)))?;
    // The file: a whole study, then its report and a retrain.
    let pw = file.to_str().unwrap();
    outputs.push(ok(f.run(&[
        "run",
        s.to_str().unwrap(),
        "--storage",
        &bare,
        "--storage-password-file",
        pw,
        "--data-dir",
        "data",
    ])));
    outputs.push(ok(f.run(&[
        "report",
        "--storage",
        &bare,
        "--storage-password-file",
        pw,
        "--study",
        &name,
        "--out",
        "rep",
    ])));
    outputs.push(ok(f.run(&[
        "retrain",
        "--best",
        "--storage",
        &bare,
        "--storage-password-file",
        pw,
        "--study",
        &name,
        "--epochs",
        "1",
        "--subset",
        "100",
        "--data-dir",
        "data",
    ])));
    // PGPASSWORD, a PGPASSFILE, and the password in the URL itself.
    let o = f.cmd(&["study", "list", "--storage", &bare]).env("PGPASSWORD", &password).output()?;
    outputs.push(text(&o));
    check(o.status.success() && text(&o).contains(&name), format!("PGPASSWORD: {}", text(&o)))?;
    let pgpass = f.write("pgpass", &format!("*:*:*:tune_secret:{password}\n"));
    let o =
        f.cmd(&["study", "list", "--storage", &bare]).env_remove("PGPASSWORD").env("PGPASSFILE", &pgpass).output()?;
    outputs.push(text(&o));
    check(o.status.success() && text(&o).contains(&name), format!("PGPASSFILE: {}", text(&o)))?;
    let with_password = format!("postgresql://tune_secret:{password}@{host}");
    outputs.push(ok(f.run(&["report", "--storage", &with_password, "--study", &name, "--out", "rep2"])));
    // Nowhere: not in the output, not in any file except the ones holding it on purpose.
    for out in &outputs {
        check(!out.contains(&password), format!("the password was printed:\n{out}"))?;
    }
    let leaked: Vec<_> =
        files_containing(f.dir.path(), &password).into_iter().filter(|p| *p != file && *p != pgpass).collect();
    check(leaked.is_empty(), format!("the password is in {leaked:?}"))?;
    // Nor in the store's own records of the study.
    let mut store = postgres::Client::connect(&format!("postgresql://postgres@{host}"), postgres::NoTls)?;
    let rows = store
        .query(
            "SELECT (SELECT count(*) FROM tune_events WHERE body LIKE '%' || $1 || '%') + \
         (SELECT count(*) FROM tune_studies WHERE row_to_json(tune_studies)::text LIKE '%' || $1 || '%')",
            &[&password],
        )
        .map_err(|e| format!("reading the store's records: {e:?}"))?;
    check(rows[0].get::<_, i64>(0) == 0, "the password is in the store's records".into())?;
    drop(store);
    admin.batch_execute(&format!("DROP DATABASE {db}")).map_err(|e| format!("dropping {db}: {e:?}"))?;
    admin.batch_execute("DROP ROLE tune_secret").map_err(|e| format!("dropping the role: {e:?}"))?;
    Ok(())
}

/// A role that may only come over TLS (`.ci/postgres`: `hostssl` with SCRAM, its server
/// certificate signed by a test CA for `localhost` only): verify-full passes to `localhost` and
/// runs a study, fails to `127.0.0.1` (a name the certificate lacks), where verify-ca passes;
/// another CA, no CA, and no TLS at all are refused with exit 8; the password shows nowhere.
fn tls() -> Result<(), Failed> {
    let tls_dir = std::path::PathBuf::from(std::env::var("TUNE_TEST_PG_TLS")?);
    let admin_url = url().unwrap();
    let password = format!("tls-pw-{}", std::process::id());
    let db = "tune_tls_test";
    let mut admin = role_with_database(&admin_url, "tune_tls", &password, db)?;
    let port = admin_url.rsplit_once(':').unwrap().1.split('/').next().unwrap().to_string();
    let ca = tls_dir.join("ca.crt");
    let other_ca = tls_dir.join("other-ca.crt");
    let store = |host: &str, query: String| format!("postgresql://tune_tls@{host}:{port}/{db}?{query}");
    let f = Fixture::new(400, 60);
    // No ~/.postgresql/root.crt to fall back on.
    let home = f.dir.path().join("home");
    std::fs::create_dir_all(&home)?;
    let mut outputs = Vec::new();
    let mut list = |storage: &str| -> Result<std::process::Output, Failed> {
        let o =
            f.cmd(&["study", "list", "--storage", storage]).env("PGPASSWORD", &password).env("HOME", &home).output()?;
        outputs.push(text(&o));
        Ok(o)
    };
    let full = store("localhost", format!("sslmode=verify-full&sslrootcert={}", ca.display()));
    let o = list(&full)?;
    check(o.status.success(), format!("verify-full to localhost: {}", text(&o)))?;
    let o = list(&store("127.0.0.1", format!("sslmode=verify-full&sslrootcert={}", ca.display())))?;
    check(
        o.status.code() == Some(8) && text(&o).contains("not valid for name") && text(&o).contains("sslmode"),
        format!("verify-full to a name the certificate lacks: {}", text(&o)),
    )?;
    let o = list(&store("127.0.0.1", format!("sslmode=verify-ca&sslrootcert={}", ca.display())))?;
    check(o.status.success(), format!("verify-ca to 127.0.0.1: {}", text(&o)))?;
    let o = list(&store("127.0.0.1", format!("sslmode=verify-ca&sslrootcert={}", other_ca.display())))?;
    check(o.status.code() == Some(8) && text(&o).contains("UnknownIssuer"), format!("another CA: {}", text(&o)))?;
    let o = list(&store("127.0.0.1", "sslmode=verify-full".into()))?;
    check(o.status.code() == Some(8) && text(&o).contains("sslrootcert"), format!("no CA: {}", text(&o)))?;
    let o = list(&store("127.0.0.1", "sslmode=require".into()))?;
    check(o.status.success(), format!("require, unverified: {}", text(&o)))?;
    let o = list(&store("127.0.0.1", "sslmode=disable".into()))?;
    check(
        o.status.code() == Some(8) && text(&o).contains("tune_tls") && text(&o).contains("no encryption"),
        format!("no TLS on a hostssl-only role: {}", text(&o)),
    )?;
    let o = f
        .cmd(&["study", "list", "--storage", &full])
        .env("PGPASSWORD", "not-the-password")
        .env("HOME", &home)
        .output()?;
    check(
        o.status.code() == Some(8) && text(&o).contains("tune_tls") && !text(&o).contains("not-the-password"),
        format!("a wrong password over TLS: {}", text(&o)),
    )?;
    // A whole study over verify-full.
    let name = unique("tls");
    let s = f.write("tls.toml", &random_space(&name, 2, "", 1, 300));
    let o = f
        .cmd(&["run", s.to_str().unwrap(), "--storage", &full, "--data-dir", "data"])
        .env("PGPASSWORD", &password)
        .env("HOME", &home)
        .output()?;
    outputs.push(text(&o));
    check(o.status.success(), format!("a study over verify-full: {}", text(&o)))?;
    let trials = store_trials(&format!("postgresql://postgres@127.0.0.1:{port}/{db}"), &name);
    check(
        trials.len() == 2 && trials.values().all(|t| t.state == TrialState::Complete),
        format!("the study's trials: {trials:?}"),
    )?;
    for out in &outputs {
        check(!out.contains(&password), format!("the password was printed:\n{out}"))?;
    }
    check(files_containing(f.dir.path(), &password).is_empty(), "the password is in a file".into())?;
    admin.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).map_err(|e| format!("dropping {db}: {e:?}"))?;
    admin.batch_execute("DROP ROLE tune_tls").map_err(|e| format!("dropping the role: {e:?}"))?;
    Ok(())
}
