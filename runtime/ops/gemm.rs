//! Matrix products: a batched, register-tiled GEMM and the layers built on it (linear,
//! batched matmul for self-attention) with their backward passes, plus deterministic column
//! sums ([`sum_rows`], used for bias gradients here and by other families).
//! Shader: `shaders/gemm.wgsl`.
//!
//! Every product is `C[z] = op(A[z]) op(B[z]) (+ bias)` with `op` an optional transpose given
//! by flags; the kernels read the stored layout (on CPU adapters with subgroups a small
//! transposed operand is transposed first instead, see `TRANSPOSE_MAX`). Each
//! thread computes a 16x16 block of C (a workgroup 128x128); when the sizes allow 16-byte
//! runs along the stored rows and along the rows of C, a variant with `vec4` loads and stores
//! is used. The block is large because on lavapipe a storage-buffer load costs far more than a
//! multiply-add (see the shader's header). On CPU adapters with subgroups
//! ([`Recorder::subgroups`]) and k, n (and m when A is transposed) multiples of 4, the
//! `gemm_<ab>_sg` kernels of `shaders/gemm_sg.wgsl` run instead: A and B read as textures,
//! 8 rows x 16 columns per lane, B shared by subgroup shuffles. Other sizes there are padded
//! with zeros to those multiples first (`rearrange::resize_2d`) and C cropped after, except
//! for small products, which take one-element-per-lane kernels (`gemm_<ab>_one_sg`).

use crate::ensure_shape;
use crate::error::Result;
use crate::kernel::Recorder;
use crate::ops::rearrange;
use crate::tensor::{DType, Tensor};

/// Rows and columns of C covered by one workgroup (8x8 threads, 16x16 outputs each).
const TILE: usize = 128;
/// Rows and columns of C per workgroup of the `_sg` kernels (16 lanes of 8 rows x 16 columns).
const SG_ROWS: usize = 128;
const SG_COLS: usize = 16;
/// Largest m*n*k that CPU adapters with subgroups send to the one-element-per-lane kernels
/// when the sizes rule out the tiled ones (about 10 ms on lavapipe at this size).
const SMALL_MNK: usize = 1 << 22;
/// Smallest batch*m*n*k that CPU adapters with subgroups pad to multiples of 4 for the `_sg`
/// kernels (below it the one-element-per-lane kernels are cheaper than the extra copies).
const PAD_MNK: usize = 1 << 16;
/// Largest transposed operand (elements) that CPU adapters with subgroups transpose before
/// the product rather than read transposed (weights of linear layers, the gradients of small
/// products); larger ones keep the transposing kernels, where a copy would cost more.
const TRANSPOSE_MAX: usize = 1 << 16;
/// The kind of [`Recorder::keep_derived`] tensor a transposed B operand is kept as.
const TRANSPOSED: &str = "gemm_transposed_b";
/// Threads per workgroup of `sum_rows_partial`.
const SUM_WG: usize = 64;

/// Gradients of [`linear`].
#[derive(Debug)]
pub struct LinearGrads {
    /// `[N, in]`
    pub dx: Tensor,
    /// `[out, in]`
    pub dw: Tensor,
    /// `[out]`, present when the layer has a bias.
    pub db: Option<Tensor>,
}

fn ensure_f32(op: &str, name: &str, t: &Tensor) -> Result<()> {
    ensure_shape!(t.dtype() == DType::F32, "{op}: {name} {t:?} is not f32");
    Ok(())
}

fn ensure_u32(op: &str, name: &str, elems: usize) -> Result<()> {
    ensure_shape!(
        u32::try_from(elems).is_ok(),
        "{op}: {name} has {elems} elements, more than 32-bit indices reach"
    );
    Ok(())
}

