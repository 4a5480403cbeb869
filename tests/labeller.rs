//! The labeller of S2GAN/S3GAN with pre-trained labels (runtime/train/labeller.rs) and the
//! two GAN variants that train on its labels.
//!
//! - One labeller step against PyTorch (tests/reference/s3gan.py `labeller_step` via
//!   tests/golden/gen_train_labeller.py, float64 with torch.optim.Adam) on the tiny D: both
//!   losses, the accuracy of the class head's argmax, every tensor of D after the step (the
//!   parameters, and the spectral-norm u), Adam's m and v, and the argmax after the step.
//!   Tolerances as tests/golden_train.rs: losses 1e-4 relative (to max(|reference|, 1e-2));
//!   Adam's m GRAD_TOL = 1e-3 relative to its tensor's largest |m| (at least 1e-3 x D's
//!   largest); v 2e-3 on the square of that scale; each parameter within what Adam makes of
//!   any gradient within that tolerance of the reference one (`lr * max |f(g +- d) - f(g)|`,
//!   f(g) = g / (|g| + eps): at step 1 the bias corrections cancel for any beta1), plus 2 ulp
//!   and 1e-5 lr; u 1e-4 relative. D.linear and D.embed get no gradient: unchanged bit for bit.
//! - pseudo_label on a data set whose classes differ in brightness, one image in five
//!   labelled: the unlabelled images get clearly better than chance labels, the labelled
//!   ones keep theirs, and the same seed gives the same labels.
//! - Self-training (two rounds): its first round is the one-round labeller, report for
//!   report; the result keeps the known labels, beats chance as clearly and is
//!   deterministic; the per-class choice of the surest guesses on a hand-made case.
//! - Bad configs and data are errors that leave the data alone.
//! - Variant::S2gan / S3gan: every label known, no class head, rotation loss for S3GAN only;
//!   names and the checkpoint's config JSON round-trip.

mod common;
use common::{brightness_data, ctx, Golden};
use fewlabels::data::Dataset;
use fewlabels::model::layers::Weights;
use fewlabels::model::{spec, Config, Model};
use fewlabels::train::labeller::{
    confident_per_class, pseudo_label, Labeller, LabellerConfig, LabellerReport, LABELLER_BETAS,
    LABELLER_EPS,
};
use fewlabels::train::{TrainConfig, Trainer, Variant};
use fewlabels::{Error, Tensor};

const GRAD_TOL: f32 = 1e-3;
const LOSS_TOL: f32 = 1e-4;
const U_TOL: f32 = 1e-4;

fn tiny() -> Config {
    Config::preset("tiny").unwrap()
}

/// max |got - want| / (tol * max(max |want|, floor)).
fn rel_err(got: &[f32], want: &[f32], tol: f32, floor: f32) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(floor, |m, v| m.max(v.abs())).max(1e-30);
    let err = got.iter().zip(want).fold(0f32, |m, (a, b)| {
        if a.is_finite() {
            m.max((a - b).abs())
        } else {
            f32::INFINITY
        }
    });
    err / (tol * scale)
}

fn adam_f(g: f64, eps: f64) -> f64 {
    g / (g.abs() + eps)
}

