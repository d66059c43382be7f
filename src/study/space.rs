//! The search space file: a `[study]` table of settings and a `[params]` table of
//! distributions over the parameter dictionary. Raw TOML is checked into a [`SearchSpace`];
//! every error names the file, the key and the fix.
//!
//! ```toml
//! [params]
//! lr = { float = [1e-4, 3e-3], log = true }
//! n_conv = { int = [2, 4] }                       # depth: conv{i}_* exist only for i < n_conv
//! "conv*_channels" = { int = [16, 128], step = 16 } # every conv block (conv0…conv3 here)
//! conv0_filter = 3                                # fixed
//! "conv*_activation" = { choice = ["relu", "elu"] }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use super::distribution::Distribution;
use super::distribution::{check_domain, parse_distribution};
use crate::error::ErrFn;
use crate::error::{Result, TuneError};
use crate::model::params::{CONV_KEYS, FC_KEYS, block_index, is_known_key, known_keys_help};
use crate::model::{Params, Value};
use crate::study::settings::{StudySettings, check_study};
use crate::training::layers::Layered;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    study: StudySettings,
    params: toml::Table,
}

/// A checked search space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchSpace {
    pub study: StudySettings,
    /// Parameters in sampling order: depth keys first, so conditions are known when needed.
    pub params: Vec<(String, Distribution)>,
    #[serde(skip)]
    pub file: PathBuf,
}

impl SearchSpace {
    /// The parameters sampled on a log scale.
    pub fn log_params(&self) -> Vec<String> {
        self.params.iter().filter(|(_, d)| d.is_log()).map(|(k, _)| k.clone()).collect()
    }

    pub fn from_file(path: &Path) -> Result<SearchSpace> {
        let text = crate::files::read_text(path)?;
        SearchSpace::parse(&text, path)
    }

