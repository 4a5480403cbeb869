//! The layers the networks are built from, each a forward that returns what its backward
//! needs and a backward that adds every parameter gradient to [`Grads`] and returns the
//! input gradient. Weights live in [`Weights`] by their model-file names.

use super::config::Config;
use crate::error::{Error, Result};
use crate::kernel::Recorder;
use crate::ops::batchnorm::{self as bn, Affine};
use crate::ops::conv::Load;
use crate::ops::spectral_norm::{self as sn, SpectralNormSaved};
use crate::ops::{conv, elementwise as ew, gemm, resample, softmax};
use crate::tensor::Tensor;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// How a forward pass treats batch norm and spectral norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    /// Batch statistics (training) rather than standing statistics (sampling).
    pub batch_stats: bool,
    /// One power iteration that updates each spectral-norm u (training).
    pub update_u: bool,
}

impl Mode {
    /// Training: batch statistics, u updated.
    pub const TRAIN: Mode = Mode {
        batch_stats: true,
        update_u: true,
    };
    /// Accumulating standing statistics: batch statistics, u left alone.
    pub const STANDING: Mode = Mode {
        batch_stats: true,
        update_u: false,
    };
    /// Sampling: standing statistics, u left alone.
    pub const EVAL: Mode = Mode {
        batch_stats: false,
        update_u: false,
    };
}

/// Device tensors of a network (parameters and state) by model-file name.
#[derive(Clone, Default)]
pub struct Weights {
    pub map: BTreeMap<String, Tensor>,
    /// Spectrally normalised weights of eval-mode forward passes, kept between passes (see
    /// [`SnCache`]); `None`: computed every pass. Models loaded or initialised have one.
    pub sn_cache: Option<Arc<SnCache>>,
}

/// Eval-mode spectral norm reads W and u and leaves u alone, so while neither changes its
/// result does not either: a sampling model computes it once instead of at every call (a
/// dispatch per layer). An entry holds the weight and u it was computed from (so their buffers
/// are not reused) and their write counts; any write recorded into either since then makes
/// the entry stale and it is computed again.
#[derive(Default)]
pub struct SnCache {
    entries: Mutex<HashMap<String, SnEntry>>,
}

struct SnEntry {
    w: Tensor,
    u: Tensor,
    w_writes: u64,
    u_writes: u64,
    out: sn::SpectralNormOutput,
}

impl SnCache {
    /// Layers with a cached result.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, layer: &str, w: &Tensor, u: &Tensor) -> Option<sn::SpectralNormOutput> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let e = entries.get(layer)?;
        let fresh = e.w.same_buffer(w)
            && e.u.same_buffer(u)
            && e.w_writes == w.write_count()
            && e.u_writes == u.write_count();

        fresh.then(|| e.out.clone())
    }

    /// Store `out`, computed from `w` and `u` in work `rec` records, once that work is
    /// submitted (the write counts are taken now, so writes recorded later make it stale).
    fn put(
        self: &Arc<Self>,
        rec: &mut Recorder,
        layer: &str,
        w: &Tensor,
        u: &Tensor,
        out: &sn::SpectralNormOutput,
    ) {
        let entry = SnEntry {
            w: w.clone(),
            u: u.clone(),
            w_writes: w.write_count(),
            u_writes: u.write_count(),
            out: out.clone(),
        };
        let (cache, layer) = (self.clone(), layer.to_string());
        rec.on_submit(move || {
            cache
                .entries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(layer, entry);
        });
    }
}

impl Weights {
    /// Weights with an eval-mode spectral-norm cache.
    pub fn cached(map: BTreeMap<String, Tensor>) -> Weights {
        Weights {
            map,
            sn_cache: Some(Arc::new(SnCache::default())),
        }
    }
}

impl Weights {
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.map
            .get(name)
            .ok_or_else(|| Error::Format(format!("the model has no tensor {name}")))
    }
}

/// Parameter gradients by name.
#[derive(Default)]
pub struct Grads {
    pub map: BTreeMap<String, Tensor>,
    /// Compute only input gradients, no parameter gradients (G's step backpropagates through
    /// D without updating it).
    pub input_only: bool,
}

