//! The labeller of S2GAN and S3GAN with pre-trained labels (s3gan.md's variant table): a
//! network trained with rotation prediction on every image plus cross-entropy on the labelled
//! ones; its argmax then labels every unlabelled image, and a conditional GAN
//! ([`Variant::S2gan`](super::Variant::S2gan), [`Variant::S3gan`](super::Variant::S3gan))
//! trains on those labels.
//!
//! The network is the project's discriminator ([`Discriminator`]) with both heads, its own
//! weights (nothing is shared with the GAN that trains afterwards). The PyTorch mirror is
//! `labeller_step` in tests/reference/s3gan.py; tests/labeller.rs checks one step against it.
//!
//! # One step ([`Labeller::step`])
//! With N images and k = [`LabellerConfig::rot_rows`]`(N)`, in one recorder and one submit:
//! 1. One D forward in training mode (each spectral norm does its power iteration) over
//!    `[x (N); rot90(last k); rot180(last k); rot270(last k)]` (the rotation set of
//!    [`super::Trainer::d_step`]'s real half). The projection labels are class 0 for every
//!    row: the logit enters no loss, it is only computed because D's forward computes it.
//! 2. Loss = CE(rotation head, rotation set: the last k unrotated rows with target 0, then
//!    their rotations with targets 1, 2, 3) + class_weight * CE(class head, labelled rows of
//!    x; mean over them, 0 if none).
//! 3. Backward through D; Adam on every parameter the loss reaches (the trunk and both
//!    heads; D.linear and D.embed get no gradient and no Adam step, as torch.optim skips a
//!    parameter without a gradient).
//!
//! The two losses and the class head's argmax of the batch are read back at the end of the
//! step (the reported figures); nothing else leaves the device.
//!
//! # Pseudo-labelling ([`pseudo_label`])
//! [`LabellerConfig::steps`] steps on batches of [`LabellerConfig::batch`] images: the first
//! ceil(batch / 2) rows of a batch come from a seeded epoch order over the labelled images,
//! the rest from one over all images (so the class head sees labelled images at a steady
//! rate however few there are; the rotated rows are the last ones, from all images). Then
//! every unlabelled image gets the argmax of the class head (spectral norms with their
//! stored u, no update). Labelled images keep their label.
//!
//! With [`LabellerConfig::rounds`] > 1 this is self-training: after each round but the last,
//! the [`LabellerConfig::keep`] share of each class's unlabelled images that the labeller is
//! surest of (softmax probability of its argmax, per predicted class, so the class mix of
//! the added labels follows the predictions) count as labelled in the next round, which
//! trains a fresh labeller (its own seed) on them and the known labels. The last round's
//! argmax labels every unlabelled image.

use super::{
    adam_all, bump, check_all, restore_u, rotated_rows, rotation_targets, snapshot_u, stack,
    with_rotations, AdamSlot,
};
use crate::data::{Dataset, Order};
use crate::device::Context;
use crate::error::{Error, Result};
use crate::kernel::Recorder;
use crate::model::discriminator::DGrads;
use crate::model::layers::{Grads, Mode, Weights};
use crate::model::{spec, Config, Discriminator, Model};
use crate::ops::elementwise as ew;
use crate::ops::loss;
use crate::ops::optim::{AdamConfig, StepFlag};
use crate::ops::softmax::softmax;
use crate::tensor::{DType, Tensor};
use std::collections::BTreeMap;

/// Adam's beta1, beta2 and eps for the labeller: torch.optim.Adam's defaults. The labeller is
/// a classifier, not one player of a GAN, so it keeps Adam's momentum (BigGAN's D uses 0).
pub const LABELLER_BETAS: (f64, f64) = (0.9, 0.999);
pub const LABELLER_EPS: f64 = 1e-8;

/// Parameters of D that the labeller's loss does not reach (the GAN logit).
fn unused_by_labeller(name: &str) -> bool {
    name.starts_with("D.linear.") || name.starts_with("D.embed.")
}

