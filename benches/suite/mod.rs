//! The benchmark of issue 6: libfewlabels and PyTorch side by side, in one run.
//!
//! Used by benches/fewlabels.rs (`cargo bench --bench fewlabels`) and, in quick mode, by
//! tests/bench_quick.rs so that it keeps compiling and running.
#![allow(dead_code)]

#[path = "../common/mod.rs"]
pub mod common;

use common::{measure, real_batch, train_step, trainer, Timing};
use fewlabels::kernel::{format_profile, ProfileRow};
use fewlabels::model::layers::{self, Grads, Weights};
use fewlabels::model::{Config, Discriminator, Mode, Model, Which};
use fewlabels::ops::conv::Load;
use fewlabels::ops::{conv, elementwise, gemm, resample};
use fewlabels::{Context, Error, Recorder, Result, Tensor};
use std::path::{Path, PathBuf};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Tiny preset and sizes, one warm-up and one timed run, no PyTorch.
    pub quick: bool,
    /// Python with PyTorch for the comparison column; None skips it.
    pub python: Option<PathBuf>,
    /// Timed runs per item (after the warm-up).
    pub iters: usize,
    /// Profile one train step per preset (dispatches run one at a time).
    pub profile: bool,
    /// Only the G block item (and its PyTorch side).
    pub only_gblock: bool,
}

impl Options {
    /// The full benchmark: PyTorch from `$FEWLABELS_TORCH_PYTHON` or /work/venv/bin/python
    /// when present.
    pub fn full() -> Options {
        let python = std::env::var_os("FEWLABELS_TORCH_PYTHON")
            .map(PathBuf::from)
            .or_else(|| {
                let p = PathBuf::from("/work/venv/bin/python");
                p.exists().then_some(p)
            });
        Options {
            quick: false,
            python,
            iters: 3,
            profile: true,
            only_gblock: false,
        }
    }

    pub fn quick() -> Options {
        Options {
            quick: true,
            python: None,
            iters: 1,
            profile: true,
            only_gblock: false,
        }
    }
}

/// One line of the table. Times are turned into rates so that every ratio reads the same
/// way: ours / PyTorch, above 1 when libfewlabels is faster.
#[derive(Debug, Clone)]
pub struct Row {
    pub item: String,
    pub unit: &'static str,
    pub ours: f64,
    /// Process CPU seconds per run on our side (None where /proc is missing).
    pub ours_cpu_s: Option<f64>,
    pub torch: Option<f64>,
    /// Whether a larger value is better (rates) or smaller (times).
    pub higher_is_better: bool,
}

impl Row {
    /// Speed of ours relative to PyTorch (above 1: ours is faster).
    pub fn ratio(&self) -> Option<f64> {
        let t = self.torch?;
        Some(if self.higher_is_better {
            self.ours / t
        } else {
            t / self.ours
        })
    }
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub adapter: String,
    pub cpu_peak_gflops: Option<f64>,
    pub torch_note: String,
    pub rows: Vec<Row>,
    /// Per-kernel profile of one train step, per preset.
    pub profiles: Vec<(String, Vec<ProfileRow>)>,
    /// Other facts: load and first-step times, dispatch overhead, buffers per step.
    pub notes: Vec<String>,
    /// wgpu buffers created during one steady-state train step, per preset.
    pub new_buffers_per_step: Vec<(String, u64)>,
}

fn gflops(flops: f64, t: &Timing) -> f64 {
    flops / t.wall / 1e9
}

fn io(e: std::io::Error, what: &str) -> Error {
    Error::Io(format!("{what}: {e}"))
}

/// Sizes of one run.
struct Sizes {
    /// Table key, preset name, train-step batch.
    presets: Vec<(&'static str, &'static str, usize)>,
    sample_batches: Vec<usize>,
    d_batch: usize,
    matmul: Vec<usize>,
    /// conv3x3 shapes: N, Cin, Cout, H = W.
    convs: Vec<[usize; 4]>,
    /// G block: N, Cin, Cout (8x8 -> 16x16).
    gblock: [usize; 3],
    peak_n: usize,
    dispatches: usize,
    warmup: usize,
    /// Fewest timed runs of a kernel row (matmul, conv): they take milliseconds, and the
    /// median of a few varies by 2x on a shared machine.
    kernel_iters: usize,
}

