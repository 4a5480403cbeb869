//! Elementwise ops against PyTorch autograd goldens (tests/golden/gen_elementwise.py).
//! Tolerance 1e-5: each value is one or two f32 operations from its reference.

mod common;
use common::{ctx, Golden};
use fewlabels::ops::elementwise as ew;
use fewlabels::{Recorder, Result};

const TOL: f32 = 1e-5;

/// Both kernel sets run on whatever adapter the tests have: the CPU-adapter kernels (`_v4`,
/// four elements per invocation and no branch before the loads, for tensors of whole vec4s)
/// and the scalar storage-buffer ones.
const CPU_KERNELS: [bool; 2] = [true, false];

fn run<T>(cpu: bool, f: impl FnOnce(&mut Recorder) -> Result<T>) -> T {
    ctx()
        .run(|r| {
            r.set_cpu_kernels(cpu);
            f(r)
        })
        .unwrap()
}

#[test]
fn relu_forward_backward() {
    let g = Golden::load("elementwise");
    for cpu in CPU_KERNELS {
        for c in g.cases("relu_") {
            let x = g.tensor(&format!("{c}/x"));
            let dy = g.tensor(&format!("{c}/dy"));
            let (y, dx) = run(cpu, |r| {
                Ok((ew::relu(r, &x)?, ew::relu_backward(r, &x, &dy)?))
            });
            g.check(&format!("{c}/y"), &y, TOL);
            g.check(&format!("{c}/dx"), &dx, TOL);
        }
    }
}

#[test]
fn tanh_forward_backward() {
    let g = Golden::load("elementwise");
    for cpu in CPU_KERNELS {
        for c in g.cases("tanh_") {
            let x = g.tensor(&format!("{c}/x"));
            let dy = g.tensor(&format!("{c}/dy"));
            let y = run(cpu, |r| ew::tanh(r, &x));
            let dx = run(cpu, |r| ew::tanh_backward(r, &y, &dy));
            g.check(&format!("{c}/y"), &y, TOL);
            g.check(&format!("{c}/dx"), &dx, TOL);
        }
    }
}

#[test]
fn add_forward_backward() {
    let g = Golden::load("elementwise");
    for cpu in CPU_KERNELS {
        for c in g.cases("add_") {
            let a = g.tensor(&format!("{c}/a"));
            let b = g.tensor(&format!("{c}/b"));
            let dy = g.tensor(&format!("{c}/dy"));
            let y = run(cpu, |r| ew::add(r, &a, &b));
            g.check(&format!("{c}/y"), &y, TOL);
            // The gradient of a sum passes dy to both inputs.
            g.check(&format!("{c}/da"), &dy, TOL);
            g.check(&format!("{c}/db"), &dy, TOL);
        }
    }
}

#[test]
fn scale_forward_backward() {
    let g = Golden::load("elementwise");
    for cpu in CPU_KERNELS {
        for c in g.cases("scale_") {
            let x = g.tensor(&format!("{c}/x"));
            let dy = g.tensor(&format!("{c}/dy"));
            let (y, dx) = run(cpu, |r| {
                Ok((ew::scale(r, &x, -1.75)?, ew::scale(r, &dy, -1.75)?))
            });
            g.check(&format!("{c}/y"), &y, TOL);
            g.check(&format!("{c}/dx"), &dx, TOL);
        }
    }
}

#[test]
fn axpy_forward() {
    let g = Golden::load("elementwise");
    for cpu in CPU_KERNELS {
        for c in g.cases("axpy_") {
            let x = g.tensor(&format!("{c}/x"));
            let y = g.tensor(&format!("{c}/y_in"));
            let out = run(cpu, |r| ew::axpy(r, 0.3, &x, &y));
            g.check(&format!("{c}/out"), &out, TOL);
        }
    }
}

#[test]
fn mul_forward_backward() {
    let g = Golden::load("elementwise");
    for cpu in CPU_KERNELS {
        for c in g.cases("mul_") {
            let x = g.tensor(&format!("{c}/x"));
            let y = g.tensor(&format!("{c}/y"));
            let dy = g.tensor(&format!("{c}/dy"));
            let (out, dx, dyy) = run(cpu, |r| {
                Ok((
                    ew::mul(r, &x, &y)?,
                    ew::mul(r, &dy, &y)?,
                    ew::mul(r, &dy, &x)?,
                ))
            });
            g.check(&format!("{c}/out"), &out, TOL);
            g.check(&format!("{c}/dx"), &dx, TOL);
            g.check(&format!("{c}/dy_in"), &dyy, TOL);
        }
    }
}

