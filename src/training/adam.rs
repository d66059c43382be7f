//! Adam for training: burn's optimizer (same state, so the same `last_optim.bpk` checkpoints,
//! and the same arithmetic), with the update done by our one-pass kernel on flex
//! ([`crate::kernels::adam`]); other backends run burn's own Adam.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::{Adam, AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer};
use burn::tensor::{Device, Tensor};

use crate::kernels::adam::AdamStep;

/// Keras' epsilon (burn's default is 1e-5), so the seed's learning rates transfer.
const EPSILON: f32 = 1e-7;

#[derive(Clone)]
pub struct FusedAdam {
    burn: Adam,
    weight_decay: Option<f32>,
    decoupled_decay: Option<f32>,
}

impl FusedAdam {
    /// Adam with Keras' epsilon and an optional L2 penalty.
    pub fn new(weight_decay: f64) -> FusedAdam {
        let weight_decay = (weight_decay > 0.0).then_some(weight_decay as f32);
        let mut config = AdamConfig::new().with_epsilon(EPSILON);
        if let Some(penalty) = weight_decay {
            config = config.with_weight_decay(Some(WeightDecayConfig::new(penalty)));
        }
        FusedAdam { burn: config.build(), weight_decay, decoupled_decay: None }
    }

    /// AdamW: Adam with Keras' epsilon and decoupled weight decay, the same update as burn's
    /// `AdamW` (its state is Adam's, so the checkpoints have one format).
    pub fn decoupled(weight_decay: f64) -> FusedAdam {
        let decoupled_decay = (weight_decay > 0.0).then_some(weight_decay as f32);
        FusedAdam { burn: AdamConfig::new().with_epsilon(EPSILON).build(), weight_decay: None, decoupled_decay }
    }

    pub fn init(self) -> ModuleOptimizer {
        ModuleOptimizer::from(self)
    }
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if !crate::backend::uses_kernels() {
            // AdamW's decay is a shrink of the weights before Adam's own step.
            let tensor = match self.decoupled_decay {
                Some(decay) => tensor.mul_scalar(1.0 - lr * decay as f64),
                None => tensor,
            };
            return self.burn.step(lr, tensor, grad, state);
        }
        let (time, m1, m2) = match state {
            Some(s) => (s.momentum.time, s.momentum.moment_1, s.momentum.moment_2),
            None => (0, grad.zeros_like(), grad.zeros_like()),
        };
        // burn's defaults for the betas (AdamConfig keeps them private).
        let step = AdamStep {
            lr,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: EPSILON,
            time: time + 1,
            weight_decay: self.weight_decay,
            decoupled_decay: self.decoupled_decay,
        };
        let (tensor, m1, m2) = crate::kernels::adam_step(tensor, grad, m1, m2, step);
        (tensor, Some(AdamState::new(AdaptiveMomentumState::new(time + 1, m1, m2))))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <Adam as Optimizer>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{AdamWConfig, GradientsParams};
    use burn::tensor::Distribution;

    /// Three steps of our Adam and of burn's on the same model and batches end at the same
    /// parameters, with and without weight decay; the largest difference is printed.
    #[test]
    fn fused_adam_follows_burns_adam() {
        for weight_decay in [0.0, 0.01] {
            let device = Device::flex().autodiff();
            device.seed(3);
            let mut ours: Linear = LinearConfig::new(7, 5).init(&device);
            let mut theirs = ours.clone();
            let start = ours.weight.val();
            let mut fused = FusedAdam::new(weight_decay).init();
            let mut config = AdamConfig::new().with_epsilon(EPSILON);
            if weight_decay > 0.0 {
                config = config.with_weight_decay(Some(WeightDecayConfig::new(weight_decay as f32)));
            }
            let mut reference = config.init();
            for _ in 0..3 {
                let x = Tensor::<2>::random([4, 7], Distribution::Default, &device);
                let loss = |m: &Linear| m.forward(x.clone()).powi_scalar(2).sum();
                let grads = GradientsParams::from_grads(loss(&ours).backward(), &ours);
                ours = fused.step(1e-2, ours, grads);
                let grads = GradientsParams::from_grads(loss(&theirs).backward(), &theirs);
                theirs = reference.step(1e-2, theirs, grads);
            }
            let diff = (ours.weight.val() - theirs.weight.val()).abs().max().into_scalar::<f32>();
            let moved = (ours.weight.val() - start).abs().max().into_scalar::<f32>();
            println!("weight decay {weight_decay}: max difference {diff:e}");
            assert!(diff < 1e-6, "weight decay {weight_decay}: differs by {diff}");
            assert!(moved > 1e-3, "the parameters moved");
            assert_eq!(ours.num_params(), theirs.num_params());
        }
    }

    /// Our AdamW and burn's end at the same parameters after three steps, and differ from
    /// Adam with the same decay as an L2 penalty (the decay is really decoupled).
    #[test]
    fn fused_adamw_follows_burns_adamw() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let start: Linear = LinearConfig::new(7, 5).init(&device);
        let x = Tensor::<2>::random([4, 7], Distribution::Default, &device);
        let loss = |m: &Linear| m.forward(x.clone()).powi_scalar(2).sum();
        let run = |mut optim: burn::optim::ModuleOptimizer| {
            let mut model = start.clone();
            for _ in 0..3 {
                let grads = GradientsParams::from_grads(loss(&model).backward(), &model);
                model = optim.step(1e-2, model, grads);
            }
            model.weight.val()
        };
        let ours = run(FusedAdam::decoupled(0.5).init());
        let theirs = run(AdamWConfig::new().with_epsilon(EPSILON).with_weight_decay(0.5).init());
        let l2 = run(FusedAdam::new(0.5).init());
        let diff = (ours.clone() - theirs).abs().max().into_scalar::<f32>();
        println!("AdamW: max difference {diff:e}");
        assert!(diff < 1e-6, "differs from burn's AdamW by {diff}");
        assert!((ours - l2).abs().max().into_scalar::<f32>() > 1e-4, "AdamW is not Adam with an L2 penalty");
    }
}
