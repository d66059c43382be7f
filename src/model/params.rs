//! The seed's parameter dictionary: flat keys `conv{i}_{pad,channels,filter,stride,pool,activation}`,
//! `fc{i}_{neurons,activation}`, `drop_rate`, optional depth keys `n_conv` / `n_fc`, and the
//! training keys `lr`, `batch_size`, `weight_decay`. Params files are TOML with these keys —
//! the same keys a search space samples — and are checked into an [`Architecture`].

use std::path::Path;

use crate::error::{Result, TuneError};

pub use super::keys::*;
pub use super::value::{Init, Params, Value};
pub use tune_kernels::Activation;

/// zero-pad → conv → batch-norm → activation → max-pool; with `residual`, the block's input
/// is added to the batch-normed convolution before the activation (ResNet's v1 order),
/// through a 1×1 convolution and batch norm where the channels or the stride change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvBlock {
    pub pad: usize,
    pub channels: usize,
    pub filter: usize,
    pub stride: usize,
    pub pool: usize,
    pub activation: Activation,
    pub residual: bool,
}

/// batch-norm → dropout → dense → activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FcBlock {
    pub neurons: usize,
    pub activation: Activation,
}

/// A checked architecture. The 10-way softmax output (batch-norm → dropout → dense 10) is implied.
#[derive(Debug, Clone, PartialEq)]
pub struct Architecture {
    pub conv: Vec<ConvBlock>,
    pub fc: Vec<FcBlock>,
    pub drop_rate: f64,
    pub init: Init,
}

impl Default for Architecture {
    /// The seed's model: conv 32/64/128, 3×3, stride 1, pad 1, pools 1/2/2, relu; fc 512/256 relu.
    fn default() -> Self {
        let conv = |channels, pool| ConvBlock {
            pad: 1,
            channels,
            filter: 3,
            stride: 1,
            pool,
            activation: Activation::Relu,
            residual: false,
        };
        let fc = |neurons| FcBlock { neurons, activation: Activation::Relu };
        Architecture {
            conv: vec![conv(32, 1), conv(64, 2), conv(128, 2)],
            fc: vec![fc(512), fc(256)],
            drop_rate: 0.3,
            init: DEFAULT_INIT,
        }
    }
}

impl Architecture {
    /// The dictionary form, as written to `params.toml`.
    pub fn to_params(&self) -> Params {
        let mut p = Params::new();
        p.insert("n_conv".into(), Value::Int(self.conv.len() as i64));
        for (i, b) in self.conv.iter().enumerate() {
            for (k, v) in
                [("pad", b.pad), ("channels", b.channels), ("filter", b.filter), ("stride", b.stride), ("pool", b.pool)]
            {
                p.insert(format!("conv{i}_{k}"), Value::Int(v as i64));
            }
            p.insert(format!("conv{i}_activation"), Value::Str(b.activation.name().into()));
            // Only when on, so the params files of plain networks read as they always have.
            if b.residual {
                p.insert(format!("conv{i}_residual"), Value::Int(1));
            }
        }
        p.insert("n_fc".into(), Value::Int(self.fc.len() as i64));
        for (i, b) in self.fc.iter().enumerate() {
            p.insert(format!("fc{i}_neurons"), Value::Int(b.neurons as i64));
            p.insert(format!("fc{i}_activation"), Value::Str(b.activation.name().into()));
        }
        p.insert("drop_rate".into(), Value::Float(self.drop_rate));
        p.insert("init".into(), Value::Str(self.init.name().into()));
        p
    }

