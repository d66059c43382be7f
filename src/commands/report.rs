//! `tune report`: exports, plots and the HTML page of each study (journal or store).

use std::path::PathBuf;

use clap::Args;

use super::StorageArgs;
use crate::error::Result;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A runs directory (every study in it) or one study directory.
    #[arg(default_value = "runs")]
    pub path: PathBuf,
    /// Rows of the terminal leaderboard.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// With --storage: the study to report (default: every study in the store).
    #[arg(long, requires = "storage")]
    pub study: Option<String>,
    /// With --storage: where the report's files go (default <runs>/<study>/report; with several studies, DIR/<study>).
    #[arg(long, requires = "storage")]
    pub out: Option<PathBuf>,
}

pub fn run(args: &ReportArgs) -> Result<()> {
    use crate::study::storage::StorageSpec;
    let mut generated = Vec::new();
    let mut catalog = StorageSpec::parse(args.storage.url().as_deref(), "--storage", &args.path)?.catalog(&args.path);
    let entries = match &args.study {
        Some(name) => vec![catalog.open(name)?.0],
        None => catalog.list()?,
    };
    for entry in &entries {
        let mut storage = catalog.storage(entry)?;
        let trials = storage.trials()?;
        let settings = storage.settings()?;
        let log_params = settings.as_ref().map(|r| r.space.log_params()).unwrap_or_default();
        let objectives = settings.map(|r| r.space.study.objectives).unwrap_or_default();
        let out = match (&args.out, entries.len()) {
            (Some(dir), 1) => dir.clone(),
            (Some(dir), _) => dir.join(&entry.name),
            (None, _) => entry.dir.join("report"),
        };
        // Retrains live under the study's directory on the machine that ran them.
        let mut g = crate::report::generate_at(&entry.name, trials, &objectives, &entry.dir.join("retrain"), &out)?;
        // The dashboard's page with this snapshot inside: interactive, offline, one file.
        g.files.push(crate::dashboard::write_offline(
            &g.dir,
            &entry.name,
            &g.trials,
            (&log_params, &objectives),
            &g.retrains,
        )?);
        generated.push((format!("{} (study `{}`)", catalog.location(), entry.name), g, objectives));
    }
    for (what, g, objectives) in generated {
        println!("study {what}: {}", crate::report::counts_line(&g.trials));
        println!("{}", crate::study::leaderboard::render_with(&g.trials, args.top, &objectives));
        for r in &g.retrains {
            println!("retrain {}", r.line());
        }
        println!("report: {} ({} files)", g.dir.join("index.html").display(), g.files.len());
        println!("interactive: {} (works offline)\n", g.dir.join("dashboard.html").display());
    }
    Ok(())
}
