//! The activation functions batch norm applies after its per-channel map, and the gradient
//! each passes back, one value at a time.
//!
//! Why our own: burn states ELU, GELU, tanh and the rest as chains of whole-tensor ops (a
//! comparison, an exp, a mask, …, each a pass over memory, more in backward), which made a
//! conv block with any activation but ReLU cost 2–3× the ReLU block. Here each is a few
//! arithmetic operations inside batch norm's own passes. `exp` and `erfc` are polynomials in
//! plain f32 arithmetic (no FMA, no libm call), so the loops vectorise and every instruction
//! set level computes the same bits.

use serde::{Deserialize, Serialize};

/// Activation functions a block may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Relu,
    Elu,
    Selu,
    Gelu,
    LeakyRelu,
    Tanh,
    Sigmoid,
    Linear,
}

impl Activation {
    pub const NAMES: [&'static str; 8] = ["relu", "elu", "selu", "gelu", "leaky_relu", "tanh", "sigmoid", "linear"];
    pub const ALL: [Activation; 8] = [
        Activation::Relu,
        Activation::Elu,
        Activation::Selu,
        Activation::Gelu,
        Activation::LeakyRelu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Linear,
    ];

    pub fn parse(name: &str) -> Option<Activation> {
        Self::NAMES.iter().position(|n| *n == name).map(|i| Self::ALL[i])
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|a| *a == self).expect("listed")]
    }
}

/// One activation `f`, applied to the normalised value `z`.
pub(super) trait Function {
    /// Whether the 2×2 window kernels apply it themselves ([`super::window2::ChannelMap`]),
    /// so nothing is left to do after them: ReLU (their gate) and the identity.
    const DONE_IN_WINDOWS: bool;
    fn value(z: f32) -> f32;
    /// The gradient `dy` of `f(z)` passed back to `z`: `dy·f′(z)`.
    fn gate(dy: f32, z: f32) -> f32;
}

/// Whether max-pooling commutes with `act` (it never decreases), so that the pool may run
/// on the normalised values and `act` after it, on a quarter of them. GELU dips below zero
/// and does not.
pub fn commutes_with_max_pool(act: Activation) -> bool {
    act != Activation::Gelu
}

/// Runs `$body` with the type `$F` standing for `act`'s [`Function`]: one match per call,
/// outside the loops, so that each loop is compiled for one function.
macro_rules! with_function {
    ($act:expr, $F:ident => $body:expr) => {{
        use $crate::Activation as A;
        use $crate::activation as a;
        match $act {
            A::Relu => {
                type $F = a::Relu;
                $body
            }
            A::Elu => {
                type $F = a::Elu;
                $body
            }
            A::Selu => {
                type $F = a::Selu;
                $body
            }
            A::Gelu => {
                type $F = a::Gelu;
                $body
            }
            A::LeakyRelu => {
                type $F = a::LeakyRelu;
                $body
            }
            A::Tanh => {
                type $F = a::Tanh;
                $body
            }
            A::Sigmoid => {
                type $F = a::Sigmoid;
                $body
            }
            A::Linear => {
                type $F = a::Linear;
                $body
            }
        }
    }};
}
pub(super) use with_function;

pub(super) struct Relu;
pub(super) struct Elu;
pub(super) struct Selu;
pub(super) struct Gelu;
pub(super) struct LeakyRelu;
pub(super) struct Tanh;
pub(super) struct Sigmoid;
pub(super) struct Linear;

/// Keras' default slope for `leaky_relu` (what the seed's dictionaries mean by it).
pub const LEAKY_SLOPE: f32 = 0.3;
/// SELU's constants (the paper's, as burn and PyTorch use them).
pub(super) const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
pub(super) const SELU_SCALE: f64 = 1.050_700_987_355_480_5;

impl Function for Relu {
    const DONE_IN_WINDOWS: bool = true;
    /// As burn: values `<= 0` become 0, NaN passes.
    #[inline(always)]
    fn value(z: f32) -> f32 {
        if z <= 0.0 { 0.0 } else { z }
    }
    #[inline(always)]
    fn gate(dy: f32, z: f32) -> f32 {
        if z <= 0.0 { 0.0 } else { dy }
    }
}

impl Function for Linear {
    const DONE_IN_WINDOWS: bool = true;
    #[inline(always)]
    fn value(z: f32) -> f32 {
        z
    }
    #[inline(always)]
    fn gate(dy: f32, _: f32) -> f32 {
        dy
    }
}

impl Function for LeakyRelu {
    const DONE_IN_WINDOWS: bool = false;
    /// As burn: `z < 0` is scaled.
    #[inline(always)]
    fn value(z: f32) -> f32 {
        if z < 0.0 { LEAKY_SLOPE * z } else { z }
    }
    #[inline(always)]
    fn gate(dy: f32, z: f32) -> f32 {
        if z < 0.0 { LEAKY_SLOPE * dy } else { dy }
    }
}

