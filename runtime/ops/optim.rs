//! Optimiser updates on the device, in place: Adam (as `torch.optim.Adam` without weight
//! decay or amsgrad) and an exponential moving average of weights.
//! Shader: `shaders/optim.wgsl`.
//!
//! Tensors may have any shape; they are treated as flat f32 arrays. Parameters and optimiser
//! state are persistent tensors that these calls overwrite (nothing is allocated).
//!
//! All-or-nothing steps: a [`StepFlag`] is one word on the device that [`StepFlag::check`]
//! sets when a tensor holds NaN or infinity; the `*_guarded` calls then leave their outputs
//! alone and [`restore_if_flagged`] puts back a snapshot. A train step thus rejects a bad
//! update without reading anything back before its end.

use crate::ensure_shape;
use crate::error::{Error, Result};
use crate::kernel::{grid_1d, Recorder};
use crate::tensor::{DType, Tensor};

const SHADER: &str = "optim";

/// Adam hyper-parameters. BigGAN uses `beta1 = 0`, `beta2 = 0.999`, `eps = 1e-8`.
#[derive(Clone, Copy, Debug, PartialEq)]
///
/// Fields are f64 like PyTorch's Python floats: `1 - beta2` and the bias corrections are
/// formed in f64 and rounded to f32 once (with an f32 `beta2 = 0.999`, `1 - beta2` would be
/// 1.3e-5 away from 0.001).
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamConfig {
    /// PyTorch's defaults: `lr = 1e-3`, `betas = (0.9, 0.999)`, `eps = 1e-8`.
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

fn check_f32(op: &str, name: &str, t: &Tensor, like: &Tensor) -> Result<()> {
    ensure_shape!(t.dtype() == DType::F32, "{op}: {name} {t:?} is not f32");
    ensure_shape!(
        t.shape() == like.shape(),
        "{op}: {name} {t:?} does not match the parameter {like:?}"
    );
    Ok(())
}

/// One Adam step, `step` = t counted from 1 (the number of steps taken including this one).
///
/// Updates `p` (parameter), `m` (`exp_avg`) and `v` (`exp_avg_sq`) in place from the gradient
/// `g`: `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
/// `p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`. The bias corrections are
/// computed here in f64 and passed to the kernel. Start with `m = v = 0`.
pub fn adam_step(
    rec: &mut Recorder,
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    cfg: AdamConfig,
    step: u32,
) -> Result<()> {
    adam(rec, p, g, m, v, cfg, step, None)
}

/// [`adam_step`] that changes nothing when `flag` is set (see [`StepFlag`]).
#[allow(clippy::too_many_arguments)]
pub fn adam_step_guarded(
    rec: &mut Recorder,
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    cfg: AdamConfig,
    step: u32,
    flag: &StepFlag,
) -> Result<()> {
    adam(rec, p, g, m, v, cfg, step, Some(flag))
}

#[allow(clippy::too_many_arguments)]
fn adam(
    rec: &mut Recorder,
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    cfg: AdamConfig,
    step: u32,
    flag: Option<&StepFlag>,
) -> Result<()> {
    check_f32("adam_step", "parameter", p, p)?;
    check_f32("adam_step", "gradient", g, p)?;
    check_f32("adam_step", "exp_avg", m, p)?;
    check_f32("adam_step", "exp_avg_sq", v, p)?;
    let AdamConfig {
        lr,
        beta1,
        beta2,
        eps,
    } = cfg;
    if step == 0 {
        return Err(Error::InvalidArgument(
            "adam_step: step counts from 1 (got 0)".into(),
        ));
    }
    if !(lr.is_finite() && lr >= 0.0) {
        return Err(Error::InvalidArgument(format!(
            "adam_step: learning rate {lr} must be finite and >= 0"
        )));
    }
    for (name, b) in [("beta1", beta1), ("beta2", beta2)] {
        if !(0.0..1.0).contains(&b) {
            return Err(Error::InvalidArgument(format!(
                "adam_step: {name} = {b} must be in [0, 1)"
            )));
        }
    }
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::InvalidArgument(format!(
            "adam_step: eps = {eps} must be finite and >= 0"
        )));
    }
    let bc1 = 1.0 - beta1.powf(step as f64);
    let bc2 = 1.0 - beta2.powf(step as f64);
    let step_size = lr / bc1;
    let inv_sqrt_bc2 = 1.0 / bc2.sqrt();
    if !(step_size as f32).is_finite() {
        return Err(Error::InvalidArgument(format!(
            "adam_step: learning rate {lr} overflows f32 (step size {step_size})"
        )));
    }
    let n = p.numel();
    let params = [
        n as u32,
        (beta1 as f32).to_bits(),
        ((1.0 - beta1) as f32).to_bits(),
        (beta2 as f32).to_bits(),
        ((1.0 - beta2) as f32).to_bits(),
        (step_size as f32).to_bits(),
        (inv_sqrt_bc2 as f32).to_bits(),
        (eps as f32).to_bits(),
    ];
    match flag {
        None => rec.dispatch(
            SHADER,
            "adam_step",
            &params,
            &[(1, p), (2, g), (3, m), (4, v)],
            grid_1d(n as u64, 256),
        ),
        Some(f) => rec.dispatch(
            SHADER,
            "adam_step_guarded",
            &params,
            &[(1, p), (2, g), (3, m), (4, v), (6, &f.flag)],
            grid_1d(n as u64, 256),
        ),
    }
}