    /// Checks a dictionary into an architecture. Missing architecture keys fall back to the seed's
    /// default: no `conv*` key keeps the default conv blocks, and within a block only `channels`
    /// (conv) or `neurons` (fc) is required. `file` is named in every error.
    pub fn from_params(params: &Params, file: &Path) -> Result<Architecture> {
        let err = |key: &str, problem: String, fix: String| TuneError::Config {
            file: file.to_path_buf(),
            key: key.to_string(),
            problem,
            fix,
        };
        for key in params.keys() {
            if !is_known_key(key) {
                return Err(err(key, "unknown parameter".into(), format!("use one of {}", known_keys_help())));
            }
        }
        for (key, v) in params {
            let domain = Domain::of(key);
            if !domain.accepts(v) {
                return Err(err(
                    key,
                    format!("`{v}` is not accepted"),
                    format!("set `{key}` to {}", domain.describe()),
                ));
            }
        }
        // Every value is in its domain from here on.
        let int = |key: &str| -> Option<usize> {
            match params.get(key) {
                Some(Value::Int(v)) => Some(*v as usize),
                _ => None,
            }
        };
        let activation = |key: &str| -> Activation {
            match params.get(key) {
                Some(Value::Str(s)) => Activation::parse(s).expect("checked above"),
                _ => Activation::Relu,
            }
        };
        let default = Architecture::default();
        let conv_blocks = block_count(params, "conv", "channels", int("n_conv"), file)?;
        let conv = match conv_blocks {
            None => default.conv.clone(),
            Some(n) => (0..n)
                .map(|i| {
                    let k = |s: &str| format!("conv{i}_{s}");
                    Ok(ConvBlock {
                        pad: int(&k("pad")).unwrap_or(1),
                        channels: int(&k("channels")).expect("block_count checked channels"),
                        filter: int(&k("filter")).unwrap_or(3),
                        stride: int(&k("stride")).unwrap_or(1),
                        pool: int(&k("pool")).unwrap_or(1),
                        activation: activation(&k("activation")),
                        residual: int(&k("residual")) == Some(1),
                    })
                })
                .collect::<Result<_>>()?,
        };
        let fc_blocks = block_count(params, "fc", "neurons", int("n_fc"), file)?;
        let fc = match fc_blocks {
            None => default.fc.clone(),
            Some(n) => (0..n)
                .map(|i| {
                    Ok(FcBlock {
                        neurons: int(&format!("fc{i}_neurons")).expect("block_count checked neurons"),
                        activation: activation(&format!("fc{i}_activation")),
                    })
                })
                .collect::<Result<_>>()?,
        };
        let drop_rate = params.get("drop_rate").and_then(Value::as_f64).unwrap_or(default.drop_rate);
        let init = match params.get("init") {
            Some(Value::Str(s)) => Init::parse(s).expect("checked above"),
            _ => default.init,
        };
        Ok(Architecture { conv, fc, drop_rate, init })
    }
}

/// Number of blocks of a kind: `n_key` when given, else the count of consecutive blocks that
/// have their required key; `None` when no key of that kind appears (keep the default).
fn block_count(
    params: &Params,
    kind: &str,
    required: &str,
    explicit: Option<usize>,
    file: &Path,
) -> Result<Option<usize>> {
    let indices: Vec<usize> = params.keys().filter_map(|k| block_index(k, kind)).collect();
    if explicit.is_none() && indices.is_empty() {
        return Ok(None);
    }
    let present = |i: usize| params.contains_key(&format!("{kind}{i}_{required}"));
    let n = match explicit {
        Some(n) => n,
        None => indices.iter().max().map_or(0, |m| m + 1),
    };
    if n > MAX_BLOCKS as usize {
        return Err(TuneError::Config {
            file: file.to_path_buf(),
            key: format!("n_{kind}"),
            problem: format!("{n} {kind} blocks (at most {MAX_BLOCKS})"),
            fix: format!("use at most {MAX_BLOCKS} {kind} blocks"),
        });
    }
    if let Some(i) = (0..n).find(|&i| !present(i)) {
        return Err(TuneError::Config {
            file: file.to_path_buf(),
            key: format!("{kind}{i}_{required}"),
            problem: format!("block {kind}{i} is part of the network ({n} {kind} blocks) but has no `{required}`"),
            fix: format!("add `{kind}{i}_{required}`, or lower `n_{kind}`"),
        });
    }
    Ok(Some(n))
}

/// Reads a params TOML file.
pub fn read_params(path: &Path) -> Result<Params> {
    let text = crate::files::read_text(path)?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| TuneError::ConfigSyntax { file: path.to_path_buf(), message: e.to_string() })?;
    params_from_table(&table, path)
}

