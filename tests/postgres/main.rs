//! The PostgreSQL backend and workers sharing one study, against a real server.
//!
//! The server comes from `TUNE_TEST_PG_URL` (`.ci/run` starts a throwaway one with
//! `.ci/postgres`); `TUNE_TEST_PG_CTL` is its pg_ctl wrapper, for the stop/restart test.
//! Without them every test here is reported as *ignored*, with the reason printed, never as
//! passed. (A custom harness, because libtest can only ignore tests at compile time.)

mod auth;
mod commands;
#[path = "../common/mod.rs"]
mod common;
mod network;
mod outage;
mod store;
mod workers;

use std::time::{Duration, Instant};

use common::workers::*;
use libtest_mimic::{Arguments, Failed, Trial};
use tune::study::TrialState;

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
        ("the_postgres_backend_conforms", store::conforms),
        ("a_lost_worker_is_reaped_once_and_its_configuration_rerun", store::reaped_once),
        ("concurrent_workers_claim_every_number_exactly_once", store::concurrent_claims),
        ("a_schema_newer_than_the_binary_is_refused", store::newer_schema),
        ("a_version_1_schema_is_upgraded_in_place", store::older_schema),
        ("a_paused_trial_survives_kill_9_of_its_worker_and_resumes_on_another", workers::paused_survives_kill),
        ("three_workers_run_each_trial_once_with_the_single_worker_configurations", workers::three_workers),
        ("a_killed_worker_is_declared_lost_and_its_trial_rerun_elsewhere", workers::killed_worker),
        ("a_rerun_numbered_before_later_draws_leaves_their_seeds_as_without_faults", workers::rerun_before_draws),
        ("a_frozen_worker_resumed_after_the_grace_writes_nothing_into_its_lost_trial", workers::frozen_worker),
        ("a_server_restart_mid_study_loses_nothing", outage::server_restart),
        ("a_postmaster_killed_with_9_mid_study_loses_nothing", outage::postmaster_killed),
        (
            "netns_a_worker_partitioned_both_ways_past_the_grace_writes_nothing_into_its_lost_trial",
            network::partitioned,
        ),
        (
            "netns_a_worker_partitioned_one_way_past_the_grace_writes_nothing_into_its_lost_trial",
            network::partitioned_one_way,
        ),
        ("netns_workers_behind_latency_and_packet_loss_run_each_trial_once", network::lossy_study),
        ("report_retrain_eval_dashboard_and_study_commands_read_the_store", commands::read_commands),
        ("the_password_comes_from_a_file_env_or_pgpass_and_is_written_nowhere", auth::secrets),
        ("tls_sslmode_and_sslrootcert_are_checked_like_libpq", auth::tls),
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

/// Polls the store until a trial of study `name` is running with an epoch recorded (a fault
/// then strikes mid-trial) and returns its number; `who` names the worker in the error after
/// a minute without one.
pub(crate) fn running_trial_with_an_epoch(url: &str, name: &str, who: &str) -> Result<usize, Failed> {
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
