//! Batch norm against PyTorch float64 autograd goldens (tests/golden/gen_batchnorm.py), plus
//! a host float64 check on shapes large enough to use many chunks, and bad-input checks.
//!
//! Tolerances (max |got - want| <= tol * max|want|, per tensor), with the worst seen on
//! lavapipe (`cargo test --test golden_batchnorm -- --nocapture` prints every one):
//! - batch mean / variance: 1e-6 (seen 1e-7 and 2e-7). Chunked Welford sums of at most a
//!   thousand values per channel, with pivots so an offset mean keeps its precision.
//! - forward output: 2e-5 (seen 6e-6). The goldens' channel 0 is nearly constant (spread 0.01
//!   around an offset of up to 5, variance ~ eps), so half an ulp of its f32 mean (2.4e-7) is
//!   2e-5 of a deviation, and 1/sqrt(var + eps) ~ 70 carries that into x_hat.
//! - backward (dx, dgain/dweight, dbias): 5e-5 (seen 2e-6, 1.5e-5, 2e-7). dgain/dweight sum
//!   dy * x_hat, so channel 0's x_hat offset above shows up there: rounding only the mean to
//!   f32 (everything else exact) already gives 1.4e-5 on train_chan_n4c3h9e4.
//! - host check (up to a million elements per tensor): 5e-5 (seen 7.5e-6, on the mean of
//!   zero-centred data, which is itself small; everything else below 1e-6).

mod common;
use common::{check_close, ctx, Golden};
use fewlabels::ops::batchnorm::{self as bn, Affine, BatchNormGrads};
use fewlabels::{Error, Tensor};

const TOL_STATS: f32 = 1e-6;
const TOL_FWD: f32 = 2e-5;
const TOL_BWD: f32 = 5e-5;
const TOL_HOST: f32 = 5e-5;

/// Print max |got - want| / max|want|, then assert it is within `tol` (`check_close`).
fn close(name: &str, got: &[f32], want: &[f32], tol: f32) {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-20);
    let err = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("{name}: max rel error {:.2e} (tol {tol:e})", err / scale);
    check_close(name, got, want, tol);
}

/// `close` against golden tensor `name`, after `Golden::check`'s shape check.
fn check(g: &Golden, name: &str, got: &Tensor, tol: f32) {
    assert_eq!(got.shape(), &g.shape(name)[..], "{name}: shape");
    close(name, &got.to_f32(ctx()).unwrap(), &g.f32(name), tol);
}

/// The case's affine parameters: (scale tensor, bias tensor, conditional?).
fn params(g: &Golden, c: &str) -> (Tensor, Tensor, bool) {
    let cond = c.contains("_cond_");
    let s = g.tensor(&format!("{c}/{}", if cond { "gain" } else { "weight" }));
    (s, g.tensor(&format!("{c}/bias")), cond)
}

fn affine<'a>(s: &'a Tensor, b: &'a Tensor, cond: bool) -> Affine<'a> {
    if cond {
        Affine::Conditional { gain: s, bias: b }
    } else {
        Affine::Channel { weight: s, bias: b }
    }
}

fn check_grads(g: &Golden, c: &str, cond: bool, gr: &BatchNormGrads) {
    check(g, &format!("{c}/dx"), &gr.dx, TOL_BWD);
    let ds = if cond { "dgain" } else { "dweight" };
    check(g, &format!("{c}/{ds}"), &gr.dscale, TOL_BWD);
    check(g, &format!("{c}/dbias"), &gr.dbias, TOL_BWD);
}

/// Both kernel sets run on whatever adapter the tests have: the CPU-adapter kernels (`_t`,
/// x and dy read as textures, for C a multiple of 4) and the storage-buffer ones.
const CPU_KERNELS: [bool; 2] = [true, false];

