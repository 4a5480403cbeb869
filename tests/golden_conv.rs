//! conv2d and its backward pass against PyTorch float64 autograd goldens
//! (tests/golden/gen_conv.py).
//!
//! Tolerance for every tensor (y, dx, dw, db): 1e-5 x max|reference| (`Golden::check`).
//! Each value is one f32 sum: Cin*k*k fused multiply-adds (y, dx) or N*H*W products split
//! into chunks added in a fixed order (dw, db); with these lengths (<= 3267) the errors seen
//! are below 1e-6 x max|reference|, so 1e-5 leaves room without hiding indexing mistakes
//! (those are O(1) relative errors). The Winograd kernels (forced on in one kernel set) round
//! more, through transforms with coefficients up to 8: their largest error on these cases is
//! 5.7e-6 x max|reference| (dw of `conv_k3_n3_ci8_co20_h19_bias`).
//!
//! `conv2d_matches_cpu_reference` adds shapes with more channels than the goldens (several
//! workgroups of input channels in the weight-gradient kernels) against an f64 loop on the
//! host.

mod common;
use common::{ctx, Golden};
use fewlabels::ops::conv::{
    conv2d, conv2d_backward, conv2d_backward_input, conv2d_backward_weight, conv2d_load,
    conv2d_load_backward, conv2d_load_backward_input, conv2d_load_backward_weight, Load,
};
use fewlabels::{Error, Tensor};

const TOL_FWD: f32 = 1e-5;
const TOL_GRAD: f32 = 1e-5;

/// `Golden::check`, printing the error relative to max|reference| (see with --nocapture).
fn check(g: &Golden, name: &str, got: &Tensor, tol: f32) {
    let want = g.f32(name);
    let have = got.to_f32(ctx()).unwrap();
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-20);
    let err = have
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    println!("{name}: max error {:.2e} x max|ref|", err / scale);
    g.check(name, got, tol);
}

fn has_bias(case: &str) -> bool {
    case.ends_with("_bias")
}

/// Every kernel set runs on whatever adapter the tests have: (CPU-adapter kernels, which
/// read textures; with subgroups where the device has them; 3x3 convs as Winograd F(4x4,
/// 3x3), where the CPU kernels with subgroups can take it: forced off, forced on, or chosen by
/// shape): the CPU kernels with subgroups and each Winograd choice, without subgroups, and
/// the others.
const KERNEL_SETS: [(bool, bool, Option<bool>); 5] = [
    (true, true, Some(false)),
    (true, true, Some(true)),
    (true, true, None),
    (true, false, None),
    (false, false, None),
];

#[test]
fn conv2d_forward() {
    let g = Golden::load("conv");
    for (cpu, sg, wino) in KERNEL_SETS {
        for c in g.cases("conv_") {
            let x = g.tensor(&format!("{c}/x"));
            let w = g.tensor(&format!("{c}/w"));
            let b = has_bias(&c).then(|| g.tensor(&format!("{c}/b")));
            let y = ctx()
                .run(|r| {
                    r.set_cpu_kernels(cpu);
                    r.set_subgroups(sg);
                    r.set_winograd(wino);
                    conv2d(r, &x, &w, b.as_ref())
                })
                .unwrap();
            println!("cpu kernels {cpu}, subgroups {sg}, winograd {wino:?}:");
            check(&g, &format!("{c}/y"), &y, TOL_FWD);
        }
    }
}

#[test]
fn conv2d_backward_grads() {
    for (cpu, sg, wino) in KERNEL_SETS {
        backward_grads(cpu, sg, wino);
    }
}