/// Labeller hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LabellerConfig {
    /// Training steps, at least 1.
    pub steps: usize,
    /// Images per step, at least 1.
    pub batch: usize,
    /// Adam learning rate, finite and > 0.
    pub lr: f64,
    /// Share of a batch whose last rows are also fed rotated, in (0, 1], as
    /// [`super::TrainConfig::rot_fraction`]: [`LabellerConfig::rot_rows`].
    pub rot_fraction: f64,
    /// Weight of the class cross-entropy against the rotation one (weight 1), finite and > 0.
    pub class_weight: f32,
    /// Seed of the initial weights and of the batch order.
    pub seed: u64,
    /// Self-training rounds, at least 1 (see the module docs): each trains a fresh labeller
    /// for `steps` steps.
    pub rounds: usize,
    /// Share of each predicted class's unlabelled images that a round hands to the next as
    /// labels (its most confident ones), in (0, 1]. Unused with one round.
    pub keep: f64,
}

impl Default for LabellerConfig {
    fn default() -> Self {
        LabellerConfig::new()
    }
}

impl LabellerConfig {
    /// 2000 steps of 64 images, Adam lr 4e-4 (BigGAN's D rate; betas [`LABELLER_BETAS`]), a
    /// quarter of each batch rotated (as the GAN's rotation loss), class weight 1.0, seed 0,
    /// one round (keep 0.5 if more are asked for).
    pub fn new() -> Self {
        LabellerConfig {
            steps: 2000,
            batch: 64,
            lr: 4e-4,
            rot_fraction: 0.25,
            class_weight: 1.0,
            seed: 0,
            rounds: 1,
            keep: 0.5,
        }
    }

    /// Rows of a batch of `n` that are also fed rotated: round(n * rot_fraction) clamped to
    /// [1, n].
    pub fn rot_rows(&self, n: usize) -> usize {
        rotated_rows(n, self.rot_fraction)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(format!("labeller config: {m}")));
        if self.steps == 0 {
            return bad("steps must be at least 1".into());
        }
        if self.batch == 0 {
            return bad("batch must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr = {} must be finite and > 0", self.lr));
        }
        if !(self.rot_fraction > 0.0 && self.rot_fraction <= 1.0) {
            return bad(format!(
                "rot_fraction = {} must be in (0, 1]",
                self.rot_fraction
            ));
        }
        if !(self.class_weight.is_finite() && self.class_weight > 0.0) {
            return bad(format!(
                "class_weight = {} must be finite and > 0",
                self.class_weight
            ));
        }
        if self.rounds == 0 {
            return bad("rounds must be at least 1".into());
        }
        if !(self.keep > 0.0 && self.keep <= 1.0) {
            return bad(format!("keep = {} must be in (0, 1]", self.keep));
        }
        Ok(())
    }

    /// The Adam settings of a step.
    pub fn adam(&self) -> AdamConfig {
        AdamConfig {
            lr: self.lr,
            beta1: LABELLER_BETAS.0,
            beta2: LABELLER_BETAS.1,
            eps: LABELLER_EPS,
        }
    }
}

/// Figures of one labeller step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabellerReport {
    /// Self-training round (from 1; see [`LabellerConfig::rounds`]).
    pub round: usize,
    /// Steps taken in this round, this one included (from 1).
    pub step: usize,
    /// CE of the rotation head on the rotation set.
    pub rotation_loss: f32,
    /// class_weight * CE of the class head on the labelled rows (0 when none).
    pub class_loss: f32,
    /// Share of the batch's labelled rows whose class-head argmax (before this step's update)
    /// is their label; NaN when the batch has no labelled row.
    pub labelled_accuracy: f32,
}

/// A labeller network (D with rotation and class heads) and its Adam state.
pub struct Labeller {
    cfg: Config,
    lcfg: LabellerConfig,
    /// D's tensors by model-file name (`D.*`).
    pub weights: Weights,
    adam: BTreeMap<String, AdamSlot>,
    steps_done: usize,
}

