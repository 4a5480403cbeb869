//! GEMM family against PyTorch float64 autograd goldens (tests/golden/gen_gemm.py).
//!
//! Tolerances, all as max |got - want| <= tol * max|want|:
//! - linear, bmm (forward and backward): 1e-5. Each output is one f32 dot product of at most
//!   64 terms (K <= 64 here, including the backward passes' K = N or M); the rounding error
//!   of such a sum stays well below 1e-5 of the output's largest magnitude.
//! - sum_rows: 1e-5. Up to 3000 rows, summed in chunks of about sqrt(R) then in order, so
//!   the error grows like sqrt(R) * eps relative to the sums.

mod common;
use common::{ctx, Golden};
use fewlabels::ops::gemm;
use fewlabels::Tensor;

const TOL: f32 = 1e-5;

/// `Golden::check`, also printing the error relative to max|want| (see `--nocapture`).
fn check(g: &Golden, name: &str, got: &Tensor) {
    let want = g.f32(name);
    let v = got.to_f32(ctx()).unwrap();
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-20);
    let err = v
        .iter()
        .zip(&want)
        .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
    eprintln!("{name}: max error {:.2e} x max|want|", err / scale);
    g.check(name, got, TOL);
}

fn flags(case: &str) -> (bool, bool) {
    let f = case.rsplit('_').next().unwrap().as_bytes();
    (f[0] == b't', f[1] == b't')
}

/// Every kernel set runs on whatever adapter the tests have: (CPU-adapter kernels, subgroups,
/// small transposed operands transposed first); the `_sg` GEMMs need the first two and the
/// device's subgroups, the others are the storage kernels. With the third off the `_sg`
/// kernels read transposed operands in place.
const KERNEL_SETS: [(bool, bool, bool); 3] = [
    (true, true, true),
    (true, true, false),
    (false, false, true),
];

fn run<T>(
    (cpu, sg, transposes): (bool, bool, bool),
    f: impl FnOnce(&mut fewlabels::kernel::Recorder) -> fewlabels::Result<T>,
) -> T {
    ctx()
        .run(|r| {
            r.set_cpu_kernels(cpu);
            r.set_subgroups(sg);
            r.set_gemm_transposes(transposes);
            f(r)
        })
        .unwrap()
}

#[test]
fn linear_forward() {
    let g = Golden::load("gemm");
    for set in KERNEL_SETS {
        for c in g.cases("linear_") {
            let x = g.tensor(&format!("{c}/x"));
            let w = g.tensor(&format!("{c}/w"));
            let b = c.ends_with("_bias").then(|| g.tensor(&format!("{c}/b")));
            let y = run(set, |r| gemm::linear(r, &x, &w, b.as_ref()));
            check(&g, &format!("{c}/y"), &y);
        }
    }
}

#[test]
fn linear_backward() {
    let g = Golden::load("gemm");
    for set in KERNEL_SETS {
        for c in g.cases("linear_") {
            let has_bias = c.ends_with("_bias");
            let x = g.tensor(&format!("{c}/x"));
            let w = g.tensor(&format!("{c}/w"));
            let dy = g.tensor(&format!("{c}/dy"));
            let gr = run(set, |r| gemm::linear_backward(r, &x, &w, &dy, has_bias));
            check(&g, &format!("{c}/dx"), &gr.dx);
            check(&g, &format!("{c}/dw"), &gr.dw);
            assert_eq!(gr.db.is_some(), has_bias, "{c}: db presence");
            if let Some(db) = &gr.db {
                check(&g, &format!("{c}/db"), db);
            }
        }
    }
}

#[test]
fn bmm_forward() {
    let g = Golden::load("gemm");
    for set in KERNEL_SETS {
        for c in g.cases("bmm_") {
            let (ta, tb) = flags(&c);
            let a = g.tensor(&format!("{c}/a"));
            let b = g.tensor(&format!("{c}/b"));
            let out = run(set, |r| gemm::bmm(r, &a, &b, ta, tb));
            check(&g, &format!("{c}/c"), &out);
        }
    }
}