/// Exponential moving average in place: `ema = decay * ema + (1 - decay) * p`,
/// `decay` in `[0, 1]` (f64, so that `1 - decay` is formed before rounding to f32).
pub fn ema_update(rec: &mut Recorder, ema: &Tensor, p: &Tensor, decay: f64) -> Result<()> {
    ema_dispatch(rec, ema, p, decay, None)
}

/// [`ema_update`] that changes nothing when `flag` is set.
pub fn ema_update_guarded(
    rec: &mut Recorder,
    avg: &Tensor,
    p: &Tensor,
    decay: f64,
    flag: &StepFlag,
) -> Result<()> {
    ema_dispatch(rec, avg, p, decay, Some(flag))
}

fn ema_dispatch(
    rec: &mut Recorder,
    ema: &Tensor,
    p: &Tensor,
    decay: f64,
    flag: Option<&StepFlag>,
) -> Result<()> {
    check_f32("ema_update", "parameter", p, p)?;
    check_f32("ema_update", "average", ema, p)?;
    if !(0.0..=1.0).contains(&decay) {
        return Err(Error::InvalidArgument(format!(
            "ema_update: decay = {decay} must be in [0, 1]"
        )));
    }
    let n = p.numel();
    // The uniform struct has 8 words; the unused ones are zero.
    let params = [
        n as u32,
        (decay as f32).to_bits(),
        ((1.0 - decay) as f32).to_bits(),
        0,
        0,
        0,
        0,
        0,
    ];
    match flag {
        None => rec.dispatch(
            SHADER,
            "ema_update",
            &params,
            &[(1, ema), (2, p)],
            grid_1d(n as u64, 256),
        ),
        Some(f) => rec.dispatch(
            SHADER,
            "ema_update_guarded",
            &params,
            &[(1, ema), (2, p), (6, &f.flag)],
            grid_1d(n as u64, 256),
        ),
    }
}

/// A one-word flag on the device for an all-or-nothing step: clear when made, set by
/// [`StepFlag::check`] when a checked tensor holds NaN or infinity. Its tensor (f32 `[1]`)
/// reads 0.0 (clear) or 1.0 (set), so it can be downloaded with a step's loss values.
pub struct StepFlag {
    pub flag: Tensor,
}

impl StepFlag {
    /// A clear flag.
    pub fn new(ctx: &crate::device::Context) -> Result<StepFlag> {
        Ok(StepFlag {
            flag: Tensor::zeros(ctx, &[1])?,
        })
    }

    /// Set the flag if any value of the f32 tensors `ts` is NaN or infinite: up to seven
    /// tensors per dispatch.
    pub fn check_many(&self, rec: &mut Recorder, ts: &[&Tensor]) -> Result<()> {
        for group in ts.chunks(7) {
            if let [t] = group {
                self.check(rec, t)?;
                continue;
            }
            let mut words = [0u32; 8];
            let mut bind = Vec::with_capacity(8);
            for (k, t) in group.iter().enumerate() {
                ensure_shape!(t.dtype() == DType::F32, "check_finite: {t:?} is not f32");
                words[k] = to_u32("check_finite", t.numel())?;
                bind.push((7 + k as u32, *t));
            }
            // Unused slots read the first tensor for length 0.
            for k in group.len()..7 {
                bind.push((7 + k as u32, group[0]));
            }
            bind.push((5, &self.flag));
            let most = words.iter().copied().max().unwrap_or(0);
            rec.dispatch(
                SHADER,
                "check_finite7",
                &words,
                &bind,
                grid_1d(most as u64, 256),
            )?;
        }
        Ok(())
    }

    /// Set the flag if any value of the f32 tensor `t` is NaN or infinite.
    pub fn check(&self, rec: &mut Recorder, t: &Tensor) -> Result<()> {
        ensure_shape!(t.dtype() == DType::F32, "check_finite: {t:?} is not f32");
        let n = t.numel();
        rec.dispatch(
            SHADER,
            "check_finite",
            &[n as u32, 0, 0, 0, 0, 0, 0, 0],
            &[(2, t), (5, &self.flag)],
            grid_1d(n as u64, 256),
        )
    }
}

