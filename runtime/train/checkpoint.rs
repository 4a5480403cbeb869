//! Training checkpoints: everything a [`Trainer`] needs to continue exactly where it stopped,
//! in one safetensors file written atomically by [`TensorFile::save`] (temporary file, fsync,
//! rename, fsync of the folder; a crash leaves the previous checkpoint or the new one, never a
//! mix) and checked on load by its length and CRC-32.
//!
//! # Layout
//! Tensors (all F32):
//! - `G.*`, `D.*`, `G_ema.*`: the model, as in a model file (docs/MODEL.md), with the
//!   spectral-norm u vectors and standing statistics.
//! - `adam.m.<param>`, `adam.v.<param>`: Adam's first and second moments of every trained
//!   tensor (`<param>` is its model-file name, `G.*` or `D.*`).
//!
//! Metadata (strings):
//! - `config`: the model config (JSON), plus whatever metadata the model carries.
//! - `train.format`: [`CHECKPOINT_FORMAT`].
//! - `train.config`: the [`TrainConfig`] as JSON. Floating-point fields are JSON strings in
//!   Rust's shortest round-trip form (parsed back with `str::parse`), so a reloaded config is
//!   bit-identical (JSON numbers are not guaranteed to round-trip through serde_json here).
//! - `train.d_steps`, `train.g_steps`: steps taken.
//! - `train.fakes_drawn`: the counter of [`Trainer::fake_batch`]; with `seed` in
//!   `train.config` it is the whole random state of the trainer (Philox is counter-based).
//! - `train.adam_steps`: JSON object, Adam's step count per trained tensor.
//! - `train.extra.<key>`: the caller's [`Trainer::extra`] map (e.g. a data loader's
//!   `data.epoch`, `data.pos`), carried through untouched.
//!
//! # A checkpoint as a model
//! [`Model::load`] reads a checkpoint as a model: it ignores the `adam.*` tensors and the
//! `train.*` metadata (any other tensor its config does not name is still refused), so
//! `fl_model_load` samples from a checkpoint. [`load_model_from_checkpoint`] does the same
//! explicitly; [`Trainer::export_model`] writes a plain model file (G, D, G_ema) without the
//! optimiser state.

use super::{AdamSlot, TrainConfig, Trainer, Variant};
use crate::device::Context;
use crate::error::{Error, Result};
use crate::model::file::{HostTensor, TensorFile};
use crate::model::model::FileParts;
use crate::model::Model;
use crate::tensor::Tensor;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Value of `train.format` this build writes and reads.
pub const CHECKPOINT_FORMAT: &str = "1";
/// Prefix of every metadata key the trainer owns.
pub const TRAIN_PREFIX: &str = "train.";
/// Prefix of the Adam tensors.
pub const ADAM_PREFIX: &str = "adam.";
const FORMAT_KEY: &str = "train.format";
const CONFIG_KEY: &str = "train.config";
const D_STEPS_KEY: &str = "train.d_steps";
const G_STEPS_KEY: &str = "train.g_steps";
const FAKES_KEY: &str = "train.fakes_drawn";
const ADAM_STEPS_KEY: &str = "train.adam_steps";
const EXTRA_PREFIX: &str = "train.extra.";

fn bad<T>(m: String) -> Result<T> {
    Err(Error::Format(format!("checkpoint: {m}")))
}

impl TrainConfig {
    /// JSON with every field; floats as strings that parse back to the same bits.
    pub fn to_json(&self) -> String {
        let v = json!({
            "variant": self.variant.name(),
            "lr_g": self.lr_g.to_string(),
            "lr_d": self.lr_d.to_string(),
            "beta1": self.beta1.to_string(),
            "beta2": self.beta2.to_string(),
            "eps": self.eps.to_string(),
            "d_steps": self.d_steps,
            "rot_fraction": self.rot_fraction.to_string(),
            "d_rot_weight": self.d_rot_weight.to_string(),
            "g_rot_weight": self.g_rot_weight.to_string(),
            "class_weight": self.class_weight.to_string(),
            "ema_decay": self.ema_decay.to_string(),
            "ema_start": self.ema_start,
            "seed": self.seed,
        });
        v.to_string()
    }

