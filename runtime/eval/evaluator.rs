//! The Fashion-MNIST evaluator network: a small CNN trained once, with PyTorch, on all 60,000
//! Fashion-MNIST training labels (`tests/reference/train_evaluator.py`; `docs/EVALUATOR.md`
//! has the recipe and its test accuracy). Its weights are embedded in the library.
//!
//! Input: `[N, 32, 32, 1]` images in [-1, 1], prepared as [`crate::data::fashion_mnist`]
//! prepares them (28x28 centred in 32x32, padding -1). Every conv is 3x3, stride 1, zero
//! padding 1, with bias (batch norm was folded into the convs when the weights were exported):
//!
//! ```text
//! conv1  1 -> 16   ReLU  maxpool 2x2     32x32 -> 16x16
//! conv2 16 -> 32   ReLU                  16x16
//! conv3 32 -> 32   ReLU  maxpool 2x2     16x16 -> 8x8
//! conv4 32 -> 64   ReLU                  8x8
//! conv5 64 -> 128  ReLU                  8x8
//! mean over the 64 pixels  -> feature [128]   (FID)
//! fc 128 -> 10             -> logits [10], softmax -> probabilities (IS, consistency)
//! ```

use crate::device::Context;
use crate::error::{Error, Result};
use crate::model::file::TensorFile;
use crate::ops::{conv, elementwise, gemm, resample, softmax};
use crate::tensor::Tensor;
use crate::Recorder;

/// The embedded weights (safetensors, written by `tests/reference/train_evaluator.py`).
pub const WEIGHTS: &[u8] = include_bytes!("evaluator.safetensors");

/// Input resolution (height and width) and channels.
pub const RESOLUTION: usize = 32;
pub const CHANNELS: usize = 1;
/// Number of classes (Fashion-MNIST's ten).
pub const CLASSES: usize = 10;
/// Length of the feature vector (FID statistics).
pub const FEATURES: usize = 128;
/// (input, output) channels of the five convs.
const CONVS: [(usize, usize); 5] = [(1, 16), (16, 32), (32, 32), (32, 64), (64, 128)];
/// A 2x2 max pool follows these convs (0-based).
const POOL_AFTER: [usize; 2] = [0, 2];
/// Images per device pass, below the binding limit (conv1's output, the widest activation,
/// is 64 KiB per image, so 512 images take 32 MiB).
const MAX_BATCH: usize = 512;

/// The evaluator's weights on the device.
pub struct Evaluator {
    /// Weight `[out, in, 3, 3]` and bias `[out]` of each conv.
    convs: Vec<(Tensor, Tensor)>,
    fc_w: Tensor,
    fc_b: Tensor,
    /// The `evaluator` metadata of the weights file (JSON: architecture, recipe, accuracy).
    pub info: String,
    /// Whether these are the embedded weights (whose test statistics may be cached).
    embedded: bool,
}

/// What one forward pass gives, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs {
    /// `[n, FEATURES]`: the mean of conv5's ReLU output over the pixels.
    pub features: Vec<f32>,
    /// `[n, CLASSES]`.
    pub logits: Vec<f32>,
    /// `[n, CLASSES]`: softmax of the logits.
    pub probs: Vec<f32>,
}

impl Evaluator {
    /// The evaluator with the embedded weights.
    pub fn new(ctx: &Context) -> Result<Evaluator> {
        let mut ev = Self::from_bytes(ctx, WEIGHTS)?;
        ev.embedded = true;
        Ok(ev)
    }

    /// Whether these are the embedded weights.
    pub fn is_embedded(&self) -> bool {
        self.embedded
    }

