//! Non-overlapping k×k max-pooling (stride k, no padding, floor) over NCHW f32 planes, forward
//! and backward.
//!
//! Why our own: burn-flex's general pooling (any stride, padding, dilation, ceil mode) pays an
//! index division per element and records an index tensor for the backward pass; the seed's
//! pools are the simple case, and the backward pass can find each window's maximum again from
//! the input in one cheap read instead of storing indices.

use rayon::prelude::*;

pub use crate::geometry::PoolGeometry;

/// Planes per rayon task.
const MIN_PLANES_PER_TASK: usize = 16;

pub fn forward(g: &PoolGeometry, x: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), g.planes * g.h * g.w, "pool input size");
    let mut y = vec![0.0f32; g.planes * g.out_plane()];
    if g.out_plane() == 0 {
        return y;
    }
    y.par_chunks_mut(g.out_plane()).zip(x.par_chunks(g.h * g.w)).with_min_len(MIN_PLANES_PER_TASK).for_each(
        |(yp, xp)| {
            if g.k == 2 {
                // The common case: a row pair of windows at a time, vectorised (window2).
                let cols = 2 * g.out_w();
                for (oy, out_row) in yp.chunks_mut(g.out_w()).enumerate() {
                    super::window2::maxima(&xp[2 * oy * g.w..][..cols], &xp[(2 * oy + 1) * g.w..][..cols], out_row);
                }
            } else {
                for oy in 0..g.out_h() {
                    for ox in 0..g.out_w() {
                        yp[oy * g.out_w() + ox] = xp[g.argmax(xp, oy, ox)];
                    }
                }
            }
        },
    );
    y
}

/// Input gradient: each window's output gradient goes to the window's (first) maximum.
pub fn backward(g: &PoolGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), g.planes * g.h * g.w, "pool input size");
    assert_eq!(dy.len(), g.planes * g.out_plane(), "pool gradient size");
    if g.k != 2 || g.out_plane() == 0 {
        return backward_general(g, x, dy);
    }
    // Windows tile the plane (but for a last odd row or column), so every value of the
    // gradient is written exactly once, row pair by row pair, without zeroing it first.
    let mut dx: Vec<f32> = Vec::with_capacity(x.len());
    dx.spare_capacity_mut()
        .par_chunks_mut(g.h * g.w)
        .zip(x.par_chunks(g.h * g.w))
        .zip(dy.par_chunks(g.out_plane()))
        .with_min_len(MIN_PLANES_PER_TASK)
        .for_each(|((dxp, xp), dyp)| {
            let cols = 2 * g.out_w();
            for (oy, dy_row) in dyp.chunks_exact(g.out_w()).enumerate() {
                let (r0, r1) = (2 * oy * g.w, (2 * oy + 1) * g.w);
                let (d0, d1) = dxp[r0..r1 + g.w].split_at_mut(g.w);
                super::window2::route(&xp[r0..r0 + cols], &xp[r1..r1 + cols], dy_row, &mut d0[..cols], &mut d1[..cols]);
                if g.w % 2 == 1 {
                    d0[g.w - 1].write(0.0);
                    d1[g.w - 1].write(0.0);
                }
            }
            if g.h % 2 == 1 {
                dxp[(g.h - 1) * g.w..].iter_mut().for_each(|v| {
                    v.write(0.0);
                });
            }
        });
    // SAFETY: per plane, the loops above wrote every window's four values, the odd last column
    // of each row pair and the odd last row: all h·w values of every plane.
    unsafe { dx.set_len(x.len()) };
    dx
}

