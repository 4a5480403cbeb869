//! Class embedding: lookup `E[ids]`, class interpolation `(1 - t) E[a] + t E[b]`, and their
//! backward passes. Shader: `shaders/embedding.wgsl`.
//!
//! Ids are `i32` tensors `[N]`; the table is `[K, D]`. An id outside `[0, K)` reads as a zero
//! row in the forward pass and contributes nothing to the table gradient. The device cannot
//! report such ids; callers validate ids where they come from the host.
//! The table gradient is computed without atomics: one thread per table element loops over
//! the batch in order, so repeated ids sum deterministically.

use crate::ensure_shape;
use crate::error::Result;
use crate::kernel::{grid_1d, Recorder};
use crate::tensor::{DType, Tensor};

const WG: u32 = 64;

fn check_table(op: &str, table: &Tensor) -> Result<(usize, usize)> {
    ensure_shape!(
        table.dtype() == DType::F32 && table.shape().len() == 2,
        "{op}: table {table:?} must be f32 [K, D]"
    );
    let (k, d) = (table.shape()[0], table.shape()[1]);
    ensure_shape!(k > 0 && d > 0, "{op}: table {table:?} is empty");
    Ok((k, d))
}

fn check_ids(op: &str, what: &str, ids: &Tensor) -> Result<usize> {
    ensure_shape!(
        ids.dtype() == DType::I32 && ids.shape().len() == 1,
        "{op}: {what} {ids:?} must be i32 [N]"
    );
    ensure_shape!(ids.shape()[0] > 0, "{op}: {what} {ids:?} is empty");
    Ok(ids.shape()[0])
}

fn check_mix(
    op: &str,
    table: &Tensor,
    ids_a: &Tensor,
    ids_b: &Tensor,
    t: &Tensor,
) -> Result<(usize, usize, usize)> {
    let (k, d) = check_table(op, table)?;
    let n = check_ids(op, "ids_a", ids_a)?;
    ensure_shape!(
        ids_b.dtype() == DType::I32 && ids_b.shape() == [n],
        "{op}: ids_b {ids_b:?} must be i32 [{n}] like ids_a"
    );
    ensure_shape!(
        t.dtype() == DType::F32 && t.shape() == [n],
        "{op}: t {t:?} must be f32 [{n}] like ids_a"
    );
    Ok((k, d, n))
}

fn params(n: usize, d: usize, k: usize) -> [u32; 3] {
    [n as u32, d as u32, k as u32]
}

/// `E[ids]`: `table [K, D]`, `ids i32 [N]` -> `[N, D]`. Out-of-range ids give zero rows.
pub fn embedding(rec: &mut Recorder, table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (k, d) = check_table("embedding", table)?;
    let n = check_ids("embedding", "ids", ids)?;
    let out = Tensor::empty(rec.ctx, &[n, d], DType::F32)?;
    rec.dispatch(
        "embedding",
        "embedding_forward",
        &params(n, d, k),
        &[(1, table), (2, ids), (6, &out)],
        grid_1d((n * d) as u64, WG),
    )?;
    Ok(out)
}

/// Gradient of [`embedding`] with respect to the table: `dtable [k, D]`, row `r` the sum of
/// `dy [N, D]` over the `i` with `ids[i] == r` (zero for unused rows). Ids carry no gradient.
pub fn embedding_backward(
    rec: &mut Recorder,
    ids: &Tensor,
    dy: &Tensor,
    k: usize,
) -> Result<Tensor> {
    let n = check_ids("embedding_backward", "ids", ids)?;
    ensure_shape!(
        dy.dtype() == DType::F32 && dy.shape().len() == 2 && dy.shape()[0] == n,
        "embedding_backward: dy {dy:?} must be f32 [{n}, D]"
    );
    let d = dy.shape()[1];
    ensure_shape!(
        k > 0 && d > 0,
        "embedding_backward: table [{k}, {d}] would be empty"
    );
    ensure_shape!(
        k <= i32::MAX as usize,
        "embedding_backward: k = {k} rows do not fit i32 ids"
    );
    let out = Tensor::empty(rec.ctx, &[k, d], DType::F32)?;
    rec.dispatch(
        "embedding",
        "embedding_backward",
        &params(n, d, k),
        &[(2, ids), (5, dy), (6, &out)],
        grid_1d((k * d) as u64, WG),
    )?;
    Ok(out)
}

/// Class interpolation `(1 - t[i]) E[ids_a[i]] + t[i] E[ids_b[i]]`: `table [K, D]`, ids `[N]`,
/// `t f32 [N]` -> `[N, D]`.
pub fn embedding_mix(
    rec: &mut Recorder,
    table: &Tensor,
    ids_a: &Tensor,
    ids_b: &Tensor,
    t: &Tensor,
) -> Result<Tensor> {
    let (k, d, n) = check_mix("embedding_mix", table, ids_a, ids_b, t)?;
    let out = Tensor::empty(rec.ctx, &[n, d], DType::F32)?;
    rec.dispatch(
        "embedding",
        "mix_forward",
        &params(n, d, k),
        &[(1, table), (2, ids_a), (3, ids_b), (4, t), (6, &out)],
        grid_1d((n * d) as u64, WG),
    )?;
    Ok(out)
}

/// Gradients of [`embedding_mix`].
pub struct EmbeddingMixGrads {
    /// `[K, D]`: row `r` gets `(1 - t[i]) dy[i]` for each `ids_a[i] == r` and `t[i] dy[i]` for
    /// each `ids_b[i] == r`.
    pub dtable: Tensor,
    /// `[N]`: `sum_j dy[i, j] (E[ids_b[i], j] - E[ids_a[i], j])`.
    pub dt: Tensor,
}

/// Backward pass of [`embedding_mix`] from its inputs and the output gradient `dy [N, D]`.
pub fn embedding_mix_backward(
    rec: &mut Recorder,
    table: &Tensor,
    ids_a: &Tensor,
    ids_b: &Tensor,
    t: &Tensor,
    dy: &Tensor,
) -> Result<EmbeddingMixGrads> {
    let (k, d, n) = check_mix("embedding_mix_backward", table, ids_a, ids_b, t)?;
    ensure_shape!(
        dy.dtype() == DType::F32 && dy.shape() == [n, d],
        "embedding_mix_backward: dy {dy:?} must be f32 [{n}, {d}]"
    );
    let p = params(n, d, k);
    let dtable = Tensor::empty(rec.ctx, &[k, d], DType::F32)?;
    rec.dispatch(
        "embedding",
        "mix_backward_table",
        &p,
        &[(2, ids_a), (3, ids_b), (4, t), (5, dy), (6, &dtable)],
        grid_1d((k * d) as u64, WG),
    )?;
    let dt = Tensor::empty(rec.ctx, &[n], DType::F32)?;
    rec.dispatch(
        "embedding",
        "mix_backward_t",
        &p,
        &[(1, table), (2, ids_a), (3, ids_b), (5, dy), (6, &dt)],
        grid_1d(n as u64, WG),
    )?;
    Ok(EmbeddingMixGrads { dtable, dt })
}
