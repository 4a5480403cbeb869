//! S3GAN training on the device: one discriminator step and one generator step at a time,
//! with the losses of compare_gan's S3GAN (see /work/shared/reference/s3gan.md, "Losses"),
//! Adam on both networks and an exponential moving average of G. The PyTorch mirror is
//! tests/reference/s3gan.py; tests/golden_train.rs checks one D step and one G step of three
//! variants against it.
//!
//! # One D step ([`Trainer::d_step`])
//! With N real images and k = [`TrainConfig::rot_rows`]`(N)` rotated rows (0 without the
//! rotation loss), all in one recorder and one submit:
//! 1. fakes = G(z, y_fake) in training mode (batch statistics; G's spectral norms do their
//!    power iteration, as BigGAN-PyTorch's G does under no_grad); no G gradients.
//! 2. One D forward in training mode over
//!    `[real (N); real_rot (3k); fake (N); fake_rot (3k)]`, where `real_rot` is the last k real
//!    images rotated by 90, 180 and 270 degrees counter-clockwise (in that order; the same for
//!    the fakes). This is compare_gan's `merge_with_rotation_data` order. The projection labels
//!    are the real labels, the fake labels, and for each rotated row the label of the row it
//!    was rotated from (compare_gan tiles them); with the class head, a row labelled -1 uses
//!    the argmax of its own class logits from this same forward
//!    ([`Discriminator::forward_fill`]). A rotated row's logit enters no loss, so its label does
//!    not matter.
//! 3. Loss_D = mean(relu(1 - D(real))) + mean(relu(1 + D(fake))) (unrotated rows) +
//!    d_rot_weight * CE(rotation head, real rotation set) + class_weight * CE(class head,
//!    labelled real rows; mean over them, 0 if none). The rotation set of a half is its last
//!    4k rows: the last k unrotated images (target 0), then their rotations by 90, 180, 270
//!    degrees (targets 1, 2, 3). compare_gan's CE is -log(softmax + 1e-10); this is the exact
//!    log-softmax.
//! 4. Backward through D, Adam on every D parameter that got a gradient (a head the variant
//!    does not use gets none and is left alone, as torch.optim skips a parameter without a
//!    gradient).
//!
//! # One G step ([`Trainer::g_step`])
//! fakes = G(z, y_fake) (training mode), one D forward in training mode over
//! `[fake (N); fake_rot (3k)]` (D's u does its power iteration here too, as in
//! BigGAN-PyTorch's G step; D's parameters are not updated),
//! Loss_G = -mean(D(fake)) + g_rot_weight * CE(rotation head, fake rotation set), backward
//! through D into G, Adam on G, then the EMA: after G step t (counted from 1),
//! `G_ema = G` when `t < ema_start`, else `G_ema = decay * G_ema + (1 - decay) * G`, over every
//! tensor of G (parameters, spectral-norm u and standing statistics alike: BigGAN-PyTorch's
//! rule over the state dict).
//!
//! # Labels per variant
//! Real labels are -1 (unlabelled) or a class. Conditional, S2GAN and S3GAN: every real
//! label must be known (for S2GAN and S3GAN a labeller, [`labeller::pseudo_label`], has
//! filled in the unlabelled ones before training).
//! Unconditional and SSGAN: every real and fake image uses class 0. S2GAN-CO and S3GAN-CO:
//! labelled rows their label, unlabelled rows the argmax of D's class head (no gradient
//! through the choice).
//!
//! Nothing is read back inside a step; the step's loss values (one small tensor) are
//! downloaded at its end.
//!
//! # Rejected steps
//! A step whose loss or any parameter gradient holds NaN or infinity (a bad pixel, a diverged
//! run) changes nothing: a device-side flag ([`optim::StepFlag`]) set by a check of the loss
//! and of every gradient makes Adam, the EMA and the G_ema copy skip their writes, and the
//! spectral-norm u vectors that the forward passes advanced are put back from a snapshot
//! taken at the start of the step. The flag travels back with the loss values; the report
//! says `rejected`, and the step counters (the trainer's and Adam's) do not move. Parameters,
//! Adam moments, G_ema and u are then bit-identical to before the step.
//!
//! # Checkpoints
//! [`Trainer::save_checkpoint`] and [`Trainer::load_checkpoint`] (module [`checkpoint`]: one
//! atomic, CRC-checked safetensors file with the model, Adam state, counters, config and the
//! caller's [`Trainer::extra`]); a reloaded trainer continues bit for bit.

