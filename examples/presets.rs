//! Construct the paper's ImageNet presets (64x64 and 128x128), print their parameter counts
//! and run one forward pass of G and D on random weights, on whatever adapter is found.
//!
//! `cargo run --release --example presets [preset ...]` (default: imagenet64 imagenet128).

use fewlabels::model::{Discriminator, Generator, Mode, Model, Which};
use fewlabels::{Context, Tensor};
use std::time::Instant;

fn main() -> Result<(), fewlabels::Error> {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let ctx = Context::new()?;
    println!("adapter: {}", ctx.description);
    let mut names: Vec<String> = std::env::args().skip(1).collect();
    if names.is_empty() {
        names = vec!["imagenet64".into(), "imagenet128".into()];
    }
    for name in names {
        let cfg = fewlabels::model::Config::preset(&name)?;
        let t = Instant::now();
        let model = Model::init(&ctx, &cfg, 1)?;
        let (g, d) = model.parameter_counts();
        println!(
            "{name}: G {:.2}M parameters, D {:.2}M (init {:.1} s)",
            g as f64 / 1e6,
            d as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
        let z = Tensor::from_f32(&ctx, &[1, cfg.z_dim], &model.make_z(7, 1.0, 1)?)?;
        let y = Tensor::from_i32(&ctx, &[1], &[3])?;
        let gen = Generator {
            cfg: &cfg,
            prefix: "G",
        };
        let t = Instant::now();
        let img = ctx.run(|rec| {
            Ok(gen
                .forward(rec, model.sampling_weights(Which::Ema), &z, &y, Mode::EVAL)?
                .0)
        })?;
        let pixels = img.to_f32(&ctx)?;
        println!(
            "  G forward, batch 1: {:?} in {:.2} s, values in [{:.3}, {:.3}]",
            img.shape(),
            t.elapsed().as_secs_f64(),
            pixels.iter().cloned().fold(f32::INFINITY, f32::min),
            pixels.iter().cloned().fold(f32::NEG_INFINITY, f32::max)
        );
        let disc = Discriminator { cfg: &cfg };
        let d_weights = model.d.as_ref().expect("init makes D");
        let t = Instant::now();
        let out = ctx.run(|rec| Ok(disc.forward(rec, d_weights, &img, &y, Mode::EVAL)?.0))?;
        let logit = out.logit.to_f32(&ctx)?;
        println!(
            "  D forward, batch 1: logit {:.4}, rotation {:?}, class {:?} in {:.2} s",
            logit[0],
            out.rotation.as_ref().map(|t| t.shape().to_vec()),
            out.class.as_ref().map(|t| t.shape().to_vec()),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
