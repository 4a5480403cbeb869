//! Elementwise ops: ReLU and tanh with their backward passes, add, scale and axpy.
//! Shader: `shaders/elementwise.wgsl`. On CPU adapters ([`Recorder::cpu_kernels`]) tensors of
//! a whole number of vec4s take the `_v4` kernels (four elements per invocation, no branch).

use crate::ensure_shape;
use crate::error::Result;
use crate::kernel::{grid_1d, Recorder};
use crate::tensor::{DType, Tensor};
use crate::Error;

fn unary(rec: &mut Recorder, entry: &str, x: &Tensor, a: f32) -> Result<Tensor> {
    ensure_shape!(x.dtype() == DType::F32, "{entry}: {x:?} is not f32");
    let out = Tensor::empty(rec.ctx, x.shape(), DType::F32)?;
    let n = x.numel() as u64;
    if rec.cpu_kernels() && n > 0 && n.is_multiple_of(4) {
        rec.dispatch(
            "elementwise",
            &format!("{entry}_v4"),
            &[n as u32, a.to_bits()],
            &[(5, x), (7, &out)],
            grid_1d(n / 4, 64),
        )?;
        return Ok(out);
    }
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
    if rec.cpu_kernels() && n > 0 && n.is_multiple_of(4) {
        rec.dispatch(
            "elementwise",
            &format!("{entry}_v4"),
            &[n as u32, a.to_bits()],
            &[(5, x), (6, y), (7, &out)],
            grid_1d(n / 4, 64),
        )?;
        return Ok(out);
    }
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

/// `x * y` elementwise. Backward: `dx = dy * y`, `dy_in = dy * x`.
pub fn mul(rec: &mut Recorder, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    binary(rec, "mul", x, y, 0.0)
}

fn check_scalar(entry: &str, s: &Tensor) -> Result<()> {
    ensure_shape!(
        s.numel() == 1 && s.dtype() == DType::F32,
        "{entry}: the device scalar must be one f32 value, got {s:?}"
    );
    Ok(())
}

/// `s * x + y` with `s` a one-element device tensor (attention's learnt gamma).
/// Backward: `dx = s * dy` ([`scale_dev`]), `ds = sum(x * dy)` ([`dot`]), `dy` passes.
pub fn axpy_dev(rec: &mut Recorder, s: &Tensor, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    check_scalar("axpy_dev", s)?;
    ensure_shape!(
        x.shape() == y.shape() && x.dtype() == DType::F32 && y.dtype() == DType::F32,
        "axpy_dev: {x:?} and {y:?} differ"
    );
    let out = Tensor::empty(rec.ctx, x.shape(), DType::F32)?;
    let n = x.numel() as u64;
    rec.dispatch(
        "elementwise",
        "axpy_dev",
        &[n as u32, 0],
        &[(1, x), (2, y), (3, &out), (4, s)],
        grid_1d(n, 256),
    )?;
    Ok(out)
}

/// `s * x` with `s` a one-element device tensor.
pub fn scale_dev(rec: &mut Recorder, s: &Tensor, x: &Tensor) -> Result<Tensor> {
    check_scalar("scale_dev", s)?;
    ensure_shape!(x.dtype() == DType::F32, "scale_dev: {x:?} is not f32");
    let out = Tensor::empty(rec.ctx, x.shape(), DType::F32)?;
    let n = x.numel() as u64;
    rec.dispatch(
        "elementwise",
        "scale_dev",
        &[n as u32, 0],
        &[(1, x), (3, &out), (4, s)],
        grid_1d(n, 256),
    )?;
    Ok(out)
}

const SUM_CHUNK: u64 = 1024;

fn reduce(rec: &mut Recorder, x: &Tensor, y: Option<&Tensor>) -> Result<Tensor> {
    let mut n = x.numel() as u64;
    if n == 0 {
        return Tensor::zeros(rec.ctx, &[1]);
    }
    let chunks = n.div_ceil(SUM_CHUNK);
    let mut cur = Tensor::empty(rec.ctx, &[chunks as usize], DType::F32)?;
    let grid = grid_1d(chunks * 256, 256);
    match y {
        Some(y) => rec.dispatch(
            "elementwise",
            "dot_stage",
            &[n as u32, 0],
            &[(1, x), (2, y), (3, &cur)],
            grid,
        )?,
        None => rec.dispatch(
            "elementwise",
            "sum_stage",
            &[n as u32, 0],
            &[(1, x), (3, &cur)],
            grid,
        )?,
    }
    n = chunks;
    while n > 1 {
        let chunks = n.div_ceil(SUM_CHUNK);
        let next = Tensor::empty(rec.ctx, &[chunks as usize], DType::F32)?;
        rec.dispatch(
            "elementwise",
            "sum_stage",
            &[n as u32, 0],
            &[(1, &cur), (3, &next)],
            grid_1d(chunks * 256, 256),
        )?;
        cur = next;
        n = chunks;
    }
    Ok(cur)
}

/// Sum of all elements as a one-element tensor, in a fixed order (deterministic).
/// Backward: every input element receives the output gradient.
pub fn sum_all(rec: &mut Recorder, x: &Tensor) -> Result<Tensor> {
    ensure_shape!(x.dtype() == DType::F32, "sum_all: {x:?} is not f32");
    reduce(rec, x, None)
}

/// `sum(x * y)` as a one-element tensor, in a fixed order.
pub fn dot(rec: &mut Recorder, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    ensure_shape!(
        x.shape() == y.shape() && x.dtype() == DType::F32 && y.dtype() == DType::F32,
        "dot: {x:?} and {y:?} differ"
    );
    if x.numel() > u32::MAX as usize {
        return Err(Error::Shape(format!("dot: {x:?} is too large")));
    }
    reduce(rec, x, Some(y))
}
