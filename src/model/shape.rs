//! Shape inference and parameter counting, before any tensor exists: an architecture whose
//! spatial size collapses is rejected with the layer and the sizes involved, and never launched.

use super::params::{Architecture, ConvBlock};
use crate::data::CLASSES;
pub use crate::error::ShapeError;

/// One row of the Keras-style summary.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRow {
    pub name: String,
    pub kind: &'static str,
    /// Channels-last output shape without the batch dimension, as Keras prints it.
    pub shape: Vec<usize>,
    pub params: usize,
    pub non_trainable: usize,
    /// Floating-point operations of its multiply-adds per image, forward (convolutions and
    /// dense layers; the element-wise layers are not counted).
    pub flops: u64,
}

/// The inferred layers and totals.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub rows: Vec<LayerRow>,
}

impl Summary {
    pub fn total(&self) -> usize {
        self.rows.iter().map(|r| r.params).sum()
    }
    pub fn non_trainable(&self) -> usize {
        self.rows.iter().map(|r| r.non_trainable).sum()
    }
    pub fn trainable(&self) -> usize {
        self.total() - self.non_trainable()
    }
    /// Forward FLOPs per image (multiply-adds of convolutions and dense layers, ×2).
    pub fn forward_flops(&self) -> u64 {
        self.rows.iter().map(|r| r.flops).sum()
    }

    /// FLOPs per training image: forward, then the weight gradient and the input gradient of
    /// every layer (each as large as its forward), but the first layer's input gradient, which
    /// nothing needs.
    pub fn training_flops(&self) -> u64 {
        let first = self.rows.iter().find(|r| r.flops > 0).map_or(0, |r| r.flops);
        3 * self.forward_flops() - first
    }

    /// Whether a layer of this name is in the network (`conv2_skip`).
    pub fn has_layer(&self, name: &str) -> bool {
        self.rows.iter().any(|r| r.name == name)
    }

    /// Features entering the first dense layer.
    pub fn flat_features(&self) -> usize {
        self.rows.iter().find(|r| r.name == "flatten").map_or(0, |r| r.shape[0])
    }

