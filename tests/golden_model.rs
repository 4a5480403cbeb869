//! Whole networks against the PyTorch reference module (tests/reference/biggan.py via
//! tests/golden/gen_model.py, float64 autograd): for the tiny presets (1 and 3 channels, 2 G
//! blocks, 3 D blocks, attention in G and D), G's images, D's three outputs, the gradient of a
//! scalar loss with respect to every parameter and to D's input, and the spectral-norm u after
//! two consecutive training calls; then sampling in eval mode with standing statistics.
//!
//! Tolerances (max error / max |reference| per tensor): outputs 1e-4; gradients 1e-3 (dozens
//! of f32 ops deep, through batch statistics of 3 samples, attention softmax and spectral
//! norm; the worst seen is printed). A conv bias that feeds batch norm has a true gradient of
//! exactly zero (BN removes any constant shift), which f32 reproduces only as rounding noise;
//! so gradient errors are measured against max(max |reference|, 1e-3 x the largest gradient
//! of that call).

mod common;
use common::{ctx, Golden};
use fewlabels::model::discriminator::DGrads;
use fewlabels::model::{Config, Discriminator, Generator, Grads, Mode, Weights};

const OUT_TOL: f32 = 1e-4;
const GRAD_TOL: f32 = 1e-3;

fn weights(g: &Golden, case: &str) -> Weights {
    let mut w = Weights::default();
    for name in g.names(&format!("{case}/param.")) {
        w.map
            .insert(name.clone(), g.tensor(&format!("{case}/param.{name}")));
    }
    assert!(!w.map.is_empty(), "{case}: no parameters");
    w
}

/// Collects relative errors and fails at the end, listing every tensor over its tolerance.
#[derive(Default)]
struct Report(Vec<(String, f32, f32)>);

/// The largest gradient magnitude among golden tensors `<case>/<call>.*`.
fn grad_scale(g: &Golden, case: &str, call: &str) -> f32 {
    g.names(&format!("{case}/{call}."))
        .iter()
        .map(|n| g.max_abs(&format!("{case}/{call}.{n}")))
        .fold(0f32, f32::max)
}

impl Report {
    fn add(&mut self, g: &Golden, name: &str, got: &fewlabels::Tensor, tol: f32) {
        let e = g.rel_error(name, got);
        self.0.push((name.to_string(), e, tol));
    }
    fn add_grad(&mut self, g: &Golden, name: &str, got: &fewlabels::Tensor, floor: f32) {
        let e = g.rel_error_floor(name, got, floor);
        self.0.push((name.to_string(), e, GRAD_TOL));
    }
    fn finish(self, what: &str) {
        let worst = self.0.iter().map(|r| r.1).fold(0f32, f32::max);
        eprintln!(
            "{what}: {} tensors compared, worst relative error {worst:e}",
            self.0.len()
        );
        if std::env::var_os("FL_VERBOSE").is_some() {
            for (n, e, t) in &self.0 {
                eprintln!("  {n}: {e:e} (tolerance {t:e})");
            }
        }
        let bad: Vec<String> = self
            .0
            .iter()
            .filter(|(_, e, t)| e.is_nan() || e > t)
            .map(|(n, e, t)| format!("{n}: {e:e} > {t:e}"))
            .collect();
        assert!(bad.is_empty(), "{what}:\n{}", bad.join("\n"));
    }
}

fn generator_case(preset: &str) {
    let g = Golden::load("model");
    let cfg = Config::preset(preset).unwrap();
    let case = format!("{preset}_g");
    let ws = weights(&g, &case);
    let gen = Generator {
        cfg: &cfg,
        prefix: "G",
    };
    let z = g.tensor(&format!("{case}/z"));
    let y = g.tensor(&format!("{case}/y"));
    let r = g.tensor(&format!("{case}/R"));
    let mut report = Report::default();
    for (suffix, call) in [("", "grad"), ("2", "grad2")] {
        let grads = ctx()
            .run(|rec| {
                let (img, gctx) = gen.forward(rec, &ws, &z, &y, Mode::TRAIN)?;
                let mut grads = Grads::default();
                gen.backward(rec, &ws, &gctx, &r, &mut grads)?;
                grads.map.insert("image".into(), img);
                Ok(grads)
            })
            .unwrap();
        report.add(
            &g,
            &format!("{case}/out{suffix}"),
            &grads.map["image"],
            OUT_TOL,
        );
        let names = g.names(&format!("{case}/{call}."));
        assert!(names.len() > 20, "{case}: too few gradients in the golden");
        let floor = 1e-3 * grad_scale(&g, &case, call);
        for name in names {
            let got = grads
                .map
                .get(&name)
                .unwrap_or_else(|| panic!("{case}: no gradient for {name}"));
            report.add_grad(&g, &format!("{case}/{call}.{name}"), got, floor);
        }
        assert_eq!(
            grads.map.len() - 1,
            g.names(&format!("{case}/{call}.")).len(),
            "{case}: gradients the reference does not have"
        );
        let u_key = if suffix.is_empty() {
            "u_after"
        } else {
            "u_after2"
        };
        for name in g.names(&format!("{case}/{u_key}.")) {
            report.add(
                &g,
                &format!("{case}/{u_key}.{name}"),
                &ws.map[&name],
                OUT_TOL,
            );
        }
    }
    report.finish(&case);
}

