//! `tune train` through the real binary on tiny generated data.

mod common;
use common::*;

#[test]
fn one_epoch_writes_metrics_checkpoint_and_params() {
    let f = Fixture::new(600, 100);
    let p = f.write("p.toml", TINY_PARAMS);
    let out = ok(f.train(&p, "run", &["--epochs", "1"]));
    assert!(out.contains("best val_acc"), "{out}");
    assert_eq!(
        csv_headers(&f.path("run/metrics.csv")),
        ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "secs", "latency_ms", "latency_ms_batch100"]
    );
    let rows = csv_rows(&f.path("run/metrics.csv"));
    assert_eq!(rows.len(), 1);
    let val_acc: f64 = rows[0][4].parse().unwrap();
    assert!((0.0..=1.0).contains(&val_acc));
    // The first epoch times the network's inference: ms per image, alone and in batches.
    let (alone, batched): (f64, f64) = (rows[0][7].parse().unwrap(), rows[0][8].parse().unwrap());
    assert!(alone > 0.0 && batched > 0.0 && alone < 1000.0, "latency {alone} / {batched} ms");
    assert!(std::fs::metadata(f.path("run/best.bpk")).unwrap().len() > 1000, "a real checkpoint");
    let params = std::fs::read_to_string(f.path("run/params.toml")).unwrap();
    assert!(
        params.contains("conv1_channels = 8") && params.contains("n_conv = 2") && params.contains("lr = 0.003"),
        "{params}"
    );
}

#[test]
fn training_learns_and_resume_continues_without_redoing_epochs() {
    let f = Fixture::new(600, 100);
    let p = f.write("p.toml", TINY_PARAMS);
    ok(f.train(&p, "run", &["--epochs", "2", "--seed", "5"]));
    let first = csv_rows(&f.path("run/metrics.csv"));
    ok(f.train(&p, "run", &["--epochs", "5", "--seed", "5", "--resume"]));
    let rows = csv_rows(&f.path("run/metrics.csv"));
    assert_eq!(rows.len(), 5, "resumed to 5 epochs");
    assert_eq!(rows[..2], first[..], "the first two epochs are kept, not redone");
    let best = rows.iter().map(|r| r[4].parse::<f64>().unwrap()).fold(0.0, f64::max);
    assert!(best > 0.5, "the synthetic task is learnable: best val_acc {best}");
}

#[test]
fn same_seed_same_run() {
    let f = Fixture::new(300, 50);
    let p = f.write("p.toml", TINY_PARAMS);
    for out in ["a", "b"] {
        ok(f.train(&p, out, &["--epochs", "1", "--seed", "9", "--threads", "1"]));
    }
    let cols = |dir: &str| {
        csv_rows(&f.path(&format!("{dir}/metrics.csv")))[0].iter().take(6).map(String::from).collect::<Vec<_>>()
    };
    assert_eq!(cols("a"), cols("b"), "same seed, same losses and accuracies");
}

