//! Reader for the IDX format of the official (Fashion-)MNIST files, gzip or raw.

use std::io::Read;
use std::path::Path;

use crate::error::{Result, TuneError};

/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

fn corrupt(path: &Path, problem: impl Into<String>) -> TuneError {
    TuneError::CorruptData {
        path: path.to_path_buf(),
        problem: problem.into(),
        fix: "delete the file and run `tune data fetch` to get a fresh copy".into(),
    }
}

/// Reads a whole file, gunzipping it when it starts with the gzip magic bytes.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| TuneError::io(path, e))?;
    decode_maybe_gz(path, raw)
}

/// The bytes of a file as read: gunzipped when they start with the gzip magic bytes.
/// Multi-member streams (pigz, `cat a.gz b.gz`) are one valid gzip file and read whole.
pub fn decode_maybe_gz(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 6);
    flate2::read::MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .map_err(|e| corrupt(path, format!("gzip stream is damaged or truncated ({e})")))?;
    Ok(out)
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Parses an IDX image file: returns (count, rows, cols, pixels) with pixels row-major.
pub fn parse_images(path: &Path, bytes: &[u8]) -> Result<(usize, usize, usize, Vec<u8>)> {
    if bytes.len() < 16 {
        return Err(corrupt(path, format!("only {} bytes, an IDX image header needs 16", bytes.len())));
    }
    let magic = be_u32(bytes, 0);
    if magic != IMAGES_MAGIC {
        return Err(corrupt(path, format!("magic number is {magic:#010x}, an image file has {IMAGES_MAGIC:#010x}")));
    }
    let (n, rows, cols) = (be_u32(bytes, 4) as usize, be_u32(bytes, 8) as usize, be_u32(bytes, 12) as usize);
    if n == 0 {
        return Err(corrupt(path, "header announces 0 images: there is nothing to train or validate on"));
    }
    if rows != 28 || cols != 28 {
        return Err(corrupt(path, format!("images are {rows}x{cols}, Fashion-MNIST images are 28x28")));
    }
    let expected = 16 + n * rows * cols;
    if bytes.len() != expected {
        return Err(corrupt(
            path,
            format!(
                "header announces {n} images ({expected} bytes) but the file holds {} bytes (truncated or padded)",
                bytes.len()
            ),
        ));
    }
    Ok((n, rows, cols, bytes[16..].to_vec()))
}

/// Parses an IDX label file, checking every label is a class 0..=9.
pub fn parse_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    if bytes.len() < 8 {
        return Err(corrupt(path, format!("only {} bytes, an IDX label header needs 8", bytes.len())));
    }
    let magic = be_u32(bytes, 0);
    if magic != LABELS_MAGIC {
        return Err(corrupt(path, format!("magic number is {magic:#010x}, a label file has {LABELS_MAGIC:#010x}")));
    }
    let n = be_u32(bytes, 4) as usize;
    if n == 0 {
        return Err(corrupt(path, "header announces 0 labels: there is nothing to train or validate on"));
    }
    if bytes.len() != 8 + n {
        return Err(corrupt(
            path,
            format!("header announces {n} labels but the file holds {} (truncated or padded)", bytes.len() - 8),
        ));
    }
    let labels = bytes[8..].to_vec();
    if let Some((i, bad)) = labels.iter().enumerate().find(|(_, l)| **l > 9) {
        return Err(corrupt(path, format!("label #{i} is {bad}, classes are 0..=9")));
    }
    Ok(labels)
}

/// Encodes images as an IDX file (used by `tests` fixtures and by the decoded cache).
pub fn encode_images(pixels: &[u8], n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + pixels.len());
    for v in [IMAGES_MAGIC, n as u32, 28, 28] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

/// Encodes labels as an IDX file.
pub fn encode_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + labels.len());
    out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn p() -> &'static Path {
        Path::new("x.idx")
    }

    #[test]
    fn round_trips_images_and_labels() {
        let pixels: Vec<u8> = (0..2 * 784).map(|i| (i % 251) as u8).collect();
        let (n, r, c, back) = parse_images(p(), &encode_images(&pixels, 2)).unwrap();
        assert_eq!((n, r, c), (2, 28, 28));
        assert_eq!(back, pixels);
        assert_eq!(parse_labels(p(), &encode_labels(&[0, 9, 3])).unwrap(), vec![0, 9, 3]);
    }

    #[test]
    fn rejects_each_kind_of_corruption() {
        let good = encode_images(&vec![0u8; 3 * 784], 3);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..10].to_vec(), "header needs 16"),
            (
                {
                    let mut b = good.clone();
                    b[3] = 0x01;
                    b
                },
                "magic number",
            ),
            (good[..good.len() - 5].to_vec(), "truncated"),
            (
                {
                    let mut b = good.clone();
                    b.push(0);
                    b
                },
                "padded",
            ),
            (
                {
                    let mut b = good.clone();
                    b[11] = 32;
                    b
                },
                "28x28",
            ),
            (encode_images(&[], 0), "0 images"),
        ];
        for (bytes, why) in cases {
            let err = parse_images(p(), &bytes).unwrap_err().to_string();
            assert!(err.contains(why), "expected `{why}` in `{err}`");
            assert!(err.contains("x.idx"), "error must name the file: {err}");
        }
        let labels = encode_labels(&[1, 2, 10]);
        assert!(parse_labels(p(), &labels).unwrap_err().to_string().contains("label #2 is 10"));
        assert!(parse_labels(p(), &good).unwrap_err().to_string().contains("magic number"));
        assert!(parse_labels(p(), &labels[..9]).unwrap_err().to_string().contains("truncated"));
        assert!(parse_labels(p(), &encode_labels(&[])).unwrap_err().to_string().contains("0 labels"));
    }

    #[test]
    fn gzip_is_detected_and_damage_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&encode_labels(&[4; 1000])).unwrap();
        let bytes = gz.finish().unwrap();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(parse_labels(&path, &read_maybe_gz(&path).unwrap()).unwrap().len(), 1000);
        // Two members, as `cat a.gz b.gz` (or pigz) writes: one valid stream of all the bytes.
        let whole = encode_labels(&[4; 1000]);
        let (a, b) = whole.split_at(300);
        let member = |part: &[u8]| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(part).unwrap();
            gz.finish().unwrap()
        };
        std::fs::write(&path, [member(a), member(b)].concat()).unwrap();
        assert_eq!(read_maybe_gz(&path).unwrap(), whole, "a multi-member gzip file is read whole");
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_maybe_gz(&path).unwrap_err().to_string();
        assert!(err.contains("gzip") && err.contains("l.gz"), "{err}");
    }
}