impl Labeller {
    /// A labeller with fresh weights (drawn as [`Model::init`] draws D's, from `cfg.seed`) for
    /// the discriminator of `model_cfg`; both heads are on whatever `model_cfg` says.
    pub fn new(ctx: &Context, model_cfg: &Config, cfg: &LabellerConfig) -> Result<Labeller> {
        let mc = Labeller::network_config(model_cfg);
        mc.validate()?;
        cfg.validate()?;
        let d = Model::init(ctx, &mc, cfg.seed)?
            .d
            .expect("Model::init makes D");
        Labeller::from_weights(ctx, model_cfg, d, cfg)
    }

    /// A labeller with the given D weights (every tensor of the discriminator of `model_cfg`
    /// with both heads, by model-file name). Adam state starts at zero.
    pub fn from_weights(
        ctx: &Context,
        model_cfg: &Config,
        weights: Weights,
        cfg: &LabellerConfig,
    ) -> Result<Labeller> {
        let mc = Labeller::network_config(model_cfg);
        mc.validate()?;
        cfg.validate()?;
        let mut adam = BTreeMap::new();
        for (name, e) in spec::discriminator(&mc) {
            let t = weights.get(&name)?;
            if t.dtype() != DType::F32 || t.shape() != e.shape.as_slice() {
                return Err(Error::Shape(format!(
                    "labeller: weight {name} {t:?} must be f32 {:?}",
                    e.shape
                )));
            }
            if e.kind.trained() && !unused_by_labeller(&name) {
                let slot = AdamSlot {
                    m: Tensor::zeros(ctx, &e.shape)?,
                    v: Tensor::zeros(ctx, &e.shape)?,
                    step: 0,
                };
                adam.insert(name, slot);
            }
        }
        Ok(Labeller {
            cfg: mc,
            lcfg: cfg.clone(),
            weights,
            adam,
            steps_done: 0,
        })
    }

    /// `model_cfg` with both heads on.
    fn network_config(model_cfg: &Config) -> Config {
        Config {
            rotation_head: true,
            class_head: true,
            ..model_cfg.clone()
        }
    }

    /// The network's configuration (the model's, with both heads).
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Steps taken.
    pub fn steps_done(&self) -> usize {
        self.steps_done
    }

    /// Adam's `(exp_avg, exp_avg_sq, steps)` of a trained tensor by model-file name.
    pub fn adam_state(&self, name: &str) -> Option<(&Tensor, &Tensor, u32)> {
        self.adam.get(name).map(|s| (&s.m, &s.v, s.step))
    }

    fn check_images(&self, what: &str, x: &Tensor, n: usize) -> Result<()> {
        let (r, c) = (self.cfg.resolution, self.cfg.channels);
        if x.dtype() != DType::F32 || x.shape() != [n, r, r, c] {
            return Err(Error::Shape(format!(
                "{what}: images {x:?} must be f32 [{n}, {r}, {r}, {c}]"
            )));
        }
        Ok(())
    }

