//! The distribution grammar of a space's `[params]`: `{ int = [lo, hi], step, log }`,
//! `{ float = [lo, hi], log }`, `{ choice = [...] }` or a fixed value; parsed and checked
//! against each key's domain, every error naming the key and the fix.

use serde::{Deserialize, Serialize};

use crate::error::{ErrFn, Result};
use crate::model::Value;
use crate::model::params::Domain;

/// A distribution of one parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    Int { low: i64, high: i64, step: i64, log: bool },
    Float { low: f64, high: f64, log: bool },
    Choice(Vec<Value>),
    Fixed(Value),
}

impl Distribution {
    /// Sampled on a log scale (plots draw its axis logarithmic).
    pub fn is_log(&self) -> bool {
        matches!(self, Distribution::Int { log: true, .. } | Distribution::Float { log: true, .. })
    }

    /// Every value the grid sampler visits (floats: `grid_points` evenly, or log-evenly, spaced).
    pub fn grid(&self, grid_points: usize) -> Vec<Value> {
        match self {
            Distribution::Int { low, high, step, .. } => {
                (*low..=*high).step_by(*step as usize).map(Value::Int).collect()
            }
            Distribution::Float { low, high, log } => {
                let n = grid_points.max(2);
                (0..n)
                    .map(|i| {
                        let t = i as f64 / (n - 1) as f64;
                        Value::Float(if *log {
                            (low.ln() + t * (high.ln() - low.ln())).exp()
                        } else {
                            low + t * (high - low)
                        })
                    })
                    .collect()
            }
            Distribution::Choice(c) => c.clone(),
            Distribution::Fixed(v) => vec![v.clone()],
        }
    }
}

impl Distribution {
    /// Whether a sample of this distribution can be `v`.
    pub fn produces(&self, v: &Value) -> bool {
        match (self, v) {
            (Distribution::Int { low, high, step, .. }, Value::Int(x)) => {
                x >= low && x <= high && (*x as i128 - *low as i128) % *step as i128 == 0
            }
            (Distribution::Float { low, high, .. }, v) => v.as_f64().is_some_and(|x| x >= *low && x <= *high),
            (Distribution::Choice(c), v) => c.contains(v),
            (Distribution::Fixed(f), v) => f == v,
            _ => false,
        }
    }

