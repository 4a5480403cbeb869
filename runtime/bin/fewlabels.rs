//! The `fewlabels` command line: `info` (the adapter, and a model's config and sizes) and
//! `sample` (a grid of samples, one row per class, as a PGM/PPM image).

use fewlabels::model::{Model, Which};
use fewlabels::{Context, Error};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage: fewlabels <command> [options]

commands:
  info   [--model FILE]                 the GPU adapter (and a model's config and sizes)
  sample [--model FILE] [--out FILE]    a grid of samples, one row per class (PGM or PPM)
         [--per-class N] [--seed S] [--truncation T]
         without --model: the embedded default model (it arrives with issue 7)
";

struct Args {
    command: String,
    model: Option<PathBuf>,
    out: PathBuf,
    per_class: usize,
    seed: u64,
    truncation: f32,
}

fn parse() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let command = it.next().ok_or("no command given")?;
    let mut a = Args {
        command,
        model: None,
        out: PathBuf::from("samples.ppm"),
        per_class: 8,
        seed: 0,
        truncation: 1.0,
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => a.model = Some(PathBuf::from(value()?)),
            "--out" => a.out = PathBuf::from(value()?),
            "--per-class" => {
                a.per_class = value()?
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or("--per-class takes a number from 1 to 64")?
            }
            "--seed" => a.seed = value()?.parse().map_err(|_| "--seed takes an integer")?,
            "--truncation" => {
                a.truncation = value()?
                    .parse()
                    .map_err(|_| "--truncation takes a number in (0, 1]")?
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(a)
}

fn load(ctx: &Context, model: &Option<PathBuf>) -> Result<Option<Model>, Error> {
    match model {
        Some(p) => Model::load(ctx, p).map(Some),
        None => Ok(None),
    }
}

fn info(ctx: &Context, a: &Args) -> Result<(), Error> {
    println!("libfewlabels {}", env!("CARGO_PKG_VERSION"));
    println!("adapter: {}", ctx.description);
    println!(
        "limits: max storage binding {} MiB, max buffer {} MiB, {} storage buffers per stage",
        ctx.limits.max_storage_buffer_binding_size >> 20,
        ctx.limits.max_buffer_size >> 20,
        ctx.limits.max_storage_buffers_per_shader_stage
    );
    if let Some(m) = load(ctx, &a.model)? {
        let (g, d) = m.parameter_counts();
        println!("config: {}", m.cfg.to_json());
        println!(
            "parameters: G {g}, D {d}{}{}",
            if m.d.is_none() {
                " (not in the file)"
            } else {
                ""
            },
            if m.g_ema.is_some() {
                ", EMA generator present"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// Write a grid (rows of `cols` images) of CHW images in [0, 1] as binary PGM or PPM.
fn write_grid(
    path: &Path,
    images: &[f32],
    channels: usize,
    r: usize,
    cols: usize,
) -> Result<(), Error> {
    let n = images.len() / (channels * r * r);
    let rows = n.div_ceil(cols);
    let (w, h) = (cols * r, rows * r);
    let mut px = vec![0u8; w * h * channels];
    for i in 0..n {
        let im = &images[i * channels * r * r..(i + 1) * channels * r * r];
        let (gx, gy) = ((i % cols) * r, (i / cols) * r);
        for y in 0..r {
            for x in 0..r {
                for c in 0..channels {
                    let v = im[c * r * r + y * r + x];
                    px[((gy + y) * w + gx + x) * channels + c] =
                        (v * 255.0 + 0.5).clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
    let magic = if channels == 1 { "P5" } else { "P6" };
    let mut bytes = format!("{magic}\n{w} {h}\n255\n").into_bytes();
    bytes.extend_from_slice(&px);
    fewlabels::model::file::write_atomic(path, &bytes)
}

fn sample(ctx: &Context, a: &Args) -> Result<(), Error> {
    println!("adapter: {}", ctx.description);
    let Some(m) = load(ctx, &a.model)? else {
        println!(
            "no embedded default model in this build yet (it is trained in issue 7); \
             pass --model FILE to sample from a model file"
        );
        return Ok(());
    };
    let k = m.cfg.num_classes.min(100);
    let classes: Vec<i32> = (0..k as i32)
        .flat_map(|c| std::iter::repeat_n(c, a.per_class))
        .collect();
    let z = m.make_z(a.seed, a.truncation, classes.len())?;
    let images = m.sample(ctx, Which::Ema, &classes, &z)?;
    write_grid(
        &a.out,
        &images,
        m.cfg.channels,
        m.cfg.resolution,
        a.per_class,
    )?;
    println!(
        "wrote {} ({k} classes x {} samples, {}x{})",
        a.out.display(),
        a.per_class,
        m.cfg.resolution,
        m.cfg.resolution
    );
    Ok(())
}

fn main() -> ExitCode {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // Mesa prints a warning without it; set before any thread starts.
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let args = match parse() {
        Ok(a) if ["info", "sample"].contains(&a.command.as_str()) => a,
        Ok(a) if ["-h", "--help", "help"].contains(&a.command.as_str()) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(a) => {
            eprint!("fewlabels: unknown command {:?}\n{USAGE}", a.command);
            return ExitCode::from(2);
        }
        Err(e) => {
            eprint!("fewlabels: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = Context::new().and_then(|ctx| match args.command.as_str() {
        "info" => info(&ctx, &args),
        _ => sample(&ctx, &args),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fewlabels: {e}");
            ExitCode::FAILURE
        }
    }
}