/// Device-scalar axpy: forward, and its backward built from scale_dev and dot.
/// The dot over up to 4500 terms: tolerance 1e-5 of the largest value.
#[test]
fn axpy_dev_forward_backward() {
    let g = Golden::load("elementwise");
    for c in g.cases("axpydev_") {
        let s = g.tensor(&format!("{c}/s"));
        let x = g.tensor(&format!("{c}/x"));
        let y = g.tensor(&format!("{c}/y"));
        let dy = g.tensor(&format!("{c}/dy"));
        let (out, dx, ds) = ctx()
            .run(|r| {
                Ok((
                    ew::axpy_dev(r, &s, &x, &y)?,
                    ew::scale_dev(r, &s, &dy)?,
                    ew::dot(r, &x, &dy)?,
                ))
            })
            .unwrap();
        g.check(&format!("{c}/out"), &out, TOL);
        g.check(&format!("{c}/dx"), &dx, TOL);
        g.check(&format!("{c}/ds"), &ds, TOL);
        g.check(&format!("{c}/dy_in"), &dy, TOL);
    }
}

/// sum_all and dot: fixed-order sums of up to 4500 values; their backward passes
/// broadcast the output gradient (times the other factor for dot).
#[test]
fn sum_all_and_dot_forward_backward() {
    let g = Golden::load("elementwise");
    for c in g.cases("sumall_") {
        let x = g.tensor(&format!("{c}/x"));
        let out = ctx().run(|r| ew::sum_all(r, &x)).unwrap();
        g.check(&format!("{c}/out"), &out, TOL);
        let grad = g.scalar(&format!("{c}/g"));
        let ones = fewlabels::Tensor::full(ctx(), x.shape(), grad).unwrap();
        g.check(&format!("{c}/dx"), &ones, TOL);
    }
    for c in g.cases("dot_") {
        let x = g.tensor(&format!("{c}/x"));
        let y = g.tensor(&format!("{c}/y"));
        let out = ctx().run(|r| ew::dot(r, &x, &y)).unwrap();
        g.check(&format!("{c}/out"), &out, TOL);
        let grad = g.scalar(&format!("{c}/g"));
        let (dx, dyy) = ctx()
            .run(|r| Ok((ew::scale(r, &y, grad)?, ew::scale(r, &x, grad)?)))
            .unwrap();
        g.check(&format!("{c}/dx"), &dx, TOL);
        g.check(&format!("{c}/dy_in"), &dyy, TOL);
    }
}

#[test]
fn bad_calls_return_errors() {
    let c = ctx();
    let a = fewlabels::Tensor::full(c, &[3], 1.0).unwrap();
    let b = fewlabels::Tensor::full(c, &[4], 1.0).unwrap();
    let i = fewlabels::Tensor::from_i32(c, &[3], &[1, 2, 3]).unwrap();
    assert!(c.run(|r| ew::mul(r, &a, &b)).is_err());
    assert!(c.run(|r| ew::relu(r, &i)).is_err());
    assert!(c.run(|r| ew::dot(r, &a, &b)).is_err());
    assert!(
        c.run(|r| ew::axpy_dev(r, &b, &a, &a)).is_err(),
        "scalar must have one value"
    );
}

/// Timing of ReLU on a fashion_small D activation (160 x 32 x 32 x 8) in both kernel sets.
/// `cargo test --release --test golden_elementwise -- --ignored --nocapture relu_speed`.
#[test]
#[ignore]
fn relu_speed() {
    let c = ctx();
    let n = 160 * 32 * 32 * 8;
    let x = fewlabels::Tensor::full(c, &[n], 0.5).unwrap();
    for cpu in CPU_KERNELS {
        let mut times = Vec::new();
        for _ in 0..7 {
            let t = std::time::Instant::now();
            let y = run(cpu, |r| {
                let mut v = Vec::new();
                for _ in 0..10 {
                    v.push(ew::relu(r, &x)?);
                }
                Ok(v)
            });
            c.wait().unwrap();
            times.push(t.elapsed().as_secs_f64() * 1e3);
            drop(y);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "relu of {n} floats, CPU kernels {cpu}: {:.2} ms per call (10 per submit, median of 7)",
            times[3] / 10.0
        );
    }
}
