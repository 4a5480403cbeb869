//! Classifying images with the discriminator's S3GAN class head.
//!
//! Images go in as D sees them: NHWC (`[N, R, R, channels]`, channels innermost) with values
//! in [-1, 1], the range of G's output and of [`crate::data::Dataset`]. D runs in eval mode
//! (spectral-norm u left alone), in as many passes as the device's binding limit needs. The
//! projection label fed to D is 0 for every row: the class head sits before the projection,
//! so the label does not change the class logits.

use super::{Discriminator, Mode, Model};
use crate::device::Context;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

impl Model {
    /// Largest batch one D pass can hold within the device's binding limit (the widest
    /// activation of D, or an attention score matrix, must fit one binding).
    pub fn d_max_batch(&self, ctx: &Context) -> usize {
        let c = &self.cfg;
        let widest = c
            .d_channels()
            .into_iter()
            .max()
            .unwrap_or(1)
            .max(c.channels);
        let mut per = c.resolution * c.resolution * widest;
        for &r in &c.d_attn {
            per = per.max(r * r * r * r / 4);
        }
        let per = (per.max(1) * 4) as u64;
        (ctx.max_binding_bytes() / per).clamp(1, 1024) as usize
    }

    /// The class head's logits `[n, num_classes]` for `n` NHWC images in [-1, 1].
    ///
    /// Errors: a model without D or without the class head, a wrong number of values, a value
    /// that is not finite or outside [-1, 1] (`InvalidArgument`/`Shape`), and non-finite
    /// logits from the device (`Device`).
    pub fn class_logits(&self, ctx: &Context, x_nhwc: &[f32], n: usize) -> Result<Vec<f32>> {
        let cfg = &self.cfg;
        let Some(dw) = &self.d else {
            return Err(Error::InvalidArgument(
                "classify: the model has no discriminator (a sampling-only file)".into(),
            ));
        };
        if !cfg.class_head {
            return Err(Error::InvalidArgument(
                "classify: the model's discriminator has no class head (config class_head = false)"
                    .into(),
            ));
        }
        let (r, ch, k) = (cfg.resolution, cfg.channels, cfg.num_classes);
        let per = r * r * ch;
        if x_nhwc.len() != n * per {
            return Err(Error::Shape(format!(
                "classify: {} values for {n} images of {r}x{r}x{ch} (need {})",
                x_nhwc.len(),
                n * per
            )));
        }
        if let Some(i) = x_nhwc.iter().position(|v| !(-1.0..=1.0).contains(v)) {
            return Err(Error::InvalidArgument(format!(
                "classify: value {} of image {} is not in [-1, 1]",
                x_nhwc[i],
                i / per
            )));
        }
        let d = Discriminator { cfg };
        let batch = self.d_max_batch(ctx);
        let mut out = Vec::with_capacity(n * k);
        let mut start = 0;
        while start < n {
            let m = batch.min(n - start);
            let xt =
                Tensor::from_f32(ctx, &[m, r, r, ch], &x_nhwc[start * per..(start + m) * per])?;
            let yt = Tensor::from_i32(ctx, &[m], &vec![0; m])?;
            let logits = ctx.run(|rec| {
                let (o, _) = d.forward(rec, dw, &xt, &yt, Mode::EVAL)?;
                o.class.ok_or_else(|| {
                    Error::Shape("classify: the discriminator returned no class logits".into())
                })
            })?;
            let logits = logits.to_f32(ctx)?;
            if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
                return Err(Error::Device(format!(
                    "classify: the device produced a non-finite class logit ({}) for image {}",
                    logits[i],
                    start + i / k
                )));
            }
            out.extend_from_slice(&logits);
            start += m;
        }
        Ok(out)
    }

    /// The class head's label (argmax, the first on ties) and class probabilities (softmax,
    /// `[n, num_classes]`) for `n` NHWC images in [-1, 1]; see [`Model::class_logits`].
    pub fn classify(
        &self,
        ctx: &Context,
        x_nhwc: &[f32],
        n: usize,
    ) -> Result<(Vec<i32>, Vec<f32>)> {
        let k = self.cfg.num_classes;
        let logits = self.class_logits(ctx, x_nhwc, n)?;
        let mut labels = Vec::with_capacity(n);
        let mut probs = Vec::with_capacity(n * k);
        for row in logits.chunks_exact(k) {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            labels.push(best as i32);
            let e: Vec<f64> = row
                .iter()
                .map(|&v| ((v - row[best]) as f64).exp())
                .collect();
            let s: f64 = e.iter().sum();
            probs.extend(e.iter().map(|v| (v / s) as f32));
        }
        Ok((labels, probs))
    }
}
