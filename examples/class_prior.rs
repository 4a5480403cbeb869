//! Does the class head's skew explain a co-trained model's FID? For a model with a class head
//! (default: the embedded model), this prints the head's argmax histogram over Fashion-MNIST's
//! 60,000 training images (the labels its projection saw for unlabelled images), then the FID
//! of 2,000 samples per class drawn as the protocol draws them (`fewlabels eval`: G_ema,
//! standing statistics, z seed 0), scored three ways against the test images: the first 1,000
//! of each class (the protocol), the first n_c of each class with n_c in proportion to the
//! histogram (10,000 in all), and all 2,000 of each class.
//!
//! `cargo run --release --example class_prior [MODEL]` (docs/RESULTS.md, session 12).

use fewlabels::data::idx::{fashion_mnist, Split, FASHION_MNIST_DIR};
use fewlabels::eval::evaluator::{Evaluator, FEATURES};
use fewlabels::eval::fid::{fid_stats, GaussianStats};
use fewlabels::eval::{real_stats, sample_outputs};
use fewlabels::model::Model;
use fewlabels::Context;
use std::path::Path;

const PER_CLASS: usize = 2000;

fn main() -> Result<(), fewlabels::Error> {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let ctx = Context::new()?;
    let model = match std::env::args().nth(1) {
        Some(p) => Model::load(&ctx, Path::new(&p))?,
        None => Model::load_default(&ctx)?,
    };
    let dir = Path::new(FASHION_MNIST_DIR);
    let train = fashion_mnist(dir, Split::Train)?;
    let test = fashion_mnist(dir, Split::Test)?;
    let classes = model.cfg.num_classes;
    let mut hist = vec![0usize; classes];
    for start in (0..train.len()).step_by(1000) {
        let idx: Vec<usize> = (start..(start + 1000).min(train.len())).collect();
        let (x, _) = train.batch(&idx);
        let (labels, _) = model.classify(&ctx, &x, idx.len())?;
        for l in labels {
            hist[l as usize] += 1;
        }
    }
    println!(
        "class-head argmax over the {} training images: {hist:?}",
        train.len()
    );
    let ev = Evaluator::new(&ctx)?;
    let real = real_stats(&ctx, &ev, &test)?;
    let out = sample_outputs(&ctx, &ev, &model, PER_CLASS, 0, None)?;
    let fid_of = |counts: &[usize]| -> Result<f64, fewlabels::Error> {
        let mut f = Vec::new();
        for (c, &k) in counts.iter().enumerate() {
            for i in 0..k.min(PER_CLASS) {
                let row = c * PER_CLASS + i;
                f.extend_from_slice(&out.features[row * FEATURES..(row + 1) * FEATURES]);
            }
        }
        fid_stats(&GaussianStats::from_features(&f, FEATURES)?, &real.stats)
    };
    let protocol = vec![1000; classes];
    let skewed: Vec<usize> = hist
        .iter()
        .map(|&h| (h as f64 * 10_000.0 / train.len() as f64).round() as usize)
        .collect();
    println!(
        "FID, 1,000 per class (the protocol): {:.3}",
        fid_of(&protocol)?
    );
    println!(
        "FID, per class as the histogram {skewed:?}: {:.3}",
        fid_of(&skewed)?
    );
    println!(
        "FID, {PER_CLASS} per class: {:.3}",
        fid_of(&vec![PER_CLASS; classes])?
    );
    Ok(())
}
