//! Spectral normalisation (Miyato et al. 2018, as BigGAN uses it) with its backward pass.
//! Shader: `shaders/spectral_norm.wgsl`.
//!
//! A weight `W` of any rank `>= 1` in PyTorch layout is seen as the matrix
//! `[out, in*kh*kw]` (a plain reshape: `out = shape[0]`, the rest flattened; rank 1 is
//! `[out, 1]`). `u` (`[out]`) is persistent state saved with the model, not a parameter.
//! `l2n(x) = x / max(|x|, 1e-12)` (PyTorch's `F.normalize`).
//!
//! - Training forward ([`spectral_norm`] with `training = true`), one power iteration:
//!   `v = l2n(W^T u)`, `u' = l2n(W v)`, `sigma = u' . (W v)`, `W_sn = W / sigma`.
//!   `u'` is written into the caller's `u` tensor in place (recorded after the reads of `u`),
//!   so `u` evolves call by call; `u'`, `v` and `sigma` are also saved in fresh tensors for
//!   the backward pass, so a later forward that updates `u` again does not disturb them.
//! - Eval forward (`training = false`): `u` is read and left unchanged;
//!   `v = l2n(W^T u)`, `sigma = u . (W v)`, `W_sn = W / sigma` (the saved `u` is a copy of
//!   the stored one).
//! - Backward ([`spectral_norm_backward`]): `u` and `v` are constants, `sigma` carries the
//!   gradient: `dW = (G - <G, W_sn> u v^T) / sigma` with `G = dL/dW_sn`.
//!
//! On CPU adapters with subgroups the forward is one dispatch of one subgroup
//! (`sn_forward_sg`, weight read as a texture) instead of five; GPUs keep the five
//! lane-parallel kernels.
//!
//! All reductions run in a fixed order (no atomics), so results are bitwise reproducible.
//! A zero weight gives `sigma = 0` and a non-finite `W_sn`, as in PyTorch.

use crate::ensure_shape;
use crate::error::Result;
use crate::kernel::{grid_1d, Recorder};
use crate::tensor::{DType, Tensor};

/// `eps` of the normalisation, as in PyTorch's spectral norm.
pub const EPS: f32 = 1e-12;

const SHADER: &str = "spectral_norm";
/// Most partial sums of `<G, W_sn>` (the backward kernel reduces them in one workgroup).
const MAX_PARTS: usize = 256;
/// Least elements per partial sum.
const MIN_CHUNK: usize = 1024;

/// What the forward pass saves for [`spectral_norm_backward`].
#[derive(Clone, Debug)]
pub struct SpectralNormSaved {
    /// The normalised weight `W / sigma` (same tensor as [`SpectralNormOutput::w_sn`]).
    pub w_sn: Tensor,
    /// `u` used for sigma (`u'` in training mode, the stored `u` in eval mode), `[out]`.
    pub u: Tensor,
    /// `v = l2n(W^T u_old)`, `[in*kh*kw]`.
    pub v: Tensor,
    /// `sigma`, shape `[1]`.
    pub sigma: Tensor,
}

/// Result of [`spectral_norm`].
#[derive(Clone, Debug)]
pub struct SpectralNormOutput {
    /// `W / sigma`, with the shape of `W`.
    pub w_sn: Tensor,
    /// What the backward pass needs.
    pub saved: SpectralNormSaved,
}

/// Rows and columns of the matrix view of `w`.
fn matrix_dims(w: &Tensor) -> Result<(usize, usize)> {
    ensure_shape!(
        w.dtype() == DType::F32,
        "spectral_norm: weight {w:?} is not f32"
    );
    ensure_shape!(
        !w.shape().is_empty(),
        "spectral_norm: weight {w:?} has rank 0 (need [out, ...])"
    );
    let rows = w.shape()[0];
    let cols: usize = w.shape()[1..].iter().product();
    ensure_shape!(rows > 0 && cols > 0, "spectral_norm: weight {w:?} is empty");
    Ok((rows, cols))
}

