//! Fashion-MNIST: reading (IDX or Kaggle CSV), the seed's splits, and batch assembly.
//!
//! Images stay as contiguous `u8` (55 MB for all 70,000) and a batch is scaled to `f32`
//! in [0, 1] as it is assembled: the same values as a pre-scaled `f32` copy at a quarter
//! of the memory, which matters when several trial processes each hold the data set.

pub mod augment;
pub mod idx;
pub mod kaggle;
pub mod plots;
pub mod source;
pub mod split;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::error::{Result, TuneError};
pub use source::Source;
pub use split::{SplitConfig, Splits};

/// Pixels per image (28 × 28).
pub const PIXELS: usize = 784;
/// Number of classes.
pub const CLASSES: usize = 10;
/// Class names, in label order.
pub const CLASS_NAMES: [&str; CLASSES] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// A set of labelled images, pixels row-major and contiguous.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Images {
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Images {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * PIXELS..(i + 1) * PIXELS]
    }

    /// Writes images `indices` scaled to [0, 1] into `out` (cleared first) and returns their labels.
    pub fn gather(&self, indices: &[usize], out: &mut Vec<f32>, labels: &mut Vec<i64>) {
        out.clear();
        labels.clear();
        out.reserve(indices.len() * PIXELS);
        for &i in indices {
            out.extend(self.image(i).iter().map(|&p| p as f32 * (1.0 / 255.0)));
            labels.push(self.labels[i] as i64);
        }
    }

    /// Number of images per class.
    pub fn class_counts(&self, indices: impl IntoIterator<Item = usize>) -> [usize; CLASSES] {
        let mut counts = [0; CLASSES];
        for i in indices {
            counts[self.labels[i] as usize] += 1;
        }
        counts
    }
}

/// The two official parts: 60,000 training images and the 10,000 official test images
/// (which the seed — and tune — use as the validation set).
#[derive(Debug, Clone, PartialEq)]
pub struct FashionMnist {
    pub train: Images,
    pub official_test: Images,
    /// Where the data came from (for messages).
    pub origin: PathBuf,
}

impl FashionMnist {
    /// Locates (fetching on first use) and loads the data set, through the decoded cache.
    pub fn load(data_dir: Option<&Path>) -> Result<Self> {
        let source = source::locate(data_dir)?;
        Self::load_source(&source)
    }

    /// Loads from a known source, using the decoded-array cache for gzip IDX files.
    pub fn load_source(source: &Source) -> Result<Self> {
        Self::load_source_cached(source, cache_dir().as_deref())
    }

    /// [`Self::load_source`] with the cache under `cache_root` (`None`: no cache).
    pub fn load_source_cached(source: &Source, cache_root: Option<&Path>) -> Result<Self> {
        let cache = cache_root.and_then(|root| cache_path(source, root));
        if let Some(path) = &cache
            && let Some(data) = read_cache(path, source)
        {
            return Ok(data);
        }
        let data = match source {
            Source::Idx(files) => {
                let images = |p: &PathBuf| -> Result<(usize, Vec<u8>)> {
                    let (n, _, _, px) = idx::parse_images(p, &idx::read_maybe_gz(p)?)?;
                    Ok((n, px))
                };
                let labels = |p: &PathBuf| idx::parse_labels(p, &idx::read_maybe_gz(p)?);
                let ((n_train, train_px), train_labels) = (images(&files[0])?, labels(&files[1])?);
                let ((n_test, test_px), test_labels) = (images(&files[2])?, labels(&files[3])?);
                check_pair(&files[0], &files[1], n_train, train_labels.len())?;
                check_pair(&files[2], &files[3], n_test, test_labels.len())?;
                FashionMnist {
                    train: Images { pixels: train_px, labels: train_labels },
                    official_test: Images { pixels: test_px, labels: test_labels },
                    origin: files[0].parent().unwrap_or(Path::new(".")).to_path_buf(),
                }
            }
            Source::Kaggle(train, test) => {
                let (train_labels, train_px) = kaggle::read_csv(train)?;
                let (test_labels, test_px) = kaggle::read_csv(test)?;
                FashionMnist {
                    train: Images { pixels: train_px, labels: train_labels },
                    official_test: Images { pixels: test_px, labels: test_labels },
                    origin: train.parent().unwrap_or(Path::new(".")).to_path_buf(),
                }
            }
        };
        if let Some(path) = &cache {
            write_cache(path, &data);
        }
        Ok(data)
    }
}

