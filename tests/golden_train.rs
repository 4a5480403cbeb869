//! Training steps against the PyTorch reference (tests/reference/s3gan.py via
//! tests/golden/gen_train.py, float64 with torch.optim.Adam): one D step then one G step on the
//! tiny networks (N = 6, 2 rotated rows) for the variants s3gan-co (labels with gaps, class
//! head argmax, rotation loss, EMA averaging), conditional (no heads, every label known, EMA
//! copying) and ssgan (one class, rotation loss, EMA averaging). Compared: every loss term, the
//! projection labels of the D step, every tensor of G, D and G_ema after the two steps, and
//! Adam's m and v of every parameter.
//!
//! Tolerances:
//! - Losses: 1e-4 relative (to max(|reference|, 1e-2)): sums over a few dozen f32 values.
//!   The G step runs after D's Adam step, so its losses also carry D's parameter differences.
//!   All but one are negligible: D.linear.bias has the hinge gradient
//!   (#fake logits > -1 - #real logits < 1) / N, exactly 0 when the counts balance (both
//!   cases here), which f32 gives as rounding noise and Adam turns into a step anywhere in
//!   [-lr, lr]; the bias adds to every logit, so the adversarial loss (and the total) may
//!   differ by that bias's difference on top of 1e-4. Likewise the generator's conv biases
//!   that feed batch norm (true gradient 0) take loose steps, which batch norm cancels.
//! - Adam m (= the gradient, beta1 = 0): GRAD_TOL relative to the largest |m| of its tensor,
//!   at least 1e-3 x the largest gradient of that network (as in golden_model.rs: a conv bias
//!   that feeds batch norm has a true gradient of 0, which f32 gives as rounding noise).
//!   v = (1 - beta2) g^2: 2 GRAD_TOL on the same scale squared.
//! - Parameters after Adam: each parameter takes one step, p1 = p0 - lr * f(g) with
//!   f(g) = g / (|g| + eps) (at t = 1 the bias corrections cancel: m = (1 - b1) g and
//!   sqrt(v / (1 - b2)) = |g|). Adam normalises the gradient, so the step of an element whose
//!   gradient is far above the gradient error is nearly exact, while one whose gradient is
//!   within the error of 0 can move by anything in [-lr, lr]. So each element may differ by
//!   what Adam makes of any gradient within the gradient tolerance d of the reference one,
//!   `lr * max |f(g_ref +- d) - f(g_ref)|`,
//!   plus the f32 rounding of p (2 ulp of |p|) and of the update (1e-5 lr). This is tight
//!   where the gradient is well determined and loose only where it cannot be.
//! - G_ema: (1 - decay) x the parameter bound (1 when G_ema copies G) plus 2 ulp.
//! - Spectral-norm u after two power iterations: 1e-4 relative (as golden_model.rs); standing
//!   statistics (unchanged by training, copied or averaged into G_ema): 1e-6.

mod common;
use common::{ctx, Golden};
use fewlabels::model::layers::Weights;
use fewlabels::model::{spec, Config, Model};
use fewlabels::train::{LabelUse, TrainConfig, Trainer, Variant};
use fewlabels::Tensor;
use std::collections::BTreeMap;

const GRAD_TOL: f32 = 1e-3;
const LOSS_TOL: f32 = 1e-4;
const U_TOL: f32 = 1e-4;
const STAT_TOL: f32 = 1e-6;

struct Case {
    name: &'static str,
    variant: Variant,
    rotation_head: bool,
    class_head: bool,
    ema_decay: f64,
    ema_start: u64,
}

const CASES: [Case; 3] = [
    Case {
        name: "s3gan-co",
        variant: Variant::S3ganCo,
        rotation_head: true,
        class_head: true,
        ema_decay: 0.9,
        ema_start: 0,
    },
    Case {
        name: "conditional",
        variant: Variant::Conditional,
        rotation_head: false,
        class_head: false,
        ema_decay: 0.9,
        ema_start: 5,
    },
    Case {
        name: "ssgan",
        variant: Variant::Ssgan,
        rotation_head: true,
        class_head: false,
        ema_decay: 0.9,
        ema_start: 1,
    },
];

