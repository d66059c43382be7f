//! Entry point: parse, run, map errors to exit codes. The work lives in the library.

#![forbid(unsafe_code)]

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() {
    tune::memory::keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(tune::logging::directives(std::env::var("TUNE_LOG").ok().as_deref())))
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_writer(std::io::stderr)
        .init();
    let cli = tune::commands::Cli::parse();
    if let Err(err) = tune::commands::execute(cli) {
        eprintln!("error: {err}");
        if err.is_disk_full() && !matches!(err, tune::TuneError::NoSpace { .. }) {
            eprintln!(
                "  fix: free space on that disk, then run the same command again: it continues from what it saved"
            );
        }
        std::process::exit(err.exit_code());
    }
}
