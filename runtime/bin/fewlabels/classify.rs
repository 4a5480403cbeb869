//! `fewlabels classify`: the discriminator's class head on image files, folders or
//! Fashion-MNIST's test split; with true labels, the accuracy and a confusion matrix.

use crate::{images, io_fail, load_model, Res};
use fewlabels::data::{self, Split, FASHION_MNIST_DIR};
use fewlabels::Context;
use std::path::{Path, PathBuf};

/// The name that stands for Fashion-MNIST's test split.
const FASHION_TEST: &str = "fashion-mnist-test";

#[derive(clap::Args)]
pub struct Args {
    /// Model file or training checkpoint (.safetensors) [default: the embedded default model]
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Images: PNG/JPEG files, folders of them, or `fashion-mnist-test` (the 10000 test images
    /// of /usr/share/datasets/fashion-mnist, labelled).
    #[arg(value_name = "IMAGES", required = true)]
    images: Vec<String>,
    /// CSV of `filename,label` lines for some of the images: prints the accuracy and a
    /// confusion matrix over them.
    #[arg(long, value_name = "FILE")]
    labels_csv: Option<PathBuf>,
    /// Classify at most this many images (the first ones).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Do not print a line per image (only the summary).
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(ctx: &Context, a: Args) -> Res<()> {
    let m = load_model(ctx, a.model.as_ref())?;
    let (r, ch, k) = (m.cfg.resolution, m.cfg.channels, m.cfg.num_classes);
    let mut names: Vec<String> = Vec::new();
    let mut x: Vec<f32> = Vec::new();
    let mut truth: Vec<i32> = Vec::new();
    let limit = a.limit.unwrap_or(usize::MAX);
    for item in &a.images {
        if names.len() >= limit {
            break;
        }
        if item == FASHION_TEST {
            let ds = data::fashion_mnist(Path::new(FASHION_MNIST_DIR), Split::Test)?;
            if (ds.resolution, ds.channels, ds.classes) != (r, ch, k) {
                return Err(format!(
                    "{FASHION_TEST} has {0}x{0} grey images in {1} classes; the model takes \
                     {r}x{r}x{ch} images in {k} classes",
                    ds.resolution, ds.classes
                )
                .into());
            }
            let take = ds.len().min(limit - names.len());
            for i in 0..take {
                names.push(format!("{FASHION_TEST}[{i}]"));
                x.extend_from_slice(ds.image(i));
                truth.push(ds.labels[i]);
            }
            continue;
        }
        let path = PathBuf::from(item);
        let files = if path.is_dir() {
            let f = data::folder::image_files(&path)?;
            if f.is_empty() {
                return Err(format!("{item}: no .png, .jpg or .jpeg images in the folder").into());
            }
            f
        } else if path.is_file() {
            vec![path]
        } else {
            return Err(io_fail(&path, "no such file or folder"));
        };
        for f in files.into_iter().take(limit - names.len()) {
            x.extend(images::read_image(&f, r, ch)?);
            names.push(f.file_name().unwrap_or_default().to_string_lossy().into());
            truth.push(-1);
        }
    }
    if let Some(csv) = &a.labels_csv {
        let text = std::fs::read_to_string(csv).map_err(|e| io_fail(csv, e))?;
        let given = data::folder::parse_labels(&text, &csv.display().to_string(), &names, k)?;
        for (t, g) in truth.iter_mut().zip(given) {
            if g >= 0 {
                *t = g;
            }
        }
    }
    let n = names.len();
    let (labels, probs) = m.classify(ctx, &x, n)?;
    if !a.quiet {
        for i in 0..n {
            let p = probs[i * k + labels[i] as usize];
            match truth[i] {
                -1 => println!("{}\t{}\t{p:.3}", names[i], labels[i]),
                t => println!("{}\t{}\t{p:.3}\ttrue {t}", names[i], labels[i]),
            }
        }
    }
    let known: Vec<usize> = (0..n).filter(|&i| truth[i] >= 0).collect();
    if known.is_empty() {
        println!("{n} images classified");
        return Ok(());
    }
    let right = known.iter().filter(|&&i| labels[i] == truth[i]).count();
    println!(
        "accuracy: {:.2}% ({right} of {} labelled images; chance {:.1}%)",
        100.0 * right as f64 / known.len() as f64,
        known.len(),
        100.0 / k as f64
    );
    if k <= 20 {
        print_confusion(&known, &truth, &labels, k);
    }
    Ok(())
}

/// Rows: true class; columns: predicted class.
fn print_confusion(known: &[usize], truth: &[i32], labels: &[i32], k: usize) {
    let mut c = vec![0usize; k * k];
    for &i in known {
        c[truth[i] as usize * k + labels[i] as usize] += 1;
    }
    let width = c.iter().max().map_or(1, |v| v.to_string().len()).max(3);
    println!("confusion matrix (rows: true class, columns: predicted class)");
    print!("{:>5}", "");
    for j in 0..k {
        print!(" {j:>width$}");
    }
    println!();
    for t in 0..k {
        print!("{t:>5}");
        for j in 0..k {
            print!(" {:>width$}", c[t * k + j]);
        }
        println!();
    }
}