fn backward_grads(cpu: bool, sg: bool, wino: Option<bool>) {
    let g = Golden::load("conv");
    for c in g.cases("conv_") {
        let x = g.tensor(&format!("{c}/x"));
        let w = g.tensor(&format!("{c}/w"));
        let dy = g.tensor(&format!("{c}/dy"));
        let bias = has_bias(&c);
        let grads = ctx()
            .run(|r| {
                r.set_cpu_kernels(cpu);
                r.set_subgroups(sg);
                r.set_winograd(wino);
                conv2d_backward(r, &x, &w, &dy, bias)
            })
            .unwrap();
        println!("cpu kernels {cpu}, subgroups {sg}, winograd {wino:?}:");
        check(&g, &format!("{c}/dx"), &grads.dx, TOL_FWD);
        check(&g, &format!("{c}/dw"), &grads.dw, TOL_GRAD);
        match (&grads.db, bias) {
            (Some(db), true) => check(&g, &format!("{c}/db"), db, TOL_GRAD),
            (None, false) => {}
            (db, _) => panic!("{c}: db is {db:?} but the case has bias = {bias}"),
        }
    }
}

/// conv2d_load (x transformed as the kernels load it) and its backward pass against the
/// `load_*` goldens: y, dx (with respect to the stored x), dw and db, on every kernel set.
#[test]
fn conv2d_load_matches_goldens() {
    let g = Golden::load("conv");
    for (cpu, sg, wino) in KERNEL_SETS {
        for c in g.cases("load_") {
            let load = Load {
                relu: c.starts_with("load_relu"),
                upsample: c.contains("up_"),
            };
            let t = |n: &str| g.tensor(&format!("{c}/{n}"));
            let (x, w, b, dy) = (t("x"), t("w"), t("b"), t("dy"));
            let (y, grads, dx_alone) = ctx()
                .run(|r| {
                    r.set_cpu_kernels(cpu);
                    r.set_subgroups(sg);
                    r.set_winograd(wino);
                    Ok((
                        conv2d_load(r, &x, &w, Some(&b), load)?,
                        conv2d_load_backward(r, &x, &w, &dy, true, load)?,
                        conv2d_load_backward_input(r, &x, &w, &dy, load)?,
                    ))
                })
                .unwrap();
            println!("cpu kernels {cpu}, subgroups {sg}, winograd {wino:?}, {load:?}:");
            check(&g, &format!("{c}/y"), &y, TOL_FWD);
            check(&g, &format!("{c}/dx"), &grads.dx, TOL_FWD);
            check(&g, &format!("{c}/dx"), &dx_alone, TOL_FWD);
            check(&g, &format!("{c}/dw"), &grads.dw, TOL_GRAD);
            check(&g, &format!("{c}/db"), grads.db.as_ref().unwrap(), TOL_GRAD);
        }
    }
}

/// The `conv_thin` goldens run on the one-channel kernels where the CPU kernels are on (so
/// the goldens above test them), and nowhere else: a profile of each pass lists the kernels
/// that ran.
#[test]
fn one_channel_convs_take_the_thin_kernels() {
    let g = Golden::load("conv");
    let c = fewlabels::Context::new().unwrap();
    c.set_profiling(true);
    let entries = |cpu: bool, case: &str| -> Vec<String> {
        let t = |n: &str| {
            Tensor::from_f32(
                &c,
                &g.shape(&format!("{case}/{n}")),
                &g.f32(&format!("{case}/{n}")),
            )
            .unwrap()
        };
        let (x, w, b, dy) = (t("x"), t("w"), t("b"), t("dy"));
        c.run(|r| {
            r.set_cpu_kernels(cpu);
            conv2d(r, &x, &w, Some(&b))?;
            conv2d_backward(r, &x, &w, &dy, true)?;
            Ok(())
        })
        .unwrap();
        c.wait().unwrap();
        let mut e: Vec<String> = c.take_profile().into_iter().map(|r| r.entry).collect();
        e.sort();
        e
    };
    for case in [
        "conv_thin_k3_n3_ci1_co8_h7w12_bias",
        "conv_thin_k3_n2_ci12_co1_h9w8_bias",
    ] {
        let on = entries(true, case);
        for k in ["thin_spread", "thin_gather", "thin_dw"] {
            assert!(on.iter().any(|e| e == k), "{case}: {k} did not run: {on:?}");
        }
        assert!(
            !on.iter().any(|e| e == "conv_pad"),
            "{case}: padded: {on:?}"
        );
        let off = entries(false, case);
        assert!(
            !off.iter().any(|e| e.starts_with("thin_")),
            "{case}: {off:?}"
        );
    }
}