    pub fn parse(text: &str, file: &Path) -> Result<SearchSpace> {
        let syntax = |e: toml::de::Error| TuneError::ConfigSyntax {
            file: file.to_path_buf(),
            message: format!("{e}\n  fix: see README's \"Search spaces\" section for the [study] and [params] keys"),
        };
        let mut raw: RawFile = toml::from_str(text).map_err(syntax)?;
        let err = |key: &str, problem: String, fix: String| TuneError::Config {
            file: file.to_path_buf(),
            key: key.to_string(),
            problem,
            fix,
        };
        // `[study.training]` takes the training config's one checked path (same defaults and
        // checks as `tune train`); seeds come from the study, not from this table.
        let table: toml::Table = toml::from_str(text).map_err(syntax)?;
        let training =
            table.get("study").and_then(|s| s.get("training")).and_then(|t| t.as_table()).cloned().unwrap_or_default();
        for key in ["seed", "split_seed"] {
            if training.contains_key(key) {
                return Err(err(
                    &format!("study.training.{key}"),
                    "seeds are set per study, not per trial".into(),
                    "use study.seed (trial seeds derive from it) and --split-seed".into(),
                ));
            }
        }
        raw.study.training = Layered::default().table(&training, file, "study.training.")?.build()?;
        check_study(&raw.study, &err)?;
        let mut dists: BTreeMap<String, Distribution> = BTreeMap::new();
        let mut templates = Vec::new();
        for (key, value) in &raw.params {
            let dist = parse_distribution(key, value, &err)?;
            if key.contains('*') {
                templates.push((key.clone(), dist));
            } else {
                if !is_known_key(key) {
                    return Err(err(
                        key,
                        "unknown parameter".into(),
                        format!("use one of {} (or conv*_… / fc*_… for every block)", known_keys_help()),
                    ));
                }
                dists.insert(key.clone(), dist);
            }
        }
        let max_conv = max_blocks(&dists, "conv", "channels", &err)?;
        let max_fc = max_blocks(&dists, "fc", "neurons", &err)?;
        for (kind, max) in [("conv", max_conv), ("fc", max_fc)] {
            if max > crate::model::params::MAX_BLOCKS as usize {
                let key = dists
                    .keys()
                    .find(|k| block_index(k, kind).is_some_and(|i| i + 1 == max))
                    .cloned()
                    .unwrap_or(format!("n_{kind}"));
                return Err(err(
                    &key,
                    format!("{max} {kind} blocks (at most {})", crate::model::params::MAX_BLOCKS),
                    format!("use blocks {kind}0…{kind}{}", crate::model::params::MAX_BLOCKS - 1),
                ));
            }
        }
        for (template, dist) in templates {
            let (kind, max, suffixes): (&str, usize, &[&str]) = match template.split_once("*_") {
                Some(("conv", s)) if CONV_KEYS.contains(&s) => ("conv", max_conv, &CONV_KEYS),
                Some(("fc", s)) if FC_KEYS.contains(&s) => ("fc", max_fc, &FC_KEYS),
                _ => {
                    return Err(err(
                        &template,
                        "not a block template".into(),
                        format!("write conv*_{{{}}} or fc*_{{{}}}", CONV_KEYS.join(","), FC_KEYS.join(",")),
                    ));
                }
            };
            let suffix = template.split_once("*_").map(|(_, s)| s).unwrap_or_default();
            debug_assert!(suffixes.contains(&suffix));
            check_domain(&template, &dist, &err)?;
            if max == 0 {
                let required = if kind == "conv" { "channels" } else { "neurons" };
                return Err(err(
                    &template,
                    format!("applies to no block: this space has no {kind} blocks"),
                    format!(
                        "set the depth with `n_{kind} = {{ int = [1, 3] }}` (or give `{kind}0_{required}`), or remove the template"
                    ),
                ));
            }
            for i in 0..max {
                dists.entry(format!("{kind}{i}_{suffix}")).or_insert_with(|| dist.clone());
            }
        }
        // Every block that can exist needs its size; every block parameter needs a block.
        for (kind, max, required) in [("conv", max_conv, "channels"), ("fc", max_fc, "neurons")] {
            for i in 0..max {
                let key = format!("{kind}{i}_{required}");
                if !dists.contains_key(&key) {
                    return Err(err(
                        &key,
                        format!("block {kind}{i} can exist (up to {max} {kind} blocks) but has no `{required}`"),
                        format!("add `{key}` or `\"{kind}*_{required}\"`, or lower the upper bound of `n_{kind}`"),
                    ));
                }
            }
            if let Some(key) = dists.keys().find(|k| block_index(k, kind).is_some_and(|i| i >= max)) {
                let fix = if dists.contains_key(&format!("n_{kind}")) {
                    format!("remove `{key}` or raise the upper bound of `n_{kind}`")
                } else {
                    format!(
                        "remove `{key}`, or give every block up to it a `{required}` (without `n_{kind}`, the blocks are those with a `{required}`)"
                    )
                };
                return Err(err(
                    key,
                    format!("this block parameter has no block: at most {max} {kind} blocks exist"),
                    fix,
                ));
            }
        }
        for (key, dist) in &dists {
            check_domain(key, dist, &err)?;
        }
        let mut params: Vec<(String, Distribution)> = dists.into_iter().collect();
        params.sort_by_key(|(k, _)| !(k == "n_conv" || k == "n_fc"));
        Ok(SearchSpace { study: raw.study, params, file: file.to_path_buf() })
    }

    pub fn get(&self, key: &str) -> Option<&Distribution> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, d)| d)
    }

    /// Whether `key` takes part given the depth already chosen in `partial`.
    pub fn is_active(key: &str, partial: &Params) -> bool {
        for kind in ["conv", "fc"] {
            if let Some(i) = block_index(key, kind) {
                return match partial.get(&format!("n_{kind}")) {
                    Some(Value::Int(n)) => (i as i64) < *n,
                    _ => true,
                };
            }
        }
        true
    }

    /// Drops parameters of blocks that do not exist, so one network has one dictionary.
    pub fn prune_inactive(params: &mut Params) {
        let snapshot = params.clone();
        params.retain(|k, _| SearchSpace::is_active(k, &snapshot));
    }

    /// Completes an enqueued dictionary: the space's fixed values fill in what it omits, and
    /// inactive block parameters are dropped. Fails with (key, problem) when a key is not a
    /// parameter of the space, or an active one is missing or outside its distribution.
    pub fn complete(&self, partial: &Params) -> std::result::Result<Params, (String, String)> {
        if let Some(key) = partial.keys().find(|k| self.get(k).is_none()) {
            return Err((key.clone(), "is not a parameter of this space".into()));
        }
        let mut p = partial.clone();
        for (key, dist) in &self.params {
            if let Distribution::Fixed(v) = dist {
                p.entry(key.clone()).or_insert_with(|| v.clone());
            }
        }
        SearchSpace::prune_inactive(&mut p);
        for (key, dist) in &self.params {
            match p.get(key) {
                None if SearchSpace::is_active(key, &p) => {
                    return Err((key.clone(), format!("is missing: give it {}", dist.describe())));
                }
                Some(v) if !dist.produces(v) => return Err((key.clone(), format!("`{v}` is not {}", dist.describe()))),
                _ => {}
            }
        }
        Ok(p)
    }
}