/// A dictionary from a TOML table: every value a number or a string, the error naming the key
/// otherwise (a boolean, an array or a table has no meaning in the seed's dictionary).
pub fn params_from_table(table: &toml::Table, file: &Path) -> Result<Params> {
    table
        .iter()
        .map(|(key, v)| {
            let value = Value::from_toml(v).ok_or_else(|| TuneError::Config {
                file: file.to_path_buf(),
                key: key.clone(),
                problem: format!("`{v}` is not a number or a string"),
                fix: if key == "aug_flip" {
                    "write aug_flip = 1 (or 0)".into()
                } else {
                    format!("give `{key}` a single number or name")
                },
            })?;
            Ok((key.clone(), value))
        })
        .collect()
}

/// Writes a params TOML file.
pub fn write_params(path: &Path, params: &Params) -> Result<()> {
    let text = toml::to_string(params).expect("a flat map of numbers and strings serialises");
    crate::files::write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Architecture> {
        Architecture::from_params(&toml::from_str(text).unwrap(), Path::new("p.toml"))
    }

    #[test]
    fn default_round_trips_through_the_dictionary() {
        let arch = Architecture::default();
        assert_eq!(Architecture::from_params(&arch.to_params(), Path::new("x")).unwrap(), arch);
        assert_eq!(parse("lr = 0.01").unwrap(), arch, "training keys alone keep the default network");
        assert_eq!(parse("init = 'torch'").unwrap().init, Init::Torch);
    }

    #[test]
    fn variable_depth_and_defaults_within_a_block() {
        let a = parse("conv0_channels = 16\nconv1_channels = 8\nconv1_pool = 2\nfc0_neurons = 64\ndrop_rate = 0.1")
            .unwrap();
        assert_eq!(a.conv.len(), 2);
        assert_eq!((a.conv[1].channels, a.conv[1].pool, a.conv[1].filter), (8, 2, 3));
        assert_eq!(a.fc.len(), 1);
        let b = parse("n_conv = 1\nconv0_channels = 16\nconv1_channels = 8").unwrap();
        assert_eq!(b.conv.len(), 1, "n_conv selects the depth, deeper blocks are inactive");
    }

    #[test]
    fn params_files_with_values_that_are_not_numbers_or_names_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        for (text, key) in [
            ("aug_flip = true", "aug_flip"),
            ("conv0_channels = [8]", "conv0_channels"),
            ("[fc0_neurons]\nx = 1", "fc0_neurons"),
        ] {
            let path = dir.path().join("p.toml");
            std::fs::write(&path, text).unwrap();
            let msg = read_params(&path).unwrap_err().to_string();
            assert!(
                msg.contains("p.toml") && msg.contains(&format!("`{key}`")) && msg.contains("fix"),
                "{text}: {msg}"
            );
        }
    }

    #[test]
    fn bad_dictionaries_name_the_key_and_the_fix() {
        let cases = [
            ("conv0_chanels = 3", "conv0_chanels", "unknown parameter"),
            ("conv0_channels = 0", "conv0_channels", "1..=2048"),
            ("conv0_channels = 1000000000", "conv0_channels", "1..=2048"),
            ("conv0_channels = 8\nconv0_pad = 9223372036854775807", "conv0_pad", "0..=32"),
            ("n_conv = 1000000000\nconv0_channels = 8", "n_conv", "0..=16"),
            ("conv0_channels = 8\nconv0_activation = 'swish'", "conv0_activation", "one of relu"),
            ("lr = inf", "lr", "(0, 1]"),
            ("lr = nan", "lr", "(0, 1]"),
            ("weight_decay = -1.0", "weight_decay", "≥ 0"),
            ("conv1_channels = 8", "conv0_channels", "has no `channels`"),
            ("n_fc = 2\nfc0_neurons = 3", "fc1_neurons", "lower `n_fc`"),
            ("drop_rate = 1.5", "drop_rate", "[0, 1)"),
            ("drop_rate = nan", "drop_rate", "[0, 1)"),
            ("init = 'he'", "init", "one of glorot, torch"),
        ];
        for (text, key, why) in cases {
            let msg = parse(text).unwrap_err().to_string();
            assert!(msg.contains("p.toml") && msg.contains(key) && msg.contains(why), "{text}: {msg}");
        }
    }
}