fn discriminator_case(preset: &str) {
    let g = Golden::load("model");
    let cfg = Config::preset(preset).unwrap();
    let case = format!("{preset}_d");
    let ws = weights(&g, &case);
    let d = Discriminator { cfg: &cfg };
    let x = g.tensor(&format!("{case}/x"));
    let y = g.tensor(&format!("{case}/y"));
    let (a, b, c) = (
        g.tensor(&format!("{case}/a")),
        g.tensor(&format!("{case}/b")),
        g.tensor(&format!("{case}/c")),
    );
    let mut report = Report::default();
    for (suffix, call) in [("", "grad"), ("2", "grad2")] {
        let (out, grads, dx) = ctx()
            .run(|rec| {
                let (out, dctx) = d.forward(rec, &ws, &x, &y, Mode::TRAIN)?;
                let mut grads = Grads::default();
                let dx = d.backward(
                    rec,
                    &dctx,
                    DGrads {
                        logit: &a,
                        rotation: Some(&b),
                        class: Some(&c),
                    },
                    &mut grads,
                )?;
                Ok((out, grads, dx))
            })
            .unwrap();
        report.add(&g, &format!("{case}/logit{suffix}"), &out.logit, OUT_TOL);
        report.add(
            &g,
            &format!("{case}/rot{suffix}"),
            out.rotation.as_ref().unwrap(),
            OUT_TOL,
        );
        report.add(
            &g,
            &format!("{case}/cls{suffix}"),
            out.class.as_ref().unwrap(),
            OUT_TOL,
        );
        let floor = 1e-3 * grad_scale(&g, &case, call);
        report.add_grad(&g, &format!("{case}/{call}.x"), &dx, floor);
        for name in g.names(&format!("{case}/{call}.D.")) {
            let name = format!("D.{name}");
            let got = grads
                .map
                .get(&name)
                .unwrap_or_else(|| panic!("{case}: no gradient for {name}"));
            report.add_grad(&g, &format!("{case}/{call}.{name}"), got, floor);
        }
        assert_eq!(
            grads.map.len(),
            g.names(&format!("{case}/{call}.D.")).len(),
            "{case}: gradients the reference does not have"
        );
        let u_key = if suffix.is_empty() {
            "u_after"
        } else {
            "u_after2"
        };
        for name in g.names(&format!("{case}/{u_key}.")) {
            report.add(
                &g,
                &format!("{case}/{u_key}.{name}"),
                &ws.map[&name],
                OUT_TOL,
            );
        }
    }
    report.finish(&case);
}

fn eval_case(preset: &str) {
    let g = Golden::load("model");
    let cfg = Config::preset(preset).unwrap();
    let case = format!("{preset}_eval");
    let ws = weights(&g, &case);
    let gen = Generator {
        cfg: &cfg,
        prefix: "G",
    };
    let mut report = Report::default();
    for b in ["b1", "b7"] {
        let z = g.tensor(&format!("{case}/z_{b}"));
        let y = g.tensor(&format!("{case}/y_{b}"));
        let u_before: Vec<Vec<f32>> = ws
            .map
            .iter()
            .filter(|(k, _)| k.ends_with(".u"))
            .map(|(_, t)| t.to_f32(ctx()).unwrap())
            .collect();
        let img = ctx()
            .run(|rec| Ok(gen.forward(rec, &ws, &z, &y, Mode::EVAL)?.0))
            .unwrap();
        report.add(&g, &format!("{case}/out_{b}"), &img, OUT_TOL);
        let u_after: Vec<Vec<f32>> = ws
            .map
            .iter()
            .filter(|(k, _)| k.ends_with(".u"))
            .map(|(_, t)| t.to_f32(ctx()).unwrap())
            .collect();
        assert_eq!(u_before, u_after, "eval mode must not change u");
    }
    // Accumulating standing statistics over the reference's batches reproduces its values.
    let mut fresh = ws.clone();
    let zs = g.f32(&format!("{case}/standing_z"));
    let ys = g.i32(&format!("{case}/standing_y"));
    let shape = g.shape(&format!("{case}/standing_z"));
    let (nb, bs, zd) = (shape[0], shape[1], shape[2]);
    let batches: Vec<(fewlabels::Tensor, fewlabels::Tensor)> = (0..nb)
        .map(|i| {
            (
                fewlabels::Tensor::from_f32(ctx(), &[bs, zd], &zs[i * bs * zd..(i + 1) * bs * zd])
                    .unwrap(),
                fewlabels::Tensor::from_i32(ctx(), &[bs], &ys[i * bs..(i + 1) * bs]).unwrap(),
            )
        })
        .collect();
    gen.standing_stats(ctx(), &mut fresh, &batches).unwrap();
    let stats: Vec<String> = ws
        .map
        .keys()
        .filter(|k| k.ends_with(".mean") || k.ends_with(".var"))
        .cloned()
        .collect();
    assert!(stats.len() >= 10);
    for name in stats {
        report.add(
            &g,
            &format!("{case}/param.{name}"),
            &fresh.map[&name],
            OUT_TOL,
        );
    }
    report.finish(&case);
}

#[test]
fn generator_tiny() {
    generator_case("tiny");
}

#[test]
fn generator_tiny_rgb() {
    generator_case("tiny_rgb");
}

#[test]
fn discriminator_tiny() {
    discriminator_case("tiny");
}

#[test]
fn discriminator_tiny_rgb() {
    discriminator_case("tiny_rgb");
}

#[test]
fn sampling_with_standing_stats_tiny() {
    eval_case("tiny");
}

#[test]
fn sampling_with_standing_stats_tiny_rgb() {
    eval_case("tiny_rgb");
}
