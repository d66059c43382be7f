//! `tune study list|delete`: the studies in a store or a runs directory.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::StorageArgs;
use crate::error::{Result, TuneError};

/// `tune study …`: manage the studies in a store.
#[derive(Subcommand, Debug)]
pub enum StudyCommand {
    /// List the studies in a store (or under a runs directory).
    List {
        #[command(flatten)]
        storage: StorageArgs,
        /// Runs directory to list when no --storage is given.
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
    },
    /// Delete a study and all its records from a store (trial directories are left alone).
    Delete {
        /// The study's name.
        name: String,
        #[command(flatten)]
        storage: StorageArgs,
        /// Confirm the deletion (it cannot be undone).
        #[arg(long)]
        yes: bool,
    },
}

pub fn run(cmd: StudyCommand) -> Result<()> {
    use crate::study::storage::{PgStorage, StorageSpec};
    match cmd {
        StudyCommand::List { storage, runs_dir } => {
            match StorageSpec::parse(storage.storage.as_deref(), "--storage", &runs_dir)? {
                StorageSpec::Postgres(url) => {
                    let studies = PgStorage::list(&url)?;
                    println!("{:<32} {:<17} {:>7} {:>8}", "study", "created", "trials", "running");
                    for s in &studies {
                        println!("{:<32} {:<17} {:>7} {:>8}", s.name, s.created, s.trials, s.running);
                    }
                    println!("{} studies in {}", studies.len(), crate::study::storage::redact(&url));
                    Ok(())
                }
                StorageSpec::Journal(runs) => {
                    for dir in crate::report::find_studies(&runs)? {
                        let trials = crate::study::run::load_trials(&dir)?;
                        println!(
                            "{:<32} {}",
                            dir.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned()),
                            crate::report::counts_line(&trials)
                        );
                    }
                    Ok(())
                }
            }
        }
        StudyCommand::Delete { name, storage, yes } => {
            let Some(url) = storage.storage else {
                return Err(TuneError::Config {
                    file: "<command line>".into(),
                    key: "--storage".into(),
                    problem: "deleting works on a store".into(),
                    fix: format!("pass --storage URL; a journal study is a directory: remove runs/{name} yourself"),
                });
            };
            let StorageSpec::Postgres(url) = StorageSpec::parse(Some(&url), "--storage", Path::new("runs"))? else {
                unreachable!("a URL")
            };
            if !yes {
                return Err(TuneError::Config {
                    file: "<command line>".into(),
                    key: "--yes".into(),
                    problem: format!("deleting study `{name}` and all its records cannot be undone"),
                    fix: "add --yes to confirm".into(),
                });
            }
            if PgStorage::delete(&url, &name)? {
                println!("deleted study `{name}` from {}", crate::study::storage::redact(&url));
                Ok(())
            } else {
                Err(TuneError::Study(format!(
                    "{}: there is no study `{name}`; see `tune study list --storage URL`",
                    crate::study::storage::redact(&url)
                )))
            }
        }
    }
}
