//! Batch norm over NHWC activations `x [N, H, W, C]`, statistics per channel over N, H and W,
//! with the two affine forms BigGAN uses. Shader: `shaders/batchnorm.wgsl`.
//!
//! - Training mode ([`batch_norm_train`]): batch mean and biased variance per channel,
//!   `x_hat = (x - mean) / sqrt(var + eps)`. The variance is the mean squared deviation from
//!   the mean (never `E[x^2] - mean^2`): each chunk of rows computes its own mean and sum of
//!   squared deviations by Welford's update (one read per value, pivoted on the chunk's first
//!   value), and the chunks are combined in fixed order with the between-chunk term, so the
//!   result is deterministic and accurate for offset data.
//! - Inference mode ([`batch_norm_eval`]): the same with stored ("standing") mean and variance.
//! - Affine ([`Affine`]): conditional, `out = x_hat * (1 + gain[n, c]) + bias[n, c]` with
//!   per-sample `gain`, `bias` `[N, C]`; or a plain learnt affine,
//!   `out = x_hat * weight[c] + bias[c]`.
//!
//! What the training forward pass saves ([`BatchNormSaved`]): a handle to `x` (no copy) and
//! the batch `mean` and biased `var` `[C]`; `x_hat` is recomputed in the backward kernels,
//! which costs nothing next to reading `x` and `dy` again.
//! `mean` and `var` are also what the model accumulates for standing statistics (note `var`
//! is biased, divided by N*H*W; multiply by M / (M - 1) for the unbiased estimate).
//!
//! Backward, training mode: with `g = dy * scale` (`scale` = `1 + gain` or `weight`) and means
//! over N, H, W, `dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat))`; inference mode
//! treats the statistics as constants, `dx = g * inv_std`. Parameter gradients:
//! `dbias = sum dy`, `dgain`/`dweight = sum dy * x_hat`, summed over H, W per sample for the
//! conditional form (`[N, C]`) and over N, H, W for the per-channel form (`[C]`).
//!
//! Every reduction is a fixed-order loop: a thread owns one channel (four when C % 4 == 0) of
//! one chunk of rows, then one thread per channel combines the chunks. The elementwise passes
//! use per-(sample, channel) coefficients (`out = (x - mean) * fac + shift`,
//! `fac = scale / sqrt(var + eps)`, made by each thread; `dx = dy * fac + (x - mean) * b + d`,
//! folded by a pass of their own), so a thread loads them once and loops over a block of
//! rows. Dispatches: train forward 3, eval forward 1, backward 3. On CPU adapters ([`Recorder::cpu_kernels`]) with C % 4 == 0, the passes that
//! stream through x and dy read them as textures (`_t` entry points).

use crate::ensure_shape;
use crate::error::{Error, Result};
use crate::kernel::{grid_1d, Recorder};
use crate::tensor::{DType, Tensor};

const SHADER: &str = "batchnorm";
/// Workgroup size of every entry point.
const WG: u32 = 64;
/// Target number of reduction threads (chunks times channel lanes) in the partial passes.
const TARGET_THREADS: usize = 8192;
/// Fewest rows a chunk should hold (a thread with fewer rows is mostly overhead).
const MIN_ROWS: usize = 16;
/// Rows (pixels) each thread of the elementwise passes covers.
const ROWS_PER_THREAD: usize = 8;

/// The affine map applied after normalisation.
#[derive(Clone, Copy, Debug)]
pub enum Affine<'a> {
    /// Conditional BN: `x_hat * (1 + gain[n, c]) + bias[n, c]`; `gain`, `bias` are `[N, C]`.
    Conditional { gain: &'a Tensor, bias: &'a Tensor },
    /// Learnt per-channel affine: `x_hat * weight[c] + bias[c]`; `weight`, `bias` are `[C]`.
    Channel {
        weight: &'a Tensor,
        bias: &'a Tensor,
    },
}

