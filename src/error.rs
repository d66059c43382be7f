//! The one error type of the library and its mapping to exit codes.
//!
//! Every variant says what went wrong, where (file, key, trial) and how to fix it,
//! so the binary can print the message as is.

use std::path::{Path, PathBuf};

/// Why an architecture cannot be built (shape inference's verdict, before any tensor
/// exists). Kept here, below the model, so that the model's files can return it and
/// [`TuneError`] can wrap it without the two importing each other.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{layer}: {message}")]
pub struct ShapeError {
    /// The layer where it fails, e.g. `conv2_pool`.
    pub layer: String,
    pub message: String,
}

/// Errors from every part of tune.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {problem}\n  fix: {fix}")]
    CorruptData { path: PathBuf, problem: String, fix: String },
    #[error("Fashion-MNIST not found. Looked in:\n{}\n  fix: run `tune data fetch` (copies from Debian's package `dataset-fashion-mnist` — `apt-get install dataset-fashion-mnist` — or downloads the official files), or pass --data-dir DIR holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (or fashion-mnist_train.csv / fashion-mnist_test.csv)", list_paths(.tried))]
    DataMissing {
        /// Each directory looked in, with what it lacks.
        tried: Vec<String>,
    },
    #[error("{file}: key `{key}`: {problem}\n  fix: {fix}")]
    Config { file: PathBuf, key: String, problem: String, fix: String },
    #[error("{file}: {message}")]
    ConfigSyntax { file: PathBuf, message: String },
    #[error("infeasible architecture: {0}")]
    Infeasible(#[from] ShapeError),
    /// A search space (or an enqueued configuration) whose networks cannot be built.
    #[error("{file}: key `{key}`: {problem}\n  fix: {fix}")]
    InfeasibleSpace { file: PathBuf, key: String, problem: String, fix: String },
    /// A study directory's records (journal, settings) cannot be read back.
    #[error("{path}: {problem}\n  fix: {fix}")]
    CorruptStudy { path: PathBuf, problem: String, fix: String },
    /// A run whose loss or accuracy stopped being a finite number.
    #[error(
        "diverged at epoch {epoch}: {what} is {value}; its last finite epoch is kept\n  fix: lower the learning rate (lr) or the weight decay"
    )]
    Diverged { epoch: usize, what: &'static str, value: f64 },
    #[error("fetching {url}: {problem}")]
    Fetch { url: String, problem: String },
    #[error("{path}: cannot save or load checkpoint: {problem}")]
    Checkpoint { path: PathBuf, problem: String },
    /// A shared study store (PostgreSQL) refused a request or stayed out of reach.
    #[error("{url}: {problem}\n  fix: {fix}")]
    Store { url: String, problem: String, fix: String },
    /// A disk filled up under a study (a trial's checkpoint, the journal, a report).
    #[error(
        "{what}\n  fix: free space on that disk (or give the study room elsewhere), then run the same command again: nothing recorded is lost, and it continues where it stopped"
    )]
    NoSpace { what: String },
    #[error("{0}")]
    Study(String),
    #[error("interrupted")]
    Interrupted,
}

/// The exit code of a process stopped by a full disk; a trial process's tells the study loop
/// to stop the study rather than fail the trial.
pub const DISK_FULL: i32 = 9;

fn list_paths(lines: &[String]) -> String {
    lines.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
}

impl TuneError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        TuneError::Io { path: path.as_ref().to_path_buf(), source }
    }

    /// A disk is full (ENOSPC) or a quota is spent: the study stops, keeps what it recorded
    /// and continues when run again with room. burn reports checkpoint errors as text only.
    pub fn is_disk_full(&self) -> bool {
        match self {
            TuneError::NoSpace { .. } => true,
            TuneError::Io { source, .. } => matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)),
            TuneError::Checkpoint { problem, .. } => {
                problem.contains("No space left on device") || problem.contains("Disk quota exceeded")
            }
            _ => false,
        }
    }

    /// The process exit code for this error: one mapping for the whole program.
    pub fn exit_code(&self) -> i32 {
        match self {
            e if e.is_disk_full() => DISK_FULL,
            TuneError::Config { .. } | TuneError::ConfigSyntax { .. } => 2,
            TuneError::DataMissing { .. } | TuneError::CorruptData { .. } | TuneError::Fetch { .. } => 3,
            TuneError::Infeasible(_) | TuneError::InfeasibleSpace { .. } => 4,
            TuneError::Io { .. } | TuneError::Checkpoint { .. } => 5,
            TuneError::Study(_) | TuneError::CorruptStudy { .. } => 6,
            TuneError::Diverged { .. } => 7,
            TuneError::Store { .. } => 8,
            TuneError::NoSpace { .. } => DISK_FULL,
            TuneError::Interrupted => 130,
        }
    }
}

pub type Result<T, E = TuneError> = std::result::Result<T, E>;

/// Makes the error of one key of a file (or of the command line): the key, the problem, the
/// fix. Checks take one, so they name the file they were given without knowing it.
pub type ErrFn<'a> = dyn Fn(&str, String, String) -> TuneError + 'a;
