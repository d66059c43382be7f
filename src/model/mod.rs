//! The CNN: the parameter dictionary, shape inference, and the burn module.

pub mod net;
pub mod params;
pub mod shape;

pub use net::Cnn;
pub use params::{Activation, Architecture, ConvBlock, FcBlock, Init, Params, Value};
pub use shape::{ShapeError, Summary, infer};