use crate::device::Context;
use crate::error::{Error, Result};
use crate::kernel::Recorder;
use crate::model::discriminator::DGrads;
use crate::model::layers::{Grads, Mode, Weights};
use crate::model::model::copy_weights;
use crate::model::{spec, Discriminator, Generator, Model};
use crate::ops::loss;
use crate::ops::optim::{self, AdamConfig, StepFlag};
use crate::ops::{elementwise as ew, rearrange};
use crate::rng::{self, Stream};
use crate::tensor::{DType, Tensor};
use std::collections::BTreeMap;

pub mod checkpoint;
pub mod head;
pub mod labeller;
pub use checkpoint::{
    check_checkpoint_file, load_model_from_checkpoint, model_file, ADAM_PREFIX, CHECKPOINT_FORMAT,
    TRAIN_PREFIX,
};

/// Which GAN a [`Trainer`] trains (s3gan.md's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// BigGAN with every label known; no class head, no rotation loss.
    Conditional,
    /// One class (0) for everything; no class head, no rotation loss.
    Unconditional,
    /// One class (0) for everything, with the rotation loss.
    Ssgan,
    /// Labelled fraction plus the class head's argmax for the rest; no rotation loss.
    S2ganCo,
    /// As S2ganCo, with the rotation loss.
    S3ganCo,
    /// Pre-trained labels: every real label known (a labeller, [`labeller::pseudo_label`],
    /// filled the gaps first); no class head, no rotation loss.
    S2gan,
    /// As S2gan, with the rotation loss.
    S3gan,
}

/// How a variant uses the real labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelUse {
    /// Every label known.
    All,
    /// Class 0 for every real and fake image.
    One,
    /// Labelled rows their label; -1 rows the class head's argmax.
    Semi,
}

impl Variant {
    pub const ALL: [Variant; 7] = [
        Variant::Conditional,
        Variant::Unconditional,
        Variant::Ssgan,
        Variant::S2ganCo,
        Variant::S3ganCo,
        Variant::S2gan,
        Variant::S3gan,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Conditional => "conditional",
            Variant::Unconditional => "unconditional",
            Variant::Ssgan => "ssgan",
            Variant::S2ganCo => "s2gan-co",
            Variant::S3ganCo => "s3gan-co",
            Variant::S2gan => "s2gan",
            Variant::S3gan => "s3gan",
        }
    }

    pub fn parse(s: &str) -> Result<Variant> {
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Variant::ALL.iter().map(|v| v.name()).collect();
                Error::InvalidArgument(format!("no training variant {s:?} ({})", names.join(", ")))
            })
    }

    /// Whether D's class head is trained and picks the labels of unlabelled images.
    pub fn class_head(self) -> bool {
        matches!(self, Variant::S2ganCo | Variant::S3ganCo)
    }

    /// Whether the rotation loss is on.
    pub fn rotation(self) -> bool {
        matches!(self, Variant::Ssgan | Variant::S3ganCo | Variant::S3gan)
    }

    pub fn labels(self) -> LabelUse {
        match self {
            Variant::Conditional | Variant::S2gan | Variant::S3gan => LabelUse::All,
            Variant::Unconditional | Variant::Ssgan => LabelUse::One,
            Variant::S2ganCo | Variant::S3ganCo => LabelUse::Semi,
        }
    }
}

/// Training hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub variant: Variant,
    /// Adam learning rate of G (BigGAN: 1e-4).
    pub lr_g: f64,
    /// Adam learning rate of D (BigGAN: 4e-4).
    pub lr_d: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// D steps per G step (for the loop that drives the trainer).
    pub d_steps: usize,
    /// Share of a batch whose last rows are also fed rotated, in (0, 1]:
    /// [`TrainConfig::rot_rows`] = round(N * rot_fraction), at least 1.
    pub rot_fraction: f64,
    /// Weight of the real rotation loss in Loss_D.
    pub d_rot_weight: f32,
    /// Weight of the fake rotation loss in Loss_G.
    pub g_rot_weight: f32,
    /// Weight of the class-head loss in Loss_D.
    pub class_weight: f32,
    pub ema_decay: f64,
    /// First G step (counted from 1) that averages; before it G_ema is a copy of G.
    pub ema_start: u64,
    /// Seed of [`Trainer::fake_batch`].
    pub seed: u64,
}

impl TrainConfig {
    /// BigGAN/S3GAN settings for `variant`: Adam (0, 0.999, 1e-8), lr G 1e-4 / D 4e-4, two D
    /// steps per G step, a quarter of each batch rotated, rotation weights 1.0 (D) and 0.2
    /// (G), class weight 1.0, EMA decay 0.9999 from G step 1000, seed 0.
    pub fn new(variant: Variant) -> TrainConfig {
        TrainConfig {
            variant,
            lr_g: 1e-4,
            lr_d: 4e-4,
            beta1: 0.0,
            beta2: 0.999,
            eps: 1e-8,
            d_steps: 2,
            rot_fraction: 0.25,
            d_rot_weight: 1.0,
            g_rot_weight: 0.2,
            class_weight: 1.0,
            ema_decay: 0.9999,
            ema_start: 1000,
            seed: 0,
        }
    }

