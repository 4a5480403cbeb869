//! A whole model: configuration, generator (and its EMA copy), optional discriminator, on the
//! device; loaded from and saved to one safetensors file; sampled from.

use super::config::Config;
use super::file::{HostTensor, TensorFile};
use super::generator::{Generator, Mix};
use super::layers::{Mode, Weights};
use super::spec::{self, Kind, Spec};
use crate::device::Context;
use crate::error::{Error, Result};
use crate::rng::{self, Stream};
use crate::tensor::{DType, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

/// The model file embedded in the library (see [`Model::load_default`]).
pub const DEFAULT_MODEL: &[u8] = include_bytes!("default.safetensors");

/// Metadata key holding the configuration JSON.
pub const CONFIG_KEY: &str = "config";

/// Which generator weights to sample from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The trained generator `G`.
    Generator,
    /// The exponential moving average `G_ema` (what BigGAN samples from), when present.
    Ema,
}

/// A model on the device.
pub struct Model {
    pub cfg: Config,
    /// Generator tensors (`G.*`).
    pub g: Weights,
    /// Discriminator tensors (`D.*`), absent in a sampling-only file.
    pub d: Option<Weights>,
    /// EMA generator tensors, stored under `G_ema.*` and held here under `G.*` names.
    pub g_ema: Option<Weights>,
    /// Extra metadata carried through load and save (e.g. a training record).
    pub metadata: BTreeMap<String, String>,
}

/// Check one network's tensors in `file` against its spec (host only).
fn check_part(spec: &Spec, file: &TensorFile, prefix_in_file: &str, prefix: &str) -> Result<()> {
    for (name, entry) in spec {
        let file_name = format!("{prefix_in_file}{}", &name[prefix.len()..]);
        let t = file.tensors.get(&file_name).ok_or_else(|| {
            Error::Format(format!(
                "the model file has no tensor {file_name} (its config needs it)"
            ))
        })?;
        if t.shape != entry.shape {
            return Err(Error::Format(format!(
                "tensor {file_name} has shape {:?}, the config needs {:?}",
                t.shape, entry.shape
            )));
        }
        if let Some(bad) = t.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::Format(format!(
                "tensor {file_name} holds a non-finite value at {bad}"
            )));
        }
    }
    Ok(())
}

/// Upload one network's tensors, checked by [`check_part`].
fn upload(
    ctx: &Context,
    spec: &Spec,
    file: &TensorFile,
    prefix_in_file: &str,
    prefix: &str,
) -> Result<Weights> {
    let mut w = Weights::cached(Default::default());
    for name in spec.keys() {
        let file_name = format!("{prefix_in_file}{}", &name[prefix.len()..]);
        let t = file
            .tensors
            .get(&file_name)
            .ok_or_else(|| Error::Format(format!("the model file has no tensor {file_name}")))?;
        w.map
            .insert(name.clone(), Tensor::from_f32(ctx, &t.shape, &t.data)?);
    }
    Ok(w)
}

/// Which networks a checked model file holds.
pub(crate) struct FileParts {
    pub cfg: Config,
    pub d: bool,
    pub g_ema: bool,
}

fn download(ctx: &Context, w: &Weights, prefix: &str, out: &mut TensorFile) -> Result<()> {
    for (name, t) in &w.map {
        let file_name = format!("{prefix}{}", &name[name.find('.').unwrap_or(0)..]);
        out.tensors
            .insert(file_name, HostTensor::new(t.shape(), t.to_f32(ctx)?)?);
    }
    Ok(())
}