impl Function for Elu {
    const DONE_IN_WINDOWS: bool = false;
    /// `z` above 0, `eᶻ − 1` at or below (α = 1, Keras' default).
    #[inline(always)]
    fn value(z: f32) -> f32 {
        if z <= 0.0 { expm1(z) } else { z }
    }
    #[inline(always)]
    fn gate(dy: f32, z: f32) -> f32 {
        if z <= 0.0 { dy * exp(z) } else { dy }
    }
}

impl Function for Selu {
    const DONE_IN_WINDOWS: bool = false;
    /// `λ·z` at or above 0, `λ·α·(eᶻ − 1)` below (burn's sides).
    #[inline(always)]
    fn value(z: f32) -> f32 {
        if z < 0.0 { (SELU_SCALE * SELU_ALPHA) as f32 * expm1(z) } else { SELU_SCALE as f32 * z }
    }
    #[inline(always)]
    fn gate(dy: f32, z: f32) -> f32 {
        if z < 0.0 { dy * ((SELU_SCALE * SELU_ALPHA) as f32 * exp(z)) } else { dy * SELU_SCALE as f32 }
    }
}

impl Function for Gelu {
    const DONE_IN_WINDOWS: bool = false;
    /// The exact GELU, `z·Φ(z)`, with `Φ(z) = erfc(−z/√2)/2` (no cancellation for negative z).
    #[inline(always)]
    fn value(z: f32) -> f32 {
        0.5 * z * erfc(-z * std::f32::consts::FRAC_1_SQRT_2)
    }
    /// `dy·(Φ(z) + z·φ(z))`, the exact derivative (burn's backward uses the tanh
    /// approximation's).
    #[inline(always)]
    fn gate(dy: f32, z: f32) -> f32 {
        const INV_SQRT_2PI: f32 = 0.398_942_3;
        let cdf = 0.5 * erfc(-z * std::f32::consts::FRAC_1_SQRT_2);
        dy * (cdf + z * (INV_SQRT_2PI * exp(-0.5 * z * z)))
    }
}

impl Function for Tanh {
    const DONE_IN_WINDOWS: bool = false;
    #[inline(always)]
    fn value(z: f32) -> f32 {
        tanh(z)
    }
    #[inline(always)]
    fn gate(dy: f32, z: f32) -> f32 {
        let t = tanh(z);
        dy * (1.0 - t * t)
    }
}

impl Function for Sigmoid {
    const DONE_IN_WINDOWS: bool = false;
    #[inline(always)]
    fn value(z: f32) -> f32 {
        1.0 / (1.0 + exp(-z))
    }
    #[inline(always)]
    fn gate(dy: f32, z: f32) -> f32 {
        let s = 1.0 / (1.0 + exp(-z));
        dy * (s * (1.0 - s))
    }
}

/// `x` clamped to `[lo, hi]`, NaN kept (`f32::clamp` is not a select and may not vectorise).
#[inline(always)]
fn clamp(x: f32, lo: f32, hi: f32) -> f32 {
    let x = if x < lo { lo } else { x };
    if x > hi { hi } else { x }
}

/// `eˣ` within 2 ulp (Cephes' `expf`: `x = n·ln 2 + r`, a degree-5 polynomial in `r`, and
/// `2ⁿ` built in the exponent bits). Clamped to `[−87, 88]`, so it never overflows or goes
/// subnormal: below −87 it returns about 1.6e-38 instead of less.
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts: the first has few mantissa bits, so `n·LN2_HI` is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = clamp(x, -87.0, 88.0);
    let t = x * LOG2_E + ROUND;
    let n = t - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.987_569_2e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let y = p * (r * r) + r + 1.0;
    // 2ⁿ from the integer n in t's low mantissa bits (t = 1.5·2²³ + n; no float-to-int cast,
    // which the compiler left scalar), n in [−126, 127]. A NaN x stays NaN through y.
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    y * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

/// `eˣ − 1`, accurate near 0 too (a Taylor polynomial below |x| = 0.5, where `exp(x) − 1`
/// would cancel).
#[inline(always)]
pub(super) fn expm1(x: f32) -> f32 {
    let mut p = 1.0 / 362_880.0;
    for c in [1.0 / 40_320.0, 1.0 / 5_040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0] {
        p = p * x + c;
    }
    let small = p * x;
    if (x > -0.5) & (x < 0.5) { small } else { exp(x) - 1.0 }
}