    /// Rows of a batch of `n` that are also fed rotated: 0 without the rotation loss, else
    /// round(n * rot_fraction) clamped to [1, n].
    pub fn rot_rows(&self, n: usize) -> usize {
        if !self.variant.rotation() {
            return 0;
        }
        rotated_rows(n, self.rot_fraction)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(format!("training config: {m}")));
        for (name, lr) in [("lr_g", self.lr_g), ("lr_d", self.lr_d)] {
            // As f32 too: the device steps by lr / (1 - beta1^t) in f32.
            if !((lr as f32).is_finite() && lr >= 0.0) {
                return bad(format!("{name} = {lr} must be finite (as f32) and >= 0"));
            }
        }
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(format!("{name} = {b} must be in [0, 1)"));
            }
        }
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return bad(format!("eps = {} must be finite and >= 0", self.eps));
        }
        if self.d_steps == 0 {
            return bad("d_steps must be at least 1".into());
        }
        if !(self.rot_fraction > 0.0 && self.rot_fraction <= 1.0) {
            return bad(format!(
                "rot_fraction = {} must be in (0, 1]",
                self.rot_fraction
            ));
        }
        for (name, w) in [
            ("d_rot_weight", self.d_rot_weight),
            ("g_rot_weight", self.g_rot_weight),
            ("class_weight", self.class_weight),
        ] {
            if !w.is_finite() {
                return bad(format!("{name} = {w} is not finite"));
            }
        }
        if !(0.0..=1.0).contains(&self.ema_decay) {
            return bad(format!("ema_decay = {} must be in [0, 1]", self.ema_decay));
        }
        Ok(())
    }

    fn adam(&self, lr: f64) -> AdamConfig {
        AdamConfig {
            lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
        }
    }
}

/// Loss values of one D step (each term with its weight applied).
#[derive(Debug, Clone)]
pub struct DStepReport {
    pub total: f32,
    /// mean(relu(1 - D(real))) + mean(relu(1 + D(fake))).
    pub hinge: f32,
    /// d_rot_weight * CE on the real rotation set (0 without the rotation loss).
    pub rotation: f32,
    /// class_weight * CE on the labelled real rows (0 without the class head or labels).
    pub class: f32,
    /// i32 `[2N + 6k]` on the device: the projection labels of the D call (unlabelled rows
    /// filled by the class head), in the order of the batch described in the module docs.
    pub y_used: Tensor,
    /// The loss or a gradient was NaN or infinite: nothing was updated (module docs,
    /// "Rejected steps") and the step was not counted.
    pub rejected: bool,
}

/// Loss values of one G step.
#[derive(Debug, Clone, Copy)]
pub struct GStepReport {
    pub total: f32,
    /// -mean(D(fake)).
    pub adversarial: f32,
    /// g_rot_weight * CE on the fake rotation set (0 without the rotation loss).
    pub rotation: f32,
    /// The loss or a gradient was NaN or infinite: nothing was updated (module docs,
    /// "Rejected steps") and the step was not counted.
    pub rejected: bool,
}

/// Adam state of one parameter.
struct AdamSlot {
    m: Tensor,
    v: Tensor,
    step: u32,
}

/// Trains a [`Model`] (G, D and G_ema on the device) with Adam state per parameter.
pub struct Trainer {
    pub model: Model,
    pub cfg: TrainConfig,
    /// By model-file name (`G.*`, `D.*`).
    adam: BTreeMap<String, AdamSlot>,
    d_steps_done: u64,
    g_steps_done: u64,
    fakes_drawn: u64,
    /// Caller's state saved in checkpoints and restored by [`Trainer::load_checkpoint`]
    /// untouched (e.g. a data loader's `data.epoch`, `data.pos`).
    pub extra: BTreeMap<String, String>,
    /// Batch sizes [`Trainer::prepare_step`] has compiled for.
    prepared: Vec<usize>,
}

/// Rows of a batch of `n` that are also fed rotated: round(n * fraction) clamped to [1, n]
/// (0 for an empty batch).
fn rotated_rows(n: usize, fraction: f64) -> usize {
    if n == 0 {
        return 0;
    }
    ((n as f64 * fraction).round() as usize).clamp(1, n)
}