/// Any k: zeros, then each window's gradient added at its maximum.
fn backward_general(g: &PoolGeometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut dx = vec![0.0f32; x.len()];
    if g.out_plane() == 0 {
        return dx;
    }
    dx.par_chunks_mut(g.h * g.w)
        .zip(x.par_chunks(g.h * g.w))
        .zip(dy.par_chunks(g.out_plane()))
        .with_min_len(MIN_PLANES_PER_TASK)
        .for_each(|((dxp, xp), dyp)| {
            for oy in 0..g.out_h() {
                for ox in 0..g.out_w() {
                    dxp[g.argmax(xp, oy, ox)] += dyp[oy * g.out_w() + ox];
                }
            }
        });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_and_backward_on_a_worked_example() {
        // One 4×5 plane (the last column is dropped by the floor), pooled 2×2.
        #[rustfmt::skip]
        let x = [
            1.0, 5.0, 2.0, 2.0, 9.0,
            3.0, 4.0, 8.0, 1.0, 9.0,
            0.0, 0.0, 7.0, 6.0, 9.0,
            0.0, -1.0, 6.0, 7.0, 9.0,
        ];
        let g = PoolGeometry { planes: 1, h: 4, w: 5, k: 2 };
        assert_eq!(forward(&g, &x), vec![5.0, 8.0, 0.0, 7.0]);
        let dx = backward(&g, &x, &[1.0, 2.0, 3.0, 4.0]);
        #[rustfmt::skip]
        let want = vec![
            0.0, 1.0, 0.0, 0.0, 0.0,
            0.0, 0.0, 2.0, 0.0, 0.0,
            3.0, 0.0, 4.0, 0.0, 0.0, // ties go to the first maximum
            0.0, 0.0, 0.0, 0.0, 0.0,
        ];
        assert_eq!(dx, want);
    }

    #[test]
    fn general_k_agrees_with_the_pairwise_path() {
        let _kernels = crate::settings::exclusive();
        // At every vector level; rows of 3 windows and of 19 (more than one 16-window block).
        for level in super::super::simd::available() {
            super::super::simd::force(level);
            for (w, seed) in [(7, 3), (39, 4)] {
                general_k_agrees_with_the_pairwise_path_on(PoolGeometry { planes: 40, h: 9, w, k: 2 }, seed);
            }
        }
        super::super::simd::force(super::super::simd::available()[0]);
    }

    fn general_k_agrees_with_the_pairwise_path_on(g: PoolGeometry, seed: u64) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let x: Vec<f32> = (0..g.planes * g.h * g.w).map(|_| rng.random_range(-1.0..1.0)).collect();
        let fast = forward(&g, &x);
        let general: Vec<f32> = x
            .chunks(g.h * g.w)
            .flat_map(|p| (0..g.out_h()).flat_map(move |oy| (0..g.out_w()).map(move |ox| p[g.argmax(p, oy, ox)])))
            .collect();
        assert_eq!(fast, general);
        let dy: Vec<f32> = (0..g.planes * g.out_plane()).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut general = vec![0.0f32; x.len()];
        for (p, (xp, dyp)) in x.chunks(g.h * g.w).zip(dy.chunks(g.out_plane())).enumerate() {
            for oy in 0..g.out_h() {
                for ox in 0..g.out_w() {
                    general[p * g.h * g.w + g.argmax(xp, oy, ox)] += dyp[oy * g.out_w() + ox];
                }
            }
        }
        assert_eq!(backward(&g, &x, &dy), general);
        assert_eq!(backward_general(&g, &x, &dy), general);
    }

    /// Ties and NaNs everywhere: the vectorised 2×2 pool picks the same winner as argmax, at
    /// every vector level.
    #[test]
    fn pairwise_backward_breaks_ties_and_nans_like_argmax() {
        let _kernels = crate::settings::exclusive();
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for level in super::super::simd::available() {
            super::super::simd::force(level);
            for w in [9, 35] {
                let g = PoolGeometry { planes: 30, h: 8, w, k: 2 };
                let x: Vec<f32> = (0..g.planes * g.h * g.w)
                    .map(|_| [0.0, 1.0, 1.0, f32::NAN, -1.0][rng.random_range(0..5)])
                    .collect();
                let dy: Vec<f32> = (0..g.planes * g.out_plane()).map(|i| i as f32 + 1.0).collect();
                assert_eq!(backward(&g, &x, &dy), backward_general(&g, &x, &dy), "{level:?}, w {w}");
                let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<u32>>();
                let general = x.chunks(g.h * g.w).flat_map(|p| {
                    (0..g.out_h()).flat_map(move |oy| (0..g.out_w()).map(move |ox| p[g.argmax(p, oy, ox)]))
                });
                assert_eq!(bits(forward(&g, &x)), bits(general.collect()), "{level:?}, w {w}");
            }
        }
        super::super::simd::force(super::super::simd::available()[0]);
    }

    #[test]
    fn nan_propagates() {
        let g = PoolGeometry { planes: 1, h: 2, w: 2, k: 2 };
        assert!(forward(&g, &[1.0, f32::NAN, 3.0, 2.0])[0].is_nan());
        let g3 = PoolGeometry { planes: 1, h: 3, w: 3, k: 3 };
        let x = [1.0, 2.0, 3.0, 4.0, f32::NAN, 0.0, 0.0, 0.0, 0.0];
        assert!(forward(&g3, &x)[0].is_nan());
        assert_eq!(backward(&g3, &x, &[1.0])[4], 1.0);
    }
}