    /// One step on images `x` (NHWC `[N, R, R, channels]`, values in [-1, 1]) with labels `y`
    /// (`N` values, -1 = unlabelled); see the module docs.
    pub fn step(&mut self, ctx: &Context, x: &Tensor, y: &[i32]) -> Result<LabellerReport> {
        let n = y.len();
        if n == 0 {
            return Err(Error::InvalidArgument("labeller step: empty batch".into()));
        }
        self.check_images("labeller step", x, n)?;
        let classes = self.cfg.num_classes as i32;
        if let Some((i, &c)) = y.iter().enumerate().find(|(_, &c)| c < -1 || c >= classes) {
            return Err(Error::InvalidArgument(format!(
                "labeller step: label {i} = {c} is not -1 (unlabelled) or in [0, {classes})"
            )));
        }
        let k = self.lcfg.rot_rows(n);
        let rows = n + 3 * k;
        let mut cls_t = y.to_vec();
        cls_t.extend(std::iter::repeat_n(-1, 3 * k));
        let rot_t = Tensor::from_i32(ctx, &[rows], &rotation_targets(n, k))?;
        let cls_t = Tensor::from_i32(ctx, &[rows], &cls_t)?;
        let proj = Tensor::from_i32(ctx, &[rows], &vec![0; rows])?;
        let no_logit_grad = Tensor::zeros(ctx, &[rows])?;
        let class_weight = self.lcfg.class_weight;
        let adam_cfg = self.lcfg.adam();
        let disc = Discriminator { cfg: &self.cfg };
        let ws = &self.weights;
        let adam = &self.adam;
        let flag = StepFlag::new(ctx)?;
        let (losses, pred, stepped) = ctx.run(|rec| {
            let snaps = snapshot_u(rec, &[ws])?;
            let xr = with_rotations(rec, x, k)?;
            let (out, dctx) = disc.forward(rec, ws, &xr, &proj, Mode::TRAIN)?;
            let rot_logits = out.rotation.as_ref().expect("labeller config has the head");
            let cls_logits = out.class.as_ref().expect("labeller config has the head");
            let rot = loss::cross_entropy(rec, rot_logits, &rot_t, 1.0)?;
            let cls = loss::cross_entropy(rec, cls_logits, &cls_t, class_weight)?;
            let pred = loss::argmax(rec, cls_logits)?;
            let total = ew::add(rec, &rot.loss, &cls.loss)?;
            let mut grads = Grads::default();
            disc.backward(
                rec,
                &dctx,
                DGrads {
                    logit: &no_logit_grad,
                    rotation: Some(&rot.dlogits),
                    class: Some(&cls.dlogits),
                },
                &mut grads,
            )?;
            grads.map.retain(|name, _| !unused_by_labeller(name));
            check_all(rec, &flag, &total, &grads)?;
            let stepped = adam_all(rec, adam, ws, &grads, adam_cfg, &flag)?;
            restore_u(rec, &snaps, &flag)?;
            let losses = stack(rec, &[&total, &rot.loss, &cls.loss, &flag.flag])?;
            Ok((losses, pred, stepped))
        })?;
        let l = losses.to_f32(ctx)?;
        if l[3] != 0.0 {
            // Rejected on the device: weights, Adam state and u are as before the step.
            return Err(Error::InvalidArgument(format!(
                "labeller step {}: the loss or a gradient is not finite (loss {}); the step \
                 was rejected and nothing changed",
                self.steps_done + 1,
                l[0]
            )));
        }
        bump(&mut self.adam, &stepped);
        self.steps_done += 1;
        let pred = pred.to_i32(ctx)?;
        let (mut right, mut labelled) = (0usize, 0usize);
        for (&p, &c) in pred.iter().zip(y) {
            if c >= 0 {
                labelled += 1;
                right += (p == c) as usize;
            }
        }
        let labelled_accuracy = if labelled == 0 {
            f32::NAN
        } else {
            right as f32 / labelled as f32
        };
        Ok(LabellerReport {
            round: 1,
            step: self.steps_done,
            rotation_loss: l[1],
            class_loss: l[2],
            labelled_accuracy,
        })
    }

    /// The class head's argmax for each of the images `x` (NHWC `[N, R, R, channels]`), with
    /// spectral norms from their stored u (no update): one forward, one download.
    pub fn predict(&self, ctx: &Context, x: &Tensor) -> Result<Vec<i32>> {
        self.on_class_logits(ctx, x, loss::argmax)?.to_i32(ctx)
    }