#[test]
fn bmm_backward() {
    let g = Golden::load("gemm");
    for set in KERNEL_SETS {
        for c in g.cases("bmm_") {
            let (ta, tb) = flags(&c);
            let a = g.tensor(&format!("{c}/a"));
            let b = g.tensor(&format!("{c}/b"));
            let dc = g.tensor(&format!("{c}/dc"));
            let (da, db) = run(set, |r| gemm::bmm_backward(r, &a, &b, ta, tb, &dc));
            check(&g, &format!("{c}/da"), &da);
            check(&g, &format!("{c}/db"), &db);
        }
    }
}

#[test]
fn sum_rows_matches_and_is_deterministic() {
    let g = Golden::load("gemm");
    for c in g.cases("sumrows_") {
        let x = g.tensor(&format!("{c}/x"));
        let y1 = ctx().run(|r| gemm::sum_rows(r, &x)).unwrap();
        let y2 = ctx().run(|r| gemm::sum_rows(r, &x)).unwrap();
        check(&g, &format!("{c}/y"), &y1);
        let (v1, v2) = (y1.to_f32(ctx()).unwrap(), y2.to_f32(ctx()).unwrap());
        assert!(
            v1.iter().zip(&v2).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{c}: two runs differ"
        );
    }
}

#[test]
fn matmul_with_bias_matches_linear() {
    // matmul(x, w, false, true, b) is linear; check the 2-D entry on a golden case.
    let g = Golden::load("gemm");
    let c = "linear_n5i33o17_bias";
    let x = g.tensor(&format!("{c}/x"));
    let w = g.tensor(&format!("{c}/w"));
    let b = g.tensor(&format!("{c}/b"));
    let y = ctx()
        .run(|r| gemm::matmul(r, &x, &w, false, true, Some(&b)))
        .unwrap();
    check(&g, &format!("{c}/y"), &y);
}

/// On CPU adapters with subgroups a small transposed operand is transposed first: linear
/// and its backward then run only the untransposed `_sg` kernel, and a large transposed
/// operand (past the size limit) keeps the transposing kernel. Elsewhere, or with the
/// transposes off, nothing is transposed.
#[test]
fn small_transposed_operands_take_the_untransposed_kernel() {
    let c = fewlabels::Context::new().unwrap();
    if !(c.cpu_kernels() && c.subgroups()) {
        return;
    }
    c.set_profiling(true);
    let t = |shape: &[usize]| Tensor::zeros(&c, shape).unwrap();
    let entries =
        |transposes: bool,
         f: &dyn Fn(&mut fewlabels::kernel::Recorder) -> fewlabels::Result<()>| {
            c.run(|r| {
                r.set_gemm_transposes(transposes);
                f(r)
            })
            .unwrap();
            c.wait().unwrap();
            let mut e: Vec<String> = c.take_profile().into_iter().map(|r| r.entry).collect();
            e.sort();
            e.dedup();
            e
        };
    let (x, w, dy) = (t(&[32, 48]), t(&[16, 48]), t(&[32, 16]));
    let linear = |r: &mut fewlabels::kernel::Recorder| {
        gemm::linear(r, &x, &w, None)?;
        gemm::linear_backward(r, &x, &w, &dy, false)?;
        Ok(())
    };
    assert_eq!(entries(true, &linear), ["gemm_nn_sg", "resize_2d"]);
    assert_eq!(
        entries(false, &linear),
        ["gemm_nn_sg", "gemm_nt_sg", "gemm_tn_sg"]
    );
    // B of 64 x 1028 elements, past the limit of 2^16: read transposed.
    let (a, b) = (t(&[8, 1028]), t(&[64, 1028]));
    let large = |r: &mut fewlabels::kernel::Recorder| {
        gemm::matmul(r, &a, &b, false, true, None).map(|_| ())
    };
    assert_eq!(entries(true, &large), ["gemm_nt_sg"]);
}

