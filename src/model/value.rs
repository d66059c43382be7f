//! The dictionary's values: numbers and names, and the weight initialisations a name may pick.
//! A leaf, so that the keys ([`super::keys`]) and the dictionary ([`super::params`]) both
//! build on it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One value of the dictionary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "expected a number or a string here: a parameter dictionary holds numbers and names only"
)]
pub enum Value {
    Int(i64),
    Float(f64),
    Str(String),
}

impl Value {
    /// A TOML scalar as a dictionary value; `None` for booleans, arrays, tables and dates.
    pub fn from_toml(v: &toml::Value) -> Option<Value> {
        match v {
            toml::Value::Integer(i) => Some(Value::Int(*i)),
            toml::Value::Float(f) => Some(Value::Float(*f)),
            toml::Value::String(s) => Some(Value::Str(s.clone())),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Str(_) => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => write!(f, "{s}"),
        }
    }
}

/// A parameter dictionary, ordered by key.
pub type Params = BTreeMap<String, Value>;

/// How conv and dense weights start (biases start at zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// Keras' default, the seed study's: uniform ±√(6 / (fan_in + fan_out)).
    Glorot,
    /// PyTorch's default for Conv2d and Linear: uniform ±√(1 / fan_in).
    Torch,
}

impl Init {
    pub const NAMES: [&'static str; 2] = ["glorot", "torch"];

    pub fn parse(name: &str) -> Option<Init> {
        match name {
            "glorot" => Some(Init::Glorot),
            "torch" => Some(Init::Torch),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Init::Glorot => "glorot",
            Init::Torch => "torch",
        }
    }
}
