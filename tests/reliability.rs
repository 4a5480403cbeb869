//! Reliability of the library under bad inputs and device faults (docs/RELIABILITY.md):
//! - training faults: a D or G step whose loss or a gradient is NaN or infinite is rejected
//!   and leaves every tensor (G, D, G_ema with their u, Adam moments) and every counter
//!   bit-identical, and the next good step gives the same result as if the bad one had never
//!   been tried;
//! - device faults: allocations beyond the device's limits and a destroyed (lost) device give
//!   `Err(Error::Device/Shape/InvalidArgument)` with a message, never a panic;
//! - inputs found by fuzzing (fuzz/corpus) that once crashed a loader are refused cleanly.

mod common;
use common::ctx;
use fewlabels::model::file::TensorFile;
use fewlabels::model::{Config, Model};
use fewlabels::train::{TrainConfig, Trainer, Variant};
use fewlabels::{Context, Error, Tensor};

const N: usize = 4;

fn tiny_trainer(ctx: &Context, variant: Variant, ema_start: u64) -> Trainer {
    let cfg = Config::preset("tiny").unwrap();
    let mut tc = TrainConfig::new(variant);
    tc.ema_start = ema_start;
    tc.ema_decay = 0.9;
    tc.lr_g = 1e-3;
    tc.lr_d = 2e-3;
    let model = Model::init(ctx, &cfg, 5).unwrap();
    Trainer::new(ctx, model, tc).unwrap()
}

/// A smooth real batch in [-1, 1] with one bad value at `bad` (if any).
fn images(ctx: &Context, cfg: &Config, bad: Option<(usize, f32)>) -> Tensor {
    let (r, c) = (cfg.resolution, cfg.channels);
    let mut x: Vec<f32> = (0..N * r * r * c)
        .map(|i| ((i as f32) * 0.37).sin())
        .collect();
    if let Some((i, v)) = bad {
        x[i] = v;
    }
    Tensor::from_f32(ctx, &[N, r, r, c], &x).unwrap()
}

fn z(ctx: &Context, cfg: &Config, seed: f32, bad: Option<f32>) -> Tensor {
    let mut v: Vec<f32> = (0..N * cfg.z_dim)
        .map(|i| ((i as f32) * 0.71 + seed).cos())
        .collect();
    if let Some(b) = bad {
        v[3] = b;
    }
    Tensor::from_f32(ctx, &[N, cfg.z_dim], &v).unwrap()
}

/// Everything a checkpoint holds (all tensors incl. u and Adam state, counters, config).
fn state(ctx: &Context, tr: &Trainer) -> TensorFile {
    tr.to_checkpoint_file(ctx).unwrap()
}

fn assert_same(a: &TensorFile, b: &TensorFile, what: &str) {
    assert_eq!(a.metadata, b.metadata, "{what}: metadata (counters)");
    assert_eq!(
        a.tensors.keys().collect::<Vec<_>>(),
        b.tensors.keys().collect::<Vec<_>>(),
        "{what}: names"
    );
    let differ: Vec<&String> = a
        .tensors
        .iter()
        .filter(|(k, t)| {
            let u = &b.tensors[*k];
            t.shape != u.shape
                || t.data
                    .iter()
                    .map(|x| x.to_bits())
                    .ne(u.data.iter().map(|x| x.to_bits()))
        })
        .map(|(k, _)| k)
        .collect();
    assert!(differ.is_empty(), "{what}: tensors differ: {differ:?}");
}

const LABELS: [i32; N] = [0, -1, 2, 1];
const FAKE_LABELS: [i32; N] = [1, 0, 2, 2];

