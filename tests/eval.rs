//! The Fashion-MNIST evaluator (runtime/eval/) against PyTorch and numpy goldens
//! (tests/golden/gen_evaluator.py, from the committed weights), and its metrics.
//!
//! Tolerances:
//! - forward pass (features, logits, probabilities): 1e-5 x max|reference|. The reference is
//!   float64; the device computes five convolutions (sums of up to 576 products) and a
//!   linear layer in f32; the errors seen on lavapipe are 7e-7 x max|reference|.
//! - accuracy on the first 1,000 test images: within 1 point of PyTorch's (float64) on the
//!   same images; the predictions may differ only where two logits are within f32 rounding.
//! - feature statistics: 1e-6 x max|reference| (f64 sums of f32 features; the golden stores
//!   them as f32, whose rounding is 6e-8 relative). FID: 1e-6 relative (f64 throughout; the
//!   golden's value is stored as f32).
//! - Inception Score: 1e-6 relative (f64 from the same f32 probabilities).
//!
//! The tests that read Fashion-MNIST skip (saying so) when /usr/share/datasets/fashion-mnist
//! is absent (`apt-get install dataset-fashion-mnist`).

mod common;
use common::{check_close, ctx, Golden};
use fewlabels::data::{fashion_mnist, Dataset, Split, FASHION_MNIST_DIR};
use fewlabels::eval::evaluator::{self, Outputs};
use fewlabels::eval::{
    class_consistency, eval_report_text, evaluate, fid, fid_stats, inception_score, real_baseline,
    real_stats, sqrtm_psd, symmetric_eigen, Evaluator, GaussianStats,
};
use fewlabels::model::{Config, Model};
use fewlabels::Error;
use std::path::Path;
use std::sync::{Arc, OnceLock};

const TOL_FORWARD: f32 = 1e-5;

fn golden() -> &'static Golden {
    static G: OnceLock<Golden> = OnceLock::new();
    G.get_or_init(|| Golden::load("evaluator"))
}

fn embedded() -> &'static Evaluator {
    static E: OnceLock<Evaluator> = OnceLock::new();
    E.get_or_init(|| Evaluator::new(ctx()).unwrap())
}

/// The first 1,000 Fashion-MNIST test images, or None when the data set is not installed.
fn first_1000() -> Option<&'static Dataset> {
    static D: OnceLock<Option<Dataset>> = OnceLock::new();
    D.get_or_init(|| {
        let dir = Path::new(FASHION_MNIST_DIR);
        if !dir.exists() {
            println!(
                "skipped: {FASHION_MNIST_DIR} is absent (apt-get install dataset-fashion-mnist)"
            );
            return None;
        }
        let test = fashion_mnist(dir, Split::Test).unwrap();
        let n = 1000;
        Some(
            Dataset::new(
                test.images[..n * test.image_len()].to_vec(),
                test.resolution,
                test.channels,
                test.labels[..n].to_vec(),
                test.classes,
            )
            .unwrap(),
        )
    })
    .as_ref()
}

/// The evaluator's outputs on the first 1,000 test images (computed once).
fn outputs_1000() -> Option<&'static Outputs> {
    static O: OnceLock<Option<Outputs>> = OnceLock::new();
    O.get_or_init(|| first_1000().map(|d| embedded().outputs(ctx(), &d.images, d.len()).unwrap()))
        .as_ref()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

#[test]
fn forward_matches_pytorch() {
    let g = golden();
    let images = g.f32("forward/images");
    let n = g.shape("forward/images")[0];
    let out = embedded().outputs(ctx(), &images, n).unwrap();
    for (name, got) in [("features", &out.features), ("logits", &out.logits)] {
        let want = g.f32(&format!("forward/{name}"));
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        println!("{name}: max error {:.2e} x max|ref|", err / scale);
    }
    check_close(
        "forward/features",
        &out.features,
        &g.f32("forward/features"),
        TOL_FORWARD,
    );
    check_close(
        "forward/logits",
        &out.logits,
        &g.f32("forward/logits"),
        TOL_FORWARD,
    );
    check_close(
        "forward/probs",
        &out.probs,
        &g.f32("forward/probs"),
        TOL_FORWARD,
    );
    // features_and_probs is the same pass.
    let (f, p) = embedded().features_and_probs(ctx(), &images, n).unwrap();
    assert_eq!((f, p), (out.features, out.probs));
}

