//! Rearranging ops: concatenation and splitting along the channel (last) axis and along the
//! batch (first) axis, per-image rotation of square images by multiples of 90 degrees
//! (S3GAN's self-supervised rotation task), and zero padding, cropping and transposing of
//! the last two axes (the GEMM's). They move elements bit for bit, so they accept f32 and i32
//! tensors alike.
//! Shader: `shaders/rearrange.wgsl`.
//!
//! Gradients: the backward pass of [`concat_channels`] is [`split_channels`] of `dy` with the
//! inputs' channel counts, and the backward pass of [`split_channels`] is
//! [`concat_channels`] of the outputs' gradients. The backward pass of a rotation is the
//! inverse rotation ([`rotate_backward`], [`rotate_all_backward`]).

use crate::ensure_shape;
use crate::error::Result;
use crate::kernel::{grid_1d, Recorder};
use crate::tensor::{DType, Tensor};

const WG: u32 = 256;

/// Copy `rows` rows of `width` elements from `src` (row stride `src_stride`, first column
/// `src_off`) into `dst` (row stride `dst_stride`, first column `dst_off`).
#[allow(clippy::too_many_arguments)]
fn copy_block(
    rec: &mut Recorder,
    src: &Tensor,
    dst: &Tensor,
    rows: usize,
    width: usize,
    (src_stride, src_off): (usize, usize),
    (dst_stride, dst_off): (usize, usize),
) -> Result<()> {
    if rows * width == 0 {
        return Ok(());
    }
    let v4 = [width, src_stride, src_off, dst_stride, dst_off]
        .iter()
        .all(|v| v.is_multiple_of(4));
    let (entry, unit, b_src, b_dst) = if v4 {
        ("copy_block_v4", 4, 3, 4)
    } else {
        ("copy_block", 1, 1, 2)
    };
    let total = (rows * width / unit) as u64;
    rec.dispatch(
        "rearrange",
        entry,
        &[
            total as u32,
            (width / unit) as u32,
            (src_stride / unit) as u32,
            (src_off / unit) as u32,
            (dst_stride / unit) as u32,
            (dst_off / unit) as u32,
        ],
        &[(b_src, src), (b_dst, dst)],
        grid_1d(total, WG),
    )
}

/// Copy `x`, seen as `[batch, r_in, c_in]`, into a new `[batch, r_out, c_out]` tensor: zero
/// where the output reaches past the input, cropped where it falls short. Every element
/// moves bit for bit (f32 and i32 alike). Backward: `resize_2d` back to `(r_in, c_in)`.
pub fn resize_2d(
    rec: &mut Recorder,
    x: &Tensor,
    batch: usize,
    from: (usize, usize),
    to: (usize, usize),
) -> Result<Tensor> {
    resize(rec, "resize_2d", x, batch, from, to, false)
}

/// [`resize_2d`] of the transpose: `x`, seen as `[batch, r_in, c_in]`, transposed to
/// `[batch, c_in, r_in]` and padded or cropped to `[batch, r_out, c_out]` (output (z, i, j)
/// is x (z, j, i), zero past x). Backward: `transpose_2d` of dy from `(r_out, c_out)` to
/// `(r_in, c_in)`.
pub fn transpose_2d(
    rec: &mut Recorder,
    x: &Tensor,
    batch: usize,
    from: (usize, usize),
    to: (usize, usize),
) -> Result<Tensor> {
    resize(rec, "transpose_2d", x, batch, from, to, true)
}

fn resize(
    rec: &mut Recorder,
    op: &str,
    x: &Tensor,
    batch: usize,
    (r_in, c_in): (usize, usize),
    (r_out, c_out): (usize, usize),
    transposed: bool,
) -> Result<Tensor> {
    ensure_shape!(
        x.numel() == batch * r_in * c_in,
        "{op}: {x:?} is not [{batch}, {r_in}, {c_in}]"
    );
    let total = batch * r_out * c_out;
    ensure_shape!(
        u32::try_from(total.max(x.numel())).is_ok(),
        "{op}: [{batch}, {r_out}, {c_out}] is too large for 32-bit indices"
    );
    let y = Tensor::empty(rec.ctx, &[batch, r_out, c_out], x.dtype())?;
    if total == 0 {
        return Ok(y);
    }
    rec.dispatch(
        "rearrange",
        "resize_2d",
        &[
            total as u32,
            r_in as u32,
            c_in as u32,
            r_out as u32,
            c_out as u32,
            transposed as u32,
        ],
        &[(1, x), (2, &y)],
        grid_1d(total as u64, WG),
    )?;
    Ok(y)
}

