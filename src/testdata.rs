//! Tiny synthetic Fashion-MNIST look-alikes for tests: learnable (each class is a bright bar
//! at its own height, over noise), balanced, and written in the official IDX layout.

use std::io::Write;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::data::{CLASSES, FashionMnist, Images, PIXELS, idx, source::OFFICIAL_FILES};

/// `n` images, labels cycling through the classes (balanced to within one).
pub fn synthetic_images(n: usize, seed: u64) -> Images {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pixels = Vec::with_capacity(n * PIXELS);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let label = ((i + seed as usize) % CLASSES) as u8;
        let top = 2 + 2 * label as usize;
        for r in 0..28 {
            for _ in 0..28 {
                let bar = r >= top && r < top + 3;
                pixels.push(if bar { rng.random_range(180..=255) } else { rng.random_range(0..60) });
            }
        }
        labels.push(label);
    }
    Images { pixels, labels }
}

/// Writes a gzip IDX data directory with `n_train` training and `n_test` official-test images.
pub fn write_idx_dir(dir: &Path, n_train: usize, n_test: usize, seed: u64) -> FashionMnist {
    let train = synthetic_images(n_train, seed);
    let official_test = synthetic_images(n_test, seed + 1);
    let contents = [
        idx::encode_images(&train.pixels, n_train),
        idx::encode_labels(&train.labels),
        idx::encode_images(&official_test.pixels, n_test),
        idx::encode_labels(&official_test.labels),
    ];
    std::fs::create_dir_all(dir).expect("create fixture dir");
    for (file, bytes) in OFFICIAL_FILES.iter().zip(contents) {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).expect("gzip");
        std::fs::write(dir.join(file.name), gz.finish().expect("gzip")).expect("write fixture");
    }
    FashionMnist { train, official_test, origin: dir.to_path_buf() }
}
