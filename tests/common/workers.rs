//! Workers of the real binary sharing a study in the PostgreSQL store, and the checks over
//! the store that the store's tests and the fault harness share.

use std::process::{Child, Stdio};
use std::time::Duration;

use libtest_mimic::Failed;
use tune::study::storage::{PgStorage, StudyStorage};

use super::{Fixture, text};

/// The test server's URL (`.ci/postgres` prints it), if any.
pub fn url() -> Option<String> {
    std::env::var("TUNE_TEST_PG_URL").ok().filter(|u| !u.is_empty())
}

/// A study name no earlier run of these tests used (the database outlives them).
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{name}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// A test's assertion that says `what` when it fails.
pub fn check(cond: bool, what: String) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(what.into()) }
}

/// A tiny study of `trials` one-block networks for `epochs` epochs, `extra` lines in `[study]`.
pub fn space(name: &str, trials: usize, extra: &str, epochs: usize) -> String {
    format!(
        "[study]\nname = \"{name}\"\ntrials = {trials}\nseed = 5\nsampler = \"tpe\"\nstartup_trials = 3\nhistory_lag = 2\npruner = \"none\"\n{extra}\n\
         [study.training]\nmax_epochs = {epochs}\npatience = 20\nsubset = 300\n\n\
         [params]\nlr = {{ float = [1e-3, 1e-2], log = true }}\n\"conv*_channels\" = {{ choice = [4, 8] }}\nn_conv = 1\nconv0_pool = 2\nn_fc = 0\n"
    )
}

/// As [`space`], drawn at random (a worker's draws then do not depend on which trials
/// finished first), each trial on `subset` images.
pub fn random_space(name: &str, trials: usize, extra: &str, epochs: usize, subset: usize) -> String {
    space(name, trials, extra, epochs)
        .replace("sampler = \"tpe\"\n", "sampler = \"random\"\n")
        .replace("subset = 300", &format!("subset = {subset}"))
}

/// A worker process, killed if a test gives up on it early.
pub struct Worker(pub Option<Child>);

impl Worker {
    pub fn kill(&mut self) -> std::io::Result<()> {
        let child = self.0.as_mut().expect("running");
        child.kill()?;
        child.wait().map(|_| ())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `tune run SPACE --storage URL` as a worker, with `extra` arguments.
pub fn worker(f: &Fixture, space: &std::path::Path, url: &str, extra: &[&str]) -> Worker {
    let mut args = vec!["run", space.to_str().unwrap(), "--storage", url, "--concurrency", "1", "--data-dir", "data"];
    args.extend_from_slice(extra);
    Worker(Some(f.cmd(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()))
}

/// Every trial of study `name` in the store.
pub fn store_trials(url: &str, name: &str) -> std::collections::BTreeMap<usize, tune::study::TrialRecord> {
    PgStorage::connect(url, name).unwrap().trials().unwrap()
}

/// Waits for `worker` and returns its output, failing if it failed.
pub fn finish(mut worker: Worker, who: &str) -> Result<String, Failed> {
    let out = worker.0.take().expect("running").wait_with_output()?;
    check(out.status.success(), format!("{who} failed ({}):\n{}", out.status, text(&out)))?;
    Ok(text(&out))
}

/// `pid` and its descendants (the trial processes), deepest first for SIGSTOP, as a VM pause
/// or a long stall freezes them all.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let mut tree: Vec<u32> =
        children.split_whitespace().filter_map(|c| c.parse().ok()).flat_map(process_tree).collect();
    tree.push(pid);
    tree
}

/// `kill -SIG` to `pids`.
pub fn signal(pids: &[u32], sig: &str) -> Result<(), Failed> {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let status = std::process::Command::new("kill").arg(format!("-{sig}")).args(&pids).status()?;
    check(status.success(), format!("kill -{sig} {pids:?}"))
}

/// The store as seen from inside `ns`: a relay on the namespace's host end to the server,
/// holding each chunk `delay` each way.
pub fn store_via(ns: &super::netns::Netns, url: &str, delay: Duration) -> Result<String, Failed> {
    let port: u16 = url.rsplit_once(':').unwrap().1.split('/').next().unwrap().parse()?;
    ns.set_delay(delay);
    let relay = ns.relay(std::net::SocketAddr::from(([127, 0, 0, 1], port)))?;
    Ok(format!("postgresql://postgres@{}:{relay}/postgres", ns.host_ip))
}

/// Every trial finished, its epochs 1, 2, … each once, and `budget` trials in the budget
/// (re-runs of lost ones outside it).
pub fn every_epoch_once_and_the_budget_exact(
    trials: &std::collections::BTreeMap<usize, tune::study::TrialRecord>,
    budget: usize,
) -> Result<(), Failed> {
    for t in trials.values() {
        let epochs: Vec<usize> = t.history.iter().map(|m| m.epoch).collect();
        check(epochs == (1..=epochs.len()).collect::<Vec<_>>(), format!("trial {}: epochs {epochs:?}", t.number))?;
        check(t.state.is_finished(), format!("trial {} is not finished: {t:?}", t.number))?;
    }
    check(
        trials.values().filter(|t| t.counts_toward_budget()).count() == budget,
        format!("the study completes its budget of {budget}: {trials:?}"),
    )
}