fn weights(g: &Golden, case: &str, part: &str, prefix: &str) -> Weights {
    let mut w = Weights::default();
    for name in g.names(&format!("{case}/before.{part}.")) {
        w.map.insert(
            format!("{prefix}.{name}"),
            g.tensor(&format!("{case}/before.{part}.{name}")),
        );
    }
    assert!(!w.map.is_empty(), "{case}: no {part} tensors");
    w
}

/// Per-tensor errors; fails at the end listing every tensor over its bound.
#[derive(Default)]
struct Report {
    rows: Vec<(String, f32)>,
    bad: Vec<String>,
    loose: usize,
    elements: usize,
}

impl Report {
    /// `score` = max over elements of error / allowed (<= 1 passes).
    fn add(&mut self, name: String, score: f32) {
        if score.is_nan() || score > 1.0 {
            self.bad
                .push(format!("{name}: error / allowed = {score:e}"));
        }
        self.rows.push((name, score));
    }

    /// max |got - want| <= tol * max(max|want|, floor).
    fn rel(&mut self, name: String, got: &[f32], want: &[f32], tol: f32, floor: f32) {
        let scale = want.iter().fold(floor, |m, v| m.max(v.abs())).max(1e-30);
        let err = got.iter().zip(want).fold(0f32, |m, (a, b)| {
            if a.is_finite() {
                m.max((a - b).abs())
            } else {
                f32::INFINITY
            }
        });
        self.add(name, err / (tol * scale));
    }

    fn finish(self, what: &str) {
        let worst = self.rows.iter().fold((String::new(), 0f32), |w, (n, s)| {
            if *s > w.1 {
                (n.clone(), *s)
            } else {
                w
            }
        });
        eprintln!(
            "{what}: {} tensors, worst error / allowed {:e} ({}); {} of {} parameter elements \
             had a gradient within its tolerance of 0",
            self.rows.len(),
            worst.1,
            worst.0,
            self.loose,
            self.elements
        );
        if std::env::var_os("FL_VERBOSE").is_some() {
            for (n, s) in &self.rows {
                eprintln!("  {n}: {s:e}");
            }
        }
        assert!(self.bad.is_empty(), "{what}:\n{}", self.bad.join("\n"));
    }
}

fn f(g: f64, eps: f64) -> f64 {
    g / (g.abs() + eps)
}

/// Allowed |p - p_ref| per element for a parameter after one Adam step (see the module docs).
fn param_bounds(m_ref: &[f32], p_ref: &[f32], d: f32, tc: &TrainConfig, lr: f64) -> Vec<f32> {
    m_ref
        .iter()
        .zip(p_ref)
        .map(|(&m, &p)| {
            let g = m as f64 / (1.0 - tc.beta1);
            let d = d as f64 / (1.0 - tc.beta1);
            let df = (f(g + d, tc.eps) - f(g, tc.eps))
                .abs()
                .max((f(g - d, tc.eps) - f(g, tc.eps)).abs());
            (lr * df + 1e-5 * lr) as f32 + 2.0 * f32::EPSILON * p.abs()
        })
        .collect()
}