impl Model {
    /// A model with freshly initialised weights: normal weights scaled by 1/sqrt(fan in), zero
    /// biases, attention gamma 0, unit-norm random u, standing mean 0 and variance 1. The EMA
    /// generator starts as a copy of G. Deterministic for a seed.
    pub fn init(ctx: &Context, cfg: &Config, seed: u64) -> Result<Model> {
        cfg.validate()?;
        let mut counter = 0u64;
        let mut make = |spec: &Spec| -> Result<Weights> {
            let mut w = Weights::cached(Default::default());
            for (name, e) in spec {
                let n: usize = e.shape.iter().product();
                let fan_in: usize = e.shape.iter().skip(1).product::<usize>().max(1);
                let base = counter;
                counter += n as u64;
                let normal = |i: usize| rng::normal(seed, Stream::Init, base + i as u64, 0) as f32;
                let data: Vec<f32> = match e.kind {
                    Kind::Weight if name.ends_with("out_bn.weight") => vec![1.0; n],
                    Kind::Weight => {
                        let s = 1.0 / (fan_in as f32).sqrt();
                        (0..n).map(|i| normal(i) * s).collect()
                    }
                    Kind::Bias | Kind::Gain => vec![0.0; n],
                    Kind::U => {
                        let v: Vec<f32> = (0..n).map(normal).collect();
                        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                        v.iter().map(|x| x / norm).collect()
                    }
                    Kind::Stat if name.ends_with(".var") => vec![1.0; n],
                    Kind::Stat => vec![0.0; n],
                };
                w.map
                    .insert(name.clone(), Tensor::from_f32(ctx, &e.shape, &data)?);
            }
            Ok(w)
        };
        let g = make(&spec::generator(cfg, "G"))?;
        let d = make(&spec::discriminator(cfg))?;
        let g_ema = copy_weights(ctx, &g)?;
        Ok(Model {
            cfg: cfg.clone(),
            g,
            d: Some(d),
            g_ema: Some(g_ema),
            metadata: BTreeMap::new(),
        })
    }

    /// Check parsed file contents as [`Model::from_file`] does, on the host only (no device):
    /// the config, every tensor's presence, shape and finiteness, no unknown tensor. Returns
    /// the config.
    pub fn check_file(file: &TensorFile) -> Result<Config> {
        Ok(Model::check_parts(file)?.cfg)
    }

    pub(crate) fn check_parts(file: &TensorFile) -> Result<FileParts> {
        let json = file.metadata.get(CONFIG_KEY).ok_or_else(|| {
            Error::Format("the file has no model config (metadata key \"config\")".into())
        })?;
        let cfg = Config::from_json(json)?;
        let g_spec = spec::generator(&cfg, "G");
        let d_spec = spec::discriminator(&cfg);
        let has = |p: &str| file.tensors.keys().any(|k| k.starts_with(p));
        let (d, g_ema) = (has("D."), has("G_ema."));
        check_part(&g_spec, file, "G", "G")?;
        if d {
            check_part(&d_spec, file, "D", "D")?;
        }
        if g_ema {
            check_part(&g_spec, file, "G_ema", "G")?;
        }
        let mut known: std::collections::BTreeSet<String> = g_spec.keys().cloned().collect();
        if d {
            known.extend(d_spec.keys().cloned());
        }
        if g_ema {
            known.extend(g_spec.keys().map(|k| format!("G_ema{}", &k[1..])));
        }
        // A training checkpoint is a model file plus optimiser state (`adam.*` tensors,
        // `train.*` metadata); as a model, that state is ignored.
        let trainer_state = |k: &String| k.starts_with("adam.");
        if let Some(extra) = file
            .tensors
            .keys()
            .find(|k| !known.contains(*k) && !trainer_state(k))
        {
            return Err(Error::Format(format!(
                "the model file has a tensor {extra} that its config does not name"
            )));
        }
        Ok(FileParts { cfg, d, g_ema })
    }

    /// Load a model from parsed file contents, checking every tensor against the config.
    pub fn from_file(ctx: &Context, file: &TensorFile) -> Result<Model> {
        let parts = Model::check_parts(file)?;
        ctx.prepare_at_load()?;
        Model::from_checked_file(ctx, file, parts)
    }

    /// Upload a file that [`Model::check_parts`] accepted.
    pub(crate) fn from_checked_file(
        ctx: &Context,
        file: &TensorFile,
        parts: FileParts,
    ) -> Result<Model> {
        let cfg = parts.cfg;
        let g_spec = spec::generator(&cfg, "G");
        let g = upload(ctx, &g_spec, file, "G", "G")?;
        let d = match parts.d {
            true => Some(upload(ctx, &spec::discriminator(&cfg), file, "D", "D")?),
            false => None,
        };
        let g_ema = match parts.g_ema {
            true => Some(upload(ctx, &g_spec, file, "G_ema", "G")?),
            false => None,
        };
        let mut metadata = file.metadata.clone();
        metadata.retain(|k, _| !k.starts_with("train."));
        metadata.remove(CONFIG_KEY);
        Ok(Model {
            cfg,
            g,
            d,
            g_ema,
            metadata,
        })
    }

