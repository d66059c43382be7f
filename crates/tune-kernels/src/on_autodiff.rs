//! The kernels under autodiff: each forward operation records a node whose backward pass asks
//! the inner backend for the gradients, keeping only what that needs (as checkpoints).

use burn::backend::Autodiff;
use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;

use crate::activation::Activation;
use crate::extension::Kernels;

/// inner backend for all three gradients at once.
#[derive(Debug)]
struct ConvBlockBackward;

impl<B: Kernels> Backward<B, 3> for ConvBlockBackward {
    type State = (NodeId, NodeId, [usize; 2], [usize; 2]);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, stride, padding) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let weight = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(weight_state);
        let (dx, dw, db) = B::conv2d_block_backward(x, weight, grad, stride, padding, node_x.is_some());
        for (node, g) in [(node_x, dx), (node_weight, dw), (node_bias, db)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// The autodiff node of [`Kernels::batch_norm_train_block`]: keeps input, gamma and beta
/// (as checkpoints) and the batch statistics.
#[derive(Debug)]
struct BatchNormBackward;

/// Checkpointed inputs and batch statistics of one batch-norm node.
#[derive(Debug, Clone)]
struct BatchNormState<T> {
    x: NodeId,
    gamma: NodeId,
    beta: NodeId,
    mean: T,
    variance: T,
    epsilon: f64,
    act: Activation,
    pool: usize,
}

impl<B: Kernels> Backward<B, 3> for BatchNormBackward {
    type State = BatchNormState<B::FloatTensorPrimitive>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let st = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(st.x);
        let gamma = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(st.gamma);
        let beta = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(st.beta);
        let (dx, d_gamma, d_beta) =
            B::batch_norm_train_block_backward(x, gamma, beta, st.mean, st.variance, grad, st.epsilon, st.act, st.pool);
        for (node, g) in [(node_x, dx), (node_gamma, d_gamma), (node_beta, d_beta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

/// The autodiff node of [`Kernels::max_pool2d_block`]: keeps the input, from which the
/// backward pass finds each window's maximum again.
#[derive(Debug)]
struct MaxPoolBackward;

impl<B: Kernels> Backward<B, 1> for MaxPoolBackward {
    type State = (NodeId, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, k) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, B::max_pool2d_block_backward(x, grad, k));
        }
    }
}

impl<B: Kernels, C: CheckpointStrategy> Kernels for Autodiff<B, C> {
    fn max_pool2d_block(x: FloatTensor<Self>, k: usize) -> FloatTensor<Self> {
        match MaxPoolBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                prep.finish((x_state, k), B::max_pool2d_block(x.into_primitive(), k))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::max_pool2d_block(x.into_primitive(), k)),
        }
    }

    fn batch_norm_train_block(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        act: Activation,
        pool: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let prep = BatchNormBackward.prepare::<C>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful();
        let forward = |x: FloatTensor<Self>, gamma: FloatTensor<Self>, beta: FloatTensor<Self>| {
            B::batch_norm_train_block(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                epsilon,
                act,
                pool,
            )
        };
        let (output, mean, variance) = match prep {
            OpsKind::Tracked(mut prep) => {
                let (x_id, gamma_id, beta_id) = (prep.checkpoint(&x), prep.checkpoint(&gamma), prep.checkpoint(&beta));
                let (y, mean, variance) = forward(x, gamma, beta);
                let state = BatchNormState {
                    x: x_id,
                    gamma: gamma_id,
                    beta: beta_id,
                    mean: mean.clone(),
                    variance: variance.clone(),
                    epsilon,
                    act,
                    pool,
                };
                (prep.finish(state, y), mean, variance)
            }
            OpsKind::UnTracked(prep) => {
                let (y, mean, variance) = forward(x, gamma, beta);
                (prep.finish(y), mean, variance)
            }
        };
        (output, FloatTensor::<Self>::new(mean), FloatTensor::<Self>::new(variance))
    }

    fn conv2d_block(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        match ConvBlockBackward.prepare::<C>([x.node(), weight.node(), bias.node()]).compute_bound().stateful() {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let out = B::conv2d_block(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                    stride,
                    padding,
                );
                prep.finish((x_state, weight_state, stride, padding), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv2d_block(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                stride,
                padding,
            )),
        }
    }
}
