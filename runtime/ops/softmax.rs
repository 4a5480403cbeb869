//! Row softmax of a 2-D `[R, C]` tensor and its backward pass (self-attention uses it over
//! keys with `R = batch * queries`). Shader: `shaders/softmax.wgsl`.
//!
//! One thread per row, looping over the row in order (deterministic); rows with `C % 4 == 0`
//! use the vec4 kernels, which on CPU adapters ([`Recorder::cpu_kernels`]) read their inputs
//! as textures.

use crate::ensure_shape;
use crate::error::Result;
use crate::kernel::{grid_1d, Recorder};
use crate::tensor::{DType, Tensor};

const WG: u32 = 64;

fn check(op: &str, what: &str, x: &Tensor) -> Result<(usize, usize)> {
    ensure_shape!(
        x.dtype() == DType::F32 && x.shape().len() == 2,
        "{op}: {what} {x:?} must be f32 [R, C]"
    );
    let (r, c) = (x.shape()[0], x.shape()[1]);
    ensure_shape!(r > 0 && c > 0, "{op}: {what} {x:?} is empty");
    Ok((r, c))
}

/// `y[r] = exp(x[r] - max x[r]) / sum(exp(x[r] - max x[r]))` for each row of `x [R, C]`.
pub fn softmax(rec: &mut Recorder, x: &Tensor) -> Result<Tensor> {
    let (r, c) = check("softmax", "x", x)?;
    let y = Tensor::empty(rec.ctx, &[r, c], DType::F32)?;
    let params = [r as u32, c as u32, (c / 4) as u32];
    if c % 4 == 0 {
        let (entry, xb) = if rec.reads_texture(x) {
            ("softmax_forward_vec4_t", 7)
        } else {
            ("softmax_forward_vec4", 4)
        };
        rec.dispatch(
            "softmax",
            entry,
            &params,
            &[(xb, x), (6, &y)],
            grid_1d(r as u64, WG),
        )?;
    } else {
        rec.dispatch(
            "softmax",
            "softmax_forward",
            &params,
            &[(1, x), (3, &y)],
            grid_1d(r as u64, WG),
        )?;
    }
    Ok(y)
}

/// Gradient of [`softmax`] from its output `y` and the output gradient `dy` (both `[R, C]`):
/// `dx[r] = y[r] * (dy[r] - sum(dy[r] * y[r]))`.
pub fn softmax_backward(rec: &mut Recorder, y: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let (r, c) = check("softmax_backward", "y", y)?;
    ensure_shape!(
        dy.dtype() == DType::F32 && dy.shape() == y.shape(),
        "softmax_backward: dy {dy:?} must be f32 like y {y:?}"
    );
    let dx = Tensor::empty(rec.ctx, &[r, c], DType::F32)?;
    let params = [r as u32, c as u32, (c / 4) as u32];
    if c % 4 == 0 {
        let (entry, yb, dyb) = if rec.reads_texture(y) {
            ("softmax_backward_vec4_t", 7, 8)
        } else {
            ("softmax_backward_vec4", 4, 5)
        };
        rec.dispatch(
            "softmax",
            entry,
            &params,
            &[(yb, y), (dyb, dy), (6, &dx)],
            grid_1d(r as u64, WG),
        )?;
    } else {
        rec.dispatch(
            "softmax",
            "softmax_backward",
            &params,
            &[(1, y), (2, dy), (3, &dx)],
            grid_1d(r as u64, WG),
        )?;
    }
    Ok(dx)
}