#[test]
fn accuracy_on_first_1000_matches_pytorch() {
    let (Some(data), Some(out)) = (first_1000(), outputs_1000()) else {
        return;
    };
    let g = golden();
    assert_eq!(
        data.labels,
        g.i32("first1000/labels"),
        "the same 1,000 images"
    );
    let pred = evaluator::predictions(&out.probs, 10);
    let correct = pred
        .iter()
        .zip(&data.labels)
        .filter(|(p, l)| p == l)
        .count();
    let acc = correct as f64 / 1000.0;
    let want = g.scalar("first1000/accuracy") as f64;
    println!("accuracy on the first 1000 test images: {acc:.4} (PyTorch float64: {want:.4})");
    assert!(
        (acc - want).abs() <= 0.01,
        "accuracy {acc} vs PyTorch {want}"
    );
    let agree = pred
        .iter()
        .zip(g.i32("first1000/predictions"))
        .filter(|(a, b)| **a == *b)
        .count();
    assert!(
        agree >= 990,
        "{agree} of 1000 predictions agree with PyTorch"
    );
    assert!(
        acc >= 0.85,
        "the evaluator should classify Fashion-MNIST well: {acc}"
    );
}

#[test]
fn class_consistency_of_the_test_set_is_its_accuracy() {
    let (Some(data), Some(out)) = (first_1000(), outputs_1000()) else {
        return;
    };
    let pred = evaluator::predictions(&out.probs, 10);
    let cons = class_consistency(&out.probs, &data.labels, 10).unwrap();
    let correct = pred
        .iter()
        .zip(&data.labels)
        .filter(|(p, l)| p == l)
        .count();
    assert_eq!(cons.overall, correct as f64 / data.len() as f64);
    for c in 0..10 {
        let of_c: Vec<usize> = (0..data.len()).filter(|&i| data.labels[i] == c).collect();
        let hits = of_c.iter().filter(|&&i| pred[i] == c).count();
        assert_eq!(cons.per_class[c as usize], hits as f64 / of_c.len() as f64);
    }
    let mean = cons.per_class.iter().sum::<f64>() / 10.0;
    assert!((cons.mean - mean).abs() < 1e-15);
    // The confusion matrix: rows are the true classes, its diagonal the hits.
    for c in 0..10usize {
        let row = &cons.confusion[c];
        let of_c = data.labels.iter().filter(|&&l| l == c as i32).count();
        assert_eq!(row.iter().sum::<usize>(), of_c);
        assert_eq!(row[c] as f64 / of_c as f64, cons.per_class[c]);
    }
}

#[test]
fn real_stats_are_cached_and_agree_with_the_outputs() {
    let (Some(data), Some(out)) = (first_1000(), outputs_1000()) else {
        return;
    };
    let a = real_stats(ctx(), embedded(), data).unwrap();
    let b = real_stats(ctx(), embedded(), data).unwrap();
    assert!(
        Arc::ptr_eq(&a, &b),
        "the second call should come from the cache"
    );
    let stats = GaussianStats::from_features(&out.features, 128).unwrap();
    assert_eq!(a.stats, stats);
    let cons = class_consistency(&out.probs, &data.labels, 10).unwrap();
    assert_eq!(a.accuracy, Some(cons.overall));
    assert_eq!(a.per_class_accuracy, Some(cons.per_class.clone()));
    assert_eq!(a.inception_score, inception_score(&out.probs, 10).unwrap());
    // Another data set (the first 100 images, unlabelled) is not served from the cache, and
    // the first one still is.
    let other = Dataset::new(
        data.images[..100 * data.image_len()].to_vec(),
        32,
        1,
        vec![-1; 100],
        10,
    )
    .unwrap();
    let c = real_stats(ctx(), embedded(), &other).unwrap();
    assert_eq!(c.accuracy, None);
    assert_eq!(c.stats.count, 100);
    assert!(Arc::ptr_eq(
        &a,
        &real_stats(ctx(), embedded(), data).unwrap()
    ));
}

