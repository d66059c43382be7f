//! The activations and their backward passes in burn's tensor ops: what the [`super::Kernels`]
//! trait's default bodies apply, and so the statement our fused kernels are tested against.

use burn::backend::Backend;
use burn::backend::tensor::FloatTensor;

use super::activation::{LEAKY_SLOPE, SELU_ALPHA, SELU_SCALE};
use crate::activation::Activation;

/// `min(z, 0)` as `−relu(−z)`.
fn negative_part<B: Backend>(z: FloatTensor<B>) -> FloatTensor<B> {
    B::float_neg(B::relu(B::float_neg(z)))
}

/// `e^min(z, 0)`: ELU's and SELU's slope below zero, and 1 above.
fn exp_of_negative_part<B: Backend>(z: FloatTensor<B>) -> FloatTensor<B> {
    B::float_exp(negative_part::<B>(z))
}

/// Φ(z), the standard normal distribution function.
fn normal_cdf<B: Backend>(z: FloatTensor<B>) -> FloatTensor<B> {
    let erf = B::float_erf(B::float_mul_scalar(z, std::f64::consts::FRAC_1_SQRT_2.into()));
    B::float_mul_scalar(B::float_add_scalar(erf, 1.0.into()), 0.5.into())
}

/// `act(z)`.
pub fn activate<B: Backend>(act: Activation, z: FloatTensor<B>) -> FloatTensor<B> {
    match act {
        Activation::Linear => z,
        Activation::Relu => B::relu(z),
        Activation::LeakyRelu => B::leaky_relu(z, (LEAKY_SLOPE as f64).into()),
        Activation::Gelu => B::gelu(z),
        Activation::Sigmoid => B::sigmoid(z),
        Activation::Tanh => B::float_tanh(z),
        // relu(z) + e^min(z, 0) − 1.
        Activation::Elu => {
            B::float_add_scalar(B::float_add(B::relu(z.clone()), exp_of_negative_part::<B>(z)), (-1.0).into())
        }
        // λ·(relu(z) + α·(e^min(z, 0) − 1)).
        Activation::Selu => {
            let below = B::float_mul_scalar(
                B::float_add_scalar(exp_of_negative_part::<B>(z.clone()), (-1.0).into()),
                SELU_ALPHA.into(),
            );
            B::float_mul_scalar(B::float_add(B::relu(z), below), SELU_SCALE.into())
        }
    }
}

/// The gradient `grad` of `act(z)` passed back to `z`.
pub fn activate_backward<B: Backend>(act: Activation, z: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    let above = |z: FloatTensor<B>, grad: FloatTensor<B>| B::relu_backward(B::relu(z), grad);
    match act {
        Activation::Linear => grad,
        Activation::Relu => above(z, grad),
        // slope·grad + (1 − slope)·grad above zero.
        Activation::LeakyRelu => B::float_add(
            B::float_mul_scalar(grad.clone(), (LEAKY_SLOPE as f64).into()),
            B::float_mul_scalar(above(z, grad), (1.0 - LEAKY_SLOPE as f64).into()),
        ),
        Activation::Elu => B::float_mul(grad, exp_of_negative_part::<B>(z)),
        // λ·(grad above zero + α·e^z·grad below it).
        Activation::Selu => {
            let above_zero = above(z.clone(), grad.clone());
            let below_zero = B::float_sub(grad, above_zero.clone());
            let below = B::float_mul_scalar(B::float_mul(below_zero, exp_of_negative_part::<B>(z)), SELU_ALPHA.into());
            B::float_mul_scalar(B::float_add(above_zero, below), SELU_SCALE.into())
        }
        // Φ(z) + z·φ(z), the exact derivative.
        Activation::Gelu => {
            let density = B::float_exp(B::float_mul_scalar(B::float_mul(z.clone(), z.clone()), (-0.5).into()));
            let density = B::float_mul_scalar(density, (1.0 / (2.0 * std::f64::consts::PI).sqrt()).into());
            let slope = B::float_add(normal_cdf::<B>(z.clone()), B::float_mul(z, density));
            B::float_mul(grad, slope)
        }
        Activation::Tanh => {
            let t = B::float_tanh(z);
            let slope = B::float_add_scalar(B::float_neg(B::float_mul(t.clone(), t)), 1.0.into());
            B::float_mul(grad, slope)
        }
        Activation::Sigmoid => B::sigmoid_backward(B::sigmoid(z), grad),
    }
}