fn run<T>(cpu: bool, f: impl FnOnce(&mut fewlabels::Recorder) -> fewlabels::Result<T>) -> T {
    ctx()
        .run(|r| {
            r.set_cpu_kernels(cpu);
            f(r)
        })
        .unwrap()
}

#[test]
fn train_forward() {
    let g = Golden::load("batchnorm");
    for cpu in CPU_KERNELS {
        for c in g.cases("train_") {
            let x = g.tensor(&format!("{c}/x"));
            let eps = g.scalar(&format!("{c}/eps"));
            let (s, b, cond) = params(&g, &c);
            let (out, saved) = run(cpu, |r| {
                bn::batch_norm_train(r, &x, affine(&s, &b, cond), eps)
            });
            check(&g, &format!("{c}/out"), &out, TOL_FWD);
            check(&g, &format!("{c}/batch_mean"), &saved.mean, TOL_STATS);
            check(&g, &format!("{c}/batch_var"), &saved.var, TOL_STATS);
            let (out, saved) = run(cpu, |r| {
                bn::batch_norm_relu_train(r, &x, affine(&s, &b, cond), eps)
            });
            check(&g, &format!("{c}/out_relu"), &out, TOL_FWD);
            check(&g, &format!("{c}/batch_mean"), &saved.mean, TOL_STATS);
            let (m, v) = run(cpu, |r| bn::batch_stats(r, &x));
            check(&g, &format!("{c}/batch_mean"), &m, TOL_STATS);
            check(&g, &format!("{c}/batch_var"), &v, TOL_STATS);
        }
    }
}

#[test]
fn train_backward() {
    let g = Golden::load("batchnorm");
    for cpu in CPU_KERNELS {
        for c in g.cases("train_") {
            let x = g.tensor(&format!("{c}/x"));
            let dy = g.tensor(&format!("{c}/dy"));
            let eps = g.scalar(&format!("{c}/eps"));
            let (s, b, cond) = params(&g, &c);
            let grads = run(cpu, |r| {
                let (_, saved) = bn::batch_norm_train(r, &x, affine(&s, &b, cond), eps)?;
                bn::batch_norm_train_backward(r, &saved, affine(&s, &b, cond), &dy)
            });
            check_grads(&g, &c, cond, &grads);
        }
    }
}

#[test]
fn eval_forward() {
    let g = Golden::load("batchnorm");
    for cpu in CPU_KERNELS {
        for c in g.cases("eval_") {
            let x = g.tensor(&format!("{c}/x"));
            let mean = g.tensor(&format!("{c}/mean"));
            let var = g.tensor(&format!("{c}/var"));
            let eps = g.scalar(&format!("{c}/eps"));
            let (s, b, cond) = params(&g, &c);
            let out = run(cpu, |r| {
                bn::batch_norm_eval(r, &x, &mean, &var, affine(&s, &b, cond), eps)
            });
            check(&g, &format!("{c}/out"), &out, TOL_FWD);
            let out = run(cpu, |r| {
                bn::batch_norm_relu_eval(r, &x, &mean, &var, affine(&s, &b, cond), eps)
            });
            check(&g, &format!("{c}/out_relu"), &out, TOL_FWD);
        }
    }
}

#[test]
fn eval_backward() {
    let g = Golden::load("batchnorm");
    for cpu in CPU_KERNELS {
        for c in g.cases("eval_") {
            let x = g.tensor(&format!("{c}/x"));
            let dy = g.tensor(&format!("{c}/dy"));
            let mean = g.tensor(&format!("{c}/mean"));
            let var = g.tensor(&format!("{c}/var"));
            let eps = g.scalar(&format!("{c}/eps"));
            let (s, b, cond) = params(&g, &c);
            let grads = run(cpu, |r| {
                let a = affine(&s, &b, cond);
                bn::batch_norm_eval_backward(r, &x, &mean, &var, a, eps, &dy)
            });
            check_grads(&g, &c, cond, &grads);
        }
    }
}

/// Deterministic pseudo-random values in [-1, 1).
fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

