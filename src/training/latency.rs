//! Inference latency of a trained network, measured per trial so that a study can trade
//! accuracy against speed (`metric = "latency_ms"`) and `tune retrain --max-latency-ms` can
//! pick the best network under a speed cap. Sizes and FLOPs follow from the dictionary; speed
//! depends on the machine and the kernels, so it is timed on the trial's own threads.

use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

use super::metrics::Latency;
use crate::data::{Images, PIXELS};
use crate::model::Cnn;

/// Timed passes per batch size after one warm-up: enough for a stable median, and a fraction
/// of a second on a seed-sized network (one epoch of it takes a minute).
const PASSES_BATCH_1: usize = 15;
const PASSES_BATCH_100: usize = 3;

/// Milliseconds per image of `model`'s forward pass in inference mode (no autodiff graph),
/// at batch sizes 1 and 100, on images from `images` (cycled when there are fewer than 100);
/// `None` without any image to time.
pub fn measure(model: &Cnn, images: &Images, indices: &[usize], device: &Device) -> Option<Latency> {
    if indices.is_empty() {
        return None;
    }
    let device = device.clone().inner();
    let model = model.valid();
    let pick: Vec<usize> = indices.iter().copied().cycle().take(100).collect();
    let batch = |n: usize| {
        let (mut px, mut labels) = (Vec::with_capacity(n * PIXELS), Vec::new());
        images.gather(&pick[..n], &mut px, &mut labels);
        Tensor::<4>::from_data(TensorData::new(px, [n, 1, 28, 28]), &device)
    };
    let per_image_ms = |n: usize, passes: usize| {
        let x = batch(n);
        let mut times: Vec<f64> = (0..=passes)
            .map(|_| {
                let started = Instant::now();
                // Reading the logits back waits for the whole pass.
                let _ = model.forward(x.clone()).into_data();
                started.elapsed().as_secs_f64() * 1e3 / n as f64
            })
            .skip(1)
            .collect();
        median(&mut times)
    };
    Some(Latency { batch_1: per_image_ms(1, PASSES_BATCH_1), batch_100: per_image_ms(100, PASSES_BATCH_100) })
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 { xs[n / 2] } else { (xs[n / 2 - 1] + xs[n / 2]) / 2.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