impl Grads {
    /// Gradients that flow to the inputs only.
    pub fn input_only() -> Grads {
        Grads {
            map: BTreeMap::new(),
            input_only: true,
        }
    }

    /// Add `g` to the gradient of `name` (a parameter may be used more than once).
    pub fn add(&mut self, rec: &mut Recorder, name: String, g: Tensor) -> Result<()> {
        let g = match self.map.remove(&name) {
            Some(old) => ew::axpy(rec, 1.0, &g, &old)?,
            None => g,
        };
        self.map.insert(name, g);
        Ok(())
    }
}

/// A weight as the layer uses it: spectrally normalised when `sn` is on.
pub struct LayerWeight {
    pub layer: String,
    pub w: Tensor,
    sn: Option<SpectralNormSaved>,
}

impl LayerWeight {
    pub fn new(
        rec: &mut Recorder,
        ws: &Weights,
        layer: &str,
        sn_on: bool,
        mode: Mode,
    ) -> Result<Self> {
        let raw = ws.get(&format!("{layer}.weight"))?;
        if sn_on {
            let u = ws.get(&format!("{layer}.u"))?;
            let cache = ws.sn_cache.as_ref().filter(|_| !mode.update_u);
            let out = match cache.and_then(|c| c.get(layer, raw, u)) {
                Some(out) => out,
                None => {
                    let out = sn::spectral_norm(rec, raw, u, mode.update_u)?;
                    if let Some(c) = cache {
                        c.put(rec, layer, raw, u, &out);
                    }
                    out
                }
            };
            Ok(LayerWeight {
                layer: layer.to_string(),
                w: out.w_sn,
                sn: Some(out.saved),
            })
        } else {
            Ok(LayerWeight {
                layer: layer.to_string(),
                w: raw.clone(),
                sn: None,
            })
        }
    }

    /// Turn the gradient of the used weight into that of the stored weight.
    pub fn backward(&self, rec: &mut Recorder, grads: &mut Grads, dw_used: Tensor) -> Result<()> {
        let dw = match &self.sn {
            Some(s) => sn::spectral_norm_backward(rec, s, &dw_used)?,
            None => dw_used,
        };
        grads.add(rec, format!("{}.weight", self.layer), dw)
    }
}

/// A linear or convolution layer's saved state.
pub struct DenseCtx {
    weight: LayerWeight,
    x: Tensor,
    bias: bool,
    conv: bool,
    /// The transform a conv applied to x as it loaded it.
    load: Load,
}

/// `x w^T + b` for `[N, in]` inputs.
pub fn linear(
    rec: &mut Recorder,
    ws: &Weights,
    layer: &str,
    x: &Tensor,
    bias: bool,
    sn_on: bool,
    mode: Mode,
) -> Result<(Tensor, DenseCtx)> {
    let (weight, b) = dense_weights(rec, ws, layer, bias, sn_on, mode)?;
    let y = gemm::linear(rec, x, &weight.w, b.as_ref())?;
    Ok((
        y,
        DenseCtx {
            weight,
            x: x.clone(),
            bias,
            conv: false,
            load: Load::NONE,
        },
    ))
}

/// A stride-1 'same' convolution on NHWC inputs.
pub fn conv2d(
    rec: &mut Recorder,
    ws: &Weights,
    layer: &str,
    x: &Tensor,
    bias: bool,
    sn_on: bool,
    mode: Mode,
) -> Result<(Tensor, DenseCtx)> {
    conv2d_load(rec, ws, layer, x, Load::NONE, bias, sn_on, mode)
}

/// [`conv2d`] on `load(x)` (ReLU and/or 2x upsampling), applied as the kernels read x: the
/// transformed input is never stored, and the backward pass returns the gradient of x.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_load(
    rec: &mut Recorder,
    ws: &Weights,
    layer: &str,
    x: &Tensor,
    load: Load,
    bias: bool,
    sn_on: bool,
    mode: Mode,
) -> Result<(Tensor, DenseCtx)> {
    let (weight, b) = dense_weights(rec, ws, layer, bias, sn_on, mode)?;
    let y = conv::conv2d_load(rec, x, &weight.w, b.as_ref(), load)?;
    Ok((
        y,
        DenseCtx {
            weight,
            x: x.clone(),
            bias,
            conv: true,
            load,
        },
    ))
}

