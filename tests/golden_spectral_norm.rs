//! Spectral normalisation against PyTorch float64 goldens (tests/golden/gen_spectral_norm.py)
//! and, for a shape larger than the kernels' strides and partial-sum counts, against a float64
//! host reference.
//!
//! Every case runs on both forward paths: the one-dispatch subgroup kernel of CPU adapters
//! (`sn_forward_sg`, taken for weights of whole vec4s; 7x5 and 5x11 are not, and take the
//! other path there too) and the five lane-parallel kernels of GPUs.
//!
//! Tolerances (max |err| <= tol * max|reference|):
//! - training forward, three consecutive calls with u evolving on the device: u', v, sigma,
//!   W_sn and dW at 1e-5 (seen on lavapipe: <= 2.2e-7). Each value is a short f32 dot product (<= 72 terms) plus two
//!   normalisations from the reference; the differences in u carried from call to call stay
//!   at the f32 rounding level because power iteration does not amplify them.
//! - eval forward and its backward: 1e-5, same reasoning (seen: <= 1e-7).
//! - large host-reference case (300 x 270, 81000 elements): 2e-5, the reductions are long
//!   f32 sums (up to 81000 terms in <G, W_sn>) (seen: <= 4.4e-7).

mod common;
use common::{check_close, ctx, Golden};
use fewlabels::ops::spectral_norm::{spectral_norm, spectral_norm_backward};
use fewlabels::{Error, Tensor};

const TOL: f32 = 1e-5;
const TOL_LARGE: f32 = 2e-5;

/// (CPU kernels, subgroups): the fused forward where the device has subgroups, then the
/// GPU kernels.
const PATHS: [(bool, bool); 2] = [(true, true), (false, false)];

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

/// `check_close`, printing the relative error as [`check`] does.
fn close(name: &str, got: &[f32], want: &[f32], tol: f32) {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-20);
    let err = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("{name}: max error / max|ref| = {:.2e}", err / scale);
    check_close(name, got, want, tol);
}

#[test]
fn training_forward_backward_three_calls() {
    let g = Golden::load("spectral_norm");
    for (cpu, sg) in PATHS {
        for c in g.cases("train_") {
            eprintln!("cpu kernels {cpu}, subgroups {sg}: {c}");
            let w = g.tensor(&format!("{c}/w"));
            let u = g.tensor(&format!("{c}/u_init"));
            for step in 0..3 {
                let dy = g.tensor(&format!("{c}/g{step}"));
                let (out, dw) = ctx()
                    .run(|r| {
                        r.set_cpu_kernels(cpu);
                        r.set_subgroups(sg);
                        let out = spectral_norm(r, &w, &u, true)?;
                        let dw = spectral_norm_backward(r, &out.saved, &dy)?;
                        Ok((out, dw))
                    })
                    .unwrap();
                check(&g, &format!("{c}/w_sn{step}"), &out.w_sn, TOL);
                check(&g, &format!("{c}/u{step}"), &out.saved.u, TOL);
                check(&g, &format!("{c}/v{step}"), &out.saved.v, TOL);
                check(&g, &format!("{c}/sigma{step}"), &out.saved.sigma, TOL);
                check(&g, &format!("{c}/dw{step}"), &dw, TOL);
                // The persistent u now holds u'.
                check(&g, &format!("{c}/u{step}"), &u, TOL);
            }
        }
    }
}

#[test]
fn eval_forward_backward_keeps_u() {
    let g = Golden::load("spectral_norm");
    for (cpu, sg) in PATHS {
        for c in g.cases("eval_") {
            eprintln!("cpu kernels {cpu}, subgroups {sg}: {c}");
            let w = g.tensor(&format!("{c}/w"));
            let u = g.tensor(&format!("{c}/u"));
            let dy = g.tensor(&format!("{c}/g"));
            let (out, dw) = ctx()
                .run(|r| {
                    r.set_cpu_kernels(cpu);
                    r.set_subgroups(sg);
                    let out = spectral_norm(r, &w, &u, false)?;
                    let dw = spectral_norm_backward(r, &out.saved, &dy)?;
                    Ok((out, dw))
                })
                .unwrap();
            check(&g, &format!("{c}/w_sn"), &out.w_sn, TOL);
            check(&g, &format!("{c}/v"), &out.saved.v, TOL);
            check(&g, &format!("{c}/sigma"), &out.saved.sigma, TOL);
            check(&g, &format!("{c}/dw"), &dw, TOL);
            // u is unchanged, bit for bit.
            assert_eq!(u.to_f32(ctx()).unwrap(), g.f32(&format!("{c}/u")));
            assert_eq!(out.saved.u.to_f32(ctx()).unwrap(), g.f32(&format!("{c}/u")));
        }
    }
}