/// A forward-only recorder (sampling) takes the Winograd kernels for 3x3 convs only from 64
/// channels on both sides; a recorder of a train step takes them from 32. Both give the same
/// result within the Winograd tolerance.
#[test]
fn forward_only_recorders_take_winograd_only_for_wide_convs() {
    let c = fewlabels::Context::new().unwrap();
    if !(c.cpu_kernels() && c.subgroups() && c.winograd().is_none()) {
        return;
    }
    c.set_profiling(true);
    let run = |ch: usize, forward_only: bool| -> (Vec<String>, Vec<f32>) {
        // 8 images of 16 x 16: 128 tiles, the fewest that take Winograd.
        let vals = |n: usize, seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 / 1001.0 - 1.0) * 0.5)
                .collect()
        };
        let x = Tensor::from_f32(&c, &[8, 16, 16, ch], &vals(8 * 16 * 16 * ch, 1)).unwrap();
        let w = Tensor::from_f32(&c, &[ch, ch, 3, 3], &vals(ch * ch * 9, 2)).unwrap();
        let y = c
            .run(|r| {
                r.set_forward_only(forward_only);
                conv2d(r, &x, &w, None)
            })
            .unwrap();
        c.wait().unwrap();
        let e: Vec<String> = c.take_profile().into_iter().map(|r| r.entry).collect();
        (e, y.to_f32(&c).unwrap())
    };
    let wino = |e: &[String]| e.iter().any(|k| k.starts_with("wino_"));
    for (ch, forward_only, want) in [(32, false, true), (32, true, false), (64, true, true)] {
        let (e, _) = run(ch, forward_only);
        assert_eq!(
            wino(&e),
            want,
            "{ch} channels, forward_only {forward_only}: {e:?}"
        );
    }
    let (_, a) = run(32, false);
    let (_, b) = run(32, true);
    let max = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
    assert!(
        err <= 1e-5 * max,
        "Winograd and direct differ by {err} (max {max})"
    );
}

/// conv2d_load rejects an upsampled output whose indices overflow and a dy of the wrong
/// (not upsampled) shape.
#[test]
fn conv2d_load_rejects_bad_input() {
    let c = ctx();
    let is_shape = |r: fewlabels::Result<_>| matches!(r, Err(Error::Shape(_)));
    let x = Tensor::zeros(c, &[1, 4, 4, 3]).unwrap();
    let w = Tensor::zeros(c, &[2, 3, 3, 3]).unwrap();
    let up = Load {
        relu: false,
        upsample: true,
    };
    let dy_small = Tensor::zeros(c, &[1, 4, 4, 2]).unwrap();
    assert!(is_shape(c.run(|r| {
        conv2d_load_backward(r, &x, &w, &dy_small, false, up).map(|_| ())
    })));
    let dy = Tensor::zeros(c, &[1, 8, 8, 2]).unwrap();
    assert!(c
        .run(|r| conv2d_load_backward(r, &x, &w, &dy, false, up).map(|_| ()))
        .is_ok());
    let w2 = Tensor::zeros(c, &[2, 5, 3, 3]).unwrap();
    assert!(is_shape(
        c.run(|r| conv2d_load(r, &x, &w2, None, up).map(|_| ()))
    ));
}