/// The weight as used (spectrally normalised when on) and the bias, if the layer has one.
fn dense_weights(
    rec: &mut Recorder,
    ws: &Weights,
    layer: &str,
    bias: bool,
    sn_on: bool,
    mode: Mode,
) -> Result<(LayerWeight, Option<Tensor>)> {
    let weight = LayerWeight::new(rec, ws, layer, sn_on, mode)?;
    let b = match bias {
        true => Some(ws.get(&format!("{layer}.bias"))?.clone()),
        false => None,
    };
    Ok((weight, b))
}

impl DenseCtx {
    /// Gradients of weight (and bias) into `grads`; returns the input gradient.
    pub fn backward(&self, rec: &mut Recorder, grads: &mut Grads, dy: &Tensor) -> Result<Tensor> {
        if grads.input_only {
            return if self.conv {
                conv::conv2d_load_backward_input(rec, &self.x, &self.weight.w, dy, self.load)
            } else {
                gemm::matmul(rec, dy, &self.weight.w, false, false, None)
            };
        }
        let (dx, dw, db) = if self.conv {
            let g =
                conv::conv2d_load_backward(rec, &self.x, &self.weight.w, dy, self.bias, self.load)?;
            (g.dx, g.dw, g.db)
        } else {
            let g = gemm::linear_backward(rec, &self.x, &self.weight.w, dy, self.bias)?;
            (g.dx, g.dw, g.db)
        };
        self.weight.backward(rec, grads, dw)?;
        if let Some(db) = db {
            grads.add(rec, format!("{}.bias", self.weight.layer), db)?;
        }
        Ok(dx)
    }
}

/// Batch statistics a batch-norm layer saw, for standing statistics.
pub struct BnStats {
    pub name: String,
    pub mean: Tensor,
    pub var: Tensor,
}

enum BnState {
    Train(bn::BatchNormSaved),
    Eval,
}

/// Conditional batch norm: `x_hat * (1 + c W_gain^T) + c W_bias^T`.
pub struct CbnCtx {
    gain_ctx: DenseCtx,
    bias_ctx: DenseCtx,
    gain: Tensor,
    bias: Tensor,
    state: BnState,
    pub stats: Option<BnStats>,
}

/// Class-conditional batch norm (gain and bias from linear maps of `c`), followed by ReLU
/// in the same pass when `relu` is set (the caller then runs ReLU's backward, with the
/// output as its mask, before [`CbnCtx::backward`]).
#[allow(clippy::too_many_arguments)]
pub fn cbn(
    rec: &mut Recorder,
    ws: &Weights,
    name: &str,
    x: &Tensor,
    c: &Tensor,
    cfg: &Config,
    mode: Mode,
    relu: bool,
) -> Result<(Tensor, CbnCtx)> {
    let (sn_on, eps) = (cfg.sn, cfg.bn_eps);
    let (gain, gain_ctx) = linear(rec, ws, &format!("{name}.gain"), c, false, sn_on, mode)?;
    let (bias, bias_ctx) = linear(rec, ws, &format!("{name}.bias"), c, false, sn_on, mode)?;
    let affine = Affine::Conditional {
        gain: &gain,
        bias: &bias,
    };
    let (out, state, stats) = normalise(rec, ws, name, x, affine, eps, mode, relu)?;
    Ok((
        out,
        CbnCtx {
            gain_ctx,
            bias_ctx,
            gain,
            bias,
            state,
            stats,
        },
    ))
}

