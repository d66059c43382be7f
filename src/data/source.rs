//! Where the data lives: lookup order, `tune data fetch`, and the decoded-array cache.
//!
//! Lookup order: `--data-dir`, then `data/fashion-mnist/`, then Debian's
//! `/usr/share/datasets/fashion-mnist/`. A directory counts when it holds the four IDX files
//! (gzip or raw) or the two Kaggle CSV files.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Result, TuneError};

/// The project-local data directory that `tune data fetch` fills.
pub const LOCAL_DIR: &str = "data/fashion-mnist";
/// Where Debian's package `dataset-fashion-mnist` installs the official files.
pub const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";
/// Official mirror served over HTTPS.
pub const MIRROR: &str = "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion";

/// One official file: its name and the SHA-256 of its *decompressed* content, so a
/// recompressed copy (different gzip header) still verifies.
pub struct OfficialFile {
    pub name: &'static str,
    pub sha256: &'static str,
}

pub const OFFICIAL_FILES: [OfficialFile; 4] = [
    OfficialFile {
        name: "train-images-idx3-ubyte.gz",
        sha256: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    },
    OfficialFile {
        name: "train-labels-idx1-ubyte.gz",
        sha256: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    },
    OfficialFile {
        name: "t10k-images-idx3-ubyte.gz",
        sha256: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    },
    OfficialFile {
        name: "t10k-labels-idx1-ubyte.gz",
        sha256: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
];

/// Kaggle CSV file names (train, test).
pub const KAGGLE_FILES: [&str; 2] = ["fashion-mnist_train.csv", "fashion-mnist_test.csv"];

/// The format found in a data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The four IDX files; each path may be gzip or raw.
    Idx([PathBuf; 4]),
    /// Kaggle's (train, test) CSV files.
    Kaggle(PathBuf, PathBuf),
}

/// Finds the IDX files (`.gz` or without it) or the Kaggle CSVs in `dir`.
pub fn detect(dir: &Path) -> Option<Source> {
    let idx: Vec<PathBuf> = OFFICIAL_FILES
        .iter()
        .filter_map(|f| {
            let gz = dir.join(f.name);
            let raw = dir.join(f.name.trim_end_matches(".gz"));
            [gz, raw].into_iter().find(|p| p.is_file())
        })
        .collect();
    if let Ok(files) = <[PathBuf; 4]>::try_from(idx) {
        return Some(Source::Idx(files));
    }
    let (train, test) = (dir.join(KAGGLE_FILES[0]), dir.join(KAGGLE_FILES[1]));
    (train.is_file() && test.is_file()).then_some(Source::Kaggle(train, test))
}

/// Each directory searched with what it lacks, so a single missing file is named.
fn describe_missing(dirs: &[PathBuf]) -> Vec<String> {
    dirs.iter()
        .map(|dir| {
            if !dir.is_dir() {
                return format!("{} (no such directory)", dir.display());
            }
            let missing: Vec<&str> = OFFICIAL_FILES
                .iter()
                .map(|f| f.name)
                .filter(|name| !dir.join(name).is_file() && !dir.join(name.trim_end_matches(".gz")).is_file())
                .collect();
            format!("{} (missing: {})", dir.display(), missing.join(", "))
        })
        .collect()
}

/// The directories searched, in order.
pub fn candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
    match explicit {
        // An explicit directory is the only place looked: silently using another copy would surprise.
        Some(dir) => vec![dir.to_path_buf()],
        None => vec![PathBuf::from(LOCAL_DIR), PathBuf::from(DEBIAN_DIR)],
    }
}

/// Resolves the data source, fetching into `data/fashion-mnist/` on first use when nothing is found.
pub fn locate(explicit: Option<&Path>) -> Result<Source> {
    let dirs = candidates(explicit);
    if let Some(found) = dirs.iter().find_map(|d| detect(d)) {
        return Ok(found);
    }
    if explicit.is_some() {
        return Err(TuneError::DataMissing { tried: describe_missing(&dirs) });
    }
    tracing::info!("Fashion-MNIST not found locally; fetching it into {LOCAL_DIR}");
    fetch(Path::new(LOCAL_DIR))?;
    detect(Path::new(LOCAL_DIR)).ok_or_else(|| TuneError::DataMissing { tried: describe_missing(&dirs) })
}

