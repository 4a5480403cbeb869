//! The BigGAN discriminator with S3GAN heads: DBlocks with average pooling, optional
//! self-attention, ReLU and sum pooling, then a linear logit plus the class projection, a
//! rotation head (4 ways) and a class head (num_classes ways).

use super::config::Config;
use super::layers::{self, AttnCtx, DenseCtx, Grads, LayerWeight, Mode, Weights};
use super::spec;
use crate::error::{Error, Result};
use crate::kernel::Recorder;
use crate::ops::conv::Load;
use crate::ops::{elementwise as ew, embedding, gemm, loss, resample};
use crate::tensor::{DType, Tensor};

struct BlockCtx {
    conv1: DenseCtx,
    conv2: DenseCtx,
    conv_sc: Option<DenseCtx>,
    down: bool,
    attn: Option<AttnCtx>,
}

/// D's outputs.
pub struct DOut {
    /// `[N]`: linear(h) + <V[y], h>.
    pub logit: Tensor,
    /// `[N, 4]` when the rotation head is on.
    pub rotation: Option<Tensor>,
    /// `[N, num_classes]` when the class head is on.
    pub class: Option<Tensor>,
    /// `[N, C]`: the pooled features every head reads (sum over H, W of ReLU(h)).
    pub features: Tensor,
    /// i32 `[N]`: the projection labels (the input labels, with unlabelled rows filled in by
    /// [`Discriminator::forward_fill`]).
    pub y_used: Tensor,
}

/// What a discriminator forward pass saved.
pub struct DiscCtx {
    y: Tensor,
    blocks: Vec<BlockCtx>,
    h_last: Tensor,
    feat3: Tensor,
    emb3: Tensor,
    embed: LayerWeight,
    linear: DenseCtx,
    rotation: Option<DenseCtx>,
    class: Option<DenseCtx>,
    batch: usize,
}

/// Gradients flowing into D's outputs (None: that output gets no gradient).
pub struct DGrads<'a> {
    pub logit: &'a Tensor,
    pub rotation: Option<&'a Tensor>,
    pub class: Option<&'a Tensor>,
}

pub struct Discriminator<'a> {
    pub cfg: &'a Config,
}

