//! Elementwise ops against PyTorch autograd goldens (tests/golden/gen_elementwise.py).
//! Tolerance 1e-5: each value is one or two f32 operations from its reference.

mod common;
use common::{ctx, Golden};
use fewlabels::ops::elementwise as ew;

const TOL: f32 = 1e-5;

#[test]
fn relu_forward_backward() {
    let g = Golden::load("elementwise");
    for c in g.cases("relu_") {
        let x = g.tensor(&format!("{c}/x"));
        let dy = g.tensor(&format!("{c}/dy"));
        let (y, dx) = ctx()
            .run(|r| Ok((ew::relu(r, &x)?, ew::relu_backward(r, &x, &dy)?)))
            .unwrap();
        g.check(&format!("{c}/y"), &y, TOL);
        g.check(&format!("{c}/dx"), &dx, TOL);
    }
}

#[test]
fn tanh_forward_backward() {
    let g = Golden::load("elementwise");
    for c in g.cases("tanh_") {
        let x = g.tensor(&format!("{c}/x"));
        let dy = g.tensor(&format!("{c}/dy"));
        let y = ctx().run(|r| ew::tanh(r, &x)).unwrap();
        let dx = ctx().run(|r| ew::tanh_backward(r, &y, &dy)).unwrap();
        g.check(&format!("{c}/y"), &y, TOL);
        g.check(&format!("{c}/dx"), &dx, TOL);
    }
}

#[test]
fn add_forward_backward() {
    let g = Golden::load("elementwise");
    for c in g.cases("add_") {
        let a = g.tensor(&format!("{c}/a"));
        let b = g.tensor(&format!("{c}/b"));
        let dy = g.tensor(&format!("{c}/dy"));
        let y = ctx().run(|r| ew::add(r, &a, &b)).unwrap();
        g.check(&format!("{c}/y"), &y, TOL);
        // The gradient of a sum passes dy to both inputs.
        g.check(&format!("{c}/da"), &dy, TOL);
        g.check(&format!("{c}/db"), &dy, TOL);
    }
}

#[test]
fn scale_forward_backward() {
    let g = Golden::load("elementwise");
    for c in g.cases("scale_") {
        let x = g.tensor(&format!("{c}/x"));
        let dy = g.tensor(&format!("{c}/dy"));
        let (y, dx) = ctx()
            .run(|r| Ok((ew::scale(r, &x, -1.75)?, ew::scale(r, &dy, -1.75)?)))
            .unwrap();
        g.check(&format!("{c}/y"), &y, TOL);
        g.check(&format!("{c}/dx"), &dx, TOL);
    }
}

#[test]
fn axpy_forward() {
    let g = Golden::load("elementwise");
    for c in g.cases("axpy_") {
        let x = g.tensor(&format!("{c}/x"));
        let y = g.tensor(&format!("{c}/y_in"));
        let out = ctx().run(|r| ew::axpy(r, 0.3, &x, &y)).unwrap();
        g.check(&format!("{c}/out"), &out, TOL);
    }
}
