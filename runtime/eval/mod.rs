//! Sample quality of a Fashion-MNIST model: FID, Inception Score and class consistency, all
//! measured with one fixed classifier, the embedded [`Evaluator`] (a small CNN trained once on
//! all 60,000 Fashion-MNIST training labels; `docs/EVALUATOR.md`).
//!
//! - **FID**: the Fréchet distance ([`fid()`]) between Gaussians fitted to the evaluator's
//!   128-long pooled features of the generated images and of the test images (mean and
//!   unbiased covariance, in f64). Lower is better; 0 for identical statistics.
//! - **Inception Score** ([`inception_score`]): `exp(mean_i KL(p(y|x_i) || p(y)))` with
//!   `p(y)` the mean of the evaluator's softmax over all samples, in one split (the usual ten
//!   splits of 5,000 give a slightly lower, noisier mean). Between 1 (every image gets the
//!   same distribution) and 10 (confident and uniformly spread over the classes).
//! - **Class consistency** ([`class_consistency`]): the share of samples drawn for class c
//!   that the evaluator assigns to c, per class, with their mean.
//!
//! [`evaluate`] draws `per_class` samples of each class from the model's EMA generator (G
//! when the file has none) in eval mode, i.e. with the standing statistics stored in the
//! model, with z ~ N(0, I) (the training distribution, no truncation) from `seed`, and
//! compares them with a test set. With a truncation `t` (BigGAN's truncation trick, for
//! the fidelity/diversity curve), z is instead the standard normal truncated to [-2, 2]
//! times `t`, as [`Model::make_z`] draws it. The test set's statistics for the embedded evaluator are
//! cached in memory, keyed by a checksum of the images and labels.

pub mod evaluator;
pub mod fid;

pub use evaluator::Evaluator;
pub use fid::{fid, fid_stats, sqrtm_psd, symmetric_eigen, GaussianStats};

use crate::data::Dataset;
use crate::device::Context;
use crate::error::{Error, Result};
use crate::model::{Model, Which};
use crate::rng::{self, Stream};
use std::sync::{Arc, Mutex};

/// Fashion-MNIST's class names, in label order.
pub const CLASS_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Most samples one evaluation draws (as the C ABI's per-call limit).
pub const MAX_SAMPLES: usize = 1 << 20;

/// Samples generated and classified per round (bounds host memory).
const SAMPLE_CHUNK: usize = 1000;

/// Inception Score of `probs` `[n, classes]` (rows of class probabilities):
/// `exp(1/n sum_i sum_c p_ic (ln p_ic - ln q_c))` with `q = 1/n sum_i p_i`, in f64 and one
/// split; terms with `p_ic = 0` count 0. Rows must be finite, non-negative.
pub fn inception_score(probs: &[f32], classes: usize) -> Result<f64> {
    if classes == 0 || probs.is_empty() || !probs.len().is_multiple_of(classes) {
        return Err(Error::InvalidArgument(format!(
            "inception score: {} probabilities do not form rows of {classes} classes",
            probs.len()
        )));
    }
    if let Some(i) = probs.iter().position(|p| !(p.is_finite() && *p >= 0.0)) {
        return Err(Error::InvalidArgument(format!(
            "inception score: probability {} of row {} is not a finite value >= 0",
            probs[i],
            i / classes
        )));
    }
    let n = probs.len() / classes;
    let mut q = vec![0.0f64; classes];
    for row in probs.chunks_exact(classes) {
        for (m, &p) in q.iter_mut().zip(row) {
            *m += p as f64;
        }
    }
    for m in &mut q {
        *m /= n as f64;
    }
    let mut kl = 0.0f64;
    for row in probs.chunks_exact(classes) {
        for (&p, &m) in row.iter().zip(&q) {
            if p > 0.0 {
                let p = p as f64;
                kl += p * (p.ln() - m.ln());
            }
        }
    }
    Ok((kl / n as f64).exp())
}

/// Class consistency of labelled samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Consistency {
    /// For each class c: the share of samples meant as c that the evaluator assigns to c.
    pub per_class: Vec<f64>,
    /// Mean of `per_class` (each class weighs the same).
    pub mean: f64,
    /// Share of all samples assigned to their class (the classifier's accuracy when the
    /// intended classes are true labels; equals `mean` when every class has as many samples).
    pub overall: f64,
    /// `confusion[c][k]`: samples meant as class c that the evaluator assigns to class k.
    pub confusion: Vec<Vec<usize>>,
}