fn flagged_copy(
    rec: &mut Recorder,
    entry: &str,
    src: &Tensor,
    dst: &Tensor,
    flag: &StepFlag,
) -> Result<()> {
    check_f32(entry, "source", src, dst)?;
    check_f32(entry, "destination", dst, dst)?;
    let n = dst.numel();
    rec.dispatch(
        SHADER,
        entry,
        &[n as u32, 0, 0, 0, 0, 0, 0, 0],
        &[(1, dst), (2, src), (6, &flag.flag)],
        grid_1d(n as u64, 256),
    )
}

fn to_u32(op: &str, n: usize) -> Result<u32> {
    u32::try_from(n)
        .map_err(|_| crate::error::Error::Shape(format!("{op}: {n} elements exceed one dispatch")))
}

/// `flagged_copy` over (source, destination) pairs, up to three per dispatch.
fn flagged_copies(
    rec: &mut Recorder,
    single: &str,
    triple: &str,
    pairs: &[(&Tensor, &Tensor)],
    flag: &StepFlag,
) -> Result<()> {
    grouped_pairs(rec, single, triple, pairs, flag, [0, 0], |rec, src, dst| {
        flagged_copy(rec, single, src, dst, flag)
    })
}

/// Dispatch `triple` over (source, destination) pairs three at a time (lengths in words
/// 0..3, `extra` in words 3 and 4), and `one` for the pairs left over.
fn grouped_pairs(
    rec: &mut Recorder,
    single: &str,
    triple: &str,
    pairs: &[(&Tensor, &Tensor)],
    flag: &StepFlag,
    extra: [u32; 2],
    mut one: impl FnMut(&mut Recorder, &Tensor, &Tensor) -> Result<()>,
) -> Result<()> {
    for group in pairs.chunks(3) {
        if group.len() < 3 {
            for (src, dst) in group {
                one(rec, src, dst)?;
            }
            continue;
        }
        let mut words = [0u32; 8];
        words[3] = extra[0];
        words[4] = extra[1];
        let mut bind = Vec::with_capacity(7);
        for (k, (src, dst)) in group.iter().enumerate() {
            check_f32(single, "source", src, dst)?;
            check_f32(single, "destination", dst, dst)?;
            words[k] = to_u32(single, dst.numel())?;
            bind.push((7 + k as u32, *src));
            bind.push((14 + k as u32, *dst));
        }
        bind.push((6, &flag.flag));
        let most = words[..3].iter().copied().max().unwrap_or(0);
        rec.dispatch(SHADER, triple, &words, &bind, grid_1d(most as u64, 256))?;
    }
    Ok(())
}

/// [`ema_update_guarded`] for each (parameter, average) pair, three pairs per dispatch
/// (the same arithmetic, so the same bits).
pub fn ema_update_guarded_many(
    rec: &mut Recorder,
    pairs: &[(&Tensor, &Tensor)],
    decay: f64,
    flag: &StepFlag,
) -> Result<()> {
    if !(0.0..=1.0).contains(&decay) {
        return Err(Error::InvalidArgument(format!(
            "ema_update: decay = {decay} must be in [0, 1]"
        )));
    }
    let extra = [(decay as f32).to_bits(), ((1.0 - decay) as f32).to_bits()];
    grouped_pairs(
        rec,
        "ema_update",
        "ema3_update_guarded",
        pairs,
        flag,
        extra,
        |rec, p, avg| ema_update_guarded(rec, avg, p, decay, flag),
    )
}

/// [`copy_guarded`] for each (source, destination) pair, three pairs per dispatch.
pub fn copy_guarded_many(
    rec: &mut Recorder,
    pairs: &[(&Tensor, &Tensor)],
    flag: &StepFlag,
) -> Result<()> {
    flagged_copies(rec, "copy_guarded", "copy3_guarded", pairs, flag)
}

/// [`restore_if_flagged`] for each (source, destination) pair, three pairs per dispatch.
pub fn restore_if_flagged_many(
    rec: &mut Recorder,
    pairs: &[(&Tensor, &Tensor)],
    flag: &StepFlag,
) -> Result<()> {
    flagged_copies(
        rec,
        "restore_if_flagged",
        "restore3_if_flagged",
        pairs,
        flag,
    )
}

/// `dst = src` unless `flag` is set.
pub fn copy_guarded(rec: &mut Recorder, src: &Tensor, dst: &Tensor, flag: &StepFlag) -> Result<()> {
    flagged_copy(rec, "copy_guarded", src, dst, flag)
}

/// `dst = src` only when `flag` is set (puts back a snapshot after a rejected step).
pub fn restore_if_flagged(
    rec: &mut Recorder,
    src: &Tensor,
    dst: &Tensor,
    flag: &StepFlag,
) -> Result<()> {
    flagged_copy(rec, "restore_if_flagged", src, dst, flag)
}
