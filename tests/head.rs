//! Fitting D's class head alone (runtime/train/head.rs), the classifier that s2gan and s3gan
//! model files get at export.
//!
//! The fit is made of ops with PyTorch goldens of their own (the spectral-normed linear layer
//! forward and backward, cross-entropy, Adam: tests/golden_*.rs); these tests check what the
//! composition must do:
//! - only the class head's tensors (weight, bias, u) change; every other tensor of the model
//!   is bit for bit as before;
//! - the head learns: on a data set whose classes differ in brightness, one image in five
//!   labelled, the fitted head classifies every image far better than chance, and its
//!   reported accuracy is what `Model::classify` says on the labelled images;
//! - the same seed gives the same head, another seed another;
//! - bad models, configs, data and labels are errors that leave the model alone;
//! - against PyTorch (tests/golden/gen_train_head.py, tests/reference/s3gan.py
//!   `fit_class_head`, float64 with torch.optim.Adam): 3 full-batch steps on the tiny D. D's
//!   eval-mode features within FEAT_TOL of the largest; every step's loss within LOSS_TOL
//!   relative; the head's weight and bias within ADAM_TOL x lr per step of the reference (the
//!   golden keeps every gradient element 0 or at least 1e-3 of its tensor's largest, so a
//!   gradient within 1e-5 moves Adam's update by at most 1% of lr; a missing bias
//!   correction, a wrong sign or a wrong lr moves it by lr or more), u within U_TOL; the
//!   reported accuracy equals the reference head's.

mod common;
use common::{brightness_data, check_close, ctx, Golden};
use fewlabels::data::Dataset;
use fewlabels::model::layers::Mode;
use fewlabels::model::{spec, Config, Discriminator, Model};
use fewlabels::train::head::{fit_class_head, HeadConfig, HeadReport};
use fewlabels::{Error, Tensor};
use std::collections::BTreeMap;

fn tiny() -> Config {
    Config::preset("tiny").unwrap()
}

fn config() -> HeadConfig {
    HeadConfig {
        steps: 150,
        batch: 8,
        lr: 1e-2,
        seed: 4,
    }
}

/// Every tensor of the model, by file name, as host values.
fn tensors(m: &Model) -> BTreeMap<String, Vec<f32>> {
    m.to_file(ctx())
        .unwrap()
        .tensors
        .into_iter()
        .map(|(k, t)| (k, t.data))
        .collect()
}

fn fit(
    m: &mut Model,
    data: &Dataset,
    labels: &[i32],
    hc: &HeadConfig,
) -> Result<HeadReport, Error> {
    fit_class_head(ctx(), m, data, labels, hc, &mut |_, _| {})
}