#[test]
fn one_step_matches_pytorch() {
    let g = Golden::load("train_labeller");
    let cfg = tiny();
    let lc = LabellerConfig {
        class_weight: 0.5,
        rot_fraction: 1.0 / 3.0,
        ..LabellerConfig::new()
    };
    let (b1, b2) = LABELLER_BETAS;
    let hyper = g.f32("step/hyper");
    let expect = [
        lc.lr as f32,
        b1 as f32,
        b2 as f32,
        LABELLER_EPS as f32,
        lc.class_weight,
        lc.rot_rows(6) as f32,
    ];
    assert_eq!(hyper, expect, "the golden's hyper-parameters");
    let mut w = Weights::default();
    for name in g.names("step/before.D.") {
        w.map.insert(
            format!("D.{name}"),
            g.tensor(&format!("step/before.D.{name}")),
        );
    }
    let mut lab = Labeller::from_weights(ctx(), &cfg, w, &lc).unwrap();
    let x = g.tensor("step/x");
    let y = g.i32("step/y");
    let rep = lab.step(ctx(), &x, &y).unwrap();
    assert_eq!(rep.step, 1);
    assert_eq!(lab.steps_done(), 1);

    let mut bad = Vec::new();
    let mut check = |name: String, score: f32| {
        if score.is_nan() || score > 1.0 {
            bad.push(format!("{name}: error / allowed = {score:e}"));
        }
    };
    let loss = g.f32("step/loss");
    eprintln!(
        "losses: rotation {}, class {} (reference {loss:?})",
        rep.rotation_loss, rep.class_loss
    );
    check(
        "rotation loss".into(),
        rel_err(&[rep.rotation_loss], &loss[1..2], LOSS_TOL, 1e-2),
    );
    check(
        "class loss".into(),
        rel_err(&[rep.class_loss], &loss[2..3], LOSS_TOL, 1e-2),
    );
    let pred = g.i32("step/pred");
    let labelled: Vec<usize> = (0..y.len()).filter(|&i| y[i] >= 0).collect();
    let right = labelled.iter().filter(|&&i| pred[i] == y[i]).count();
    assert_eq!(
        rep.labelled_accuracy,
        right as f32 / labelled.len() as f32,
        "accuracy of the argmax {pred:?} on labels {y:?}"
    );

    let download = |t: &Tensor| t.to_f32(ctx()).unwrap();
    let m_names = g.names("step/m.D.");
    let g_scale = m_names
        .iter()
        .map(|n| g.max_abs(&format!("step/m.D.{n}")))
        .fold(0f32, f32::max)
        / (1.0 - b1 as f32);
    let floor = 1e-3 * g_scale;
    let (mut loose, mut elements) = (0, 0);
    for (name, e) in &spec::discriminator(&cfg) {
        let short = &name[2..];
        let got = download(lab.weights.get(name).unwrap());
        let want = g.f32(&format!("step/after.D.{short}"));
        if !e.kind.trained() {
            check(name.clone(), rel_err(&got, &want, U_TOL, 0.0));
            continue;
        }
        if !m_names.iter().any(|n| n == short) {
            // No gradient in the reference: D.linear and D.embed.
            assert!(
                name.starts_with("D.linear.") || name.starts_with("D.embed."),
                "{name} got no gradient in the reference"
            );
            assert!(lab.adam_state(name).is_none(), "{name} has Adam state");
            let before = g.f32(&format!("step/before.D.{short}"));
            assert_eq!(got, before, "{name} changed");
            continue;
        }
        let (m, v, steps) = lab.adam_state(name).unwrap();
        assert_eq!(steps, 1, "{name} steps");
        // In gradient units: m = (1 - b1) g, v = (1 - b2) g^2 after one step.
        let g_ref: Vec<f32> = g
            .f32(&format!("step/m.D.{short}"))
            .iter()
            .map(|a| a / (1.0 - b1 as f32))
            .collect();
        let g_got: Vec<f32> = download(m).iter().map(|a| a / (1.0 - b1 as f32)).collect();
        check(
            format!("m.{name}"),
            rel_err(&g_got, &g_ref, GRAD_TOL, floor),
        );
        let v_ref = g.f32(&format!("step/v.D.{short}"));
        let v_floor = (1.0 - b2 as f32) * floor * floor;
        check(
            format!("v.{name}"),
            rel_err(&download(v), &v_ref, 2.0 * GRAD_TOL, v_floor),
        );
        let d = GRAD_TOL * g_ref.iter().fold(floor, |a, b| a.max(b.abs()));
        loose += g_ref.iter().filter(|a| a.abs() <= d).count();
        elements += g_ref.len();
        let score = got
            .iter()
            .zip(&want)
            .zip(&g_ref)
            .fold(0f32, |s, ((a, p), &gr)| {
                let (gr, d, eps) = (gr as f64, d as f64, LABELLER_EPS);
                let df = (adam_f(gr + d, eps) - adam_f(gr, eps))
                    .abs()
                    .max((adam_f(gr - d, eps) - adam_f(gr, eps)).abs());
                let allowed = (lc.lr * (df + 1e-5)) as f32 + 2.0 * f32::EPSILON * p.abs();
                s.max((a - p).abs() / allowed)
            });
        check(name.clone(), score);
    }
    eprintln!("{loose} of {elements} parameter elements had a gradient within its tolerance of 0");
    assert!(bad.is_empty(), "labeller step:\n{}", bad.join("\n"));
    assert_eq!(
        lab.predict(ctx(), &x).unwrap(),
        g.i32("step/pred_after"),
        "argmax after the step"
    );
}