    /// An evaluator from a weights file's bytes (the same names and shapes as the embedded
    /// one); refuses a file with a missing, misshapen or non-finite tensor, naming it.
    pub fn from_bytes(ctx: &Context, bytes: &[u8]) -> Result<Evaluator> {
        let file = TensorFile::from_bytes(bytes)
            .map_err(|e| Error::Format(format!("evaluator weights: {e}")))?;
        let get = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let t = file
                .tensors
                .get(name)
                .ok_or_else(|| Error::Format(format!("evaluator weights: no tensor {name}")))?;
            if t.shape != shape {
                return Err(Error::Format(format!(
                    "evaluator weights: tensor {name} has shape {:?}, expected {shape:?}",
                    t.shape
                )));
            }
            if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
                return Err(Error::Format(format!(
                    "evaluator weights: tensor {name} holds a non-finite value at {i}"
                )));
            }
            Tensor::from_f32(ctx, shape, &t.data)
        };
        let mut convs = Vec::with_capacity(CONVS.len());
        for (i, &(cin, cout)) in CONVS.iter().enumerate() {
            convs.push((
                get(&format!("conv{}.weight", i + 1), &[cout, cin, 3, 3])?,
                get(&format!("conv{}.bias", i + 1), &[cout])?,
            ));
        }
        Ok(Evaluator {
            convs,
            fc_w: get("fc.weight", &[CLASSES, FEATURES])?,
            fc_b: get("fc.bias", &[CLASSES])?,
            info: file.metadata.get("evaluator").cloned().unwrap_or_default(),
            embedded: false,
        })
    }

    /// Record the network on `x [N, 32, 32, 1]`: (features `[N, 128]`, logits `[N, 10]`,
    /// probabilities `[N, 10]`).
    pub fn forward(&self, rec: &mut Recorder, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let s = x.shape();
        if s.len() != 4 || s[1] != RESOLUTION || s[2] != RESOLUTION || s[3] != CHANNELS {
            return Err(Error::Shape(format!(
                "evaluator: input {x:?} is not [N, {RESOLUTION}, {RESOLUTION}, {CHANNELS}]"
            )));
        }
        let mut h = x.clone();
        for (i, (w, b)) in self.convs.iter().enumerate() {
            h = conv::conv2d(rec, &h, w, Some(b))?;
            h = elementwise::relu(rec, &h)?;
            if POOL_AFTER.contains(&i) {
                h = resample::maxpool2x2(rec, &h)?;
            }
        }
        let pixels = (h.shape()[1] * h.shape()[2]) as f32;
        let sum = resample::sum_hw(rec, &h)?;
        let feat = elementwise::scale(rec, &sum, 1.0 / pixels)?;
        let logits = gemm::linear(rec, &feat, &self.fc_w, Some(&self.fc_b))?;
        let probs = softmax::softmax(rec, &logits)?;
        Ok((feat, logits, probs))
    }

    /// Features, logits and probabilities of `n` images (NHWC `[n, 32, 32, 1]` in [-1, 1]),
    /// run in passes of at most 512 images.
    pub fn outputs(&self, ctx: &Context, images: &[f32], n: usize) -> Result<Outputs> {
        let per = RESOLUTION * RESOLUTION * CHANNELS;
        if n == 0 || images.len() != n * per {
            return Err(Error::InvalidArgument(format!(
                "evaluator: {} values for {n} images of {RESOLUTION}x{RESOLUTION}x{CHANNELS} \
                 (need {} and n > 0)",
                images.len(),
                n * per
            )));
        }
        if let Some(i) = images.iter().position(|v| !(-1.0..=1.0).contains(v)) {
            return Err(Error::InvalidArgument(format!(
                "evaluator: value {} of image {} is not in [-1, 1]",
                images[i],
                i / per
            )));
        }
        let mut out = Outputs {
            features: Vec::with_capacity(n * FEATURES),
            logits: Vec::with_capacity(n * CLASSES),
            probs: Vec::with_capacity(n * CLASSES),
        };
        for chunk in images.chunks(MAX_BATCH * per) {
            let m = chunk.len() / per;
            let x = Tensor::from_f32(ctx, &[m, RESOLUTION, RESOLUTION, CHANNELS], chunk)?;
            let (f, l, p) = ctx.run(|rec| self.forward(rec, &x))?;
            out.features.extend(f.to_f32(ctx)?);
            out.logits.extend(l.to_f32(ctx)?);
            out.probs.extend(p.to_f32(ctx)?);
        }
        Ok(out)
    }

    /// Features `[n, 128]` and class probabilities `[n, 10]` of `n` images (NHWC
    /// `[n, 32, 32, 1]` in [-1, 1]).
    pub fn features_and_probs(
        &self,
        ctx: &Context,
        images: &[f32],
        n: usize,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let o = self.outputs(ctx, images, n)?;
        Ok((o.features, o.probs))
    }
}

/// The most probable class of each row of `probs` `[n, classes]` (the first on ties).
pub fn predictions(probs: &[f32], classes: usize) -> Vec<i32> {
    probs
        .chunks(classes.max(1))
        .map(|row| {
            let mut best = 0;
            for (j, &p) in row.iter().enumerate() {
                if p > row[best] {
                    best = j;
                }
            }
            best as i32
        })
        .collect()
}