fn run_case(c: &Case) {
    let g = Golden::load("train");
    let case = c.name;
    let cfg = Config {
        rotation_head: c.rotation_head,
        class_head: c.class_head,
        ..Config::preset("tiny").unwrap()
    };
    let mut tc = TrainConfig::new(c.variant);
    tc.ema_decay = c.ema_decay;
    tc.ema_start = c.ema_start;
    tc.rot_fraction = 1.0 / 3.0;
    let hyper = g.f32(&format!("{case}/hyper"));
    let expect = [
        tc.lr_g as f32,
        tc.lr_d as f32,
        tc.d_rot_weight,
        tc.g_rot_weight,
        tc.class_weight,
        tc.ema_decay as f32,
        tc.ema_start as f32,
        tc.rot_rows(6) as f32,
    ];
    assert_eq!(hyper, expect, "{case}: the golden's hyper-parameters");
    let model = Model {
        cfg: cfg.clone(),
        g: weights(&g, case, "G", "G"),
        d: Some(weights(&g, case, "D", "D")),
        g_ema: Some(weights(&g, case, "G_ema", "G")),
        metadata: BTreeMap::new(),
    };
    let mut tr = Trainer::new(ctx(), model, tc.clone()).unwrap();
    let x = g.tensor(&format!("{case}/x"));
    let y = g.i32(&format!("{case}/y"));
    let z_d = g.tensor(&format!("{case}/z_d"));
    let yf_d = g.i32(&format!("{case}/yf_d"));
    let z_g = g.tensor(&format!("{case}/z_g"));
    let yf_g = g.i32(&format!("{case}/yf_g"));
    let d = tr.d_step(ctx(), &x, &y, &z_d, &yf_d).unwrap();
    let gs = tr.g_step(ctx(), &z_g, &yf_g).unwrap();
    assert_eq!((tr.d_steps_done(), tr.g_steps_done()), (1, 1));

    let mut rep = Report::default();
    let loss_d = g.f32(&format!("{case}/loss_d"));
    let loss_g = g.f32(&format!("{case}/loss_g"));
    let got_d = [d.total, d.hinge, d.rotation, d.class];
    let got_g = [gs.total, gs.adversarial, gs.rotation];
    eprintln!("{case}: D losses {got_d:?} (reference {loss_d:?})");
    eprintln!("{case}: G losses {got_g:?} (reference {loss_g:?})");
    for (i, term) in ["total", "hinge", "rotation", "class"].iter().enumerate() {
        rep.rel(
            format!("loss_d.{term}"),
            &got_d[i..=i],
            &loss_d[i..=i],
            LOSS_TOL,
            1e-2,
        );
    }
    // The G step sees D after its Adam step. D.linear.bias adds to every logit, so the
    // adversarial loss moves by exactly its difference from the reference, which is loose
    // when its hinge gradient is 0 (see the module docs).
    let bias_ref = g.f32(&format!("{case}/after.D.linear.bias"))[0];
    let bias_got = tr.model.d.as_ref().unwrap().map["D.linear.bias"]
        .to_f32(ctx())
        .unwrap()[0];
    let shift = (bias_got - bias_ref).abs();
    for (i, term) in ["total", "adversarial", "rotation"].iter().enumerate() {
        let allowed = LOSS_TOL * loss_g[i].abs().max(1e-2) + if i < 2 { shift } else { 0.0 };
        let err = (got_g[i] - loss_g[i]).abs();
        rep.add(format!("loss_g.{term}"), err / allowed);
    }
    assert_eq!(
        d.y_used.to_i32(ctx()).unwrap(),
        g.i32(&format!("{case}/y_used")),
        "{case}: projection labels of the D step"
    );

    // Per network: gradient scale, then m, v and the parameters.
    let download = |t: &Tensor| t.to_f32(ctx()).unwrap();
    let mut p_bounds: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    for (part, lr, specs) in [
        ("G", tc.lr_g, spec::generator(&cfg, "G")),
        ("D", tc.lr_d, spec::discriminator(&cfg)),
    ] {
        let m_names = g.names(&format!("{case}/m.{part}."));
        let scale = m_names
            .iter()
            .map(|n| g.max_abs(&format!("{case}/m.{part}.{n}")))
            .fold(0f32, f32::max);
        let floor = 1e-3 * scale;
        let ws = if part == "G" {
            &tr.model.g
        } else {
            tr.model.d.as_ref().unwrap()
        };
        for (name, e) in &specs {
            let short = &name[part.len() + 1..];
            let p_got = download(ws.get(name).unwrap());
            let p_ref = g.f32(&format!("{case}/after.{part}.{short}"));
            if !e.kind.trained() {
                let tol = if name.ends_with(".u") {
                    U_TOL
                } else {
                    STAT_TOL
                };
                rep.rel(format!("{part}.{short}"), &p_got, &p_ref, tol, 0.0);
                continue;
            }
            let (m, v, steps) = tr.adam_state(name).unwrap();
            let m_key = format!("{case}/m.{part}.{short}");
            if !m_names.iter().any(|n| n == short) {
                // No gradient in the reference (a head the variant does not use): untouched.
                assert_eq!(steps, 0, "{case}: {name} was updated");
                let before = g.f32(&format!("{case}/before.{part}.{short}"));
                assert_eq!(p_got, before, "{case}: {name} changed");
                continue;
            }
            assert_eq!(steps, 1, "{case}: {name} steps");
            let m_ref = g.f32(&m_key);
            let v_ref = g.f32(&format!("{case}/v.{part}.{short}"));
            let m_scale = m_ref.iter().fold(floor, |a, b| a.max(b.abs()));
            let dg = GRAD_TOL * m_scale;
            rep.rel(
                format!("m.{part}.{short}"),
                &download(m),
                &m_ref,
                GRAD_TOL,
                floor,
            );
            rep.rel(
                format!("v.{part}.{short}"),
                &download(v),
                &v_ref,
                2.0 * GRAD_TOL,
                (1.0 - tc.beta2 as f32) * floor * floor,
            );
            let bounds = param_bounds(&m_ref, &p_ref, dg, &tc, lr);
            rep.loose += m_ref.iter().filter(|a| a.abs() <= dg).count();
            rep.elements += m_ref.len();
            let score = p_got
                .iter()
                .zip(&p_ref)
                .zip(&bounds)
                .fold(0f32, |s, ((a, b), t)| s.max((a - b).abs() / t));
            rep.add(format!("{part}.{short}"), score);
            if std::env::var_os("FL_VERBOSE").is_some() {
                let big = p_got
                    .iter()
                    .zip(&p_ref)
                    .filter(|(a, b)| (*a - *b).abs() > 0.1 * lr as f32)
                    .count();
                let worst = p_got
                    .iter()
                    .zip(&p_ref)
                    .fold(0f32, |w, (a, b)| w.max((a - b).abs()));
                eprintln!(
                    "  {name}: {big} elements off by > 0.1 lr, worst {:e} lr",
                    worst / lr as f32
                );
            }
            p_bounds.insert(name.clone(), bounds);
        }
    }

    // G_ema: averaged or copied from G after the step.
    let decay = if 1 < tc.ema_start { 0.0 } else { tc.ema_decay };
    let ema = tr.model.g_ema.as_ref().unwrap();
    for (name, e) in &spec::generator(&cfg, "G") {
        let short = &name[2..];
        let got = download(ema.get(name).unwrap());
        let want = g.f32(&format!("{case}/after.G_ema.{short}"));
        let key = format!("G_ema.{short}");
        match p_bounds.get(name) {
            Some(b) if e.kind.trained() => {
                let score = got.iter().zip(&want).zip(b).fold(0f32, |s, ((a, w), t)| {
                    let allowed = (1.0 - decay as f32) * t + 2.0 * f32::EPSILON * w.abs();
                    s.max((a - w).abs() / allowed)
                });
                rep.add(key, score);
            }
            _ => {
                let tol = if name.ends_with(".u") {
                    U_TOL
                } else {
                    STAT_TOL
                };
                rep.rel(key, &got, &want, tol, 0.0);
            }
        }
    }
    rep.finish(case);
}

