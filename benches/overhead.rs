//! Runtime overheads that the recorder and the pipeline cache decide: the cost of many tiny
//! dispatches in one submit, and the time of loading a model, creating a trainer and the
//! first train steps (pipelines that compile lazily stall the first step).
//!
//! `cargo bench --bench overhead [-- --steps N --batch N --preset NAME]`
//! Prints wall and process CPU seconds (CPU time is the steadier figure on a busy machine).

mod common;

use common::{time_once, train_step, trainer};
use fewlabels::model::{Config, Model};
use fewlabels::{ops, Context, Result, Tensor};

fn arg(args: &[String], name: &str) -> Option<String> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

fn cpu(t: Option<f64>) -> String {
    t.map_or("-".into(), |c| format!("{c:.3}"))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it,
    // and then gets small defaults so the test run stays short.
    let full = args.iter().any(|a| a == "--bench");
    let steps: usize = arg(&args, "--steps")
        .and_then(|s| s.parse().ok())
        .unwrap_or(if full { 3 } else { 1 });
    let batch: usize = arg(&args, "--batch")
        .and_then(|s| s.parse().ok())
        .unwrap_or(if full { 64 } else { 4 });
    let preset =
        arg(&args, "--preset").unwrap_or_else(|| (if full { "fashion" } else { "tiny" }).into());
    let dispatches: usize = arg(&args, "--dispatches")
        .and_then(|s| s.parse().ok())
        .unwrap_or(if full { 2000 } else { 200 });

    let t = std::time::Instant::now();
    let ctx = Context::new()?;
    println!(
        "adapter: {} (opened in {:.3} s)",
        ctx.description,
        t.elapsed().as_secs_f64()
    );

    // Many tiny dispatches in one submit (the first round compiles the kernel).
    let x = Tensor::full(&ctx, &[4], 1.0)?;
    for round in 0..3 {
        let mut record = 0.0;
        let total = time_once(&mut || {
            let r0 = std::time::Instant::now();
            let mut rec = ctx.recorder();
            let mut y = x.clone();
            for _ in 0..dispatches {
                y = ops::elementwise::scale(&mut rec, &y, 1.0)?;
            }
            record = r0.elapsed().as_secs_f64();
            rec.submit()?;
            y.to_f32(&ctx)?;
            Ok(())
        })?;
        println!(
            "round {round}: {dispatches} tiny dispatches: record {:.1} us/dispatch, record+submit+wait {:.1} us/dispatch (wall {:.3} s, cpu {} s)",
            record * 1e6 / dispatches as f64,
            total.wall * 1e6 / dispatches as f64,
            total.wall,
            cpu(total.cpu)
        );
    }

    // Load, trainer, first steps.
    let cfg = Config::preset(&preset)?;
    let dir = std::env::temp_dir().join(format!("fewlabels-overhead-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| fewlabels::Error::Io(e.to_string()))?;
    let path = dir.join("model.safetensors");
    Model::init(&ctx, &cfg, 1)?.save(&ctx, &path)?;
    // A fresh context: nothing compiled yet.
    drop(x);
    drop(ctx);
    let ctx = Context::new()?;
    let mut model = None;
    let load = time_once(&mut || {
        model = Some(Model::load(&ctx, &path)?);
        Ok(())
    })?;
    println!(
        "Model::load ({preset}): wall {:.3} s, cpu {} s",
        load.wall,
        cpu(load.cpu)
    );
    let (xh, y) = common::real_batch(model.as_ref().expect("loaded"), batch);
    let r = cfg.resolution;
    let xr = Tensor::from_f32(&ctx, &[batch, r, r, cfg.channels], &xh)?;
    let mut tr = None;
    let mk = time_once(&mut || {
        tr = Some(trainer(&ctx, model.take().expect("loaded"))?);
        Ok(())
    })?;
    println!("Trainer::new: wall {:.3} s, cpu {} s", mk.wall, cpu(mk.cpu));
    let mut tr = tr.expect("made");
    for s in 0..steps {
        let t = time_once(&mut || train_step(&ctx, &mut tr, &xr, &y))?;
        println!(
            "train step {s} (batch {batch}, {} D + 1 G): wall {:.3} s, cpu {} s",
            tr.cfg.d_steps,
            t.wall,
            cpu(t.cpu)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