    /// Load a model file.
    pub fn load(ctx: &Context, path: &Path) -> Result<Model> {
        let file = TensorFile::load(path)?;
        Self::from_file(ctx, &file).map_err(|e| match e {
            Error::Format(m) => Error::Format(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// The embedded default model (docs/MODEL_CARD.md): `fashion_small`, trained by this
    /// library on Fashion-MNIST with 10% of the labels; G, D (with its heads) and G_ema with
    /// standing statistics. Its bytes are [`DEFAULT_MODEL`]; saving it writes them back.
    pub fn load_default(ctx: &Context) -> Result<Model> {
        let file = TensorFile::from_bytes(DEFAULT_MODEL)?;
        Self::from_file(ctx, &file)
    }

    /// Everything as file contents (downloads from the device).
    pub fn to_file(&self, ctx: &Context) -> Result<TensorFile> {
        let mut f = TensorFile {
            metadata: self.metadata.clone(),
            ..Default::default()
        };
        f.metadata.insert(CONFIG_KEY.into(), self.cfg.to_json());
        download(ctx, &self.g, "G", &mut f)?;
        if let Some(d) = &self.d {
            download(ctx, d, "D", &mut f)?;
        }
        if let Some(e) = &self.g_ema {
            download(ctx, e, "G_ema", &mut f)?;
        }
        Ok(f)
    }

    /// Save atomically; reading the file back gives the same tensors bit for bit.
    pub fn save(&self, ctx: &Context, path: &Path) -> Result<()> {
        self.to_file(ctx)?.save(path)
    }

    /// The generator weights used for sampling.
    pub fn sampling_weights(&self, which: Which) -> &Weights {
        match (which, &self.g_ema) {
            (Which::Ema, Some(e)) => e,
            _ => &self.g,
        }
    }

    /// Check class ids and z values from a caller.
    pub fn check_inputs(&self, classes: &[i32], z: &[f32]) -> Result<()> {
        let k = self.cfg.num_classes as i32;
        if let Some(c) = classes.iter().find(|&&c| c < 0 || c >= k) {
            return Err(Error::InvalidArgument(format!(
                "class id {c} is outside [0, {k})"
            )));
        }
        if z.len() != classes.len() * self.cfg.z_dim {
            return Err(Error::InvalidArgument(format!(
                "{} classes need {} z values ({} each), got {}",
                classes.len(),
                classes.len() * self.cfg.z_dim,
                self.cfg.z_dim,
                z.len()
            )));
        }
        if let Some(i) = z.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "z[{i}] = {} is not finite",
                z[i]
            )));
        }
        Ok(())
    }

    /// Largest batch one pass can hold within the device's binding limit.
    pub fn max_batch(&self, ctx: &Context) -> usize {
        let c = &self.cfg;
        // The widest activation of G: channels at each resolution, and attention scores.
        let mut per = 0usize;
        let ch = c.g_channels();
        for i in 0..c.g_blocks() {
            let r = 4usize << (i + 1);
            per = per.max(r * r * ch[i].max(ch[i + 1]));
            if c.g_attn.contains(&r) {
                per = per.max(r * r * r * r / 4);
            }
        }
        let per = per.max(1) * 4;
        ((ctx.max_binding_bytes() as usize) / per).clamp(1, 4096)
    }

