//! Resampling of NHWC activations: nearest-neighbour upsampling by 2, 2x2 average and max
//! pooling, and the sum over H and W (BigGAN's global sum pooling), each with its backward.
//! Shader: `shaders/resample.wgsl`.
//!
//! All 2x ops pair a coarse tensor `[N, H, W, C]` with a fine one `[N, 2H, 2W, C]`; one
//! thread handles one coarse element and its 2x2 block. When `C % 4 == 0` the kernels move
//! four channels at a time (`_v4` entry points; spread and gather_sum load outside any
//! branch, which lavapipe needs for full-speed storage loads).

use crate::ensure_shape;
use crate::error::Result;
use crate::kernel::{grid_1d, Recorder};
use crate::tensor::{DType, Tensor};

const WG: u32 = 256;

/// Check that `t` is an f32 NHWC tensor and return its shape.
fn nhwc(op: &str, name: &str, t: &Tensor) -> Result<[usize; 4]> {
    ensure_shape!(t.dtype() == DType::F32, "{op}: {name} {t:?} must be f32");
    ensure_shape!(
        t.shape().len() == 4,
        "{op}: {name} {t:?} must be NHWC [N, H, W, C]"
    );
    let s = t.shape();
    Ok([s[0], s[1], s[2], s[3]])
}

/// Check that a fine tensor has even H and W.
fn even(op: &str, name: &str, t: &Tensor, [_, h, w, _]: [usize; 4]) -> Result<()> {
    ensure_shape!(
        h % 2 == 0 && w % 2 == 0,
        "{op}: {name} {t:?} needs even H and W for a 2x2 window"
    );
    Ok(())
}

/// Entry point name and channel units: the vec4 form where the channels allow it.
fn variant(entry: &str, c: usize) -> (String, u32) {
    if c.is_multiple_of(4) {
        (format!("{entry}_v4"), (c / 4) as u32)
    } else {
        (entry.to_string(), c as u32)
    }
}

/// One dispatch of a 2x kernel: `coarse` = [N, H, W, C] is the shape the threads walk.
fn dispatch_2x(
    rec: &mut Recorder,
    entry: &str,
    coarse: [usize; 4],
    a: f32,
    inputs: &[&Tensor],
    out: &Tensor,
) -> Result<()> {
    let [n, h, w, c] = coarse;
    if n * h * w * c == 0 {
        return Ok(());
    }
    let (name, units) = variant(entry, c);
    let total = (n * h * w) as u64 * units as u64;
    let v4 = c.is_multiple_of(4);
    let (b_in, b_in2, b_out) = if v4 { (4, 5, 6) } else { (1, 2, 3) };
    let mut bindings: Vec<(u32, &Tensor)> = vec![(b_in, inputs[0]), (b_out, out)];
    if let Some(t) = inputs.get(1) {
        bindings.push((b_in2, t));
    }
    rec.dispatch(
        "resample",
        &name,
        &[total as u32, w as u32, units, a.to_bits()],
        &bindings,
        grid_1d(total, WG),
    )
}

/// Nearest-neighbour upsampling by 2: `[N, H, W, C] -> [N, 2H, 2W, C]`, every output pixel
/// `(2h + i, 2w + j)` a copy of input pixel `(h, w)` (PyTorch `F.interpolate(x,
/// scale_factor=2, mode="nearest")`).
pub fn upsample2x(rec: &mut Recorder, x: &Tensor) -> Result<Tensor> {
    let s = nhwc("upsample2x", "x", x)?;
    let [n, h, w, c] = s;
    let y = Tensor::empty(rec.ctx, &[n, 2 * h, 2 * w, c], DType::F32)?;
    dispatch_2x(rec, "spread", s, 1.0, &[x], &y)?;
    Ok(y)
}

/// Gradient of [`upsample2x`]: `dy [N, 2H, 2W, C] -> dx [N, H, W, C]`, the sum of each 2x2
/// block of `dy`.
pub fn upsample2x_backward(rec: &mut Recorder, dy: &Tensor) -> Result<Tensor> {
    let s = nhwc("upsample2x_backward", "dy", dy)?;
    even("upsample2x_backward", "dy", dy, s)?;
    let coarse = [s[0], s[1] / 2, s[2] / 2, s[3]];
    let dx = Tensor::empty(rec.ctx, &coarse, DType::F32)?;
    dispatch_2x(rec, "gather_sum", coarse, 1.0, &[dy], &dx)?;
    Ok(dx)
}

/// 2x2 average pooling with stride 2: `[N, H, W, C] -> [N, H/2, W/2, C]`; H and W must be
/// even (PyTorch `F.avg_pool2d(x, 2)`).
pub fn avgpool2x2(rec: &mut Recorder, x: &Tensor) -> Result<Tensor> {
    let s = nhwc("avgpool2x2", "x", x)?;
    even("avgpool2x2", "x", x, s)?;
    let coarse = [s[0], s[1] / 2, s[2] / 2, s[3]];
    let y = Tensor::empty(rec.ctx, &coarse, DType::F32)?;
    dispatch_2x(rec, "gather_sum", coarse, 0.25, &[x], &y)?;
    Ok(y)
}