/// `gemm_raw` on operands padded with zeros to multiples of 4 (k, n, and m when A is
/// transposed), which the `_sg` kernels take; C is cropped back to `[batch, m, n]`. Zeros
/// along k add nothing, and the padded rows and columns of C are dropped.
#[allow(clippy::too_many_arguments)]
fn gemm_padded(
    rec: &mut Recorder,
    op: &str,
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
    bias: Option<&Tensor>,
    [batch, m, n, k]: [usize; 4],
) -> Result<Tensor> {
    let (m4, n4, k4) = padded_dims([batch, m, n, k], trans_a);
    let stored = |t: bool, rows: usize, cols: usize| if t { (cols, rows) } else { (rows, cols) };
    // An operand already of the padded size is used as it is.
    let pad = |rec: &mut Recorder, t: &Tensor, from, to| {
        if from == to {
            Ok(t.clone())
        } else {
            rearrange::resize_2d(rec, t, batch, from, to)
        }
    };
    let a4 = pad(rec, a, stored(trans_a, m, k), stored(trans_a, m4, k4))?;
    let b4 = pad(rec, b, stored(trans_b, k, n), stored(trans_b, k4, n4))?;
    let bias4 = match bias {
        Some(t) if n4 != n => Some(rearrange::resize_2d(rec, t, 1, (1, n), (1, n4))?),
        _ => None,
    };
    let bias4 = bias4.as_ref().or(bias);
    let c4 = gemm_raw(
        rec,
        op,
        &a4,
        &b4,
        trans_a,
        trans_b,
        bias4,
        [batch, m4, n4, k4],
    )?;
    if (m4, n4) == (m, n) {
        return Ok(c4);
    }
    rearrange::resize_2d(rec, &c4, batch, (m4, n4), (m, n))
}

/// (m, n, k) rounded up to multiples of 4 where the `_sg` kernels need it: n and k, and m
/// when A is transposed.
fn padded_dims([_, m, n, k]: [usize; 4], trans_a: bool) -> (usize, usize, usize) {
    let up = |v: usize| v.div_ceil(4) * 4;
    (if trans_a { up(m) } else { m }, up(n), up(k))
}