    /// Sample images: one per class id, z `[n * z_dim]`; returns `n * channels * H * W` floats
    /// in [0, 1], each image channel-major (CHW). Uses standing statistics (eval mode).
    pub fn sample(
        &self,
        ctx: &Context,
        which: Which,
        classes: &[i32],
        z: &[f32],
    ) -> Result<Vec<f32>> {
        self.check_inputs(classes, z)?;
        let ws = self.sampling_weights(which);
        let gen = self.generator();
        let zd = self.cfg.z_dim;
        let per = self.max_batch(ctx);
        let mut out = Vec::with_capacity(classes.len() * self.image_len());
        for (cs, zs) in classes.chunks(per).zip(z.chunks(per * zd)) {
            let n = cs.len();
            let zt = Tensor::from_f32(ctx, &[n, zd], zs)?;
            let yt = Tensor::from_i32(ctx, &[n], cs)?;
            let img = ctx.run(|rec| {
                rec.set_forward_only(true);
                Ok(gen.forward(rec, ws, &zt, &yt, Mode::EVAL)?.0)
            })?;
            self.append_chw01(&img.to_f32(ctx)?, &mut out);
        }
        Ok(out)
    }

    /// Compile what sampling `n` images in one call needs, before the first such call (as
    /// `Trainer::prepare_step` does for training): a G pass with placeholder inputs, recorded
    /// and not submitted. Only where kernels compile at their first dispatch (CPU adapters,
    /// see `warm.rs`); elsewhere the pipelines were created at load and it does nothing.
    pub fn prepare_sample(&self, ctx: &Context, n: usize) -> Result<()> {
        if !ctx.warm_on || n == 0 {
            return Ok(());
        }
        let n = n.min(self.max_batch(ctx));
        let gen = self.generator();
        let z = Tensor::zeros(ctx, &[n, self.cfg.z_dim])?;
        let y = Tensor::from_i32(ctx, &[n], &vec![0; n])?;
        let mut rec = ctx.recorder();
        rec.set_forward_only(true);
        gen.forward(
            &mut rec,
            self.sampling_weights(Which::Ema),
            &z,
            &y,
            Mode::EVAL,
        )?;
        rec.compile_ahead();
        Ok(())
    }