/// Running the same backward pass twice gives bit-identical gradients.
#[test]
fn conv2d_backward_is_deterministic() {
    let g = Golden::load("conv");
    let c = "conv_k3_n3_ci8_co20_h19_bias";
    let x = g.tensor(&format!("{c}/x"));
    let w = g.tensor(&format!("{c}/w"));
    let dy = g.tensor(&format!("{c}/dy"));
    let run = || {
        let gr = ctx()
            .run(|r| conv2d_backward(r, &x, &w, &dy, true))
            .unwrap();
        (
            gr.dx.to_f32(ctx()).unwrap(),
            gr.dw.to_f32(ctx()).unwrap(),
            gr.db.unwrap().to_f32(ctx()).unwrap(),
        )
    };
    let a = run();
    let b = run();
    assert!(a
        .0
        .iter()
        .zip(&b.0)
        .all(|(p, q)| p.to_bits() == q.to_bits()));
    assert!(a
        .1
        .iter()
        .zip(&b.1)
        .all(|(p, q)| p.to_bits() == q.to_bits()));
    assert!(a
        .2
        .iter()
        .zip(&b.2)
        .all(|(p, q)| p.to_bits() == q.to_bits()));
}

/// Plain f64 convolution on the host: (y, dx, dw, db) for NHWC x and dy, weight [co, ci, k, k].
#[allow(clippy::type_complexity)]
fn cpu_conv(
    (n, h, w, ci, co, k): (usize, usize, usize, usize, usize, usize),
    x: &[f32],
    wt: &[f32],
    b: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let pad = (k / 2) as i64;
    let mut y = vec![0f64; n * h * w * co];
    let mut dx = vec![0f64; n * h * w * ci];
    let mut dw = vec![0f64; co * ci * k * k];
    let mut db = vec![0f64; co];
    for img in 0..n {
        for oh in 0..h {
            for ow in 0..w {
                let q = (img * h + oh) * w + ow;
                for o in 0..co {
                    y[q * co + o] += b[o] as f64;
                    db[o] += dy[q * co + o] as f64;
                }
                for ky in 0..k {
                    for kx in 0..k {
                        let ih = oh as i64 + ky as i64 - pad;
                        let iw = ow as i64 + kx as i64 - pad;
                        if ih < 0 || iw < 0 || ih >= h as i64 || iw >= w as i64 {
                            continue;
                        }
                        let s = (img * h + ih as usize) * w + iw as usize;
                        for o in 0..co {
                            let g = dy[q * co + o] as f64;
                            for i in 0..ci {
                                let wi = ((o * ci + i) * k + ky) * k + kx;
                                y[q * co + o] += x[s * ci + i] as f64 * wt[wi] as f64;
                                dx[s * ci + i] += g * wt[wi] as f64;
                                dw[wi] += g * x[s * ci + i] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|a| a as f32).collect::<Vec<f32>>();
    (f(y), f(dx), f(dw), f(db))
}

#[test]
fn conv2d_matches_cpu_reference() {
    for (cpu, sg, wino) in KERNEL_SETS {
        matches_cpu_reference(cpu, sg, wino);
    }
}

fn matches_cpu_reference(cpu: bool, sg: bool, wino: Option<bool>) {
    let c = ctx();
    // (n, h, w, cin, cout, k): input channels beyond one weight-gradient workgroup, a
    // non-square image, partial blocks everywhere; and 280 4x4 tiles, so that the Winograd
    // weight and bias gradients (forced on in one kernel set) add two chunks.
    for &(n, h, w, ci, co, k) in &[
        (2, 12, 10, 40, 36, 3),
        (2, 9, 11, 40, 36, 1),
        (1, 10, 9, 7, 6, 3),
        (5, 28, 32, 8, 12, 3),
    ] {
        let mut s = 0x9e3779b9u32 ^ (ci * 131 + co * 7 + k) as u32;
        let mut rnd = |len: usize, scale: f32| -> Vec<f32> {
            (0..len)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 17;
                    s ^= s << 5;
                    ((s as f32 / u32::MAX as f32) - 0.5) * scale
                })
                .collect()
        };
        let xv = rnd(n * h * w * ci, 2.0);
        let wv = rnd(co * ci * k * k, 2.0 / ((ci * k * k) as f32).sqrt());
        let bv = rnd(co, 1.0);
        let dyv = rnd(n * h * w * co, 2.0);
        let (y_ref, dx_ref, dw_ref, db_ref) = cpu_conv((n, h, w, ci, co, k), &xv, &wv, &bv, &dyv);
        let x = Tensor::from_f32(c, &[n, h, w, ci], &xv).unwrap();
        let wt = Tensor::from_f32(c, &[co, ci, k, k], &wv).unwrap();
        let b = Tensor::from_f32(c, &[co], &bv).unwrap();
        let dy = Tensor::from_f32(c, &[n, h, w, co], &dyv).unwrap();
        let (y, g) = c
            .run(|r| {
                r.set_cpu_kernels(cpu);
                r.set_subgroups(sg);
                r.set_winograd(wino);
                Ok((
                    conv2d(r, &x, &wt, Some(&b))?,
                    conv2d_backward(r, &x, &wt, &dy, true)?,
                ))
            })
            .unwrap();
        let name = format!("cpu kernels {cpu}, subgroups {sg}: n{n} h{h} w{w} ci{ci} co{co} k{k}");
        let tol = 1e-5;
        common::check_close(&format!("{name} y"), &y.to_f32(c).unwrap(), &y_ref, tol);
        common::check_close(
            &format!("{name} dx"),
            &g.dx.to_f32(c).unwrap(),
            &dx_ref,
            tol,
        );
        common::check_close(
            &format!("{name} dw"),
            &g.dw.to_f32(c).unwrap(),
            &dw_ref,
            tol,
        );
        let db = g.db.unwrap().to_f32(c).unwrap();
        common::check_close(&format!("{name} db"), &db, &db_ref, tol);
    }
}

#[test]
fn conv2d_rejects_bad_input() {
    let c = ctx();
    let x = Tensor::zeros(c, &[2, 5, 5, 3]).unwrap();
    let w = Tensor::zeros(c, &[4, 3, 3, 3]).unwrap();
    let is_shape = |r: fewlabels::Result<Tensor>| matches!(r, Err(Error::Shape(_)));
    // Rank-3 input.
    let x3 = Tensor::zeros(c, &[5, 5, 3]).unwrap();
    assert!(is_shape(c.run(|r| conv2d(r, &x3, &w, None))));
    // Channel mismatch.
    let w5 = Tensor::zeros(c, &[4, 5, 3, 3]).unwrap();
    assert!(is_shape(c.run(|r| conv2d(r, &x, &w5, None))));
    // Unsupported kernel sizes.
    let w2 = Tensor::zeros(c, &[4, 3, 2, 2]).unwrap();
    assert!(is_shape(c.run(|r| conv2d(r, &x, &w2, None))));
    let w13 = Tensor::zeros(c, &[4, 3, 1, 3]).unwrap();
    assert!(is_shape(c.run(|r| conv2d(r, &x, &w13, None))));
    // Wrong bias length and dtype.
    let b5 = Tensor::zeros(c, &[5]).unwrap();
    assert!(is_shape(c.run(|r| conv2d(r, &x, &w, Some(&b5)))));
    let bi = Tensor::from_i32(c, &[4], &[0; 4]).unwrap();
    assert!(is_shape(c.run(|r| conv2d(r, &x, &w, Some(&bi)))));
    // Integer input.
    let xi = Tensor::from_i32(c, &[1, 1, 1, 3], &[0; 3]).unwrap();
    assert!(is_shape(c.run(|r| conv2d(r, &xi, &w, None))));
    // Backward with dy of the wrong shape.
    let dy = Tensor::zeros(c, &[2, 5, 5, 3]).unwrap();
    let r = c.run(|r| conv2d_backward(r, &x, &w, &dy, true));
    assert!(matches!(r, Err(Error::Shape(_))));
    // A good call still works afterwards.
    let y = c.run(|r| conv2d(r, &x, &w, None)).unwrap();
    assert_eq!(y.shape(), &[2, 5, 5, 4]);
}

/// CPU seconds used by this process so far (user + system), from /proc. On a CPU adapter
/// (lavapipe) the kernels run on this process's threads, so this counts the work done even
/// when other processes share the cores.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let Some(at) = stat.rfind(')') else {
        return 0.0;
    };
    let f: Vec<&str> = stat[at + 2..].split(' ').collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// One warm-up call (pipeline compilation, buffer pool), then `reps` timed calls: returns the
/// medians of wall and process CPU milliseconds.
fn median_ms(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..reps {
        let c0 = cpu_seconds();
        let s = std::time::Instant::now();
        f();
        wall.push(s.elapsed().as_secs_f64() * 1e3);
        cpu.push((cpu_seconds() - c0) * 1e3);
    }
    wall.sort_by(|a, b| a.partial_cmp(b).unwrap());
    cpu.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (wall[reps / 2], cpu[reps / 2])
}

fn rnd(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) - 0.5
        })
        .collect()
}

