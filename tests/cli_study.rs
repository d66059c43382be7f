//! `tune run` through the real binary: ranking, parallel slots, failures, kill -9 and resume.

mod common;
use common::*;
use std::time::{Duration, Instant};

fn space(name: &str, trials: usize, extra: &str) -> String {
    format!(
        "[study]\nname = \"{name}\"\ntrials = {trials}\nseed = 3\nstartup_trials = 3\nhistory_lag = 2\n{extra}\n\
         [study.training]\nmax_epochs = 3\npatience = 2\nlr_patience = 1\nsubset = 300\n\n\
         [params]\nlr = {{ float = [1e-3, 1e-2], log = true }}\nn_conv = {{ int = [1, 2] }}\n\"conv*_channels\" = {{ choice = [4, 8] }}\n\
         \"conv*_pool\" = 2\nn_fc = {{ int = [0, 1] }}\nfc0_neurons = 16\ndrop_rate = {{ float = [0.0, 0.3] }}\n"
    )
}

fn journal_events(f: &Fixture, study: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(f.path(&format!("runs/{study}/journal.jsonl")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn six_trials_two_slots_end_with_a_ranked_leaderboard() {
    let f = Fixture::new(600, 100);
    let s = f.write("s.toml", &space("six", 6, "pruner = \"none\""));
    let out = ok(f.run(&["run", s.to_str().unwrap(), "--concurrency", "2", "--data-dir", f.data().to_str().unwrap()]));
    assert!(out.contains("6 complete, 0 pruned, 0 failed"), "{out}");
    let board = f.path("runs/six/leaderboard.csv");
    let headers = csv_headers(&board);
    assert_eq!(headers[..8], ["rank", "trial", "state", "best_val_acc", "best_epoch", "epochs", "seconds", "start"]);
    assert_eq!(headers[8..12], ["end", "duration_secs", "worker", "reason"]);
    assert!(headers.contains(&"lr".to_string()) && headers.contains(&"n_conv".to_string()));
    let rows = csv_rows(&board);
    assert_eq!(rows.len(), 6);
    // Every record is stamped: each trial's start and end are UTC times in order, its
    // duration is theirs, and its worker is this machine's `tune run` (host:pid).
    for r in &rows {
        let (start, end) = (humantime::parse_rfc3339(&r[7]).unwrap(), humantime::parse_rfc3339(&r[8]).unwrap());
        let secs: f64 = r[9].parse().unwrap();
        let between = end.duration_since(start).unwrap().as_secs_f64();
        assert!((secs - between).abs() < 0.11 && secs < 600.0, "{r:?}");
        assert!(r[10].contains(':') && !r[10].ends_with(&format!(":{}", std::process::id())), "{r:?}");
    }
    let events = journal_events(&f, "six");
    assert!(events.iter().all(|e| e["at"].is_string() && e["worker"].is_string()), "every record stamped");
    let accs: Vec<f64> = rows.iter().map(|r| r[3].parse().unwrap()).collect();
    assert!(accs.windows(2).all(|w| w[0] >= w[1]), "ranked best first: {accs:?}");
    assert_eq!(rows.iter().map(|r| r[0].to_string()).collect::<Vec<_>>(), ["1", "2", "3", "4", "5", "6"]);
    for n in 0..6 {
        let dir = f.path(&format!("runs/six/trials/{n}"));
        assert!(
            dir.join("metrics.csv").is_file() && dir.join("best.bpk").is_file() && dir.join("params.toml").is_file(),
            "trial {n} files"
        );
    }
    assert!(f.path("runs/six/space.toml").is_file() && f.path("runs/six/settings.json").is_file());
    // Trial 0 is the seed's default network restricted to the space, when it fits: here it
    // does not (channels 32 are outside [4, 8]), so every trial was sampled.
    let events = journal_events(&f, "six");
    assert_eq!(events.iter().filter(|e| e["event"] == "created").count(), 6);
}

#[test]
fn same_seed_same_configurations_whatever_the_concurrency() {
    let f = Fixture::new(300, 50);
    let d = f.data();
    let params = |study: &str, conc: &str| {
        let s = f.write(&format!("{study}.toml"), &space(study, 5, "pruner = \"none\""));
        ok(f.run(&[
            "run",
            s.to_str().unwrap(),
            "--concurrency",
            conc,
            "--data-dir",
            d.to_str().unwrap(),
            "--max-epochs",
            "1",
        ]));
        journal_events(&f, study)
            .into_iter()
            .filter(|e| e["event"] == "created")
            .map(|e| (e["number"].clone(), e["params"].clone(), e["seed"].clone()))
            .collect::<Vec<_>>()
    };
    let one = params("c1", "1");
    let two = params("c2", "2");
    assert_eq!(one.len(), 5);
    assert_eq!(one, two);
}

#[test]
fn a_failing_trial_does_not_stop_the_study() {
    let f = Fixture::new(300, 50);
    // A real failure, no test hook: weight_decay 1e39 overflows f32 and the trial diverges.
    let s = f.write(
        "s.toml",
        "[study]\nname = \"fail\"\ntrials = 4\nsampler = \"grid\"\npruner = \"none\"\n[study.training]\nmax_epochs = 2\nsubset = 100\n\
         [params]\nconv0_channels = { choice = [4, 8] }\nconv0_pool = 2\nfc0_neurons = 8\nweight_decay = { choice = [0.0, 1e39] }\n",
    );
    let out = ok(f.run(&["run", s.to_str().unwrap(), "--concurrency", "2", "--data-dir", f.data().to_str().unwrap()]));
    assert!(out.contains("2 complete, 0 pruned, 2 failed"), "{out}");
    let rows = csv_rows(&f.path("runs/fail/leaderboard.csv"));
    let failed: Vec<_> = rows.iter().filter(|r| &r[2] == "failed").collect();
    assert_eq!(failed.len(), 2);
    for r in failed {
        assert!(r[11].starts_with("diverged at epoch 1"), "the reason is kept: {}", &r[11]);
        assert_eq!(&r[0], "", "failed trials are not ranked");
    }
}

#[test]
fn killed_study_resumes_without_redoing_finished_trials() {
    let f = Fixture::new(600, 100);
    let s = f.write(
        "s.toml",
        &space("kill", 5, "pruner = \"none\"")
            .replace("max_epochs = 3", "max_epochs = 4")
            .replace("patience = 2", "patience = 4"),
    );
    let data = f.data();
    let args = ["run", s.to_str().unwrap(), "--concurrency", "1", "--data-dir", data.to_str().unwrap()];
    let mut child = f.cmd(&args).spawn().unwrap();
    let started = Instant::now();
    // Wait until one trial finished and the next has recorded an epoch, then kill -9.
    loop {
        let ev = journal_events(&f, "kill");
        let finished = ev.iter().filter(|e| e["event"] == "finished").count();
        let later_epochs = ev.iter().filter(|e| e["event"] == "epoch" && e["number"].as_u64() > Some(0)).count();
        if finished >= 1 && later_epochs >= 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "study made no progress: {ev:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = journal_events(&f, "kill");
    let finished_before: Vec<u64> =
        before.iter().filter(|e| e["event"] == "finished").map(|e| e["number"].as_u64().unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300)); // the orphaned trial notices its closed stdin
    let out = ok(f.run(&args));
    assert!(out.contains("5 complete"), "{out}");
    let after = journal_events(&f, "kill");
    for n in 0..5u64 {
        let finishes = after.iter().filter(|e| e["event"] == "finished" && e["number"] == n).count();
        assert_eq!(finishes, 1, "trial {n} finished exactly once");
        let epochs: Vec<u64> = after
            .iter()
            .filter(|e| e["event"] == "epoch" && e["number"] == n)
            .map(|e| e["metrics"]["epoch"].as_u64().unwrap())
            .collect();
        let unique: std::collections::BTreeSet<_> = epochs.iter().collect();
        assert_eq!(epochs.len(), unique.len(), "trial {n}: no epoch journaled twice: {epochs:?}");
    }
    let created: Vec<u64> =
        after.iter().filter(|e| e["event"] == "created").map(|e| e["number"].as_u64().unwrap()).collect();
    assert_eq!(created, [0, 1, 2, 3, 4], "no trial re-sampled");
    assert!(!finished_before.is_empty());
}

#[test]
fn seed_sagemaker_space_launches_no_impossible_network() {
    let f = Fixture::new(300, 50);
    let space = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("search_spaces/seed_sagemaker.toml");
    let out = ok(f.run(&[
        "run",
        space.to_str().unwrap(),
        "--trials",
        "4",
        "--max-epochs",
        "1",
        "--subset",
        "100",
        "--concurrency",
        "2",
        "--data-dir",
        f.data().to_str().unwrap(),
        "--seed",
        "1",
    ]));
    assert!(out.contains(", 0 failed,"), "{out}");
    let rows = csv_rows(&f.path("runs/seed_sagemaker/leaderboard.csv"));
    let trained = rows.iter().filter(|r| &r[2] == "complete" || &r[2] == "pruned").count();
    assert_eq!(trained, 4, "{out}");
    for r in rows.iter().filter(|r| &r[2] == "infeasible") {
        assert!(r[11].contains('×'), "infeasible trials carry the shape reason: {}", &r[11]);
    }
}

#[test]
fn bad_space_is_one_clear_error() {
    let f = Fixture::new(100, 20);
    let s = f.write(
        "s.toml",
        &space("bad", 2, "")
            .replace("lr = { float = [1e-3, 1e-2], log = true }", "lr = { float = [0.0, 1e-2], log = true }"),
    );
    let o = f.run(&["run", s.to_str().unwrap(), "--data-dir", f.data().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let msg = text(&o);
    assert!(msg.contains("s.toml") && msg.contains("`lr`") && msg.contains("fix"), "{msg}");
    assert!(!f.path("runs/bad").exists(), "nothing written for a space that does not parse");
}

#[test]
fn grid_study_stops_when_the_grid_is_exhausted() {
    let f = Fixture::new(300, 50);
    let s = f.write(
        "g.toml",
        "[study]\nname = \"g\"\ntrials = 5\nsampler = \"grid\"\npruner = \"none\"\n[study.training]\nmax_epochs = 1\nsubset = 100\n\
         [params]\nconv0_channels = { choice = [4, 8] }\nconv0_pool = 2\nfc0_neurons = 8\n",
    );
    let out = ok(f.run(&["run", s.to_str().unwrap(), "--concurrency", "2", "--data-dir", f.data().to_str().unwrap()]));
    assert!(out.contains("2 complete, 0 pruned, 0 failed"), "two grid points, then the study ends: {out}");
    let channels: std::collections::BTreeSet<String> =
        csv_rows(&f.path("runs/g/leaderboard.csv")).iter().map(|r| r[12].to_string()).collect();
    let headers = csv_headers(&f.path("runs/g/leaderboard.csv"));
    assert_eq!(headers[12], "conv0_channels", "after the 12 fixed columns");
    assert_eq!(channels, ["4", "8"].iter().map(|s| s.to_string()).collect());
}

/// A PBT fork starts from its parent's weights and optimiser state: its first epoch of its own
/// continues the parent's curve, far above what any trial reached in its first epoch.
#[test]
fn a_pbt_fork_continues_its_parents_curve_from_its_checkpoint() {
    let f = Fixture::new(1600, 200);
    let text = "[study]\nname = \"pbt\"\ntrials = 4\nseed = 8\nsampler = \"random\"\npruner = \"none\"\nscheduler = \"pbt\"\nenqueue_default = false\n\
        [study.pbt]\ninterval = 2\nresample_probability = 0.0\n\
        [study.training]\nmax_epochs = 4\npatience = 4\nsubset = 1200\n\n\
        [params]\nlr = { float = [1e-4, 1.5e-4], log = true }\nn_conv = 1\nconv0_channels = 4\nconv0_pool = 2\nn_fc = 0\n";
    let s = f.write("pbt.toml", text);
    let out = ok(f.run(&["run", s.to_str().unwrap(), "--concurrency", "2", "--data-dir", f.data().to_str().unwrap()]));
    let trials = tune::study::run::load_trials(&f.path("runs/pbt")).unwrap();
    let forks: Vec<_> = trials.values().filter(|t| t.fork.is_some()).collect();
    assert!(!forks.is_empty(), "the worst of 4 at epoch 2 is replaced by a fork:\n{out}");
    let first_epochs: Vec<f64> = trials.values().filter(|t| t.fork.is_none()).map(|t| t.history[0].val_acc).collect();
    let best_first = first_epochs.iter().copied().fold(0.0, f64::max);
    for t in forks {
        let fork = t.fork.as_ref().unwrap();
        let parent = &trials[&fork.parent];
        let (at_fork, next) = (parent.history[fork.epoch - 1].val_acc, t.history[fork.epoch].val_acc);
        eprintln!("fork {}: parent {at_fork:.3} → {next:.3}; best first epoch {best_first:.3}", t.number);
        assert!(
            next >= at_fork - 0.1 && next > best_first + 0.05,
            "trial {}: epoch {} val_acc {next:.3} continues its parent's {at_fork:.3} (best first epoch {best_first:.3})\n{out}",
            t.number,
            fork.epoch + 1
        );
        assert!(!fork.changes.is_empty() && fork.changes.iter().all(|c| c.key == "lr"), "{fork:?}");
    }
    // Retraining a fork replays its schedule: its parent's lr up to the fork, then its own.
    let fork = trials.values().find(|t| t.fork.is_some()).unwrap();
    let (parent, at) = (fork.fork.as_ref().unwrap().parent, fork.fork.as_ref().unwrap().epoch);
    let n = fork.number.to_string();
    let d = f.data();
    let out = ok(f.run(&["retrain", "--trial", &n, "--study", "runs/pbt", "--data-dir", d.to_str().unwrap()]));
    assert!(out.contains("replaying its schedule"), "{out}");
    let rows = csv_rows(&f.path(&format!("runs/pbt/retrain/trial-{n}/seed-0/metrics.csv")));
    let lr = |epoch: usize| rows[epoch - 1][5].parse::<f64>().unwrap();
    let (parent_lr, own_lr) = (trials[&parent].params["lr"].as_f64().unwrap(), fork.params["lr"].as_f64().unwrap());
    assert!((lr(at) - parent_lr).abs() < 1e-12, "epoch {at} trains with trial {parent}'s lr {parent_lr}: {}", lr(at));
    assert!((lr(at + 1) - own_lr).abs() < 1e-12, "epoch {} with the fork's own {own_lr}: {}", at + 1, lr(at + 1));
    assert_eq!(rows.len(), 4, "to the end");

    // Under a cosine schedule, the replay follows the rates the study's trials had, epoch by
    // epoch: the parent's stage stops at the fork, but its schedule spans the whole run.
    let cosine = text
        .replace("name = \"pbt\"", "name = \"cos\"")
        .replace("subset = 1200", "subset = 1200\nlr_schedule = \"cosine\"");
    let s = f.write("cos.toml", &cosine);
    ok(f.run(&["run", s.to_str().unwrap(), "--concurrency", "2", "--data-dir", d.to_str().unwrap()]));
    let trials = tune::study::run::load_trials(&f.path("runs/cos")).unwrap();
    let fork = trials.values().find(|t| t.fork.is_some()).expect("a fork");
    let n = fork.number.to_string();
    let args = ["retrain", "--trial", &n, "--study", "runs/cos", "--subset", "1200", "--data-dir", d.to_str().unwrap()];
    ok(f.run(&args));
    let rows = csv_rows(&f.path(&format!("runs/cos/retrain/trial-{n}/seed-0/metrics.csv")));
    let replayed: Vec<f64> = rows.iter().map(|r| r[5].parse().unwrap()).collect();
    let studied: Vec<f64> = fork.history.iter().map(|m| m.lr).collect();
    assert_eq!(replayed.len(), studied.len());
    for (a, b) in replayed.iter().zip(&studied) {
        assert!((a - b).abs() <= 1e-12 + 1e-9 * b.abs(), "replayed rates {replayed:?} vs the study's {studied:?}");
    }
    assert!(
        studied.windows(2).all(|w| w[1] < w[0]) || fork.fork.as_ref().unwrap().changes.iter().any(|c| c.key == "lr")
    );
}

/// `tune study list|delete` work on a runs directory of journals as on a store.
#[test]
fn study_list_and_delete_work_on_a_runs_directory() {
    let f = Fixture::new(200, 40);
    let s = f.write("s.toml", &space("kept", 2, "pruner = \"none\""));
    ok(f.run(&["run", s.to_str().unwrap(), "--data-dir", f.data().to_str().unwrap(), "--max-epochs", "1"]));
    let s = f.write("t.toml", &space("gone", 1, "pruner = \"none\""));
    ok(f.run(&["run", s.to_str().unwrap(), "--data-dir", f.data().to_str().unwrap(), "--max-epochs", "1"]));
    let list = ok(f.run(&["study", "list"]));
    assert!(list.contains("kept") && list.contains("gone") && list.contains("2 studies in runs"), "{list}");
    assert!(list.contains("2 trials: 2 complete"), "{list}");
    let refused = f.run(&["study", "delete", "gone"]);
    assert!(!refused.status.success() && text(&refused).contains("--yes"), "{}", text(&refused));
    ok(f.run(&["study", "delete", "gone", "--yes"]));
    assert!(!f.path("runs/gone").exists() && f.path("runs/kept").exists());
    let missing = f.run(&["study", "delete", "gone", "--yes"]);
    assert!(!missing.status.success() && text(&missing).contains("no study `gone`"), "{}", text(&missing));
}

#[test]
fn a_two_objective_nsga2_study_ranks_its_leaderboard_by_front() {
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
#[test]
fn a_latency_objective_is_measured_per_trial_ranked_by_front_and_caps_the_retrain() {
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
#[test]
fn a_two_objective_tpe_study_runs_and_ranks_by_front() {
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

#[test]
fn trials_placed_on_devices_run_as_many_at_once_as_the_devices_hold() {
    let f = Fixture::new(600, 100);
    let s = f.write("s.toml", &space("placed", 4, "pruner = \"none\"\nconcurrency = 1"));
    let data = f.data().to_str().unwrap().to_string();
    let args = ["run", s.to_str().unwrap(), "--data-dir", &data, "--devices", "cpu", "--trials-per-device", "2"];
    let out = ok(f.cmd(&args).env("TUNE_LOG", "info").output().unwrap());
    assert!(
        out.contains("trials placed on cpu × 2 trials") && out.contains("2 slots"),
        "devices win over concurrency: {out}"
    );
    assert!(out.contains("4 complete, 0 pruned, 0 failed"), "{out}");
    // Two trials ran at once: the second started before the first finished.
    let events = journal_events(&f, "placed");
    let position = |event: &str, n: u64| events.iter().position(|e| e["event"] == event && e["number"] == n).unwrap();
    assert!(position("created", 1) < position("finished", 0), "{events:?}");

    // This build trains on the CPU: a GPU is refused before anything is written.
    let o = f.run(&["run", s.to_str().unwrap(), "--data-dir", &data, "--devices", "cuda:0", "--runs-dir", "gpu-runs"]);
    assert_eq!(o.status.code(), Some(2));
    let msg = text(&o);
    assert!(msg.contains("study.devices") && msg.contains("--features cuda"), "{msg}");
    assert!(!f.path("gpu-runs").exists());
    let o = f.run(&["run", s.to_str().unwrap(), "--data-dir", &data, "--devices", "gpu0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("`gpu0` is not a device"), "{}", text(&o));
}