/// Record `C[z] = op(A[z]) op(B[z]) (+ bias[n])` for z < batch, with op(A) `[m, k]` and
/// op(B) `[k, n]`; returns C as `[batch, m, n]`. Shapes must already be checked.
#[allow(clippy::too_many_arguments)]
fn gemm_raw(
    rec: &mut Recorder,
    op: &str,
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
    bias: Option<&Tensor>,
    dims: [usize; 4],
) -> Result<Tensor> {
    let [batch, m, n, k] = dims;
    ensure_u32(op, "A", batch * m * k)?;
    ensure_u32(op, "B", batch * k * n)?;
    ensure_u32(op, "C", batch * m * n)?;
    // vec4 loads run along the contiguous dimension of each stored operand: k for A [m, k]
    // and B [n, k], m for A [k, m], n for B [k, n]; stores along n.
    let a_run = if trans_a { m } else { k };
    let b_run = if trans_b { k } else { n };
    let vec4 = m > 0 && n > 0 && k > 0 && a_run % 4 == 0 && b_run % 4 == 0 && n % 4 == 0;
    let layout = format!(
        "{}{}",
        if trans_a { 't' } else { 'n' },
        if trans_b { 't' } else { 'n' }
    );
    // CPU adapters with subgroups: A and B read as textures, B shared through shuffles
    // (`_sg`), or for small products the tiled kernels do not take, one element per lane
    // (`_one_sg`). Elsewhere the register-tiled storage kernels.
    let cpu_sg = rec.cpu_kernels() && rec.subgroups();
    // There a transposed operand of at most TRANSPOSE_MAX elements is transposed first (one
    // `resize_2d` pass), and the product takes the untransposed kernels: a first run compiles
    // one product kernel for all layouts (docs/PERFORMANCE.md, session 18).
    let small = |t: bool, elems: usize| !t || elems <= TRANSPOSE_MAX;
    if cpu_sg
        && rec.gemm_transposes()
        && (trans_a || trans_b)
        && small(trans_a, batch * m * k)
        && small(trans_b, batch * k * n)
    {
        let a = if trans_a {
            rearrange::transpose_2d(rec, a, batch, (k, m), (m, k))?
        } else {
            a.clone()
        };
        // B is mostly a layer's weight: its transpose is kept until the weight is written.
        let b = match (trans_b, rec.derived(TRANSPOSED, b)) {
            (false, _) => b.clone(),
            (true, Some(t)) => t,
            (true, None) => {
                let t = rearrange::transpose_2d(rec, b, batch, (n, k), (k, n))?;
                rec.keep_derived(TRANSPOSED, b, &t);
                t
            }
        };
        return gemm_raw(rec, op, &a, &b, false, false, bias, dims);
    }
    let tiles_sg = cpu_sg
        && m > 0
        && k % 4 == 0
        && n % 4 == 0
        && (!trans_a || m % 4 == 0)
        && rec.texture_fits(a.numel())
        && rec.texture_fits(b.numel());
    // Other products of that size: pad the operands with zeros to multiples of 4 and crop C.
    if cpu_sg && !tiles_sg && batch * m * n * k >= PAD_MNK {
        let (m4, n4, k4) = padded_dims(dims, trans_a);
        let fits = [batch * m4 * k4, batch * k4 * n4, batch * m4 * n4]
            .iter()
            .all(|&e| u32::try_from(e).is_ok() && rec.texture_fits(e));
        if fits {
            return gemm_padded(rec, op, a, b, trans_a, trans_b, bias, dims);
        }
    }
    // (shader, entry, workgroups, bindings of A, B and C)
    let (shader, entry, groups, (ba, bb, bc)) = if tiles_sg {
        let groups = [m.div_ceil(SG_ROWS), n.div_ceil(SG_COLS), batch];
        ("gemm_sg", format!("gemm_{layout}_sg"), groups, (8, 9, 7))
    } else if cpu_sg && !vec4 && m * n * k <= SMALL_MNK {
        let groups = [n.div_ceil(64), m, batch];
        (
            "gemm_sg",
            format!("gemm_{layout}_one_sg"),
            groups,
            (1, 2, 4),
        )
    } else {
        let groups = [n.div_ceil(TILE), m.div_ceil(TILE), batch];
        let (entry, bind) = if vec4 {
            (format!("gemm_{layout}_v4"), (5, 6, 7))
        } else {
            (format!("gemm_{layout}"), (1, 2, 4))
        };
        ("gemm", entry, groups, bind)
    };
    ensure_shape!(
        groups.iter().all(|&g| g <= 65535),
        "{op}: [batch {batch}, {m} x {n}] needs {groups:?} workgroups, more than 65535 in one \
         dimension"
    );
    let c = Tensor::empty(rec.ctx, &[batch, m, n], DType::F32)?;
    // Without a bias the kernel never reads binding 3, but it must be bound.
    let dummy;
    let bias_t = match bias {
        Some(t) => t,
        None => {
            dummy = Tensor::empty(rec.ctx, &[1], DType::F32)?;
            &dummy
        }
    };
    let params = [
        m as u32,
        n as u32,
        k as u32,
        bias.is_some() as u32,
        (m * k) as u32,
        (k * n) as u32,
        (m * n) as u32,
        0,
    ];
    rec.dispatch(
        shader,
        &entry,
        &params,
        &[(ba, a), (bb, b), (3, bias_t), (bc, &c)],
        groups.map(|g| g as u32),
    )?;
    Ok(c)
}

/// Rows and columns of `op(t)` for a 2-D or batched (last two dimensions) operand.
fn op_dims(t: &Tensor, trans: bool) -> (usize, usize) {
    let s = t.shape();
    let (r, c) = (s[s.len() - 2], s[s.len() - 1]);
    if trans {
        (c, r)
    } else {
        (r, c)
    }
}

/// `op(a) op(b) (+ bias)` for 2-D `a` and `b`, `op` an optional transpose: `a` is `[M, K]`
/// (or `[K, M]` with `trans_a`), `b` is `[K, N]` (or `[N, K]` with `trans_b`), `bias` is `[N]`
/// and is added to every row. Returns `[M, N]`.
pub fn matmul(
    rec: &mut Recorder,
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    const OP: &str = "matmul";
    ensure_f32(OP, "a", a)?;
    ensure_f32(OP, "b", b)?;
    ensure_shape!(a.shape().len() == 2, "{OP}: a {a:?} is not 2-D");
    ensure_shape!(b.shape().len() == 2, "{OP}: b {b:?} is not 2-D");
    let (m, k) = op_dims(a, trans_a);
    let (kb, n) = op_dims(b, trans_b);
    ensure_shape!(
        k == kb,
        "{OP}: inner sizes differ: a {a:?} (trans {trans_a}) gives K = {k}, b {b:?} (trans \
         {trans_b}) gives K = {kb}"
    );
    if let Some(t) = bias {
        ensure_f32(OP, "bias", t)?;
        ensure_shape!(t.shape() == [n], "{OP}: bias {t:?} is not [{n}]");
    }
    gemm_raw(rec, OP, a, b, trans_a, trans_b, bias, [1, m, n, k])?.reshape(&[m, n])
}

