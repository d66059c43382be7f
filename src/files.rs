//! Durable files: atomic replacement and fsync'd appends, so a crash (or kill -9) at any
//! moment leaves either the old or the new content, never a torn file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{Result, TuneError};

/// Writes `bytes` to `path` through a temporary file, fsync and rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the rename itself durable; not every filesystem allows opening a directory.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        TuneError::io(path, e)
    })
}

/// The temporary sibling used while `path` is being replaced; named by process, so workers
/// sharing a directory (several `tune run --storage …` on one machine or over NFS) never
/// rename each other's half-written files.
pub fn tmp_path(path: &Path) -> std::path::PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Reads a settings file a person wrote (space, params, config). Bytes that are not UTF-8
/// text (a binary file passed by mistake) are a configuration error (exit 2), not an I/O
/// failure; so is a path that names no file, or a directory.
pub fn read_text(path: &Path) -> Result<String> {
    let wrong_path = |what: &str| TuneError::ConfigSyntax {
        file: path.to_path_buf(),
        message: format!("{what}\n  fix: check the path; pass a TOML file"),
    };
    if path.is_dir() {
        return Err(wrong_path("is a directory, not a file"));
    }
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => wrong_path("no such file"),
        _ => TuneError::io(path, e),
    })?;
    String::from_utf8(bytes).map_err(|e| TuneError::ConfigSyntax {
        file: path.to_path_buf(),
        message: format!(
            "not UTF-8 text (byte {} is invalid): is this the right file?\n  fix: pass a TOML file",
            e.utf8_error().valid_up_to()
        ),
    })
}

/// Appends lines in one write and one fsync: the journal's write.
pub fn append_lines(path: &Path, lines: &[String]) -> Result<()> {
    let mut f = OpenOptions::new().create(true).append(true).open(path).map_err(|e| TuneError::io(path, e))?;
    let mut bytes = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for line in lines {
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
    }
    let before = f.metadata().map(|m| m.len());
    f.write_all(&bytes).and_then(|_| f.sync_data()).map_err(|e| {
        // Half a line (a full disk) would glue onto the next append: cut back to where it was.
        if let Ok(len) = before {
            let _ = f.set_len(len);
        }
        TuneError::io(path, e)
    })
}

/// Copies a directory tree; the copy appears under `to` only once complete (it is built
/// beside it and renamed), so a crash never leaves half a checkpoint behind.
pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fn copy(from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            let target = to.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                copy(&entry.path(), &target)?;
            } else {
                std::fs::copy(entry.path(), target)?;
            }
        }
        Ok(())
    }
    let tmp = tmp_path(to);
    let _ = std::fs::remove_dir_all(&tmp);
    copy(from, &tmp).map_err(|e| TuneError::io(from, e))?;
    std::fs::rename(&tmp, to).map_err(|e| TuneError::io(to, e))
}

/// Copies the plain files of `from` (not its folders) into a new directory `to`, whole or
/// not at all: a checkpoint's snapshot, taken beside the checkpoint it copies.
pub fn copy_files(from: &Path, to: &Path) -> Result<()> {
    let copy = |tmp: &Path| -> std::io::Result<()> {
        std::fs::create_dir_all(tmp)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::copy(entry.path(), tmp.join(entry.file_name()))?;
            }
        }
        Ok(())
    };
    let tmp = tmp_path(to);
    let _ = std::fs::remove_dir_all(&tmp);
    copy(&tmp).map_err(|e| TuneError::io(from, e))?;
    let _ = std::fs::remove_dir_all(to);
    std::fs::rename(&tmp, to).map_err(|e| TuneError::io(to, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert!(!tmp_path(&p).exists());
        append_lines(&dir.path().join("j"), &["x".into()]).unwrap();
        append_lines(&dir.path().join("j"), &["y".into()]).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("j")).unwrap(), "x\ny\n");
    }

    #[test]
    fn unwritable_target_is_an_error_naming_the_path() {
        let err = write_atomic(Path::new("/nonexistent-dir/x"), b"1").unwrap_err().to_string();
        assert!(err.contains("/nonexistent-dir/x"), "{err}");
    }
}
