//! The CNN: the parameter dictionary, shape inference, and the burn module.

pub mod keys;
pub mod net;
pub mod params;
pub mod shape;
pub mod value;

pub use net::Cnn;
pub use params::{Activation, Architecture, ConvBlock, FcBlock, Init, Params, Value};
pub use shape::{ShapeError, Summary, infer};

/// Reads a params file (or, without one, the seed's network) into an architecture and its
/// dictionary.
pub fn load_params(path: Option<&std::path::Path>) -> crate::Result<(Architecture, Params)> {
    match path {
        None => {
            let arch = Architecture::default();
            let params = arch.to_params();
            Ok((arch, params))
        }
        Some(p) => {
            let params = params::read_params(p)?;
            Ok((Architecture::from_params(&params, p)?, params))
        }
    }
}
