//! The kernels alone, at the seed network's shapes (batch 100): milliseconds a call, median of
//! `TUNE_KERNEL_BENCH_ROUNDS` (default 9) after one warm-up. Figures, not assertions; the
//! whole training step is `tune bench`'s. Run: `cargo bench -p tune-kernels`.

use std::hint::black_box;
use std::time::Instant;

use tune_kernels::activation::Activation;
use tune_kernels::adam::{self, AdamStep};
use tune_kernels::batch_norm::{self, NormShape};
use tune_kernels::geometry::{ConvGeometry, PoolGeometry};
use tune_kernels::settings::{self, KernelSettings};
use tune_kernels::{conv, pool};

const BATCH: usize = 100;

/// Median milliseconds of `rounds` calls of `f`, after one warm-up call.
fn time(rounds: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut ms: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / 8_388_608.0 - 1.0)
        .collect()
}

fn main() {
    let rounds = std::env::var("TUNE_KERNEL_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(9usize).max(1);
    let s = KernelSettings::best();
    settings::install(s).expect("the best settings run here");
    println!(
        "tune-kernels at {} (Winograd {}), {} threads, batch {BATCH}, median of {rounds}",
        s.simd.name(),
        if tune_kernels::winograd::enabled() { "on" } else { "off" },
        rayon::current_num_threads()
    );
    println!("{:<44} {:>10} {:>10}", "kernel", "forward ms", "backward ms");
    for (c_in, c_out, hw) in [(1, 32, 28), (32, 64, 28), (64, 128, 14)] {
        let g = ConvGeometry { batch: BATCH, c_in, h: hw, w: hw, c_out, kh: 3, kw: 3, stride: [1, 1], pad: [1, 1] };
        let (x, w, b) = (values(BATCH * c_in * hw * hw, 1), values(c_out * c_in * 9, 2), values(c_out, 3));
        let dy = values(BATCH * c_out * g.out_h() * g.out_w(), 4);
        let fwd = time(rounds, || drop(black_box(conv::forward(&g, &x, &w, &b))));
        let bwd = time(rounds, || drop(black_box(conv::backward(&g, &x, &w, &dy, c_in > 1))));
        println!("{:<44} {fwd:>10.2} {bwd:>10.2}", format!("conv 3×3 {c_in} → {c_out} at {hw}×{hw}"));
    }
    for (channels, hw, pool_k) in [(32, 28, 1), (64, 28, 2), (128, 14, 2)] {
        let s = NormShape { batch: BATCH, channels, h: hw, w: hw };
        let (x, gamma, beta) = (values(BATCH * channels * hw * hw, 5), values(channels, 6), values(channels, 7));
        let act = Activation::Relu;
        let (y, mean, var) = batch_norm::train_forward(&s, &x, &gamma, &beta, 1e-3, act, pool_k);
        let dy = values(y.len(), 8);
        let fwd = time(rounds, || drop(black_box(batch_norm::train_forward(&s, &x, &gamma, &beta, 1e-3, act, pool_k))));
        let bwd = time(rounds, || {
            drop(black_box(batch_norm::train_backward(&s, &x, &gamma, &beta, &mean, &var, 1e-3, act, pool_k, &dy)))
        });
        let pooled = if pool_k > 1 { format!(" + pool {pool_k}") } else { String::new() };
        println!("{:<44} {fwd:>10.2} {bwd:>10.2}", format!("batch norm + relu{pooled}, {channels} × {hw}×{hw}"));
    }
    let g = PoolGeometry { planes: BATCH * 64, h: 28, w: 28, k: 2 };
    let x = values(g.planes * 28 * 28, 9);
    let dy = values(g.planes * g.out_h() * g.out_w(), 10);
    let fwd = time(rounds, || drop(black_box(pool::forward(&g, &x))));
    let bwd = time(rounds, || drop(black_box(pool::backward(&g, &x, &dy))));
    println!("{:<44} {fwd:>10.2} {bwd:>10.2}", "max-pool 2 alone, 64 × 28×28");
    let n = 3_467_402;
    let (mut p, grad, mut m1, mut m2) = (values(n, 11), values(n, 12), vec![0.0; n], vec![0.0; n]);
    let mut step = AdamStep {
        lr: 1e-3,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-7,
        time: 0,
        weight_decay: None,
        decoupled_decay: None,
    };
    let update = time(rounds, || {
        step.time += 1;
        adam::step(&step, &mut p, &grad, &mut m1, &mut m2);
    });
    println!("{:<44} {update:>10.2} {:>10}", "Adam step, the seed's 3,467,402 parameters", "—");
}