#[test]
fn s3gan_co_d_step_then_g_step() {
    run_case(&CASES[0]);
}

#[test]
fn conditional_d_step_then_g_step() {
    run_case(&CASES[1]);
}

#[test]
fn ssgan_d_step_then_g_step() {
    run_case(&CASES[2]);
}

#[test]
fn fill_unlabelled_keeps_labels_and_takes_the_argmax_elsewhere() {
    use fewlabels::ops::loss::fill_unlabelled;
    let (r, c) = (37, 5);
    let logits: Vec<f32> = (0..r * c)
        .map(|i| ((i * 7919) % 101) as f32 * 0.01 - 0.5)
        .collect();
    let labels: Vec<i32> = (0..r as i32)
        .map(|i| if i % 3 == 0 { -1 } else { i % c as i32 })
        .collect();
    let lt = Tensor::from_f32(ctx(), &[r, c], &logits).unwrap();
    let yt = Tensor::from_i32(ctx(), &[r], &labels).unwrap();
    let out = ctx()
        .run(|rec| fill_unlabelled(rec, &lt, &yt))
        .unwrap()
        .to_i32(ctx())
        .unwrap();
    for i in 0..r {
        let want = if labels[i] >= 0 {
            labels[i]
        } else {
            let row = &logits[i * c..(i + 1) * c];
            // First index of the maximum, as torch.argmax.
            (0..c).fold(0, |b, j| if row[j] > row[b] { j } else { b }) as i32
        };
        assert_eq!(out[i], want, "row {i}");
    }
    let bad = Tensor::from_i32(ctx(), &[r - 1], &labels[1..]).unwrap();
    assert!(ctx().run(|rec| fill_unlabelled(rec, &lt, &bad)).is_err());
}