    /// The generator network of this model's configuration (its weights named `G.*`).
    fn generator(&self) -> Generator<'_> {
        Generator {
            cfg: &self.cfg,
            prefix: "G",
        }
    }

    /// Floats per image: channels * height * width.
    pub fn image_len(&self) -> usize {
        self.cfg.channels * self.cfg.resolution * self.cfg.resolution
    }

    /// NHWC images in [-1, 1] to CHW images in [0, 1], appended to `out`.
    fn append_chw01(&self, nhwc: &[f32], out: &mut Vec<f32>) {
        let (r, ch) = (self.cfg.resolution, self.cfg.channels);
        for im in nhwc.chunks(r * r * ch) {
            for c in 0..ch {
                out.extend((0..r * r).map(|p| ((im[p * ch + c] + 1.0) * 0.5).clamp(0.0, 1.0)));
            }
        }
    }

    /// Class interpolation: image i has the class embedding `(1 - t[i]) E[a[i]] + t[i] E[b[i]]`.
    /// Same output layout as [`Model::sample`].
    pub fn sample_mix(
        &self,
        ctx: &Context,
        which: Which,
        a: &[i32],
        b: &[i32],
        t: &[f32],
        z: &[f32],
    ) -> Result<Vec<f32>> {
        self.check_inputs(a, z)?;
        self.check_inputs(b, z)?;
        if t.len() != a.len() || t.iter().any(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "{} images need {} finite mix weights, got {}",
                a.len(),
                a.len(),
                t.len()
            )));
        }
        let ws = self.sampling_weights(which);
        let gen = self.generator();
        let zd = self.cfg.z_dim;
        let per = self.max_batch(ctx);
        let mut out = Vec::with_capacity(a.len() * self.image_len());
        for (i, zs) in z.chunks(per * zd).enumerate() {
            let n = zs.len() / zd;
            let rows = i * per..i * per + n;
            let zt = Tensor::from_f32(ctx, &[n, zd], zs)?;
            let at = Tensor::from_i32(ctx, &[n], &a[rows.clone()])?;
            let bt = Tensor::from_i32(ctx, &[n], &b[rows.clone()])?;
            let tt = Tensor::from_f32(ctx, &[n], &t[rows])?;
            let img = ctx.run(|rec| {
                rec.set_forward_only(true);
                gen.forward_mix(
                    rec,
                    ws,
                    &zt,
                    Mix {
                        a: &at,
                        b: &bt,
                        t: &tt,
                    },
                    Mode::EVAL,
                )
            })?;
            self.append_chw01(&img.to_f32(ctx)?, &mut out);
        }
        Ok(out)
    }

    /// Accumulate standing batch-norm statistics of G (and of the EMA generator) over
    /// `batches` batches of `batch` standard-normal z and uniformly drawn classes from `seed`,
    /// so that sampling one image at a time matches the batch statistics of training.
    pub fn accumulate_standing_stats(
        &mut self,
        ctx: &Context,
        batches: usize,
        batch: usize,
        seed: u64,
    ) -> Result<()> {
        if batches == 0 || batch == 0 {
            return Err(Error::InvalidArgument(
                "standing statistics need batches > 0 and batch > 0".into(),
            ));
        }
        let (zd, k) = (self.cfg.z_dim, self.cfg.num_classes as u32);
        let mut data = Vec::with_capacity(batches);
        for b in 0..batches {
            let base = (b * batch) as u64;
            let z: Vec<f32> = (0..(batch * zd) as u64)
                .map(|i| rng::normal(seed, Stream::Z, base * zd as u64 + i, 0) as f32)
                .collect();
            let y: Vec<i32> = (0..batch as u64)
                .map(|i| rng::below(seed, Stream::Labels, base + i, k) as i32)
                .collect();
            data.push((
                Tensor::from_f32(ctx, &[batch, zd], &z)?,
                Tensor::from_i32(ctx, &[batch], &y)?,
            ));
        }
        // Borrows only the configuration: the calls below write the weights' statistics.
        let gen = Generator {
            cfg: &self.cfg,
            prefix: "G",
        };
        gen.standing_stats(ctx, &mut self.g, &data)?;
        if let Some(e) = &mut self.g_ema {
            gen.standing_stats(ctx, e, &data)?;
        }
        Ok(())
    }

    /// One image as `H * W * 4` bytes (RGBA, grey images replicated, alpha 255).
    pub fn sample_rgba8(
        &self,
        ctx: &Context,
        which: Which,
        class: i32,
        z: &[f32],
    ) -> Result<Vec<u8>> {
        let chw = self.sample(ctx, which, &[class], z)?;
        Ok(chw_to_rgba8(&chw, self.cfg.channels, self.cfg.resolution))
    }

    /// Truncated-normal z for `n` samples from `seed`: a standard normal truncated to
    /// [-2, 2], times `truncation` in (0, 1]. Bit-reproducible on any machine.
    pub fn make_z(&self, seed: u64, truncation: f32, n: usize) -> Result<Vec<f32>> {
        if !(truncation > 0.0 && truncation <= 1.0) {
            return Err(Error::InvalidArgument(format!(
                "truncation {truncation} is outside (0, 1]"
            )));
        }
        Ok(rng::truncated_normal(seed, n * self.cfg.z_dim, truncation))
    }

    /// Trained parameter counts (G, D).
    pub fn parameter_counts(&self) -> (usize, usize) {
        (
            spec::parameter_count(&spec::generator(&self.cfg, "G")),
            spec::parameter_count(&spec::discriminator(&self.cfg)),
        )
    }
}

/// CHW floats in [0, 1] to RGBA8.
pub fn chw_to_rgba8(chw: &[f32], channels: usize, r: usize) -> Vec<u8> {
    let mut px = vec![255u8; r * r * 4];
    for p in 0..r * r {
        for k in 0..3 {
            let c = if channels == 1 { 0 } else { k };
            px[p * 4 + k] = (chw[c * r * r + p] * 255.0 + 0.5).clamp(0.0, 255.0) as u8;
        }
    }
    px
}

/// A device copy of every tensor (with an empty spectral-norm cache where `w` has one).
pub fn copy_weights(ctx: &Context, w: &Weights) -> Result<Weights> {
    let mut out = Weights::default();
    if w.sn_cache.is_some() {
        out = Weights::cached(Default::default());
    }
    ctx.run(|rec| {
        for (k, t) in &w.map {
            let c = Tensor::empty(rec.ctx, t.shape(), DType::F32)?;
            rec.copy(t, &c)?;
            out.map.insert(k.clone(), c);
        }
        Ok(())
    })?;
    Ok(out)
}