#[test]
fn non_finite_d_step_is_rejected_and_changes_nothing() {
    let ctx = ctx();
    let mut a = tiny_trainer(ctx, Variant::S3ganCo, 2);
    let mut b = tiny_trainer(ctx, Variant::S3ganCo, 2);
    let cfg = a.model.cfg.clone();
    let good = images(ctx, &cfg, None);
    let zf = z(ctx, &cfg, 0.0, None);
    // One good step first, so that Adam moments and counters are not all zero.
    for t in [&mut a, &mut b] {
        let r = t.d_step(ctx, &good, &LABELS, &zf, &FAKE_LABELS).unwrap();
        assert!(!r.rejected && r.total.is_finite(), "{r:?}");
    }
    let before = state(ctx, &a);
    assert_same(&before, &state(ctx, &b), "twins");
    for (what, bad) in [("NaN pixel", f32::NAN), ("infinite pixel", f32::INFINITY)] {
        let x = images(ctx, &cfg, Some((5, bad)));
        let r = a.d_step(ctx, &x, &LABELS, &zf, &FAKE_LABELS).unwrap();
        // (The loss itself may come out finite: relu and max drop a NaN on some devices;
        // the gradients do not.)
        assert!(r.rejected, "{what}: {r:?}");
        assert_eq!(a.d_steps_done(), 1, "{what}");
        assert_same(&before, &state(ctx, &a), what);
    }
    // The run goes on as if the bad steps had not been tried.
    let z2 = z(ctx, &cfg, 1.0, None);
    for t in [&mut a, &mut b] {
        let r = t.d_step(ctx, &good, &LABELS, &z2, &FAKE_LABELS).unwrap();
        assert!(!r.rejected, "{r:?}");
    }
    assert_eq!(a.d_steps_done(), 2);
    assert_same(&state(ctx, &a), &state(ctx, &b), "after a good step");
}

#[test]
fn non_finite_g_step_is_rejected_and_changes_nothing() {
    let ctx = ctx();
    // ema_start 3: G step 2 copies G into G_ema, step 3 averages; both paths are tried.
    let mut a = tiny_trainer(ctx, Variant::S3ganCo, 3);
    let mut b = tiny_trainer(ctx, Variant::S3ganCo, 3);
    let cfg = a.model.cfg.clone();
    for t in [&mut a, &mut b] {
        let r = t
            .g_step(ctx, &z(ctx, &cfg, 0.0, None), &FAKE_LABELS)
            .unwrap();
        assert!(!r.rejected, "{r:?}");
    }
    for step in 2..=3u64 {
        let before = state(ctx, &a);
        for bad in [f32::NAN, f32::NEG_INFINITY] {
            let r = a
                .g_step(ctx, &z(ctx, &cfg, 5.0, Some(bad)), &FAKE_LABELS)
                .unwrap();
            assert!(r.rejected, "step {step}, z {bad}: {r:?}");
            assert_eq!(a.g_steps_done(), step - 1);
            assert_same(&before, &state(ctx, &a), &format!("G step {step}, z {bad}"));
        }
        let zs = z(ctx, &cfg, step as f32, None);
        for t in [&mut a, &mut b] {
            let r = t.g_step(ctx, &zs, &FAKE_LABELS).unwrap();
            assert!(!r.rejected, "{r:?}");
        }
        assert_eq!(a.g_steps_done(), step);
        assert_same(&state(ctx, &a), &state(ctx, &b), &format!("G step {step}"));
    }
}

#[test]
fn diverging_learning_rate_is_rejected_not_applied() {
    let ctx = ctx();
    let mut tc = TrainConfig::new(Variant::S3ganCo);
    // Finite as f64, infinite as the f32 step size: refused before any work.
    tc.lr_d = 1e39;
    let e = tc.validate().unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("lr_d"),
        "{e}"
    );
    let mut t = tiny_trainer(ctx, Variant::S3ganCo, 2);
    let cfg = t.model.cfg.clone();
    let (x, zf) = (images(ctx, &cfg, None), z(ctx, &cfg, 0.0, None));
    let before = state(ctx, &t);
    t.cfg.lr_d = 1e39;
    let e = t.d_step(ctx, &x, &LABELS, &zf, &FAKE_LABELS).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    t.cfg.lr_d = 2e-3;
    assert_same(&before, &state(ctx, &t), "refused learning rate");
}
