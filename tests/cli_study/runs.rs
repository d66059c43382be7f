//! `tune run` end to end: ranking, slots, failures, kill -9 and resume, grids, devices, study list and delete.

use std::time::{Duration, Instant};

use crate::common::*;
use crate::{journal_events, space};

pub(crate) fn six_trials_two_slots_end_with_a_ranked_leaderboard() {
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

pub(crate) fn same_seed_same_configurations_whatever_the_concurrency() {
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

pub(crate) fn a_failing_trial_does_not_stop_the_study() {
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

pub(crate) fn killed_study_resumes_without_redoing_finished_trials() {
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

pub(crate) fn seed_sagemaker_space_launches_no_impossible_network() {
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

pub(crate) fn bad_space_is_one_clear_error() {
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

pub(crate) fn grid_study_stops_when_the_grid_is_exhausted() {
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
/// `tune study list|delete` work on a runs directory of journals as on a store.
pub(crate) fn study_list_and_delete_work_on_a_runs_directory() {
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

pub(crate) fn trials_placed_on_devices_run_as_many_at_once_as_the_devices_hold() {
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
