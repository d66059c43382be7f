//! The study loop with trials scripted in-process.

use super::*;
use crate::study::instant::InstantLauncher;
use crate::training::EpochMetrics;

/// Trials scripted in-process: each reports `epochs` epochs whose val_acc grows with its
/// learning rate, then ends as `exit(number)` says.
struct Scripted {
    epochs: usize,
    exit: fn(usize) -> Exit,
}

impl Launch for Scripted {
    fn spawn(
        &self,
        number: usize,
        dir: &Path,
        tx: mpsc::UnboundedSender<Message>,
    ) -> std::io::Result<oneshot::Sender<()>> {
        let params = crate::model::params::read_params(&dir.join("params.toml")).expect("the loop wrote params.toml");
        let lr = params.get("lr").and_then(|v| v.as_f64()).unwrap_or(1e-3);
        for epoch in 1..=self.epochs {
            let val_acc = (0.5 + 50.0 * lr + 0.01 * epoch as f64).min(0.99);
            let m = EpochMetrics {
                epoch,
                train_loss: 1.0,
                train_acc: val_acc,
                val_loss: 1.0,
                val_acc,
                lr,
                secs: 0.01,
                latency: None,
            };
            let _ = tx.send(Message::Epoch(number, m));
        }
        let _ = tx.send(Message::Exit { number, outcome: (self.exit)(number) });
        Ok(oneshot::channel().0)
    }
}

/// How long a paced trial's epoch takes ([`InstantLauncher`]: an epoch every `EPOCH` until
/// done or killed, as real trials do).
const EPOCH: std::time::Duration = std::time::Duration::from_millis(100);

#[test]
fn at_the_deadline_no_trial_starts_and_running_ones_stop_after_an_epoch_resumable() {
    let (_dir, opts) = setup(6);
    // The deadline falls inside the first trials' second epoch (their first, if starting
    // them is slow), never at their end: with 40 ms epochs and the deadline at 150 ms, a
    // loaded machine once had the first two finish their last epoch at the deadline, and
    // none was left running.
    let timed = RunOptions { timeout: Some(EPOCH * 3 / 2), ..opts.clone() };
    let s = run_with(timed, Some(Box::new(InstantLauncher { epoch: EPOCH }))).unwrap();
    assert!(s.timed_out && !s.interrupted);
    let before = load_trials(&s.dir).unwrap();
    assert!(before.len() < 6, "no new trial after the deadline: {} created", before.len());
    let stopped: Vec<&TrialRecord> = before.values().filter(|t| t.state == TrialState::Running).collect();
    assert!(!stopped.is_empty(), "the trials running at the deadline stay running");
    assert!(stopped.iter().all(|t| !t.history.is_empty()), "each finished the epoch it was in");
    // The same study without a budget finishes them and the rest.
    let s = run_with(opts, Some(Box::new(Scripted { epochs: 3, exit: |_| Exit::Success }))).unwrap();
    let after = load_trials(&s.dir).unwrap();
    assert_eq!(after.len(), 6);
    assert!(after.values().all(|t| t.state == TrialState::Complete && t.history.len() == 3), "{after:?}");
    for t in &stopped {
        assert_eq!(after[&t.number].params, t.params, "trial {} resumed, not resampled", t.number);
    }
}

#[test]
fn enqueued_configurations_do_not_push_grid_points_out() {
    let (_dir, opts) = setup(5);
    std::fs::write(
        &opts.space_file,
        "[study]\nname = \"g\"\ntrials = 5\nsampler = \"grid\"\nenqueue = [ { conv0_channels = 8 } ]\n[params]\nconv0_channels = { choice = [4, 8] }\n",
    )
    .unwrap();
    let s = run_with(opts, Some(Box::new(Scripted { epochs: 1, exit: |_| Exit::Success }))).unwrap();
    let trials = load_trials(&s.dir).unwrap();
    let channels: Vec<String> = trials.values().map(|t| t.params["conv0_channels"].to_string()).collect();
    assert_eq!(channels.len(), 3, "the enqueued network, then both grid points: {channels:?}");
    assert_eq!(channels[0], "8");
    let mut grid = channels[1..].to_vec();
    grid.sort();
    assert_eq!(grid, ["4", "8"], "every grid point is visited");
}

fn setup(trials: usize) -> (tempfile::TempDir, RunOptions) {
    let dir = tempfile::tempdir().unwrap();
    crate::testdata::write_idx_dir(&dir.path().join("data"), 200, 40, 1);
    let space = dir.path().join("s.toml");
    std::fs::write(
        &space,
        format!("[study]\nname = \"s\"\ntrials = {trials}\nconcurrency = 2\npruner = \"none\"\nstartup_trials = 2\nhistory_lag = 1\n[study.training]\nmax_epochs = 3\n[params]\nlr = {{ float = [1e-4, 5e-3], log = true }}\nconv0_channels = 4\n"),
    )
    .unwrap();
    let opts = RunOptions {
        space_file: space,
        runs_dir: dir.path().join("runs"),
        data_dir: Some(dir.path().join("data")),
        split_seed: 27,
        ..RunOptions::default()
    };
    (dir, opts)
}

#[test]
fn scripted_trials_fill_the_budget_and_failures_are_recorded() {
    let (_dir, opts) = setup(5);
    let s = run_with(
        opts.clone(),
        Some(Box::new(Scripted {
            epochs: 3,
            exit: |n| if n == 1 { Exit::Failed("scripted failure".into()) } else { Exit::Success },
        })),
    )
    .unwrap();
    assert_eq!(s.counts.get(&TrialState::Complete), Some(&4));
    assert_eq!(s.counts.get(&TrialState::Failed), Some(&1), "a failing trial does not stop the study");
    let trials = load_trials(&s.dir).unwrap();
    assert_eq!(trials.len(), 5, "the budget is exact");
    assert_eq!(trials[&1].reason.as_deref(), Some("scripted failure"));
    assert!(trials.values().all(|t| t.history.len() == 3), "every epoch journaled once");
}

#[test]
fn an_interrupted_trial_stays_running_and_resumes_without_being_resampled() {
    let (_dir, opts) = setup(4);
    let s = run_with(
        opts.clone(),
        Some(Box::new(Scripted { epochs: 1, exit: |n| if n == 2 { Exit::Interrupted } else { Exit::Success } })),
    )
    .unwrap();
    assert!(s.interrupted);
    let before = load_trials(&s.dir).unwrap();
    assert_eq!(before[&2].state, TrialState::Running, "an interrupted trial is not a failure");
    let s = run_with(opts, Some(Box::new(Scripted { epochs: 1, exit: |_| Exit::Success }))).unwrap();
    let after = load_trials(&s.dir).unwrap();
    assert_eq!(after.len(), 4);
    assert!(after.values().all(|t| t.state == TrialState::Complete), "{after:?}");
    assert_eq!(after[&2].params, before[&2].params, "trial 2 resumed with its own configuration");
    assert_eq!(after[&2].history.len(), 1, "its epoch was not journaled twice");
}
