//! Elementwise ops: ReLU and tanh with their backward passes, add, scale and axpy.
//! Shader: `shaders/elementwise.wgsl`.

use crate::ensure_shape;
use crate::error::Result;
use crate::kernel::{grid_1d, Recorder};
use crate::tensor::{DType, Tensor};

fn unary(rec: &mut Recorder, entry: &str, x: &Tensor, a: f32) -> Result<Tensor> {
    ensure_shape!(x.dtype() == DType::F32, "{entry}: {x:?} is not f32");
    let out = Tensor::empty(rec.ctx, x.shape(), DType::F32)?;
    let n = x.numel() as u64;
    rec.dispatch(
        "elementwise",
        entry,
        &[n as u32, a.to_bits()],
        &[(1, x), (3, &out)],
        grid_1d(n, 256),
    )?;
    Ok(out)
}

fn binary(rec: &mut Recorder, entry: &str, x: &Tensor, y: &Tensor, a: f32) -> Result<Tensor> {
    ensure_shape!(
        x.shape() == y.shape() && x.dtype() == DType::F32 && y.dtype() == DType::F32,
        "{entry}: {x:?} and {y:?} differ"
    );
    let out = Tensor::empty(rec.ctx, x.shape(), DType::F32)?;
    let n = x.numel() as u64;
    rec.dispatch(
        "elementwise",
        entry,
        &[n as u32, a.to_bits()],
        &[(1, x), (2, y), (3, &out)],
        grid_1d(n, 256),
    )?;
    Ok(out)
}

/// `max(x, 0)`.
pub fn relu(rec: &mut Recorder, x: &Tensor) -> Result<Tensor> {
    unary(rec, "relu_forward", x, 0.0)
}

/// Gradient of ReLU: `dy * (x > 0)`, with `x` the forward input.
pub fn relu_backward(rec: &mut Recorder, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    binary(rec, "relu_backward", x, dy, 0.0)
}

/// `tanh(x)`.
pub fn tanh(rec: &mut Recorder, x: &Tensor) -> Result<Tensor> {
    unary(rec, "tanh_forward", x, 0.0)
}

/// Gradient of tanh: `dy * (1 - y^2)`, with `y` the forward output.
pub fn tanh_backward(rec: &mut Recorder, y: &Tensor, dy: &Tensor) -> Result<Tensor> {
    binary(rec, "tanh_backward", y, dy, 0.0)
}

/// `x + y`. Its backward pass passes `dy` to both inputs unchanged.
pub fn add(rec: &mut Recorder, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    binary(rec, "add", x, y, 0.0)
}

/// `a * x`. Its backward pass is `scale(dy, a)`.
pub fn scale(rec: &mut Recorder, x: &Tensor, a: f32) -> Result<Tensor> {
    unary(rec, "scale", x, a)
}

/// `a * x + y` (gradient accumulation).
pub fn axpy(rec: &mut Recorder, a: f32, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    binary(rec, "axpy", x, y, a)
}