impl Consistency {
    /// For class c, the class other than c that its samples are most often assigned to (the
    /// lowest on ties) and the share of c's samples it takes; None when every one is right.
    pub fn most_confused(&self, c: usize) -> Option<(usize, f64)> {
        let row = self.confusion.get(c)?;
        let total: usize = row.iter().sum();
        let (k, &n) = row
            .iter()
            .enumerate()
            .filter(|&(k, _)| k != c)
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))?;
        (n > 0).then(|| (k, n as f64 / total as f64))
    }
}

/// Class consistency of `probs` `[n, classes]` against the intended classes `intended`
/// `[n]` (the predicted class is the row's argmax, the first on ties). Every class in
/// `0..classes` needs at least one sample.
pub fn class_consistency(probs: &[f32], intended: &[i32], classes: usize) -> Result<Consistency> {
    if classes == 0 || probs.len() != intended.len() * classes || intended.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "class consistency: {} probabilities for {} samples of {classes} classes",
            probs.len(),
            intended.len()
        )));
    }
    if let Some(i) = probs.iter().position(|p| !p.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "class consistency: probability {} of row {} is not finite",
            probs[i],
            i / classes
        )));
    }
    let pred = evaluator::predictions(probs, classes);
    let mut hits = vec![0usize; classes];
    let mut counts = vec![0usize; classes];
    let mut confusion = vec![vec![0usize; classes]; classes];
    for (i, (&p, &c)) in pred.iter().zip(intended).enumerate() {
        if c < 0 || c as usize >= classes {
            return Err(Error::InvalidArgument(format!(
                "class consistency: sample {i} is meant as class {c}, outside [0, {classes})"
            )));
        }
        counts[c as usize] += 1;
        confusion[c as usize][p as usize] += 1;
        if p == c {
            hits[c as usize] += 1;
        }
    }
    if let Some(c) = counts.iter().position(|&k| k == 0) {
        return Err(Error::InvalidArgument(format!(
            "class consistency: no sample is meant as class {c}"
        )));
    }
    let per_class: Vec<f64> = hits
        .iter()
        .zip(&counts)
        .map(|(&h, &k)| h as f64 / k as f64)
        .collect();
    Ok(Consistency {
        mean: per_class.iter().sum::<f64>() / classes as f64,
        overall: hits.iter().sum::<usize>() as f64 / intended.len() as f64,
        per_class,
        confusion,
    })
}

/// What the evaluator makes of a set of real images.
#[derive(Debug, Clone, PartialEq)]
pub struct RealStats {
    /// Mean and covariance of the features.
    pub stats: GaussianStats,
    /// Inception Score of the images themselves (the score of a perfect generator, about).
    pub inception_score: f64,
    /// The evaluator's accuracy on the labelled images (None when none is labelled).
    pub accuracy: Option<f64>,
    /// The evaluator's accuracy per class on the labelled images (None unless every class
    /// has a labelled image).
    pub per_class_accuracy: Option<Vec<f64>>,
}

/// Cached statistics of the last few test sets seen with the embedded evaluator, the most
/// recent last.
static TEST_CACHE: Mutex<Vec<(u64, Arc<RealStats>)>> = Mutex::new(Vec::new());
/// Test sets the cache holds.
const CACHE_ENTRIES: usize = 4;

/// A checksum of a data set's images and labels (the cache key).
fn fingerprint(data: &Dataset) -> u64 {
    let mut a = crc32fast::Hasher::new();
    a.update(bytemuck::cast_slice(&data.images));
    let mut b = crc32fast::Hasher::new();
    b.update(bytemuck::cast_slice(&data.labels));
    b.update(&(data.len() as u64).to_le_bytes());
    (a.finalize() as u64) << 32 | b.finalize() as u64
}

/// Check that `data` holds images the evaluator reads: 32x32, one channel, ten classes.
fn check_dataset(data: &Dataset, what: &str) -> Result<()> {
    if data.resolution != evaluator::RESOLUTION
        || data.channels != evaluator::CHANNELS
        || data.classes != evaluator::CLASSES
    {
        return Err(Error::InvalidArgument(format!(
            "{what}: {}x{}x{} images of {} classes; the evaluator reads Fashion-MNIST's \
             {r}x{r}x{} images of {} classes",
            data.resolution,
            data.resolution,
            data.channels,
            data.classes,
            evaluator::CHANNELS,
            evaluator::CLASSES,
            r = evaluator::RESOLUTION,
        )));
    }
    if data.len() < 2 {
        return Err(Error::InvalidArgument(format!(
            "{what}: {} images; feature statistics need at least 2",
            data.len()
        )));
    }
    Ok(())
}