/// `[x; rot90(last k); rot180(last k); rot270(last k)]` of an NHWC batch.
fn with_rotations(rec: &mut Recorder, x: &Tensor, k: usize) -> Result<Tensor> {
    if k == 0 {
        return Ok(x.clone());
    }
    let n = x.shape()[0];
    let last = if k == n {
        x.clone()
    } else {
        rearrange::split_batch(rec, x, &[n - k, k])?
            .pop()
            .expect("two pieces")
    };
    let r: Vec<Tensor> = (1..=3)
        .map(|j| rearrange::rotate_all(rec, &last, j))
        .collect::<Result<_>>()?;
    rearrange::concat_batch(rec, &[x, &r[0], &r[1], &r[2]])
}

/// Gradient of [`with_rotations`]: `dy [N + 3k, ...]` -> `dx [N, ...]`.
fn with_rotations_backward(rec: &mut Recorder, dy: &Tensor, n: usize, k: usize) -> Result<Tensor> {
    if k == 0 {
        return Ok(dy.clone());
    }
    let mut sizes = vec![n - k, k, k, k, k];
    if n == k {
        sizes.remove(0);
    }
    let mut p = rearrange::split_batch(rec, dy, &sizes)?;
    let rots = p.split_off(p.len() - 3);
    let mut d_last = p.pop().expect("the unrotated copy");
    for (j, r) in rots.iter().enumerate() {
        let back = rearrange::rotate_all_backward(rec, r, j as u32 + 1)?;
        d_last = ew::add(rec, &d_last, &back)?;
    }
    match p.pop() {
        Some(head) => rearrange::concat_batch(rec, &[&head, &d_last]),
        None => Ok(d_last),
    }
}

/// `labels` followed by three copies of its last `k` values.
fn tile_rotated(labels: &[i32], k: usize) -> Vec<i32> {
    let mut v = labels.to_vec();
    for _ in 0..3 {
        v.extend_from_slice(&labels[labels.len() - k..]);
    }
    v
}

/// Rotation targets for a half of `n + 3k` rows: -1 (masked) except the last 4k rows, whose
/// targets are `[0; k], [1; k], [2; k], [3; k]`.
fn rotation_targets(n: usize, k: usize) -> Vec<i32> {
    let mut v = vec![-1; n - k];
    for t in 0..4 {
        v.extend(std::iter::repeat_n(t, k));
    }
    v
}

/// Adam on every parameter of `ws` that has a gradient in `grads`, skipped on the device when
/// `flag` is set. Returns the names whose step count the caller bumps once the step is
/// accepted.
fn adam_all(
    rec: &mut Recorder,
    adam: &BTreeMap<String, AdamSlot>,
    ws: &Weights,
    grads: &Grads,
    cfg: AdamConfig,
    flag: &StepFlag,
) -> Result<Vec<String>> {
    for (name, g) in &grads.map {
        let slot = adam.get(name).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "training: {name} got a gradient but is not trained"
            ))
        })?;
        let (p, step) = (ws.get(name)?, slot.step + 1);
        optim::adam_step_guarded(rec, p, g, &slot.m, &slot.v, cfg, step, flag)?;
    }
    Ok(grads.map.keys().cloned().collect())
}

/// Set `flag` if the loss or any gradient is NaN or infinite.
fn check_all(rec: &mut Recorder, flag: &StepFlag, loss: &Tensor, grads: &Grads) -> Result<()> {
    let mut ts = vec![loss];
    ts.extend(grads.map.values());
    flag.check_many(rec, &ts)
}

/// Copies of every spectral-norm u of `nets` (the forward passes of a step advance them).
fn snapshot_u(rec: &mut Recorder, nets: &[&Weights]) -> Result<Vec<(Tensor, Tensor)>> {
    let mut out = Vec::new();
    for ws in nets {
        for (name, u) in ws.map.iter().filter(|(n, _)| n.ends_with(".u")) {
            let copy = Tensor::empty(rec.ctx, u.shape(), DType::F32)
                .map_err(|e| Error::Device(format!("snapshot of {name}: {e}")))?;
            rec.copy(u, &copy)?;
            out.push((u.clone(), copy));
        }
    }
    Ok(out)
}

/// Put the snapshots back when `flag` is set.
fn restore_u(rec: &mut Recorder, snaps: &[(Tensor, Tensor)], flag: &StepFlag) -> Result<()> {
    let pairs: Vec<(&Tensor, &Tensor)> = snaps.iter().map(|(u, copy)| (copy, u)).collect();
    optim::restore_if_flagged_many(rec, &pairs, flag)
}

/// Count an accepted step in Adam's state.
fn bump(adam: &mut BTreeMap<String, AdamSlot>, names: &[String]) {
    for name in names {
        if let Some(slot) = adam.get_mut(name) {
            slot.step += 1;
        }
    }
}

/// Stack one-element loss tensors into one `[k]` tensor (one download).
fn stack(rec: &mut Recorder, xs: &[&Tensor]) -> Result<Tensor> {
    rearrange::concat_batch(rec, xs)
}

