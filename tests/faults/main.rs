//! The fault harness: one study shared by three workers, each in a network namespace of its
//! own, under a seeded random schedule of faults (partitions both ways and one way, latency
//! and loss, frozen workers, killed workers, a postmaster killed with -9, an artifacts tmpfs
//! that fills up). Then a checker over the final store and the workers' logs.
//!
//! Two workloads: real tiny trainings (checkpoints, resumes, re-runs from a lost trial's
//! checkpoint) and instant-objective trials (`tune run --instant-objective-ms`: ten times the
//! trials, so the store's claims, finishes and reaping meet the faults far more often).
//! Bounded by default: seeds 1, 2 and 3 of training and seed 1 of instant trials, under a
//! minute each, inside `cargo test --release`. `.ci/faults --minutes N [--seed S]` soaks:
//! seeds S, S+1, … until N minutes have passed, the workloads taking turns.
//! Needs the throwaway PostgreSQL (`TUNE_TEST_PG_URL`, `TUNE_TEST_PG_CTL`), root, iproute2
//! and nftables; without them the tests are reported as ignored, with the reason.

mod checks;
#[path = "../common/mod.rs"]
mod common;
mod inject;
mod report;
mod seed;
mod workers;
mod workload;

use std::time::Duration;

use common::workers::*;
use libtest_mimic::{Arguments, Trial};
use seed::{run_seed, soak};
use workload::Workload;

pub(crate) const WORKERS: usize = 3;
pub(crate) const GRACE_SECS: u64 = 4;
pub(crate) const MAX_RETRIES: usize = 3;

fn main() {
    let mut args = Arguments::from_args();
    // One at a time: the postmaster fault stops the server every study uses.
    args.test_threads = Some(1);
    let reason = match (url(), std::env::var("TUNE_TEST_PG_CTL")) {
        (None, _) => {
            Some("TUNE_TEST_PG_URL is not set: no PostgreSQL server (start one with `.ci/postgres start DIR`)".into())
        }
        (Some(_), Err(_)) => Some("TUNE_TEST_PG_CTL is not set (the postmaster fault restarts the server)".into()),
        _ => common::netns::unavailable().map(|why| {
            format!("no network namespace with nftables can be made here ({why}); it needs root, iproute2 and nftables")
        }),
    };
    if let Some(why) = &reason {
        eprintln!("fault harness ignored: {why}");
    }
    let first: u64 = env("TUNE_FAULT_SEED").unwrap_or(1);
    let trials = match env::<f64>("TUNE_FAULT_MINUTES") {
        Some(minutes) => vec![Trial::test(format!("soak_for_{minutes}_minutes_from_seed_{first}"), move || {
            soak(first, Duration::from_secs_f64(minutes * 60.0))
        })],
        None => (first..first + 3)
            .map(|seed| {
                Trial::test(format!("a_seeded_fault_schedule_loses_and_repeats_nothing_seed_{seed}"), move || {
                    let report = run_seed(seed, Workload::Training)?;
                    eprintln!("{report}");
                    report.verdict()
                })
            })
            .chain(std::iter::once(Trial::test(
                format!("instant_trials_under_a_seeded_fault_schedule_lose_and_repeat_nothing_seed_{first}"),
                move || {
                    let report = run_seed(first, Workload::Instant)?;
                    eprintln!("{report}");
                    report.verdict()
                },
            )))
            .collect(),
    };
    let trials = trials.into_iter().map(|t| t.with_ignored_flag(reason.is_some())).collect();
    libtest_mimic::run(&args, trials).exit();
}

fn env<T: std::str::FromStr>(key: &str) -> Option<T> {
    std::env::var(key).ok()?.parse().ok()
}