/// Concatenate tensors along their last axis (channels of NHWC `[N, H, W, C]`, or features
/// of `[N, C]`; like `torch.cat` along the channel dimension). Every input must have the
/// same rank (at least 1), the same leading dimensions and the same dtype; any number of
/// inputs from one up. Backward: [`split_channels`]`(dy, &[c0, c1, ...])`.
pub fn concat_channels(rec: &mut Recorder, xs: &[&Tensor]) -> Result<Tensor> {
    ensure_shape!(!xs.is_empty(), "concat_channels: no input tensors");
    let first = xs[0];
    let rank = first.shape().len();
    ensure_shape!(rank >= 1, "concat_channels: input 0 {first:?} has no axis");
    let lead = &first.shape()[..rank - 1];
    let mut total_c = 0usize;
    for (i, x) in xs.iter().enumerate() {
        ensure_shape!(
            x.dtype() == first.dtype(),
            "concat_channels: input {i} {x:?} has another dtype than input 0 {first:?}"
        );
        ensure_shape!(
            x.shape().len() == rank && &x.shape()[..rank - 1] == lead,
            "concat_channels: input {i} {x:?} does not match input 0 {first:?} in all but \
             the last axis"
        );
        total_c += x.shape()[rank - 1];
    }
    let mut shape = lead.to_vec();
    shape.push(total_c);
    let y = Tensor::empty(rec.ctx, &shape, first.dtype())?;
    let rows: usize = lead.iter().product();
    let mut off = 0;
    for x in xs {
        let c = x.shape()[rank - 1];
        copy_block(rec, x, &y, rows, c, (c, 0), (total_c, off))?;
        off += c;
    }
    Ok(y)
}

/// Split a tensor along its last axis into pieces of `sizes` channels (in order; they must
/// add up to the last dimension), like `torch.split(x, sizes, dim=channels)`. Also the
/// backward pass of [`concat_channels`]. Its own backward pass is [`concat_channels`] of
/// the pieces' gradients.
pub fn split_channels(rec: &mut Recorder, x: &Tensor, sizes: &[usize]) -> Result<Vec<Tensor>> {
    let rank = x.shape().len();
    ensure_shape!(rank >= 1, "split_channels: x {x:?} has no axis");
    ensure_shape!(
        !sizes.is_empty(),
        "split_channels: no sizes given for x {x:?}"
    );
    let total_c = x.shape()[rank - 1];
    ensure_shape!(
        sizes.iter().sum::<usize>() == total_c,
        "split_channels: sizes {sizes:?} do not add up to the last axis of x {x:?}"
    );
    let lead = &x.shape()[..rank - 1];
    let rows: usize = lead.iter().product();
    let mut out = Vec::with_capacity(sizes.len());
    let mut off = 0;
    for &c in sizes {
        let mut shape = lead.to_vec();
        shape.push(c);
        let piece = Tensor::empty(rec.ctx, &shape, x.dtype())?;
        copy_block(rec, x, &piece, rows, c, (total_c, off), (c, 0))?;
        off += c;
        out.push(piece);
    }
    Ok(out)
}

/// Check a square NHWC image batch and return `[N, S, C]`.
fn square(op: &str, name: &str, x: &Tensor) -> Result<[usize; 3]> {
    ensure_shape!(
        x.shape().len() == 4,
        "{op}: {name} {x:?} must be NHWC [N, H, W, C]"
    );
    let s = x.shape();
    ensure_shape!(
        s[1] == s[2],
        "{op}: {name} {x:?} must be square (H == W) to rotate"
    );
    Ok([s[0], s[1], s[3]])
}

/// Dispatch one rotation: per-image k from `k` when given, else `k_all` for every image.
fn rotate_impl(
    rec: &mut Recorder,
    op: &str,
    x: &Tensor,
    k: Option<&Tensor>,
    k_all: u32,
    inverse: bool,
) -> Result<Tensor> {
    let [n, s, c] = square(op, "x", x)?;
    if let Some(k) = k {
        ensure_shape!(
            k.dtype() == DType::I32 && k.shape() == [n],
            "{op}: k {k:?} must be i32 [{n}] (one quarter-turn count per image)"
        );
    }
    let y = Tensor::empty(rec.ctx, x.shape(), x.dtype())?;
    let total = x.numel() as u64;
    if total == 0 {
        return Ok(y);
    }
    let params = [total as u32, s as u32, c as u32, k_all & 3, inverse as u32];
    match k {
        Some(k) => rec.dispatch(
            "rearrange",
            "rotate_each",
            &params,
            &[(1, x), (2, &y), (5, k)],
            grid_1d(total, WG),
        )?,
        None => rec.dispatch(
            "rearrange",
            "rotate_uniform",
            &params,
            &[(1, x), (2, &y)],
            grid_1d(total, WG),
        )?,
    }
    Ok(y)
}