impl<'a> Affine<'a> {
    /// (scale parameter, shift parameter, per-sample, constant added to the scale).
    fn parts(&self) -> (&'a Tensor, &'a Tensor, bool, f32) {
        match *self {
            Affine::Conditional { gain, bias } => (gain, bias, true, 1.0),
            Affine::Channel { weight, bias } => (weight, bias, false, 0.0),
        }
    }

    fn check(&self, op: &str, n: usize, c: usize) -> Result<()> {
        let (names, want): ([&str; 2], Vec<usize>) = match self {
            Affine::Conditional { .. } => (["gain", "bias"], vec![n, c]),
            Affine::Channel { .. } => (["weight", "bias"], vec![c]),
        };
        let (s, b, _, _) = self.parts();
        for (name, t) in names.iter().zip([s, b]) {
            ensure_shape!(
                t.dtype() == DType::F32 && t.shape() == &want[..],
                "{op}: {name} is {t:?}, expected F32 {want:?}"
            );
        }
        Ok(())
    }
}

/// What [`batch_norm_train`] saves for its backward pass; `mean` and `var` (biased, `[C]`)
/// are the batch statistics, for standing-statistics accumulation too.
#[derive(Clone, Debug)]
pub struct BatchNormSaved {
    /// The forward input (a shared handle, not a copy).
    pub x: Tensor,
    /// Batch mean per channel `[C]`.
    pub mean: Tensor,
    /// Batch variance per channel `[C]`, biased (divided by N*H*W).
    pub var: Tensor,
    pub eps: f32,
}

/// Gradients of a batch-norm layer.
#[derive(Clone, Debug)]
pub struct BatchNormGrads {
    /// `[N, H, W, C]`.
    pub dx: Tensor,
    /// Gradient of the scale parameter: `dgain [N, C]` (conditional) or `dweight [C]` (channel).
    pub dscale: Tensor,
    /// Gradient of the bias: `[N, C]` (conditional) or `[C]` (channel).
    pub dbias: Tensor,
}

/// Sizes of one call.
struct Geom {
    n: usize,
    hw: usize,
    c: usize,
    vec4: bool,
}

impl Geom {
    fn new(op: &str, x: &Tensor) -> Result<Geom> {
        ensure_shape!(
            x.dtype() == DType::F32 && x.shape().len() == 4,
            "{op}: x is {x:?}, expected F32 [N, H, W, C]"
        );
        let s = x.shape();
        ensure_shape!(
            s.iter().all(|&d| d > 0),
            "{op}: x is {x:?}, every dimension must be at least 1"
        );
        ensure_shape!(
            x.numel() <= u32::MAX as usize,
            "{op}: x is {x:?}, too many elements for 32-bit indexing"
        );
        ensure_shape!(
            s[0] <= 65535,
            "{op}: x is {x:?}, a batch of at most 65535 fits one dispatch"
        );
        Ok(Geom {
            n: s[0],
            hw: s[1] * s[2],
            c: s[3],
            vec4: s[3].is_multiple_of(4),
        })
    }

    /// Channel lanes per row: C, or C / 4 in the vec4 kernels.
    fn lanes(&self) -> usize {
        if self.vec4 {
            self.c / 4
        } else {
            self.c
        }
    }

    /// Entry point name, with the vec4 suffix where it applies.
    fn entry(&self, base: &str) -> String {
        if self.vec4 {
            format!("{base}4")
        } else {
            base.to_string()
        }
    }

    /// Binding numbers of (x, dy, mean) in the reductions: vec4 views in the vec4 kernels.
    fn big(&self) -> (u32, u32, u32) {
        if self.vec4 {
            (2, 4, 18)
        } else {
            (1, 3, 5)
        }
    }

    /// Elementwise passes: blocks of ROWS_PER_THREAD rows per sample, and the grid (threads
    /// over blocks and lanes in x and y, samples in z).
    fn row_blocks(&self) -> (usize, [u32; 3]) {
        let blocks = self.hw.div_ceil(ROWS_PER_THREAD);
        let mut groups = grid_1d((blocks * self.lanes()) as u64, WG);
        groups[2] = self.n as u32;
        (blocks, groups)
    }