#[test]
fn feature_statistics_match_numpy() {
    let g = golden();
    for x in ["x1", "x2"] {
        let s = GaussianStats::from_features(&g.f32(&format!("fid/{x}")), 128).unwrap();
        assert_eq!((s.dim, s.count), (128, 200));
        let mean: Vec<f32> = s.mean.iter().map(|&v| v as f32).collect();
        let cov: Vec<f32> = s.cov.iter().map(|&v| v as f32).collect();
        check_close(
            &format!("mean_{x}"),
            &mean,
            &g.f32(&format!("fid/mean_{x}")),
            1e-6,
        );
        check_close(
            &format!("cov_{x}"),
            &cov,
            &g.f32(&format!("fid/cov_{x}")),
            1e-6,
        );
    }
}

#[test]
fn fid_matches_numpy() {
    let g = golden();
    let a = GaussianStats::from_features(&g.f32("fid/x1"), 128).unwrap();
    let b = GaussianStats::from_features(&g.f32("fid/x2"), 128).unwrap();
    let want = g.scalar("fid/value") as f64;
    let got = fid_stats(&a, &b).unwrap();
    println!("FID {got} (numpy {want})");
    assert!(rel(got, want) < 1e-6, "FID {got} vs numpy {want}");
    // Symmetric in its arguments.
    let back = fid_stats(&b, &a).unwrap();
    assert!(rel(back, got) < 1e-9, "{back} vs {got}");
    // FID(x, x) is 0 up to rounding (compared with the traces it cancels).
    let trace: f64 = (0..128).map(|i| a.cov[i * 128 + i]).sum();
    let same = fid_stats(&a, &a).unwrap();
    assert!(
        same.abs() < 1e-9 * trace,
        "FID(x, x) = {same} (trace {trace})"
    );
}

#[test]
fn fid_of_isotropic_gaussians_is_exact() {
    // N(0, I) vs N(1, 4 I) in d dimensions: d + (d + 4d - 2 * 2d) = 2d.
    for d in [1, 3, 17] {
        let eye = |s: f64| {
            let mut m = vec![0.0; d * d];
            for i in 0..d {
                m[i * d + i] = s;
            }
            m
        };
        let v = fid(&vec![0.0; d], &eye(1.0), &vec![1.0; d], &eye(4.0)).unwrap();
        assert!((v - 2.0 * d as f64).abs() < 1e-12, "d {d}: {v}");
    }
    // A singular covariance (rank 1) against itself.
    let u = [1.0, 2.0, -1.0];
    let c: Vec<f64> = (0..9).map(|k| u[k / 3] * u[k % 3]).collect();
    let v = fid(&[0.0; 3], &c, &[0.0; 3], &c).unwrap();
    assert!(v.abs() < 1e-12, "{v}");
}

