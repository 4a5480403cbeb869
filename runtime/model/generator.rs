//! The BigGAN generator: hierarchical z, shared class embedding, GBlocks with conditional
//! batch norm, optional self-attention, and a BN-ReLU-conv-tanh output. Images are NHWC in
//! [-1, 1].

use super::config::Config;
use super::layers::{self, AttnCtx, BnCtx, BnStats, CbnCtx, DenseCtx, Grads, Mode, Weights};
use crate::device::Context;
use crate::error::{Error, Result};
use crate::kernel::Recorder;
use crate::ops::conv::Load;
use crate::ops::{elementwise as ew, embedding, rearrange, resample};
use crate::tensor::{DType, Tensor};
use std::collections::BTreeMap;

struct BlockCtx {
    bn1: CbnCtx,
    /// ReLU(bn1) (ReLU's backward masks where it is > 0, i.e. where bn1's output is).
    act1: Tensor,
    conv1: DenseCtx,
    bn2: CbnCtx,
    /// ReLU(bn2).
    act2: Tensor,
    conv2: DenseCtx,
    conv_sc: DenseCtx,
    attn: Option<AttnCtx>,
}

/// What a generator forward pass saved for its backward pass.
pub struct GenCtx {
    /// Labels, when the embedding came from them (a mixed embedding has no backward pass).
    y: Option<Tensor>,
    lin: DenseCtx,
    blocks: Vec<BlockCtx>,
    out_bn: BnCtx,
    /// ReLU(out_bn).
    act_out: Tensor,
    out_conv: DenseCtx,
    image: Tensor,
    batch: usize,
}

impl GenCtx {
    /// Batch statistics of every batch-norm layer (for standing statistics).
    pub fn bn_stats(&self) -> Vec<&BnStats> {
        let mut v = Vec::new();
        for b in &self.blocks {
            v.extend(b.bn1.stats.as_ref());
            v.extend(b.bn2.stats.as_ref());
        }
        v.extend(self.out_bn.stats.as_ref());
        v
    }
}

/// Two label tensors (i32 `[N]`) and the weight of the second (f32 `[N]`).
#[derive(Clone, Copy)]
pub struct Mix<'a> {
    pub a: &'a Tensor,
    pub b: &'a Tensor,
    pub t: &'a Tensor,
}

/// A generator: its configuration and the name prefix of its tensors (`G` or `G_ema`).
pub struct Generator<'a> {
    pub cfg: &'a Config,
    pub prefix: &'a str,
}

