//! `tune study list|delete`: the studies in a store or a runs directory.

use std::path::PathBuf;

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
    /// Delete a study and all its records: from a store (trial directories on the machines are left alone), or its directory under the runs directory (refused while a `tune run` holds it).
    Delete {
        /// The study's name.
        name: String,
        /// Runs directory to delete from when no --storage is given.
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
        #[command(flatten)]
        storage: StorageArgs,
        /// Confirm the deletion (it cannot be undone).
        #[arg(long)]
        yes: bool,
    },
}

pub fn run(cmd: StudyCommand) -> Result<()> {
    use crate::study::storage::StorageSpec;
    match cmd {
        StudyCommand::List { storage, runs_dir } => {
            let mut catalog = StorageSpec::parse(storage.url().as_deref(), "--storage", &runs_dir)?.catalog(&runs_dir);
            let studies = catalog.list()?;
            println!("{:<32} {:<17} trials", "study", "created");
            for entry in &studies {
                let trials = catalog.storage(entry)?.trials()?;
                let created = entry.created.as_deref().unwrap_or("-");
                println!("{:<32} {created:<17} {}", entry.name, crate::report::counts_line(&trials));
            }
            println!("{} studies in {}", studies.len(), catalog.location());
            Ok(())
        }
        StudyCommand::Delete { name, storage, runs_dir, yes } => {
            let mut catalog = StorageSpec::parse(storage.url().as_deref(), "--storage", &runs_dir)?.catalog(&runs_dir);
            if !yes {
                return Err(TuneError::Config {
                    file: "<command line>".into(),
                    key: "--yes".into(),
                    problem: format!("deleting study `{name}` and all its records cannot be undone"),
                    fix: "add --yes to confirm".into(),
                });
            }
            if catalog.delete(&name)? {
                println!("deleted study `{name}` from {}", catalog.location());
                Ok(())
            } else {
                Err(TuneError::Study(format!(
                    "{}: there is no study `{name}`; see `tune study list`",
                    catalog.location()
                )))
            }
        }
    }
}