impl Discriminator<'_> {
    /// Logits for images x `[N, R, R, channels]` (NHWC) with projection labels y i32 `[N]`.
    pub fn forward(
        &self,
        rec: &mut Recorder,
        ws: &Weights,
        x: &Tensor,
        y: &Tensor,
        mode: Mode,
    ) -> Result<(DOut, DiscCtx)> {
        self.forward_impl(rec, ws, x, y, mode, false)
    }

    /// Like [`Discriminator::forward`], but a row whose label is -1 (unlabelled) is projected
    /// with the argmax of its own class-head logits from this same pass (S3GAN; no gradient
    /// flows through the choice). The labels used are [`DOut::y_used`]. Needs the class head.
    pub fn forward_fill(
        &self,
        rec: &mut Recorder,
        ws: &Weights,
        x: &Tensor,
        y: &Tensor,
        mode: Mode,
    ) -> Result<(DOut, DiscCtx)> {
        if !self.cfg.class_head {
            return Err(Error::InvalidArgument(
                "discriminator: filling unlabelled rows needs the class head".into(),
            ));
        }
        self.forward_impl(rec, ws, x, y, mode, true)
    }

    fn forward_impl(
        &self,
        rec: &mut Recorder,
        ws: &Weights,
        x: &Tensor,
        y: &Tensor,
        mode: Mode,
        fill: bool,
    ) -> Result<(DOut, DiscCtx)> {
        let cfg = self.cfg;
        let n = y.numel();
        let r = cfg.resolution;
        if y.dtype() != DType::I32 || y.shape().len() != 1 || n == 0 {
            return Err(Error::Shape(format!(
                "discriminator: labels {y:?} must be i32 [N], N > 0"
            )));
        }
        if x.dtype() != DType::F32 || x.shape() != [n, r, r, cfg.channels] {
            return Err(Error::Shape(format!(
                "discriminator: images {x:?} must be f32 [{n}, {r}, {r}, {}]",
                cfg.channels
            )));
        }
        let sn = cfg.sn;
        let mut h = x.clone();
        let mut blocks = Vec::new();
        for i in 0..cfg.d_blocks() {
            let p = format!("D.blocks.{i}");
            let down = i + 1 < cfg.d_blocks();
            let first = i == 0;
            // The ReLUs before the convs (not on the first block's input) run as the convs
            // load their inputs.
            let relu = |on: bool| Load {
                relu: on,
                upsample: false,
            };
            let (a, conv1) = layers::conv2d_load(
                rec,
                ws,
                &format!("{p}.conv1"),
                &h,
                relu(!first),
                true,
                sn,
                mode,
            )?;
            let (b, conv2) = layers::conv2d_load(
                rec,
                ws,
                &format!("{p}.conv2"),
                &a,
                relu(true),
                true,
                sn,
                mode,
            )?;
            let main = if down {
                resample::avgpool2x2(rec, &b)?
            } else {
                b
            };
            let (sc, conv_sc) = if spec::d_has_shortcut(cfg, i) {
                if first {
                    let pooled = resample::avgpool2x2(rec, &h)?;
                    let (s, c) =
                        layers::conv2d(rec, ws, &format!("{p}.conv_sc"), &pooled, true, sn, mode)?;
                    (s, Some(c))
                } else {
                    // The reference pools after the 1x1 conv; pooling first gives the same
                    // values (both are linear, the bias passes through the mean) for a
                    // quarter of the work.
                    let src = if down {
                        resample::avgpool2x2(rec, &h)?
                    } else {
                        h.clone()
                    };
                    let (s, c) =
                        layers::conv2d(rec, ws, &format!("{p}.conv_sc"), &src, true, sn, mode)?;
                    (s, Some(c))
                }
            } else {
                (h.clone(), None)
            };
            let mut out = ew::add(rec, &main, &sc)?;
            let attn = if cfg.d_attn.contains(&spec::d_block_resolution(cfg, i)) {
                let (o, ctx) = layers::attention(rec, ws, &format!("{p}.attn"), &out, sn, mode)?;
                out = o;
                Some(ctx)
            } else {
                None
            };
            blocks.push(BlockCtx {
                conv1,
                conv2,
                conv_sc,
                down,
                attn,
            });
            h = out;
        }
        let hr = ew::relu(rec, &h)?;
        let feat = resample::sum_hw(rec, &hr)?;
        let c = feat.shape()[1];
        // The heads come first: the projection may need the class head's argmax.
        let (rotation, rot_ctx) = if cfg.rotation_head {
            let (t, c) = layers::linear(rec, ws, "D.rotation", &feat, true, sn, mode)?;
            (Some(t), Some(c))
        } else {
            (None, None)
        };
        let (class, cls_ctx) = if cfg.class_head {
            let (t, c) = layers::linear(rec, ws, "D.classifier", &feat, true, sn, mode)?;
            (Some(t), Some(c))
        } else {
            (None, None)
        };
        let y_used = match (&class, fill) {
            (Some(cls), true) => loss::fill_unlabelled(rec, cls, y)?,
            _ => y.clone(),
        };
        let (lin, linear) = layers::linear(rec, ws, "D.linear", &feat, true, sn, mode)?;
        let embed = LayerWeight::new(rec, ws, "D.embed", sn, mode)?;
        let emb = embedding::embedding(rec, &embed.w, &y_used)?;
        let feat3 = feat.reshape(&[n, 1, c])?;
        let emb3 = emb.reshape(&[n, c, 1])?;
        let proj = gemm::bmm(rec, &feat3, &emb3, false, false)?;
        let logit = ew::add(rec, &lin.reshape(&[n])?, &proj.reshape(&[n])?)?;
        Ok((
            DOut {
                logit,
                rotation,
                class,
                y_used: y_used.clone(),
                features: feat.clone(),
            },
            DiscCtx {
                y: y_used,
                blocks,
                h_last: h,
                feat3,
                emb3,
                embed,
                linear,
                rotation: rot_ctx,
                class: cls_ctx,
                batch: n,
            },
        ))
    }

    /// Gradients of every D parameter; returns the gradient of the input images.
    pub fn backward(
        &self,
        rec: &mut Recorder,
        ctx: &DiscCtx,
        dout: DGrads,
        grads: &mut Grads,
    ) -> Result<Tensor> {
        let cfg = self.cfg;
        let n = ctx.batch;
        if dout.logit.numel() != n {
            return Err(Error::Shape(format!(
                "discriminator backward: dlogit {:?} must have {n} values",
                dout.logit
            )));
        }
        let c = ctx.feat3.shape()[2];
        let dlogit = dout.logit.reshape(&[n, 1])?;
        let mut dfeat = ctx.linear.backward(rec, grads, &dlogit)?;
        let (dfeat3, demb3) = gemm::bmm_backward(
            rec,
            &ctx.feat3,
            &ctx.emb3,
            false,
            false,
            &dout.logit.reshape(&[n, 1, 1])?,
        )?;
        dfeat = ew::add(rec, &dfeat, &dfeat3.reshape(&[n, c])?)?;
        if !grads.input_only {
            let demb = demb3.reshape(&[n, c])?;
            let dtable = embedding::embedding_backward(rec, &ctx.y, &demb, cfg.num_classes)?;
            ctx.embed.backward(rec, grads, dtable)?;
        }
        if let (Some(head), Some(d)) = (&ctx.rotation, dout.rotation) {
            let g = head.backward(rec, grads, d)?;
            dfeat = ew::add(rec, &dfeat, &g)?;
        }
        if let (Some(head), Some(d)) = (&ctx.class, dout.class) {
            let g = head.backward(rec, grads, d)?;
            dfeat = ew::add(rec, &dfeat, &g)?;
        }
        let s = ctx.h_last.shape();
        let dhr = resample::sum_hw_backward(rec, &dfeat, s[1], s[2])?;
        let mut d = ew::relu_backward(rec, &ctx.h_last, &dhr)?;
        for (i, b) in ctx.blocks.iter().enumerate().rev() {
            if let Some(a) = &b.attn {
                d = a.backward(rec, grads, &d)?;
            }
            let first = i == 0;
            let dm = if b.down {
                resample::avgpool2x2_backward(rec, &d)?
            } else {
                d.clone()
            };
            // Each conv's backward includes the ReLU it applied on load.
            let dm = b.conv2.backward(rec, grads, &dm)?;
            let dx1 = b.conv1.backward(rec, grads, &dm)?;
            let dx2 = match &b.conv_sc {
                Some(sc) if first => {
                    let ds = sc.backward(rec, grads, &d)?;
                    resample::avgpool2x2_backward(rec, &ds)?
                }
                Some(sc) => {
                    let ds = sc.backward(rec, grads, &d)?;
                    if b.down {
                        resample::avgpool2x2_backward(rec, &ds)?
                    } else {
                        ds
                    }
                }
                None => d.clone(),
            };
            d = ew::add(rec, &dx1, &dx2)?;
        }
        Ok(d)
    }
}