#[test]
fn concat_batch_and_split_batch_invert_each_other() {
    use fewlabels::ops::rearrange::{concat_batch, split_batch};
    let a: Vec<f32> = (0..2 * 3 * 3 * 2).map(|i| i as f32).collect();
    let b: Vec<f32> = (0..3 * 3 * 2).map(|i| -(i as f32)).collect();
    let at = Tensor::from_f32(ctx(), &[2, 3, 3, 2], &a).unwrap();
    let bt = Tensor::from_f32(ctx(), &[1, 3, 3, 2], &b).unwrap();
    let (cat, parts) = ctx()
        .run(|rec| {
            let cat = concat_batch(rec, &[&at, &bt])?;
            let parts = split_batch(rec, &cat, &[1, 2])?;
            Ok((cat, parts))
        })
        .unwrap();
    assert_eq!(cat.shape(), [3, 3, 3, 2]);
    let all: Vec<f32> = a.iter().chain(&b).copied().collect();
    assert_eq!(cat.to_f32(ctx()).unwrap(), all);
    assert_eq!(parts[0].shape(), [1, 3, 3, 2]);
    assert_eq!(parts[0].to_f32(ctx()).unwrap(), all[..18]);
    assert_eq!(parts[1].to_f32(ctx()).unwrap(), all[18..]);
    let odd = Tensor::from_f32(ctx(), &[1, 3, 2, 3], &b).unwrap();
    assert!(ctx().run(|rec| concat_batch(rec, &[&at, &odd])).is_err());
    assert!(ctx().run(|rec| split_batch(rec, &cat, &[1, 1])).is_err());
}

#[test]
fn variants_and_config() {
    for v in Variant::ALL {
        assert_eq!(Variant::parse(v.name()).unwrap(), v);
    }
    assert!(Variant::parse("s4gan").is_err());
    let mut tc = TrainConfig::new(Variant::S3ganCo);
    assert_eq!(tc.rot_rows(8), 2);
    tc.rot_fraction = 1.0 / 3.0;
    assert_eq!(tc.rot_rows(6), 2);
    tc.rot_fraction = 0.01;
    assert_eq!(tc.rot_rows(6), 1);
    assert_eq!(TrainConfig::new(Variant::S2ganCo).rot_rows(8), 0);
    tc.rot_fraction = 0.0;
    assert!(tc.validate().is_err());
    let mut tc = TrainConfig::new(Variant::Conditional);
    tc.ema_decay = 1.5;
    assert!(tc.validate().is_err());
}

fn tiny_trainer(variant: Variant, ema_start: u64) -> Trainer {
    let cfg = Config::preset("tiny").unwrap();
    let model = Model::init(ctx(), &cfg, 7).unwrap();
    let mut tc = TrainConfig::new(variant);
    tc.ema_start = ema_start;
    tc.ema_decay = 0.5;
    tc.seed = 11;
    Trainer::new(ctx(), model, tc).unwrap()
}

