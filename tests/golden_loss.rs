//! Losses against PyTorch float64 autograd goldens (tests/golden/gen_loss.py).
//! Tolerance 1e-5 x max|reference| for every loss and gradient: the hinge gradients are +-1/N
//! (one rounding), the losses f32 sums of at most a few hundred terms in a fixed tree, and the
//! cross-entropy terms a log-sum-exp over at most 10 classes. Argmax is compared exactly.

mod common;
use common::{ctx, Golden};
use fewlabels::ops::loss;
use fewlabels::Tensor;

const TOL: f32 = 1e-5;

fn check(g: &Golden, name: &str, got: &Tensor) {
    let want = g.f32(name);
    let v = got.to_f32(ctx()).unwrap();
    let scale = want.iter().fold(0f32, |m, w| m.max(w.abs()));
    let err = v
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!(
        "{name}: max error {:.2e} x max|ref| ({:.2e} abs)",
        err / scale.max(1e-20),
        err
    );
    g.check(name, got, TOL);
}

#[test]
fn hinge_d() {
    let g = Golden::load("loss");
    for c in g.cases("hinge_d_") {
        let real = g.tensor(&format!("{c}/real"));
        let fake = g.tensor(&format!("{c}/fake"));
        let out = ctx().run(|r| loss::hinge_d(r, &real, &fake)).unwrap();
        check(&g, &format!("{c}/loss"), &out.loss);
        check(&g, &format!("{c}/d_real"), &out.d_real);
        check(&g, &format!("{c}/d_fake"), &out.d_fake);
    }
}

#[test]
fn hinge_g() {
    let g = Golden::load("loss");
    for c in g.cases("hinge_g_") {
        let fake = g.tensor(&format!("{c}/fake"));
        let out = ctx().run(|r| loss::hinge_g(r, &fake)).unwrap();
        check(&g, &format!("{c}/loss"), &out.loss);
        check(&g, &format!("{c}/d_fake"), &out.d_fake);
    }
}

#[test]
fn cross_entropy() {
    let g = Golden::load("loss");
    for c in g.cases("ce_") {
        let logits = g.tensor(&format!("{c}/logits"));
        let labels = g.tensor(&format!("{c}/labels"));
        let w = g.scalar(&format!("{c}/weight"));
        let out = ctx()
            .run(|r| loss::cross_entropy(r, &logits, &labels, w))
            .unwrap();
        if g.i32(&format!("{c}/labels")).iter().all(|&l| l < 0) {
            // All rows masked: exactly zero (the generic check divides by max|ref| = 0).
            assert_eq!(out.loss.to_f32(ctx()).unwrap(), [0.0], "{c}/loss");
            assert!(
                out.dlogits.to_f32(ctx()).unwrap().iter().all(|&v| v == 0.0),
                "{c}/dlogits"
            );
            continue;
        }
        check(&g, &format!("{c}/loss"), &out.loss);
        check(&g, &format!("{c}/dlogits"), &out.dlogits);
    }
}

/// Large logits do not overflow (log-sum-exp with the row max subtracted).
#[test]
fn cross_entropy_is_stable() {
    let c = ctx();
    let logits = Tensor::from_f32(c, &[2, 3], &[1000., 0., -1000., 0., 500., 500.]).unwrap();
    let labels = Tensor::from_i32(c, &[2], &[0, 1]).unwrap();
    let out = c
        .run(|r| loss::cross_entropy(r, &logits, &labels, 1.0))
        .unwrap();
    // Row 0: loss 0; row 1: log 2. Mean: log(2) / 2.
    let l = out.loss.to_f32(c).unwrap()[0];
    assert!((l - std::f32::consts::LN_2 / 2.0).abs() < 1e-6, "{l}");
    let d = out.dlogits.to_f32(c).unwrap();
    let want = [0., 0., 0., 0., -0.25, 0.25];
    assert!(
        d.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6),
        "{d:?}"
    );
}

#[test]
fn argmax() {
    let g = Golden::load("loss");
    for c in g.cases("argmax_") {
        let x = g.tensor(&format!("{c}/x"));
        let idx = ctx().run(|r| loss::argmax(r, &x)).unwrap();
        g.check_i32(&format!("{c}/idx"), &idx);
    }
}

/// Ties go to the first index, like torch.argmax.
#[test]
fn argmax_ties_take_first() {
    let c = ctx();
    let x = Tensor::from_f32(
        c,
        &[3, 4],
        &[1., 3., 3., 0., 2., 2., 2., 2., -1., -5., -1., -0.5],
    )
    .unwrap();
    let idx = c.run(|r| loss::argmax(r, &x)).unwrap();
    assert_eq!(idx.to_i32(c).unwrap(), [1, 0, 3]);
}

#[test]
fn bad_calls_return_err() {
    let c = ctx();
    let s5 = Tensor::zeros(c, &[5]).unwrap();
    let s51 = Tensor::zeros(c, &[5, 1]).unwrap();
    let si = Tensor::from_i32(c, &[2], &[0, 1]).unwrap();
    let logits = Tensor::zeros(c, &[2, 3]).unwrap();
    let labels = Tensor::from_i32(c, &[2], &[0, -1]).unwrap();
    let labels3 = Tensor::from_i32(c, &[3], &[0, 1, 2]).unwrap();
    let mut r = c.recorder();
    assert!(loss::hinge_d(&mut r, &s51, &s5).is_err());
    assert!(loss::hinge_d(&mut r, &s5, &si).is_err());
    assert!(loss::hinge_g(&mut r, &si).is_err());
    assert!(loss::cross_entropy(&mut r, &logits, &labels3, 1.0).is_err());
    assert!(loss::cross_entropy(&mut r, &logits, &s5, 1.0).is_err());
    assert!(loss::cross_entropy(&mut r, &s5, &labels, 1.0).is_err());
    assert!(loss::cross_entropy(&mut r, &logits, &labels, f32::NAN).is_err());
    assert!(loss::argmax(&mut r, &s5).is_err());
    assert!(loss::argmax(&mut r, &si).is_err());
    assert!(loss::cross_entropy(&mut r, &logits, &labels, 1.0).is_ok());
    r.submit().unwrap();
}

/// real and fake may be one tensor (the recorder refuses one buffer at two bindings; the op
/// copies).
#[test]
fn hinge_d_with_aliased_inputs() {
    let c = ctx();
    let s = Tensor::from_f32(c, &[2], &[0.5, -2.0]).unwrap();
    let out = c.run(|r| loss::hinge_d(r, &s, &s)).unwrap();
    // mean(relu(1 - s)) = (0.5 + 3) / 2; mean(relu(1 + s)) = (1.5 + 0) / 2.
    assert_eq!(out.loss.to_f32(c).unwrap(), [2.5]);
    assert_eq!(out.d_real.to_f32(c).unwrap(), [-0.5, -0.5]);
    assert_eq!(out.d_fake.to_f32(c).unwrap(), [0.5, 0.0]);
}
