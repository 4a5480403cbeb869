//! Pieces shared by the benchmarks (and by tests/bench_quick.rs through the suite).
#![allow(dead_code)]

use fewlabels::model::Model;
use fewlabels::train::{TrainConfig, Trainer, Variant};
use fewlabels::{Context, Result, Tensor};
use std::time::Instant;

/// CPU seconds this process has used (user + system), from /proc/self/stat; None elsewhere.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // Linux reports clock ticks of 1/100 s on every common configuration.
    Some((utime + stime) / 100.0)
}

/// Wall and CPU seconds of one run.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub wall: f64,
    pub cpu: Option<f64>,
}

/// Time one call of `f`.
pub fn time_once(f: &mut dyn FnMut() -> Result<()>) -> Result<Timing> {
    let c0 = cpu_seconds();
    let t0 = Instant::now();
    f()?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = match (c0, cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    Ok(Timing { wall, cpu })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// `warmup` untimed calls, then the median wall (and CPU) time of `iters` calls.
pub fn measure(warmup: usize, iters: usize, f: &mut dyn FnMut() -> Result<()>) -> Result<Timing> {
    for _ in 0..warmup {
        f()?;
    }
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    for _ in 0..iters.max(1) {
        let t = time_once(f)?;
        walls.push(t.wall);
        if let Some(c) = t.cpu {
            cpus.push(c);
        }
    }
    let cpu = (cpus.len() == walls.len()).then(|| median(cpus));
    Ok(Timing {
        wall: median(walls),
        cpu,
    })
}

/// A deterministic pseudo-random value in [-1, 1) for index `i`.
pub fn noise(seed: u64, i: u64) -> f32 {
    let mut x = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(i.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    x ^= x >> 31;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 29;
    ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// A real batch for the train step: NHWC images in [-1, 1] and labels, every other row
/// unlabelled (-1), as in semi-supervised S3GAN training.
pub fn real_batch(m: &Model, n: usize) -> (Vec<f32>, Vec<i32>) {
    let c = &m.cfg;
    let len = n * c.resolution * c.resolution * c.channels;
    let x = (0..len as u64).map(|i| noise(7, i)).collect();
    let y = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                (i / 2 % c.num_classes) as i32
            } else {
                -1
            }
        })
        .collect();
    (x, y)
}

/// One full s3gan-co train step as a training loop runs it: `d_steps` D steps on the real
/// batch, then one G step, each with a fresh fake batch.
pub fn train_step(ctx: &Context, t: &mut Trainer, x: &Tensor, y: &[i32]) -> Result<()> {
    let n = y.len();
    for _ in 0..t.cfg.d_steps {
        let (z, yf) = t.fake_batch(ctx, n)?;
        t.d_step(ctx, x, y, &z, &yf)?;
    }
    let (z, yf) = t.fake_batch(ctx, n)?;
    t.g_step(ctx, &z, &yf)?;
    Ok(())
}

/// An s3gan-co trainer with the default hyper-parameters.
pub fn trainer(ctx: &Context, m: Model) -> Result<Trainer> {
    Trainer::new(ctx, m, TrainConfig::new(Variant::S3ganCo))
}