    /// The values it produces, for messages.
    pub fn describe(&self) -> String {
        match self {
            Distribution::Int { low, high, step: 1, .. } => format!("a whole number in [{low}, {high}]"),
            Distribution::Int { low, high, step, .. } => {
                format!("a whole number in [{low}, {high}] in steps of {step}")
            }
            Distribution::Float { low, high, .. } => format!("a number in [{low}, {high}]"),
            Distribution::Choice(c) => {
                format!("one of {}", c.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "))
            }
            Distribution::Fixed(v) => format!("the fixed value {v}"),
        }
    }
}

pub(crate) fn parse_distribution(key: &str, value: &toml::Value, err: &ErrFn) -> Result<Distribution> {
    let fix_forms = "write a fixed value, { int = [low, high] } (optional step, log), { float = [low, high] } (optional log = true) or { choice = [a, b, …] }";
    if let Some(v) = Value::from_toml(value) {
        return Ok(Distribution::Fixed(v));
    }
    let Some(table) = value.as_table() else {
        return Err(err(key, "not a value or a distribution".into(), fix_forms.into()));
    };
    for k in table.keys() {
        if !["int", "float", "choice", "step", "log"].contains(&k.as_str()) {
            return Err(err(&format!("{key}.{k}"), "unknown field".into(), fix_forms.into()));
        }
    }
    let log = match table.get("log") {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(_) => return Err(err(&format!("{key}.log"), "not true or false".into(), "write log = true".into())),
    };
    let pair = |name: &str| -> Result<Option<(f64, f64, bool)>> {
        let Some(v) = table.get(name) else { return Ok(None) };
        let bad = || {
            err(
                &format!("{key}.{name}"),
                "not a [low, high] pair of numbers".into(),
                format!("write {name} = [low, high]"),
            )
        };
        let arr = v.as_array().filter(|a| a.len() == 2).ok_or_else(bad)?;
        let num = |x: &toml::Value| x.as_float().or_else(|| x.as_integer().map(|i| i as f64));
        let ints = arr.iter().all(|x| x.is_integer());
        Ok(Some((num(&arr[0]).ok_or_else(bad)?, num(&arr[1]).ok_or_else(bad)?, ints)))
    };
    let kinds = ["int", "float", "choice"].iter().filter(|k| table.contains_key(**k)).count();
    if kinds != 1 {
        return Err(err(key, "needs exactly one of int, float, choice".into(), fix_forms.into()));
    }
    if let Some((low, high, ints)) = pair("int")? {
        if !ints {
            return Err(err(
                &format!("{key}.int"),
                "bounds are not whole numbers".into(),
                "use float = [low, high] for real values".into(),
            ));
        }
        let (low, high) = (low as i64, high as i64);
        let step = match table.get("step") {
            None => 1,
            Some(toml::Value::Integer(s)) if *s >= 1 => *s,
            Some(_) => {
                return Err(err(&format!("{key}.step"), "not a whole number ≥ 1".into(), "write step = 8, say".into()));
            }
        };
        if low > high {
            return Err(err(key, format!("inverted range [{low}, {high}]"), format!("write int = [{high}, {low}]")));
        }
        if log && low <= 0 {
            return Err(err(
                key,
                format!("log scale needs a lower bound > 0, got {low}"),
                "raise the lower bound or drop log = true".into(),
            ));
        }
        let rest = (high as i128 - low as i128) % step as i128;
        if rest != 0 {
            return Err(err(
                &format!("{key}.step"),
                format!("step {step} does not divide the range [{low}, {high}]"),
                format!("make high = {}", high as i128 - rest),
            ));
        }
        if log && step != 1 {
            return Err(err(
                &format!("{key}.step"),
                "a step cannot be combined with log = true".into(),
                "drop one of them".into(),
            ));
        }
        return Ok(Distribution::Int { low, high, step, log });
    }
    if let Some((low, high, _)) = pair("float")? {
        if table.contains_key("step") {
            return Err(err(
                &format!("{key}.step"),
                "float distributions take no step".into(),
                "use choice = [...] for a discrete set".into(),
            ));
        }
        if low > high || !low.is_finite() || !high.is_finite() {
            return Err(err(
                key,
                format!("inverted or infinite range [{low}, {high}]"),
                format!("write float = [{high}, {low}]"),
            ));
        }
        if log && low <= 0.0 {
            return Err(err(
                key,
                format!("log scale needs a lower bound > 0, got {low}"),
                "use a positive lower bound such as 1e-5".into(),
            ));
        }
        return Ok(Distribution::Float { low, high, log });
    }
    let choices = table["choice"].as_array().map(|a| a.iter().map(Value::from_toml).collect::<Option<Vec<_>>>());
    match choices {
        Some(Some(c)) if !c.is_empty() => {
            if log || table.contains_key("step") {
                return Err(err(key, "choice takes no step or log".into(), "drop them".into()));
            }
            Ok(Distribution::Choice(c))
        }
        Some(Some(_)) => Err(err(key, "empty choice list".into(), "list at least one value".into())),
        _ => Err(err(
            &format!("{key}.choice"),
            "not a list of numbers or strings".into(),
            "write choice = [\"relu\", \"elu\"]".into(),
        )),
    }
}

/// The number of blocks of a kind the space can produce.
pub(crate) fn check_domain(key: &str, dist: &Distribution, err: &ErrFn) -> Result<()> {
    let values: Vec<Value> = match dist {
        Distribution::Int { low, high, .. } => vec![Value::Int(*low), Value::Int(*high)],
        Distribution::Float { low, high, .. } => vec![Value::Float(*low), Value::Float(*high)],
        Distribution::Choice(c) => c.clone(),
        Distribution::Fixed(v) => vec![v.clone()],
    };
    let domain = Domain::of(key);
    match values.iter().find(|v| !domain.accepts(v)) {
        Some(v) => Err(err(key, format!("can produce `{v}`"), format!("`{key}` takes {}", domain.describe()))),
        None => Ok(()),
    }
}