#[test]
fn the_head_learns_and_nothing_else_changes() {
    let (data, truth) = brightness_data(20, 3);
    let mut m = Model::init(ctx(), &tiny(), 2).unwrap();
    let before = tensors(&m);
    let (x, n) = (&data.images, data.len());
    let (pred0, _) = m.classify(ctx(), x, n).unwrap();
    let right0 = pred0.iter().zip(&truth).filter(|(p, t)| p == t).count();

    let mut losses = Vec::new();
    let rep = fit(&mut m, &data, &data.labels.clone(), &config()).unwrap();
    let hc = config();
    let mut m2 = Model::init(ctx(), &tiny(), 2).unwrap();
    fit_class_head(ctx(), &mut m2, &data, &data.labels, &hc, &mut |s, l| {
        losses.push((s, l))
    })
    .unwrap();
    assert_eq!(losses.len(), hc.steps);
    assert!(losses
        .iter()
        .enumerate()
        .all(|(i, (s, l))| *s == i + 1 && l.is_finite()));
    assert_eq!(rep.images, 12);
    assert_eq!(rep.last_loss, losses.last().unwrap().1);

    let after = tensors(&m);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    let mut changed = Vec::new();
    for (k, v) in &before {
        if after[k] != *v {
            changed.push(k.as_str());
        }
    }
    assert_eq!(
        changed,
        ["D.classifier.bias", "D.classifier.u", "D.classifier.weight"],
        "only the class head may change"
    );

    // It learnt: far better than chance (1/3) on every image, labelled or not.
    let (pred, _) = m.classify(ctx(), x, n).unwrap();
    let right = pred.iter().zip(&truth).filter(|(p, t)| p == t).count();
    eprintln!("right before {right0}/{n}, after {right}/{n}; report {rep:?}");
    assert!(right as f64 >= 0.8 * n as f64, "{right} of {n} right");
    // The report's accuracy is the model's own on the labelled images.
    let lab: Vec<usize> = (0..n).filter(|&i| data.labels[i] >= 0).collect();
    let on_lab = lab.iter().filter(|&&i| pred[i] == truth[i]).count();
    assert!((rep.train_accuracy - on_lab as f64 / lab.len() as f64).abs() < 1e-12);

    // Same seed, same head (m2 above); another seed, another head.
    assert_eq!(tensors(&m2), after);
    let mut m3 = Model::init(ctx(), &tiny(), 2).unwrap();
    let other = HeadConfig {
        seed: 5,
        ..config()
    };
    fit(&mut m3, &data, &data.labels, &other).unwrap();
    assert_ne!(
        tensors(&m3)["D.classifier.weight"],
        after["D.classifier.weight"]
    );
}

#[test]
fn bad_requests_are_errors_that_change_nothing() {
    let (data, _) = brightness_data(4, 3);
    let mut m = Model::init(ctx(), &tiny(), 2).unwrap();
    let before = tensors(&m);
    let labels = data.labels.clone();
    let check =
        |m: &mut Model, d: &Dataset, l: &[i32], hc: &HeadConfig, want: &str| match fit(m, d, l, hc)
        {
            Err(Error::InvalidArgument(msg)) => {
                eprintln!("{want}: {msg}");
                assert!(msg.contains(want), "{msg:?} should say {want:?}");
            }
            other => panic!("{want}: {other:?}"),
        };
    let hc = config();
    for bad in [
        HeadConfig {
            steps: 0,
            ..config()
        },
        HeadConfig {
            batch: 0,
            ..config()
        },
        HeadConfig {
            lr: 0.0,
            ..config()
        },
        HeadConfig {
            lr: f64::NAN,
            ..config()
        },
    ] {
        check(&mut m, &data, &labels, &bad, "class head fit");
    }
    check(&mut m, &data, &labels[1..], &hc, "11 labels for 12 images");
    let mut out_of_range = labels.clone();
    out_of_range[3] = 3;
    check(&mut m, &data, &out_of_range, &hc, "label 3 of image 3");
    let mut below = labels.clone();
    below[2] = -2;
    check(&mut m, &data, &below, &hc, "label -2 of image 2");
    check(&mut m, &data, &[-1; 12], &hc, "no image is labelled");
    let rgb = Dataset::new(vec![0.0; 12 * 16 * 16 * 3], 16, 3, labels.clone(), 3).unwrap();
    check(&mut m, &rgb, &labels, &hc, "the model takes 16x16x1");
    assert_eq!(tensors(&m), before, "a refused fit changed the model");

    let mut headless = Model::init(
        ctx(),
        &Config {
            class_head: false,
            ..tiny()
        },
        2,
    )
    .unwrap();
    check(&mut headless, &data, &labels, &hc, "no class head");
    let mut sampling_only = Model::init(ctx(), &tiny(), 2).unwrap();
    sampling_only.d = None;
    check(&mut sampling_only, &data, &labels, &hc, "no discriminator");
}

const FEAT_TOL: f32 = 1e-4;
const LOSS_TOL: f32 = 1e-4;
const ADAM_TOL: f32 = 1e-2;
const U_TOL: f32 = 1e-4;