/// Times forward, dx and dw (dw includes the chunk reduction) of a 'same' conv with bias:
/// (n, h = w, cin, cout, k). Prints wall and process-CPU medians and GFLOP/s of wall time,
/// with 2*N*H*W*Cout*Cin*k*k flops per pass; asserts nothing.
fn time_conv((n, h, ci, co, k): (usize, usize, usize, usize, usize), reps: usize) {
    // CONV_SPEED_REPS overrides the number of timed calls.
    let reps = std::env::var("CONV_SPEED_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(reps);
    let c = ctx();
    let x = Tensor::from_f32(c, &[n, h, h, ci], &rnd(n * h * h * ci, 1)).unwrap();
    let w = Tensor::from_f32(c, &[co, ci, k, k], &rnd(co * ci * k * k, 2)).unwrap();
    let b = Tensor::from_f32(c, &[co], &rnd(co, 4)).unwrap();
    let dy = Tensor::from_f32(c, &[n, h, h, co], &rnd(n * h * h * co, 3)).unwrap();
    let flop = 2.0 * (n * h * h * co * ci * k * k) as f64;
    let report = |name: &str, (ms, cpu): (f64, f64)| {
        println!(
            "conv{k}x{k} N={n} {ci}->{co} {h}x{h} {name}: {ms:.1} ms wall, {cpu:.1} ms CPU, {:.1} GFLOP/s wall, {:.1} GFLOP per CPU s",
            flop / (ms * 1e-3) / 1e9,
            flop / (cpu.max(1e-3) * 1e-3) / 1e9
        );
    };
    let fwd = median_ms(reps, || {
        let y = c.run(|r| conv2d(r, &x, &w, Some(&b))).unwrap();
        c.wait().unwrap();
        drop(y);
    });
    report("forward", fwd);
    let dx = median_ms(reps, || {
        let t = c.run(|r| conv2d_backward_input(r, &x, &w, &dy)).unwrap();
        c.wait().unwrap();
        drop(t);
    });
    report("dx", dx);
    let dw = median_ms(reps, || {
        let t = c
            .run(|r| conv2d_backward_weight(r, &x, &w, &dy, true))
            .unwrap();
        c.wait().unwrap();
        drop(t);
    });
    report("dw+db", dw);
    let profile = c.take_profile();
    if !profile.is_empty() {
        println!("{}", fewlabels::kernel::format_profile(&profile));
    }
}

/// Timing of conv3x3 N=16, 64 -> 64 channels, 32x32 (the shape of issue 6).
/// Run with `cargo test --release --test golden_conv -- --ignored --nocapture conv_speed`.
#[test]
#[ignore]
fn conv_speed() {
    time_conv((16, 32, 64, 64, 3), 5);
}

/// Timing of the conv3x3 shapes of the `fashion_small` preset (the default model): G at
/// batch 32 (channels 32, 32, 16, 8 from 8x8 to 32x32, then 8 -> 1), D at batch 160 (1 -> 8 at
/// 32x32 up to 32 -> 32 at 4x4).
#[test]
#[ignore]
fn conv_speed_fashion_small() {
    let only = std::env::var("CONV_SPEED_ONLY").ok();
    for shape in [
        (32, 8, 32, 32, 3),
        (32, 16, 32, 16, 3),
        (32, 16, 16, 16, 3),
        (32, 32, 16, 8, 3),
        (32, 32, 8, 8, 3),
        (32, 32, 8, 1, 3),
        (160, 32, 1, 8, 3),
        (160, 32, 8, 8, 3),
        (160, 16, 8, 16, 3),
        (160, 16, 16, 16, 3),
        (160, 8, 16, 32, 3),
        (160, 8, 32, 32, 3),
        (160, 4, 32, 32, 3),
    ] {
        if let Some(o) = &only {
            if !format!("{shape:?}").contains(o.as_str()) {
                continue;
            }
        }
        time_conv(shape, 3);
    }
}

/// Timing of the conv shapes of the `fashion` preset: G at batch 64 (channels 64, 64, 32, 16
/// from 8x8 to 32x32, then 16 -> 1), D at batch 224 (1 -> 16 at 32x32 up to 64 -> 64 at 4x4),
/// and their 1x1 shortcuts.
#[test]
#[ignore]
fn conv_speed_fashion() {
    let only = std::env::var("CONV_SPEED_ONLY").ok();
    for shape in [
        (64, 8, 64, 64, 3),
        (64, 16, 64, 32, 3),
        (64, 16, 32, 32, 3),
        (64, 32, 32, 16, 3),
        (64, 32, 16, 16, 3),
        (64, 32, 16, 1, 3),
        (64, 16, 64, 32, 1),
        (224, 32, 1, 16, 3),
        (224, 32, 16, 16, 3),
        (224, 16, 16, 32, 3),
        (224, 8, 32, 64, 3),
        (224, 4, 64, 64, 3),
        (224, 16, 16, 32, 1),
    ] {
        if let Some(o) = &only {
            if !format!("{shape:?}").contains(o.as_str()) {
                continue;
            }
        }
        time_conv(shape, 3);
    }
}

/// A weight's repacked form is kept for later calls, and a write into the weight (a copy in
/// the same recorder, or `write_f32` between recorders) makes it stale: every result matches
/// the conv of a weight that was never repacked before.
#[test]
fn kept_repacked_weight_follows_writes() {
    // 3x3 (the repacked weight) and a 1x1 conv with odd Cin and vec4 Cout (the padded weight
    // of the GEMM path on CPU adapters with subgroups).
    for (k, ci, co) in [(3, 6, 7), (1, 3, 8)] {
        kept_weight_follows_writes(k, ci, co);
    }
}

fn kept_weight_follows_writes(k: usize, ci: usize, co: usize) {
    let c = ctx();
    let (n, h) = (2, 5);
    let kk = k * k;
    let x = Tensor::from_f32(c, &[n, h, h, ci], &rnd(n * h * h * ci, 11)).unwrap();
    let dy = Tensor::from_f32(c, &[n, h, h, co], &rnd(n * h * h * co, 12)).unwrap();
    let w = Tensor::from_f32(c, &[co, ci, k, k], &rnd(co * ci * kk, 13)).unwrap();
    let w2_data = rnd(co * ci * kk, 14);
    let w2 = Tensor::from_f32(c, &[co, ci, k, k], &w2_data).unwrap();
    let fresh = |data: &[f32]| {
        let wf = Tensor::from_f32(c, &[co, ci, k, k], data).unwrap();
        c.run(|r| {
            Ok((
                conv2d(r, &x, &wf, None)?,
                conv2d_backward_input(r, &x, &wf, &dy)?,
            ))
        })
        .unwrap()
    };
    let vals = |t: &Tensor| t.to_f32(c).unwrap();
    let (y1, dx1) = fresh(&rnd(co * ci * kk, 13));
    let (y2, dx2) = fresh(&w2_data);
    // Same recorder: conv, overwrite the weight, conv again.
    let (a, da, b, db) = c
        .run(|r| {
            let a = conv2d(r, &x, &w, None)?;
            let da = conv2d_backward_input(r, &x, &w, &dy)?;
            r.copy(&w2, &w)?;
            let b = conv2d(r, &x, &w, None)?;
            let db = conv2d_backward_input(r, &x, &w, &dy)?;
            Ok((a, da, b, db))
        })
        .unwrap();
    assert_eq!(vals(&a), vals(&y1));
    assert_eq!(vals(&da), vals(&dx1));
    assert_eq!(vals(&b), vals(&y2));
    assert_eq!(vals(&db), vals(&dx2));
    // Across recorders: unchanged, then written from the host.
    let again = c.run(|r| conv2d(r, &x, &w, None)).unwrap();
    assert_eq!(vals(&again), vals(&y2));
    w.write_f32(c, &rnd(co * ci * kk, 13)).unwrap();
    let back = c.run(|r| conv2d(r, &x, &w, None)).unwrap();
    assert_eq!(vals(&back), vals(&y1));
}

/// The Winograd forward pass keeps its input transform for the weight gradient of the same x:
/// reused, the weight gradient is bit for bit the one computed afresh; after a write into x,
/// or with another load transform, it is not reused (the results follow the new input).
#[test]
fn kept_winograd_input_follows_writes() {
    let c = ctx();
    if !c.subgroups() {
        return; // the Winograd kernels need the `_sg` GEMMs
    }
    let (n, h, ci, co) = (2, 7, 8, 12);
    let x1 = rnd(n * h * h * ci, 21);
    let x2 = rnd(n * h * h * ci, 22);
    let x = Tensor::from_f32(c, &[n, h, h, ci], &x1).unwrap();
    let x2t = Tensor::from_f32(c, &[n, h, h, ci], &x2).unwrap();
    let w = Tensor::from_f32(c, &[co, ci, 3, 3], &rnd(co * ci * 9, 23)).unwrap();
    let dy = Tensor::from_f32(c, &[n, h, h, co], &rnd(n * h * h * co, 24)).unwrap();
    let relu = Load {
        relu: true,
        upsample: false,
    };
    let vals = |t: &Tensor| t.to_f32(c).unwrap();
    // Each weight gradient alone, in a recorder of its own (no forward pass before it).
    let fresh = |data: &[f32], load: Load| {
        let xf = Tensor::from_f32(c, &[n, h, h, ci], data).unwrap();
        let dw = c
            .run(|r| {
                r.set_winograd(Some(true));
                Ok(conv2d_load_backward_weight(r, &xf, &w, &dy, false, load)?.0)
            })
            .unwrap();
        vals(&dw)
    };
    let (dw1, dw2, dw2_relu) = c
        .run(|r| {
            r.set_winograd(Some(true));
            let _y = conv2d(r, &x, &w, None)?;
            let dw1 = conv2d_backward_weight(r, &x, &w, &dy, false)?.0;
            r.copy(&x2t, &x)?;
            let dw2 = conv2d_backward_weight(r, &x, &w, &dy, false)?.0;
            let _y = conv2d(r, &x, &w, None)?;
            let dw2_relu = conv2d_load_backward_weight(r, &x, &w, &dy, false, relu)?.0;
            Ok((dw1, dw2, dw2_relu))
        })
        .unwrap();
    assert_eq!(vals(&dw1), fresh(&x1, Load::NONE));
    assert_eq!(vals(&dw2), fresh(&x2, Load::NONE));
    assert_eq!(vals(&dw2_relu), fresh(&x2, relu));
    assert_ne!(
        vals(&dw2_relu),
        vals(&dw2),
        "the ReLU must change this case"
    );
}