fn max_blocks(dists: &BTreeMap<String, Distribution>, kind: &str, required: &str, err: &ErrFn) -> Result<usize> {
    let depth_key = format!("n_{kind}");
    if let Some(d) = dists.get(&depth_key) {
        check_domain(&depth_key, d, err)?; // before blocks are expanded from templates
    }
    match dists.get(&depth_key) {
        Some(Distribution::Int { high, low, .. }) if *low >= 0 => Ok(*high as usize),
        Some(Distribution::Fixed(Value::Int(n))) if *n >= 0 => Ok(*n as usize),
        Some(Distribution::Choice(c)) if c.iter().all(|v| matches!(v, Value::Int(n) if *n >= 0)) => {
            Ok(c.iter().filter_map(|v| if let Value::Int(n) = v { Some(*n as usize) } else { None }).max().unwrap_or(0))
        }
        Some(_) => Err(err(
            &depth_key,
            "the number of blocks must be whole numbers ≥ 0".into(),
            format!("write {depth_key} = {{ int = [1, 4] }}"),
        )),
        None => Ok(dists
            .keys()
            .filter_map(|k| block_index(k, kind).filter(|_| k.ends_with(required)))
            .map(|i| i + 1)
            .max()
            .unwrap_or(0)),
    }
}

/// Checks every value a distribution can produce against what the key accepts.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::settings::SamplerKind;

    const HEAD: &str = "[study]\nname = \"t\"\n[params]\n";

    fn parse(params: &str) -> Result<SearchSpace> {
        SearchSpace::parse(&format!("{HEAD}{params}"), Path::new("space.toml"))
    }

    #[test]
    fn valid_space_with_templates_and_depth() {
        let s = parse("lr = { float = [1e-4, 1e-2], log = true }\nn_conv = { int = [1, 3] }\n\"conv*_channels\" = { int = [8, 64], step = 8 }\nconv0_filter = 3\n\"conv*_activation\" = { choice = [\"relu\", \"elu\"] }\nfc0_neurons = { choice = [64, 128] }").unwrap();
        assert_eq!(s.params[0].0, "n_conv", "depth keys are sampled first");
        assert!(s.get("conv2_channels").is_some() && s.get("conv3_channels").is_none());
        assert_eq!(s.get("conv1_channels"), Some(&Distribution::Int { low: 8, high: 64, step: 8, log: false }));
        assert_eq!(s.study.sampler, SamplerKind::Tpe);
        let mut p: Params =
            [("n_conv".to_string(), Value::Int(1)), ("conv1_channels".to_string(), Value::Int(8))].into();
        assert!(!SearchSpace::is_active("conv1_channels", &p));
        SearchSpace::prune_inactive(&mut p);
        assert!(!p.contains_key("conv1_channels"));
    }

    #[test]
    fn bad_spaces_name_file_key_and_fix() {
        let cases = [
            ("lr = { float = [1e-2, 1e-4] }", "`lr`", "inverted"),
            ("lr = { float = [0.0, 1e-2], log = true }", "`lr`", "lower bound > 0"),
            ("conv0_activation = { choice = [] }", "conv0_activation", "empty choice"),
            ("conv0_channels = 8\nconv3_pad = 1", "conv3_pad", "has no block"),
            ("n_conv = { int = [1, 2] }\n\"conv*_channels\" = 8\nconv4_pad = 1", "conv4_pad", "has no block"),
            ("conv0_chanels = 8", "conv0_chanels", "unknown parameter"),
            ("lr = { float = [1e-4, 1e-2], lg = true }", "lr.lg", "unknown field"),
            ("conv0_channels = { int = [8, 30], step = 8 }", "conv0_channels.step", "make high = 24"),
            (
                "conv0_channels = 8\nconv0_activation = { choice = [\"relu\", \"swish\"] }",
                "conv0_activation",
                "can produce `swish`",
            ),
            ("drop_rate = { float = [0.1, 1.0] }", "drop_rate", "[0, 1)"),
            ("\"pool*_x\" = 1", "pool*_x", "not a block template"),
            ("\"conv*_channels\" = { int = [8, 64] }", "conv*_channels", "applies to no block"),
            ("n_conv = 2\n\"conv*_channels\" = { int = [8, 100000] }", "conv*_channels", "1..=2048"),
            ("lr = nan", "lr", "can produce `NaN`"),
            ("weight_decay = { choice = [0.0, inf] }", "weight_decay", "can produce `inf`"),
            ("n_conv = { int = [1, 1000000000] }\n\"conv*_channels\" = 8", "n_conv", "0..=16"),
        ];
        for (text, key, why) in cases {
            let msg = parse(text).unwrap_err().to_string();
            assert!(
                msg.contains("space.toml") && msg.contains(key) && msg.contains(why) && msg.contains("fix"),
                "{text}\n→ {msg}"
            );
        }
        let msg = SearchSpace::parse("[study]\nname = \"t\"\ntrails = 3\n[params]\n", Path::new("space.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("trails") && msg.contains("space.toml"), "{msg}");
        let msg = SearchSpace::parse("[study]\nname = \"t\"\ntrials = 0\n[params]\n", Path::new("space.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("study.trials"), "{msg}");
        // Objectives: val_acc first, sizes minimised, each once; NSGA-II's settings in range.
        let objectives = [
            (
                "objectives = [{ metric = \"params\", direction = \"minimize\" }]",
                "study.objectives",
                "first objective must be val_acc",
            ),
            (
                "objectives = [{ metric = \"val_acc\", direction = \"maximize\" }, { metric = \"params\", direction = \"maximize\" }]",
                "study.objectives[1].direction",
                "minimize",
            ),
            (
                "objectives = [{ metric = \"val_acc\", direction = \"maximize\" }, { metric = \"flops\", direction = \"minimize\" }, { metric = \"flops\", direction = \"minimize\" }]",
                "study.objectives[2].metric",
                "listed twice",
            ),
            (
                "objectives = [{ metric = \"val_acc\", direction = \"minimize\" }]",
                "study.objectives[0].direction",
                "maximize",
            ),
            ("objectives = [{ metric = \"latency\", direction = \"minimize\" }]", "latency", "val_acc"),
            ("sampler = \"nsga2\"\n[study.nsga2]\npopulation = 1", "study.nsga2.population", "2..="),
            (
                "sampler = \"nsga2\"\n[study.nsga2]\nmutation_probability = 1.5",
                "study.nsga2.mutation_probability",
                "[0, 1]",
            ),
        ];
        for (study, key, why) in objectives {
            let text = format!("[study]\nname = \"t\"\n{study}\n[params]\nlr = 0.001\n");
            let msg = SearchSpace::parse(&text, Path::new("space.toml")).unwrap_err().to_string();
            assert!(msg.contains("space.toml") && msg.contains(key) && msg.contains(why), "{study}\n→ {msg}");
        }
    }

    #[test]
    fn complete_fills_fixed_values_and_names_the_bad_key() {
        let s = parse("n_conv = { int = [1, 2] }\n\"conv*_channels\" = { int = [8, 16], step = 8 }").unwrap();
        let p: Params = [("n_conv".to_string(), Value::Int(1)), ("conv0_channels".to_string(), Value::Int(16))].into();
        assert_eq!(s.complete(&p), Ok(p.clone()));
        let q: Params = [("n_conv".to_string(), Value::Int(2)), ("conv0_channels".to_string(), Value::Int(16))].into();
        assert_eq!(s.complete(&q).unwrap_err().0, "conv1_channels", "an active block parameter is missing");
        let r: Params = [("n_conv".to_string(), Value::Int(1)), ("conv0_channels".to_string(), Value::Int(12))].into();
        let (key, why) = s.complete(&r).unwrap_err();
        assert!(key == "conv0_channels" && why.contains("`12`") && why.contains("steps of 8"), "{key}: {why}");
        let u: Params = [("conv0_chanels".to_string(), Value::Int(8))].into();
        assert_eq!(
            s.complete(&u).unwrap_err().0,
            "conv0_chanels",
            "an unknown key is an error, not an infeasible trial"
        );
    }
}