    /// Parse [`TrainConfig::to_json`]'s output: every key required, unknown keys refused,
    /// the result validated.
    pub fn from_json(s: &str) -> Result<TrainConfig> {
        let err = |m: String| Error::Format(format!("training config JSON: {m}"));
        let v: Value = serde_json::from_str(s).map_err(|e| err(e.to_string()))?;
        let mut o: Map<String, Value> = match v {
            Value::Object(o) => o,
            _ => return Err(err("not an object".into())),
        };
        let mut take = |k: &str| o.remove(k).ok_or_else(|| err(format!("no key {k:?}")));
        let string = |k: &str, v: Value| match v {
            Value::String(s) => Ok(s),
            other => Err(err(format!("{k} = {other} must be a string"))),
        };
        let float = |k: &str, v: Value| -> Result<f64> {
            let s = string(k, v)?;
            s.parse::<f64>()
                .map_err(|e| err(format!("{k} = {s:?} is not a number: {e}")))
        };
        let float32 = |k: &str, v: Value| -> Result<f32> {
            let s = string(k, v)?;
            s.parse::<f32>()
                .map_err(|e| err(format!("{k} = {s:?} is not a number: {e}")))
        };
        let int = |k: &str, v: Value| -> Result<u64> {
            v.as_u64()
                .ok_or_else(|| err(format!("{k} = {v} must be a non-negative integer")))
        };
        let cfg = TrainConfig {
            variant: Variant::parse(&string("variant", take("variant")?)?)?,
            lr_g: float("lr_g", take("lr_g")?)?,
            lr_d: float("lr_d", take("lr_d")?)?,
            beta1: float("beta1", take("beta1")?)?,
            beta2: float("beta2", take("beta2")?)?,
            eps: float("eps", take("eps")?)?,
            d_steps: int("d_steps", take("d_steps")?)? as usize,
            rot_fraction: float("rot_fraction", take("rot_fraction")?)?,
            d_rot_weight: float32("d_rot_weight", take("d_rot_weight")?)?,
            g_rot_weight: float32("g_rot_weight", take("g_rot_weight")?)?,
            class_weight: float32("class_weight", take("class_weight")?)?,
            ema_decay: float("ema_decay", take("ema_decay")?)?,
            ema_start: int("ema_start", take("ema_start")?)?,
            seed: int("seed", take("seed")?)?,
        };
        if let Some(k) = o.keys().next() {
            return Err(err(format!("unknown key {k:?}")));
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// A checkpoint that passed [`check_checkpoint_file`], ready to upload.
struct Checked {
    cfg: TrainConfig,
    model: TensorFile,
    parts: FileParts,
    steps: BTreeMap<String, u32>,
    d_steps: u64,
    g_steps: u64,
    fakes: u64,
}

/// Check checkpoint file contents as [`Trainer::from_checkpoint_file`] does, on the host only
/// (no device): the format, both configs, the model's tensors (as [`Model::check_file`]), G_ema
/// and D present, every Adam tensor's presence, shape and finiteness, the step counts and
/// counters. (Whether the variant's heads exist is checked when the trainer is built.)
pub fn check_checkpoint_file(file: &TensorFile) -> Result<()> {
    check(file).map(|_| ())
}

fn check(file: &TensorFile) -> Result<Checked> {
    match file.metadata.get(FORMAT_KEY) {
        Some(v) if v == CHECKPOINT_FORMAT => {}
        Some(v) => return bad(format!("format {v}; this build reads {CHECKPOINT_FORMAT}")),
        None => return bad(format!("no {FORMAT_KEY:?} metadata: not a checkpoint")),
    }
    let cfg_json = file
        .metadata
        .get(CONFIG_KEY)
        .map_or_else(|| bad(format!("no metadata {CONFIG_KEY:?}")), Ok)?;
    let cfg = TrainConfig::from_json(cfg_json)?;
    let model = model_file(file);
    let parts = Model::check_parts(&model)?;
    if !parts.g_ema {
        return bad("no G_ema tensors".into());
    }
    if !parts.d {
        return bad("no D tensors".into());
    }
    let steps_json = file
        .metadata
        .get(ADAM_STEPS_KEY)
        .map_or_else(|| bad(format!("no metadata {ADAM_STEPS_KEY:?}")), Ok)?;
    let steps: BTreeMap<String, u32> = serde_json::from_str(steps_json)
        .map_or_else(|e| bad(format!("{ADAM_STEPS_KEY}: {e}")), Ok)?;
    let trained = Trainer::trained(&parts.cfg);
    for (name, shape) in &trained {
        for which in ["m", "v"] {
            let key = format!("{ADAM_PREFIX}{which}.{name}");
            let t = file.tensors.get(&key).map_or_else(
                || bad(format!("no tensor {key} (the config trains {name})")),
                Ok,
            )?;
            if &t.shape != shape {
                return bad(format!(
                    "tensor {key} has shape {:?}, {name} has {shape:?}",
                    t.shape
                ));
            }
            if let Some(i) = t.data.iter().position(|x| !x.is_finite()) {
                return bad(format!("tensor {key} holds a non-finite value at {i}"));
            }
        }
        if !steps.contains_key(name) {
            return bad(format!("{ADAM_STEPS_KEY} has no step count of {name}"));
        }
    }
    let is_trained = |n: &str| trained.iter().any(|(t, _)| t == n);
    for k in file.tensors.keys().filter(|k| k.starts_with(ADAM_PREFIX)) {
        let rest = &k[ADAM_PREFIX.len()..];
        let known = ["m.", "v."]
            .iter()
            .any(|p| rest.strip_prefix(p).is_some_and(is_trained));
        if !known {
            return bad(format!(
                "tensor {k} is not the Adam state of a trained tensor"
            ));
        }
    }
    if let Some(k) = steps.keys().find(|k| !is_trained(k)) {
        return bad(format!("{ADAM_STEPS_KEY} names {k}, which is not trained"));
    }
    Ok(Checked {
        d_steps: parse_u64(file, D_STEPS_KEY)?,
        g_steps: parse_u64(file, G_STEPS_KEY)?,
        fakes: parse_u64(file, FAKES_KEY)?,
        cfg,
        model,
        parts,
        steps,
    })
}

/// A checkpoint's model part: its tensors without `adam.*` and its metadata without `train.*`,
/// ready for [`Model::from_file`].
pub fn model_file(ckpt: &TensorFile) -> TensorFile {
    TensorFile {
        metadata: ckpt
            .metadata
            .iter()
            .filter(|(k, _)| !k.starts_with(TRAIN_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        tensors: ckpt
            .tensors
            .iter()
            .filter(|(k, _)| !k.starts_with(ADAM_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// The model (G, D, G_ema) held in a checkpoint file.
pub fn load_model_from_checkpoint(ctx: &Context, path: &Path) -> Result<Model> {
    let file = read(path)?;
    Model::from_file(ctx, &model_file(&file)).map_err(|e| in_file(path, e))
}

fn in_file(path: &Path, e: Error) -> Error {
    match e {
        Error::Format(m) => Error::Format(format!("{}: {m}", path.display())),
        other => other,
    }
}

/// Why `bytes` cannot be a whole safetensors file, when it is visibly cut short: the 8-byte
/// header length, the header, or the data its offsets need.
fn truncation(bytes: &[u8]) -> Option<String> {
    let len = bytes.len() as u64;
    if len < 8 {
        return Some(format!("{len} bytes, shorter than a safetensors header"));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let header_end = 8u64.checked_add(n)?;
    if len < header_end {
        return Some(format!("{len} bytes, its header alone needs {header_end}"));
    }
    let header: Value = serde_json::from_slice(&bytes[8..header_end as usize]).ok()?;
    let data_end = header
        .as_object()?
        .values()
        .filter_map(|t| t.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    let need = header_end + data_end;
    (len < need).then(|| format!("{len} bytes, its header describes {need}"))
}

/// Remove the temporary files that killed saves to `path` by other processes left behind
/// (names as [`crate::model::file::write_atomic`] makes them). Best effort: errors ignored.
fn remove_stale_temporaries(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    let own = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let file_name = e.file_name();
        let Some(pid) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        // `<pid>-<n>` (older builds wrote `<pid>` alone).
        let pid = pid.split_once('-').map_or(pid, |(p, _)| p);
        if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && pid != own {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Read and check a checkpoint file (complete, CRC intact, a checkpoint of this format).
fn read(path: &Path) -> Result<TensorFile> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Io(format!("cannot read checkpoint {}: {e}", path.display())))?;
    if let Some(why) = truncation(&bytes) {
        return Err(Error::Format(format!(
            "checkpoint {} is truncated ({why}): an interrupted copy or write; \
             it cannot be resumed from",
            path.display()
        )));
    }
    let file = TensorFile::from_bytes(&bytes).map_err(|e| match e {
        Error::Format(m) => Error::Format(format!("checkpoint {}: {m}", path.display())),
        other => other,
    })?;
    match file.metadata.get(FORMAT_KEY) {
        Some(v) if v == CHECKPOINT_FORMAT => Ok(file),
        Some(v) => Err(Error::Format(format!(
            "{}: checkpoint format {v}; this build reads {CHECKPOINT_FORMAT}",
            path.display()
        ))),
        None => Err(Error::Format(format!(
            "{} is not a training checkpoint (no {FORMAT_KEY:?} metadata; \
             a model file? start a Trainer from it with Trainer::new)",
            path.display()
        ))),
    }
}

fn parse_u64(file: &TensorFile, key: &str) -> Result<u64> {
    let s = file
        .metadata
        .get(key)
        .map_or_else(|| bad(format!("no metadata {key:?}")), Ok)?;
    s.parse()
        .map_or_else(|e| bad(format!("{key} = {s:?}: {e}")), Ok)
}

impl Trainer {
    /// The checkpoint as file contents (downloads every tensor from the device).
    pub fn to_checkpoint_file(&self, ctx: &Context) -> Result<TensorFile> {
        let mut f = self.model.to_file(ctx)?;
        // Keys a previous checkpoint left in the model's metadata are rewritten below.
        f.metadata.retain(|k, _| !k.starts_with(TRAIN_PREFIX));
        let mut steps = Map::new();
        for (name, slot) in &self.adam {
            for (which, t) in [("m", &slot.m), ("v", &slot.v)] {
                f.tensors.insert(
                    format!("{ADAM_PREFIX}{which}.{name}"),
                    HostTensor::new(t.shape(), t.to_f32(ctx)?)?,
                );
            }
            steps.insert(name.clone(), json!(slot.step));
        }
        let m = &mut f.metadata;
        m.insert(FORMAT_KEY.into(), CHECKPOINT_FORMAT.into());
        m.insert(CONFIG_KEY.into(), self.cfg.to_json());
        m.insert(D_STEPS_KEY.into(), self.d_steps_done.to_string());
        m.insert(G_STEPS_KEY.into(), self.g_steps_done.to_string());
        m.insert(FAKES_KEY.into(), self.fakes_drawn.to_string());
        m.insert(ADAM_STEPS_KEY.into(), Value::Object(steps).to_string());
        for (k, v) in &self.extra {
            m.insert(format!("{EXTRA_PREFIX}{k}"), v.clone());
        }
        Ok(f)
    }

    /// Save a checkpoint to `path` atomically: the previous file at `path` stays whole until
    /// the new one is complete and synced, then replaces it in one rename.
    ///
    /// A save killed midway leaves its temporary file (`.<name>.tmp-<pid>-<n>` next to `path`),
    /// which no loader reads; the next successful save to `path` removes such leftovers of
    /// other processes. So two processes must not save to one path at once (the later
    /// one's cleanup would make the earlier one's save fail; neither file is corrupted).
    pub fn save_checkpoint(&self, ctx: &Context, path: &Path) -> Result<()> {
        self.to_checkpoint_file(ctx)?.save(path)?;
        remove_stale_temporaries(path);
        Ok(())
    }

    /// A trainer from checkpoint file contents.
    pub fn from_checkpoint_file(ctx: &Context, file: &TensorFile) -> Result<Trainer> {
        let c = check(file)?;
        let model = Model::from_checked_file(ctx, &c.model, c.parts)?;
        Trainer::check(&model, &c.cfg)?;
        let mut adam = BTreeMap::new();
        for (name, _) in Trainer::trained(&model.cfg) {
            let get = |which: &str| -> Result<Tensor> {
                let t = &file.tensors[&format!("{ADAM_PREFIX}{which}.{name}")];
                Tensor::from_f32(ctx, &t.shape, &t.data)
            };
            let (m, v) = (get("m")?, get("v")?);
            let step = c.steps[&name];
            adam.insert(name, AdamSlot { m, v, step });
        }
        let extra = file
            .metadata
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(EXTRA_PREFIX)?.to_string(), v.clone())))
            .collect();
        Ok(Trainer {
            model,
            cfg: c.cfg,
            adam,
            d_steps_done: c.d_steps,
            g_steps_done: c.g_steps,
            fakes_drawn: c.fakes,
            extra,
            prepared: Vec::new(),
        })
    }

    /// Load a checkpoint written by [`Trainer::save_checkpoint`]; training continues exactly
    /// (bit for bit) as it would have without the save and reload.
    pub fn load_checkpoint(ctx: &Context, path: &Path) -> Result<Trainer> {
        let file = read(path)?;
        Self::from_checkpoint_file(ctx, &file).map_err(|e| in_file(path, e))
    }

    /// Write the model (G, D, G_ema; no optimiser state) as a plain model file.
    pub fn export_model(&self, ctx: &Context, path: &Path) -> Result<()> {
        let mut f = self.model.to_file(ctx)?;
        f.metadata.retain(|k, _| !k.starts_with(TRAIN_PREFIX));
        f.save(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_config_json_roundtrips_bit_for_bit() {
        let mut c = TrainConfig::new(Variant::S3ganCo);
        c.lr_g = 0.1 + 0.2;
        c.lr_d = 1.0 / 3.0;
        c.eps = 5e-324;
        c.beta2 = 0.999_999_999_999_999_9;
        c.class_weight = 0.1f32 + 0.2f32;
        c.seed = u64::MAX;
        c.ema_start = 7;
        let back = TrainConfig::from_json(&c.to_json()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.lr_g.to_bits(), c.lr_g.to_bits());
        assert_eq!(back.eps.to_bits(), c.eps.to_bits());
    }

    #[test]
    fn train_config_json_refuses_missing_unknown_and_bad_keys() {
        let c = TrainConfig::new(Variant::Ssgan);
        let mut v: Value = serde_json::from_str(&c.to_json()).unwrap();
        v["extra"] = json!(1);
        let e = TrainConfig::from_json(&v.to_string()).unwrap_err();
        assert!(e.to_string().contains("unknown key"), "{e}");
        v.as_object_mut().unwrap().remove("extra");
        v.as_object_mut().unwrap().remove("lr_g");
        let e = TrainConfig::from_json(&v.to_string()).unwrap_err();
        assert!(e.to_string().contains("lr_g"), "{e}");
        v["lr_g"] = json!("-1");
        assert!(TrainConfig::from_json(&v.to_string()).is_err());
        v["lr_g"] = json!(0.5);
        assert!(TrainConfig::from_json(&v.to_string()).is_err());
    }

    #[test]
    fn truncation_is_named() {
        assert!(truncation(b"abc").unwrap().contains("shorter"));
        let mut b = 100u64.to_le_bytes().to_vec();
        b.extend_from_slice(b"{}");
        assert!(truncation(&b).unwrap().contains("header alone"));
        let h = br#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let mut b = (h.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(h);
        b.extend_from_slice(&[0; 4]);
        assert!(truncation(&b).unwrap().contains("describes"));
        b.extend_from_slice(&[0; 4]);
        assert_eq!(truncation(&b), None);
    }
}