    /// The class head's argmax for each of the images `x`, as [`Labeller::predict`], with its
    /// softmax probability (`ops::softmax` of the logits, both in the same submit).
    pub fn predict_confidence(&self, ctx: &Context, x: &Tensor) -> Result<Vec<(i32, f32)>> {
        let (arg, prob) = self.on_class_logits(ctx, x, |rec, cls| {
            Ok((loss::argmax(rec, cls)?, softmax(rec, cls)?))
        })?;
        let (arg, prob) = (arg.to_i32(ctx)?, prob.to_f32(ctx)?);
        let k = self.cfg.num_classes;
        Ok(arg
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, prob[i * k + c as usize]))
            .collect())
    }

    /// One forward of images `x` in eval mode, then `then` on the class logits `[N, classes]`,
    /// recorded and submitted together.
    fn on_class_logits<T>(
        &self,
        ctx: &Context,
        x: &Tensor,
        then: impl FnOnce(&mut Recorder, &Tensor) -> Result<T>,
    ) -> Result<T> {
        let n = x.shape().first().copied().unwrap_or(0);
        if n == 0 {
            return Err(Error::Shape(format!(
                "labeller predict: images {x:?} hold no image"
            )));
        }
        self.check_images("labeller predict", x, n)?;
        let proj = Tensor::from_i32(ctx, &[n], &vec![0; n])?;
        let disc = Discriminator { cfg: &self.cfg };
        ctx.run(|rec| {
            let (out, _) = disc.forward(rec, &self.weights, x, &proj, Mode::EVAL)?;
            let cls = out.class.as_ref().expect("labeller config has the head");
            then(rec, cls)
        })
    }
}

/// Which of the `scored` images (a class and its probability each) a self-training round
/// keeps as labels: per class, the ceil(`keep` x count) most probable ones (ties: the
/// earlier image). `keep` in (0, 1].
pub fn confident_per_class(scored: &[(i32, f32)], classes: usize, keep: f64) -> Vec<bool> {
    let mut kept = vec![false; scored.len()];
    for c in 0..classes as i32 {
        let mut idx: Vec<usize> = (0..scored.len()).filter(|&i| scored[i].0 == c).collect();
        idx.sort_by(|&a, &b| scored[b].1.total_cmp(&scored[a].1).then(a.cmp(&b)));
        let n = ((idx.len() as f64 * keep).ceil() as usize).min(idx.len());
        for &i in &idx[..n] {
            kept[i] = true;
        }
    }
    kept
}

/// The seed of self-training round `round` (from 0): round 0 keeps `seed`.
fn round_seed(seed: u64, round: usize) -> u64 {
    seed.wrapping_add(0xD1B5_4A32_D192_ED03u64.wrapping_mul(round as u64))
}

/// A seed for a second, independent use of `seed` (the order over all images).
fn second_seed(seed: u64) -> u64 {
    seed ^ 0x9E37_79B9_7F4A_7C15
}

/// Whether `data` fits the discriminator of `model_cfg` and has something to learn from.
fn check_data(model_cfg: &Config, data: &Dataset) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidArgument(format!("labeller data: {m}")));
    if data.is_empty() {
        return bad("the data set has no images".into());
    }
    if data.resolution != model_cfg.resolution || data.channels != model_cfg.channels {
        return bad(format!(
            "images are {r}x{r}x{c} but the model takes {mr}x{mr}x{mc}",
            r = data.resolution,
            c = data.channels,
            mr = model_cfg.resolution,
            mc = model_cfg.channels
        ));
    }
    if data.classes != model_cfg.num_classes {
        return bad(format!(
            "{} classes but the model has {}",
            data.classes, model_cfg.num_classes
        ));
    }
    if data.images.len() != data.len() * data.image_len() {
        return bad(format!(
            "{} values for {} images of {} values",
            data.images.len(),
            data.len(),
            data.image_len()
        ));
    }
    if let Some(i) = data
        .labels
        .iter()
        .position(|&c| c < -1 || c >= data.classes as i32)
    {
        return bad(format!(
            "label {} of image {i} is not -1 or in 0..{}",
            data.labels[i], data.classes
        ));
    }
    if data.labelled() == 0 {
        return bad("no image is labelled (the class head needs some labels)".into());
    }
    Ok(())
}

