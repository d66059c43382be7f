//! The real study loop with a promoting scheduler, on replayed curves and the simulated clock.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::model::params::{Params, Value};
use crate::study::replay::{CurveTable, ReplayLauncher, Row};
use crate::study::{RunOptions, SearchSpace, TrialRecord, TrialState, run_simulated};

/// Nine recorded curves of 9 epochs, one per learning rate: fast starters that level off
/// and slow ones that end higher.
fn table() -> Arc<CurveTable> {
    let rows = (0..9)
        .map(|i| {
            let lr = 1e-4 * 10f64.powf(i as f64 / 4.0);
            let (start, gain) = (0.5 + 0.04 * i as f64, 0.05 - 0.005 * i as f64);
            let val_acc = (0..9).map(|e| (start + gain * e as f64).min(0.99)).collect();
            let params: Params = [("lr".to_string(), Value::Float(lr))].into();
            Row { trial: i, params, val_acc, secs: vec![10.0; 9], start_secs: 1.0 }
        })
        .collect();
    Arc::new(CurveTable { file: "loop_tests".into(), rows })
}

/// Runs the space `study` (a `[study]` body) over `[params]` lr and a fixed width on the
/// table above, on the simulated clock.
fn replay_study(dir: &Path, file: &str, study: &str, timeout: Option<Duration>) -> crate::study::Summary {
    let space_file = dir.join(file);
    let text = format!(
        "[study]\nconcurrency = 2\nsampler = \"random\"\nenqueue_default = false\n{study}\n[study.training]\nmax_epochs = 9\n[params]\nlr = {{ float = [1e-4, 1e-2], log = true }}\nconv0_channels = 4\n"
    );
    std::fs::write(&space_file, text).unwrap();
    let space = SearchSpace::from_file(&space_file).unwrap();
    let opts = RunOptions {
        space_file,
        runs_dir: dir.join("runs"),
        threads: Some(1),
        known_train_size: Some(1),
        timeout,
        ..RunOptions::default()
    };
    run_simulated(opts, Box::new(ReplayLauncher::new(table(), space))).unwrap()
}

fn run_study(dir: &Path, timeout: Option<Duration>) -> crate::study::Summary {
    replay_study(
        dir,
        "s.toml",
        "name = \"p\"\ntrials = 12\npruner = \"asha\"\nscheduler = \"promote\"\nseed = 3",
        timeout,
    )
}

