//! Workers under Slurm for real: a single-node Slurm (`.ci/slurm`: munge, slurmctld and slurmd
//! on this machine) runs `examples/slurm-workers.sbatch`, the file users submit, as a job array
//! against the throwaway PostgreSQL; the study must complete with every trial exactly once.
//! Reported as ignored, with the reason, where Slurm cannot start (not root, no slurm-wlm or
//! munge, no server).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::workers::*;
use common::*;
use tune::study::TrialState;

/// The started Slurm's directory (its `slurm.conf` inside), stopped when the binary exits.
static SLURM: OnceLock<PathBuf> = OnceLock::new();

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Starts Slurm in a directory of its own, or says why it cannot.
fn start_slurm() -> Result<PathBuf, String> {
    if url().is_none() {
        return Err("TUNE_TEST_PG_URL is not set: no PostgreSQL server for the workers".into());
    }
    let dir = std::env::temp_dir().join(format!("tune-slurm-{}", std::process::id()));
    let out = Command::new(repo().join(".ci/slurm"))
        .args(["start", dir.to_str().unwrap()])
        .output()
        .map_err(|e| format!(".ci/slurm: {e}"))?;
    if !out.status.success() {
        return Err(format!("Slurm cannot start here: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(dir)
}

fn main() {
    let missing = match start_slurm() {
        Ok(dir) => {
            SLURM.set(dir).unwrap();
            None
        }
        Err(why) => Some(why),
    };
    let code = common::harness::outcome(vec![(
        "the_example_job_array_completes_the_study_with_every_trial_once",
        missing,
        job_array,
    )]);
    if let Some(dir) = SLURM.get() {
        let _ = Command::new(repo().join(".ci/slurm")).args(["stop", dir.to_str().unwrap()]).status();
        let _ = std::fs::remove_dir_all(dir);
    }
    std::process::exit(code);
}

fn job_array() {
    let url = url().unwrap();
    let conf = SLURM.get().unwrap().join("slurm.conf");
    let f = Fixture::new(4000, 60);
    let name = unique("slurm");
    let s = f.write("slurm.toml", &random_space(&name, 6, "heartbeat = \"1s\"\ngrace = \"10s\"", 3, 2000));
    std::fs::create_dir_all(f.path("logs")).unwrap();
    let out = Command::new("sbatch")
        .args(["--wait", "--array=0-2", "--cpus-per-task=1", "--mem=1G", "--time=10:00"])
        .arg(format!("--chdir={}", f.dir.path().display()))
        .arg(repo().join("examples/slurm-workers.sbatch"))
        .env("SLURM_CONF", &conf)
        .env("TUNE_STORAGE", &url)
        .env("TUNE_BIN", env!("CARGO_BIN_EXE_tune"))
        .env("SPACE", &s)
        .env("DATA_DIR", f.path("data"))
        .env("ARTIFACTS", f.path("artifacts"))
        .env("TIMEOUT", "10m")
        .env("TUNE_CACHE_DIR", f.path("cache"))
        .env("TUNE_LOG", "info")
        .output()
        .unwrap();
    let logs: Vec<(String, String)> = std::fs::read_dir(f.path("logs"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap_or_default())
        })
        .collect();
    let shown = logs.iter().map(|(n, l)| format!("--- {n}\n{l}")).collect::<Vec<_>>().join("\n");
    assert!(out.status.success(), "sbatch --wait: {}\n{shown}", text(&out));
    assert_eq!(logs.len(), 3, "one log per array task:\n{shown}");
    let trials = store_trials(&url, &name);
    assert!(
        trials.len() == 6 && trials.values().all(|t| t.state == TrialState::Complete && t.history.len() == 3),
        "every trial once, complete: {trials:?}\n{shown}"
    );
    every_epoch_once_and_the_budget_exact(&trials, 6).unwrap_or_else(|e| panic!("{e:?}\n{shown}"));
    let working = logs.iter().filter(|(_, l)| l.contains(" complete: best val_acc")).count();
    assert!(working >= 2, "the trials spread over the array's tasks ({working} of 3 finished one):\n{shown}");
    eprintln!("{shown}");
}
