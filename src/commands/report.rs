//! `tune report`: exports, plots and the HTML page of each study (journal or store).

use std::path::PathBuf;

use clap::Args;

use super::StorageArgs;
use crate::error::{Result, TuneError};

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
    use crate::study::storage::{PgStorage, StorageSpec, StudyStorage};
    let mut generated = Vec::new();
    match StorageSpec::parse(args.storage.storage.as_deref(), "--storage", &args.path)? {
        StorageSpec::Journal(_) => {
            for study in crate::report::find_studies(&args.path)? {
                generated.push((study.display().to_string(), crate::report::generate(&study)?));
            }
        }
        StorageSpec::Postgres(url) => {
            let names = match &args.study {
                Some(n) => vec![n.clone()],
                None => PgStorage::list(&url)?.into_iter().map(|s| s.name).collect(),
            };
            for name in &names {
                let mut store = PgStorage::connect(&url, name)?;
                if store.settings()?.is_none() {
                    return Err(TuneError::Study(format!(
                        "{}: there is no study `{name}`; see `tune study list --storage URL`",
                        crate::study::storage::redact(&url)
                    )));
                }
                let trials = store.trials()?;
                let out = match (&args.out, names.len()) {
                    (Some(dir), 1) => dir.clone(),
                    (Some(dir), _) => dir.join(name),
                    (None, _) => args.path.join(name).join("report"),
                };
                // `tune retrain --storage` trains under <runs>/<study>/retrain on the machine that ran it.
                let retrain_dir = args.path.join(name).join("retrain");
                generated.push((
                    format!("{} (study `{name}`)", crate::study::storage::redact(&url)),
                    crate::report::generate_at(name, trials, &retrain_dir, &out)?,
                ));
            }
        }
    }
    for (what, g) in generated {
        println!("study {what}: {}", crate::report::counts_line(&g.trials));
        println!("{}", crate::study::leaderboard::render(&g.trials, args.top));
        for r in &g.retrains {
            println!("retrain {}", r.line());
        }
        println!("report: {} ({} files)\n", g.dir.join("index.html").display(), g.files.len());
    }
    Ok(())
}