/// `tanh x = expm1(2x) / (expm1(2x) + 2)`, with `|x|` clamped to 9 (where tanh is 1 in f32).
#[inline(always)]
pub(super) fn tanh(x: f32) -> f32 {
    let e = expm1(2.0 * clamp(x, -9.0, 9.0));
    e / (e + 2.0)
}

/// The complementary error function within about 1.2e-7 relative (Numerical Recipes'
/// Chebyshev fit `erfcc`, whose error bound holds for every x).
/// (The coefficients as published, though f32 keeps fewer digits.)
#[allow(clippy::excessive_precision)]
#[inline(always)]
pub(super) fn erfc(x: f32) -> f32 {
    let a = if x < 0.0 { -x } else { x };
    let t = 1.0 / (1.0 + 0.5 * a);
    let mut p = 0.170_872_77;
    for c in [
        -0.822_152_23,
        1.488_515_87,
        -1.135_203_98,
        0.278_868_07,
        -0.186_288_06,
        0.096_784_18,
        0.374_091_96,
        1.000_023_68,
    ] {
        p = p * t + c;
    }
    let r = t * exp(p * t - 1.265_512_23 - a * a);
    if x < 0.0 { 2.0 - r } else { r }
}

/// burn's own activation ops: what the model runs off the flex build, and the reference the
/// fused kernels are tested against.
pub fn burn_activation<const D: usize>(act: Activation, x: burn::tensor::Tensor<D>) -> burn::tensor::Tensor<D> {
    use burn::tensor::activation;
    // burn's elu and selu take exp of every value and then keep x where x > 0: past x ≈ 88
    // that exp is inf, and its backward inf · 0 = NaN poisons every gradient below (a trial
    // diverged so from one large dense pre-activation). exp of min(x, 0) is the same where it
    // is kept, and finite everywhere.
    let exponential_part = |x: burn::tensor::Tensor<D>, scale: f64| {
        let negative = x.clone().lower_equal_scalar(0.0);
        let curve = x.clone().clamp_max(0.0).exp().sub_scalar(1.0).mul_scalar(scale);
        (negative, curve)
    };
    match act {
        Activation::Relu => activation::relu(x),
        Activation::Elu => {
            let (negative, curve) = exponential_part(x.clone(), 1.0);
            x.mask_where(negative, curve)
        }
        Activation::Selu => {
            let (negative, curve) = exponential_part(x.clone(), SELU_ALPHA * SELU_SCALE);
            x.mul_scalar(SELU_SCALE).mask_where(negative, curve)
        }
        Activation::Gelu => activation::gelu(x),
        Activation::LeakyRelu => activation::leaky_relu(x, LEAKY_SLOPE as f64),
        Activation::Tanh => activation::tanh(x),
        Activation::Sigmoid => activation::sigmoid(x),
        Activation::Linear => x,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> impl Iterator<Item = f32> {
        (-4000..=4000).map(|i| i as f32 / 200.0).chain([1e-6, -1e-6, 1e-3, -1e-3, 0.0, -0.0])
    }

    /// Largest error of `f` against `reference` (in f64), relative to `max(|reference|, floor)`.
    fn worst(f: impl Fn(f32) -> f32, reference: impl Fn(f64) -> f64, floor: f64) -> (f64, f32) {
        grid()
            .map(|x| {
                let want = reference(x as f64);
                ((f(x) as f64 - want).abs() / want.abs().max(floor), x)
            })
            .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a })
    }

    /// burn's own elu and selu give NaN gradients past x ≈ 88 (exp overflows in the branch
    /// they discard); ours give every activation finite values and gradients at any size, and
    /// the values and slopes of the scalar kernels.
    #[test]
    fn burn_activations_have_finite_gradients_at_any_size() {
        use burn::tensor::{Device, Tensor};
        let device = Device::flex().autodiff();
        let points = [-1000.0f32, -90.0, -1.5, 0.5, 90.0, 1000.0];
        for act in Activation::ALL {
            let x = Tensor::<1>::from_floats(points, &device).require_grad();
            let y = burn_activation(act, x.clone());
            let grads = y.clone().sum().backward();
            let slopes: Vec<f32> = x.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
            let values: Vec<f32> = y.inner().into_data().try_to_vec::<f32>().unwrap();
            assert!(values.iter().chain(&slopes).all(|v| v.is_finite()), "{act:?}: {values:?} {slopes:?}");
            with_function!(act, F => {
                for ((&p, &v), &g) in points.iter().zip(&values).zip(&slopes) {
                    let (want_v, want_g) = (F::value(p), F::gate(1.0, p));
                    assert!((v - want_v).abs() <= 1e-4 * want_v.abs().max(1.0), "{act:?}({p}) = {v}, kernel {want_v}");
                    // burn's GELU backward is the tanh approximation's slope; ours is exact.
                    let tolerance = if act == Activation::Gelu { 2e-2 } else { 1e-4 };
                    assert!((g - want_g).abs() <= tolerance * want_g.abs().max(1.0), "{act:?}'({p}) = {g}, kernel {want_g}");
                }
            });
        }
    }

    #[test]
    fn elementary_functions_are_accurate_to_a_few_ulp() {
        let erfc64 = |x: f64| statrs::function::erf::erfc(x);
        for (name, (err, at), bound) in [
            ("exp", worst(exp, f64::exp, 0.0), 3e-7),
            ("expm1", worst(expm1, f64::exp_m1, 0.0), 3e-7),
            ("tanh", worst(tanh, f64::tanh, 0.0), 5e-7),
            // Relative to erfc itself, up to where it leaves f32's normal range.
            // Relative where erfc > 1e-3; beyond, the f32 rounding of x² makes the relative error
            // grow like x²·2⁻²⁴ (7e-6 at x = 8), and 1e-9 absolute is what GELU sees.
            (
                "erfc",
                worst(|x| if x < 9.0 { erfc(x) } else { 0.0 }, |x| if x < 9.0 { erfc64(x) } else { 0.0 }, 1e-3),
                1e-6,
            ),
        ] {
            assert!(err < bound, "{name}: relative error {err:e} at {at}");
        }
        assert!(exp(f32::NAN).is_nan() && erfc(f32::NAN).is_nan() && tanh(f32::NAN).is_nan());
        assert_eq!((exp(-1000.0) < 2e-38, exp(1000.0).is_finite()), (true, true));
    }

    /// Each function's value and gate against its definition in f64, and the gate against
    /// central differences of the value.
    #[test]
    fn functions_and_gates_match_their_definitions() {
        fn check<F: Function>(name: &str, value: impl Fn(f64) -> f64, slope: impl Fn(f64) -> f64) {
            let (err, at) = worst(F::value, &value, 1.0);
            assert!(err < 1e-6, "{name} value: error {err:e} at {at}");
            let (err, at) = worst(|z| F::gate(1.5, z), |z| 1.5 * slope(z), 1.0);
            assert!(err < 1e-6, "{name} gate: error {err:e} at {at}");
            for z in [-2.5f64, -0.7, 0.3, 1.9] {
                let numeric = (value(z + 1e-6) - value(z - 1e-6)) / 2e-6;
                assert!((numeric - slope(z)).abs() < 1e-6, "{name} slope at {z}: {numeric} vs {}", slope(z));
            }
        }
        let (alpha, scale) = (SELU_ALPHA, SELU_SCALE);
        let cdf = |z: f64| 0.5 * statrs::function::erf::erfc(-z / 2f64.sqrt());
        let pdf = |z: f64| (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let step = |z: f64, below: f64, above: f64| if z <= 0.0 { below } else { above };
        check::<Relu>("relu", |z| z.max(0.0), |z| step(z, 0.0, 1.0));
        check::<Linear>("linear", |z| z, |_| 1.0);
        check::<LeakyRelu>("leaky_relu", |z| if z < 0.0 { 0.3 * z } else { z }, |z| if z < 0.0 { 0.3 } else { 1.0 });
        check::<Elu>("elu", |z| step(z, z.exp_m1(), z), |z| step(z, z.exp(), 1.0));
        check::<Selu>(
            "selu",
            |z| scale * if z < 0.0 { alpha * z.exp_m1() } else { z },
            |z| scale * if z < 0.0 { alpha * z.exp() } else { 1.0 },
        );
        check::<Gelu>("gelu", |z| z * cdf(z), |z| cdf(z) + z * pdf(z));
        check::<Tanh>("tanh", f64::tanh, |z| 1.0 - z.tanh().powi(2));
        check::<Sigmoid>(
            "sigmoid",
            |z| 1.0 / (1.0 + (-z).exp()),
            |z| {
                let s = 1.0 / (1.0 + (-z).exp());
                s * (1.0 - s)
            },
        );
    }

    /// The pool may run before every function but GELU: each of them never decreases (over
    /// the grid, but for an ulp of rounding: tanh's quotient wobbles by one near ±1).
    #[test]
    fn functions_that_commute_with_the_pool_never_decrease() {
        for act in Activation::ALL {
            let values: Vec<f32> =
                (-4000..=4000).map(|i| with_function!(act, F => F::value(i as f32 / 200.0))).collect();
            let monotone = values.windows(2).all(|w| w[1] >= w[0] - 2.0 * f32::EPSILON * w[0].abs());
            assert_eq!(monotone, commutes_with_max_pool(act), "{act:?}");
        }
    }
}
