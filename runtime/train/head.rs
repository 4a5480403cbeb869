//! Fitting D's class head alone: a linear probe of the discriminator's features.
//!
//! S2GAN and S3GAN with pre-trained labels (and SSGAN) train no class head on D: their labels
//! come from a separate labeller, or there are none. [`fit_class_head`] gives such a model a
//! classifier for [`Model::classify`] without touching anything the GAN learnt: D's pooled
//! features ([`DOut::features`](crate::model::discriminator::DOut::features), eval mode,
//! stored u) of the labelled images are computed once; then the head (`D.classifier`: a
//! spectral-normed linear layer with bias, as in training) learns from them alone with Adam
//! on the class cross-entropy. Only the head's weight, bias and u change.
//!
//! One step: a batch of feature rows from a seeded epoch order over the labelled images,
//! the head's forward in training mode (its spectral norm does one power iteration), the
//! cross-entropy, the head's backward, Adam; one submit. A step whose loss or gradient is
//! not finite changes nothing (the device flag of [`optim::StepFlag`]) and is an error.

use super::{adam_all, bump, check_all, restore_u, snapshot_u, stack, AdamSlot};
use crate::data::{Dataset, Order};
use crate::device::Context;
use crate::error::{Error, Result};
use crate::model::layers::{self, Grads, Mode, Weights};
use crate::model::{spec, Discriminator, Model};
use crate::ops::loss;
use crate::ops::optim::{AdamConfig, StepFlag};
use crate::tensor::{DType, Tensor};
use std::collections::BTreeMap;

/// The class head's layer name.
pub const CLASS_HEAD: &str = "D.classifier";

/// Hyper-parameters of [`fit_class_head`].
#[derive(Debug, Clone, PartialEq)]
pub struct HeadConfig {
    /// Adam steps, at least 1.
    pub steps: usize,
    /// Feature rows per step, at least 1.
    pub batch: usize,
    /// Adam learning rate (betas 0.9, 0.999, eps 1e-8: PyTorch's defaults), finite and > 0.
    pub lr: f64,
    /// Seed of the batch order.
    pub seed: u64,
}

impl Default for HeadConfig {
    fn default() -> Self {
        HeadConfig::new()
    }
}

impl HeadConfig {
    /// 2000 steps of 128 rows, lr 1e-3, seed 0.
    pub fn new() -> Self {
        HeadConfig {
            steps: 2000,
            batch: 128,
            lr: 1e-3,
            seed: 0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(format!("class head fit: {m}")));
        if self.steps == 0 {
            return bad("steps must be at least 1".into());
        }
        if self.batch == 0 {
            return bad("batch must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr = {} must be finite and > 0", self.lr));
        }
        Ok(())
    }
}

/// Figures of a finished fit.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadReport {
    /// Labelled images the head learnt from.
    pub images: usize,
    /// Cross-entropy of the last step's batch.
    pub last_loss: f32,
    /// Share of the labelled images the fitted head gets right (eval mode).
    pub train_accuracy: f64,
}

