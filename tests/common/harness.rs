//! A test binary's `main` for tests that need something a machine may lack (root for a
//! tmpfs, a real browser): those are reported as *ignored*, with the reason printed, never as
//! passed. (libtest can only ignore tests at compile time; libtest-mimic decides at run time
//! and reports a panicking test as failed.)

use libtest_mimic::{Arguments, Trial};

/// One test: its name, why it cannot run here (`None` when it can), and its body.
pub type Case = (&'static str, Option<String>, fn());

/// Runs `cases` as the binary's tests and exits with libtest's status.
pub fn run(cases: Vec<Case>) -> ! {
    std::process::exit(outcome(cases))
}

/// Runs `cases` as the binary's tests and returns the exit status (for a binary that must
/// clean up after them).
pub fn outcome(cases: Vec<Case>) -> i32 {
    let args = Arguments::from_args();
    let trials = cases
        .into_iter()
        .map(|(name, missing, body)| {
            if let Some(why) = &missing {
                eprintln!("{name} ignored: {why}");
            }
            Trial::test(name, move || {
                body();
                Ok(())
            })
            .with_ignored_flag(missing.is_some())
        })
        .collect();
    if libtest_mimic::run(&args, trials).has_failed() { 101 } else { 0 }
}

/// Why a real-browser test cannot run here: `None` where `TUNE_CHROMIUM` names a Chromium
/// (`.ci/run` sets it); `doing` says what the browser would have done.
pub fn without_browser(doing: &str) -> Option<String> {
    std::env::var("TUNE_CHROMIUM")
        .is_err()
        .then(|| format!("TUNE_CHROMIUM is not set, so no real browser {doing} (.ci/run sets it)"))
}