/// `tune data fetch`: fills `dest` from Debian's copy if present, else downloads over HTTPS.
/// Every file is verified before it is kept; a bad download never replaces a good file.
pub fn fetch(dest: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for file in &OFFICIAL_FILES {
        let target = dest.join(file.name);
        if target.is_file() && verify(&target, file).is_ok() {
            written.push(target);
            continue;
        }
        let debian = Path::new(DEBIAN_DIR).join(file.name);
        let bytes = if debian.is_file() {
            std::fs::read(&debian).map_err(|e| TuneError::io(&debian, e))?
        } else {
            download(&format!("{MIRROR}/{}", file.name))?
        };
        // Created only once there is something to keep: a failed fetch leaves no empty directory.
        std::fs::create_dir_all(dest).map_err(|e| TuneError::io(dest, e))?;
        let tmp = dest.join(format!(".{}.part", file.name));
        std::fs::write(&tmp, &bytes).map_err(|e| TuneError::io(&tmp, e))?;
        if let Err(e) = verify(&tmp, file) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &target).map_err(|e| TuneError::io(&target, e))?;
        written.push(target);
    }
    Ok(written)
}

fn download(url: &str) -> Result<Vec<u8>> {
    let fail = |problem: String| TuneError::Fetch { url: url.to_string(), problem };
    let response = ureq::get(url).call().map_err(|e| {
        fail(format!(
            "{e}; without network, install Debian's `dataset-fashion-mnist` or copy the four files into {LOCAL_DIR}/"
        ))
    })?;
    let mut bytes = Vec::new();
    response.into_body().into_reader().take(64 << 20).read_to_end(&mut bytes).map_err(|e| fail(e.to_string()))?;
    Ok(bytes)
}

/// Checks the SHA-256 of a file's decompressed content against the official value.
pub fn verify(path: &Path, file: &OfficialFile) -> Result<()> {
    let content = super::idx::read_maybe_gz(path)?;
    let got = hex(&Sha256::digest(&content));
    if got != file.sha256 {
        return Err(TuneError::CorruptData {
            path: path.to_path_buf(),
            problem: format!("SHA-256 of the content is {got}, the official {} has {}", file.name, file.sha256),
            fix: "delete it and run `tune data fetch` again".into(),
        });
    }
    Ok(())
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_idx_raw_or_gz_and_kaggle() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(detect(dir.path()), None);
        for (i, f) in OFFICIAL_FILES.iter().enumerate() {
            // mix gz and raw names
            let name = if i % 2 == 0 { f.name.to_string() } else { f.name.trim_end_matches(".gz").to_string() };
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        assert!(matches!(detect(dir.path()), Some(Source::Idx(_))));
        let kaggle = tempfile::tempdir().unwrap();
        for f in KAGGLE_FILES {
            std::fs::write(kaggle.path().join(f), b"x").unwrap();
        }
        assert!(matches!(detect(kaggle.path()), Some(Source::Kaggle(_, _))));
    }

    #[test]
    fn explicit_dir_missing_names_every_place_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate(Some(dir.path())).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        assert!(msg.contains("tune data fetch") && msg.contains("dataset-fashion-mnist"), "{msg}");
        assert_eq!(err.exit_code(), 3);
    }

    #[test]
    fn verify_rejects_wrong_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t10k-labels-idx1-ubyte");
        std::fs::write(&path, super::super::idx::encode_labels(&[1, 2, 3])).unwrap();
        let err = verify(&path, &OFFICIAL_FILES[3]).unwrap_err().to_string();
        assert!(err.contains("SHA-256") && err.contains("t10k-labels"), "{err}");
    }
}