#[test]
fn bad_flags_and_params_fail_cleanly() {
    let f = Fixture::new(100, 20);
    let d = f.data();
    let o = f.run(&["train", "--epochs", "0", "--data-dir", d.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--epochs"), "{}", text(&o));
    let p = f.write("p.toml", "lr = -1\n");
    let o = f.run(&["train", "--params", p.to_str().unwrap(), "--data-dir", d.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("p.toml") && text(&o).contains("`lr`"), "{}", text(&o));
}

#[test]
fn augmentation_is_seeded_recorded_and_searchable() {
    let f = Fixture::new(600, 100);
    let p = f.write("p.toml", TINY_PARAMS);
    let d = f.data();
    let train = |out: &str, extra: &[&str]| {
        ok(f.train(&p, out, &[&["--epochs", "2", "--seed", "4"][..], extra].concat()));
        csv_rows(&f.path(&format!("{out}/metrics.csv"))).iter().map(|r| r[1].to_string()).collect::<Vec<_>>()
    };
    let plain = train("plain", &[]);
    let a = train("a", &["--aug-shift", "2", "--aug-flip"]);
    let b = train("b", &["--aug-shift", "2", "--aug-flip"]);
    assert_eq!(a, b, "the same seed augments the same way");
    assert_ne!(a, plain, "augmentation changes what is trained on");
    let cfg = std::fs::read_to_string(f.path("a/train.toml")).unwrap();
    assert!(cfg.contains("aug_shift = 2") && cfg.contains("aug_flip = true"), "{cfg}");
    // As keys of a search space: sampled, written into each trial's params, trained.
    let space = f.write(
        "s.toml",
        "[study]\nname = \"aug\"\ntrials = 3\nsampler = \"random\"\n[study.training]\nmax_epochs = 1\nsubset = 100\n\
         [params]\nconv0_channels = 4\nconv0_pool = 2\nfc0_neurons = 8\naug_shift = { int = [1, 3] }\naug_flip = { choice = [0, 1] }\n",
    );
    let out = ok(f.run(&["run", space.to_str().unwrap(), "--data-dir", d.to_str().unwrap()]));
    assert!(out.contains("3 complete"), "{out}");
    let params = std::fs::read_to_string(f.path("runs/aug/trials/0/params.toml")).unwrap();
    assert!(params.contains("aug_shift = ") && params.contains("aug_flip = "), "{params}");
    for (line, key) in [("aug_shift = 9", "`aug_shift`"), ("aug_flip = 2", "`aug_flip`")] {
        let bad = f.write("bad.toml", &format!("{TINY_PARAMS}{line}\n"));
        let o = f.run(&["train", "--params", bad.to_str().unwrap(), "--data-dir", d.to_str().unwrap(), "--out", "bad"]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains(key), "{}", text(&o));
    }
}

/// `precision = "bf16"` (a config file or `--precision`) trains where the CPU has
/// AVX512-BF16, learns the synthetic task and records the setting; elsewhere it is refused
/// with the key and the fix. A misspelt precision is refused either way.
#[test]
fn bf16_precision_trains_or_is_refused_where_the_cpu_lacks_it() {
    let f = Fixture::new(600, 100);
    let p = f.write("p.toml", TINY_PARAMS);
    let d = f.data();
    let cfg = f.write("bf16.toml", "precision = \"bf16\"\n");
    let (p, d, cfg) = (p.to_str().unwrap(), d.to_str().unwrap(), cfg.to_str().unwrap());
    let base = ["train", "--params", p, "--data-dir", d, "--out", "run", "--epochs", "4", "--seed", "5"];
    let o = f.run(&[&base[..], &["--config", cfg]].concat());
    let has_bf16 = std::fs::read_to_string("/proc/cpuinfo").map(|c| c.contains("avx512_bf16")).unwrap_or(false);
    if has_bf16 {
        ok(o);
        let best =
            csv_rows(&f.path("run/metrics.csv")).iter().map(|r| r[4].parse::<f64>().unwrap()).fold(0.0, f64::max);
        assert!(best > 0.5, "bf16 training learns the synthetic task: best val_acc {best}");
        let resolved = std::fs::read_to_string(f.path("run/train.toml")).unwrap();
        assert!(resolved.contains("precision = \"bf16\""), "{resolved}");
    } else {
        assert_eq!(o.status.code(), Some(2));
        let t = text(&o);
        assert!(t.contains("precision") && t.contains("bf16.toml") && t.contains("fp32"), "{t}");
    }
    let o = f.run(&[&base[..], &["--precision", "bf17"]].concat());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--precision"), "{}", text(&o));
}

/// Early stopping ends a plateau run; a step-wise schedule runs to its last epoch through the
/// same flat epochs (it anneals at the end), and both keep their best epoch.
#[test]
fn a_step_wise_schedule_runs_to_its_end_where_the_plateau_rule_stops_early() {
    let f = Fixture::new(600, 100);
    let p = f.write("p.toml", TINY_PARAMS);
    let common = ["--patience", "1", "--seed", "3", "--threads", "1", "--lr-schedule"];
    let val_accs = |out: &str| -> Vec<f64> {
        csv_rows(&f.path(&format!("{out}/metrics.csv"))).iter().map(|r| r[4].parse().unwrap()).collect()
    };
    let train = |out: &str, schedule: &str, extra: &[&str]| -> Vec<f64> {
        ok(f.train(&p, out, &[&common[..], &[schedule], extra].concat()));
        val_accs(out)
    };
    // The first epoch that does not beat the best so far: where patience 1 stops a run.
    let first_miss = |vals: &[f64]| {
        (1..vals.len()).find(|&i| vals[i] <= vals[..i].iter().cloned().fold(f64::NEG_INFINITY, f64::max))
    };
    let cosine = train("cosine", "cosine", &["--epochs", "8"]);
    assert_eq!(cosine.len(), 8, "every epoch: {cosine:?}");
    assert!(
        first_miss(&cosine).is_some_and(|i| i < 7),
        "a flat epoch before the end, so patience 1 would have stopped it: {cosine:?}"
    );
    let plateau = train("plateau", "plateau", &["--epochs", "8"]);
    let stop = first_miss(&plateau).expect("a flat epoch");
    assert_eq!(plateau.len(), stop + 1, "the plateau rule stops at its first flat epoch: {plateau:?}");
    assert!(std::fs::read_to_string(f.path("plateau/state.json")).unwrap().contains("\"finished\":true"));
    // A cosine run an older tune stopped at its patience (its state says finished) goes on to
    // its last epoch when resumed; as the old rule left it: `stopped` epochs, marked finished.
    let stopped = first_miss(&cosine).unwrap() + 1;
    train("old", "cosine", &["--epochs", &stopped.to_string()]);
    let old_state = f.path("old/state.json");
    let text = std::fs::read_to_string(&old_state).unwrap();
    std::fs::write(&old_state, text.replace("\"finished\":false", "\"finished\":true")).unwrap();
    assert_eq!(train("old", "cosine", &["--epochs", "8", "--resume"]).len(), 8, "resumed to the end");
    // The same plateau run resumed stays stopped.
    assert_eq!(train("plateau", "plateau", &["--epochs", "8", "--resume"]).len(), plateau.len());
}

/// The recipe keys (erasing, label smoothing, the step-wise schedules, AdamW and SGD): each
/// changes what is trained, the same seed repeats a run, a run killed after its first epoch
/// and resumed ends where an uninterrupted one does, the settings are recorded, the keys are
/// searchable, and bad values are refused with the key.
#[test]
fn recipe_keys_are_seeded_resumable_recorded_and_searchable() {
    use std::io::BufRead;
    let f = Fixture::new(600, 100);
    let p = f.write("p.toml", TINY_PARAMS);
    let d = f.data();
    let base = |out: &str| -> Vec<String> {
        ["train", "--params", p.to_str().unwrap(), "--data-dir", d.to_str().unwrap(), "--out", out]
            .iter()
            .chain(&["--epochs", "3", "--seed", "4", "--threads", "1"])
            .map(|s| s.to_string())
            .collect()
    };
    let losses = |out: &str| -> Vec<String> {
        csv_rows(&f.path(&format!("{out}/metrics.csv"))).iter().map(|r| format!("{} {}", &r[1], &r[5])).collect()
    };
    let train = |out: &str, extra: &[&str]| {
        let args: Vec<String> = base(out).into_iter().chain(extra.iter().map(|s| s.to_string())).collect();
        ok(f.run(&args.iter().map(String::as_str).collect::<Vec<_>>()));
        losses(out)
    };
    let plain = train("plain", &[]);
    let recipes: [&[&str]; 5] = [
        &["--aug-erase", "0.5", "--aug-erase-area", "0.3"],
        &["--label-smoothing", "0.1"],
        &["--lr-schedule", "cosine", "--warmup-epochs", "1"],
        &["--lr-schedule", "onecycle", "--optimizer", "adamw", "--weight-decay", "0.05"],
        &["--optimizer", "sgd", "--momentum", "0.8", "--lr", "0.05"],
    ];
    for (i, extra) in recipes.iter().enumerate() {
        let a = train(&format!("r{i}a"), extra);
        assert_ne!(a, plain, "{extra:?} changes the run");
        assert_eq!(a, train(&format!("r{i}b"), extra), "{extra:?}: the same seed, the same run");
    }
    let cfg = std::fs::read_to_string(f.path("r3a/train.toml")).unwrap();
    assert!(cfg.contains("lr_schedule = \"onecycle\"") && cfg.contains("optimizer = \"adamw\""), "{cfg}");
    // The cosine run's rates: warm-up in epoch 1 ends at the peak, then they fall.
    let lrs: Vec<f64> = csv_rows(&f.path("r2a/metrics.csv")).iter().map(|r| r[5].parse::<f64>().unwrap()).collect();
    assert!((lrs[0] - 0.003).abs() < 1e-9 && lrs[1] < lrs[0] && lrs[2] < 1e-5, "{lrs:?}");

    // Killed after epoch 1 (its state is on disk before its JSON line), then resumed.
    let every = [
        "--aug-erase",
        "0.5",
        "--label-smoothing",
        "0.1",
        "--lr-schedule",
        "cosine",
        "--warmup-epochs",
        "1",
        "--optimizer",
        "adamw",
        "--weight-decay",
        "0.05",
    ];
    let whole = train("whole", &every);
    let args: Vec<String> = base("cut").into_iter().chain(every.iter().map(|s| s.to_string())).collect();
    let mut child = f
        .cmd(&args.iter().map(String::as_str).chain(["--json"]).collect::<Vec<_>>())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().contains("\"epoch\":1"), "the first epoch's line");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(losses("cut").len() < 3, "killed before the end");
    let resumed: Vec<String> = args.iter().cloned().chain(["--resume".to_string()]).collect();
    ok(f.run(&resumed.iter().map(String::as_str).collect::<Vec<_>>()));
    assert_eq!(losses("cut"), whole, "a resumed run equals an uninterrupted one");

    // Searchable: sampled into each trial's params and trained.
    let space = f.write(
        "s.toml",
        "[study]\nname = \"recipe\"\ntrials = 3\nsampler = \"random\"\npruner = \"none\"\n[study.training]\nmax_epochs = 2\nsubset = 100\n\
         [params]\nconv0_channels = 4\nconv0_pool = 2\nfc0_neurons = 8\naug_erase = { float = [0.0, 0.5] }\n\
         label_smoothing = { float = [0.0, 0.2] }\nlr_schedule = { choice = [\"plateau\", \"cosine\", \"onecycle\"] }\n\
         optimizer = { choice = [\"adam\", \"adamw\"] }\n",
    );
    let out = ok(f.run(&["run", space.to_str().unwrap(), "--data-dir", d.to_str().unwrap()]));
    assert!(out.contains("3 complete"), "{out}");
    let params = std::fs::read_to_string(f.path("runs/recipe/trials/0/params.toml")).unwrap();
    assert!(params.contains("label_smoothing = ") && params.contains("lr_schedule = "), "{params}");
    for (line, key, fix) in [
        ("aug_erase = 1.5", "`aug_erase`", "[0, 1]"),
        ("label_smoothing = 1.0", "`label_smoothing`", "[0, 1)"),
        ("lr_schedule = \"step\"", "`lr_schedule`", "cosine"),
        ("optimizer = \"lion\"", "`optimizer`", "adamw"),
        ("lr_schedule = \"cosine\"\nwarmup_epochs = 60", "`warmup_epochs`", "fewer warm-up epochs"),
    ] {
        let bad = f.write("bad.toml", &format!("{TINY_PARAMS}{line}\n"));
        let o = f.run(&["train", "--params", bad.to_str().unwrap(), "--data-dir", d.to_str().unwrap(), "--out", "bad"]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains(key) && text(&o).contains(fix), "{line}: {}", text(&o));
    }
}

/// A residual network (identity and projection skips) through the binary: its summary shows
/// the skips and the adds, it trains for an epoch and learns, its params file keeps the key,
/// and a residual block whose padding changes the size is refused with the layer and the fix.
#[test]
fn a_residual_network_is_summarised_and_trains() {
    let f = Fixture::new(600, 100);
    let d = f.data();
    let p = f.write(
        "res.toml",
        "conv0_channels = 6\nconv0_residual = 1\nconv1_channels = 6\nconv1_residual = 1\nconv1_pool = 2\n\
         conv2_channels = 8\nconv2_stride = 2\nconv2_residual = 1\nfc0_neurons = 16\nlr = 0.003\n",
    );
    let summary = ok(f.run(&["model", "summary", "--params", p.to_str().unwrap()]));
    for layer in ["conv0_skip (Conv2D)", "conv0_add (Add)", "conv1_add (Add)", "conv2_skip (Conv2D)"] {
        assert!(summary.contains(layer), "{layer}: {summary}");
    }
    assert!(!summary.contains("conv1_skip"), "6 → 6 channels at stride 1 is the identity: {summary}");
    let args = ["train", "--params", p.to_str().unwrap(), "--data-dir", d.to_str().unwrap(), "--out", "run"];
    ok(f.run(&[&args[..], &["--epochs", "2", "--seed", "3"]].concat()));
    let best = csv_rows(&f.path("run/metrics.csv")).iter().map(|r| r[4].parse::<f64>().unwrap()).fold(0.0, f64::max);
    assert!(best > 0.3, "the synthetic task is learnable: best val_acc {best}");
    let params = std::fs::read_to_string(f.path("run/params.toml")).unwrap();
    assert!(params.contains("conv2_residual = 1"), "{params}");
    let bad = f.write("bad.toml", "conv0_channels = 6\nconv0_pad = 0\nconv0_residual = 1\n");
    let o = f.run(&["model", "summary", "--params", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(text(&o).contains("conv0_residual") && text(&o).contains("pad = (filter − 1) / 2"), "{}", text(&o));
}
