//! The GEMM peak probe, which `tune bench` prints beside its figures.

/// Best fp32 GEMM rate (FLOP/s) of the `gemm` crate our kernels use: 1024×1024×1024, all
/// `threads`, best of 5 after a warm-up.
pub fn gemm_peak(threads: usize) -> f64 {
    const N: usize = 1024;
    let a: Vec<f32> = (0..N * N).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..N * N).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0.0f32; N * N];
    let parallelism = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    let mut best = f64::INFINITY;
    for _ in 0..6 {
        let t = std::time::Instant::now();
        // SAFETY: a, b and c are N×N row-major, matching the strides given.
        unsafe {
            gemm::gemm(
                N,
                N,
                N,
                c.as_mut_ptr(),
                1,
                N as isize,
                false,
                a.as_ptr(),
                1,
                N as isize,
                b.as_ptr(),
                1,
                N as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&c);
    2.0 * (N * N * N) as f64 / best
}