#[test]
fn pseudo_labels_beat_chance_and_keep_the_known_labels() {
    let cfg = tiny();
    let (mut data, truth) = brightness_data(20, 3);
    let before = data.labels.clone();
    let lc = LabellerConfig {
        steps: 40,
        batch: 12,
        lr: 2e-3,
        seed: 5,
        ..LabellerConfig::new()
    };
    let mut reports: Vec<LabellerReport> = Vec::new();
    let last = pseudo_label(ctx(), &cfg, &mut data, &lc, &mut |r| reports.push(*r)).unwrap();
    assert_eq!(reports.len(), 40);
    assert_eq!(reports.last(), Some(&last));
    assert!(reports.iter().enumerate().all(|(i, r)| r.step == i + 1));
    let first = &reports[0];
    eprintln!("first {first:?}\nlast {last:?}");
    let mut right = 0;
    let mut unlabelled = 0;
    for i in 0..data.len() {
        if before[i] >= 0 {
            assert_eq!(data.labels[i], before[i], "labelled image {i} changed");
        } else {
            unlabelled += 1;
            assert!(
                (0..3).contains(&data.labels[i]),
                "image {i}: {}",
                data.labels[i]
            );
            right += (data.labels[i] == truth[i]) as usize;
        }
    }
    let acc = right as f32 / unlabelled as f32;
    eprintln!("accuracy on the {unlabelled} unlabelled images: {acc}");
    // Chance is 1/3.
    assert!(acc >= 0.7, "accuracy {acc} on the unlabelled images");
    assert!(last.rotation_loss.is_finite() && last.class_loss.is_finite());
    assert!(last.class_loss < first.class_loss, "{first:?} -> {last:?}");
}

#[test]
fn pseudo_label_is_deterministic_for_a_seed() {
    let cfg = tiny();
    let lc = LabellerConfig {
        steps: 3,
        batch: 6,
        lr: 2e-3,
        seed: 9,
        ..LabellerConfig::new()
    };
    let run = |lc: &LabellerConfig| {
        let (mut data, _) = brightness_data(4, 3);
        let mut reports = Vec::new();
        pseudo_label(ctx(), &cfg, &mut data, lc, &mut |r| reports.push(*r)).unwrap();
        (data.labels, reports)
    };
    let (a, ra) = run(&lc);
    let (b, rb) = run(&lc);
    assert_eq!(a, b);
    assert_eq!(ra, rb);
    assert!(a.iter().all(|&c| (0..3).contains(&c)));
}

#[test]
fn self_training_rounds() {
    let cfg = tiny();
    let one = LabellerConfig {
        steps: 40,
        batch: 12,
        lr: 2e-3,
        seed: 5,
        ..LabellerConfig::new()
    };
    let two = LabellerConfig {
        rounds: 2,
        keep: 0.5,
        ..one.clone()
    };
    let run = |lc: &LabellerConfig| {
        let (mut data, truth) = brightness_data(20, 3);
        let before = data.labels.clone();
        let mut reports: Vec<LabellerReport> = Vec::new();
        pseudo_label(ctx(), &cfg, &mut data, lc, &mut |r| reports.push(*r)).unwrap();
        (data.labels, before, truth, reports)
    };
    let (_, _, _, single) = run(&one);
    let (labels, before, truth, reports) = run(&two);
    assert_eq!(reports.len(), 80);
    for (i, r) in reports.iter().enumerate() {
        assert_eq!((r.round, r.step), (i / 40 + 1, i % 40 + 1), "report {i}");
    }
    // Round 1 is the one-round labeller; round 2 a fresh one on more labels.
    assert_eq!(&reports[..40], &single[..]);
    assert_ne!(reports[40].rotation_loss, reports[0].rotation_loss);
    let mut right = 0;
    let mut unlabelled = 0;
    for i in 0..labels.len() {
        if before[i] >= 0 {
            assert_eq!(labels[i], before[i], "labelled image {i} changed");
        } else {
            unlabelled += 1;
            assert!((0..3).contains(&labels[i]), "image {i}: {}", labels[i]);
            right += (labels[i] == truth[i]) as usize;
        }
    }
    let acc = right as f32 / unlabelled as f32;
    eprintln!("two rounds: accuracy on the {unlabelled} unlabelled images: {acc}");
    assert!(acc >= 0.7, "accuracy {acc} on the unlabelled images");
    let (again, _, _, reports_again) = run(&two);
    assert_eq!(again, labels);
    assert_eq!(reports_again, reports);
}

