//! The optimiser a run's settings name: Adam (the seed's, with `weight_decay` as an L2
//! penalty), AdamW (decoupled decay), or SGD with Nesterov momentum. Each is one
//! `ModuleOptimizer`, so the loop and its checkpoints do not care which.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{ModuleOptimizer, SgdConfig};

use super::adam::FusedAdam;
use super::config::{OptimizerKind, TrainConfig};

/// The optimiser of `cfg`, before its first step.
pub fn build(cfg: &TrainConfig) -> ModuleOptimizer {
    match cfg.optimizer {
        OptimizerKind::Adam => FusedAdam::new(cfg.weight_decay).init(),
        OptimizerKind::AdamW => FusedAdam::decoupled(cfg.weight_decay).init(),
        // PyTorch's SGD(nesterov=True) semantics: no dampening.
        OptimizerKind::Sgd => SgdConfig::new()
            .with_momentum(Some(MomentumConfig { momentum: cfg.momentum, dampening: 0.0, nesterov: true }))
            .with_weight_decay((cfg.weight_decay > 0.0).then(|| WeightDecayConfig::new(cfg.weight_decay as f32)))
            .init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::tensor::{Device, Tensor};

    /// SGD with Nesterov momentum, one parameter, two steps, against the textbook update
    /// (v ← μv + g; p ← p − lr·(g + μv)).
    #[test]
    fn sgd_takes_nesterov_steps() {
        let device = Device::flex().autodiff();
        let mut model: Linear = LinearConfig::new(1, 1).with_bias(false).init(&device);
        let p0 = model.weight.val().into_scalar::<f32>() as f64;
        let cfg = TrainConfig { optimizer: OptimizerKind::Sgd, momentum: 0.9, ..TrainConfig::default() };
        let mut optim = build(&cfg);
        let x = Tensor::<2>::from_floats([[2.0]], &device);
        // loss = (w·x)², so dloss/dw = 2·x²·w = 8w.
        let (mut want, mut v, lr) = (p0, 0.0f64, 0.01);
        for _ in 0..2 {
            let grads = GradientsParams::from_grads(model.forward(x.clone()).powi_scalar(2).sum().backward(), &model);
            model = optim.step(lr, model, grads);
            let g = 8.0 * want;
            v = 0.9 * v + g;
            want -= lr * (g + 0.9 * v);
        }
        let got = model.weight.val().into_scalar::<f32>() as f64;
        assert!((got - want).abs() < 1e-5 * want.abs().max(1.0), "{got} vs {want}");
        assert_eq!(model.num_params(), 1);
    }
}