    /// Split `rows` rows of each of `groups` segments into chunks: (rows per chunk, chunks
    /// per segment), aiming at about TARGET_THREADS threads and at least MIN_ROWS per chunk.
    fn chunking(&self, rows: usize, groups: usize) -> (usize, usize) {
        let want = TARGET_THREADS / (self.lanes() * groups).max(1);
        let chunks = want.clamp(1, rows.div_ceil(MIN_ROWS).max(1));
        let per = rows.div_ceil(chunks);
        (per, rows.div_ceil(per))
    }

    #[allow(clippy::too_many_arguments)]
    fn params(
        &self,
        rows: usize,
        chunks: usize,
        per_sample: bool,
        plus1: f32,
        eps: f32,
        use_stats: f32,
    ) -> [u32; 11] {
        [
            self.n as u32,
            self.hw as u32,
            self.c as u32,
            self.lanes() as u32,
            rows as u32,
            chunks as u32,
            per_sample as u32,
            plus1.to_bits(),
            eps.to_bits(),
            use_stats.to_bits(),
            0,
        ]
    }
}

fn check_eps(op: &str, eps: f32) -> Result<()> {
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::InvalidArgument(format!(
            "{op}: eps = {eps} must be finite and non-negative"
        )));
    }
    Ok(())
}

fn check_stats(op: &str, mean: &Tensor, var: &Tensor, c: usize) -> Result<()> {
    for (name, t) in [("mean", mean), ("var", var)] {
        ensure_shape!(
            t.dtype() == DType::F32 && t.shape() == [c],
            "{op}: {name} is {t:?}, expected F32 [{c}]"
        );
    }
    Ok(())
}

/// Batch mean and biased variance per channel of `x [N, H, W, C]`, each `[C]`.
pub fn batch_stats(rec: &mut Recorder, x: &Tensor) -> Result<(Tensor, Tensor)> {
    let g = Geom::new("batch_stats", x)?;
    stats(rec, &g, x)
}

fn stats(rec: &mut Recorder, g: &Geom, x: &Tensor) -> Result<(Tensor, Tensor)> {
    let m = g.n * g.hw;
    let (rows, chunks) = g.chunking(m, 1);
    let params = g.params(rows, chunks, false, 0.0, 0.0, 0.0);
    let part = Tensor::empty(rec.ctx, &[2, chunks, g.c], DType::F32)?;
    let (xb, _, _) = g.big();
    let (entry, xb) = if g.vec4 && rec.reads_texture(x) {
        ("stats_partial4_t".to_string(), 22)
    } else {
        (g.entry("stats_partial"), xb)
    };
    rec.dispatch(
        SHADER,
        &entry,
        &params,
        &[(xb, x), (11, &part)],
        grid_1d((chunks * g.lanes()) as u64, WG),
    )?;
    let mean = Tensor::empty(rec.ctx, &[g.c], DType::F32)?;
    let var = Tensor::empty(rec.ctx, &[g.c], DType::F32)?;
    rec.dispatch(
        SHADER,
        "stats_final",
        &params,
        &[(11, &part), (12, &mean), (13, &var)],
        grid_1d(g.c as u64, WG),
    )?;
    Ok((mean, var))
}

#[allow(clippy::too_many_arguments)]
fn normalize(
    rec: &mut Recorder,
    g: &Geom,
    x: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    affine: &Affine,
    eps: f32,
    relu: bool,
) -> Result<Tensor> {
    // The kernels make fold's factor themselves from var and the scale parameter.
    let (scale, shift, per_sample, plus1) = affine.parts();
    let out = Tensor::empty(rec.ctx, x.shape(), DType::F32)?;
    let (blocks, groups) = g.row_blocks();
    let mut params = g.params(ROWS_PER_THREAD, blocks, per_sample, plus1, eps, 0.0);
    params[10] = relu as u32;
    if g.vec4 {
        let (entry, xb) = if g.vec4 && rec.reads_texture(x) {
            ("norm_affine4_t", 22)
        } else {
            ("norm_affine4", 2)
        };
        rec.dispatch(
            SHADER,
            entry,
            &params,
            &[
                (xb, x),
                (18, mean),
                (6, var),
                (7, scale),
                (20, shift),
                (10, &out),
            ],
            groups,
        )?;
    } else {
        rec.dispatch(
            SHADER,
            "norm_affine",
            &params,
            &[
                (1, x),
                (5, mean),
                (6, var),
                (7, scale),
                (8, shift),
                (9, &out),
            ],
            groups,
        )?;
    }
    Ok(out)
}

