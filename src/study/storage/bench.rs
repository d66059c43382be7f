//! `tune bench storage`: a shared store under simulated workers. Each worker is a thread with
//! its own connection doing what the study loop does per trial — read what is new, claim the
//! next number, report epochs, finish — with an objective that reports instantly, so the
//! figures are the store's alone. Figures, not assertions.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::{Cursor, PgStorage, StorageSpec, StudyStorage};
use crate::error::{Result, TuneError};
use crate::model::{Params, Value};
use crate::study::events::Event;
use crate::study::trial::TrialState;
use crate::training::EpochMetrics;

/// One worker's timings: (trial number, create-trial latency) and report-epoch latencies.
#[derive(Default)]
struct Timings {
    create: Vec<(usize, Duration)>,
    report: Vec<Duration>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn simulated_worker(
    url: &str,
    study: &str,
    budget: usize,
    epochs: usize,
    go: &Barrier,
    failed: &AtomicBool,
) -> Result<Timings> {
    let mut store = PgStorage::connect(url, study)?;
    let mut t = Timings::default();
    let mut cursor = Cursor::START;
    go.wait();
    loop {
        if failed.load(Ordering::Relaxed) {
            return Ok(t);
        }
        // Create a trial as the loop does: read what is new, reserve the next number, record
        // its sampled configuration.
        let started = Instant::now();
        let (_events, c) = store.read_since(cursor)?;
        cursor = c;
        let Some(r) = store.reserve(budget)? else { return Ok(t) };
        let number = r.number;
        let params: Params = [("lr".to_string(), Value::Float(1e-3 * (1.0 + r.draw as f64 % 7.0)))].into();
        if !store.create(&Event::Created {
            number,
            params,
            seed: number as u64,
            infeasible: None,
            retry_of: None,
            fork: None,
        })? {
            return Err(TuneError::Study(format!("reservation {number} was lost")));
        }
        t.create.push((number, started.elapsed()));
        for epoch in 1..=epochs {
            let metrics = EpochMetrics {
                epoch,
                train_loss: 1.0,
                train_acc: 0.5,
                val_loss: 1.0,
                val_acc: 0.5 + epoch as f64 / 100.0,
                lr: 1e-3,
                secs: 0.0,
                latency: None,
            };
            let started = Instant::now();
            store.record(&Event::Epoch { number, metrics })?;
            t.report.push(started.elapsed());
        }
        store.record(&Event::Finished { number, state: TrialState::Complete, reason: None, secs: 0.0 })?;
    }
}

/// Runs one round per count in `workers` against the store at `storage`: `trials` trials in
/// all, each reporting `epochs` epochs; prints each round's figures.
pub fn run(storage: &str, workers: &[usize], trials: usize, epochs: usize) -> Result<()> {
    let url = StorageSpec::parse_url(storage, "--storage")?;
    let space = crate::study::space::SearchSpace::parse(
        "[study]\nname = \"bench\"\n[params]\nlr = { float = [1e-4, 1e-2] }\n",
        std::path::Path::new("bench.toml"),
    )?;
    let resolved = crate::study::resolved::Resolved {
        space,
        concurrency: 1,
        threads_per_trial: 1,
        split_seed: 27,
        data_dir: None,
    };
    println!(
        "store: {} · {} trials per round, {} epochs each, one connection per worker",
        super::redact(&url),
        trials,
        epochs
    );
    println!(
        "{:>7} {:>9} {:>10} {:>13} {:>13} {:>13} {:>13} {:>15} {:>15}",
        "workers",
        "trials/s",
        "events/s",
        "create p50 ms",
        "create p99 ms",
        "report p50 ms",
        "report p99 ms",
        "create p50 first 10%",
        "create p50 last 10%"
    );
    for &workers in workers {
        let study = format!("bench-{}-{workers}w-{}", std::process::id(), Instant::now().elapsed().as_nanos());
        PgStorage::connect(&url, &study)?.create_or_open(&resolved, "")?;
        let go = Arc::new(Barrier::new(workers + 1));
        let failed = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (url, study, go, failed) = (url.clone(), study.clone(), go.clone(), failed.clone());
                let budget = trials;
                std::thread::spawn(move || {
                    let r = simulated_worker(&url, &study, budget, epochs, &go, &failed);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        go.wait();
        let started = Instant::now();
        let mut all = Timings::default();
        for h in handles {
            let t = h.join().map_err(|_| TuneError::Study("a simulated worker panicked".into()))??;
            all.create.extend(t.create);
            all.report.extend(t.report);
        }
        let secs = started.elapsed().as_secs_f64();
        PgStorage::delete(&url, &study)?;
        let created = all.create.len();
        let mut create: Vec<Duration> = all.create.iter().map(|c| c.1).collect();
        create.sort();
        all.report.sort();
        let tenth = (trials / 10).max(1);
        let mut first: Vec<Duration> = all.create.iter().filter(|c| c.0 < tenth).map(|c| c.1).collect();
        let mut last: Vec<Duration> = all.create.iter().filter(|c| c.0 >= trials - tenth).map(|c| c.1).collect();
        first.sort();
        last.sort();
        let events = created * (epochs + 2);
        println!(
            "{workers:>7} {:>9.0} {:>10.0} {:>13.2} {:>13.2} {:>13.2} {:>13.2} {:>15.2} {:>15.2}",
            created as f64 / secs,
            events as f64 / secs,
            percentile(&create, 0.5),
            percentile(&create, 0.99),
            percentile(&all.report, 0.5),
            percentile(&all.report, 0.99),
            percentile(&first, 0.5),
            percentile(&last, 0.5)
        );
        if created != trials {
            return Err(TuneError::Study(format!(
                "{created} trials created instead of {}: the budget was not exact",
                trials
            )));
        }
    }
    Ok(())
}