/// Fully connected layer `y = x w^T + b`: `x [N, in]`, `w [out, in]` (PyTorch layout),
/// `b [out]` optional. Returns `y [N, out]`.
pub fn linear(rec: &mut Recorder, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    const OP: &str = "linear";
    ensure_f32(OP, "x", x)?;
    ensure_f32(OP, "w", w)?;
    ensure_shape!(x.shape().len() == 2, "{OP}: x {x:?} is not [N, in]");
    ensure_shape!(w.shape().len() == 2, "{OP}: w {w:?} is not [out, in]");
    let (n, fin) = (x.shape()[0], x.shape()[1]);
    let fout = w.shape()[0];
    ensure_shape!(
        w.shape()[1] == fin,
        "{OP}: w {w:?} does not take {fin} inputs (x {x:?})"
    );
    if let Some(t) = b {
        ensure_f32(OP, "b", t)?;
        ensure_shape!(t.shape() == [fout], "{OP}: b {t:?} is not [{fout}]");
    }
    gemm_raw(rec, OP, x, w, false, true, b, [1, n, fout, fin])?.reshape(&[n, fout])
}

/// Backward of [`linear`]: with `x` and `w` the forward inputs and `dy [N, out]`,
/// `dx = dy w`, `dw = dy^T x`, `db = sum over rows of dy` (when `has_bias`).
pub fn linear_backward(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    has_bias: bool,
) -> Result<LinearGrads> {
    const OP: &str = "linear_backward";
    ensure_f32(OP, "x", x)?;
    ensure_f32(OP, "w", w)?;
    ensure_f32(OP, "dy", dy)?;
    ensure_shape!(x.shape().len() == 2, "{OP}: x {x:?} is not [N, in]");
    ensure_shape!(w.shape().len() == 2, "{OP}: w {w:?} is not [out, in]");
    let (n, fin) = (x.shape()[0], x.shape()[1]);
    let fout = w.shape()[0];
    ensure_shape!(
        w.shape()[1] == fin,
        "{OP}: w {w:?} does not take {fin} inputs (x {x:?})"
    );
    ensure_shape!(
        dy.shape() == [n, fout],
        "{OP}: dy {dy:?} is not [{n}, {fout}] (x {x:?}, w {w:?})"
    );
    let dx = gemm_raw(rec, OP, dy, w, false, false, None, [1, n, fin, fout])?.reshape(&[n, fin])?;
    let dw =
        gemm_raw(rec, OP, dy, x, true, false, None, [1, fout, fin, n])?.reshape(&[fout, fin])?;
    let db = if has_bias {
        Some(sum_rows(rec, dy)?)
    } else {
        None
    };
    Ok(LinearGrads { dx, dw, db })
}

/// Batched matrix product `c[i] = op(a[i]) op(b[i])` for 3-D tensors: `a` is `[B, M, K]`
/// (`[B, K, M]` with `trans_a`), `b` is `[B, K, N]` (`[B, N, K]` with `trans_b`). Returns
/// `[B, M, N]`. Self-attention uses it for `theta phi^T` (`trans_b`) and `A g`.
pub fn bmm(
    rec: &mut Recorder,
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
) -> Result<Tensor> {
    const OP: &str = "bmm";
    ensure_f32(OP, "a", a)?;
    ensure_f32(OP, "b", b)?;
    ensure_shape!(a.shape().len() == 3, "{OP}: a {a:?} is not 3-D [B, ., .]");
    ensure_shape!(b.shape().len() == 3, "{OP}: b {b:?} is not 3-D [B, ., .]");
    let batch = a.shape()[0];
    ensure_shape!(
        b.shape()[0] == batch,
        "{OP}: batch sizes differ: a {a:?}, b {b:?}"
    );
    let (m, k) = op_dims(a, trans_a);
    let (kb, n) = op_dims(b, trans_b);
    ensure_shape!(
        k == kb,
        "{OP}: inner sizes differ: a {a:?} (trans {trans_a}) gives K = {k}, b {b:?} (trans \
         {trans_b}) gives K = {kb}"
    );
    gemm_raw(rec, OP, a, b, trans_a, trans_b, None, [batch, m, n, k])
}