/// Deterministic values in [-1, 1) from a 64-bit LCG.
fn lcg(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn l2n(x: &[f64]) -> Vec<f64> {
    let n = x.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
    x.iter().map(|a| a / n).collect()
}

/// Host float64 reference: (W_sn, u', v, sigma, dW).
#[allow(clippy::type_complexity)]
fn host_reference(
    w: &[f32],
    u: &[f32],
    g: &[f32],
    rows: usize,
    cols: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>, f64, Vec<f64>) {
    let w: Vec<f64> = w.iter().map(|&a| a as f64).collect();
    let mut t = vec![0f64; cols];
    for r in 0..rows {
        for c in 0..cols {
            t[c] += w[r * cols + c] * u[r] as f64;
        }
    }
    let v = l2n(&t);
    let s: Vec<f64> = (0..rows)
        .map(|r| (0..cols).map(|c| w[r * cols + c] * v[c]).sum())
        .collect();
    let un = l2n(&s);
    let sigma: f64 = un.iter().zip(&s).map(|(a, b)| a * b).sum();
    let w_sn: Vec<f64> = w.iter().map(|a| a / sigma).collect();
    let dot: f64 = w_sn.iter().zip(g).map(|(a, &b)| a * b as f64).sum();
    let dw: Vec<f64> = (0..rows * cols)
        .map(|i| (g[i] as f64 - dot * un[i / cols] * v[i % cols]) / sigma)
        .collect();
    (w_sn, un, v, sigma, dw)
}

fn to32(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&a| a as f32).collect()
}

#[test]
fn large_shape_matches_host_reference_and_is_deterministic() {
    // rows > 256 (one-workgroup reductions stride), cols > 256, 81000 elements > 256 partial
    // sums of 1024.
    let (o, i, kh, kw) = (300, 30, 3, 3);
    let (rows, cols) = (o, i * kh * kw);
    let w_h = lcg(1, rows * cols);
    let u_h = lcg(2, rows);
    let g_h = lcg(3, rows * cols);
    let (w_sn, un, v, sigma, dw) = host_reference(&w_h, &u_h, &g_h, rows, cols);
    let w = Tensor::from_f32(ctx(), &[o, i, kh, kw], &w_h).unwrap();
    let g = Tensor::from_f32(ctx(), &[o, i, kh, kw], &g_h).unwrap();
    for (cpu, sg) in PATHS {
        eprintln!("cpu kernels {cpu}, subgroups {sg}");
        let mut first: Option<(Vec<f32>, Vec<f32>)> = None;
        for _ in 0..2 {
            let u = Tensor::from_f32(ctx(), &[rows], &u_h).unwrap();
            let (out, d) = ctx()
                .run(|r| {
                    r.set_cpu_kernels(cpu);
                    r.set_subgroups(sg);
                    let out = spectral_norm(r, &w, &u, true)?;
                    let d = spectral_norm_backward(r, &out.saved, &g)?;
                    Ok((out, d))
                })
                .unwrap();
            let got_wsn = out.w_sn.to_f32(ctx()).unwrap();
            let got_dw = d.to_f32(ctx()).unwrap();
            close("large/w_sn", &got_wsn, &to32(&w_sn), TOL_LARGE);
            close("large/u", &u.to_f32(ctx()).unwrap(), &to32(&un), TOL_LARGE);
            close(
                "large/v",
                &out.saved.v.to_f32(ctx()).unwrap(),
                &to32(&v),
                TOL_LARGE,
            );
            close(
                "large/sigma",
                &out.saved.sigma.to_f32(ctx()).unwrap(),
                &[sigma as f32],
                TOL_LARGE,
            );
            close("large/dw", &got_dw, &to32(&dw), TOL_LARGE);
            match &first {
                None => first = Some((got_wsn, got_dw)),
                Some((a, b)) => {
                    assert_eq!(a, &got_wsn, "w_sn differs between identical runs");
                    assert_eq!(b, &got_dw, "dw differs between identical runs");
                }
            }
        }
    }
}

#[test]
fn bad_inputs_are_errors() {
    let c = ctx();
    let w = Tensor::zeros(c, &[4, 3]).unwrap();
    let u = Tensor::zeros(c, &[4]).unwrap();
    let u_bad = Tensor::zeros(c, &[3]).unwrap();
    let u_i32 = Tensor::from_i32(c, &[4], &[0; 4]).unwrap();
    let scalar = Tensor::zeros(c, &[]).unwrap();
    let empty = Tensor::zeros(c, &[0, 3]).unwrap();
    let is_shape = |e: Error| matches!(e, Error::Shape(_));
    let mut rec = c.recorder();
    assert!(is_shape(
        spectral_norm(&mut rec, &w, &u_bad, true).unwrap_err()
    ));
    assert!(is_shape(
        spectral_norm(&mut rec, &w, &u_i32, true).unwrap_err()
    ));
    assert!(is_shape(
        spectral_norm(&mut rec, &scalar, &u, true).unwrap_err()
    ));
    assert!(is_shape(
        spectral_norm(&mut rec, &empty, &u, false).unwrap_err()
    ));
    assert!(is_shape(
        spectral_norm(&mut rec, &u, &u, false).unwrap_err()
    ));
    let out = spectral_norm(&mut rec, &w, &u, true).unwrap();
    let g_bad = Tensor::zeros(c, &[3, 4]).unwrap();
    assert!(is_shape(
        spectral_norm_backward(&mut rec, &out.saved, &g_bad).unwrap_err()
    ));
    drop(rec);
}
