//! `fewlabels info`: the adapter, and a model's configuration, sizes and metadata.

use crate::{io_fail, Res};
use fewlabels::model::file::TensorFile;
use fewlabels::model::{Model, DEFAULT_MODEL};
use fewlabels::Context;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// A model file or training checkpoint (.safetensors) to describe [default: the embedded
    /// default model].
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
}

/// Longest metadata value shown whole.
const SHOWN: usize = 160;

pub fn run(ctx: &Context, a: Args) -> Res<()> {
    println!("libfewlabels {}", env!("CARGO_PKG_VERSION"));
    println!("adapter: {}", ctx.description);
    println!(
        "limits: max storage binding {} MiB, max buffer {} MiB, {} storage buffers per stage",
        ctx.limits.max_storage_buffer_binding_size >> 20,
        ctx.limits.max_buffer_size >> 20,
        ctx.limits.max_storage_buffers_per_shader_stage
    );
    let (name, bytes, file) = match &a.model {
        Some(path) => {
            let bytes = std::fs::metadata(path).map_err(|e| io_fail(path, e))?.len();
            (path.display().to_string(), bytes, TensorFile::load(path)?)
        }
        None => (
            "the embedded default model (docs/MODEL_CARD.md)".to_string(),
            DEFAULT_MODEL.len() as u64,
            TensorFile::from_bytes(DEFAULT_MODEL)?,
        ),
    };
    let m = Model::from_file(ctx, &file)?;
    let (g, d) = m.parameter_counts();
    println!(
        "file: {} ({:.1} MiB, {} tensors)",
        name,
        bytes as f64 / (1 << 20) as f64,
        file.tensors.len()
    );
    println!("config: {}", m.cfg.to_json());
    println!(
        "parameters: G {g}, D {d}{}{}",
        if m.d.is_none() {
            " (D not in the file: sampling only)"
        } else {
            ""
        },
        if m.g_ema.is_some() {
            ", EMA generator present"
        } else {
            ""
        }
    );
    if let Some(step) = file.metadata.get("train.g_steps") {
        println!("training checkpoint after {step} steps (fewlabels train --resume continues it)");
    }
    for (k, v) in &file.metadata {
        if k == "config" {
            continue;
        }
        if v.chars().count() > SHOWN {
            let head: String = v.chars().take(SHOWN).collect();
            println!("metadata {k}: {head}... ({} characters)", v.chars().count());
        } else {
            println!("metadata {k}: {v}");
        }
    }
    Ok(())
}