/// Spectral normalisation of `w` with the persistent vector `u` (`[out]`, f32).
///
/// With `training`, one power iteration runs and its new `u` is written into `u` in place;
/// without, `u` is only read. See the module documentation for the exact formulas.
pub fn spectral_norm(
    rec: &mut Recorder,
    w: &Tensor,
    u: &Tensor,
    training: bool,
) -> Result<SpectralNormOutput> {
    let (rows, cols) = matrix_dims(w)?;
    ensure_shape!(
        u.dtype() == DType::F32 && u.shape() == [rows],
        "spectral_norm: u {u:?} must be f32 [{rows}] for weight {w:?}"
    );
    ensure_shape!(
        !u.same_buffer(w),
        "spectral_norm: u and the weight share one buffer"
    );
    let ctx = rec.ctx;
    let t = Tensor::empty(ctx, &[cols], DType::F32)?;
    let v = Tensor::empty(ctx, &[cols], DType::F32)?;
    let s = Tensor::empty(ctx, &[rows], DType::F32)?;
    let u_saved = Tensor::empty(ctx, &[rows], DType::F32)?;
    let sigma = Tensor::empty(ctx, &[1], DType::F32)?;
    let w_sn = Tensor::empty(ctx, w.shape(), DType::F32)?;
    let params = [
        rows as u32,
        cols as u32,
        EPS.to_bits(),
        0,
        0,
        training as u32,
    ];
    let numel = rows * cols;
    if rec.cpu_kernels() && rec.subgroups() && numel.is_multiple_of(4) && rec.texture_fits(numel) {
        let entry = if cols.is_multiple_of(4) {
            "sn_forward_sg"
        } else {
            "sn_forward_sg_cols"
        };
        rec.dispatch(
            "spectral_norm_sg",
            entry,
            &params,
            &[
                (2, u),
                (3, &t),
                (4, &v),
                (5, &s),
                (6, &u_saved),
                (7, &sigma),
                (9, w),
                (10, &w_sn),
            ],
            [1, 1, 1],
        )?;
        return Ok(SpectralNormOutput {
            w_sn: w_sn.clone(),
            saved: SpectralNormSaved {
                w_sn,
                u: u_saved,
                v,
                sigma,
            },
        });
    }
    rec.dispatch(
        SHADER,
        "sn_wt_u",
        &params,
        &[(1, w), (2, u), (3, &t)],
        grid_1d(cols as u64, 256),
    )?;
    rec.dispatch(
        SHADER,
        "sn_normalize_v",
        &params,
        &[(3, &t), (4, &v)],
        [1, 1, 1],
    )?;
    rec.dispatch(
        SHADER,
        "sn_w_v",
        &params,
        &[(1, w), (4, &v), (5, &s)],
        grid_1d(rows as u64, 1),
    )?;
    let finish = if training {
        "sn_finish_train"
    } else {
        "sn_finish_eval"
    };
    rec.dispatch(
        SHADER,
        finish,
        &params,
        &[(2, u), (5, &s), (6, &u_saved), (7, &sigma)],
        [1, 1, 1],
    )?;
    rec.dispatch(
        SHADER,
        "sn_scale",
        &params,
        &[(1, w), (7, &sigma), (8, &w_sn)],
        grid_1d((rows * cols) as u64, 256),
    )?;
    Ok(SpectralNormOutput {
        w_sn: w_sn.clone(),
        saved: SpectralNormSaved {
            w_sn,
            u: u_saved,
            v,
            sigma,
        },
    })
}

/// Gradient of the weight through spectral normalisation:
/// `dW = (G - <G, W_sn> u v^T) / sigma`, with `dw_sn = G = dL/dW_sn` (shape of `W`).
/// `u` is state and has no gradient, so `dW` is the only one.
pub fn spectral_norm_backward(
    rec: &mut Recorder,
    saved: &SpectralNormSaved,
    dw_sn: &Tensor,
) -> Result<Tensor> {
    let (rows, cols) = matrix_dims(&saved.w_sn)?;
    ensure_shape!(
        dw_sn.dtype() == DType::F32 && dw_sn.shape() == saved.w_sn.shape(),
        "spectral_norm_backward: gradient {dw_sn:?} must be f32 with the weight's shape {:?}",
        saved.w_sn.shape()
    );
    ensure_shape!(
        saved.u.dtype() == DType::F32 && saved.u.shape() == [rows],
        "spectral_norm_backward: saved u {:?} must be f32 [{rows}]",
        saved.u
    );
    ensure_shape!(
        saved.v.dtype() == DType::F32 && saved.v.shape() == [cols],
        "spectral_norm_backward: saved v {:?} must be f32 [{cols}]",
        saved.v
    );
    ensure_shape!(
        saved.sigma.dtype() == DType::F32 && saved.sigma.numel() == 1,
        "spectral_norm_backward: saved sigma {:?} must be one f32",
        saved.sigma
    );
    let n = rows * cols;
    let parts = n.div_ceil(MIN_CHUNK).clamp(1, MAX_PARTS);
    let chunk = n.div_ceil(parts);
    let ctx = rec.ctx;
    let partial = Tensor::empty(ctx, &[parts], DType::F32)?;
    let dw = Tensor::empty(ctx, saved.w_sn.shape(), DType::F32)?;
    let params = [
        rows as u32,
        cols as u32,
        EPS.to_bits(),
        parts as u32,
        chunk as u32,
        0,
    ];
    rec.dispatch(
        SHADER,
        "sn_dot_partial",
        &params,
        &[(1, &saved.w_sn), (3, dw_sn), (5, &partial)],
        [parts as u32, 1, 1],
    )?;
    rec.dispatch(
        SHADER,
        "sn_backward",
        &params,
        &[
            (2, &saved.u),
            (3, dw_sn),
            (4, &saved.v),
            (5, &partial),
            (7, &saved.sigma),
            (8, &dw),
        ],
        grid_1d(n as u64, 256),
    )?;
    Ok(dw)
}
