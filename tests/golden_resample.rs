//! Resampling ops against PyTorch float64 autograd goldens (tests/golden/gen_resample.py).
//!
//! Tolerances (max |got - want| <= tol * max|want|):
//! - exact (0): upsample2x, avgpool2x2_backward (dy / 4 is exact in f32), maxpool2x2 and its
//!   backward, sum_hw_backward: each output is one input value, or that times a power of 2.
//! - 1e-6: upsample2x_backward and avgpool2x2 (a sum of four f32 values, a few roundings of
//!   2^-24 each), sum_hw (sums of up to 100 terms in four fixed-order partial sums; the
//!   rounding error stays well below 1e-6 of the largest sum at these sizes).

mod common;
use common::{ctx, Golden};
use fewlabels::ops::resample as rs;
use fewlabels::{Error, Recorder, Result, Tensor};

const EXACT: f32 = 0.0;
const SUM_TOL: f32 = 1e-6;

/// Both kernel sets run on whatever adapter the tests have (today they pick the same resample
/// kernels: the `_v4` ones for whole vec4s of channels, else the scalar ones).
const CPU_KERNELS: [bool; 2] = [true, false];

fn run<T>(cpu: bool, f: impl FnOnce(&mut Recorder) -> Result<T>) -> T {
    ctx()
        .run(|r| {
            r.set_cpu_kernels(cpu);
            f(r)
        })
        .unwrap()
}

fn t(g: &Golden, case: &str, name: &str) -> Tensor {
    g.tensor(&format!("{case}/{name}"))
}

#[test]
fn upsample2x_forward_backward() {
    let g = Golden::load("resample");
    for cpu in CPU_KERNELS {
        for c in g.cases("upsample_") {
            let x = t(&g, &c, "x");
            let dy = t(&g, &c, "dy");
            let (y, dx) = run(cpu, |r| {
                Ok((rs::upsample2x(r, &x)?, rs::upsample2x_backward(r, &dy)?))
            });
            g.check(&format!("{c}/y"), &y, EXACT);
            g.check(&format!("{c}/dx"), &dx, SUM_TOL);
        }
    }
}

#[test]
fn avgpool2x2_forward_backward() {
    let g = Golden::load("resample");
    for cpu in CPU_KERNELS {
        for c in g.cases("avgpool_") {
            let x = t(&g, &c, "x");
            let dy = t(&g, &c, "dy");
            let (y, dx) = run(cpu, |r| {
                Ok((rs::avgpool2x2(r, &x)?, rs::avgpool2x2_backward(r, &dy)?))
            });
            g.check(&format!("{c}/y"), &y, SUM_TOL);
            g.check(&format!("{c}/dx"), &dx, EXACT);
        }
    }
}

#[test]
fn maxpool2x2_forward_backward() {
    let g = Golden::load("resample");
    for c in g.cases("maxpool_") {
        let x = t(&g, &c, "x");
        let dy = t(&g, &c, "dy");
        let (y, dx) = ctx()
            .run(|r| Ok((rs::maxpool2x2(r, &x)?, rs::maxpool2x2_backward(r, &x, &dy)?)))
            .unwrap();
        g.check(&format!("{c}/y"), &y, EXACT);
        g.check(&format!("{c}/dx"), &dx, EXACT);
    }
}

#[test]
fn sum_hw_forward_backward() {
    let g = Golden::load("resample");
    for c in g.cases("sumhw_") {
        let x = t(&g, &c, "x");
        let dy = t(&g, &c, "dy");
        let s = g.shape(&format!("{c}/x"));
        let (y, dx) = ctx()
            .run(|r| Ok((rs::sum_hw(r, &x)?, rs::sum_hw_backward(r, &dy, s[1], s[2])?)))
            .unwrap();
        g.check(&format!("{c}/y"), &y, SUM_TOL);
        g.check(&format!("{c}/dx"), &dx, EXACT);
    }
}

