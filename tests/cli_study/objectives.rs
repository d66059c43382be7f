//! Two-objective studies (NSGA-II, multi-objective TPE, latency): ranked by front; the latency cap on retrain.

use crate::common::*;
use crate::{journal_events, space};

pub(crate) fn a_two_objective_nsga2_study_ranks_its_leaderboard_by_front() {
    let f = Fixture::new(600, 100);
    let extra = "sampler = \"nsga2\"\npruner = \"none\"\n\
        objectives = [{ metric = \"val_acc\", direction = \"maximize\" }, { metric = \"params\", direction = \"minimize\" }]\n\
        [study.nsga2]\npopulation = 4\n";
    let s = f.write("s.toml", &space("mo", 10, extra).replace("max_epochs = 3", "max_epochs = 1"));
    let out = ok(f.run(&["run", s.to_str().unwrap(), "--concurrency", "2", "--data-dir", f.data().to_str().unwrap()]));
    assert!(out.contains("front") && out.contains("params"), "the terminal table shows the objectives: {out}");
    let board = f.path("runs/mo/leaderboard.csv");
    let headers = csv_headers(&board);
    assert_eq!(headers[12..14], ["front", "params"], "after the fixed columns");
    let rows: Vec<(usize, f64, f64)> = csv_rows(&board)
        .iter()
        .filter(|r| !r[0].is_empty())
        .map(|r| (r[12].parse().unwrap(), r[3].parse().unwrap(), r[13].parse().unwrap()))
        .collect();
    assert!(rows.len() >= 8, "{rows:?}");
    assert!(rows.windows(2).all(|w| w[0].0 <= w[1].0), "ranked by front first: {rows:?}");
    let dominates = |a: &(usize, f64, f64), b: &(usize, f64, f64)| a.1 >= b.1 && a.2 <= b.2 && (a.1 > b.1 || a.2 < b.2);
    for r in &rows {
        let beaten_from_its_front_or_later = rows.iter().any(|o| o.0 >= r.0 && dominates(o, r));
        assert!(!beaten_from_its_front_or_later, "nothing in its own front or a later one dominates {r:?}: {rows:?}");
        if r.0 > 0 {
            assert!(
                rows.iter().any(|o| o.0 == r.0 - 1 && dominates(o, r)),
                "front {} is beaten by front {}: {r:?}",
                r.0,
                r.0 - 1
            );
        }
    }
    // The report ranks the same way.
    ok(f.run(&["report", "runs/mo"]));
    let json: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(f.path("runs/mo/report/leaderboard.json")).unwrap()).unwrap();
    assert_eq!(json[0]["front"], 0);
    for plot in ["front.png", "front.svg"] {
        assert!(f.path(&format!("runs/mo/report/{plot}")).is_file(), "the report draws the front: {plot}");
    }
    assert!(std::fs::read_to_string(f.path("runs/mo/report/index.html")).unwrap().contains("front.svg"));
    assert!(json[0]["params"].as_u64().unwrap() > 0);
}

/// Latency as an objective: every trained trial times its network after its first epoch, the
/// leaderboard ranks accuracy against it, and `retrain --best --max-latency-ms` picks the best
/// network under a speed cap (or names the fastest when none meets it).
pub(crate) fn a_latency_objective_is_measured_per_trial_ranked_by_front_and_caps_the_retrain() {
    let f = Fixture::new(600, 100);
    let extra = "sampler = \"nsga2\"\npruner = \"none\"\n\
        objectives = [{ metric = \"val_acc\", direction = \"maximize\" }, { metric = \"latency_ms\", direction = \"minimize\" }]\n\
        [study.nsga2]\npopulation = 4\n";
    let s = f.write("s.toml", &space("fast", 6, extra).replace("max_epochs = 3", "max_epochs = 1"));
    ok(f.run(&["run", s.to_str().unwrap(), "--data-dir", f.data().to_str().unwrap()]));
    let board = f.path("runs/fast/leaderboard.csv");
    assert_eq!(csv_headers(&board)[12..14], ["front", "latency_ms"]);
    // (trial, val_acc, ms per image) of each ranked trial.
    let rows: Vec<(usize, f64, f64)> = csv_rows(&board)
        .iter()
        .filter(|r| !r[0].is_empty())
        .map(|r| (r[1].parse().unwrap(), r[3].parse().unwrap(), r[13].parse().unwrap()))
        .collect();
    assert_eq!(rows.len(), 6, "{rows:?}");
    assert!(rows.iter().all(|r| r.2 > 0.0 && r.2 < 1000.0), "a measured, plausible latency for each: {rows:?}");
    let metrics = std::fs::read_to_string(f.path(&format!("runs/fast/trials/{}/metrics.csv", rows[0].0))).unwrap();
    assert!(
        metrics.starts_with("epoch,") && metrics.lines().next().unwrap().ends_with(",latency_ms,latency_ms_batch100")
    );

    // A cap between the fastest and the slowest network: the best network at or under it.
    let mut by_speed = rows.clone();
    by_speed.sort_by(|a, b| a.2.total_cmp(&b.2));
    let cap = (by_speed[2].2 + by_speed[3].2) / 2.0;
    let expected = rows.iter().filter(|r| r.2 <= cap).max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0))).unwrap();
    let d = f.data();
    let retrain = |cap: &str| {
        f.run(&[
            "retrain",
            "--best",
            "--study",
            "runs/fast",
            "--max-latency-ms",
            cap,
            "--epochs",
            "1",
            "--subset",
            "200",
            "--data-dir",
            d.to_str().unwrap(),
        ])
    };
    let out = ok(retrain(&cap.to_string()));
    assert!(
        f.path(&format!("runs/fast/retrain/trial-{}", expected.0)).is_dir(),
        "retrained trial {} (best under {cap} ms of {rows:?}): {out}",
        expected.0
    );
    let refused = retrain(&format!("{}", by_speed[0].2 / 10.0));
    let err = text(&refused);
    assert!(
        !refused.status.success() && err.contains("--max-latency-ms") && err.contains("the fastest takes"),
        "{err}"
    );
    let bad = retrain("0");
    assert!(!bad.status.success() && text(&bad).contains("positive number of milliseconds"), "{}", text(&bad));
}

/// TPE on a study with two objectives runs as multi-objective TPE through the binary: after
/// its start-up it proposes from the front, and the leaderboard ranks by it.
pub(crate) fn a_two_objective_tpe_study_runs_and_ranks_by_front() {
    let f = Fixture::new(600, 100);
    let extra = "sampler = \"tpe\"\npruner = \"none\"\n\
        objectives = [{ metric = \"val_acc\", direction = \"maximize\" }, { metric = \"params\", direction = \"minimize\" }]\n";
    let s = f.write("s.toml", &space("motpe", 8, extra).replace("max_epochs = 3", "max_epochs = 1"));
    ok(f.run(&["run", s.to_str().unwrap(), "--concurrency", "2", "--data-dir", f.data().to_str().unwrap()]));
    let board = f.path("runs/motpe/leaderboard.csv");
    assert_eq!(csv_headers(&board)[12..14], ["front", "params"]);
    let rows = csv_rows(&board);
    assert_eq!(rows.iter().filter(|r| !r[0].is_empty()).count(), 8, "every trial trained and ranked");
    assert_eq!(&rows[0][12], "0", "the first row is on the front");
    let events = journal_events(&f, "motpe");
    let drawn: std::collections::BTreeSet<String> =
        events.iter().filter(|e| e["event"] == "created").map(|e| e["params"].to_string()).collect();
    assert_eq!(drawn.len(), 8, "eight different configurations");
}