#[test]
fn surest_guesses_per_class() {
    let scored = [(0, 0.9), (1, 0.5), (0, 0.2), (0, 0.9), (1, 0.7), (2, 0.1)];
    // Class 0: ceil(1.5) = 2 of 3, the tie at 0.9 both; class 1: the 0.7; class 2: its one.
    let t = true;
    let f = false;
    assert_eq!(confident_per_class(&scored, 3, 0.5), [t, f, f, t, t, t]);
    // ceil(0.9) = 1 of class 0: the earlier of the tie.
    assert_eq!(confident_per_class(&scored, 3, 0.3), [t, f, f, f, t, t]);
    assert_eq!(confident_per_class(&scored, 3, 1.0), [t; 6]);
    // A class nobody is predicted as, and one beyond `classes`, keep nothing.
    assert_eq!(confident_per_class(&scored, 2, 1.0), [t, t, t, t, t, f]);
    assert_eq!(confident_per_class(&[], 3, 0.5), Vec::<bool>::new());

    // predict_confidence: predict's argmax, with its softmax probability.
    let lc = LabellerConfig {
        steps: 1,
        batch: 4,
        ..LabellerConfig::new()
    };
    let lab = Labeller::new(ctx(), &tiny(), &lc).unwrap();
    let x = real_batch(5);
    let arg = lab.predict(ctx(), &x).unwrap();
    let scored = lab.predict_confidence(ctx(), &x).unwrap();
    assert_eq!(scored.iter().map(|s| s.0).collect::<Vec<_>>(), arg);
    assert!(
        scored.iter().all(|s| s.1 >= 1.0 / 3.0 && s.1 <= 1.0),
        "{scored:?}"
    );
}

fn is_invalid(r: Result<LabellerReport, Error>, what: &str) {
    match r {
        Err(Error::InvalidArgument(m)) => eprintln!("{what}: {m}"),
        other => panic!("{what}: {other:?}"),
    }
}

#[test]
fn bad_configs_and_data_are_errors() {
    let cfg = tiny();
    let good = LabellerConfig {
        steps: 1,
        batch: 4,
        ..LabellerConfig::new()
    };
    let (data, _) = brightness_data(3, 3);
    let mut no_progress = |_: &LabellerReport| panic!("no step should run");
    let mut try_cfg = |lc: &LabellerConfig, what: &str| {
        let mut d = data.clone();
        is_invalid(
            pseudo_label(ctx(), &cfg, &mut d, lc, &mut no_progress),
            what,
        );
        assert_eq!(d, data, "{what}: the data changed");
    };
    try_cfg(
        &LabellerConfig {
            steps: 0,
            ..good.clone()
        },
        "steps 0",
    );
    try_cfg(
        &LabellerConfig {
            batch: 0,
            ..good.clone()
        },
        "batch 0",
    );
    try_cfg(
        &LabellerConfig {
            lr: f64::NAN,
            ..good.clone()
        },
        "lr NaN",
    );
    try_cfg(
        &LabellerConfig {
            lr: 0.0,
            ..good.clone()
        },
        "lr 0",
    );
    try_cfg(
        &LabellerConfig {
            rot_fraction: 0.0,
            ..good.clone()
        },
        "rot_fraction 0",
    );
    try_cfg(
        &LabellerConfig {
            class_weight: f32::INFINITY,
            ..good.clone()
        },
        "class_weight inf",
    );
    try_cfg(
        &LabellerConfig {
            rounds: 0,
            ..good.clone()
        },
        "rounds 0",
    );
    for keep in [0.0, 1.5, f64::NAN] {
        try_cfg(
            &LabellerConfig {
                rounds: 2,
                keep,
                ..good.clone()
            },
            &format!("keep {keep}"),
        );
    }
    let mut try_data = |d: Dataset, what: &str| {
        let mut d2 = d.clone();
        is_invalid(
            pseudo_label(ctx(), &cfg, &mut d2, &good, &mut no_progress),
            what,
        );
        assert_eq!(d2, d, "{what}: the data changed");
    };
    let mut none = data.clone();
    none.labels.iter_mut().for_each(|c| *c = -1);
    try_data(none, "no labelled image");
    let n = data.len();
    let rgb = Dataset::new(vec![0.0; n * 16 * 16 * 3], 16, 3, data.labels.clone(), 3).unwrap();
    try_data(rgb, "3 channels for a grey model");
    let big = Dataset::new(vec![0.0; n * 32 * 32], 32, 1, data.labels.clone(), 3).unwrap();
    try_data(big, "32x32 images for a 16x16 model");
    let four = Dataset::new(data.images.clone(), 16, 1, data.labels.clone(), 4).unwrap();
    try_data(four, "4 classes for a 3-class model");
    let empty = Dataset::new(Vec::new(), 16, 1, Vec::new(), 3).unwrap();
    try_data(empty, "no images");
    let mut short = data.clone();
    short.images.pop();
    try_data(short, "images and labels disagree");

    // A labeller's step and prediction refuse bad labels and shapes.
    let mut lab = Labeller::new(ctx(), &cfg, &good).unwrap();
    let (xs, ys) = data.batch(&[0, 1, 2, 3]);
    let x = Tensor::from_f32(ctx(), &[4, 16, 16, 1], &xs).unwrap();
    assert!(lab.step(ctx(), &x, &[0, 1, 3, -1]).is_err());
    assert!(lab.step(ctx(), &x, &[0, 1, -2, -1]).is_err());
    assert!(lab.step(ctx(), &x, &ys[..3]).is_err());
    assert!(lab.step(ctx(), &x, &[]).is_err());
    let x3 = Tensor::from_f32(ctx(), &[4, 16, 16, 1], &xs)
        .unwrap()
        .reshape(&[4, 16, 4, 4])
        .unwrap();
    assert!(lab.predict(ctx(), &x3).is_err());
    assert_eq!(lab.steps_done(), 0);
    let rep = lab.step(ctx(), &x, &ys).unwrap();
    assert!(rep.rotation_loss.is_finite() && rep.class_loss.is_finite());
    assert_eq!(lab.predict(ctx(), &x).unwrap().len(), 4);
    // An unlabelled batch: no class loss, accuracy NaN.
    let rep = lab.step(ctx(), &x, &[-1; 4]).unwrap();
    assert_eq!(rep.class_loss, 0.0);
    assert!(rep.labelled_accuracy.is_nan());
    // Weights that do not fit the config.
    let w = Model::init(
        ctx(),
        &Config {
            channels: 3,
            ..tiny()
        },
        1,
    )
    .unwrap()
    .d
    .unwrap();
    assert!(Labeller::from_weights(ctx(), &cfg, w, &good).is_err());
}

