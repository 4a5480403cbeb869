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
//! - bad models, configs, data and labels are errors that leave the model alone.

mod common;
use common::{brightness_data, ctx};
use fewlabels::data::Dataset;
use fewlabels::model::{Config, Model};
use fewlabels::train::head::{fit_class_head, HeadConfig, HeadReport};
use fewlabels::Error;
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