/// On ties the gradient goes to the first maximum in scan order (row by row), as PyTorch.
/// Checked for the scalar path (C = 1) and the vec4 path (C = 4, one tie pattern per lane).
#[test]
fn maxpool2x2_backward_ties_take_first_max() {
    // One 2x2 window per pattern; values listed in scan order (0,0), (0,1), (1,0), (1,1).
    let patterns: [[f32; 4]; 4] = [
        [1.0, 1.0, 1.0, 1.0],    // all tie -> (0,0)
        [0.0, 2.0, 2.0, 1.0],    // (0,1) and (1,0) tie -> (0,1)
        [-1.0, -3.0, 5.0, 5.0],  // (1,0) and (1,1) tie -> (1,0)
        [-2.0, -2.0, -2.0, 7.0], // strict max last -> (1,1)
    ];
    let first = [0usize, 1, 2, 3];
    // C = 1: four images [1, 2, 2, 1], NHWC index = n * 4 + position.
    let x1: Vec<f32> = patterns.iter().flatten().copied().collect();
    // C = 4: one image [1, 2, 2, 4], lane l holds pattern l; index = position * 4 + l.
    let mut x4 = vec![0f32; 16];
    for (l, pat) in patterns.iter().enumerate() {
        for (pos, v) in pat.iter().enumerate() {
            x4[pos * 4 + l] = *v;
        }
    }
    let gvals = [10.0f32, 20.0, 30.0, 40.0];
    let cases = [
        ([4usize, 2, 2, 1], x1, [4usize, 1, 1, 1]),
        ([1, 2, 2, 4], x4, [1, 1, 1, 4]),
    ];
    for (xs, xv, ys) in cases {
        let x = Tensor::from_f32(ctx(), &xs, &xv).unwrap();
        let dy = Tensor::from_f32(ctx(), &ys, &gvals).unwrap();
        let (y, dx) = ctx()
            .run(|r| Ok((rs::maxpool2x2(r, &x)?, rs::maxpool2x2_backward(r, &x, &dy)?)))
            .unwrap();
        let y = y.to_f32(ctx()).unwrap();
        let dx = dx.to_f32(ctx()).unwrap();
        for (p, pat) in patterns.iter().enumerate() {
            let max = pat.iter().copied().fold(f32::MIN, f32::max);
            assert_eq!(y[p], max, "C={} pattern {p}: max", xs[3]);
            for pos in 0..4 {
                let i = if xs[3] == 1 { p * 4 + pos } else { pos * 4 + p };
                let want = if pos == first[p] { gvals[p] } else { 0.0 };
                assert_eq!(dx[i], want, "C={} pattern {p} position {pos}", xs[3]);
            }
        }
    }
}

#[test]
fn bad_inputs_return_err() {
    let c = ctx();
    let odd = Tensor::zeros(c, &[3, 5, 5, 8]).unwrap();
    let odd_w = Tensor::zeros(c, &[3, 6, 9, 3]).unwrap();
    let rank3 = Tensor::zeros(c, &[3, 6, 6]).unwrap();
    let ints = Tensor::from_i32(c, &[1, 2, 2, 1], &[1, 2, 3, 4]).unwrap();
    let x = Tensor::zeros(c, &[3, 6, 6, 5]).unwrap();
    let dy_wrong = Tensor::zeros(c, &[3, 3, 3, 4]).unwrap();
    let dy4 = Tensor::zeros(c, &[3, 1, 1, 5]).unwrap();
    let is_shape = |r: fewlabels::Result<Tensor>| matches!(r, Err(Error::Shape(_)));
    let mut rec = c.recorder();
    let r = &mut rec;
    for xx in [&odd, &odd_w] {
        assert!(is_shape(rs::avgpool2x2(r, xx)), "avgpool odd {xx:?}");
        assert!(is_shape(rs::maxpool2x2(r, xx)), "maxpool odd {xx:?}");
        assert!(
            is_shape(rs::upsample2x_backward(r, xx)),
            "upsample bwd odd {xx:?}"
        );
        assert!(
            is_shape(rs::maxpool2x2_backward(r, xx, &dy_wrong)),
            "maxpool bwd odd {xx:?}"
        );
    }
    assert!(is_shape(rs::upsample2x(r, &rank3)));
    assert!(is_shape(rs::upsample2x(r, &ints)));
    assert!(is_shape(rs::avgpool2x2_backward(r, &rank3)));
    assert!(is_shape(rs::sum_hw(r, &rank3)));
    assert!(is_shape(rs::sum_hw(r, &ints)));
    assert!(is_shape(rs::sum_hw_backward(r, &x, 2, 2)));
    assert!(is_shape(rs::maxpool2x2_backward(r, &x, &dy_wrong)));
    assert!(is_shape(rs::maxpool2x2_backward(r, &x, &dy4)));
    let msg = format!("{:?}", rs::avgpool2x2(r, &odd).unwrap_err());
    assert!(msg.contains("avgpool2x2") && msg.contains("even"), "{msg}");
    rec.submit().unwrap();
}

/// Empty sums give zeros; empty tensors record nothing.
#[test]
fn empty_tensors() {
    let c = ctx();
    let x = Tensor::zeros(c, &[2, 0, 0, 4]).unwrap();
    let y = c.run(|r| rs::sum_hw(r, &x)).unwrap();
    assert_eq!(y.shape(), &[2, 4]);
    assert_eq!(y.to_f32(c).unwrap(), vec![0.0; 8]);
    let z = Tensor::zeros(c, &[0, 4, 4, 8]).unwrap();
    let u = c.run(|r| rs::upsample2x(r, &z)).unwrap();
    assert_eq!(u.shape(), &[0, 8, 8, 8]);
}
