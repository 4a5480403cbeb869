//! Adam and the weight EMA against PyTorch float64 goldens (tests/golden/gen_optim.py).
//!
//! Tolerances (max |err| <= tol * max|reference|), three steps in place on the device:
//! - Adam p: 1e-6. p is O(1) and each step moves it by about lr (<= 1e-3), so this checks
//!   the update itself to ~1e-3 relative; f32 rounding of p (6e-8) is far below it
//!   (seen on lavapipe: <= 7.5e-8).
//! - Adam exp_avg, exp_avg_sq: 1e-6; a few f32 multiply-adds from the reference (seen: <= 1e-7).
//! - EMA: 1e-6; two f32 products and a sum per step (seen: <= 1.8e-7).
//!
//! The step guard's grouped kernels (`check_many`, `copy_guarded_many`,
//! `restore_if_flagged_many`) are checked exactly: flags and copies have no rounding.

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

/// `StepFlag::check_many` (seven tensors per dispatch, the rest alone) sets the flag for a
/// NaN or infinity in any slot, on any length, and only then.
#[test]
fn check_many_finds_a_bad_value_in_every_slot() {
    use fewlabels::ops::optim::StepFlag;
    let c = ctx();
    let sizes = [5usize, 300, 7, 1, 1030, 2, 9, 11];
    let data: Vec<Vec<f32>> = sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| (0..n).map(|i| (i + k) as f32 * 0.5 - 3.0).collect())
        .collect();
    let flag_after = |bad: Option<(usize, f32)>| {
        let ts: Vec<Tensor> = data
            .iter()
            .enumerate()
            .map(|(k, d)| {
                let mut d = d.clone();
                if let Some((slot, v)) = bad {
                    if slot == k {
                        let last = d.len() - 1;
                        d[last] = v;
                    }
                }
                Tensor::from_f32(c, &[d.len()], &d).unwrap()
            })
            .collect();
        let flag = StepFlag::new(c).unwrap();
        c.run(|r| flag.check_many(r, &ts.iter().collect::<Vec<_>>()))
            .unwrap();
        flag.flag.to_f32(c).unwrap()[0]
    };
    assert_eq!(flag_after(None), 0.0);
    for slot in 0..sizes.len() {
        for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            assert_eq!(flag_after(Some((slot, v))), 1.0, "slot {slot}, value {v}");
        }
    }
}

/// The grouped guarded copies (three pairs per dispatch, the rest alone) copy every pair
/// whole when the flag says so, and nothing otherwise.
#[test]
fn grouped_guarded_copies_follow_the_flag() {
    use fewlabels::ops::optim::{copy_guarded_many, restore_if_flagged_many, StepFlag};
    let c = ctx();
    let sizes = [3usize, 257, 1, 40];
    for set in [false, true] {
        for restore in [false, true] {
            let src: Vec<Tensor> = sizes
                .iter()
                .map(|&n| Tensor::from_f32(c, &[n], &vec![1.5; n]).unwrap())
                .collect();
            let dst: Vec<Tensor> = sizes
                .iter()
                .map(|&n| Tensor::from_f32(c, &[n], &vec![-2.0; n]).unwrap())
                .collect();
            let flag = StepFlag::new(c).unwrap();
            if set {
                flag.flag.write_f32(c, &[1.0]).unwrap();
            }
            let pairs: Vec<(&Tensor, &Tensor)> = src.iter().zip(&dst).collect();
            c.run(|r| {
                if restore {
                    restore_if_flagged_many(r, &pairs, &flag)
                } else {
                    copy_guarded_many(r, &pairs, &flag)
                }
            })
            .unwrap();
            let copied = set == restore;
            for (k, d) in dst.iter().enumerate() {
                let want = if copied { 1.5 } else { -2.0 };
                assert_eq!(
                    d.to_f32(c).unwrap(),
                    vec![want; sizes[k]],
                    "pair {k}, flag {set}, restore {restore}"
                );
            }
        }
    }
}

/// The grouped EMA update gives the single update's bits on every pair, and nothing when the
/// flag is set.
#[test]
fn grouped_ema_update_matches_the_single_one() {
    use fewlabels::ops::optim::{ema_update_guarded, ema_update_guarded_many, StepFlag};
    let c = ctx();
    let sizes = [3usize, 257, 1, 40, 9];
    let make = |n: usize, s: f32| -> Tensor {
        let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37 + s).sin()).collect();
        Tensor::from_f32(c, &[n], &v).unwrap()
    };
    for set in [false, true] {
        let params: Vec<Tensor> = sizes.iter().map(|&n| make(n, 1.0)).collect();
        let grouped: Vec<Tensor> = sizes.iter().map(|&n| make(n, 2.0)).collect();
        let single: Vec<Tensor> = sizes.iter().map(|&n| make(n, 2.0)).collect();
        let flag = StepFlag::new(c).unwrap();
        if set {
            flag.flag.write_f32(c, &[1.0]).unwrap();
        }
        let pairs: Vec<(&Tensor, &Tensor)> = params.iter().zip(&grouped).collect();
        c.run(|r| {
            ema_update_guarded_many(r, &pairs, 0.999, &flag)?;
            for (p, a) in params.iter().zip(&single) {
                ema_update_guarded(r, a, p, 0.999, &flag)?;
            }
            Ok(())
        })
        .unwrap();
        for (k, (g, s)) in grouped.iter().zip(&single).enumerate() {
            let (g, s) = (g.to_f32(c).unwrap(), s.to_f32(c).unwrap());
            assert_eq!(
                g.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                s.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "pair {k}, flag {set}"
            );
            let before = make(sizes[k], 2.0).to_f32(c).unwrap();
            assert_eq!(g == before, set, "pair {k}: flag {set}");
        }
    }
}