/// A transposed weight is kept for later products until the weight is written: the same
/// recorder transposes it once, a write (a copy in the recorder, or `write_f32` between
/// recorders) makes it stale, and every result matches a product with a fresh weight.
#[test]
fn kept_transposed_weight_follows_writes() {
    let c = fewlabels::Context::new().unwrap();
    c.set_profiling(true);
    let data = |len: usize, seed: usize| -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104729) % 997) as f32 / 997.0 - 0.5)
            .collect()
    };
    let x = Tensor::from_f32(&c, &[6, 12], &data(72, 1)).unwrap();
    let w = Tensor::from_f32(&c, &[8, 12], &data(96, 2)).unwrap();
    let w2 = Tensor::from_f32(&c, &[8, 12], &data(96, 3)).unwrap();
    let fresh = |seed: usize| {
        let wf = Tensor::from_f32(&c, &[8, 12], &data(96, seed)).unwrap();
        c.run(|r| gemm::linear(r, &x, &wf, None))
            .unwrap()
            .to_f32(&c)
            .unwrap()
    };
    let (y1, y2) = (fresh(2), fresh(3));
    c.wait().unwrap();
    c.take_profile();
    let transposes = || {
        c.wait().unwrap();
        c.take_profile()
            .iter()
            .filter(|r| r.entry == "resize_2d")
            .map(|r| r.count)
            .sum::<u64>()
    };
    let (a, b, d) = c
        .run(|r| {
            let a = gemm::linear(r, &x, &w, None)?;
            let b = gemm::linear(r, &x, &w, None)?;
            r.copy(&w2, &w)?;
            let d = gemm::linear(r, &x, &w, None)?;
            Ok((a, b, d))
        })
        .unwrap();
    let vals = |t: &Tensor| t.to_f32(&c).unwrap();
    assert_eq!(vals(&a), y1);
    assert_eq!(vals(&b), y1);
    assert_eq!(vals(&d), y2);
    let kept = c.cpu_kernels() && c.subgroups();
    assert_eq!(transposes(), if kept { 2 } else { 0 });
    // Between recorders: kept while unwritten, stale after write_f32.
    let e = c.run(|r| gemm::linear(r, &x, &w, None)).unwrap();
    assert_eq!(vals(&e), y2);
    assert_eq!(transposes(), 0);
    w.write_f32(&c, &data(96, 2)).unwrap();
    let f = c.run(|r| gemm::linear(r, &x, &w, None)).unwrap();
    assert_eq!(vals(&f), y1);
    assert_eq!(transposes(), if kept { 1 } else { 0 });
}

