//! A study whose disk fills up stops cleanly (exit 9, the command to continue), fails no
//! trial and tears no record; with room again, the same command finishes it exactly. Needs
//! root for a small tmpfs; elsewhere its tests are reported as ignored, with the reason.

mod common;
use common::*;

fn main() {
    let probe = tempfile::tempdir().unwrap();
    let no_tmpfs = Tmpfs::mount(probe.path(), 64)
        .err()
        .map(|why| format!("cannot mount a small tmpfs to fill ({why}); these tests need root"));
    drop(probe);
    common::harness::run(vec![
        (
            "full_artifacts_under_a_separate_directory_stop_the_study_and_the_same_command_finishes_it",
            no_tmpfs.clone(),
            full_artifacts_under_a_separate_directory_stop_the_study_and_the_same_command_finishes_it,
        ),
        (
            "a_full_disk_stops_the_study_without_failing_a_trial_and_the_same_command_finishes_it",
            no_tmpfs.clone(),
            a_full_disk_stops_the_study_without_failing_a_trial_and_the_same_command_finishes_it,
        ),
        (
            "a_retrain_on_a_full_disk_stops_with_exit_9_and_the_same_command_finishes_it",
            no_tmpfs.clone(),
            a_retrain_on_a_full_disk_stops_with_exit_9_and_the_same_command_finishes_it,
        ),
    ]);
}

/// A tmpfs of `kib` KiB mounted at `dir`, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, kib: usize) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }

    fn resize(&self, kib: usize) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={kib}k")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

const SPACE: &str = "[study]\nname = \"full\"\ntrials = 6\nseed = 5\nsampler = \"random\"\npruner = \"none\"\n\n\
    [study.training]\nmax_epochs = 3\npatience = 20\nsubset = 300\n\n\
    [params]\nlr = { float = [1e-3, 1e-2], log = true }\n\"conv*_channels\" = { choice = [4, 8] }\nn_conv = 1\nconv0_pool = 2\nn_fc = 0\n";

type Trials = std::collections::BTreeMap<usize, tune::study::TrialRecord>;

/// The study a full disk stopped: no trial failed for it, and some were left to do. Returns
/// its trials as recorded.
fn stopped_without_a_failed_trial(f: &Fixture) -> Trials {
    let before = tune::study::storage::replay(&f.path("runs/full")).unwrap();
    assert!(
        before.values().all(|t| t.state != tune::study::TrialState::Failed),
        "no trial failed for the disk: {before:?}"
    );
    assert!(before.values().any(|t| t.state != tune::study::TrialState::Complete), "the disk filled before the end");
    before
}

/// After the same command ran again with room: every trial complete with each epoch once, and
/// every epoch recorded `before` kept as it was.
fn finished_keeping_what_was_recorded(f: &Fixture, before: &Trials) {
    let after = tune::study::storage::replay(&f.path("runs/full")).unwrap();
    assert_eq!(after.len(), 6);
    for t in after.values() {
        assert_eq!(t.state, tune::study::TrialState::Complete, "trial {}", t.number);
        let epochs: Vec<usize> = t.history.iter().map(|m| m.epoch).collect();
        assert_eq!(epochs, [1, 2, 3], "trial {}: each epoch once", t.number);
    }
    for (n, t) in before {
        assert_eq!(&after[n].history[..t.history.len()], &t.history[..], "trial {n}: what was recorded before is kept");
    }
}

fn a_full_disk_stops_the_study_without_failing_a_trial_and_the_same_command_finishes_it() {
    let f = Fixture::new(400, 100);
    f.write("s.toml", SPACE);
    let disk = Tmpfs::mount(&f.path("runs"), 300).unwrap();
    let args = ["run", "s.toml", "--runs-dir", "runs", "--data-dir", "data", "--concurrency", "1", "--threads", "1"];
    let full = f.run(&args);
    let said = text(&full);
    assert_eq!(full.status.code(), Some(9), "{said}");
    assert!(
        said.contains("No space left on device") && said.contains("tune run s.toml"),
        "names the cause and the command: {said}"
    );
    let journal = std::fs::read_to_string(f.path("runs/full/journal.jsonl")).unwrap();
    for line in journal.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("a torn record {line:?}: {e}"));
    }
    let before = stopped_without_a_failed_trial(&f);
    disk.resize(64 * 1024);
    ok(f.run(&args));
    finished_keeping_what_was_recorded(&f, &before);
}

/// The journal on a disk with room, the trials' artifacts (`--artifacts`) on a full one: the
/// study stops the same way (exit 9, no trial failed, the command to continue, the journal
/// whole) and the same command finishes it.
fn full_artifacts_under_a_separate_directory_stop_the_study_and_the_same_command_finishes_it() {
    let f = Fixture::new(400, 100);
    f.write("s.toml", SPACE);
    let disk = Tmpfs::mount(&f.path("artifacts"), 200).unwrap();
    let args = [
        "run",
        "s.toml",
        "--runs-dir",
        "runs",
        "--artifacts",
        "artifacts",
        "--data-dir",
        "data",
        "--concurrency",
        "1",
        "--threads",
        "1",
    ];
    let full = f.run(&args);
    let said = text(&full);
    assert_eq!(full.status.code(), Some(9), "{said}");
    assert!(said.contains("No space left on device") && said.contains("--artifacts artifacts"), "{said}");
    let before = stopped_without_a_failed_trial(&f);
    disk.resize(64 * 1024);
    ok(f.run(&args));
    finished_keeping_what_was_recorded(&f, &before);
}

fn a_retrain_on_a_full_disk_stops_with_exit_9_and_the_same_command_finishes_it() {
    let f = Fixture::new(400, 100);
    f.write("s.toml", &SPACE.replace("trials = 6", "trials = 1"));
    ok(f.run(&["run", "s.toml", "--data-dir", "data", "--concurrency", "1", "--threads", "1"]));
    // The retrain's own directory on a disk too small for its checkpoints.
    let disk = Tmpfs::mount(&f.path("runs/full/retrain"), 40).unwrap();
    let args = ["retrain", "--best", "--study", "runs/full", "--epochs", "3", "--subset", "300", "--data-dir", "data"];
    let full = f.run(&args);
    let said = text(&full);
    assert_eq!(full.status.code(), Some(9), "{said}");
    assert!(said.contains("No space left on device") && said.contains("run the same command again"), "{said}");
    disk.resize(64 * 1024);
    let out = ok(f.run(&args));
    assert!(out.contains("test split"), "{out}");
    let seed = f.path("runs/full/retrain/trial-0/seed-0");
    let epochs: Vec<usize> =
        tune::training::metrics::read_csv(&seed.join("metrics.csv")).unwrap().iter().map(|m| m.epoch).collect();
    assert_eq!(epochs, [1, 2, 3], "each epoch once, resumed where the disk stopped it");
    assert!(seed.join("test.json").is_file());
}
