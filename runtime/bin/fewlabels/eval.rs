//! `fewlabels eval`: FID, Inception Score and class consistency of a Fashion-MNIST model,
//! measured with the embedded evaluator (docs/EVALUATOR.md) against the test split.

use crate::{load_model, Res};
use fewlabels::data::{self, Split};
use fewlabels::eval::{eval_report_text, evaluate, real_baseline};
use fewlabels::Context;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Model file or training checkpoint (.safetensors) of 32x32 grey images in 10 classes
    /// [default: the embedded default model]
    #[arg(value_name = "MODEL")]
    model: Option<PathBuf>,
    /// Samples drawn per class (the paper's protocol here: 1000, i.e. 10,000 samples).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    per_class: usize,
    /// Seed of the latent vectors z.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Draw z from the standard normal truncated to [-2, 2] times T, in (0, 1] (BigGAN's
    /// truncation trick) [default: z ~ N(0, I), the protocol of docs/RESULTS.md]
    #[arg(long, value_name = "T")]
    truncation: Option<f32>,
    /// Measure real images instead of a model: every disjoint block of --per-class training
    /// images per class against the test images (the protocol's floor; docs/EVALUATOR.md).
    #[arg(long, conflicts_with_all = ["model", "seed", "truncation"])]
    real_train: bool,
    /// Folder of Fashion-MNIST's IDX files (the test split is compared with).
    #[arg(long, value_name = "DIR", default_value = data::FASHION_MNIST_DIR)]
    fashion_mnist: PathBuf,
}

pub fn run(ctx: &Context, a: Args) -> Res<()> {
    if a.real_train {
        return run_real(ctx, &a);
    }
    let model = load_model(ctx, a.model.as_ref())?;
    let test = data::fashion_mnist(Path::new(&a.fashion_mnist), Split::Test)?;
    let t = Instant::now();
    let report = evaluate(ctx, &model, a.per_class, a.seed, a.truncation, &test)?;
    println!("adapter: {}", ctx.description);
    print!("{}", eval_report_text(&report));
    println!("(evaluated in {:.1} s)", t.elapsed().as_secs_f64());
    Ok(())
}

/// `--real-train`: the figures of real training images, block by block.
fn run_real(ctx: &Context, a: &Args) -> Res<()> {
    let dir = Path::new(&a.fashion_mnist);
    let train = data::fashion_mnist(dir, Split::Train)?;
    let test = data::fashion_mnist(dir, Split::Test)?;
    let fewest = (0..train.classes as i32)
        .map(|c| train.labels.iter().filter(|&&l| l == c).count())
        .min()
        .unwrap_or(0);
    let blocks = fewest / a.per_class.max(1);
    if blocks == 0 {
        return Err(format!(
            "--real-train: a class has {fewest} training images, fewer than --per-class {}",
            a.per_class
        )
        .into());
    }
    println!("adapter: {}", ctx.description);
    println!(
        "real training images, {} per class, against the {} test images:",
        a.per_class,
        test.len()
    );
    let t = Instant::now();
    let mut fids = Vec::with_capacity(blocks);
    for block in 0..blocks {
        let r = real_baseline(ctx, &train, a.per_class, block, &test)?;
        println!(
            "block {block}: {} images, FID {:.3}, Inception Score {:.3}, evaluator accuracy {:.2}%",
            r.images,
            r.fid,
            r.inception_score,
            100.0 * r.accuracy
        );
        fids.push(r.fid);
    }
    fids.sort_by(f64::total_cmp);
    let median = (fids[(blocks - 1) / 2] + fids[blocks / 2]) / 2.0;
    println!(
        "FID over {blocks} blocks: min {:.3}, median {median:.3}, max {:.3} (evaluated in {:.1} s)",
        fids[0],
        fids[blocks - 1],
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
