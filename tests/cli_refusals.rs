//! Hostile input through the real binary: every refusal has the documented exit code, names the
//! file (or flag) and the key, and leaves the disk exactly as it was.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every file under the fixture (but the decoded-data cache) with its bytes.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.strip_prefix(root).unwrap().starts_with("cache") {
                continue;
            }
            if p.file_name().is_some_and(|n| n == ".lock") {
                // The study lock: a run that takes it writes its pid there, nothing else.
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), b"<lock>".to_vec());
            } else if p.is_dir() {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), b"<dir>".to_vec());
                walk(&p, root, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Runs `args`, asserting the exit code, that the message names every `needle`, and that
/// nothing on disk was created or changed.
fn refused(f: &Fixture, args: &[&str], code: i32, needles: &[&str]) -> String {
    let before = snapshot(f.dir.path());
    let o = f.run(args);
    let msg = text(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}: expected exit {code}\n{msg}");
    for n in needles {
        assert!(msg.contains(n), "{args:?}: message should name {n:?}:\n{msg}");
    }
    let after = snapshot(f.dir.path());
    let changed: Vec<&PathBuf> =
        after.keys().chain(before.keys()).filter(|k| before.get(*k) != after.get(*k)).collect();
    assert!(changed.is_empty(), "{args:?} changed the disk: {changed:?}\n{msg}");
    msg
}

const SPACE_HEAD: &str = "[study]\nname = \"s\"\ntrials = 2\n";
const TINY_SPACE_PARAMS: &str = "[params]\nconv0_channels = 4\nconv0_pool = 2\nfc0_neurons = 8\n";

/// Runs a small study `s` (one epoch of 100 images per trial, `extra` flags added) to its end;
/// returns its space file.
fn small_study(f: &Fixture, extra: &[&str]) -> PathBuf {
    let space =
        f.write("s.toml", &format!("{SPACE_HEAD}[study.training]\nmax_epochs = 1\nsubset = 100\n{TINY_SPACE_PARAMS}"));
    let data = f.data();
    let mut args = vec!["run", space.to_str().unwrap(), "--data-dir", data.to_str().unwrap()];
    args.extend_from_slice(extra);
    ok(f.run(&args));
    space
}

#[test]
fn bad_spaces_and_study_flags_are_refused_before_anything_is_written() {
    let f = Fixture::new(300, 50);
    let d = f.data();
    let d = d.to_str().unwrap();
    // (space text, extra flags, exit code, what the message names)
    let cases: Vec<(String, Vec<&str>, i32, Vec<&str>)> = vec![
        (format!("{SPACE_HEAD}{TINY_SPACE_PARAMS}lr = inf\n"), vec![], 2, vec!["`lr`", "can produce `inf`"]),
        (
            format!("{SPACE_HEAD}[study.training]\nlr = inf\n{TINY_SPACE_PARAMS}"),
            vec![],
            2,
            vec!["`study.training.lr`"],
        ),
        (
            format!("{SPACE_HEAD}[study.training]\nweight_decay = -1.0\n{TINY_SPACE_PARAMS}"),
            vec![],
            2,
            vec!["`study.training.weight_decay`"],
        ),
        (
            format!("{SPACE_HEAD}[study.training]\nseed = 3\n{TINY_SPACE_PARAMS}"),
            vec![],
            2,
            vec!["`study.training.seed`"],
        ),
        (
            format!(
                "{SPACE_HEAD}pruner = \"hyperband\"\n[study.training]\nmax_epochs = 2\n[study.pruning]\nmin_resource = 4611686018427387904\nreduction_factor = 4\n{TINY_SPACE_PARAMS}"
            ),
            vec![],
            2,
            vec!["`study.pruning.min_resource`"],
        ),
        (
            format!("{SPACE_HEAD}[params]\nn_conv = {{ int = [1, 1000000000] }}\n\"conv*_channels\" = 8\n"),
            vec![],
            2,
            vec!["`n_conv`", "0..=16"],
        ),
        (format!("{SPACE_HEAD}[params]\nconv40_channels = 8\n"), vec![], 2, vec!["conv40_channels", "at most 16"]),
        (
            format!("{SPACE_HEAD}sampler = \"grid\"\ngrid_points = 1000000000000\n{TINY_SPACE_PARAMS}"),
            vec![],
            2,
            vec!["`study.grid_points`"],
        ),
        (
            format!("{SPACE_HEAD}[params]\nn_conv = 2\n\"conv*_channels\" = {{ int = [8, 100000000] }}\n"),
            vec![],
            2,
            vec!["conv*_channels", "1..=2048"],
        ),
        (
            format!("{SPACE_HEAD}[params]\n\"conv*_channels\" = {{ int = [8, 64] }}\n"),
            vec![],
            2,
            vec!["conv*_channels", "applies to no block"],
        ),
        (format!("{SPACE_HEAD}{TINY_SPACE_PARAMS}"), vec!["--max-epochs", "0"], 2, vec!["`--max-epochs`"]),
        (format!("{SPACE_HEAD}{TINY_SPACE_PARAMS}"), vec!["--subset", "0"], 2, vec!["`--subset`", "every class"]),
        (format!("{SPACE_HEAD}{TINY_SPACE_PARAMS}"), vec!["--trials", "0"], 2, vec!["--trials"]),
        (format!("{SPACE_HEAD}{TINY_SPACE_PARAMS}"), vec!["--concurrency", "0"], 2, vec!["--concurrency"]),
        (
            format!("{SPACE_HEAD}{TINY_SPACE_PARAMS}"),
            vec!["--split-seed", "18446744073709551615"],
            2,
            vec!["--split-seed"],
        ),
        (format!("{SPACE_HEAD}{TINY_SPACE_PARAMS}"), vec!["--timeout", "0s"], 2, vec!["--timeout", "between 1 second"]),
        (format!("{SPACE_HEAD}{TINY_SPACE_PARAMS}"), vec!["--timeout", "soon"], 2, vec!["--timeout", "not a duration"]),
        (
            format!("{SPACE_HEAD}timeout = \"forever\"\n{TINY_SPACE_PARAMS}"),
            vec![],
            2,
            vec!["`study.timeout`", "not a duration"],
        ),
        // shared storage: a URL that is not one, liveness settings that would reap live workers
        (
            format!("{SPACE_HEAD}{TINY_SPACE_PARAMS}"),
            vec!["--storage", "mysql://u:secret@h/db"],
            2,
            vec!["--storage", "not a storage URL", "postgresql://user@host", "u:***@h"],
        ),
        (
            format!("{SPACE_HEAD}storage = \"runs.db\"\n{TINY_SPACE_PARAMS}"),
            vec![],
            2,
            vec!["`storage`", "not a storage URL"],
        ),
        (
            format!("{SPACE_HEAD}heartbeat = \"2m\"\ngrace = \"1m\"\n{TINY_SPACE_PARAMS}"),
            vec![],
            2,
            vec!["`study.grace`", "not longer than the heartbeat"],
        ),
        (
            format!("{SPACE_HEAD}max_retries = 1000\n{TINY_SPACE_PARAMS}"),
            vec![],
            2,
            vec!["`study.max_retries`", "0..=100"],
        ),
        // a store that cannot be reached at start: exit 8 with the fix, nothing written
        (
            format!("{SPACE_HEAD}{TINY_SPACE_PARAMS}"),
            vec!["--storage", "postgresql://tune@127.0.0.1:1/tune"],
            8,
            vec!["127.0.0.1:1", "out of reach", "fix: start the server"],
        ),
        ("[study]\nname = \"a\\u0000b\"\n[params]\nconv0_channels = 4\n".into(), vec![], 2, vec!["`study.name`"]),
        (
            format!("[study]\nname = \"{}\"\n[params]\nconv0_channels = 4\n", "x".repeat(300)),
            vec![],
            2,
            vec!["`study.name`", "1 to 100"],
        ),
        // enqueued dictionaries: an unknown key, a value outside the space, an impossible network
        (
            format!(
                "{SPACE_HEAD}enqueue = [ {{ conv0_chanels = 4 }} ]\n[params]\nconv0_channels = {{ choice = [4, 8] }}\n"
            ),
            vec![],
            2,
            vec!["`study.enqueue[0].conv0_chanels`", "not a parameter"],
        ),
        (
            format!(
                "{SPACE_HEAD}enqueue = [ {{ conv0_channels = 5 }} ]\n[params]\nconv0_channels = {{ choice = [4, 8] }}\n"
            ),
            vec![],
            2,
            vec!["`study.enqueue[0].conv0_channels`", "`5` is not one of 4, 8"],
        ),
        (
            format!(
                "{SPACE_HEAD}enqueue = [ {{ conv0_filter = 30 }} ]\n[params]\nconv0_channels = 4\nconv0_pad = 0\nconv0_filter = {{ choice = [3, 30] }}\n"
            ),
            vec![],
            4,
            vec!["`study.enqueue[0]`", "does not fit"],
        ),
        // a space where every network collapses: refused with exit 4, nothing recorded
        (
            format!(
                "{SPACE_HEAD}[params]\nconv0_channels = 4\nconv0_filter = 20\nconv0_stride = 5\nconv1_channels = 4\nconv1_pool = {{ int = [4, 8] }}\n"
            ),
            vec![],
            4,
            vec!["`params`", "conv1_pool", "0 of 400"],
        ),
    ];
    for (i, (space, flags, code, needles)) in cases.into_iter().enumerate() {
        let path = f.write(&format!("space{i}.toml"), &space);
        let mut args = vec!["run", path.to_str().unwrap(), "--data-dir", d];
        let mut names = needles.clone();
        if flags.is_empty() {
            names.push(path.file_name().unwrap().to_str().unwrap()); // errors in the file name it
        }
        args.extend(flags);
        refused(&f, &args, code, &names);
    }
    // A binary file passed as the space, and missing or damaged data: also nothing written.
    let bin = f.path("space.bin");
    std::fs::write(&bin, [0x7f, b'E', b'L', b'F', 0xff, 0xfe, 0, 1]).unwrap();
    refused(&f, &["run", bin.to_str().unwrap(), "--data-dir", d], 2, &["space.bin", "not UTF-8"]);
    refused(&f, &["run", "nowhere.toml", "--data-dir", d], 2, &["nowhere.toml", "no such file"]);
    refused(&f, &["run", "data", "--data-dir", d], 2, &["data", "is a directory"]);
    refused(&f, &["train", "--params", "nowhere.toml", "--data-dir", d], 2, &["nowhere.toml", "no such file"]);
    let good = f.write("good.toml", &format!("{SPACE_HEAD}{TINY_SPACE_PARAMS}"));
    std::fs::create_dir_all(f.path("empty")).unwrap();
    refused(
        &f,
        &["run", good.to_str().unwrap(), "--data-dir", f.path("empty").to_str().unwrap()],
        3,
        &["missing: train-images-idx3-ubyte.gz"],
    );
}

#[test]
fn bad_training_settings_and_networks_are_refused_by_tune_train() {
    let f = Fixture::new(300, 50);
    let d = f.data();
    let d = d.to_str().unwrap();
    f.write("zero.toml", "epochs = 0\n");
    f.write("wd.toml", "weight_decay = -1.0\n");
    f.write("wdinf.toml", "weight_decay = inf\n");
    f.write("typo.toml", "epoch = 3\n");
    f.write("huge.toml", "conv0_channels = 1000000000\n");
    f.write("pad.toml", "conv0_channels = 8\nconv0_pad = 9223372036854775807\n");
    f.write("collapse.toml", "conv0_channels = 4\nconv0_pad = 0\nconv0_filter = 30\n");
    f.write("lrinf.toml", "conv0_channels = 4\nlr = inf\n");
    f.write("bool.toml", "conv0_channels = 4\naug_flip = true\n");
    // (args after `train --data-dir D --out out`, exit code, named); flags win over files,
    // so each case sets its bad value alone
    let cases: Vec<(Vec<&str>, i32, Vec<&str>)> = vec![
        (vec!["--lr", "NaN"], 2, vec!["`--lr`", "NaN"]),
        (vec!["--lr=-1"], 2, vec!["`--lr`"]),
        (vec!["--weight-decay", "inf"], 2, vec!["`--weight-decay`"]),
        (vec!["--epochs", "0"], 2, vec!["`--epochs`"]),
        (vec!["--batch-size", "0"], 2, vec!["`--batch-size`"]),
        (vec!["--subset", "0"], 2, vec!["`--subset`"]),
        (vec!["--threads", "0"], 2, vec!["--threads"]),
        (vec!["--split-seed", "18446744073709551615"], 2, vec!["--split-seed"]),
        (vec!["--config", "zero.toml"], 2, vec!["zero.toml", "`epochs`"]),
        (vec!["--config", "wd.toml"], 2, vec!["wd.toml", "`weight_decay`"]),
        (vec!["--config", "wdinf.toml"], 2, vec!["wdinf.toml", "`weight_decay`"]),
        (vec!["--config", "typo.toml"], 2, vec!["typo.toml", "`epoch`", "unknown"]),
        (vec!["--params", "huge.toml"], 2, vec!["huge.toml", "`conv0_channels`", "1..=2048"]),
        (vec!["--params", "pad.toml"], 2, vec!["pad.toml", "`conv0_pad`"]),
        (vec!["--params", "lrinf.toml"], 2, vec!["lrinf.toml", "`lr`"]),
        (vec!["--params", "bool.toml"], 2, vec!["bool.toml", "`aug_flip`", "aug_flip = 1"]),
        (vec!["--params", "collapse.toml"], 4, vec!["conv0", "does not fit"]),
    ];
    for (extra, code, needles) in cases {
        let mut args = vec!["train", "--data-dir", d, "--out", "out"];
        args.extend(extra);
        refused(&f, &args, code, &needles);
    }
    for params in ["huge.toml", "pad.toml"] {
        refused(&f, &["model", "summary", "--params", params], 2, &[params]);
    }
}

#[test]
fn zero_image_data_files_are_refused_by_name() {
    let f = Fixture::new(0, 0);
    tune::testdata::write_idx_dir(&f.path("data"), 60, 20, 1);
    // Replace the validation labels by a file announcing 0 labels.
    let labels = f.path("data/t10k-labels-idx1-ubyte.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tune::data::idx::encode_labels(&[])).unwrap();
    std::fs::write(&labels, gz.finish().unwrap()).unwrap();
    refused(&f, &["data", "summary", "--data-dir", "data"], 3, &["t10k-labels-idx1-ubyte.gz", "0 labels"]);
    std::fs::remove_file(&labels).unwrap();
    refused(&f, &["data", "summary", "--data-dir", "data"], 3, &["missing: t10k-labels-idx1-ubyte.gz"]);
}

/// A study directory written through the journal API with the given (state, val_acc) trials.
fn study_with(dir: &Path, trials: &[(Option<tune::study::TrialState>, f64)]) {
    use tune::study::journal::{Event, Journal};
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

#[test]
fn retrain_refuses_a_study_without_a_complete_trial_and_bad_flags() {
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

#[test]
fn damaged_study_records_exit_6_and_are_left_alone() {
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

#[test]
fn a_second_run_of_a_locked_study_exits_6_naming_the_holder() {
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

#[test]
fn a_diverging_trial_fails_with_its_reason_and_the_study_reads_back() {
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

#[test]
fn enqueued_dictionaries_may_leave_out_the_spaces_fixed_values() {
    let f = Fixture::new(300, 50);
    let space = f.write(
        "e.toml",
        "[study]\nname = \"e\"\ntrials = 1\nenqueue_default = false\nenqueue = [ { conv0_channels = 8 } ]\n[study.training]\nmax_epochs = 1\nsubset = 100\n[params]\nconv0_channels = { choice = [4, 8] }\nconv0_pool = 2\nfc0_neurons = 8\ndrop_rate = 0.2\n",
    );
    ok(f.run(&["run", space.to_str().unwrap(), "--data-dir", f.data().to_str().unwrap()]));
    let params = std::fs::read_to_string(f.path("runs/e/trials/0/params.toml")).unwrap();
    assert!(
        params.contains("conv0_channels = 8")
            && params.contains("drop_rate = 0.2")
            && params.contains("conv0_pool = 2"),
        "{params}"
    );
}

/// Mutations of the shipped `cnn.toml` (values swapped for hostile ones, keys added, lines cut)
/// through the binary: each ends at the data check (exit 3: the space passed) or in one clear
/// refusal (exit 2 with a fix), never a panic, and never writes a study.
#[test]
fn mutated_spaces_are_refused_cleanly_or_pass_their_checks() {
    use rand::{Rng, SeedableRng, seq::IndexedRandom};
    let f = Fixture::new(0, 0);
    std::fs::create_dir_all(f.path("empty")).unwrap();
    let base = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("search_spaces/cnn.toml")).unwrap();
    let values = [
        "0",
        "-1",
        "3",
        "1000000000",
        "9223372036854775807",
        "1e308",
        "inf",
        "nan",
        "1.5",
        "\"relu\"",
        "\"x\"",
        "[]",
        "{}",
        "true",
        "{ int = [1, 1000000] }",
        "{ float = [0.0, 1.0], log = true }",
        "{ choice = [] }",
        "{ int = [5, 1], step = 0 }",
    ];
    let keys = [
        "trials",
        "timeout",
        "max_epochs",
        "lr",
        "batch_size",
        "subset",
        "min_resource",
        "n_conv",
        "\"conv*_channels\"",
        "conv0_pool",
        "drop_rate",
        "init",
        "aug_shift",
        "enqueue",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut passed = 0;
    for case in 0..60 {
        let mut lines: Vec<String> = base.lines().map(String::from).collect();
        for _ in 0..rng.random_range(1..=3) {
            let j = rng.random_range(0..lines.len());
            match rng.random_range(0..3) {
                0 if lines[j].contains('=') => {
                    lines[j] =
                        format!("{} = {}", lines[j].split('=').next().unwrap().trim(), values.choose(&mut rng).unwrap())
                }
                1 => {
                    let section =
                        ["[study]", "[study.training]", "[study.pruning]", "[params]"].choose(&mut rng).unwrap();
                    let at = lines.iter().position(|l| l == section).unwrap_or(0);
                    lines.insert(
                        at + 1,
                        format!("{} = {}", keys.choose(&mut rng).unwrap(), values.choose(&mut rng).unwrap()),
                    );
                }
                _ => {
                    let cut = lines[j].floor_char_boundary(rng.random_range(0..=lines[j].len()));
                    lines[j].truncate(cut);
                }
            }
        }
        let space = f.write("m.toml", &(lines.join("\n") + "\n"));
        let o = f.run(&["run", space.to_str().unwrap(), "--data-dir", "empty", "--runs-dir", "runs"]);
        let msg = text(&o);
        match o.status.code() {
            Some(3) => passed += 1,
            Some(2) => {
                assert!(msg.contains("fix"), "case {case}: a refusal says how to fix it:\n{msg}\n{}", lines.join("\n"))
            }
            other => panic!("case {case}: exit {other:?}\n{msg}\n{}", lines.join("\n")),
        }
        assert!(!f.path("runs").exists(), "case {case} wrote a study:\n{}", lines.join("\n"));
    }
    assert!(passed > 0 && passed < 60, "the mutations exercise both outcomes: {passed} of 60 passed");
}