/// Host float64 training-mode batch norm with the conditional affine:
/// (out, mean, var, dx, dgain, dbias).
#[allow(clippy::type_complexity)]
fn host_train_cond(
    shape: [usize; 4],
    x: &[f32],
    gain: &[f32],
    bias: &[f32],
    dy: &[f32],
    eps: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let [n, h, w, c] = shape;
    let hw = h * w;
    let m = (n * hw) as f64;
    let mut mean = vec![0f64; c];
    for (i, v) in x.iter().enumerate() {
        mean[i % c] += *v as f64;
    }
    mean.iter_mut().for_each(|v| *v /= m);
    let mut var = vec![0f64; c];
    for (i, v) in x.iter().enumerate() {
        let d = *v as f64 - mean[i % c];
        var[i % c] += d * d;
    }
    var.iter_mut().for_each(|v| *v /= m);
    let inv: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let xh: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, v)| (*v as f64 - mean[i % c]) * inv[i % c])
        .collect();
    let sc = |i: usize| 1.0 + gain[(i / (hw * c)) * c + i % c] as f64;
    let out = (0..x.len())
        .map(|i| (xh[i] * sc(i) + bias[(i / (hw * c)) * c + i % c] as f64) as f32)
        .collect();
    let mut dgain = vec![0f64; n * c];
    let mut dbias = vec![0f64; n * c];
    let mut mg = vec![0f64; c];
    let mut mgx = vec![0f64; c];
    for i in 0..x.len() {
        let p = (i / (hw * c)) * c + i % c;
        let d = dy[i] as f64;
        dbias[p] += d;
        dgain[p] += d * xh[i];
        mg[i % c] += d * sc(i) / m;
        mgx[i % c] += d * sc(i) * xh[i] / m;
    }
    let dx = (0..x.len())
        .map(|i| {
            let k = i % c;
            (inv[k] * (dy[i] as f64 * sc(i) - mg[k] - xh[i] * mgx[k])) as f32
        })
        .collect();
    let f = |v: Vec<f64>| v.into_iter().map(|a| a as f32).collect::<Vec<f32>>();
    (out, f(mean), f(var), dx, f(dgain), f(dbias))
}

#[test]
fn large_shapes_match_host_reference() {
    // [2,64,64,128]: the thread target caps the chunk count (256 chunks of 32 rows), vec4.
    // [2,33,31,6]: scalar kernels, 64 chunks with a short last one, per-sample chunks too.
    // [3,20,20,64]: offset data (mean 20, spread 1) to exercise the pivots.
    for (shape, offset) in [
        ([2, 64, 64, 128], 0.0),
        ([2, 33, 31, 6], 0.0),
        ([3, 20, 20, 64], 20.0),
    ] {
        let [n, _, _, c] = shape;
        let numel: usize = shape.iter().product();
        let x: Vec<f32> = noise(1, numel).iter().map(|v| v * 1.7 + offset).collect();
        let dy = noise(2, numel);
        let gain: Vec<f32> = noise(3, n * c).iter().map(|v| v * 0.3).collect();
        let bias: Vec<f32> = noise(4, n * c).iter().map(|v| v * 0.3).collect();
        let eps = 1e-5;
        let want = host_train_cond(shape, &x, &gain, &bias, &dy, eps as f64);
        let tx = Tensor::from_f32(ctx(), &shape, &x).unwrap();
        let tdy = Tensor::from_f32(ctx(), &shape, &dy).unwrap();
        let tg = Tensor::from_f32(ctx(), &[n, c], &gain).unwrap();
        let tb = Tensor::from_f32(ctx(), &[n, c], &bias).unwrap();
        let a = Affine::Conditional {
            gain: &tg,
            bias: &tb,
        };
        let (out, saved, grads) = ctx()
            .run(|r| {
                let (out, saved) = bn::batch_norm_train(r, &tx, a, eps)?;
                let grads = bn::batch_norm_train_backward(r, &saved, a, &tdy)?;
                Ok((out, saved, grads))
            })
            .unwrap();
        let get = |t: &Tensor| t.to_f32(ctx()).unwrap();
        let tag = format!("{shape:?}");
        close(&format!("{tag} out"), &get(&out), &want.0, TOL_HOST);
        close(&format!("{tag} mean"), &get(&saved.mean), &want.1, TOL_HOST);
        close(&format!("{tag} var"), &get(&saved.var), &want.2, TOL_HOST);
        close(&format!("{tag} dx"), &get(&grads.dx), &want.3, TOL_HOST);
        close(
            &format!("{tag} dgain"),
            &get(&grads.dscale),
            &want.4,
            TOL_HOST,
        );
        close(
            &format!("{tag} dbias"),
            &get(&grads.dbias),
            &want.5,
            TOL_HOST,
        );
    }
}