/// Feature statistics, Inception Score and accuracy of a set of real images (`data`).
/// With the embedded evaluator the result is cached in memory (the last four data sets).
pub fn real_stats(ctx: &Context, ev: &Evaluator, data: &Dataset) -> Result<Arc<RealStats>> {
    check_dataset(data, "test set")?;
    let key = ev.is_embedded().then(|| fingerprint(data));
    if let Some(key) = key {
        let cache = TEST_CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, s)) = cache.iter().find(|(k, _)| *k == key) {
            return Ok(s.clone());
        }
    }
    let out = ev.outputs(ctx, &data.images, data.len())?;
    let stats = GaussianStats::from_features(&out.features, evaluator::FEATURES)?;
    let inception_score = inception_score(&out.probs, evaluator::CLASSES)?;
    // Hits and labelled images per class (labels outside 0..classes count as unlabelled).
    let pred = evaluator::predictions(&out.probs, evaluator::CLASSES);
    let mut hits = [0usize; evaluator::CLASSES];
    let mut seen = [0usize; evaluator::CLASSES];
    for (&p, &l) in pred.iter().zip(&data.labels) {
        if (0..evaluator::CLASSES as i32).contains(&l) {
            seen[l as usize] += 1;
            hits[l as usize] += (p == l) as usize;
        }
    }
    let labelled: usize = seen.iter().sum();
    let correct: usize = hits.iter().sum();
    let s = Arc::new(RealStats {
        stats,
        inception_score,
        accuracy: (labelled > 0).then(|| correct as f64 / labelled as f64),
        per_class_accuracy: seen.iter().all(|&n| n > 0).then(|| {
            hits.iter()
                .zip(&seen)
                .map(|(&h, &n)| h as f64 / n as f64)
                .collect()
        }),
    });
    if let Some(key) = key {
        let mut cache = TEST_CACHE.lock().unwrap_or_else(|e| e.into_inner());
        // Another thread may have stored the same set meanwhile: hand out its entry, so that
        // every caller of one data set shares one result.
        if let Some((_, c)) = cache.iter().find(|(k, _)| *k == key) {
            return Ok(c.clone());
        }
        if cache.len() == CACHE_ENTRIES {
            cache.remove(0);
        }
        cache.push((key, s.clone()));
    }
    Ok(s)
}

/// What real images score under [`evaluate`]'s protocol (see [`real_baseline`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RealBaseline {
    /// Images measured (`per_class` of each class).
    pub images: usize,
    /// FID of these images against the test set.
    pub fid: f64,
    /// Their Inception Score.
    pub inception_score: f64,
    /// The evaluator's accuracy on them (their class consistency, as a generator's would be).
    pub accuracy: f64,
}

/// The figures real images reach where [`evaluate`] measures samples: `per_class` labelled
/// images of each class from `train` (block `block` of them in file order: the class's
/// images `block * per_class .. (block + 1) * per_class`) against `test`. A generator that
/// drew the training distribution perfectly would score these, up to sampling noise, so the
/// FID here is the floor of the protocol. Disjoint blocks show how much the figures move
/// from one draw of real images to another.
pub fn real_baseline(
    ctx: &Context,
    train: &Dataset,
    per_class: usize,
    block: usize,
    test: &Dataset,
) -> Result<RealBaseline> {
    check_dataset(train, "training set")?;
    if per_class == 0 {
        return Err(Error::InvalidArgument(
            "real baseline: per_class must be at least 1".into(),
        ));
    }
    let classes = evaluator::CLASSES;
    let len = train.image_len();
    let (first, end) = (block * per_class, (block + 1) * per_class);
    let mut picked: Vec<Vec<usize>> = (0..classes)
        .map(|_| Vec::with_capacity(per_class))
        .collect();
    let mut seen = [0usize; evaluator::CLASSES];
    for (i, &l) in train.labels.iter().enumerate() {
        if let Ok(c) = usize::try_from(l) {
            if (first..end).contains(&seen[c]) {
                picked[c].push(i);
            }
            seen[c] += 1;
        }
    }
    if let Some(c) = (0..classes).find(|&c| picked[c].len() < per_class) {
        return Err(Error::InvalidArgument(format!(
            "real baseline: class {c} has {} labelled images; block {block} of {per_class} \
             per class needs {end}",
            seen[c]
        )));
    }
    let mut images = Vec::with_capacity(classes * per_class * len);
    let mut labels = Vec::with_capacity(classes * per_class);
    for (c, rows) in picked.iter().enumerate() {
        for &i in rows {
            images.extend_from_slice(&train.images[i * len..(i + 1) * len]);
            labels.push(c as i32);
        }
    }
    let subset = Dataset::new(images, train.resolution, train.channels, labels, classes)?;
    let ev = Evaluator::new(ctx)?;
    let real = real_stats(ctx, &ev, test)?;
    let own = real_stats(ctx, &ev, &subset)?;
    Ok(RealBaseline {
        images: subset.len(),
        fid: fid_stats(&own.stats, &real.stats)?,
        inception_score: own.inception_score,
        accuracy: own.accuracy.unwrap_or(0.0),
    })
}