fn journal_events(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("runs/p/journal.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn outline(trials: &BTreeMap<usize, TrialRecord>) -> Vec<(usize, TrialState, usize, String)> {
    trials.values().map(|t| (t.number, t.state, t.history.len(), t.params["lr"].to_string())).collect()
}

#[test]
fn trials_pause_at_rungs_are_promoted_and_none_is_left_paused() {
    let dir = tempfile::tempdir().unwrap();
    let s = run_study(dir.path(), None);
    let events = journal_events(dir.path());
    let count = |kind: &str| events.iter().filter(|e| e["event"] == kind).count();
    assert!(count("paused") >= 3, "trials paused at rungs: {}", count("paused"));
    assert!(count("resumed") >= 1, "paused trials were promoted: {}", count("resumed"));
    assert_eq!(s.trials.len(), 12, "the budget is exact");
    assert!(s.trials.values().all(|t| t.state.is_finished()), "none left running or paused: {:?}", outline(&s.trials));
    for t in s.trials.values() {
        let epochs = events.iter().filter(|e| e["event"] == "epoch" && e["number"] == t.number).count();
        assert_eq!(epochs, t.history.len(), "trial {}: every epoch recorded once", t.number);
        match t.state {
            TrialState::Complete => assert_eq!(t.history.len(), 9, "trial {} ran to the end", t.number),
            TrialState::Pruned => {
                let why = t.reason.as_deref().unwrap_or_default();
                assert!(why.contains("never reached the top"), "trial {}: {why}", t.number);
                assert!(
                    [1, 3].contains(&t.history.len()),
                    "closed at a rung: trial {} at {}",
                    t.number,
                    t.history.len()
                );
            }
            other => panic!("trial {} ended {other:?}", t.number),
        }
    }
    assert!(s.trials.values().any(|t| t.state == TrialState::Complete));
    // A resumed trial continued its own curve: its epochs after the pause follow the row.
    let resumed: Vec<u64> =
        events.iter().filter(|e| e["event"] == "resumed").map(|e| e["number"].as_u64().unwrap()).collect();
    for n in resumed {
        let t = &s.trials[&(n as usize)];
        let row =
            &table().rows[table().nearest(&SearchSpace::from_file(&dir.path().join("s.toml")).unwrap(), &t.params)];
        let got: Vec<f64> = t.history.iter().map(|m| m.val_acc).collect();
        assert_eq!(got, row.val_acc[..got.len()], "trial {n} continued its curve after its pause");
    }

    let again = tempfile::tempdir().unwrap();
    let s2 = run_study(again.path(), None);
    assert_eq!(outline(&s.trials), outline(&s2.trials), "same seed, same simulated study");
}

#[test]
fn a_study_stopped_early_keeps_its_paused_trials_and_resumes_them() {
    let dir = tempfile::tempdir().unwrap();
    // 2 slots × 120 s: about 12 epochs of the study's 12 trials.
    let s = run_study(dir.path(), Some(Duration::from_secs(120)));
    assert!(s.timed_out);
    let paused = s.trials.values().filter(|t| t.state == TrialState::Paused).count();
    assert!(paused >= 1, "stopped by the deadline, paused trials stay paused: {:?}", outline(&s.trials));
    let s = run_study(dir.path(), None);
    assert_eq!(s.trials.len(), 12);
    assert!(s.trials.values().all(|t| t.state.is_finished()), "{:?}", outline(&s.trials));
}

fn run_pbt(dir: &Path) -> crate::study::Summary {
    let study =
        "name = \"pbt\"\ntrials = 8\npruner = \"none\"\nscheduler = \"pbt\"\nseed = 4\n[study.pbt]\ninterval = 3";
    replay_study(dir, "pbt.toml", study, None)
}

#[test]
fn pbt_replaces_the_bottom_quartile_by_forks_that_continue_their_parents_curves() {
    let dir = tempfile::tempdir().unwrap();
    let s = run_pbt(dir.path());
    let forks: Vec<&TrialRecord> = s.trials.values().filter(|t| t.fork.is_some()).collect();
    assert!(!forks.is_empty(), "some trials were forked: {:?}", outline(&s.trials));
    assert_eq!(s.trials.values().filter(|t| t.counts_toward_budget()).count(), 8, "forks take no place in the budget");
    assert!(s.trials.values().all(|t| t.state.is_finished()), "{:?}", outline(&s.trials));
    for f in &forks {
        let fork = f.fork.as_ref().unwrap();
        let parent = &s.trials[&fork.parent];
        assert!([3, 6].contains(&fork.epoch), "forks happen at the steps: {}", fork.epoch);
        assert_eq!(f.history[..fork.epoch], parent.history[..fork.epoch], "trial {}: its parent's epochs", f.number);
        assert!(f.history.len() > fork.epoch, "trial {} trained on after its fork", f.number);
        assert!(fork.changes.iter().all(|c| c.key == "lr" && f.params["lr"] == c.to), "{fork:?}");
        let replaced = s
            .trials
            .values()
            .filter(|t| t.reason.as_deref().unwrap_or("").contains(&format!("fork of trial {}", fork.parent)));
        assert!(replaced.count() >= 1);
    }
    let replaced = s.trials.values().filter(|t| t.reason.as_deref().is_some_and(|r| r.starts_with("PBT step"))).count();
    assert_eq!(replaced, forks.len(), "each fork replaced one trial");
    let again = tempfile::tempdir().unwrap();
    assert_eq!(outline(&s.trials), outline(&run_pbt(again.path()).trials), "same seed, same study");
}

/// Regression: a parent pausing at the step, its snapshot not yet taken, was once forked
/// from (2 workers, seed 1 of the quick table): the generation now waits for it.
#[test]
fn pbt_replays_the_shipped_quick_table_at_every_worker_count() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let table = Arc::new(CurveTable::load(&root.join("benches/curves/quick.jsonl.gz")).unwrap());
    let template: toml::Table =
        toml::from_str(&std::fs::read_to_string(root.join("benches/curves/quick_record.toml")).unwrap()).unwrap();
    let method = crate::study::search_bench::Method::parse("random+none+pbt").unwrap();
    for workers in [1, 2, 8] {
        for seed in 0..4 {
            let got = crate::study::search_bench::run_one(&table, &template, method, workers, seed, 16.0);
            assert!(got.is_ok_and(|o| o.iter().all(|o| o.best_val_acc > 0.5)), "{workers} workers, seed {seed}");
        }
    }
}