impl Trainer {
    /// A trainer for `model`, which must hold D (and gets G_ema as a copy of G when it has
    /// none) and the heads the variant trains. Adam state starts at zero.
    pub fn new(ctx: &Context, mut model: Model, cfg: TrainConfig) -> Result<Trainer> {
        Trainer::check(&model, &cfg)?;
        // Create every pipeline now, in parallel, so that no step waits for one; where the
        // first submit compiles ahead instead (lavapipe), `prepare_step` creates what a step
        // uses as it records.
        ctx.prepare_at_load()?;
        if model.g_ema.is_none() {
            model.g_ema = Some(copy_weights(ctx, &model.g)?);
        }
        let mut adam = BTreeMap::new();
        for (name, shape) in Trainer::trained(&model.cfg) {
            let slot = AdamSlot {
                m: Tensor::zeros(ctx, &shape)?,
                v: Tensor::zeros(ctx, &shape)?,
                step: 0,
            };
            adam.insert(name, slot);
        }
        Ok(Trainer {
            model,
            cfg,
            adam,
            d_steps_done: 0,
            g_steps_done: 0,
            fakes_drawn: 0,
            extra: BTreeMap::new(),
            prepared: Vec::new(),
        })
    }

    /// Whether `cfg` can train `model`: a valid config, D present, the heads it needs.
    fn check(model: &Model, cfg: &TrainConfig) -> Result<()> {
        cfg.validate()?;
        let v = cfg.variant;
        if model.d.is_none() {
            return Err(Error::InvalidArgument(
                "training needs a discriminator; the model has none".into(),
            ));
        }
        if v.class_head() && !model.cfg.class_head {
            return Err(Error::InvalidArgument(format!(
                "variant {} needs the class head (model config class_head)",
                v.name()
            )));
        }
        if v.rotation() && !model.cfg.rotation_head {
            return Err(Error::InvalidArgument(format!(
                "variant {} needs the rotation head (model config rotation_head)",
                v.name()
            )));
        }
        Ok(())
    }

    /// Name and shape of every trained tensor of G and D (those with Adam state).
    fn trained(mc: &crate::model::Config) -> Vec<(String, Vec<usize>)> {
        let specs = [spec::generator(mc, "G"), spec::discriminator(mc)];
        specs
            .into_iter()
            .flatten()
            .filter(|(_, e)| e.kind.trained())
            .map(|(name, e)| (name, e.shape))
            .collect()
    }

    /// Compile what a D step and a G step with batches of `n` use before they run: the D
    /// step's kernels now, on two devices; those only the G step adds in the background, on
    /// one (the first D step runs meanwhile; [`Trainer::g_step`] waits for them). Only where
    /// kernels compile at their first dispatch (CPU adapters, see `warm.rs`); elsewhere, and
    /// for a batch size prepared before, it does nothing. Both
    /// steps are recorded with placeholder inputs and not submitted: nothing on the device
    /// or in the trainer changes. [`Trainer::d_step`] and [`Trainer::g_step`] call it; a
    /// program that has other work to do before its first step (loading data) can call it
    /// on another thread first.
    pub fn prepare_step(&mut self, ctx: &Context, n: usize) -> Result<()> {
        if !ctx.warm_on || n == 0 || self.prepared.contains(&n) {
            return Ok(());
        }
        let mc = &self.model.cfg;
        let x = Tensor::zeros(ctx, &[n, mc.resolution, mc.resolution, mc.channels])?;
        let z = Tensor::zeros(ctx, &[n, mc.z_dim])?;
        // Labelled and unlabelled rows where the variant takes both.
        let y: Vec<i32> = match self.cfg.variant.labels() {
            LabelUse::Semi => (0..n).map(|i| if i % 2 == 0 { 0 } else { -1 }).collect(),
            LabelUse::All | LabelUse::One => vec![0; n],
        };
        let y_fake = vec![0; n];
        // An earlier batch size's background work first: compiling ahead skips while it runs.
        ctx.finish_behind();
        let mut rec = ctx.recorder();
        self.record_d(&mut rec, &x, &y, &z, &y_fake)?;
        rec.compile_ahead();
        // What the G step adds (its backward through G: batch norm, tanh, G's loss, EMA)
        // compiles on the helper device while the first D step runs; `g_step` waits for
        // it before it records.
        let mut rec = ctx.recorder();
        self.record_g(&mut rec, &z, &y_fake)?;
        rec.compile_behind();
        self.prepared.push(n);
        Ok(())
    }

    /// D steps taken.
    pub fn d_steps_done(&self) -> u64 {
        self.d_steps_done
    }