/// Backward of [`bmm`] with the same flags: given the forward inputs and `dc [B, M, N]`,
/// returns `(da, db)` shaped like `a` and `b`. From `d op(a) = dc op(b)^T` and
/// `d op(b) = op(a)^T dc`, each transposed back to the stored layout.
pub fn bmm_backward(
    rec: &mut Recorder,
    a: &Tensor,
    b: &Tensor,
    trans_a: bool,
    trans_b: bool,
    dc: &Tensor,
) -> Result<(Tensor, Tensor)> {
    const OP: &str = "bmm_backward";
    ensure_f32(OP, "dc", dc)?;
    ensure_shape!(
        a.shape().len() == 3 && b.shape().len() == 3,
        "{OP}: a {a:?} and b {b:?} must be 3-D"
    );
    let (m, k) = op_dims(a, trans_a);
    let (kb, n) = op_dims(b, trans_b);
    ensure_shape!(
        k == kb && a.shape()[0] == b.shape()[0],
        "{OP}: a {a:?} (trans {trans_a}) and b {b:?} (trans {trans_b}) do not multiply"
    );
    ensure_shape!(
        dc.shape() == [a.shape()[0], m, n],
        "{OP}: dc {dc:?} is not [{}, {m}, {n}] (a {a:?}, b {b:?})",
        a.shape()[0]
    );
    let (da, db) = match (trans_a, trans_b) {
        (false, false) => (bmm(rec, dc, b, false, true)?, bmm(rec, a, dc, true, false)?),
        (false, true) => (
            bmm(rec, dc, b, false, false)?,
            bmm(rec, dc, a, true, false)?,
        ),
        (true, false) => (
            bmm(rec, b, dc, false, true)?,
            bmm(rec, a, dc, false, false)?,
        ),
        (true, true) => (bmm(rec, b, dc, true, true)?, bmm(rec, dc, a, true, true)?),
    };
    Ok((da, db))
}

/// Column sums of `x [R, C]`: returns `[C]` with `out[c] = sum_r x[r, c]`.
///
/// Deterministic: the same input gives the same bits every time (no atomics; fixed
/// summation order). Up to 256 rows are summed by one thread per column; more rows are cut
/// into about sqrt(R) chunks summed in parallel, then the chunk sums are added in order.
/// For a bias gradient of an NHWC activation, reshape `dy` to `[N*H*W, C]` first.
pub fn sum_rows(rec: &mut Recorder, x: &Tensor) -> Result<Tensor> {
    const OP: &str = "sum_rows";
    ensure_f32(OP, "x", x)?;
    ensure_shape!(x.shape().len() == 2, "{OP}: x {x:?} is not [R, C]");
    let (r, c) = (x.shape()[0], x.shape()[1]);
    ensure_u32(OP, "x", r * c)?;
    let out = Tensor::empty(rec.ctx, &[c], DType::F32)?;
    let cols = c.div_ceil(SUM_WG);
    ensure_shape!(cols <= 65535, "{OP}: x {x:?} has too many columns");
    let pass = |rec: &mut Recorder, src: &Tensor, dst: &Tensor, rows: usize, chunk: usize| {
        let chunks = rows.div_ceil(chunk).max(1);
        rec.dispatch(
            "gemm",
            "sum_rows_partial",
            &[rows as u32, c as u32, chunk as u32, 0, 0, 0, 0, 0],
            &[(1, src), (4, dst)],
            [cols as u32, chunks as u32, 1],
        )
    };
    if r <= 256 {
        pass(rec, x, &out, r, r.max(1))?;
    } else {
        let chunk = (r as f64).sqrt().ceil() as usize;
        let chunks = r.div_ceil(chunk);
        let partial = Tensor::empty(rec.ctx, &[chunks, c], DType::F32)?;
        pass(rec, x, &partial, r, chunk)?;
        pass(rec, &partial, &out, chunks, chunks)?;
    }
    Ok(out)
}