#[test]
fn empty_inner_dimension_gives_bias() {
    // K = 0: every output is the bias (or zero).
    let x = Tensor::zeros(ctx(), &[3, 0]).unwrap();
    let w = Tensor::zeros(ctx(), &[5, 0]).unwrap();
    let b = Tensor::from_f32(ctx(), &[5], &[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    let y = ctx().run(|r| gemm::linear(r, &x, &w, Some(&b))).unwrap();
    let v = y.to_f32(ctx()).unwrap();
    assert_eq!(v, [1.0, 2.0, 3.0, 4.0, 5.0].repeat(3));
    let s = ctx()
        .run(|r| gemm::sum_rows(r, &Tensor::zeros(ctx(), &[0, 4]).unwrap()))
        .unwrap();
    assert_eq!(s.to_f32(ctx()).unwrap(), vec![0.0; 4]);
}

#[test]
fn bad_inputs_are_errors() {
    let t = |shape: &[usize]| Tensor::zeros(ctx(), shape).unwrap();
    let i = Tensor::from_i32(ctx(), &[2, 3], &[0; 6]).unwrap();
    ctx()
        .run(|r| {
            // linear: wrong rank, mismatched in, wrong bias, i32 input.
            assert!(gemm::linear(r, &t(&[2, 3, 1]), &t(&[4, 3]), None).is_err());
            assert!(gemm::linear(r, &t(&[2, 3]), &t(&[4, 5]), None).is_err());
            assert!(gemm::linear(r, &t(&[2, 3]), &t(&[4, 3]), Some(&t(&[3]))).is_err());
            assert!(gemm::linear(r, &i, &t(&[4, 3]), None).is_err());
            assert!(gemm::linear_backward(r, &t(&[2, 3]), &t(&[4, 3]), &t(&[2, 5]), true).is_err());
            // bmm: 2-D operands, batch mismatch, inner mismatch (per transpose), bad dc.
            assert!(gemm::bmm(r, &t(&[2, 3]), &t(&[3, 2]), false, false).is_err());
            assert!(gemm::bmm(r, &t(&[2, 3, 4]), &t(&[3, 4, 5]), false, false).is_err());
            assert!(gemm::bmm(r, &t(&[2, 3, 4]), &t(&[2, 4, 5]), true, false).is_err());
            assert!(gemm::bmm(r, &t(&[2, 3, 4]), &t(&[2, 4, 5]), false, true).is_err());
            assert!(gemm::bmm_backward(
                r,
                &t(&[2, 3, 4]),
                &t(&[2, 4, 5]),
                false,
                false,
                &t(&[2, 5, 3])
            )
            .is_err());
            // matmul: inner mismatch; sum_rows: not 2-D.
            assert!(gemm::matmul(r, &t(&[2, 3]), &t(&[2, 3]), false, false, None).is_err());
            assert!(gemm::sum_rows(r, &t(&[5])).is_err());
            Ok(())
        })
        .unwrap();
}

/// CPU seconds used by this process so far (user + system), where /proc is readable. On a
/// CPU adapter (lavapipe) the kernels run on this process's threads, so this shows the work
/// done even when other processes share the cores.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// 1024 x 1024 x 1024 matmul throughput for each transpose combination: one warm-up, then the
/// median of 3 timed runs (wall clock; CPU time alongside). Nothing is asserted.
/// Run with `cargo test --release --test golden_gemm -- --ignored --nocapture gemm_speed`.
#[test]
#[ignore]
fn gemm_speed() {
    let n = 1024;
    let data: Vec<f32> = (0..n * n)
        .map(|i| ((i * 7919 % 1000) as f32) * 1e-3 - 0.5)
        .collect();
    let a = Tensor::from_f32(ctx(), &[n, n], &data).unwrap();
    let b = Tensor::from_f32(ctx(), &[n, n], &data).unwrap();
    let flop = 2.0 * (n as f64).powi(3);
    for (name, ta, tb) in [
        ("nn", false, false),
        ("nt", false, true),
        ("tn", true, false),
        ("tt", true, true),
    ] {
        let run = || {
            let c0 = cpu_seconds();
            let t0 = std::time::Instant::now();
            let c = ctx()
                .run(|r| gemm::matmul(r, &a, &b, ta, tb, None))
                .unwrap();
            ctx().wait().unwrap();
            drop(c);
            let cpu = cpu_seconds().zip(c0).map(|(x, y)| x - y);
            (t0.elapsed().as_secs_f64(), cpu)
        };
        run();
        let mut times: Vec<(f64, Option<f64>)> = (0..3).map(|_| run()).collect();
        times.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap());
        let (t, cpu) = times[1];
        let cpu_note = cpu
            .map(|c| {
                format!(
                    ", {:.2} CPU s = {:.1} GFLOP per CPU second",
                    c,
                    flop / c / 1e9
                )
            })
            .unwrap_or_default();
        eprintln!(
            "gemm_speed {name} {n}^3: median {:.0} ms, {:.1} GFLOP/s{cpu_note}",
            t * 1e3,
            flop / t / 1e9
        );
    }
}

/// Batched products at the shapes of the Winograd convs (36 products of tiles x channels) and
/// 1024^3: median wall ms of `BMM_SPEED_REPS` (default 7) calls after a warm-up. Nothing is
/// asserted. Run with
/// `cargo test --release --test golden_gemm -- --ignored --nocapture bmm_speed`.
#[test]
#[ignore]
fn bmm_speed() {
    let c = ctx();
    let reps = std::env::var("BMM_SPEED_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7usize);
    for (b, m, k, n) in [
        (36usize, 1024usize, 64usize, 64usize),
        (36, 1024, 256, 64),
        (36, 1024, 64, 256),
        (36, 4096, 64, 64),
        (1, 1024, 1024, 1024),
    ] {
        let a = Tensor::from_f32(c, &[b, m, k], &vec![0.5; b * m * k]).unwrap();
        let w = Tensor::from_f32(c, &[b, k, n], &vec![0.25; b * k * n]).unwrap();
        let mut ms = Vec::new();
        for i in 0..=reps {
            let t0 = std::time::Instant::now();
            let y = c.run(|r| gemm::bmm(r, &a, &w, false, false)).unwrap();
            c.wait().unwrap();
            drop(y);
            if i > 0 {
                ms.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        ms.sort_by(|x, y| x.partial_cmp(y).unwrap());
        let med = ms[ms.len() / 2];
        let flop = 2.0 * (b * m * k * n) as f64;
        println!(
            "bmm {b} x {m} x {k} x {n}: median {med:.2} ms, {:.1} GFLOP/s",
            flop / med / 1e6
        );
        let prof = c.take_profile();
        if !prof.is_empty() {
            println!("{}", fewlabels::kernel::format_profile(&prof));
        }
    }
}