fn sizes(quick: bool) -> Sizes {
    if quick {
        Sizes {
            presets: vec![("tiny", "tiny", 4)],
            sample_batches: vec![1, 4],
            d_batch: 4,
            matmul: vec![32],
            convs: vec![[2, 8, 8, 8]],
            gblock: [2, 8, 4],
            peak_n: 64,
            dispatches: 50,
            warmup: 1,
            kernel_iters: 1,
        }
    } else {
        Sizes {
            // fashion_small (the default model's network) at its training batch, 32; rgb64
            // trains at batch 16: on lavapipe a batch-64 step takes minutes.
            presets: vec![
                ("fashion", "fashion", 64),
                ("fashion_small", "fashion_small", 32),
                ("rgb64", "rgb64", 16),
            ],
            sample_batches: vec![1, 64],
            d_batch: 64,
            matmul: vec![256, 1024],
            // The fashion preset's last G block: 32 -> 16 channels at 32x32, batch 64; and the
            // shape of issue 6's table: N=16, 64 -> 64 at 32x32.
            convs: vec![[64, 32, 16, 32], [16, 64, 64, 32]],
            // Issue 6's table: N=64, 128 -> 64 channels, 8x8 -> 16x16.
            gblock: [64, 128, 64],
            peak_n: 2048,
            dispatches: 2000,
            warmup: 1,
            kernel_iters: 15,
        }
    }
}

fn fill(ctx: &Context, shape: &[usize], seed: u64) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n as u64).map(|i| common::noise(seed, i)).collect();
    Tensor::from_f32(ctx, shape, &v)
}