/// The result of [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    /// Samples drawn per class, and in all.
    pub per_class: usize,
    pub samples: usize,
    /// The seed of z.
    pub seed: u64,
    /// The truncation of z, if any (None: z ~ N(0, I)).
    pub truncation: Option<f32>,
    /// Which generator was sampled: "G_ema", or "G" for a file without an EMA generator.
    pub generator: String,
    /// FID of the samples against the test images.
    pub fid: f64,
    /// Inception Score of the samples.
    pub inception_score: f64,
    /// Class consistency of the samples.
    pub consistency: Consistency,
    /// Number of test images compared with.
    pub test_images: usize,
    /// Inception Score of the test images (a reference for the samples' score).
    pub test_inception_score: f64,
    /// The evaluator's accuracy on the labelled test images.
    pub test_accuracy: Option<f64>,
    /// The evaluator's accuracy per class on the test images (when every class is labelled).
    pub test_per_class: Option<Vec<f64>>,
}

/// A model the evaluator can score (32x32 grey, ten classes) and a sample count it allows.
fn check_request(model: &Model, per_class: usize) -> Result<()> {
    let cfg = &model.cfg;
    if cfg.resolution != evaluator::RESOLUTION
        || cfg.channels != evaluator::CHANNELS
        || cfg.num_classes != evaluator::CLASSES
    {
        return Err(Error::InvalidArgument(format!(
            "evaluate: the model makes {r}x{r}x{c} images of {k} classes; the evaluator reads \
             Fashion-MNIST's {er}x{er}x{ec} images of {ek} classes",
            r = cfg.resolution,
            c = cfg.channels,
            k = cfg.num_classes,
            er = evaluator::RESOLUTION,
            ec = evaluator::CHANNELS,
            ek = evaluator::CLASSES,
        )));
    }
    let classes = evaluator::CLASSES;
    if per_class == 0 || per_class.saturating_mul(classes) > MAX_SAMPLES {
        return Err(Error::InvalidArgument(format!(
            "evaluate: {per_class} samples per class; need 1 to {}",
            MAX_SAMPLES / classes
        )));
    }
    Ok(())
}

/// What the evaluator makes of a model's samples.
pub struct SampleOutputs {
    /// The class each sample was drawn for: `per_class` of class 0, then of class 1, ...
    pub intended: Vec<i32>,
    /// Evaluator features `[n, FEATURES]` and class probabilities `[n, CLASSES]`.
    pub features: Vec<f32>,
    pub probs: Vec<f32>,
    /// Whether the samples came from G_ema (else from G).
    pub ema: bool,
}

/// Draw `per_class` samples of each class from `model` (G_ema when the model has it, standing
/// statistics, z ~ N(0, I) from `seed`, or truncated by `truncation` in (0, 1]) and run them
/// through `ev`.
pub fn sample_outputs(
    ctx: &Context,
    ev: &Evaluator,
    model: &Model,
    per_class: usize,
    seed: u64,
    truncation: Option<f32>,
) -> Result<SampleOutputs> {
    check_request(model, per_class)?;
    if let Some(t) = truncation {
        if !(t > 0.0 && t <= 1.0) {
            return Err(Error::InvalidArgument(format!(
                "evaluate: truncation {t} is outside (0, 1]"
            )));
        }
    }
    let cfg = &model.cfg;
    let classes = evaluator::CLASSES;
    let n = per_class * classes;
    let zd = cfg.z_dim;
    let intended: Vec<i32> = (0..n).map(|i| (i / per_class) as i32).collect();
    let ema = model.g_ema.is_some();
    let which = if ema { Which::Ema } else { Which::Generator };
    let mut features = Vec::with_capacity(n * evaluator::FEATURES);
    let mut probs = Vec::with_capacity(n * classes);
    for start in (0..n).step_by(SAMPLE_CHUNK) {
        let end = (start + SAMPLE_CHUNK).min(n);
        let z: Vec<f32> = ((start * zd) as u64..(end * zd) as u64)
            .map(|i| match truncation {
                None => rng::normal(seed, Stream::Z, i, 0) as f32,
                Some(t) => rng::truncated_normal_at(seed, i, t),
            })
            .collect();
        let chw = model.sample(ctx, which, &intended[start..end], &z)?;
        // One channel: CHW is HWC. [0, 1] back to the evaluator's [-1, 1].
        let x: Vec<f32> = chw
            .iter()
            .map(|v| (v * 2.0 - 1.0).clamp(-1.0, 1.0))
            .collect();
        let (f, p) = ev.features_and_probs(ctx, &x, end - start)?;
        features.extend(f);
        probs.extend(p);
    }
    Ok(SampleOutputs {
        intended,
        features,
        probs,
        ema,
    })
}