    /// G steps taken.
    pub fn g_steps_done(&self) -> u64 {
        self.g_steps_done
    }

    /// Adam's `(exp_avg, exp_avg_sq, steps)` of a trained tensor by model-file name.
    pub fn adam_state(&self, name: &str) -> Option<(&Tensor, &Tensor, u32)> {
        self.adam.get(name).map(|s| (&s.m, &s.v, s.step))
    }

    /// The next `n` latent vectors (standard normal) and fake labels (uniform over the
    /// classes), drawn from the config's seed by a counter: reproducible, never repeated.
    pub fn fake_batch(&mut self, ctx: &Context, n: usize) -> Result<(Tensor, Vec<i32>)> {
        let zd = self.model.cfg.z_dim;
        let k = self.model.cfg.num_classes as u32;
        let base = self.fakes_drawn;
        let seed = self.cfg.seed;
        let z: Vec<f32> = (0..(n * zd) as u64)
            .map(|i| rng::normal(seed, Stream::Z, base * zd as u64 + i, 0) as f32)
            .collect();
        let y: Vec<i32> = (0..n as u64)
            .map(|i| rng::below(seed, Stream::Labels, base + i, k) as i32)
            .collect();
        self.fakes_drawn += n as u64;
        Ok((Tensor::from_f32(ctx, &[n, zd], &z)?, y))
    }

    fn check_labels(&self, what: &str, y: &[i32], allow_unlabelled: bool) -> Result<()> {
        let k = self.model.cfg.num_classes as i32;
        let lo = if allow_unlabelled { -1 } else { 0 };
        if let Some(bad) = y.iter().find(|&&c| c < lo || c >= k) {
            let allowed = if allow_unlabelled {
                format!("-1 (unlabelled) or [0, {k})")
            } else {
                format!("[0, {k})")
            };
            return Err(Error::InvalidArgument(format!(
                "{what}: label {bad} is outside {allowed} (variant {})",
                self.cfg.variant.name()
            )));
        }
        Ok(())
    }

    fn check_z(&self, what: &str, z: &Tensor, n: usize) -> Result<()> {
        let zd = self.model.cfg.z_dim;
        if z.dtype() != DType::F32 || z.shape() != [n, zd] {
            return Err(Error::Shape(format!(
                "{what}: z {z:?} must be f32 [{n}, {zd}]"
            )));
        }
        Ok(())
    }

    /// Labels fed to G and D for this variant.
    fn used(&self, y: &[i32]) -> Vec<i32> {
        match self.cfg.variant.labels() {
            LabelUse::One => vec![0; y.len()],
            LabelUse::All | LabelUse::Semi => y.to_vec(),
        }
    }

    /// One discriminator step on real images `x` (NHWC `[N, R, R, channels]`) with labels `y`
    /// (`N` values, -1 = unlabelled), and fakes from `z` (`[N, z_dim]`) and `y_fake`.
    pub fn d_step(
        &mut self,
        ctx: &Context,
        x: &Tensor,
        y: &[i32],
        z: &Tensor,
        y_fake: &[i32],
    ) -> Result<DStepReport> {
        let mc = &self.model.cfg;
        let n = y.len();
        let r = mc.resolution;
        if n == 0 {
            return Err(Error::InvalidArgument("d_step: empty batch".into()));
        }
        if x.dtype() != DType::F32 || x.shape() != [n, r, r, mc.channels] {
            return Err(Error::Shape(format!(
                "d_step: images {x:?} must be f32 [{n}, {r}, {r}, {}] (one per label)",
                mc.channels
            )));
        }
        self.check_z("d_step", z, n)?;
        if y_fake.len() != n {
            return Err(Error::InvalidArgument(format!(
                "d_step: {} fake labels for {n} images",
                y_fake.len()
            )));
        }
        let variant = self.cfg.variant;
        self.check_labels("d_step real", y, variant.labels() != LabelUse::All)?;
        self.check_labels("d_step fake", y_fake, false)?;
        self.prepare_step(ctx, n)?;
        let (losses, y_used, stepped) = ctx.run(|rec| self.record_d(rec, x, y, z, y_fake))?;
        let l = losses.to_f32(ctx)?;
        let rejected = l[4] != 0.0;
        if !rejected {
            bump(&mut self.adam, &stepped);
            self.d_steps_done += 1;
        }
        Ok(DStepReport {
            total: l[0],
            hinge: l[1],
            rotation: l[2],
            class: l[3],
            y_used,
            rejected,
        })
    }