/// Rotate image `i` of a square batch `x [N, S, S, C]` by `k[i] * 90` degrees
/// counter-clockwise, exactly as `torch.rot90(img_nchw, k[i], dims=(2, 3))`. `k` is an i32
/// tensor `[N]`; its values are taken modulo 4 (0..=3 expected; -1 means 3). Errors if
/// H != W.
pub fn rotate(rec: &mut Recorder, x: &Tensor, k: &Tensor) -> Result<Tensor> {
    rotate_impl(rec, "rotate", x, Some(k), 0, false)
}

/// Gradient of [`rotate`]: the inverse rotation of `dy`, image `i` by `-k[i] * 90` degrees.
pub fn rotate_backward(rec: &mut Recorder, dy: &Tensor, k: &Tensor) -> Result<Tensor> {
    rotate_impl(rec, "rotate_backward", dy, Some(k), 0, true)
}

/// Rotate every image of `x [N, S, S, C]` by `k * 90` degrees counter-clockwise
/// (`torch.rot90(x_nchw, k, dims=(2, 3))`; k modulo 4).
pub fn rotate_all(rec: &mut Recorder, x: &Tensor, k: u32) -> Result<Tensor> {
    rotate_impl(rec, "rotate_all", x, None, k, false)
}

/// Gradient of [`rotate_all`]: every image of `dy` rotated by `-k * 90` degrees.
pub fn rotate_all_backward(rec: &mut Recorder, dy: &Tensor, k: u32) -> Result<Tensor> {
    rotate_impl(rec, "rotate_all_backward", dy, None, k, true)
}

/// Concatenate tensors along their first (batch) axis, like `torch.cat(xs, dim=0)`: every
/// input must have the same trailing dimensions and dtype. The data of a row-major tensor is
/// its rows one after another, so this is [`concat_channels`] of the inputs seen as
/// `[1, numel]`. Backward: [`split_batch`]`(dy, &[n0, n1, ...])`.
pub fn concat_batch(rec: &mut Recorder, xs: &[&Tensor]) -> Result<Tensor> {
    ensure_shape!(!xs.is_empty(), "concat_batch: no input tensors");
    let first = xs[0];
    ensure_shape!(
        !first.shape().is_empty(),
        "concat_batch: input 0 {first:?} has no axis"
    );
    let tail = &first.shape()[1..];
    let mut rows = 0;
    let mut flat = Vec::with_capacity(xs.len());
    for (i, x) in xs.iter().enumerate() {
        ensure_shape!(
            x.shape().len() == first.shape().len() && &x.shape()[1..] == tail,
            "concat_batch: input {i} {x:?} does not match input 0 {first:?} in all but the \
             first axis"
        );
        rows += x.shape()[0];
        flat.push(x.reshape(&[1, x.numel()])?);
    }
    let refs: Vec<&Tensor> = flat.iter().collect();
    let y = concat_channels(rec, &refs)?;
    let mut shape = vec![rows];
    shape.extend_from_slice(tail);
    y.reshape(&shape)
}

/// Split a tensor along its first (batch) axis into pieces of `sizes` rows (in order; they
/// must add up to the first dimension), like `torch.split(x, sizes, dim=0)`. Also the
/// backward pass of [`concat_batch`]; its own backward pass is [`concat_batch`].
pub fn split_batch(rec: &mut Recorder, x: &Tensor, sizes: &[usize]) -> Result<Vec<Tensor>> {
    ensure_shape!(!x.shape().is_empty(), "split_batch: x {x:?} has no axis");
    let rows = x.shape()[0];
    ensure_shape!(
        sizes.iter().sum::<usize>() == rows,
        "split_batch: sizes {sizes:?} do not add up to the first axis of x {x:?}"
    );
    let row: usize = x.shape()[1..].iter().product();
    let widths: Vec<usize> = sizes.iter().map(|s| s * row).collect();
    let pieces = split_channels(rec, &x.reshape(&[1, x.numel()])?, &widths)?;
    pieces
        .iter()
        .zip(sizes)
        .map(|(p, &s)| {
            let mut shape = vec![s];
            shape.extend_from_slice(&x.shape()[1..]);
            p.reshape(&shape)
        })
        .collect()
}
