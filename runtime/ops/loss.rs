//! Losses whose values and gradients stay on the device (nothing is read back): hinge for the
//! discriminator and the generator, softmax cross-entropy with masked rows, row argmax, and
//! labels whose unlabelled rows are filled by argmax.
//! Shader: `shaders/loss.wgsl`.
//!
//! Each loss is a one-element f32 tensor; each gradient is that of the loss itself (multiply
//! by an upstream scale with `elementwise::scale` where needed). Reductions run in one
//! workgroup in a fixed order, so results are deterministic.

use crate::ensure_shape;
use crate::error::{Error, Result};
use crate::kernel::{grid_1d, Recorder};
use crate::tensor::{DType, Tensor};

const ROWS_WG: u32 = 64;
const ELEMS_WG: u32 = 256;

fn check_scores(op: &str, what: &str, x: &Tensor) -> Result<usize> {
    ensure_shape!(
        x.dtype() == DType::F32 && x.shape().len() == 1,
        "{op}: {what} {x:?} must be f32 [N] (reshape [N, 1] scores to [N])"
    );
    ensure_shape!(x.shape()[0] > 0, "{op}: {what} {x:?} is empty");
    Ok(x.shape()[0])
}

fn check_matrix(op: &str, what: &str, x: &Tensor) -> Result<(usize, usize)> {
    ensure_shape!(
        x.dtype() == DType::F32 && x.shape().len() == 2,
        "{op}: {what} {x:?} must be f32 [R, C]"
    );
    let (r, c) = (x.shape()[0], x.shape()[1]);
    ensure_shape!(r > 0 && c > 0, "{op}: {what} {x:?} is empty");
    ensure_shape!(
        c <= i32::MAX as usize,
        "{op}: {what} {x:?} has more columns than i32 labels can name"
    );
    Ok((r, c))
}

/// Result of [`hinge_d`].
pub struct HingeD {
    /// `[1]`: `mean(relu(1 - real)) + mean(relu(1 + fake))`.
    pub loss: Tensor,
    /// `[N]`: `-1/N` where `real < 1`, else 0.
    pub d_real: Tensor,
    /// `[M]`: `1/M` where `fake > -1`, else 0.
    pub d_fake: Tensor,
}

/// Discriminator hinge loss on scores `real [N]` and `fake [M]`, with its gradients.
/// At the kinks (`real == 1`, `fake == -1`) the gradient is 0, like PyTorch's ReLU.
pub fn hinge_d(rec: &mut Recorder, real: &Tensor, fake: &Tensor) -> Result<HingeD> {
    let n = check_scores("hinge_d", "real", real)?;
    let m = check_scores("hinge_d", "fake", fake)?;
    let loss = Tensor::empty(rec.ctx, &[1], DType::F32)?;
    let d_real = Tensor::empty(rec.ctx, &[n], DType::F32)?;
    let d_fake = Tensor::empty(rec.ctx, &[m], DType::F32)?;
    rec.dispatch(
        "loss",
        "hinge_d",
        &[n as u32, m as u32, 0, 0],
        &[(1, real), (2, fake), (4, &loss), (5, &d_real), (6, &d_fake)],
        [1, 1, 1],
    )?;
    Ok(HingeD {
        loss,
        d_real,
        d_fake,
    })
}

/// Result of [`hinge_g`].
pub struct HingeG {
    /// `[1]`: `-mean(fake)`.
    pub loss: Tensor,
    /// `[M]`: `-1/M` everywhere.
    pub d_fake: Tensor,
}

/// Generator hinge loss on the discriminator's scores of fakes `fake [M]`, with its gradient.
pub fn hinge_g(rec: &mut Recorder, fake: &Tensor) -> Result<HingeG> {
    let m = check_scores("hinge_g", "fake", fake)?;
    let loss = Tensor::empty(rec.ctx, &[1], DType::F32)?;
    let d_fake = Tensor::empty(rec.ctx, &[m], DType::F32)?;
    rec.dispatch(
        "loss",
        "hinge_g",
        &[0, m as u32, 0, 0],
        &[(1, fake), (4, &loss), (5, &d_fake)],
        [1, 1, 1],
    )?;
    Ok(HingeG { loss, d_fake })
}

