//! Hostile input through the real binary: every refusal has the documented exit code, names the
//! file (or flag) and the key, and leaves the disk exactly as it was.

#[path = "../common/mod.rs"]
mod common;
mod spaces;
mod studies;
mod train_and_data;

use common::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every file under the fixture (but the decoded-data cache) with its bytes.
pub(crate) fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
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
pub(crate) fn refused(f: &Fixture, args: &[&str], code: i32, needles: &[&str]) -> String {
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

pub(crate) const SPACE_HEAD: &str = "[study]\nname = \"s\"\ntrials = 2\n";
pub(crate) const TINY_SPACE_PARAMS: &str = "[params]\nconv0_channels = 4\nconv0_pool = 2\nfc0_neurons = 8\n";

/// Runs a small study `s` (one epoch of 100 images per trial, `extra` flags added) to its end;
/// returns its space file.
pub(crate) fn small_study(f: &Fixture, extra: &[&str]) -> PathBuf {
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
    spaces::bad_spaces_and_study_flags_are_refused_before_anything_is_written();
}

#[test]
fn bad_training_settings_and_networks_are_refused_by_tune_train() {
    train_and_data::bad_training_settings_and_networks_are_refused_by_tune_train();
}

#[test]
fn zero_image_data_files_are_refused_by_name() {
    train_and_data::zero_image_data_files_are_refused_by_name();
}

#[test]
fn retrain_refuses_a_study_without_a_complete_trial_and_bad_flags() {
    studies::retrain_refuses_a_study_without_a_complete_trial_and_bad_flags();
}

#[test]
fn damaged_study_records_exit_6_and_are_left_alone() {
    studies::damaged_study_records_exit_6_and_are_left_alone();
}

#[test]
fn a_second_run_of_a_locked_study_exits_6_naming_the_holder() {
    studies::a_second_run_of_a_locked_study_exits_6_naming_the_holder();
}

#[test]
fn a_diverging_trial_fails_with_its_reason_and_the_study_reads_back() {
    studies::a_diverging_trial_fails_with_its_reason_and_the_study_reads_back();
}

#[test]
fn enqueued_dictionaries_may_leave_out_the_spaces_fixed_values() {
    spaces::enqueued_dictionaries_may_leave_out_the_spaces_fixed_values();
}

#[test]
fn mutated_spaces_are_refused_cleanly_or_pass_their_checks() {
    spaces::mutated_spaces_are_refused_cleanly_or_pass_their_checks();
}