/// Train a labeller on `data` (rotation CE on all images, class CE on labelled ones), then set
/// every unlabelled label (-1) of `data` to its argmax; with `cfg.rounds` > 1, self-training
/// rounds first (see the module docs). Returns the last report; `progress` sees every report.
/// Deterministic for `cfg.seed` (weights and batch order). On an error (a bad config or data
/// set, a non-finite loss, a device error) `data` is unchanged.
pub fn pseudo_label(
    ctx: &Context,
    model_cfg: &Config,
    data: &mut Dataset,
    cfg: &LabellerConfig,
    progress: &mut dyn FnMut(&LabellerReport),
) -> Result<LabellerReport> {
    cfg.validate()?;
    model_cfg.validate()?;
    check_data(model_cfg, data)?;
    let unlabelled: Vec<usize> = (0..data.len()).filter(|&i| data.labels[i] < 0).collect();
    // The labels a round trains on: the known ones, and from round 2 on the previous round's
    // surest guesses.
    let mut labels = data.labels.clone();
    let mut last = None;
    for round in 0..cfg.rounds {
        let labeller = train_round(ctx, model_cfg, data, &labels, cfg, round, &mut |r| {
            progress(r);
            last = Some(*r);
        })?;
        let (r, c) = (model_cfg.resolution, model_cfg.channels);
        let images = |chunk: &[usize]| {
            let (xs, _) = data.batch(chunk);
            Tensor::from_f32(ctx, &[chunk.len(), r, r, c], &xs)
        };
        if round + 1 == cfg.rounds {
            let mut found = Vec::with_capacity(unlabelled.len());
            for chunk in unlabelled.chunks(cfg.batch) {
                found.extend(labeller.predict(ctx, &images(chunk)?)?);
            }
            for (&i, &p) in unlabelled.iter().zip(&found) {
                data.labels[i] = p;
            }
        } else {
            let mut scored = Vec::with_capacity(unlabelled.len());
            for chunk in unlabelled.chunks(cfg.batch) {
                scored.extend(labeller.predict_confidence(ctx, &images(chunk)?)?);
            }
            let kept = confident_per_class(&scored, model_cfg.num_classes, cfg.keep);
            labels = data.labels.clone();
            for ((&i, &(p, _)), keep) in unlabelled.iter().zip(&scored).zip(kept) {
                if keep {
                    labels[i] = p;
                }
            }
        }
    }
    Ok(last.expect("rounds >= 1 and steps >= 1"))
}

/// One round of [`pseudo_label`]: a fresh labeller (seed [`round_seed`]) trained on `data`'s
/// images with `labels`.
#[allow(clippy::too_many_arguments)]
fn train_round(
    ctx: &Context,
    model_cfg: &Config,
    data: &Dataset,
    labels: &[i32],
    cfg: &LabellerConfig,
    round: usize,
    progress: &mut dyn FnMut(&LabellerReport),
) -> Result<Labeller> {
    let seed = round_seed(cfg.seed, round);
    let lcfg = LabellerConfig {
        seed,
        ..cfg.clone()
    };
    let mut labeller = Labeller::new(ctx, model_cfg, &lcfg)?;
    let labelled: Vec<usize> = (0..data.len()).filter(|&i| labels[i] >= 0).collect();
    let mut lab_order = Order::new(seed, labelled.len())?;
    let mut all_order = Order::new(second_seed(seed), data.len())?;
    let n_lab = cfg.batch.div_ceil(2);
    let (r, c) = (model_cfg.resolution, model_cfg.channels);
    for _ in 0..cfg.steps {
        let mut idx: Vec<usize> = lab_order
            .next_batch(n_lab)
            .into_iter()
            .map(|i| labelled[i])
            .collect();
        idx.extend(all_order.next_batch(cfg.batch - n_lab));
        let (xs, _) = data.batch(&idx);
        let ys: Vec<i32> = idx.iter().map(|&i| labels[i]).collect();
        let x = Tensor::from_f32(ctx, &[idx.len(), r, r, c], &xs)?;
        let mut rep = labeller.step(ctx, &x, &ys)?;
        rep.round = round + 1;
        progress(&rep);
        if !(rep.rotation_loss.is_finite() && rep.class_loss.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "labeller round {} step {}: the loss is not finite (rotation {}, class {}); \
                 try a smaller lr",
                rep.round, rep.step, rep.rotation_loss, rep.class_loss
            )));
        }
    }
    Ok(labeller)
}