/// Result of [`cross_entropy`].
pub struct CrossEntropy {
    /// `[1]`: `weight * mean over labelled rows of -log_softmax(logits)[label]`, 0 when no row
    /// is labelled.
    pub loss: Tensor,
    /// `[R, C]`: `weight * (softmax - onehot(label)) / count` on labelled rows, 0 on masked rows.
    pub dlogits: Tensor,
}

/// Softmax cross-entropy of `logits [R, C]` against `labels i32 [R]`, scaled by `weight`.
/// A row whose label is -1 (or any value outside `[0, C)`; callers validate labels from the
/// host) is masked out: it adds nothing to the loss, to the count, or to the gradient.
/// Log-sum-exp with the row max subtracted, so large logits do not overflow.
pub fn cross_entropy(
    rec: &mut Recorder,
    logits: &Tensor,
    labels: &Tensor,
    weight: f32,
) -> Result<CrossEntropy> {
    let (r, c) = check_matrix("cross_entropy", "logits", logits)?;
    ensure_shape!(
        labels.dtype() == DType::I32 && labels.shape() == [r],
        "cross_entropy: labels {labels:?} must be i32 [{r}] (one per logits row)"
    );
    if !weight.is_finite() {
        return Err(Error::InvalidArgument(format!(
            "cross_entropy: weight {weight} is not finite"
        )));
    }
    let params = [r as u32, 0, c as u32, weight.to_bits()];
    // Scratch: per-row log-sum-exp, per-row loss, and the gradient scale weight / count.
    let rows = Tensor::empty(rec.ctx, &[2 * r + 1], DType::F32)?;
    let loss = Tensor::empty(rec.ctx, &[1], DType::F32)?;
    let dlogits = Tensor::empty(rec.ctx, &[r, c], DType::F32)?;
    rec.dispatch(
        "loss",
        "ce_rows",
        &params,
        &[(1, logits), (3, labels), (7, &rows)],
        grid_1d(r as u64, ROWS_WG),
    )?;
    rec.dispatch(
        "loss",
        "ce_reduce",
        &params,
        &[(3, labels), (4, &loss), (7, &rows)],
        [1, 1, 1],
    )?;
    rec.dispatch(
        "loss",
        "ce_grad",
        &params,
        &[(1, logits), (3, labels), (5, &dlogits), (7, &rows)],
        grid_1d((r * c) as u64, ELEMS_WG),
    )?;
    Ok(CrossEntropy { loss, dlogits })
}

/// Index of the largest value of each row of `x [R, C]` -> `i32 [R]`; ties go to the first
/// index (like `torch.argmax`). NaN values are skipped unless a row starts with one.
pub fn argmax(rec: &mut Recorder, x: &Tensor) -> Result<Tensor> {
    let (r, c) = check_matrix("argmax", "x", x)?;
    let out = Tensor::empty(rec.ctx, &[r], DType::I32)?;
    rec.dispatch(
        "loss",
        "argmax_rows",
        &[r as u32, 0, c as u32, 0],
        &[(1, x), (8, &out)],
        grid_1d(r as u64, ROWS_WG),
    )?;
    Ok(out)
}

/// Labels with the gaps filled from a classifier: row `r` keeps `labels[r]` when it is a class
/// in `[0, C)` and otherwise (-1, unlabelled) takes the argmax of `logits[r]` (ties to the
/// first index). `logits [R, C]`, `labels i32 [R]` -> i32 `[R]`. No gradient flows through
/// the choice (S3GAN's projection labels for unlabelled real images).
pub fn fill_unlabelled(rec: &mut Recorder, logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (r, c) = check_matrix("fill_unlabelled", "logits", logits)?;
    ensure_shape!(
        labels.dtype() == DType::I32 && labels.shape() == [r],
        "fill_unlabelled: labels {labels:?} must be i32 [{r}] (one per logits row)"
    );
    let out = Tensor::empty(rec.ctx, &[r], DType::I32)?;
    rec.dispatch(
        "loss",
        "fill_unlabelled",
        &[r as u32, 0, c as u32, 0],
        &[(1, logits), (3, labels), (8, &out)],
        grid_1d(r as u64, ROWS_WG),
    )?;
    Ok(out)
}