#[test]
fn eigendecomposition_and_square_root_reconstruct() {
    let n = 40;
    // A symmetric matrix with entries from a fixed recurrence, and a PSD one from it.
    let mut s = 12345u64;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    let raw: Vec<f64> = (0..n * n).map(|_| next()).collect();
    let a: Vec<f64> = (0..n * n)
        .map(|k| raw[k] + raw[(k % n) * n + k / n])
        .collect();
    let (l, v) = symmetric_eigen(&a, n).unwrap();
    let norm = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    for i in 0..n {
        for j in 0..n {
            let rec: f64 = (0..n).map(|k| v[i * n + k] * l[k] * v[j * n + k]).sum();
            assert!((rec - a[i * n + j]).abs() < 1e-12 * norm, "A[{i}][{j}]");
            let dot: f64 = (0..n).map(|k| v[k * n + i] * v[k * n + j]).sum();
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((dot - want).abs() < 1e-12, "V^T V [{i}][{j}] = {dot}");
        }
    }
    // PSD: a^T a; its square root squared gives it back.
    let p: Vec<f64> = (0..n * n)
        .map(|k| {
            (0..n)
                .map(|t| raw[t * n + k / n] * raw[t * n + k % n])
                .sum()
        })
        .collect();
    let r = sqrtm_psd(&p, n).unwrap();
    let pn = p.iter().map(|x| x * x).sum::<f64>().sqrt();
    for i in 0..n {
        for j in 0..n {
            let sq: f64 = (0..n).map(|k| r[i * n + k] * r[k * n + j]).sum();
            assert!((sq - p[i * n + j]).abs() < 1e-10 * pn, "R^2[{i}][{j}]");
            assert_eq!(r[i * n + j], r[j * n + i]);
        }
    }
}