/// Batch norm with batch statistics (recorded for standing statistics) or, in eval mode, with
/// the stored `{name}.mean` and `{name}.var`; then ReLU if `relu`.
#[allow(clippy::too_many_arguments)]
fn normalise(
    rec: &mut Recorder,
    ws: &Weights,
    name: &str,
    x: &Tensor,
    affine: Affine,
    eps: f32,
    mode: Mode,
    relu: bool,
) -> Result<(Tensor, BnState, Option<BnStats>)> {
    if mode.batch_stats {
        let (out, saved) = if relu {
            bn::batch_norm_relu_train(rec, x, affine, eps)?
        } else {
            bn::batch_norm_train(rec, x, affine, eps)?
        };
        let stats = BnStats {
            name: name.to_string(),
            mean: saved.mean.clone(),
            var: saved.var.clone(),
        };
        return Ok((out, BnState::Train(saved), Some(stats)));
    }
    let mean = ws.get(&format!("{name}.mean"))?;
    let var = ws.get(&format!("{name}.var"))?;
    let out = if relu {
        bn::batch_norm_relu_eval(rec, x, mean, var, affine, eps)?
    } else {
        bn::batch_norm_eval(rec, x, mean, var, affine, eps)?
    };
    Ok((out, BnState::Eval, None))
}

fn no_eval_backward() -> Error {
    Error::InvalidArgument("a backward pass needs a forward pass with batch statistics".into())
}

impl CbnCtx {
    /// Returns (dx, dc).
    pub fn backward(
        &self,
        rec: &mut Recorder,
        grads: &mut Grads,
        dy: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let BnState::Train(saved) = &self.state else {
            return Err(no_eval_backward());
        };
        let affine = Affine::Conditional {
            gain: &self.gain,
            bias: &self.bias,
        };
        let g = bn::batch_norm_train_backward(rec, saved, affine, dy)?;
        let dc1 = self.gain_ctx.backward(rec, grads, &g.dscale)?;
        let dc2 = self.bias_ctx.backward(rec, grads, &g.dbias)?;
        Ok((g.dx, ew::add(rec, &dc1, &dc2)?))
    }
}

/// Batch norm with a learnt per-channel affine (G's output layer).
pub struct BnCtx {
    name: String,
    state: BnState,
    pub stats: Option<BnStats>,
}

/// Batch norm with a per-channel affine, then ReLU when `relu` is set (as [`cbn`]).
pub fn bn_affine(
    rec: &mut Recorder,
    ws: &Weights,
    name: &str,
    x: &Tensor,
    eps: f32,
    mode: Mode,
    relu: bool,
) -> Result<(Tensor, BnCtx)> {
    let weight = ws.get(&format!("{name}.weight"))?;
    let bias = ws.get(&format!("{name}.bias"))?;
    let affine = Affine::Channel { weight, bias };
    let (out, state, stats) = normalise(rec, ws, name, x, affine, eps, mode, relu)?;
    Ok((
        out,
        BnCtx {
            name: name.to_string(),
            state,
            stats,
        },
    ))
}

impl BnCtx {
    pub fn backward(
        &self,
        rec: &mut Recorder,
        ws: &Weights,
        grads: &mut Grads,
        dy: &Tensor,
    ) -> Result<Tensor> {
        let BnState::Train(saved) = &self.state else {
            return Err(no_eval_backward());
        };
        let weight = ws.get(&format!("{}.weight", self.name))?;
        let bias = ws.get(&format!("{}.bias", self.name))?;
        let g = bn::batch_norm_train_backward(rec, saved, Affine::Channel { weight, bias }, dy)?;
        grads.add(rec, format!("{}.weight", self.name), g.dscale)?;
        grads.add(rec, format!("{}.bias", self.name), g.dbias)?;
        Ok(g.dx)
    }
}

/// Self-attention (SAGAN/BigGAN): `x + gamma * o(softmax(theta phi^T) g)`.
pub struct AttnCtx {
    name: String,
    theta: DenseCtx,
    phi: DenseCtx,
    g: DenseCtx,
    o: DenseCtx,
    phi_full: Tensor,
    g_full: Tensor,
    th3: Tensor,
    ph3: Tensor,
    g3: Tensor,
    attn: Tensor,
    out_o: Tensor,
    gamma: Tensor,
    shape: Vec<usize>,
}

