//! Adam and the weight EMA against PyTorch float64 goldens (tests/golden/gen_optim.py).
//!
//! Tolerances (max |err| <= tol * max|reference|), three steps in place on the device:
//! - Adam p: 1e-6. p is O(1) and each step moves it by about lr (<= 1e-3), so this checks
//!   the update itself to ~1e-3 relative; f32 rounding of p (6e-8) is far below it
//!   (seen on lavapipe: <= 7.5e-8).
//! - Adam exp_avg, exp_avg_sq: 1e-6; a few f32 multiply-adds from the reference (seen: <= 1e-7).
//! - EMA: 1e-6; two f32 products and a sum per step (seen: <= 1.8e-7).

mod common;
use common::{ctx, Golden};
use fewlabels::ops::optim::{adam_step, ema_update, AdamConfig};
use fewlabels::{Error, Tensor};

const TOL: f32 = 1e-6;

/// `Golden::check`, printing the error relative to max|reference| (see with --nocapture).
fn check(g: &Golden, name: &str, got: &Tensor, tol: f32) {
    let want = g.f32(name);
    let got_v = got.to_f32(ctx()).unwrap();
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-20);
    let err = got_v
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("{name}: max error / max|ref| = {:.2e}", err / scale);
    g.check(name, got, tol);
}

#[test]
fn adam_three_steps_in_place() {
    let g = Golden::load("optim");
    for c in g.cases("adam_") {
        // The generator's exact hyper-parameters (its stored f32 copy would round 0.999).
        let cfg = match c.as_str() {
            "adam_b0_lr1e-3" => AdamConfig {
                lr: 1e-3,
                beta1: 0.0,
                beta2: 0.999,
                eps: 1e-8,
            },
            "adam_b09_lr4e-4" => AdamConfig {
                lr: 4e-4,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            other => panic!("unknown Adam case {other}"),
        };
        let stored = g.f32(&format!("{c}/config"));
        assert_eq!(
            stored,
            [cfg.lr, cfg.beta1, cfg.beta2, cfg.eps].map(|x| x as f32)
        );
        let p = g.tensor(&format!("{c}/p0"));
        let shape = p.shape().to_vec();
        let m = Tensor::zeros(ctx(), &shape).unwrap();
        let v = Tensor::zeros(ctx(), &shape).unwrap();
        for step in 1..=3u32 {
            let grad = g.tensor(&format!("{c}/g{step}"));
            ctx()
                .run(|r| adam_step(r, &p, &grad, &m, &v, cfg, step))
                .unwrap();
            check(&g, &format!("{c}/p{step}"), &p, TOL);
            check(&g, &format!("{c}/m{step}"), &m, TOL);
            check(&g, &format!("{c}/v{step}"), &v, TOL);
        }
    }
}

#[test]
fn ema_three_updates_in_place() {
    let g = Golden::load("optim");
    for c in g.cases("ema_") {
        let decay = match c.as_str() {
            "ema_d09" => 0.9,
            "ema_d0999" => 0.999,
            other => panic!("unknown EMA case {other}"),
        };
        assert_eq!(g.scalar(&format!("{c}/decay")), decay as f32);
        let ema = g.tensor(&format!("{c}/ema0"));
        for step in 1..=3 {
            let p = g.tensor(&format!("{c}/p{step}"));
            ctx().run(|r| ema_update(r, &ema, &p, decay)).unwrap();
            check(&g, &format!("{c}/ema{step}"), &ema, TOL);
        }
    }
}

#[test]
fn bad_inputs_are_errors() {
    let c = ctx();
    let p = Tensor::zeros(c, &[5, 7]).unwrap();
    let g = Tensor::zeros(c, &[5, 7]).unwrap();
    let m = Tensor::zeros(c, &[5, 7]).unwrap();
    let v = Tensor::zeros(c, &[5, 7]).unwrap();
    let other = Tensor::zeros(c, &[7, 5]).unwrap();
    let ints = Tensor::from_i32(c, &[5, 7], &[0; 35]).unwrap();
    let cfg = AdamConfig {
        lr: 1e-4,
        beta1: 0.0,
        beta2: 0.999,
        eps: 1e-8,
    };
    let mut rec = c.recorder();
    let r = &mut rec;
    assert!(matches!(
        adam_step(r, &p, &other, &m, &v, cfg, 1),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        adam_step(r, &p, &g, &ints, &v, cfg, 1),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        adam_step(r, &p, &g, &m, &v, cfg, 0),
        Err(Error::InvalidArgument(_))
    ));
    let bad_beta = AdamConfig { beta2: 1.0, ..cfg };
    assert!(matches!(
        adam_step(r, &p, &g, &m, &v, bad_beta, 1),
        Err(Error::InvalidArgument(_))
    ));
    // The same buffer as parameter and state is a binding conflict.
    assert!(adam_step(r, &p, &g, &p, &v, cfg, 1).is_err());
    assert!(matches!(
        ema_update(r, &p, &other, 0.9),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        ema_update(r, &p, &g, 1.5),
        Err(Error::InvalidArgument(_))
    ));
    drop(rec);
}
