//! Reader for the Kaggle CSV form of Fashion-MNIST: a header row, then `label,pixel1,…,pixel784`.

use std::path::Path;

use crate::error::{Result, TuneError};

fn corrupt(path: &Path, problem: String) -> TuneError {
    TuneError::CorruptData {
        path: path.to_path_buf(),
        problem,
        fix: "use the Kaggle file as downloaded (header `label,pixel1,…,pixel784`, one image per row, values 0..=255)"
            .into(),
    }
}

/// Reads a Kaggle CSV file into (labels, pixels).
pub fn read_csv(path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(|e| corrupt(path, format!("cannot read as CSV: {e}")))?;
    let headers = reader.headers().map_err(|e| corrupt(path, format!("bad header row: {e}")))?;
    if headers.len() != 785 || &headers[0] != "label" {
        return Err(corrupt(
            path,
            format!(
                "header has {} columns starting with `{}`; expected 785 starting with `label`",
                headers.len(),
                headers.get(0).unwrap_or("")
            ),
        ));
    }
    let (mut labels, mut pixels) = (Vec::new(), Vec::new());
    for (row, record) in reader.records().enumerate() {
        let line = row + 2;
        let record = record.map_err(|e| corrupt(path, format!("line {line}: {e}")))?;
        if record.len() != 785 {
            return Err(corrupt(path, format!("line {line}: {} values, expected 785", record.len())));
        }
        for (col, field) in record.iter().enumerate() {
            let value: u8 = field.trim().parse().map_err(|_| {
                corrupt(path, format!("line {line}, column {}: `{field}` is not a value 0..=255", col + 1))
            })?;
            if col == 0 {
                if value > 9 {
                    return Err(corrupt(path, format!("line {line}: label {value}, classes are 0..=9")));
                }
                labels.push(value);
            } else {
                pixels.push(value);
            }
        }
    }
    if labels.is_empty() {
        return Err(corrupt(path, "no image rows after the header".into()));
    }
    Ok((labels, pixels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> String {
        let mut h = String::from("label");
        for i in 1..=784 {
            h.push_str(&format!(",pixel{i}"));
        }
        h
    }

    fn row(label: &str, px: u8) -> String {
        let mut r = label.to_string();
        for _ in 0..784 {
            r.push_str(&format!(",{px}"));
        }
        r
    }

    #[test]
    fn reads_good_file_and_rejects_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fashion-mnist_test.csv");
        std::fs::write(&path, format!("{}\n{}\n{}\n", header(), row("3", 7), row("9", 255))).unwrap();
        let (labels, pixels) = read_csv(&path).unwrap();
        assert_eq!(labels, vec![3, 9]);
        assert_eq!(pixels.len(), 2 * 784);
        assert_eq!(pixels[784], 255);

        let cases = [
            (format!("{}\n{}\n", header(), row("12", 0)), "label 12"),
            (format!("{}\n{}\n", header(), row("1", 0).replacen(",0", ",300", 1)), "`300`"),
            (format!("{}\n{}\n", header(), &row("1", 0)[..100]), "line 2"),
            (format!("{}\n", header()), "no image rows"),
            ("a,b\n1,2\n".to_string(), "expected 785"),
        ];
        for (text, why) in cases {
            std::fs::write(&path, text).unwrap();
            let err = read_csv(&path).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains("fashion-mnist_test.csv"), "expected `{why}` in {err}");
        }
    }
}