pub fn attention(
    rec: &mut Recorder,
    ws: &Weights,
    name: &str,
    x: &Tensor,
    sn_on: bool,
    mode: Mode,
) -> Result<(Tensor, AttnCtx)> {
    let s = x.shape().to_vec();
    if s.len() != 4 || !s[1].is_multiple_of(2) || !s[2].is_multiple_of(2) {
        return Err(Error::Shape(format!(
            "attention {name}: input {s:?} needs even H and W"
        )));
    }
    let (n, h, w) = (s[0], s[1], s[2]);
    let (c8, c2) = super::spec::attention_widths(s[3]);
    let (hw, keys) = (h * w, h * w / 4);
    let (theta_t, theta) = conv2d(rec, ws, &format!("{name}.theta"), x, false, sn_on, mode)?;
    let (phi_full, phi) = conv2d(rec, ws, &format!("{name}.phi"), x, false, sn_on, mode)?;
    let (g_full, g) = conv2d(rec, ws, &format!("{name}.g"), x, false, sn_on, mode)?;
    let phi_p = resample::maxpool2x2(rec, &phi_full)?;
    let g_p = resample::maxpool2x2(rec, &g_full)?;
    let th3 = theta_t.reshape(&[n, hw, c8])?;
    let ph3 = phi_p.reshape(&[n, keys, c8])?;
    let g3 = g_p.reshape(&[n, keys, c2])?;
    let scores = gemm::bmm(rec, &th3, &ph3, false, true)?;
    let attn = softmax::softmax(rec, &scores.reshape(&[n * hw, keys])?)?;
    let ag = gemm::bmm(rec, &attn.reshape(&[n, hw, keys])?, &g3, false, false)?;
    let (out_o, o) = conv2d(
        rec,
        ws,
        &format!("{name}.o"),
        &ag.reshape(&[n, h, w, c2])?,
        false,
        sn_on,
        mode,
    )?;
    let gamma = ws.get(&format!("{name}.gamma"))?.clone();
    let out = ew::axpy_dev(rec, &gamma, &out_o, x)?;
    Ok((
        out,
        AttnCtx {
            name: name.to_string(),
            theta,
            phi,
            g,
            o,
            phi_full,
            g_full,
            th3,
            ph3,
            g3,
            attn,
            out_o,
            gamma,
            shape: s,
        },
    ))
}

impl AttnCtx {
    pub fn backward(&self, rec: &mut Recorder, grads: &mut Grads, dy: &Tensor) -> Result<Tensor> {
        let (n, h, w) = (self.shape[0], self.shape[1], self.shape[2]);
        let (c8, c2) = super::spec::attention_widths(self.shape[3]);
        let (hw, keys) = (h * w, h * w / 4);
        if !grads.input_only {
            let dgamma = ew::dot(rec, &self.out_o, dy)?;
            grads.add(rec, format!("{}.gamma", self.name), dgamma)?;
        }
        let d_o = ew::scale_dev(rec, &self.gamma, dy)?;
        let d_ag = self.o.backward(rec, grads, &d_o)?;
        let attn3 = self.attn.reshape(&[n, hw, keys])?;
        let (d_attn, d_g3) = gemm::bmm_backward(
            rec,
            &attn3,
            &self.g3,
            false,
            false,
            &d_ag.reshape(&[n, hw, c2])?,
        )?;
        let d_scores =
            softmax::softmax_backward(rec, &self.attn, &d_attn.reshape(&[n * hw, keys])?)?;
        let (d_th3, d_ph3) = gemm::bmm_backward(
            rec,
            &self.th3,
            &self.ph3,
            false,
            true,
            &d_scores.reshape(&[n, hw, keys])?,
        )?;
        let d_gfull = resample::maxpool2x2_backward(
            rec,
            &self.g_full,
            &d_g3.reshape(&[n, h / 2, w / 2, c2])?,
        )?;
        let d_phifull = resample::maxpool2x2_backward(
            rec,
            &self.phi_full,
            &d_ph3.reshape(&[n, h / 2, w / 2, c8])?,
        )?;
        let dx_g = self.g.backward(rec, grads, &d_gfull)?;
        let dx_phi = self.phi.backward(rec, grads, &d_phifull)?;
        let dx_theta = self
            .theta
            .backward(rec, grads, &d_th3.reshape(&[n, h, w, c8])?)?;
        let dx = ew::add(rec, dy, &dx_g)?;
        let dx = ew::add(rec, &dx, &dx_phi)?;
        ew::add(rec, &dx, &dx_theta)
    }
}