    /// Renders the table as Keras prints it.
    pub fn render(&self) -> String {
        let rule = |c: char| c.to_string().repeat(72);
        let mut out = format!("{:<36}{:<24}{:>12}\n{}\n", "Layer (type)", "Output Shape", "Param #", rule('='));
        for r in &self.rows {
            let shape = format!("(None, {})", r.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "));
            out.push_str(&format!("{:<36}{:<24}{:>12}\n", format!("{} ({})", r.name, r.kind), shape, group(r.params)));
        }
        out.push_str(&format!(
            "{}\nTotal params: {}\nTrainable params: {}\nNon-trainable params: {}\n",
            rule('='),
            group(self.total()),
            group(self.trainable()),
            group(self.non_trainable())
        ));
        out.push_str(&format!(
            "FLOPs per image: forward {:.1} M, training step {:.1} M (convolutions and dense layers)\n",
            self.forward_flops() as f64 / 1e6,
            self.training_flops() as f64 / 1e6
        ));
        out
    }
}

/// 3467402 → "3,467,402".
pub fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn row(name: String, kind: &'static str, shape: Vec<usize>, params: usize, non_trainable: usize) -> LayerRow {
    LayerRow { name, kind, shape, params, non_trainable, flops: 0 }
}

/// A convolution or dense row: `macs` multiply-adds per image.
fn compute_row(name: String, kind: &'static str, shape: Vec<usize>, params: usize, macs: usize) -> LayerRow {
    LayerRow { flops: 2 * macs as u64, ..row(name, kind, shape, params, 0) }
}

/// Infers every layer's output shape for 28×28×1 inputs. Batch-norm counts 4 values per
/// feature, half of them (the running mean and variance) non-trainable, as Keras does.
pub fn infer(arch: &Architecture) -> Result<Summary, ShapeError> {
    let (mut h, mut w, mut c) = (28usize, 28usize, 1usize);
    let mut rows = Vec::new();
    for (i, b) in arch.conv.iter().enumerate() {
        let name = format!("conv{i}");
        if b.pad > 0 {
            h += 2 * b.pad;
            w += 2 * b.pad;
            rows.push(row(format!("{name}_pad"), "ZeroPadding2D", vec![h, w, c], 0, 0));
        }
        if b.filter > h || b.filter > w {
            return Err(ShapeError {
                layer: name,
                message: format!(
                    "a {0}×{0} filter does not fit the {h}×{w} input (after padding {1}); use a smaller filter, more padding, or less downsampling before it",
                    b.filter, b.pad
                ),
            });
        }
        let input = (h - 2 * b.pad, w - 2 * b.pad, c);
        h = (h - b.filter) / b.stride + 1;
        w = (w - b.filter) / b.stride + 1;
        let weights = b.filter * b.filter * c * b.channels + b.channels;
        let macs = h * w * b.channels * b.filter * b.filter * c;
        c = b.channels;
        rows.push(compute_row(name.clone(), "Conv2D", vec![h, w, c], weights, macs));
        rows.push(row(format!("{name}_bn"), "BatchNormalization", vec![h, w, c], 4 * c, 2 * c));
        if b.residual {
            rows.extend(skip_rows(&name, b, input, (h, w))?);
        }
        rows.push(row(format!("{name}_act"), b.activation.name(), vec![h, w, c], 0, 0));
        if b.pool > 1 {
            if b.pool > h || b.pool > w {
                return Err(ShapeError {
                    layer: format!("{name}_pool"),
                    message: format!(
                        "a {0}×{0} max-pool does not fit the {h}×{w} feature map; use a smaller pool or less downsampling before it",
                        b.pool
                    ),
                });
            }
            h /= b.pool;
            w /= b.pool;
            rows.push(row(format!("{name}_pool"), "MaxPooling2D", vec![h, w, c], 0, 0));
        }
    }
    let mut features = h * w * c;
    rows.push(row("flatten".into(), "Flatten", vec![features], 0, 0));
    let heads = arch.fc.iter().map(|b| (b.neurons, b.activation.name())).chain([(CLASSES, "softmax")]);
    for (i, (neurons, act)) in heads.enumerate() {
        let name = if i == arch.fc.len() { "output".to_string() } else { format!("fc{i}") };
        rows.push(row(format!("{name}_bn"), "BatchNormalization", vec![features], 4 * features, 2 * features));
        rows.push(row(format!("{name}_dropout"), "Dropout", vec![features], 0, 0));
        rows.push(compute_row(name.clone(), "Dense", vec![neurons], features * neurons + neurons, features * neurons));
        rows.push(row(format!("{name}_act"), act, vec![neurons], 0, 0));
        features = neurons;
    }
    check_size(Summary { rows })
}

/// Whether block `b` of a `(h, w, c)` input needs a projection on its skip: the identity
/// serves when the convolution keeps the size and the channels.
pub fn needs_projection(b: &ConvBlock, input: (usize, usize, usize), output: (usize, usize)) -> bool {
    input != (output.0, output.1, b.channels)
}

/// The rows of a residual block's skip: a 1×1 convolution (stride as the block's) and batch
/// norm where the shapes differ, then the add. Refused when no 1×1 stride-s convolution gives
/// the block's output size (the block's padding does not keep the size).
fn skip_rows(
    name: &str,
    b: &ConvBlock,
    input: (usize, usize, usize),
    output: (usize, usize),
) -> Result<Vec<LayerRow>, ShapeError> {
    let (h, w) = output;
    let shape = vec![h, w, b.channels];
    let add = row(format!("{name}_add"), "Add", shape.clone(), 0, 0);
    if !needs_projection(b, input, output) {
        return Ok(vec![add]);
    }
    let projected = ((input.0 - 1) / b.stride + 1, (input.1 - 1) / b.stride + 1);
    if projected != output {
        return Err(ShapeError {
            layer: format!("{name}_residual"),
            message: format!(
                "the skip cannot match the block's {h}×{w} output from its {}×{} input; use pad = (filter − 1) / 2 = {} so the convolution keeps the size, or conv{}_residual = 0",
                input.0,
                input.1,
                (b.filter - 1) / 2,
                name.trim_start_matches("conv")
            ),
        });
    }
    let (c_in, c) = (input.2, b.channels);
    Ok(vec![
        compute_row(format!("{name}_skip"), "Conv2D", shape.clone(), c_in * c + c, h * w * c * c_in),
        row(format!("{name}_skip_bn"), "BatchNormalization", shape, 4 * c, 2 * c),
        add,
    ])
}

/// Most parameters a network may have: far beyond anything this tool trains on a CPU, and
/// small enough that every count and allocation stays representable.
pub const MAX_PARAMS: usize = 200_000_000;
/// Most values one layer may output per image (a batch of 100 then needs at most 1.6 GB).
pub const MAX_ACTIVATIONS: usize = 4_000_000;

/// Refuses networks too large to allocate, naming the first layer past a cap.
fn check_size(summary: Summary) -> Result<Summary, ShapeError> {
    let mut total = 0usize;
    for r in &summary.rows {
        let values = r.shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d)).unwrap_or(usize::MAX);
        if values > MAX_ACTIVATIONS {
            return Err(ShapeError {
                layer: r.name.clone(),
                message: format!(
                    "outputs {} = {} values per image (cap {}); use fewer channels or more downsampling before it",
                    r.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×"),
                    group(values),
                    group(MAX_ACTIVATIONS)
                ),
            });
        }
        total = total.saturating_add(r.params);
        if total > MAX_PARAMS {
            return Err(ShapeError {
                layer: r.name.clone(),
                message: format!(
                    "the network passes {} parameters here (cap {}); use fewer channels or neurons",
                    group(total),
                    group(MAX_PARAMS)
                ),
            });
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::params::Activation;

    #[test]
    fn seed_model_has_the_seed_parameter_count() {
        let s = infer(&Architecture::default()).unwrap();
        assert_eq!(s.total(), 3_467_402);
        assert_eq!(s.trainable(), 3_452_874);
        assert_eq!(s.non_trainable(), 14_528);
        assert_eq!(s.flat_features(), 7 * 7 * 128);
        // conv 1→32 and 32→64 at 28×28, 64→128 at 14×14 (3×3), dense 6272→512→256→10.
        let macs = 784 * 32 * 9 + 784 * 64 * 9 * 32 + 196 * 128 * 9 * 64 + 6272 * 512 + 512 * 256 + 256 * 10;
        assert_eq!(s.forward_flops(), 2 * macs);
        assert_eq!(s.training_flops(), 6 * macs - 2 * 784 * 32 * 9, "about 195 MFLOP");
        let text = s.render();
        assert!(text.contains("Total params: 3,467,402"), "{text}");
        assert!(text.contains("Non-trainable params: 14,528"), "{text}");
    }

    fn conv(pad: usize, filter: usize, stride: usize, pool: usize) -> ConvBlock {
        ConvBlock { pad, channels: 8, filter, stride, pool, activation: Activation::Relu, residual: false }
    }

    #[test]
    fn residual_blocks_add_an_identity_or_a_projection() {
        let block = |channels, stride, pad, filter| ConvBlock {
            pad,
            channels,
            filter,
            stride,
            pool: 1,
            activation: Activation::Relu,
            residual: true,
        };
        let arch = |blocks: Vec<ConvBlock>| Architecture { conv: blocks, fc: vec![], ..Architecture::default() };
        // 1 → 8 channels: a projection (1·8 + 8 weights, 4·8 batch norm); 8 → 8: the identity;
        // 8 → 16 at stride 2 (28 → 14): a projection at stride 2.
        let s = infer(&arch(vec![block(8, 1, 1, 3), block(8, 1, 1, 3), block(16, 2, 1, 3)])).unwrap();
        let names: Vec<&str> = s.rows.iter().map(|r| r.name.as_str()).collect();
        assert!(names.contains(&"conv0_skip") && !names.contains(&"conv1_skip") && names.contains(&"conv2_skip"));
        assert_eq!(names.iter().filter(|n| n.ends_with("_add")).count(), 3);
        let plain = infer(&arch(
            [block(8, 1, 1, 3), block(8, 1, 1, 3), block(16, 2, 1, 3)]
                .into_iter()
                .map(|b| ConvBlock { residual: false, ..b })
                .collect(),
        ))
        .unwrap();
        assert_eq!(s.total() - plain.total(), (8 + 8 + 4 * 8) + (8 * 16 + 16 + 4 * 16));
        assert_eq!(s.forward_flops() - plain.forward_flops(), 2 * (28 * 28 * 8 + 14 * 14 * 16 * 8) as u64);
        assert_eq!(s.flat_features(), 14 * 14 * 16);
        // A 3×3 convolution without padding shrinks 28 → 26: no 1×1 skip reaches that size.
        let e = infer(&arch(vec![block(8, 1, 0, 3)])).unwrap_err();
        assert_eq!(e.layer, "conv0_residual");
        assert!(e.message.contains("pad = (filter − 1) / 2 = 1") && e.message.contains("conv0_residual = 0"), "{e}");
    }

    #[test]
    fn feasible_and_collapsing_configurations() {
        // (blocks, Ok(flat spatial side) or Err(layer), why)
        let cases: Vec<(Vec<ConvBlock>, Result<usize, &str>, &str)> = vec![
            (vec![conv(0, 3, 1, 1)], Ok(26), "valid 3x3"),
            (vec![conv(1, 3, 1, 2)], Ok(14), "same-size conv then pool 2"),
            (vec![conv(3, 4, 3, 3)], Ok(3), "seed_sagemaker extreme: (34-4)/3+1=11, /3=3"),
            (vec![conv(1, 3, 3, 3), conv(1, 3, 3, 3)], Err("conv1_pool"), "second pool on a 1x1 map"),
            (vec![conv(0, 3, 3, 3), conv(0, 4, 1, 1)], Err("conv1"), "4x4 filter on a 3x3 map"),
            (vec![conv(0, 30, 1, 1)], Err("conv0"), "filter wider than the image"),
            (vec![ConvBlock { channels: 2048, ..conv(32, 1, 1, 1) }], Err("conv0"), "2048 channels of 92×92 per image"),
        ];
        for (blocks, expected, why) in cases {
            let arch = Architecture { conv: blocks, ..Architecture::default() };
            match (infer(&arch), expected) {
                (Ok(s), Ok(side)) => assert_eq!(s.flat_features(), side * side * 8, "{why}"),
                (Err(e), Err(layer)) => {
                    assert_eq!(e.layer, layer, "{why}");
                    assert!(e.message.contains('×'), "message names the sizes: {}", e.message);
                }
                (got, want) => panic!("{why}: got {got:?}, want {want:?}"),
            }
        }
    }
}
