//! `tune train` through the real binary on tiny generated data.

mod common;
use common::*;

#[test]
fn one_epoch_writes_metrics_checkpoint_and_params() {
    let f = Fixture::new(600, 100);
    let p = f.write("p.toml", TINY_PARAMS);
    let out = ok(f.run(&["train", "--params", p.to_str().unwrap(), "--epochs", "1", "--data-dir", f.data().to_str().unwrap(), "--out", "run"]));
    assert!(out.contains("best val_acc"), "{out}");
    assert_eq!(csv_headers(&f.path("run/metrics.csv")), ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "secs"]);
    let rows = csv_rows(&f.path("run/metrics.csv"));
    assert_eq!(rows.len(), 1);
    let val_acc: f64 = rows[0][4].parse().unwrap();
    assert!((0.0..=1.0).contains(&val_acc));
    assert!(std::fs::metadata(f.path("run/best.bpk")).unwrap().len() > 1000, "a real checkpoint");
    let params = std::fs::read_to_string(f.path("run/params.toml")).unwrap();
    assert!(params.contains("conv1_channels = 8") && params.contains("n_conv = 2") && params.contains("lr = 0.003"), "{params}");
}

#[test]
fn training_learns_and_resume_continues_without_redoing_epochs() {
    let f = Fixture::new(600, 100);
    let p = f.write("p.toml", TINY_PARAMS);
    let d = f.data();
    let args = |epochs: &'static str| vec!["train", "--params", p.to_str().unwrap(), "--data-dir", d.to_str().unwrap(), "--out", "run", "--epochs", epochs, "--seed", "5"];
    ok(f.run(&args("2")));
    let first = csv_rows(&f.path("run/metrics.csv"));
    let mut more = args("5");
    more.push("--resume");
    ok(f.run(&more));
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
    let d = f.data();
    for out in ["a", "b"] {
        ok(f.run(&["train", "--params", p.to_str().unwrap(), "--data-dir", d.to_str().unwrap(), "--out", out, "--epochs", "1", "--seed", "9", "--threads", "1"]));
    }
    let cols = |dir: &str| csv_rows(&f.path(&format!("{dir}/metrics.csv")))[0].iter().take(6).map(String::from).collect::<Vec<_>>();
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
