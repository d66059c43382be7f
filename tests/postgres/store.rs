//! The storage API against the server, without the binary: conformance, claims, reaping, schema versions.

use std::time::Duration;

use crate::common::workers::*;
use libtest_mimic::Failed;
use tune::study::TrialState;
use tune::study::events::Event;
use tune::study::storage::{self, Liveness, PgStorage, Queued, StudyStorage};

pub(crate) fn conforms() -> Result<(), Failed> {
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

pub(crate) fn reaped_once() -> Result<(), Failed> {
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

pub(crate) fn concurrent_claims() -> Result<(), Failed> {
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

pub(crate) fn newer_schema() -> Result<(), Failed> {
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
pub(crate) fn older_schema() -> Result<(), Failed> {
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