/// Training-mode batch norm of `x [N, H, W, C]` with batch statistics, then `affine`.
/// Returns the output `[N, H, W, C]` and what [`batch_norm_train_backward`] needs (including
/// the batch mean and biased variance).
pub fn batch_norm_train(
    rec: &mut Recorder,
    x: &Tensor,
    affine: Affine,
    eps: f32,
) -> Result<(Tensor, BatchNormSaved)> {
    train_forward(rec, x, affine, eps, false)
}

/// [`batch_norm_train`] followed by ReLU, in the same pass over the output. The backward pass
/// is ReLU's (mask: this output > 0, which is where the normalised value is > 0) and then
/// [`batch_norm_train_backward`].
pub fn batch_norm_relu_train(
    rec: &mut Recorder,
    x: &Tensor,
    affine: Affine,
    eps: f32,
) -> Result<(Tensor, BatchNormSaved)> {
    train_forward(rec, x, affine, eps, true)
}

fn train_forward(
    rec: &mut Recorder,
    x: &Tensor,
    affine: Affine,
    eps: f32,
    relu: bool,
) -> Result<(Tensor, BatchNormSaved)> {
    const OP: &str = "batch_norm_train";
    let g = Geom::new(OP, x)?;
    affine.check(OP, g.n, g.c)?;
    check_eps(OP, eps)?;
    let (mean, var) = stats(rec, &g, x)?;
    let out = normalize(rec, &g, x, &mean, &var, &affine, eps, relu)?;
    Ok((
        out,
        BatchNormSaved {
            x: x.clone(),
            mean,
            var,
            eps,
        },
    ))
}

/// Inference-mode batch norm of `x [N, H, W, C]` with stored statistics `mean`, `var` `[C]`,
/// then `affine`.
pub fn batch_norm_eval(
    rec: &mut Recorder,
    x: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    affine: Affine,
    eps: f32,
) -> Result<Tensor> {
    eval_forward(rec, x, mean, var, affine, eps, false)
}

/// [`batch_norm_eval`] followed by ReLU, in the same pass over the output.
pub fn batch_norm_relu_eval(
    rec: &mut Recorder,
    x: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    affine: Affine,
    eps: f32,
) -> Result<Tensor> {
    eval_forward(rec, x, mean, var, affine, eps, true)
}

fn eval_forward(
    rec: &mut Recorder,
    x: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    affine: Affine,
    eps: f32,
    relu: bool,
) -> Result<Tensor> {
    const OP: &str = "batch_norm_eval";
    let g = Geom::new(OP, x)?;
    check_stats(OP, mean, var, g.c)?;
    affine.check(OP, g.n, g.c)?;
    check_eps(OP, eps)?;
    normalize(rec, &g, x, mean, var, &affine, eps, relu)
}

