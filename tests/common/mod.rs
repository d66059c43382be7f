//! Helpers for tests that run the real `tune` binary on tiny generated data.
#![allow(dead_code)]

pub mod browser;
pub mod dashboard;
pub mod harness;
pub mod netns;
pub mod workers;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tune::model::{Params, Value};
use tune::study::TrialState;
use tune::study::{events::Event, journal::Journal};
use tune::training::EpochMetrics;

pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// A temp dir with `data/` holding a gzip IDX data set of `n_train` + `n_test` images.
    pub fn new(n_train: usize, n_test: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        tune::testdata::write_idx_dir(&dir.path().join("data"), n_train, n_test, 3);
        Fixture { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn data(&self) -> PathBuf {
        self.path("data")
    }

    /// A `tune` command running in the fixture dir with its own cache and quiet logs.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_via(&[], args)
    }

    /// As [`Fixture::cmd`], run through `wrapper` (e.g. `ip netns exec NS`).
    pub fn cmd_via(&self, wrapper: &[&str], args: &[&str]) -> Command {
        let tune = env!("CARGO_BIN_EXE_tune");
        let mut c = match wrapper.split_first() {
            None => Command::new(tune),
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(tune);
                c
            }
        };
        c.args(args).current_dir(self.dir.path()).env("TUNE_CACHE_DIR", self.path("cache")).env("TUNE_LOG", "warn");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// `tune train --params PARAMS --data-dir <the fixture's data> --out OUT`, then `extra`.
    pub fn train(&self, params: &Path, out: &str, extra: &[&str]) -> Output {
        let data = self.data();
        let head = ["train", "--params", params.to_str().unwrap(), "--data-dir", data.to_str().unwrap(), "--out", out];
        self.run(&[&head[..], extra].concat())
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

pub fn ok(o: Output) -> String {
    assert!(o.status.success(), "command failed ({}):\n{}", o.status, text(&o));
    text(&o)
}

/// A small network that trains in well under a second per epoch on a few hundred images.
pub const TINY_PARAMS: &str = "conv0_channels = 6\nconv0_pool = 2\nconv1_channels = 8\nconv1_pool = 2\nfc0_neurons = 24\ndrop_rate = 0.1\nlr = 0.003\n";

pub fn csv_rows(path: &Path) -> Vec<csv::StringRecord> {
    csv::Reader::from_path(path).unwrap().records().map(|r| r.unwrap()).collect()
}

pub fn csv_headers(path: &Path) -> Vec<String> {
    csv::Reader::from_path(path).unwrap().headers().unwrap().iter().map(String::from).collect()
}

/// A study directory with complete, pruned, failed and infeasible trials, written through the
/// journal API (no training needed).
pub fn fixture_study(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let j = Journal::open(dir);
    let acts = ["relu", "elu", "gelu"];
    for n in 0..9usize {
        let params: Params = [
            ("lr".to_string(), Value::Float(1e-4 * (n as f64 + 1.0))),
            ("conv0_channels".to_string(), Value::Int(8 * (1 + n as i64 % 3))),
            ("conv0_activation".to_string(), Value::Str(acts[n % 3].into())),
            ("conv0_pool".to_string(), Value::Int(1 + (n as i64 % 2) * 2)),
        ]
        .into();
        let infeasible = (n == 7).then(|| "conv0_pool: a 3×3 max-pool does not fit the 2×2 feature map".to_string());
        j.append(&Event::Created {
            number: n,
            params,
            seed: n as u64,
            infeasible: infeasible.clone(),
            retry_of: None,
            fork: None,
        })
        .unwrap();
        if infeasible.is_some() {
            continue;
        }
        let epochs = if n % 4 == 1 { 2 } else { 5 };
        for e in 1..=epochs {
            j.append(&fixture_epoch(n, e)).unwrap();
        }
        let (state, reason) = match n {
            1 | 5 => (TrialState::Pruned, Some("ASHA rung 1".to_string())),
            3 => (TrialState::Failed, Some("exit status: 101".to_string())),
            _ => (TrialState::Complete, None),
        };
        if n != 8 {
            j.append(&Event::Finished { number: n, state, reason, secs: 5.0 }).unwrap();
        }
    }
}

/// Epoch `e` of fixture trial `n` (the fixture's own figures).
pub fn fixture_epoch(n: usize, e: usize) -> Event {
    let val_acc = 0.6 + 0.03 * n as f64 + 0.02 * e as f64;
    let metrics = EpochMetrics {
        epoch: e,
        train_loss: 1.0 / e as f64,
        train_acc: val_acc + 0.02,
        val_loss: 1.1 / e as f64,
        val_acc,
        lr: 1e-3,
        secs: 1.0,
        latency: None,
    };
    Event::Epoch { number: n, metrics }
}
