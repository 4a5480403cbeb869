//! The golden comparison itself can fail: a perturbed golden is caught, and so is a
//! missing tensor. (Guards against a harness that passes everything.)

mod common;
use common::{check_close, ctx, Golden};

#[test]
fn perturbed_reference_fails_the_comparison() {
    let g = Golden::load("elementwise");
    let case = &g.cases("tanh_")[0];
    let x = g.tensor(&format!("{case}/x"));
    let y = ctx()
        .run(|r| fewlabels::ops::elementwise::tanh(r, &x))
        .unwrap();
    let got = y.to_f32(ctx()).unwrap();
    let want = g.f32(&format!("{case}/y"));
    check_close("unperturbed", &got, &want, 1e-5);
    let mut bad = want.clone();
    bad[want.len() / 2] += 1e-3;
    let r = std::panic::catch_unwind(|| check_close("perturbed", &got, &bad, 1e-5));
    assert!(
        r.is_err(),
        "a perturbation of 1e-3 must fail a 1e-5 tolerance"
    );
}

#[test]
fn nan_fails_the_comparison() {
    let r = std::panic::catch_unwind(|| check_close("nan", &[1.0, f32::NAN], &[1.0, 1.0], 1.0));
    assert!(r.is_err());
}

#[test]
fn missing_golden_tensor_fails() {
    let g = Golden::load("elementwise");
    let r = std::panic::catch_unwind(|| g.f32("no_such_case/x"));
    assert!(r.is_err());
}