#[test]
fn inception_score_values() {
    let g = golden();
    let got = inception_score(&g.f32("is/probs"), 10).unwrap();
    let want = g.scalar("is/value") as f64;
    assert!(rel(got, want) < 1e-6, "IS {got} vs {want}");
    // One-hot rows spread evenly over the classes: IS = number of classes.
    for k in [2usize, 10] {
        let probs: Vec<f32> = (0..5 * k)
            .flat_map(|i| (0..k).map(move |c| if c == i % k { 1.0 } else { 0.0 }))
            .collect();
        let v = inception_score(&probs, k).unwrap();
        assert!((v - k as f64).abs() < 1e-12, "{k} classes: {v}");
    }
    // Identical rows: IS = 1.
    let row = [0.1f32, 0.2, 0.3, 0.4];
    let probs: Vec<f32> = (0..7).flat_map(|_| row).collect();
    assert!((inception_score(&probs, 4).unwrap() - 1.0).abs() < 1e-12);
    // Bad input.
    assert!(matches!(
        inception_score(&[0.5, 0.5, 0.5], 2),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        inception_score(&[0.5, f32::NAN], 2),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        inception_score(&[], 2),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn class_consistency_counts_and_refuses() {
    // Three classes; rows' argmax: 0, 1, 1, 2, 0, 2.
    let probs = [
        0.8, 0.1, 0.1, //
        0.2, 0.7, 0.1, //
        0.1, 0.5, 0.4, //
        0.3, 0.3, 0.4, //
        0.6, 0.2, 0.2, //
        0.1, 0.1, 0.8,
    ];
    let meant = [0, 1, 2, 2, 0, 0];
    let c = class_consistency(&probs, &meant, 3).unwrap();
    assert_eq!(c.per_class, vec![2.0 / 3.0, 1.0, 0.5]);
    assert!((c.mean - (2.0 / 3.0 + 1.0 + 0.5) / 3.0).abs() < 1e-15);
    assert_eq!(c.overall, 4.0 / 6.0);
    assert_eq!(
        c.confusion,
        vec![vec![2, 0, 1], vec![0, 1, 0], vec![0, 1, 1]]
    );
    assert_eq!(c.most_confused(0), Some((2, 1.0 / 3.0)));
    assert_eq!(c.most_confused(1), None);
    assert_eq!(c.most_confused(2), Some((1, 0.5)));
    assert_eq!(c.most_confused(3), None);
    let bad = |r: fewlabels::Result<_>, what: &str| match r {
        Err(Error::InvalidArgument(m)) => assert!(m.contains(what), "{m}"),
        other => panic!("expected an error about {what}, got {other:?}"),
    };
    bad(
        class_consistency(&probs, &[0, 1, 2, 2, 0], 3),
        "probabilities",
    );
    bad(class_consistency(&probs, &[0, 1, 2, 3, 0, 0], 3), "class 3");
    bad(class_consistency(&probs, &[0, 1, 1, 1, 0, 0], 3), "class 2");
    bad(class_consistency(&[], &[], 3), "probabilities");
}

#[test]
fn evaluator_refuses_bad_input_and_bad_weights() {
    let ev = embedded();
    assert!(matches!(
        ev.outputs(ctx(), &[0.0; 1023], 1),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        ev.outputs(ctx(), &[], 0),
        Err(Error::InvalidArgument(_))
    ));
    let mut x = vec![0.0f32; 1024];
    x[5] = 1.5;
    match ev.outputs(ctx(), &x, 1) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("1.5"), "{m}"),
        other => panic!("{other:?}"),
    }
    x[5] = f32::NAN;
    assert!(matches!(
        ev.outputs(ctx(), &x, 1),
        Err(Error::InvalidArgument(_))
    ));

    // Weights: a file without fc.bias, and one with a misshapen conv3.weight.
    use fewlabels::model::file::{HostTensor, TensorFile};
    let file = TensorFile::from_bytes(evaluator::WEIGHTS).unwrap();
    let mut missing = file.clone();
    missing.tensors.remove("fc.bias");
    match Evaluator::from_bytes(ctx(), &missing.to_bytes().unwrap()) {
        Err(Error::Format(m)) => assert!(m.contains("fc.bias"), "{m}"),
        other => panic!("{:?}", other.err()),
    }
    let mut shaped = file.clone();
    shaped.tensors.insert(
        "conv3.weight".into(),
        HostTensor::new(&[32, 32, 1, 1], vec![0.0; 1024]).unwrap(),
    );
    match Evaluator::from_bytes(ctx(), &shaped.to_bytes().unwrap()) {
        Err(Error::Format(m)) => assert!(m.contains("conv3.weight"), "{m}"),
        other => panic!("{:?}", other.err()),
    }
    assert!(matches!(
        Evaluator::from_bytes(ctx(), b"not a file"),
        Err(Error::Format(_))
    ));
    let loaded = Evaluator::from_bytes(ctx(), evaluator::WEIGHTS).unwrap();
    assert!(!loaded.is_embedded() && ev.is_embedded());
    assert!(ev.info.contains("test_accuracy"), "{}", ev.info);
}

#[test]
fn evaluate_reports_a_model() {
    let Some(test) = first_1000() else {
        return;
    };
    let cfg = Config::preset("fashion").unwrap();
    let model = Model::init(ctx(), &cfg, 3).unwrap();
    let r = evaluate(ctx(), &model, 4, 9, None, test).unwrap();
    assert_eq!((r.samples, r.per_class, r.seed), (40, 4, 9));
    assert_eq!(r.generator, "G_ema");
    assert_eq!(r.test_images, 1000);
    assert!(r.fid.is_finite() && r.fid > 0.0, "{}", r.fid);
    assert!(
        (1.0..=10.0).contains(&r.inception_score),
        "{}",
        r.inception_score
    );
    assert_eq!(r.consistency.per_class.len(), 10);
    assert!(r
        .consistency
        .per_class
        .iter()
        .all(|v| (0.0..=1.0).contains(v) && (v * 4.0).fract() == 0.0));
    assert!((r.consistency.mean - r.consistency.overall).abs() < 1e-12);
    // The same seed gives the same report; another seed other samples.
    assert_eq!(evaluate(ctx(), &model, 4, 9, None, test).unwrap(), r);
    assert_ne!(
        evaluate(ctx(), &model, 4, 10, None, test).unwrap().fid,
        r.fid
    );
    let text = eval_report_text(&r);
    println!("{text}");
    for want in ["FID", "IS", "consistency", "Ankle boot", "G_ema", "seed 9"] {
        assert!(text.contains(want), "{want} missing from\n{text}");
    }
    assert_eq!(text.lines().count(), 15);
    let real = real_stats(ctx(), embedded(), test).unwrap();
    assert_eq!(r.test_per_class, real.per_class_accuracy);
    assert!(text.contains("(test images "), "{text}");

    // Truncated z: other samples, named in the report; 1.0 is not N(0, I) (it is cut at 2).
    let t = evaluate(ctx(), &model, 4, 9, Some(0.5), test).unwrap();
    assert_eq!(t.truncation, Some(0.5));
    assert_ne!(t.fid, r.fid);
    assert_ne!(
        evaluate(ctx(), &model, 4, 9, Some(1.0), test).unwrap().fid,
        r.fid
    );
    assert!(eval_report_text(&t).contains("truncated to [-2, 2] times 0.5"));

    // Bad requests.
    assert!(matches!(
        evaluate(ctx(), &model, 0, 9, None, test),
        Err(Error::InvalidArgument(_))
    ));
    for bad in [0.0, -0.5, 1.5, f32::NAN] {
        match evaluate(ctx(), &model, 4, 9, Some(bad), test) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("truncation"), "{m}"),
            other => panic!("truncation {bad}: {:?}", other.err()),
        }
    }
    let tiny = Model::init(ctx(), &Config::preset("tiny").unwrap(), 1).unwrap();
    match evaluate(ctx(), &tiny, 1, 9, None, test) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("16x16x1"), "{m}"),
        other => panic!("{:?}", other.err()),
    }
    let small = Dataset::new(vec![0.0; 2 * 16 * 16], 16, 1, vec![0, 1], 10).unwrap();
    assert!(matches!(
        evaluate(ctx(), &model, 1, 9, None, &small),
        Err(Error::InvalidArgument(_))
    ));
}

