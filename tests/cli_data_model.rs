//! `tune data …` and `tune model summary` through the real binary.

mod common;
use common::*;

#[test]
fn model_summary_prints_the_seed_counts() {
    let f = Fixture::new(0, 0);
    let out = ok(f.run(&["model", "summary"]));
    assert!(out.contains("Total params: 3,467,402"), "{out}");
    assert!(out.contains("Trainable params: 3,452,874"), "{out}");
    assert!(out.contains("Non-trainable params: 14,528"), "{out}");
}

#[test]
fn collapsing_architecture_is_rejected_with_the_layer_and_sizes() {
    let f = Fixture::new(0, 0);
    let p = f.write(
        "bad.toml",
        "conv0_channels = 8\nconv0_stride = 3\nconv0_pool = 3\nconv1_channels = 8\nconv1_filter = 5\nconv1_pad = 0\n",
    );
    let o = f.run(&["model", "summary", "--params", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let msg = text(&o);
    assert!(msg.contains("conv1") && msg.contains("5×5 filter") && msg.contains("3×3 input"), "{msg}");
}

#[test]
fn unknown_params_key_names_file_and_key() {
    let f = Fixture::new(0, 0);
    let p = f.write("typo.toml", "conv0_chanels = 8\n");
    let o = f.run(&["model", "summary", "--params", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let msg = text(&o);
    assert!(msg.contains("typo.toml") && msg.contains("conv0_chanels") && msg.contains("fix"), "{msg}");
}

#[test]
fn data_summary_counts_each_split_per_class() {
    let f = Fixture::new(600, 100);
    let out = ok(f.run(&["data", "summary", "--data-dir", f.data().to_str().unwrap()]));
    // 60 per class: a sixth (10) per class goes to the balanced test split.
    let line = out.lines().find(|l| l.starts_with("T-shirt/top")).unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[1..], ["50", "10", "10"], "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("total")
                && l.split_whitespace().collect::<Vec<_>>() == ["total", "500", "100", "100"]),
        "{out}"
    );
}

#[test]
fn data_samples_and_distribution_are_pngs() {
    let f = Fixture::new(300, 50);
    let d = f.data();
    ok(f.run(&[
        "data",
        "samples",
        "--data-dir",
        d.to_str().unwrap(),
        "--out",
        "grid.png",
        "--distribution",
        "dist.png",
    ]));
    for name in ["grid.png", "dist.png"] {
        let bytes = std::fs::read(f.path(name)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{name} is a PNG");
        assert!(bytes.len() > 5_000, "{name} has content ({} bytes)", bytes.len());
    }
}

#[test]
fn missing_data_says_how_to_get_it() {
    let f = Fixture::new(0, 0);
    let o = f.run(&["data", "summary", "--data-dir", "nowhere"]);
    assert_eq!(o.status.code(), Some(3));
    let msg = text(&o);
    assert!(
        msg.contains("nowhere") && msg.contains("tune data fetch") && msg.contains("dataset-fashion-mnist"),
        "{msg}"
    );
}

#[test]
fn corrupt_data_file_is_named() {
    let f = Fixture::new(100, 20);
    let victim = f.data().join("train-labels-idx1-ubyte.gz");
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let o = f.run(&["data", "summary", "--data-dir", f.data().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(text(&o).contains("train-labels-idx1-ubyte.gz"), "{}", text(&o));
}