fn check_pair(images: &Path, labels: &Path, n_images: usize, n_labels: usize) -> Result<()> {
    if n_images != n_labels {
        return Err(TuneError::CorruptData {
            path: labels.to_path_buf(),
            problem: format!("{n_labels} labels but {} holds {n_images} images", images.display()),
            fix: "use the image and label files of the same release; `tune data fetch` restores them".into(),
        });
    }
    Ok(())
}
/// Loads the data and computes the seed's splits (`split_seed` chooses the balanced test set).
pub fn load_with_splits(data_dir: Option<&Path>, split_seed: u64) -> Result<(FashionMnist, Splits)> {
    let started = std::time::Instant::now();
    let data = FashionMnist::load(data_dir)?;
    let splits = Splits::new(&data.train, &data.official_test, SplitConfig { seed: split_seed, test_per_class: None });
    tracing::debug!("data loaded from {} in {:.3}s", data.origin.display(), started.elapsed().as_secs_f64());
    Ok((data, splits))
}

/// The cache directory: `$TUNE_CACHE_DIR`, else `$XDG_CACHE_HOME/tune`, else `~/.cache/tune`.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("TUNE_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("tune"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("tune"))
}

/// The cache file for a source, keyed by the files' paths, sizes and modification times,
/// so a replaced file is decoded afresh. CSV sources are cached too (parsing them is slow).
fn cache_path(source: &Source, root: &Path) -> Option<PathBuf> {
    let files: Vec<&PathBuf> = match source {
        Source::Idx(f) => f.iter().collect(),
        Source::Kaggle(a, b) => vec![a, b],
    };
    let mut hasher = Sha256::new();
    for f in files {
        let meta = std::fs::metadata(f).ok()?;
        let mtime = meta.modified().ok()?.duration_since(SystemTime::UNIX_EPOCH).ok()?;
        hasher.update(std::fs::canonicalize(f).ok()?.to_string_lossy().as_bytes());
        hasher.update(meta.len().to_le_bytes());
        hasher.update(mtime.as_nanos().to_le_bytes());
    }
    Some(root.join(format!("fashion-mnist-{}.bin", &source::hex(&hasher.finalize())[..16])))
}

const CACHE_MAGIC: &[u8; 8] = b"TUNEFM01";

fn read_cache(path: &Path, source: &Source) -> Option<FashionMnist> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() < 16 || &bytes[..8] != CACHE_MAGIC {
        return None;
    }
    let n_train = u32::from_le_bytes(bytes[8..12].try_into().ok()?) as usize;
    let n_test = u32::from_le_bytes(bytes[12..16].try_into().ok()?) as usize;
    if bytes.len() != 16 + (n_train + n_test) * (1 + PIXELS) {
        return None;
    }
    let mut at = 16;
    let mut take = |n: usize| {
        let part = bytes[at..at + n].to_vec();
        at += n;
        part
    };
    let train_labels = take(n_train);
    let test_labels = take(n_test);
    let train_px = take(n_train * PIXELS);
    let test_px = take(n_test * PIXELS);
    let origin = match source {
        Source::Idx(f) => f[0].parent()?.to_path_buf(),
        Source::Kaggle(a, _) => a.parent()?.to_path_buf(),
    };
    Some(FashionMnist {
        train: Images { pixels: train_px, labels: train_labels },
        official_test: Images { pixels: test_px, labels: test_labels },
        origin,
    })
}

/// Best effort: a cache that cannot be written only costs the next load its decompression.
fn write_cache(path: &Path, data: &FashionMnist) {
    let mut bytes = Vec::with_capacity(16 + data.train.pixels.len() + data.official_test.pixels.len() + 70_000);
    bytes.extend_from_slice(CACHE_MAGIC);
    bytes.extend_from_slice(&(data.train.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&(data.official_test.len() as u32).to_le_bytes());
    for part in [&data.train.labels, &data.official_test.labels, &data.train.pixels, &data.official_test.pixels] {
        bytes.extend_from_slice(part);
    }
    let result = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .map_err(|e| TuneError::io(path, e))
        .and_then(|_| crate::files::write_atomic(path, &bytes));
    if let Err(e) = result {
        tracing::debug!("could not write the decoded cache {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_scales_to_unit_range() {
        let images = Images { pixels: [vec![0u8; PIXELS], vec![255u8; PIXELS]].concat(), labels: vec![3, 7] };
        let (mut out, mut labels) = (Vec::new(), Vec::new());
        images.gather(&[1, 0], &mut out, &mut labels);
        assert_eq!(out.len(), 2 * PIXELS);
        assert_eq!((out[0], out[PIXELS]), (1.0, 0.0));
        assert_eq!(labels, vec![7, 3]);
    }

    #[test]
    fn cache_round_trips_and_rejects_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("d");
        std::fs::create_dir_all(&data_dir).unwrap();
        let data = crate::testdata::write_idx_dir(&data_dir, 40, 20, 1);
        let source = source::detect(&data_dir).unwrap();
        let path = dir.path().join("c.bin");
        write_cache(&path, &data);
        let back = read_cache(&path, &source).unwrap();
        assert_eq!(back.train, data.train);
        assert_eq!(back.official_test, data.official_test);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(read_cache(&path, &source).is_none());
    }
}