/// Fit the class head of `model`'s discriminator on the images of `data` whose entry in
/// `labels` (one per image: a class, or -1 for unlabelled) is known; see the module docs.
/// `labels` is separate from `data.labels` so that a run whose data set now holds
/// pre-trained labels can fit on its true ones. On an error the model is unchanged.
///
/// Errors (`InvalidArgument`, `Shape`): a model without D or without the class head, a bad
/// config, images that do not fit the model, a label count or value that does not fit,
/// no labelled image; a non-finite loss or gradient; device errors.
pub fn fit_class_head(
    ctx: &Context,
    model: &mut Model,
    data: &Dataset,
    labels: &[i32],
    cfg: &HeadConfig,
    progress: &mut dyn FnMut(usize, f32),
) -> Result<HeadReport> {
    cfg.validate()?;
    let mc = &model.cfg;
    let bad = |m: String| Err(Error::InvalidArgument(format!("class head fit: {m}")));
    let Some(d) = &model.d else {
        return bad("the model has no discriminator (a sampling-only file)".into());
    };
    if !mc.class_head {
        return bad("the discriminator has no class head (config class_head = false)".into());
    }
    let (r, c, k) = (mc.resolution, mc.channels, mc.num_classes);
    if (data.resolution, data.channels) != (r, c) || data.images.len() != data.len() * r * r * c {
        return bad(format!(
            "{} values of {}x{}x{} images; the model takes {r}x{r}x{c}",
            data.images.len(),
            data.resolution,
            data.resolution,
            data.channels
        ));
    }
    if labels.len() != data.len() {
        return bad(format!("{} labels for {} images", labels.len(), data.len()));
    }
    if let Some(i) = labels.iter().position(|&y| y < -1 || y >= k as i32) {
        return bad(format!(
            "label {} of image {i} is not -1 or in 0..{k}",
            labels[i]
        ));
    }
    let labelled: Vec<usize> = (0..data.len()).filter(|&i| labels[i] >= 0).collect();
    if labelled.is_empty() {
        return bad("no image is labelled".into());
    }

    // D's features of the labelled images, once.
    let disc = Discriminator { cfg: mc };
    let chunk = model.d_max_batch(ctx).min(256);
    let mut feats: Vec<f32> = Vec::new();
    for part in labelled.chunks(chunk) {
        let (xs, _) = data.batch(part);
        let x = Tensor::from_f32(ctx, &[part.len(), r, r, c], &xs)?;
        let y = Tensor::from_i32(ctx, &[part.len()], &vec![0; part.len()])?;
        let f = ctx.run(|rec| Ok(disc.forward(rec, d, &x, &y, Mode::EVAL)?.0.features))?;
        feats.extend(f.to_f32(ctx)?);
    }
    let width = feats.len() / labelled.len();
    let truth: Vec<i32> = labelled.iter().map(|&i| labels[i]).collect();

    // The head's tensors (copies) and their Adam state.
    let prefix = format!("{CLASS_HEAD}.");
    let mut head = Weights::default();
    let mut adam = BTreeMap::new();
    for (name, e) in spec::discriminator(mc)
        .into_iter()
        .filter(|(n, _)| n.starts_with(&prefix))
    {
        let t = d.get(&name)?;
        let copy = Tensor::empty(ctx, t.shape(), DType::F32)?;
        ctx.run(|rec| rec.copy(t, &copy))?;
        head.map.insert(name.clone(), copy);
        if e.kind.trained() {
            let slot = AdamSlot {
                m: Tensor::zeros(ctx, &e.shape)?,
                v: Tensor::zeros(ctx, &e.shape)?,
                step: 0,
            };
            adam.insert(name, slot);
        }
    }
    let adam_cfg = AdamConfig {
        lr: cfg.lr,
        ..AdamConfig::default()
    };

    let mut order = Order::new(cfg.seed, labelled.len())?;
    let mut last_loss = f32::NAN;
    for step in 1..=cfg.steps {
        let rows = order.next_batch(cfg.batch);
        let mut xb = Vec::with_capacity(rows.len() * width);
        for &j in &rows {
            xb.extend_from_slice(&feats[j * width..(j + 1) * width]);
        }
        let yb: Vec<i32> = rows.iter().map(|&j| truth[j]).collect();
        let x = Tensor::from_f32(ctx, &[rows.len(), width], &xb)?;
        let y = Tensor::from_i32(ctx, &[rows.len()], &yb)?;
        let flag = StepFlag::new(ctx)?;
        let (out, stepped) = ctx.run(|rec| {
            let snaps = snapshot_u(rec, &[&head])?;
            let (logits, lctx) =
                layers::linear(rec, &head, CLASS_HEAD, &x, true, mc.sn, Mode::TRAIN)?;
            let ce = loss::cross_entropy(rec, &logits, &y, 1.0)?;
            let mut grads = Grads::default();
            lctx.backward(rec, &mut grads, &ce.dlogits)?;
            check_all(rec, &flag, &ce.loss, &grads)?;
            let stepped = adam_all(rec, &adam, &head, &grads, adam_cfg, &flag)?;
            restore_u(rec, &snaps, &flag)?;
            Ok((stack(rec, &[&ce.loss, &flag.flag])?, stepped))
        })?;
        let out = out.to_f32(ctx)?;
        if out[1] != 0.0 {
            return bad(format!(
                "step {step}: the loss or a gradient is not finite (loss {}); try a smaller lr",
                out[0]
            ));
        }
        bump(&mut adam, &stepped);
        last_loss = out[0];
        progress(step, last_loss);
    }

    // Accuracy of the fitted head on every labelled image (eval mode).
    let mut right = 0usize;
    for (part, ys) in feats.chunks(chunk * width).zip(truth.chunks(chunk)) {
        let x = Tensor::from_f32(ctx, &[ys.len(), width], part)?;
        let pred = ctx.run(|rec| {
            let (logits, _) = layers::linear(rec, &head, CLASS_HEAD, &x, true, mc.sn, Mode::EVAL)?;
            loss::argmax(rec, &logits)
        })?;
        let pred = pred.to_i32(ctx)?;
        right += pred.iter().zip(ys).filter(|(p, y)| p == y).count();
    }

    let d = model.d.as_mut().expect("checked above");
    d.map.extend(head.map);
    Ok(HeadReport {
        images: labelled.len(),
        last_loss,
        train_accuracy: right as f64 / labelled.len() as f64,
    })
}