    /// Record the D step of [`Trainer::d_step`] (inputs checked there): returns the stacked
    /// losses and flag, the projection labels used, and the names Adam stepped.
    fn record_d(
        &self,
        rec: &mut Recorder,
        x: &Tensor,
        y: &[i32],
        z: &Tensor,
        y_fake: &[i32],
    ) -> Result<(Tensor, Tensor, Vec<String>)> {
        let ctx = rec.ctx;
        let n = y.len();
        let variant = self.cfg.variant;
        let k = self.cfg.rot_rows(n);
        let (y_real, y_f) = (self.used(y), self.used(y_fake));
        let mut y_all = tile_rotated(&y_real, k);
        y_all.extend(tile_rotated(&y_f, k));
        let half = n + 3 * k;
        let mut rot_t = rotation_targets(n, k);
        rot_t.extend(std::iter::repeat_n(-1, half));
        let mut cls_t = y_real.clone();
        cls_t.extend(std::iter::repeat_n(-1, half + 3 * k));
        let yf_t = Tensor::from_i32(ctx, &[n], &y_f)?;
        let y_all_t = Tensor::from_i32(ctx, &[2 * half], &y_all)?;
        let rot_t = Tensor::from_i32(ctx, &[2 * half], &rot_t)?;
        let cls_t = Tensor::from_i32(ctx, &[2 * half], &cls_t)?;
        let zero = Tensor::zeros(ctx, &[1])?;
        let pad = if k > 0 {
            Some(Tensor::zeros(ctx, &[3 * k])?)
        } else {
            None
        };
        let cfg = &self.cfg;
        let (model, adam) = (&self.model, &self.adam);
        let gen = Generator {
            cfg: &model.cfg,
            prefix: "G",
        };
        let disc = Discriminator { cfg: &model.cfg };
        let d_ws = model.d.as_ref().expect("checked in new");
        let flag = StepFlag::new(ctx)?;
        let snaps = snapshot_u(rec, &[&model.g, d_ws])?;
        let (fake, _) = gen.forward(rec, &model.g, z, &yf_t, Mode::TRAIN)?;
        let xr = with_rotations(rec, x, k)?;
        let xf = with_rotations(rec, &fake, k)?;
        let x_all = rearrange::concat_batch(rec, &[&xr, &xf])?;
        let (out, dctx) = if variant.class_head() {
            disc.forward_fill(rec, d_ws, &x_all, &y_all_t, Mode::TRAIN)?
        } else {
            disc.forward(rec, d_ws, &x_all, &y_all_t, Mode::TRAIN)?
        };
        let sizes: &[usize] = if k > 0 {
            &[n, 3 * k, n, 3 * k]
        } else {
            &[n, n]
        };
        let parts = rearrange::split_batch(rec, &out.logit, sizes)?;
        let (real, fake_logit) = (&parts[0], &parts[sizes.len() / 2]);
        let h = loss::hinge_d(rec, real, fake_logit)?;
        let dlogit = match &pad {
            Some(p) => rearrange::concat_batch(rec, &[&h.d_real, p, &h.d_fake, p])?,
            None => rearrange::concat_batch(rec, &[&h.d_real, &h.d_fake])?,
        };
        let rot = if k > 0 {
            let logits = out.rotation.as_ref().expect("checked in new");
            Some(loss::cross_entropy(rec, logits, &rot_t, cfg.d_rot_weight)?)
        } else {
            None
        };
        let cls = if variant.class_head() {
            let logits = out.class.as_ref().expect("checked in new");
            Some(loss::cross_entropy(rec, logits, &cls_t, cfg.class_weight)?)
        } else {
            None
        };
        let rot_loss = rot.as_ref().map_or(&zero, |c| &c.loss);
        let cls_loss = cls.as_ref().map_or(&zero, |c| &c.loss);
        let total = ew::add(rec, &h.loss, rot_loss)?;
        let total = ew::add(rec, &total, cls_loss)?;
        let mut grads = Grads::default();
        disc.backward(
            rec,
            &dctx,
            DGrads {
                logit: &dlogit,
                rotation: rot.as_ref().map(|c| &c.dlogits),
                class: cls.as_ref().map(|c| &c.dlogits),
            },
            &mut grads,
        )?;
        check_all(rec, &flag, &total, &grads)?;
        let stepped = adam_all(rec, adam, d_ws, &grads, cfg.adam(cfg.lr_d), &flag)?;
        restore_u(rec, &snaps, &flag)?;
        let losses = stack(rec, &[&total, &h.loss, rot_loss, cls_loss, &flag.flag])?;
        Ok((losses, out.y_used, stepped))
    }

