//! `fewlabels eval`: FID, Inception Score and class consistency of a Fashion-MNIST model,
//! measured with the embedded evaluator (docs/EVALUATOR.md) against the test split.

use crate::{load_model, Res};
use fewlabels::data::{self, Split};
use fewlabels::eval::{eval_report_text, evaluate};
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
    /// Folder of Fashion-MNIST's IDX files (the test split is compared with).
    #[arg(long, value_name = "DIR", default_value = data::FASHION_MNIST_DIR)]
    fashion_mnist: PathBuf,
}

pub fn run(ctx: &Context, a: Args) -> Res<()> {
    let model = load_model(ctx, a.model.as_ref())?;
    let test = data::fashion_mnist(Path::new(&a.fashion_mnist), Split::Test)?;
    let t = Instant::now();
    let report = evaluate(ctx, &model, a.per_class, a.seed, a.truncation, &test)?;
    println!("adapter: {}", ctx.description);
    print!("{}", eval_report_text(&report));
    println!("(evaluated in {:.1} s)", t.elapsed().as_secs_f64());
    Ok(())
}
