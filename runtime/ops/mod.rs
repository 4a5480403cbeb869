//! Ops: the forward and backward pass of every layer, side by side, one WGSL file per family.
//!
//! Every op records into a [`crate::Recorder`] and returns freshly allocated outputs;
//! backward functions take what the forward pass saved plus the output gradient `dy` and
//! return the gradient of every input and parameter.

pub mod batchnorm;
pub mod conv;
pub mod elementwise;
pub mod embedding;
pub mod gemm;
pub mod loss;
pub mod optim;
pub mod rearrange;
pub mod resample;
pub mod softmax;
pub mod spectral_norm;
