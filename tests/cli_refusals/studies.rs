//! Existing studies: retrain without a complete trial, damaged records, a locked study, a diverging trial.

use std::path::Path;

use crate::common::*;
use crate::{refused, small_study};

/// A study directory written through the journal API with the given (state, val_acc) trials.
fn study_with(dir: &Path, trials: &[(Option<tune::study::TrialState>, f64)]) {
    use tune::study::{events::Event, journal::Journal};
    std::fs::create_dir_all(dir).unwrap();
    let j = Journal::open(dir);
    for (n, (state, v)) in trials.iter().enumerate() {
        let params: tune::model::Params = [("conv0_channels".to_string(), tune::model::Value::Int(4))].into();
        j.append(&Event::Created { number: n, params, seed: n as u64, infeasible: None, retry_of: None, fork: None })
            .unwrap();
        let metrics = tune::training::EpochMetrics {
            epoch: 1,
            train_loss: 1.0,
            train_acc: 0.5,
            val_loss: 1.0,
            val_acc: *v,
            lr: 1e-3,
            secs: 1.0,
            latency: None,
        };
        j.append(&Event::Epoch { number: n, metrics }).unwrap();
        if let Some(state) = state {
            j.append(&Event::Finished { number: n, state: *state, reason: Some("why".into()), secs: 1.0 }).unwrap();
        }
    }
}

pub(crate) fn retrain_refuses_a_study_without_a_complete_trial_and_bad_flags() {
    use tune::study::TrialState as S;
    let f = Fixture::new(300, 50);
    small_study(&f, &[]);
    // The finished study's settings, with a journal holding only failed, running and pruned trials.
    std::fs::create_dir_all(f.path("runs/bad")).unwrap();
    std::fs::copy(f.path("runs/s/settings.json"), f.path("runs/bad/settings.json")).unwrap();
    study_with(&f.path("runs/bad"), &[(Some(S::Failed), 0.99), (None, 0.95), (Some(S::Pruned), 0.5)]);
    let d = f.data();
    let d = d.to_str().unwrap();
    refused(
        &f,
        &["retrain", "--best", "--study", "runs/bad", "--data-dir", d],
        6,
        &["runs/bad", "no complete trial", "1 running, 1 pruned, 1 failed", "--include-pruned"],
    );
    refused(&f, &["retrain", "--best", "--study", "runs/s", "--data-dir", d, "--epochs", "0"], 2, &["`--epochs`"]);
    refused(&f, &["retrain", "--best", "--study", "runs/s", "--data-dir", d, "--subset", "0"], 2, &["`--subset`"]);
    refused(&f, &["retrain", "--best", "--study", "runs/s", "--data-dir", d, "--seeds", "0"], 2, &["--seeds"]);
    // Without --study, the runs directory must hold exactly one study.
    refused(
        &f,
        &["retrain", "--best", "--data-dir", d],
        6,
        &["several studies under runs", "bad, s", "--study runs/NAME"],
    );
    refused(
        &f,
        &["retrain", "--best", "--runs-dir", "elsewhere", "--data-dir", d],
        6,
        &["elsewhere", "--runs-dir DIR"],
    );
    // With --include-pruned, the pruned trial is retrained (trial 2, not the failed 0.99).
    let out = ok(f.run(&[
        "retrain",
        "--best",
        "--include-pruned",
        "--study",
        "runs/bad",
        "--data-dir",
        d,
        "--epochs",
        "1",
        "--subset",
        "100",
    ]));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f.path("runs/bad/retrain/trial-2/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["trial"], 2, "{out}");
}

pub(crate) fn damaged_study_records_exit_6_and_are_left_alone() {
    let f = Fixture::new(300, 50);
    let space = small_study(&f, &[]);
    let d = f.data();
    let d = d.to_str().unwrap();
    let journal = f.path("runs/s/journal.jsonl");
    let good = std::fs::read_to_string(&journal).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines[1] = "{\"event\":\"epoch\",\"number\":0,\"metrics\":{\"lr\":null}}";
    std::fs::write(&journal, lines.join("\n") + "\n").unwrap();
    refused(&f, &["run", space.to_str().unwrap(), "--data-dir", d], 6, &["journal.jsonl", "line 2"]);
    refused(&f, &["report", "runs/s"], 6, &["journal.jsonl", "line 2"]);
    std::fs::write(&journal, &good).unwrap();
    std::fs::write(f.path("runs/s/settings.json"), "{").unwrap();
    refused(&f, &["run", space.to_str().unwrap(), "--data-dir", d], 6, &["settings.json"]);
}

pub(crate) fn a_second_run_of_a_locked_study_exits_6_naming_the_holder() {
    let f = Fixture::new(300, 50);
    let space = small_study(&f, &["--trials", "1"]);
    let d = f.data();
    let d = d.to_str().unwrap();
    // Hold the OS lock as a running study would, with a pid inside.
    let lock = std::fs::OpenOptions::new().read(true).write(true).open(f.path("runs/s/.lock")).unwrap();
    lock.lock().unwrap();
    std::fs::write(f.path("runs/s/.lock"), "4242").unwrap();
    refused(&f, &["run", space.to_str().unwrap(), "--data-dir", d], 6, &["runs/s", "being run by process 4242"]);
    drop(lock);
    let out = ok(f.run(&["run", space.to_str().unwrap(), "--data-dir", d]));
    assert!(out.contains("2 complete"), "the lock is free again once its holder is gone: {out}");
}

pub(crate) fn a_diverging_trial_fails_with_its_reason_and_the_study_reads_back() {
    let f = Fixture::new(300, 50);
    // weight_decay 1e39 overflows f32: the first step turns the weights into NaN.
    let space = f.write(
        "d.toml",
        "[study]\nname = \"d\"\ntrials = 2\nsampler = \"grid\"\nconcurrency = 1\n[study.training]\nmax_epochs = 2\nsubset = 100\n[params]\nconv0_channels = 4\nconv0_pool = 2\nfc0_neurons = 8\nweight_decay = { choice = [0.0, 1e39] }\n",
    );
    let d = f.data();
    let d = d.to_str().unwrap();
    let out = ok(f.run(&["run", space.to_str().unwrap(), "--data-dir", d]));
    assert!(out.contains("1 complete, 0 pruned, 1 failed"), "{out}");
    let journal = std::fs::read_to_string(f.path("runs/d/journal.jsonl")).unwrap();
    let events: Vec<serde_json::Value> = journal.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for e in events.iter().filter(|e| e["event"] == "epoch") {
        // Every figure a number (JSON has no NaN), the latency's two included.
        let numbers = |m: &serde_json::Value| m.as_object().unwrap().values().all(|v| v.is_number());
        let metrics = e["metrics"].as_object().unwrap();
        assert!(
            metrics.iter().all(|(k, v)| if k == "latency" { numbers(v) } else { v.is_number() }),
            "only finite numbers are recorded: {e}"
        );
    }
    let failed: Vec<&serde_json::Value> = events.iter().filter(|e| e["state"] == "failed").collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0]["reason"].as_str().unwrap().starts_with("diverged at epoch 1"), "{failed:?}");
    // Everything recorded reads back: resume and report succeed.
    ok(f.run(&["run", space.to_str().unwrap(), "--data-dir", d]));
    let report = ok(f.run(&["report", "runs/d"]));
    assert!(report.contains("not ranked: 1 failed"), "{report}");
}
