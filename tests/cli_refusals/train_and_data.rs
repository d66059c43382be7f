//! `tune train` settings and networks, and damaged data files, refused by name.

use crate::common::*;
use crate::refused;

pub(crate) fn bad_training_settings_and_networks_are_refused_by_tune_train() {
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

pub(crate) fn zero_image_data_files_are_refused_by_name() {
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
