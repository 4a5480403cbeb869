//! `fewlabels sample`: a grid (one row per class) or a single image from a model.

use crate::{images, load_model, Res};
use fewlabels::model::Which;
use fewlabels::Context;
use std::path::PathBuf;

/// Most classes a grid shows (the first ones), so that a 1000-class model gives a usable image.
const MAX_ROWS: usize = 100;

#[derive(clap::Args)]
pub struct Args {
    /// Model file or training checkpoint (.safetensors) [default: the embedded default model]
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Output image (.png, .jpg or .jpeg).
    #[arg(long, value_name = "FILE", default_value = "samples.png")]
    out: PathBuf,
    /// Images per class: the grid's columns (1 to 64).
    #[arg(long, value_name = "N", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    per_class: u32,
    /// Only this class (a row of --per-class images, or one image with --single).
    #[arg(long, value_name = "C")]
    class: Option<i32>,
    /// Write one image of --class instead of a grid.
    #[arg(long, requires = "class")]
    single: bool,
    /// Seed of the latent vectors z (the same seed gives the same images).
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Truncation of z, in (0, 1]: smaller gives more typical, less varied images.
    #[arg(long, value_name = "T", default_value_t = 1.0)]
    truncation: f32,
    /// Sample from the trained generator G instead of its moving average G_ema.
    #[arg(long)]
    raw_g: bool,
}

pub fn run(ctx: &Context, a: Args) -> Res<()> {
    println!("adapter: {}", ctx.description);
    let m = load_model(ctx, a.model.as_ref())?;
    if a.model.is_none() {
        println!("model: the embedded default model (docs/MODEL_CARD.md)");
    }
    let k = m.cfg.num_classes;
    let per = if a.single { 1 } else { a.per_class as usize };
    let rows: Vec<i32> = match a.class {
        Some(c) if c < 0 || c as usize >= k => {
            return Err(format!("--class {c} is not a class of the model (0 to {})", k - 1).into())
        }
        Some(c) => vec![c],
        None => (0..k.min(MAX_ROWS) as i32).collect(),
    };
    let classes: Vec<i32> = rows
        .iter()
        .flat_map(|&c| std::iter::repeat_n(c, per))
        .collect();
    let z = m.make_z(a.seed, a.truncation, classes.len())?;
    let which = if a.raw_g {
        Which::Generator
    } else {
        Which::Ema
    };
    let chw = m.sample(ctx, which, &classes, &z)?;
    let profile = ctx.take_profile();
    if !profile.is_empty() {
        eprintln!(
            "Per-kernel time (FEWLABELS_PROFILE=1):\n{}",
            fewlabels::kernel::format_profile(&profile)
        );
    }
    let (w, h) = images::write_grid(&a.out, &chw, m.cfg.channels, m.cfg.resolution, per)?;
    if a.single {
        println!("wrote {} (class {}, {w}x{h})", a.out.display(), rows[0]);
    } else {
        println!(
            "wrote {} ({} class{} x {per} samples, {w}x{h} pixels)",
            a.out.display(),
            rows.len(),
            if rows.len() == 1 { "" } else { "es" }
        );
    }
    Ok(())
}