fn real_batch(n: usize, step: usize) -> Tensor {
    let data: Vec<f32> = (0..n * 16 * 16)
        .map(|i| (((i + 31 * step) * 2654435761usize) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    Tensor::from_f32(ctx(), &[n, 16, 16, 1], &data).unwrap()
}

#[test]
fn every_variant_trains_a_few_steps() {
    let labels = [0, -1, 2, -1, 1, -1, 0, 1];
    let known = [0, 1, 2, 0, 1, 2, 0, 1];
    for variant in Variant::ALL {
        let mut tr = tiny_trainer(variant, 2);
        let y: &[i32] = if variant.labels() == LabelUse::All {
            &known
        } else {
            &labels
        };
        for it in 0..2 {
            for s in 0..tr.cfg.d_steps {
                let (z, yf) = tr.fake_batch(ctx(), 8).unwrap();
                let r = tr
                    .d_step(ctx(), &real_batch(8, 2 * it + s), y, &z, &yf)
                    .unwrap();
                assert!(r.total.is_finite() && r.hinge >= 0.0, "{variant:?}: {r:?}");
                assert_eq!(r.rotation != 0.0, variant.rotation(), "{variant:?}");
                assert_eq!(r.class != 0.0, variant.class_head(), "{variant:?}");
                let sum = r.hinge + r.rotation + r.class;
                assert!((r.total - sum).abs() <= 1e-5 * sum.abs().max(1.0));
            }
            let (z, yf) = tr.fake_batch(ctx(), 8).unwrap();
            let r = tr.g_step(ctx(), &z, &yf).unwrap();
            assert!(r.total.is_finite(), "{variant:?}: {r:?}");
            // Step 1 < ema_start = 2 copies G; step 2 averages.
            let g = tr.model.g.map["G.out_conv.weight"].to_f32(ctx()).unwrap();
            let e = tr.model.g_ema.as_ref().unwrap().map["G.out_conv.weight"]
                .to_f32(ctx())
                .unwrap();
            assert_eq!(g == e, it == 0, "{variant:?}: EMA at G step {}", it + 1);
        }
        assert_eq!((tr.d_steps_done(), tr.g_steps_done()), (4, 2));
        // A head the variant does not use keeps its initial weights and no Adam steps.
        if !variant.class_head() {
            assert_eq!(tr.adam_state("D.classifier.weight").unwrap().2, 0);
        }
        assert_eq!(tr.adam_state("D.linear.weight").unwrap().2, 4);
    }
}

#[test]
fn bad_inputs_are_errors() {
    let mut tr = tiny_trainer(Variant::Conditional, 0);
    let (z, yf) = tr.fake_batch(ctx(), 4).unwrap();
    let x = real_batch(4, 0);
    // The conditional variant needs every label.
    assert!(tr.d_step(ctx(), &x, &[0, -1, 1, 2], &z, &yf).is_err());
    // Labels outside the classes.
    assert!(tr.d_step(ctx(), &x, &[0, 3, 1, 2], &z, &yf).is_err());
    assert!(tr
        .d_step(ctx(), &x, &[0, 1, 1, 2], &z, &[0, 1, 5, 0])
        .is_err());
    // Shapes.
    assert!(tr.d_step(ctx(), &x, &[0, 1, 1], &z, &yf).is_err());
    let (z3, _) = tr.fake_batch(ctx(), 3).unwrap();
    assert!(tr.g_step(ctx(), &z3, &yf).is_err());
    assert!(tr.d_step(ctx(), &x, &[0, 1, 1, 2], &z, &yf).is_ok());
    // A variant whose head the model lacks.
    let cfg = Config {
        class_head: false,
        ..Config::preset("tiny").unwrap()
    };
    let model = Model::init(ctx(), &cfg, 1).unwrap();
    assert!(Trainer::new(ctx(), model, TrainConfig::new(Variant::S2ganCo)).is_err());
}

#[test]
fn every_row_rotated() {
    let cfg = Config::preset("tiny").unwrap();
    let model = Model::init(ctx(), &cfg, 3).unwrap();
    let mut tc = TrainConfig::new(Variant::S3ganCo);
    tc.rot_fraction = 1.0;
    let mut tr = Trainer::new(ctx(), model, tc).unwrap();
    assert_eq!(tr.cfg.rot_rows(2), 2);
    let (z, yf) = tr.fake_batch(ctx(), 2).unwrap();
    let d = tr
        .d_step(ctx(), &real_batch(2, 5), &[-1, 1], &z, &yf)
        .unwrap();
    assert_eq!(d.y_used.shape(), [16]);
    assert!(d.total.is_finite() && d.rotation > 0.0);
    let (z, yf) = tr.fake_batch(ctx(), 2).unwrap();
    let g = tr.g_step(ctx(), &z, &yf).unwrap();
    assert!(g.total.is_finite() && g.rotation > 0.0);
}
