//! Helpers for tests that run the real `tune` binary on tiny generated data.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
        let mut c = Command::new(env!("CARGO_BIN_EXE_tune"));
        c.args(args).current_dir(self.dir.path()).env("TUNE_CACHE_DIR", self.path("cache")).env("TUNE_LOG", "warn");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
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