/// Draw `per_class` samples of each class from `model` (module docs: EMA generator, standing
/// statistics, z ~ N(0, I) from `seed`, or truncated as [`sample_outputs`] says) and
/// measure FID, Inception Score and class consistency with the embedded evaluator against
/// `test` (Fashion-MNIST's test split: 32x32 grey images, ten classes).
pub fn evaluate(
    ctx: &Context,
    model: &Model,
    per_class: usize,
    seed: u64,
    truncation: Option<f32>,
    test: &Dataset,
) -> Result<EvalReport> {
    check_request(model, per_class)?; // before the test set's statistics
    let ev = Evaluator::new(ctx)?;
    let real = real_stats(ctx, &ev, test)?;
    let classes = evaluator::CLASSES;
    let SampleOutputs {
        intended,
        features,
        probs,
        ema,
    } = sample_outputs(ctx, &ev, model, per_class, seed, truncation)?;
    let stats = GaussianStats::from_features(&features, evaluator::FEATURES)?;
    Ok(EvalReport {
        per_class,
        samples: intended.len(),
        seed,
        truncation,
        generator: if ema { "G_ema" } else { "G" }.into(),
        fid: fid_stats(&stats, &real.stats)?,
        inception_score: inception_score(&probs, classes)?,
        consistency: class_consistency(&probs, &intended, classes)?,
        test_images: test.len(),
        test_inception_score: real.inception_score,
        test_accuracy: real.accuracy,
        test_per_class: real.per_class_accuracy.clone(),
    })
}

/// The report as the `fewlabels eval` command prints it.
pub fn eval_report_text(report: &EvalReport) -> String {
    let mut s = String::new();
    let z = match report.truncation {
        None => "z ~ N(0, I)".to_string(),
        Some(t) => format!("z ~ N(0, I) truncated to [-2, 2] times {t}"),
    };
    s.push_str(&format!(
        "samples      {} ({} per class, {}, standing statistics, {z}, seed {})\n",
        report.samples, report.per_class, report.generator, report.seed
    ));
    s.push_str(&format!(
        "FID          {:.3}  (against {} test images)\n",
        report.fid, report.test_images
    ));
    s.push_str(&format!(
        "IS           {:.3}  (test images: {:.3})\n",
        report.inception_score, report.test_inception_score
    ));
    s.push_str(&format!(
        "consistency  {:.4}  (mean over classes; share of samples classified as their class)\n",
        report.consistency.mean
    ));
    for (c, v) in report.consistency.per_class.iter().enumerate() {
        let name = CLASS_NAMES.get(c).copied().unwrap_or("");
        s.push_str(&format!("  {c:>2} {name:<12} {v:.4}"));
        if let Some(real) = report.test_per_class.as_ref().and_then(|r| r.get(c)) {
            s.push_str(&format!("  (test images {real:.4})"));
        }
        if let Some((k, share)) = report.consistency.most_confused(c) {
            let other = CLASS_NAMES.get(k).copied().unwrap_or("");
            s.push_str(&format!("  most often taken for {k} {other} ({share:.4})"));
        }
        s.push('\n');
    }
    match report.test_accuracy {
        Some(a) => s.push_str(&format!(
            "evaluator    accuracy {a:.4} on the test images (embedded Fashion-MNIST CNN)\n"
        )),
        None => s.push_str("evaluator    embedded Fashion-MNIST CNN (test images unlabelled)\n"),
    }
    s
}