impl Generator<'_> {
    fn n(&self, s: &str) -> String {
        format!("{}.{s}", self.prefix)
    }

    /// Check the inputs of a forward pass.
    fn check(&self, z: &Tensor, y: &Tensor) -> Result<usize> {
        let n = y.numel();
        if y.dtype() != DType::I32 || y.shape().len() != 1 {
            return Err(Error::Shape(format!(
                "generator: labels {y:?} must be i32 [N]"
            )));
        }
        if z.dtype() != DType::F32 || z.shape() != [n, self.cfg.z_dim] {
            return Err(Error::Shape(format!(
                "generator: z {z:?} must be f32 [{n}, {}]",
                self.cfg.z_dim
            )));
        }
        if n == 0 {
            return Err(Error::InvalidArgument("generator: empty batch".into()));
        }
        Ok(n)
    }

    /// Images `[N, R, R, channels]` in [-1, 1] from z `[N, z_dim]` and labels i32 `[N]`.
    pub fn forward(
        &self,
        rec: &mut Recorder,
        ws: &Weights,
        z: &Tensor,
        y: &Tensor,
        mode: Mode,
    ) -> Result<(Tensor, GenCtx)> {
        self.check(z, y)?;
        let e = embedding::embedding(rec, ws.get(&self.n("shared.weight"))?, y)?;
        self.forward_embedded(rec, ws, z, &e, Some(y), mode)
    }

    /// Class interpolation: images whose class embedding is `(1 - t) E[a] + t E[b]` per row
    /// (t f32 `[N]`, usually in [0, 1]). Forward only.
    pub fn forward_mix(
        &self,
        rec: &mut Recorder,
        ws: &Weights,
        z: &Tensor,
        mix: Mix,
        mode: Mode,
    ) -> Result<Tensor> {
        let Mix { a, b, t } = mix;
        let n = self.check(z, a)?;
        self.check(z, b)?;
        if t.dtype() != DType::F32 || t.shape() != [n] {
            return Err(Error::Shape(format!(
                "generator: mix weights {t:?} must be f32 [{n}]"
            )));
        }
        let e = embedding::embedding_mix(rec, ws.get(&self.n("shared.weight"))?, a, b, t)?;
        Ok(self.forward_embedded(rec, ws, z, &e, None, mode)?.0)
    }

    fn forward_embedded(
        &self,
        rec: &mut Recorder,
        ws: &Weights,
        z: &Tensor,
        e: &Tensor,
        y: Option<&Tensor>,
        mode: Mode,
    ) -> Result<(Tensor, GenCtx)> {
        let cfg = self.cfg;
        let n = z.shape()[0];
        let sn = cfg.sn;
        let nb = cfg.g_blocks();
        let (z0, conds) = if cfg.hier {
            let chunks = rearrange::split_channels(rec, z, &vec![cfg.z_chunk(); nb + 1])?;
            let mut conds = Vec::with_capacity(nb);
            for c in &chunks[1..] {
                conds.push(rearrange::concat_channels(rec, &[c, e])?);
            }
            (chunks[0].clone(), conds)
        } else {
            (z.clone(), vec![e.clone(); nb])
        };
        let ch = cfg.g_channels();
        let (h, lin) = layers::linear(rec, ws, &self.n("linear"), &z0, true, sn, mode)?;
        let mut h = h.reshape(&[n, 4, 4, ch[0]])?;
        let mut blocks = Vec::with_capacity(nb);
        for (i, c) in conds.iter().enumerate() {
            let p = self.n(&format!("blocks.{i}"));
            // Batch norm and the ReLU after it run as one pass.
            let (r, bn1) = layers::cbn(rec, ws, &format!("{p}.bn1"), &h, c, cfg, mode, true)?;
            // conv1 reads r upsampled 2x as it loads it (the upsampled tensor is never stored).
            let up = Load {
                relu: false,
                upsample: true,
            };
            let (b, conv1) =
                layers::conv2d_load(rec, ws, &format!("{p}.conv1"), &r, up, true, sn, mode)?;
            let (r2, bn2) = layers::cbn(rec, ws, &format!("{p}.bn2"), &b, c, cfg, mode, true)?;
            let (main, conv2) =
                layers::conv2d(rec, ws, &format!("{p}.conv2"), &r2, true, sn, mode)?;
            // A 1x1 conv commutes with nearest upsampling: convolving before upsampling gives
            // the same values (each pixel's dot product is unchanged) for a quarter of the work.
            let (sc_small, conv_sc) =
                layers::conv2d(rec, ws, &format!("{p}.conv_sc"), &h, true, sn, mode)?;
            let sc = resample::upsample2x(rec, &sc_small)?;
            let mut out = ew::add(rec, &main, &sc)?;
            let attn = if cfg.g_attn.contains(&(4 << (i + 1))) {
                let (o, ctx) = layers::attention(rec, ws, &format!("{p}.attn"), &out, sn, mode)?;
                out = o;
                Some(ctx)
            } else {
                None
            };
            blocks.push(BlockCtx {
                bn1,
                act1: r,
                conv1,
                bn2,
                act2: r2.clone(),
                conv2,
                conv_sc,
                attn,
            });
            h = out;
        }
        let (r, out_bn) =
            layers::bn_affine(rec, ws, &self.n("out_bn"), &h, cfg.bn_eps, mode, true)?;
        let (o, out_conv) = layers::conv2d(rec, ws, &self.n("out_conv"), &r, true, sn, mode)?;
        let image = ew::tanh(rec, &o)?;
        Ok((
            image.clone(),
            GenCtx {
                y: y.cloned(),
                lin,
                blocks,
                out_bn,
                act_out: r.clone(),
                out_conv,
                image,
                batch: n,
            },
        ))
    }

    /// Gradients of every generator parameter from the image gradient `dimage` (NHWC).
    pub fn backward(
        &self,
        rec: &mut Recorder,
        ws: &Weights,
        ctx: &GenCtx,
        dimage: &Tensor,
        grads: &mut Grads,
    ) -> Result<()> {
        let cfg = self.cfg;
        if dimage.shape() != ctx.image.shape() {
            return Err(Error::Shape(format!(
                "generator backward: dimage {dimage:?} must match the image {:?}",
                ctx.image
            )));
        }
        let d = ew::tanh_backward(rec, &ctx.image, dimage)?;
        let d = ctx.out_conv.backward(rec, grads, &d)?;
        let d = ew::relu_backward(rec, &ctx.act_out, &d)?;
        let mut d = ctx.out_bn.backward(rec, ws, grads, &d)?;
        let mut de: Option<Tensor> = None;
        for b in ctx.blocks.iter().rev() {
            if let Some(a) = &b.attn {
                d = a.backward(rec, grads, &d)?;
            }
            let dm = b.conv2.backward(rec, grads, &d)?;
            let dm = ew::relu_backward(rec, &b.act2, &dm)?;
            let (dm, dc2) = b.bn2.backward(rec, grads, &dm)?;
            let dm = b.conv1.backward(rec, grads, &dm)?;
            let dm = ew::relu_backward(rec, &b.act1, &dm)?;
            let (dx1, dc1) = b.bn1.backward(rec, grads, &dm)?;
            let d_small = resample::upsample2x_backward(rec, &d)?;
            let dx2 = b.conv_sc.backward(rec, grads, &d_small)?;
            d = ew::add(rec, &dx1, &dx2)?;
            let dc = ew::add(rec, &dc1, &dc2)?;
            let de_i = if cfg.hier {
                rearrange::split_channels(rec, &dc, &[cfg.z_chunk(), cfg.shared_dim])?[1].clone()
            } else {
                dc
            };
            de = Some(match de {
                Some(acc) => ew::add(rec, &acc, &de_i)?,
                None => de_i,
            });
        }
        let d = d.reshape(&[ctx.batch, 16 * cfg.g_channels()[0]])?;
        ctx.lin.backward(rec, grads, &d)?;
        if let Some(de) = de {
            let y = ctx.y.as_ref().ok_or_else(|| {
                Error::InvalidArgument("a mixed-embedding forward pass has no backward pass".into())
            })?;
            let dtable = embedding::embedding_backward(rec, y, &de, cfg.num_classes)?;
            grads.add(rec, self.n("shared.weight"), dtable)?;
        }
        Ok(())
    }

    /// Accumulate standing batch-norm statistics: run G with batch statistics (u left alone)
    /// on each (z, y) batch, average the per-batch means and biased variances, and store them
    /// as the `.mean`/`.var` tensors of `ws`.
    pub fn standing_stats(
        &self,
        ctx: &Context,
        ws: &mut Weights,
        batches: &[(Tensor, Tensor)],
    ) -> Result<()> {
        if batches.is_empty() {
            return Err(Error::InvalidArgument(
                "standing statistics need at least one batch".into(),
            ));
        }
        let mut sums: BTreeMap<String, (Tensor, Tensor)> = BTreeMap::new();
        for (z, y) in batches {
            ctx.run(|rec| {
                let (_, gctx) = self.forward(rec, ws, z, y, Mode::STANDING)?;
                for s in gctx.bn_stats() {
                    let next = match sums.remove(&s.name) {
                        Some((m, v)) => (ew::add(rec, &m, &s.mean)?, ew::add(rec, &v, &s.var)?),
                        None => (s.mean.clone(), s.var.clone()),
                    };
                    sums.insert(s.name.clone(), next);
                }
                Ok(())
            })?;
        }
        let k = 1.0 / batches.len() as f32;
        ctx.run(|rec| {
            for (name, (m, v)) in &sums {
                ws.map.insert(format!("{name}.mean"), ew::scale(rec, m, k)?);
                ws.map.insert(format!("{name}.var"), ew::scale(rec, v, k)?);
            }
            Ok(())
        })
    }
}