#[test]
fn fit_matches_pytorch() {
    let g = Golden::load("train_head");
    let cfg = tiny();
    let (lr, steps) = (1e-2f32, 3usize);
    assert_eq!(
        g.f32("fit/hyper"),
        [lr, steps as f32],
        "the golden's lr and steps"
    );
    let mut model = Model::init(ctx(), &cfg, 0).unwrap();
    let names = g.names("fit/before.D.");
    assert_eq!(
        names.len(),
        spec::discriminator(&cfg).len(),
        "D tensors in the golden"
    );
    let d = model.d.as_mut().unwrap();
    for name in &names {
        let t = g.tensor(&format!("fit/before.D.{name}"));
        let old = d.map.insert(format!("D.{name}"), t);
        assert!(old.is_some(), "D.{name} is not a tensor of the tiny D");
    }
    let y = g.i32("fit/y");
    let labelled: Vec<usize> = (0..y.len()).filter(|&i| y[i] >= 0).collect();
    let x = g.f32("fit/x");
    let r = cfg.resolution;

    // D's features of the labelled images, eval mode.
    let xl: Vec<f32> = labelled
        .iter()
        .flat_map(|&i| x[i * r * r..(i + 1) * r * r].iter().copied())
        .collect();
    let xt = Tensor::from_f32(ctx(), &[labelled.len(), r, r, 1], &xl).unwrap();
    let yt = Tensor::from_i32(ctx(), &[labelled.len()], &vec![0; labelled.len()]).unwrap();
    let disc = Discriminator { cfg: &cfg };
    let d = model.d.as_ref().unwrap();
    let feats = ctx()
        .run(|rec| Ok(disc.forward(rec, d, &xt, &yt, Mode::EVAL)?.0.features))
        .unwrap();
    g.check("fit/feats", &feats, FEAT_TOL);

    let data = Dataset::new(x, r, 1, y.clone(), cfg.num_classes).unwrap();
    let hc = HeadConfig {
        steps,
        batch: labelled.len(),
        lr: lr as f64,
        seed: 3,
    };
    let mut losses = Vec::new();
    let rep = fit_class_head(ctx(), &mut model, &data, &y, &hc, &mut |s, l| {
        losses.push((s, l))
    })
    .unwrap();
    let want = g.f32("fit/losses");
    assert_eq!(
        losses.iter().map(|l| l.0).collect::<Vec<_>>(),
        (1..=steps).collect::<Vec<_>>()
    );
    for (i, &(_, l)) in losses.iter().enumerate() {
        let e = (l - want[i]).abs() / want[i].abs().max(1e-2);
        assert!(
            e <= LOSS_TOL,
            "loss of step {}: {l}, PyTorch {}",
            i + 1,
            want[i]
        );
    }
    assert_eq!(rep.last_loss, losses[steps - 1].1);
    assert_eq!(rep.images, labelled.len());

    let d = model.d.as_ref().unwrap();
    for k in ["weight", "bias"] {
        let got = d
            .get(&format!("D.classifier.{k}"))
            .unwrap()
            .to_f32(ctx())
            .unwrap();
        let want = g.f32(&format!("fit/after.{k}"));
        let before = g.f32(&format!("fit/before.D.classifier.{k}"));
        let allowed = ADAM_TOL * lr * steps as f32;
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            let e = (a - b).abs();
            assert!(
                e <= allowed + 1e-6 * b.abs(),
                "D.classifier.{k}[{i}]: {a}, PyTorch {b} (was {}; allowed {allowed:e})",
                before[i]
            );
        }
    }
    let u = d.get("D.classifier.u").unwrap().to_f32(ctx()).unwrap();
    check_close("D.classifier.u", &u, &g.f32("fit/after.u"), U_TOL);

    let logits = g.f32("fit/logits");
    let k = cfg.num_classes;
    let right = labelled
        .iter()
        .enumerate()
        .filter(|&(row, &i)| {
            let l = &logits[row * k..(row + 1) * k];
            let best = (0..k).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap();
            best as i32 == y[i]
        })
        .count();
    assert_eq!(
        rep.train_accuracy,
        right as f64 / labelled.len() as f64,
        "accuracy of the fitted head"
    );
}