#[test]
fn bad_inputs_are_errors() {
    let c = ctx();
    let x = Tensor::zeros(c, &[2, 3, 3, 4]).unwrap();
    let x3 = Tensor::zeros(c, &[2, 9, 4]).unwrap();
    let xi = Tensor::from_i32(c, &[2, 3, 3, 4], &[0; 72]).unwrap();
    let nc = Tensor::zeros(c, &[2, 4]).unwrap();
    let nc2 = Tensor::zeros(c, &[2, 4]).unwrap();
    let ch = Tensor::zeros(c, &[4]).unwrap();
    let ch2 = Tensor::zeros(c, &[4]).unwrap();
    let ch5 = Tensor::zeros(c, &[5]).unwrap();
    let dy_bad = Tensor::zeros(c, &[2, 3, 3, 5]).unwrap();
    let cond = Affine::Conditional {
        gain: &nc,
        bias: &nc2,
    };
    let chan = Affine::Channel {
        weight: &ch,
        bias: &ch2,
    };
    let is_shape = |e: Error| matches!(e, Error::Shape(_));
    let is_arg = |e: Error| matches!(e, Error::InvalidArgument(_));
    let train = |x: &Tensor, a: Affine, eps: f32| {
        c.run(|r| bn::batch_norm_train(r, x, a, eps))
            .map(|_| ())
            .unwrap_err()
    };
    assert!(is_shape(train(&x3, cond, 1e-5)));
    assert!(is_shape(train(&xi, cond, 1e-5)));
    // Conditional parameters must be [N, C]; channel ones [C].
    assert!(is_shape(train(
        &x,
        Affine::Conditional {
            gain: &ch,
            bias: &nc
        },
        1e-5
    )));
    assert!(is_shape(train(
        &x,
        Affine::Channel {
            weight: &nc,
            bias: &ch
        },
        1e-5
    )));
    assert!(is_shape(train(
        &x,
        Affine::Channel {
            weight: &ch,
            bias: &ch5
        },
        1e-5
    )));
    assert!(is_arg(train(&x, chan, f32::NAN)));
    assert!(is_arg(train(&x, chan, -1.0)));
    let e = c
        .run(|r| bn::batch_norm_eval(r, &x, &ch5, &ch2, chan, 1e-5))
        .map(|_| ())
        .unwrap_err();
    assert!(is_shape(e));
    let e = c
        .run(|r| bn::batch_norm_eval_backward(r, &x, &ch, &ch2, chan, 1e-5, &dy_bad))
        .map(|_| ())
        .unwrap_err();
    assert!(is_shape(e));
    let e = c
        .run(|r| {
            let (_, saved) = bn::batch_norm_train(r, &x, chan, 1e-5)?;
            bn::batch_norm_train_backward(r, &saved, chan, &dy_bad)
        })
        .map(|_| ())
        .unwrap_err();
    assert!(is_shape(e));
    // A valid call still works after the errors.
    c.run(|r| bn::batch_norm_train(r, &x, cond, 1e-5)).unwrap();
}