#[allow(clippy::too_many_arguments)]
fn backward(
    rec: &mut Recorder,
    g: &Geom,
    x: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    affine: &Affine,
    eps: f32,
    dy: &Tensor,
    train: bool,
) -> Result<BatchNormGrads> {
    let (scale, _, per_sample, plus1) = affine.parts();
    let (rows, chunks) = g.chunking(g.hw, g.n);
    let params = g.params(
        rows,
        chunks,
        per_sample,
        plus1,
        eps,
        if train { 1.0 } else { 0.0 },
    );
    let (xb, dyb, mb) = g.big();
    let tex = g.vec4 && rec.reads_texture(x);
    let (entry, xb, dyb) = if tex {
        ("bwd_partial4_t".to_string(), 22, 23)
    } else {
        (g.entry("bwd_partial"), xb, dyb)
    };
    let part = Tensor::empty(rec.ctx, &[2, g.n * chunks, g.c], DType::F32)?;
    rec.dispatch(
        SHADER,
        &entry,
        &params,
        &[(xb, x), (dyb, dy), (mb, mean), (6, var), (11, &part)],
        grid_1d((g.n * chunks * g.lanes()) as u64, WG),
    )?;
    let pshape = scale.shape().to_vec();
    let dscale = Tensor::empty(rec.ctx, &pshape, DType::F32)?;
    let dbias = Tensor::empty(rec.ctx, &pshape, DType::F32)?;
    let coef = Tensor::empty(rec.ctx, &[2, g.c], DType::F32)?;
    let fac = Tensor::empty(rec.ctx, &pshape, DType::F32)?;
    rec.dispatch(
        SHADER,
        "bwd_final",
        &params,
        &[
            (11, &part),
            (6, var),
            (7, scale),
            (14, &dscale),
            (15, &dbias),
            (16, &coef),
            (17, &fac),
        ],
        grid_1d(g.c as u64, WG),
    )?;
    let dx = Tensor::empty(rec.ctx, x.shape(), DType::F32)?;
    let (blocks, groups) = g.row_blocks();
    let params = g.params(ROWS_PER_THREAD, blocks, per_sample, plus1, eps, 0.0);
    if g.vec4 {
        let (entry, xb, dyb) = if tex {
            ("dx4_t", 22, 23)
        } else {
            ("dx4", 2, 4)
        };
        rec.dispatch(
            SHADER,
            entry,
            &params,
            &[
                (xb, x),
                (dyb, dy),
                (18, mean),
                (19, &fac),
                (21, &coef),
                (10, &dx),
            ],
            groups,
        )?;
    } else {
        rec.dispatch(
            SHADER,
            "dx",
            &params,
            &[
                (1, x),
                (3, dy),
                (5, mean),
                (17, &fac),
                (16, &coef),
                (9, &dx),
            ],
            groups,
        )?;
    }
    Ok(BatchNormGrads { dx, dscale, dbias })
}

fn check_dy(op: &str, x: &Tensor, dy: &Tensor) -> Result<()> {
    ensure_shape!(
        dy.dtype() == DType::F32 && dy.shape() == x.shape(),
        "{op}: dy is {dy:?}, expected F32 {:?} like x",
        x.shape()
    );
    Ok(())
}

/// Backward pass of [`batch_norm_train`]: gradients of x (through the batch statistics) and of
/// the affine parameters. `affine` must be the one the forward pass used.
pub fn batch_norm_train_backward(
    rec: &mut Recorder,
    saved: &BatchNormSaved,
    affine: Affine,
    dy: &Tensor,
) -> Result<BatchNormGrads> {
    const OP: &str = "batch_norm_train_backward";
    let g = Geom::new(OP, &saved.x)?;
    check_stats(OP, &saved.mean, &saved.var, g.c)?;
    affine.check(OP, g.n, g.c)?;
    check_eps(OP, saved.eps)?;
    check_dy(OP, &saved.x, dy)?;
    backward(
        rec,
        &g,
        &saved.x,
        &saved.mean,
        &saved.var,
        &affine,
        saved.eps,
        dy,
        true,
    )
}

/// Backward pass of [`batch_norm_eval`]: the statistics are constants, so
/// `dx = dy * scale / sqrt(var + eps)`; plus the gradients of the affine parameters.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_eval_backward(
    rec: &mut Recorder,
    x: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    affine: Affine,
    eps: f32,
    dy: &Tensor,
) -> Result<BatchNormGrads> {
    const OP: &str = "batch_norm_eval_backward";
    let g = Geom::new(OP, x)?;
    check_stats(OP, mean, var, g.c)?;
    affine.check(OP, g.n, g.c)?;
    check_eps(OP, eps)?;
    check_dy(OP, x, dy)?;
    backward(rec, &g, x, mean, var, &affine, eps, dy, false)
}