/// `real_baseline` picks block `b` of `per_class` images of each class in file order: with
/// the picked images as the test set too, their FID is zero and their score and accuracy are
/// those of `real_stats`; another block is another set of images; asking past the images a
/// class has, or for none, is an error.
#[test]
fn real_baseline_picks_the_blocks_it_names() {
    let Some(data) = first_1000() else { return };
    let len = data.image_len();
    // Blocks of 3 per class: the first two blocks, each as a data set in class order.
    let block = |b: usize| {
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        for c in 0..10 {
            let rows: Vec<usize> = (0..data.len()).filter(|&i| data.labels[i] == c).collect();
            for &i in &rows[3 * b..3 * b + 3] {
                images.extend_from_slice(&data.images[i * len..(i + 1) * len]);
                labels.push(c);
            }
        }
        Dataset::new(images, data.resolution, data.channels, labels, 10).unwrap()
    };
    let (b0, b1) = (block(0), block(1));
    let r = real_baseline(ctx(), data, 3, 0, &b0).unwrap();
    let own = real_stats(ctx(), embedded(), &b0).unwrap();
    assert_eq!(r.images, 30);
    // Zero up to the matrix square root's rounding on a rank-deficient covariance (30 images).
    assert!(
        r.fid.abs() < 1e-4,
        "FID of block 0 against itself: {}",
        r.fid
    );
    assert!(rel(r.inception_score, own.inception_score) < 1e-12);
    assert_eq!(Some(r.accuracy), own.accuracy);
    let r1 = real_baseline(ctx(), data, 3, 1, &b0).unwrap();
    let expect = fid_stats(
        &real_stats(ctx(), embedded(), &b1).unwrap().stats,
        &own.stats,
    )
    .unwrap();
    assert!(r1.fid > 1.0, "block 1 against block 0: FID {}", r1.fid);
    assert!(rel(r1.fid, expect) < 1e-9, "{} against {expect}", r1.fid);
    let fewest = (0..10)
        .map(|c| data.labels.iter().filter(|&&l| l == c).count())
        .min()
        .unwrap();
    let err = real_baseline(ctx(), data, fewest + 1, 0, &b0).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(ref m) if m.contains("labelled images")),
        "{err}"
    );
    let err = real_baseline(ctx(), data, 0, 0, &b0).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(ref m) if m.contains("at least 1")),
        "{err}"
    );
}
