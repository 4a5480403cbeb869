//! libfewlabels: a class-conditional BigGAN generator and discriminator, and their S3GAN
//! training, in WGSL compute shaders through wgpu.
//!
//! The path of data follows the module tree:
//! [`device`] and [`tensor`] -> [`kernel`] (shader registry, pipeline cache, command recording)
//! -> [`ops`] (forward and backward of every layer, one WGSL file per op family).

pub mod capi;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod kernel;
pub mod ops;
pub mod tensor;
mod warm;

pub use device::Context;
pub use error::{Error, Result};
pub use kernel::Recorder;
pub use tensor::{DType, Tensor};
pub mod model;
pub mod rng;
pub mod train;