/// Run the benchmark.
pub fn run(opts: &Options) -> Result<Report> {
    let sz = sizes(opts.quick);
    let iters = opts.iters.max(1);
    let dir = std::env::temp_dir().join(format!("fewlabels-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| io(e, "bench temp folder"))?;
    let result = run_in(opts, &sz, iters, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Sampling, D forward and a train step of each preset, then the GEMM and conv kernels and
/// the dispatch overhead.
fn networks_and_kernels(
    opts: &Options,
    sz: &Sizes,
    iters: usize,
    dir: &Path,
    m: &mut Measured,
) -> Result<()> {
    // Model files first (with a throwaway context), so that each preset's load below starts
    // from a context that has compiled nothing.
    {
        let ctx = Context::new()?;
        for (key, preset, batch) in &sz.presets {
            let path = dir.join(format!("{key}.safetensors"));
            Model::init(&ctx, &Config::preset(preset)?, 1)?.save(&ctx, &path)?;
            m.model_files.push((key.to_string(), *batch, path));
        }
    }

    for (i, (key, train_batch, path)) in m.model_files.clone().iter().enumerate() {
        let ctx = Context::new()?;
        let mut slot = None;
        let load = common::time_once(&mut || {
            slot = Some(Model::load(&ctx, path)?);
            Ok(())
        })?;
        let model = slot.expect("loaded");
        let cfg = model.cfg.clone();
        let (r, c) = (cfg.resolution, cfg.channels);

        // Sampling.
        for &nb in &sz.sample_batches {
            let classes: Vec<i32> = (0..nb as i32).map(|i| i % cfg.num_classes as i32).collect();
            let z = model.make_z(3, 1.0, nb)?;
            let t = measure(sz.warmup, iters, &mut || {
                model
                    .sample(&ctx, Which::Generator, &classes, &z)
                    .map(|_| ())
            })?;
            m.rows.push(Row {
                item: format!("{key}: G sampling, batch {nb}"),
                unit: "images/s",
                ours: nb as f64 / t.wall,
                ours_cpu_s: t.cpu,
                torch: None,
                higher_is_better: true,
            });
        }

        // D forward.
        let nb = sz.d_batch;
        let x = fill(&ctx, &[nb, r, r, c], 7)?;
        let y: Vec<i32> = (0..nb as i32).map(|i| i % cfg.num_classes as i32).collect();
        let yt = Tensor::from_i32(&ctx, &[nb], &y)?;
        let d_ws = model
            .d
            .as_ref()
            .ok_or_else(|| Error::Format("bench model has no D".into()))?;
        let disc = Discriminator { cfg: &cfg };
        let t = measure(sz.warmup, iters, &mut || {
            let (out, _) = ctx.run(|rec| disc.forward(rec, d_ws, &x, &yt, Mode::EVAL))?;
            out.logit.to_f32(&ctx).map(|_| ())
        })?;
        m.rows.push(Row {
            item: format!("{key}: D forward, batch {nb}"),
            unit: "images/s",
            ours: nb as f64 / t.wall,
            ours_cpu_s: t.cpu,
            torch: None,
            higher_is_better: true,
        });

        // Train step: trainer creation, first step (any compile left shows here), then the
        // steady state.
        let nb = *train_batch;
        let (xh, y) = real_batch(&model, nb);
        let xr = Tensor::from_f32(&ctx, &[nb, r, r, c], &xh)?;
        let mut tslot = None;
        let make = common::time_once(&mut || {
            tslot = Some(trainer(&ctx, Model::load(&ctx, path)?)?);
            Ok(())
        })?;
        let mut tr = tslot.expect("made");
        let first = common::time_once(&mut || train_step(&ctx, &mut tr, &xr, &y))?;
        // The first step is the warm-up here (a step is slow on a software adapter).
        let before = ctx.buffers_created();
        let steady = measure(0, iters, &mut || train_step(&ctx, &mut tr, &xr, &y))?;
        let new_buffers = (ctx.buffers_created() - before).div_ceil(iters as u64);
        m.new_buffers_per_step.push((key.clone(), new_buffers));
        m.rows.push(Row {
            item: format!("{key}: train step ({} D + 1 G), batch {nb}", tr.cfg.d_steps),
            unit: "ms",
            ours: steady.wall * 1e3,
            ours_cpu_s: steady.cpu,
            torch: None,
            higher_is_better: false,
        });
        let secs = |t: &Timing| match t.cpu {
            Some(c) => format!("{:.2} s (CPU {:.2} s)", t.wall, c),
            None => format!("{:.2} s", t.wall),
        };
        m.notes.push(format!(
            "{key}: Model::load {}, Trainer::new {}, first train step {}, later steps {}; \
             {} pipelines compiled; {new_buffers} new wgpu buffers in a steady-state step",
            secs(&load),
            secs(&make),
            secs(&first),
            secs(&steady),
            ctx.compiled_kernels(),
        ));
        // Profile the first preset only (fashion in the full run).
        if opts.profile && i == 0 {
            ctx.take_profile();
            ctx.set_profiling(true);
            let done = train_step(&ctx, &mut tr, &xr, &y);
            ctx.set_profiling(false);
            done?;
            m.profiles.push((
                format!(
                    "{key}: one train step ({} D + 1 G), batch {nb}",
                    tr.cfg.d_steps
                ),
                ctx.take_profile(),
            ));
        }
    }

    // Kernels and the dispatch overhead, on a context of their own.
    let ctx = Context::new()?;
    for &k in &sz.matmul {
        let a = fill(&ctx, &[k, k], 1)?;
        let b = fill(&ctx, &[k, k], 2)?;
        let t = measure(sz.warmup, iters.max(sz.kernel_iters), &mut || {
            ctx.run(|rec| gemm::matmul(rec, &a, &b, false, false, None))?;
            ctx.wait()
        })?;
        m.rows.push(Row {
            item: format!("matmul {k}x{k}x{k}"),
            unit: "GFLOP/s",
            ours: gflops(2.0 * (k as f64).powi(3), &t),
            ours_cpu_s: t.cpu,
            torch: None,
            higher_is_better: true,
        });
    }
    for &[cn, cin, cout, hw] in &sz.convs {
        let x = fill(&ctx, &[cn, hw, hw, cin], 3)?;
        let w = fill(&ctx, &[cout, cin, 3, 3], 4)?;
        let dy = fill(&ctx, &[cn, hw, hw, cout], 5)?;
        let flops = 2.0 * (cn * hw * hw * cin * cout * 9) as f64;
        let shape = format!("N={cn}, {cin}->{cout}, {hw}x{hw}");
        type ConvRun<'a> = Box<dyn Fn(&mut fewlabels::Recorder) -> Result<()> + 'a>;
        let convs: Vec<(&str, ConvRun)> = vec![
            (
                "forward",
                Box::new(|rec| conv::conv2d(rec, &x, &w, None).map(|_| ())),
            ),
            (
                "input gradient",
                Box::new(|rec| conv::conv2d_backward_input(rec, &x, &w, &dy).map(|_| ())),
            ),
            (
                "weight gradient",
                Box::new(|rec| conv::conv2d_backward_weight(rec, &x, &w, &dy, false).map(|_| ())),
            ),
        ];
        for (what, f) in &convs {
            let t = measure(sz.warmup, iters.max(sz.kernel_iters), &mut || {
                ctx.run(|rec| f(rec))?;
                ctx.wait()
            })?;
            m.rows.push(Row {
                item: format!("conv3x3 {what}, {shape}"),
                unit: "GFLOP/s",
                ours: gflops(flops, &t),
                ours_cpu_s: t.cpu,
                torch: None,
                higher_is_better: true,
            });
        }
    }

    // Many tiny dispatches in one submit.
    let tiny = Tensor::full(&ctx, &[4], 1.0)?;
    let n = sz.dispatches;
    let t = measure(sz.warmup, iters, &mut || {
        let mut rec = ctx.recorder();
        let mut y = tiny.clone();
        for _ in 0..n {
            y = elementwise::scale(&mut rec, &y, 1.0)?;
        }
        rec.submit()?;
        ctx.wait()
    })?;
    m.notes.push(format!(
        "{n} tiny dispatches in one submit: {:.1} us per dispatch (record, submit, run)",
        t.wall * 1e6 / n as f64
    ));
    Ok(())
}

/// What the networks and kernels part of a run measured.
#[derive(Default)]
struct Measured {
    rows: Vec<Row>,
    notes: Vec<String>,
    profiles: Vec<(String, Vec<ProfileRow>)>,
    /// Table key, train-step batch and model file of each preset (for the PyTorch side).
    model_files: Vec<(String, usize, PathBuf)>,
    new_buffers_per_step: Vec<(String, u64)>,
}

fn run_in(opts: &Options, sz: &Sizes, iters: usize, dir: &Path) -> Result<Report> {
    let mut m = Measured::default();
    if !opts.only_gblock {
        networks_and_kernels(opts, sz, iters, dir, &mut m)?;
    }
    let ctx = Context::new()?;
    let adapter = ctx.description.to_string();
    let gblock_file = dir.join("gblock.safetensors");
    let (row, profile) = gblock_row(&ctx, sz, iters, &gblock_file, opts.profile)?;
    if let Some(rows) = profile {
        m.profiles.push((row.item.clone(), rows));
    }
    m.rows.push(row);
    let Measured {
        mut rows,
        notes,
        profiles,
        model_files,
        new_buffers_per_step,
    } = m;

    // PyTorch.
    let mut cpu_peak = None;
    let torch_note = match &opts.python {
        None if opts.quick => "PyTorch column skipped (quick mode)".to_string(),
        None => "PyTorch column skipped: no Python found (set FEWLABELS_TORCH_PYTHON)".to_string(),
        Some(py) => match run_torch(py, sz, iters, &model_files, &gblock_file) {
            Ok(v) => {
                cpu_peak = v["cpu_peak_gflops"].as_f64();
                fill_torch(&mut rows, &v, sz);
                format!(
                    "PyTorch {} on the CPU, {} threads ({})",
                    v["version"].as_str().unwrap_or("?"),
                    v["threads"],
                    py.display()
                )
            }
            Err(e) => format!("PyTorch column skipped: {e}"),
        },
    };
    Ok(Report {
        adapter,
        cpu_peak_gflops: cpu_peak,
        torch_note,
        rows,
        profiles,
        notes,
        new_buffers_per_step,
    })
}

/// The network of the G block item: the tiny preset's shape (blocks 4x4 -> 8x8 -> 16x16) at
/// the width that makes block 1 `cin -> cout`, without attention.
fn gblock_config(cin: usize, cout: usize) -> Result<Config> {
    let ch = cout / 2;
    let mut c = Config::preset("tiny")?;
    c.ch = ch;
    c.g_mult = vec![cin / ch, cin / ch, 2];
    c.num_classes = 10;
    c.g_attn = vec![];
    c.d_attn = vec![];
    c.validate()?;
    Ok(c)
}

/// One G block (block 1 of `gblock_config`), forward and backward with batch statistics and a
/// power iteration, as in a train step: CBN + ReLU (one pass), upsample x2 (applied as conv1
/// loads its input), conv3x3 cin -> cout, CBN + ReLU, conv3x3 cout -> cout, and the 1x1
/// shortcut (run before upsampling); the generator's code, every parameter's gradient and the
/// input's.
fn gblock_pass(
    rec: &mut Recorder,
    cfg: &Config,
    ws: &Weights,
    x: &Tensor,
    c: &Tensor,
    dy: &Tensor,
) -> Result<()> {
    let p = "G.blocks.1";
    let (mode, sn) = (Mode::TRAIN, cfg.sn);
    let (r, bn1) = layers::cbn(rec, ws, &format!("{p}.bn1"), x, c, cfg, mode, true)?;
    let up = Load {
        relu: false,
        upsample: true,
    };
    let (b, conv1) = layers::conv2d_load(rec, ws, &format!("{p}.conv1"), &r, up, true, sn, mode)?;
    let (r2, bn2) = layers::cbn(rec, ws, &format!("{p}.bn2"), &b, c, cfg, mode, true)?;
    let (main, conv2) = layers::conv2d(rec, ws, &format!("{p}.conv2"), &r2, true, sn, mode)?;
    let (sc_small, conv_sc) = layers::conv2d(rec, ws, &format!("{p}.conv_sc"), x, true, sn, mode)?;
    let sc = resample::upsample2x(rec, &sc_small)?;
    elementwise::add(rec, &main, &sc)?;
    let mut grads = Grads::default();
    let dm = conv2.backward(rec, &mut grads, dy)?;
    let dm = elementwise::relu_backward(rec, &r2, &dm)?;
    let (dm, dc2) = bn2.backward(rec, &mut grads, &dm)?;
    let dm = conv1.backward(rec, &mut grads, &dm)?;
    let dm = elementwise::relu_backward(rec, &r, &dm)?;
    let (dx1, dc1) = bn1.backward(rec, &mut grads, &dm)?;
    let d_small = resample::upsample2x_backward(rec, dy)?;
    let dx2 = conv_sc.backward(rec, &mut grads, &d_small)?;
    elementwise::add(rec, &dx1, &dx2)?;
    elementwise::add(rec, &dc1, &dc2)?;
    Ok(())
}

/// The G block item; writes the model file the PyTorch side reads.
/// The G block's row, and with `profile` the per-kernel profile of one more pass.
fn gblock_row(
    ctx: &Context,
    sz: &Sizes,
    iters: usize,
    file: &Path,
    profile: bool,
) -> Result<(Row, Option<Vec<ProfileRow>>)> {
    let [n, cin, cout] = sz.gblock;
    let cfg = gblock_config(cin, cout)?;
    let model = Model::init(ctx, &cfg, 1)?;
    model.save(ctx, file)?;
    let cdim = cfg.z_chunk() + cfg.shared_dim;
    let x = fill(ctx, &[n, 8, 8, cin], 11)?;
    let c = fill(ctx, &[n, cdim], 12)?;
    let dy = fill(ctx, &[n, 16, 16, cout], 13)?;
    let t = measure(sz.warmup, iters, &mut || {
        ctx.run(|rec| gblock_pass(rec, &cfg, &model.g, &x, &c, &dy))?;
        ctx.wait()
    })?;
    let rows = if profile {
        ctx.take_profile();
        ctx.set_profiling(true);
        let done = ctx
            .run(|rec| gblock_pass(rec, &cfg, &model.g, &x, &c, &dy))
            .and_then(|_| ctx.wait());
        ctx.set_profiling(false);
        done?;
        Some(ctx.take_profile())
    } else {
        None
    };
    let row = Row {
        item: format!("G block fwd+bwd, N={n}, {cin}->{cout}, 8x8->16x16"),
        unit: "ms",
        ours: t.wall * 1e3,
        ours_cpu_s: t.cpu,
        torch: None,
        higher_is_better: false,
    };
    Ok((row, rows))
}

fn run_torch(
    py: &Path,
    sz: &Sizes,
    iters: usize,
    files: &[(String, usize, PathBuf)],
    gblock_file: &Path,
) -> Result<serde_json::Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/torch_bench.py");
    let models: serde_json::Map<String, serde_json::Value> = files
        .iter()
        .map(|(k, _, p)| (k.clone(), p.display().to_string().into()))
        .collect();
    let batches: serde_json::Map<String, serde_json::Value> = files
        .iter()
        .map(|(k, b, _)| (k.clone(), (*b).into()))
        .collect();
    let spec = serde_json::json!({
        "models": models,
        "sample_batches": sz.sample_batches,
        "d_batch": sz.d_batch,
        "train_batch": batches,
        "d_steps": 2,
        "rot_fraction": 0.25,
        "ema_start": 1000,
        "matmul": sz.matmul,
        "convs": sz.convs,
        "kernel_iters": iters.max(sz.kernel_iters),
        "peak_n": sz.peak_n,
        "gblock": sz.gblock,
        "gblock_file": gblock_file.display().to_string(),
        "warmup": sz.warmup,
        "iters": iters,
    });
    let out = std::process::Command::new(py)
        .arg(script)
        .arg(spec.to_string())
        .output()
        .map_err(|e| io(e, &format!("running {}", py.display())))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").to_string();
        return Err(Error::Io(format!(
            "{} {script} failed ({}): {last}",
            py.display(),
            out.status
        )));
    }
    let line = stdout.lines().last().unwrap_or("");
    serde_json::from_str(line).map_err(|e| Error::Format(format!("torch_bench.py output: {e}")))
}

fn fill_torch(rows: &mut [Row], v: &serde_json::Value, sz: &Sizes) {
    for row in rows.iter_mut() {
        let key = |k: &str| v[k].as_f64();
        let item = row.item.clone();
        row.torch = if let Some((preset, what)) = item.split_once(": ") {
            let m = &v[preset];
            if let Some(nb) = what.strip_prefix("G sampling, batch ") {
                m[format!("sample_{nb}")].as_f64()
            } else if what.starts_with("D forward") {
                m["d_forward"].as_f64()
            } else if what.starts_with("train step") {
                m["train_step_ms"].as_f64()
            } else {
                None
            }
        } else if let Some(rest) = item.strip_prefix("matmul ") {
            let m = rest.split('x').next().unwrap_or("");
            key(&format!("matmul_{m}"))
        } else if item.starts_with("G block") {
            key("gblock_ms")
        } else if let Some(rest) = item.strip_prefix("conv3x3 ") {
            // "<pass>, N=.., a->b, hxh": the shape's index in sz.convs.
            let i = sz.convs.iter().position(|&[cn, cin, cout, hw]| {
                rest.ends_with(&format!("N={cn}, {cin}->{cout}, {hw}x{hw}"))
            });
            let pass = if rest.starts_with("forward") {
                "fwd"
            } else if rest.starts_with("input") {
                "dx"
            } else {
                "dw"
            };
            i.and_then(|i| key(&format!("conv_{pass}_{i}")))
        } else {
            None
        };
    }
}

impl Report {
    /// The results as Markdown: the side-by-side table, notes and profiles.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!("Adapter: {}\n\n", self.adapter));
        match self.cpu_peak_gflops {
            Some(p) => s.push_str(&format!(
                "CPU peak (PyTorch float32 matmul): {p:.0} GFLOP/s\n\n"
            )),
            None => s.push_str("CPU peak: not measured (no PyTorch)\n\n"),
        }
        s.push_str(&format!("{}\n\n", self.torch_note));
        s.push_str("| item | unit | ours | ours, CPU s per run | PyTorch | speed ratio (ours / PyTorch) |\n");
        s.push_str("|---|---|---|---|---|---|\n");
        let num = |x: f64| {
            if x >= 100.0 {
                format!("{x:.0}")
            } else if x >= 1.0 {
                format!("{x:.2}")
            } else {
                format!("{x:.3}")
            }
        };
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                r.item,
                r.unit,
                num(r.ours),
                r.ours_cpu_s.map_or("-".into(), |c| format!("{c:.3}")),
                r.torch.map_or("-".into(), num),
                r.ratio().map_or("-".into(), |x| format!("{x:.3}")),
            ));
        }
        s.push('\n');
        for n in &self.notes {
            s.push_str(&format!("- {n}\n"));
        }
        for (what, rows) in &self.profiles {
            s.push_str(&format!(
                "\nPer-kernel time of {what} (FEWLABELS_PROFILE: each dispatch submitted and \
                 waited for alone, so the total exceeds a normal step):\n\n"
            ));
            s.push_str(&format_profile(rows));
        }
        s
    }
}

/// Markers around the generated section of docs/PERFORMANCE.md.
pub const BEGIN: &str = "<!-- BEGIN GENERATED: cargo bench --bench fewlabels -- --write-docs -->";
pub const END: &str = "<!-- END GENERATED: cargo bench --bench fewlabels -->";

/// Replace (or append) the generated section of `doc` with `body`.
pub fn splice(doc: &str, body: &str) -> String {
    let section = format!("{BEGIN}\n{body}\n{END}");
    match (doc.find(BEGIN), doc.find(END)) {
        (Some(a), Some(b)) if b > a => {
            format!("{}{section}{}", &doc[..a], &doc[b + END.len()..])
        }
        _ => format!("{}\n{section}\n", doc.trim_end()),
    }
}