    /// One generator step on fakes from `z` (`[N, z_dim]`) and `y_fake` (`N` classes), then
    /// the EMA update of G_ema.
    pub fn g_step(&mut self, ctx: &Context, z: &Tensor, y_fake: &[i32]) -> Result<GStepReport> {
        let n = y_fake.len();
        if n == 0 {
            return Err(Error::InvalidArgument("g_step: empty batch".into()));
        }
        self.check_z("g_step", z, n)?;
        self.check_labels("g_step fake", y_fake, false)?;
        self.prepare_step(ctx, n)?;
        ctx.finish_behind();
        let t = self.g_steps_done + 1;
        let (losses, stepped) = ctx.run(|rec| self.record_g(rec, z, y_fake))?;
        let l = losses.to_f32(ctx)?;
        let rejected = l[3] != 0.0;
        if !rejected {
            bump(&mut self.adam, &stepped);
            self.g_steps_done = t;
        }
        Ok(GStepReport {
            total: l[0],
            adversarial: l[1],
            rotation: l[2],
            rejected,
        })
    }

    /// Record the G step of [`Trainer::g_step`] (inputs checked there): returns the stacked
    /// losses and flag, and the names Adam stepped.
    fn record_g(
        &self,
        rec: &mut Recorder,
        z: &Tensor,
        y_fake: &[i32],
    ) -> Result<(Tensor, Vec<String>)> {
        let ctx = rec.ctx;
        let n = y_fake.len();
        let k = self.cfg.rot_rows(n);
        let y_f = self.used(y_fake);
        let half = n + 3 * k;
        let yf_t = Tensor::from_i32(ctx, &[n], &y_f)?;
        let y_all_t = Tensor::from_i32(ctx, &[half], &tile_rotated(&y_f, k))?;
        let rot_t = Tensor::from_i32(ctx, &[half], &rotation_targets(n, k))?;
        let zero = Tensor::zeros(ctx, &[1])?;
        let pad = if k > 0 {
            Some(Tensor::zeros(ctx, &[3 * k])?)
        } else {
            None
        };
        let cfg = &self.cfg;
        let t = self.g_steps_done + 1;
        let (model, adam) = (&self.model, &self.adam);
        let gen = Generator {
            cfg: &model.cfg,
            prefix: "G",
        };
        let disc = Discriminator { cfg: &model.cfg };
        let d_ws = model.d.as_ref().expect("checked in new");
        let g_ws = &model.g;
        let ema = model.g_ema.as_ref().expect("made in new");
        let flag = StepFlag::new(ctx)?;
        let snaps = snapshot_u(rec, &[g_ws, d_ws])?;
        let (fake, gctx) = gen.forward(rec, g_ws, z, &yf_t, Mode::TRAIN)?;
        let xf = with_rotations(rec, &fake, k)?;
        let (out, dctx) = disc.forward(rec, d_ws, &xf, &y_all_t, Mode::TRAIN)?;
        let logit_fake = match k {
            0 => out.logit.clone(),
            _ => rearrange::split_batch(rec, &out.logit, &[n, 3 * k])?.remove(0),
        };
        let h = loss::hinge_g(rec, &logit_fake)?;
        let dlogit = match &pad {
            Some(p) => rearrange::concat_batch(rec, &[&h.d_fake, p])?,
            None => h.d_fake.clone(),
        };
        let rot = if k > 0 {
            let logits = out.rotation.as_ref().expect("checked in new");
            Some(loss::cross_entropy(rec, logits, &rot_t, cfg.g_rot_weight)?)
        } else {
            None
        };
        let rot_loss = rot.as_ref().map_or(&zero, |c| &c.loss);
        let total = ew::add(rec, &h.loss, rot_loss)?;
        // Through D to its input only: D is not updated in the G step.
        let mut d_grads = Grads::input_only();
        let dx = disc.backward(
            rec,
            &dctx,
            DGrads {
                logit: &dlogit,
                rotation: rot.as_ref().map(|c| &c.dlogits),
                class: None,
            },
            &mut d_grads,
        )?;
        let dfake = with_rotations_backward(rec, &dx, n, k)?;
        let mut grads = Grads::default();
        gen.backward(rec, g_ws, &gctx, &dfake, &mut grads)?;
        check_all(rec, &flag, &total, &grads)?;
        let stepped = adam_all(rec, adam, g_ws, &grads, cfg.adam(cfg.lr_g), &flag)?;
        restore_u(rec, &snaps, &flag)?;
        let mut pairs = Vec::with_capacity(g_ws.map.len());
        for (name, p) in &g_ws.map {
            pairs.push((p, ema.get(name)?));
        }
        if t < cfg.ema_start {
            optim::copy_guarded_many(rec, &pairs, &flag)?;
        } else {
            optim::ema_update_guarded_many(rec, &pairs, cfg.ema_decay, &flag)?;
        }
        let losses = stack(rec, &[&total, &h.loss, rot_loss, &flag.flag])?;
        Ok((losses, stepped))
    }
}