fn real_batch(n: usize) -> Tensor {
    let data: Vec<f32> = (0..n * 16 * 16)
        .map(|i| ((i * 2654435761usize) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    Tensor::from_f32(ctx(), &[n, 16, 16, 1], &data).unwrap()
}

#[test]
fn s2gan_and_s3gan_train_on_known_labels() {
    assert_eq!(Variant::parse("s2gan").unwrap(), Variant::S2gan);
    assert_eq!(Variant::parse("s3gan").unwrap(), Variant::S3gan);
    for (v, rot) in [(Variant::S2gan, false), (Variant::S3gan, true)] {
        assert!(!v.class_head());
        assert_eq!(v.rotation(), rot);
        let mut tc = TrainConfig::new(v);
        tc.seed = 3;
        assert_eq!(TrainConfig::from_json(&tc.to_json()).unwrap(), tc);
        let model = Model::init(ctx(), &tiny(), 4).unwrap();
        let mut tr = Trainer::new(ctx(), model, tc).unwrap();
        let x = real_batch(4);
        let (z, yf) = tr.fake_batch(ctx(), 4).unwrap();
        let e = tr.d_step(ctx(), &x, &[0, 2, -1, 1], &z, &yf);
        assert!(
            matches!(&e, Err(Error::InvalidArgument(m)) if m.contains("-1")),
            "{v:?}: {e:?}"
        );
        let d = tr.d_step(ctx(), &x, &[0, 2, 1, 1], &z, &yf).unwrap();
        assert!(d.total.is_finite() && d.hinge >= 0.0, "{v:?}: {d:?}");
        assert_eq!(d.rotation > 0.0, rot, "{v:?}: {d:?}");
        assert_eq!(d.class, 0.0, "{v:?}");
        assert_eq!(tr.d_steps_done(), 1);
        // The projection labels are the given ones (no argmax fill).
        let used = d.y_used.to_i32(ctx()).unwrap();
        assert_eq!(&used[..4], &[0, 2, 1, 1]);
        assert_eq!(tr.adam_state("D.classifier.weight").unwrap().2, 0);
        let (z, yf) = tr.fake_batch(ctx(), 4).unwrap();
        let g = tr.g_step(ctx(), &z, &yf).unwrap();
        assert!(g.total.is_finite(), "{v:?}: {g:?}");
        assert_eq!(g.rotation > 0.0, rot, "{v:?}: {g:?}");
    }
    // S3GAN needs the rotation head; S2GAN needs neither head.
    let bare = Config {
        rotation_head: false,
        class_head: false,
        ..tiny()
    };
    let m = Model::init(ctx(), &bare, 1).unwrap();
    assert!(Trainer::new(ctx(), m, TrainConfig::new(Variant::S3gan)).is_err());
    let m = Model::init(ctx(), &bare, 1).unwrap();
    assert!(Trainer::new(ctx(), m, TrainConfig::new(Variant::S2gan)).is_ok());
}
