//! `tune run` through the real binary: ranking, parallel slots, failures, kill -9 and resume.

#[path = "../common/mod.rs"]
mod common;
mod objectives;
mod pbt;
mod runs;

use common::*;

pub(crate) fn space(name: &str, trials: usize, extra: &str) -> String {
    format!(
        "[study]\nname = \"{name}\"\ntrials = {trials}\nseed = 3\nstartup_trials = 3\nhistory_lag = 2\n{extra}\n\
         [study.training]\nmax_epochs = 3\npatience = 2\nlr_patience = 1\nsubset = 300\n\n\
         [params]\nlr = {{ float = [1e-3, 1e-2], log = true }}\nn_conv = {{ int = [1, 2] }}\n\"conv*_channels\" = {{ choice = [4, 8] }}\n\
         \"conv*_pool\" = 2\nn_fc = {{ int = [0, 1] }}\nfc0_neurons = 16\ndrop_rate = {{ float = [0.0, 0.3] }}\n"
    )
}

pub(crate) fn journal_events(f: &Fixture, study: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(f.path(&format!("runs/{study}/journal.jsonl")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn six_trials_two_slots_end_with_a_ranked_leaderboard() {
    runs::six_trials_two_slots_end_with_a_ranked_leaderboard();
}

#[test]
fn same_seed_same_configurations_whatever_the_concurrency() {
    runs::same_seed_same_configurations_whatever_the_concurrency();
}

#[test]
fn a_failing_trial_does_not_stop_the_study() {
    runs::a_failing_trial_does_not_stop_the_study();
}

#[test]
fn killed_study_resumes_without_redoing_finished_trials() {
    runs::killed_study_resumes_without_redoing_finished_trials();
}

#[test]
fn seed_sagemaker_space_launches_no_impossible_network() {
    runs::seed_sagemaker_space_launches_no_impossible_network();
}

#[test]
fn bad_space_is_one_clear_error() {
    runs::bad_space_is_one_clear_error();
}

#[test]
fn grid_study_stops_when_the_grid_is_exhausted() {
    runs::grid_study_stops_when_the_grid_is_exhausted();
}

#[test]
fn a_pbt_fork_continues_its_parents_curve_from_its_checkpoint() {
    pbt::a_pbt_fork_continues_its_parents_curve_from_its_checkpoint();
}

#[test]
fn study_list_and_delete_work_on_a_runs_directory() {
    runs::study_list_and_delete_work_on_a_runs_directory();
}

#[test]
fn a_two_objective_nsga2_study_ranks_its_leaderboard_by_front() {
    objectives::a_two_objective_nsga2_study_ranks_its_leaderboard_by_front();
}

#[test]
fn a_latency_objective_is_measured_per_trial_ranked_by_front_and_caps_the_retrain() {
    objectives::a_latency_objective_is_measured_per_trial_ranked_by_front_and_caps_the_retrain();
}

#[test]
fn a_two_objective_tpe_study_runs_and_ranks_by_front() {
    objectives::a_two_objective_tpe_study_runs_and_ranks_by_front();
}

#[test]
fn trials_placed_on_devices_run_as_many_at_once_as_the_devices_hold() {
    runs::trials_placed_on_devices_run_as_many_at_once_as_the_devices_hold();
}