/// Gradient of [`avgpool2x2`]: `dy [N, H, W, C] -> dx [N, 2H, 2W, C]`, each element
/// `dy / 4` spread over its window.
pub fn avgpool2x2_backward(rec: &mut Recorder, dy: &Tensor) -> Result<Tensor> {
    let s = nhwc("avgpool2x2_backward", "dy", dy)?;
    let [n, h, w, c] = s;
    let dx = Tensor::empty(rec.ctx, &[n, 2 * h, 2 * w, c], DType::F32)?;
    dispatch_2x(rec, "spread", s, 0.25, &[dy], &dx)?;
    Ok(dx)
}

/// 2x2 max pooling with stride 2: `[N, H, W, C] -> [N, H/2, W/2, C]`; H and W must be even
/// (PyTorch `F.max_pool2d(x, 2)`).
pub fn maxpool2x2(rec: &mut Recorder, x: &Tensor) -> Result<Tensor> {
    let s = nhwc("maxpool2x2", "x", x)?;
    even("maxpool2x2", "x", x, s)?;
    let coarse = [s[0], s[1] / 2, s[2] / 2, s[3]];
    let y = Tensor::empty(rec.ctx, &coarse, DType::F32)?;
    dispatch_2x(rec, "maxpool_forward", coarse, 1.0, &[x], &y)?;
    Ok(y)
}

/// Gradient of [`maxpool2x2`] from its input `x [N, H, W, C]` and `dy [N, H/2, W/2, C]`:
/// each `dy` element goes to the maximum of its window, the rest of the window gets 0. On
/// ties the first maximum in scan order (row by row) takes it, as in PyTorch.
pub fn maxpool2x2_backward(rec: &mut Recorder, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let s = nhwc("maxpool2x2_backward", "x", x)?;
    even("maxpool2x2_backward", "x", x, s)?;
    let coarse = [s[0], s[1] / 2, s[2] / 2, s[3]];
    nhwc("maxpool2x2_backward", "dy", dy)?;
    ensure_shape!(
        dy.shape() == coarse,
        "maxpool2x2_backward: dy {dy:?} must be {coarse:?} for x {x:?}"
    );
    let dx = Tensor::empty(rec.ctx, &s, DType::F32)?;
    dispatch_2x(rec, "maxpool_backward", coarse, 1.0, &[x, dy], &dx)?;
    Ok(dx)
}

/// Dispatch a sum_hw kernel: `total` work units (`units` per pixel), `hw` pixels per image.
fn dispatch_sum(
    rec: &mut Recorder,
    entry: &str,
    c: usize,
    hw: usize,
    items: usize,
    src: &Tensor,
    dst: &Tensor,
) -> Result<()> {
    if items * c == 0 {
        return Ok(());
    }
    let (name, units) = variant(entry, c);
    let total = items as u64 * units as u64;
    let (b_in, b_out) = if c.is_multiple_of(4) { (4, 6) } else { (1, 3) };
    rec.dispatch(
        "resample",
        &name,
        &[total as u32, hw as u32, units, 0],
        &[(b_in, src), (b_out, dst)],
        grid_1d(total, WG),
    )
}

/// Sum over H and W: `[N, H, W, C] -> [N, C]` (PyTorch `x.sum((2, 3))` in NCHW).
pub fn sum_hw(rec: &mut Recorder, x: &Tensor) -> Result<Tensor> {
    let [n, h, w, c] = nhwc("sum_hw", "x", x)?;
    if h * w == 0 {
        // An empty sum is 0 (and an empty x cannot be bound).
        return Tensor::zeros(rec.ctx, &[n, c]);
    }
    let y = Tensor::empty(rec.ctx, &[n, c], DType::F32)?;
    dispatch_sum(rec, "sum_hw", c, h * w, n, x, &y)?;
    Ok(y)
}

/// Gradient of [`sum_hw`]: `dy [N, C]` broadcast to `[N, h, w, C]`.
pub fn sum_hw_backward(rec: &mut Recorder, dy: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    ensure_shape!(
        dy.dtype() == DType::F32 && dy.shape().len() == 2,
        "sum_hw_backward: dy {dy:?} must be f32 [N, C]"
    );
    let (n, c) = (dy.shape()[0], dy.shape()[1]);
    let dx = Tensor::empty(rec.ctx, &[n, h, w, c], DType::F32)?;
    dispatch_sum(rec, "sum_hw_backward", c, h * w, n * h * w, dy, &dx)?;
    Ok(dx)
}
