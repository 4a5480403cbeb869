//! `fewlabels train`: a GAN trained on Fashion-MNIST or a folder of images.
//!
//! One step is `--d-steps` discriminator steps, each on the next `--batch` real images of a
//! seeded epoch order and fresh fakes, then one generator step. Everything random (initial
//! weights, the labelled subset, the batch order, z and fake labels) comes from `--seed`, and
//! the checkpoint holds the batch order's position (`Trainer::extra`), so `--resume` continues
//! bit for bit as if the run had not stopped.
//!
//! Files in `--out`: `checkpoint.safetensors` (every `--checkpoint-every` steps and at the end),
//! `model.safetensors` (the model with standing statistics, at the end), `samples_<step>.png`
//! (one row per class, the same z every time), `loss.png` (with each checkpoint and at the
//! end) and `log.csv` (one row per step).

use crate::{images, io_fail, plot, Res};
use fewlabels::data::{self, Dataset, FolderOptions, LabelSpec, Order, OrderState, Split};
use fewlabels::model::file::TensorFile;
use fewlabels::model::{Config, Model, Which};
use fewlabels::train::head::{fit_class_head, HeadConfig};
use fewlabels::train::labeller::{pseudo_label, LabellerConfig};
use fewlabels::train::{LabelUse, TrainConfig, Trainer, Variant, TRAIN_PREFIX};
use fewlabels::{Context, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use plotters::style::RGBColor;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

const FASHION: &str = "fashion-mnist";
const CHECKPOINT: &str = "checkpoint.safetensors";
const MODEL: &str = "model.safetensors";
const LOG: &str = "log.csv";
const PLOT: &str = "loss.png";
/// Key of the run's settings in the checkpoint's `extra` map.
const SETTINGS_KEY: &str = "cli.settings";
/// Key of the batch order's state in the checkpoint's `extra` map.
const ORDER_KEY: &str = "data.order";
/// Key of the pre-trained labels (s2gan, s3gan) in the checkpoint's `extra` map.
const PSEUDO_KEY: &str = "data.pre_trained_labels";
/// Steps over which the progress line averages accuracy and speed.
const WINDOW: usize = 20;
/// Classes shown in a sample grid (the first ones), and samples per class.
const GRID_ROWS: usize = 16;
const GRID_COLS: usize = 8;
/// Batches of standing statistics before sampling.
const STANDING_BATCHES: usize = 4;

#[derive(clap::Args)]
pub struct Args {
    /// Training data: `fashion-mnist` (the train split in /usr/share/datasets/fashion-mnist,
    /// 60000 32x32 grey images in 10 classes) or a folder of PNG/JPEG images of the model's
    /// size. Required unless --resume.
    #[arg(long, value_name = "DATA")]
    data: Option<String>,
    /// CSV of `filename,label` lines for the labelled images of a --data folder (the others
    /// are unlabelled).
    #[arg(long, value_name = "FILE")]
    labels_csv: Option<PathBuf>,
    /// Turn grey images into RGB and RGB into grey, and drop alpha, to fit the model
    /// (--data and --eval-data folders).
    #[arg(long)]
    convert: bool,
    /// Labels to keep: a percentage of all images (`10%`), a count (`600`), `all` or
    /// `none`; a seeded subset spread evenly over the classes [default: all]
    #[arg(long, value_name = "SPEC")]
    labels: Option<String>,
    /// Which GAN: conditional, unconditional, ssgan, s2gan-co, s3gan-co, or s2gan / s3gan
    /// (pre-trained labels: a labeller trained first labels every unlabelled image, then a
    /// conditional GAN trains on them) [default: s3gan-co]
    #[arg(long, value_name = "NAME")]
    variant: Option<String>,
    /// Labeller steps before the GAN for s2gan and s3gan (batch --batch, Adam lr 4e-4,
    /// rotation loss on all images plus class loss on the labelled ones) [default: 2000]
    #[arg(long, value_name = "N")]
    labeller_steps: Option<usize>,
    /// Self-training rounds of the labeller (s2gan and s3gan): each round but the last hands
    /// the half of each class's unlabelled images it is surest of to the next as labels; each
    /// trains a fresh labeller for --labeller-steps steps [default: 1]
    #[arg(long, value_name = "N")]
    labeller_rounds: Option<usize>,
    /// Fresh weights of this architecture: tiny, tiny_rgb, fashion, fashion_small, rgb64, imagenet64,
    /// imagenet128 [default: fashion]
    #[arg(long, value_name = "NAME", conflicts_with = "init")]
    preset: Option<String>,
    /// Start from this model file (fine-tuning) instead of fresh weights; it must hold D.
    #[arg(long, value_name = "MODEL_FILE")]
    init: Option<PathBuf>,
    /// Train until this step (one step: --d-steps D steps and one G step); with --resume,
    /// the total including the steps already done.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    steps: u64,
    /// Real images per D step (and fakes per D and G step) [default: 64]
    #[arg(long, value_name = "N")]
    batch: Option<usize>,
    /// Adam learning rate of G [default: 1e-4]
    #[arg(long, value_name = "RATE")]
    lr_g: Option<f64>,
    /// Adam learning rate of D [default: 4e-4]
    #[arg(long, value_name = "RATE")]
    lr_d: Option<f64>,
    /// D steps per G step [default: 2]
    #[arg(long, value_name = "N")]
    d_steps: Option<usize>,
    /// Decay of G's exponential moving average (G_ema, the generator that is sampled and
    /// saved) [default: 0.9999]
    #[arg(long, value_name = "D")]
    ema_decay: Option<f64>,
    /// First G step that averages into G_ema; before it G_ema copies G [default: 1000]
    #[arg(long, value_name = "N")]
    ema_start: Option<u64>,
    /// Seed of everything random: weights, labelled subset, batch order, z [default: 0]
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// Folder for the checkpoint, model, sample grids, loss plot and CSV log (created if
    /// missing).
    #[arg(long, value_name = "DIR", default_value = "run")]
    out: PathBuf,
    /// Save the checkpoint and loss plot every N steps (0: only at the end).
    #[arg(long, value_name = "N", default_value_t = 500)]
    checkpoint_every: u64,
    /// Write a sample grid every N steps (0: only at the end).
    #[arg(long, value_name = "N", default_value_t = 500)]
    sample_every: u64,
    /// Measure the class head's accuracy on held-out images every N steps (0: only at the
    /// end). Held out: Fashion-MNIST's test split for fashion-mnist, else --eval-data.
    #[arg(long, value_name = "N", default_value_t = 500)]
    eval_every: u64,
    /// Held-out folder of images for a --data folder (with --eval-labels-csv).
    #[arg(long, value_name = "DIR")]
    eval_data: Option<PathBuf>,
    /// CSV of `filename,label` lines for --eval-data (only labelled images are scored).
    #[arg(long, value_name = "FILE", requires = "eval_data")]
    eval_labels_csv: Option<PathBuf>,
    /// Held-out images scored per evaluation (the first ones) [default: 1000]
    #[arg(long, value_name = "N")]
    eval_size: Option<usize>,
    /// Continue the run in --out from its checkpoint.safetensors, exactly where it stopped
    /// (its data, labels, model and hyper-parameters are kept; give --steps as the new total).
    #[arg(long)]
    resume: bool,
}

/// What fixes a run (stored in the checkpoint; --resume keeps it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Settings {
    data: String,
    labels_csv: Option<PathBuf>,
    convert: bool,
    labels: String,
    /// `preset:<name>` or `init:<path>`.
    start: String,
    batch: usize,
    eval_data: Option<PathBuf>,
    eval_labels_csv: Option<PathBuf>,
    eval_size: usize,
    /// Labeller steps (s2gan and s3gan only).
    #[serde(default)]
    labeller_steps: usize,
    /// Labeller rounds (s2gan and s3gan only; 1 in runs from before the option).
    #[serde(default = "one")]
    labeller_rounds: usize,
}

fn one() -> usize {
    1
}

/// The figures of one step (one CSV row).
#[derive(Debug, Clone, Default)]
struct Row {
    step: u64,
    d_loss: f32,
    d_hinge: f32,
    d_rotation: f32,
    d_class: f32,
    g_loss: f32,
    g_adversarial: f32,
    g_rotation: f32,
    /// Labelled rows of this step's real batches, and how many of them the class head got
    /// right (after the step's D updates).
    labelled: usize,
    right: usize,
    eval_acc: Option<f64>,
    images_per_s: f64,
    elapsed_s: f64,
}

const HEADER: &str = "step,d_loss,d_hinge,d_rotation,d_class,g_loss,g_adversarial,g_rotation,\
                      train_acc,labelled,eval_acc,images_per_s,elapsed_s";

impl Row {
    fn train_acc(&self) -> Option<f64> {
        (self.labelled > 0).then(|| self.right as f64 / self.labelled as f64)
    }

    fn csv(&self) -> String {
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{:.3},{:.3}",
            self.step,
            self.d_loss,
            self.d_hinge,
            self.d_rotation,
            self.d_class,
            self.g_loss,
            self.g_adversarial,
            self.g_rotation,
            opt(self.train_acc()),
            self.labelled,
            opt(self.eval_acc),
            self.images_per_s,
            self.elapsed_s
        )
    }

    fn parse(line: &str) -> Option<Row> {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 13 {
            return None;
        }
        let num = |i: usize| f[i].parse::<f32>().ok();
        let opt = |i: usize| -> Option<Option<f64>> {
            match f[i] {
                "" => Some(None),
                s => s.parse().ok().map(Some),
            }
        };
        let labelled: usize = f[9].parse().ok()?;
        let acc = opt(8)?;
        Some(Row {
            step: f[0].parse().ok()?,
            d_loss: num(1)?,
            d_hinge: num(2)?,
            d_rotation: num(3)?,
            d_class: num(4)?,
            g_loss: num(5)?,
            g_adversarial: num(6)?,
            g_rotation: num(7)?,
            labelled,
            right: acc.map_or(0, |a| (a * labelled as f64).round() as usize),
            eval_acc: opt(10)?,
            images_per_s: f[11].parse().ok()?,
            elapsed_s: f[12].parse().ok()?,
        })
    }
}

/// Held-out images with known labels (NHWC in [-1, 1]).
struct EvalSet {
    x: Vec<f32>,
    y: Vec<i32>,
    name: String,
}

/// Progress output: a bar on a terminal, plain lines otherwise.
struct Progress {
    bar: ProgressBar,
    tty: bool,
}

impl Progress {
    fn new(start: u64, total: u64) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let bar = if tty {
            ProgressBar::new(total)
        } else {
            ProgressBar::hidden()
        };
        let style = ProgressStyle::with_template("{pos}/{len} [{bar:16}] {msg} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_position(start);
        Progress { bar, tty }
    }

    fn say(&self, line: &str) {
        if self.tty {
            self.bar.println(line);
        } else {
            println!("{line}");
        }
    }
}

fn opt_or<T: Clone>(given: &Option<T>, default: T) -> T {
    given.clone().unwrap_or(default)
}

/// The data set of `s` for a model of `cfg`, with the labels `s.labels` keeps.
fn load_data(cfg: &Config, s: &Settings, seed: u64) -> Res<Dataset> {
    let mut ds = if s.data == FASHION {
        data::fashion_mnist(Path::new(data::FASHION_MNIST_DIR), Split::Train)?
    } else {
        let dir = PathBuf::from(&s.data);
        if !dir.is_dir() {
            return Err(
                format!("--data {}: not `{FASHION}` nor a folder of images", s.data).into(),
            );
        }
        let mut o = FolderOptions::new(cfg.resolution, cfg.channels, cfg.num_classes);
        o.labels = s.labels_csv.clone();
        o.convert = s.convert;
        data::image_folder(&dir, &o)?
    };
    if s.data != FASHION && s.labels_csv.is_none() && s.labels != "none" {
        // Without a CSV the folder has no labels at all; "all" keeps those zero labels.
        if !matches!(LabelSpec::parse(&s.labels)?, LabelSpec::All) {
            return Err(format!(
                "--labels {} needs labelled images: give --labels-csv for the folder",
                s.labels
            )
            .into());
        }
    }
    if (ds.resolution, ds.channels, ds.classes) != (cfg.resolution, cfg.channels, cfg.num_classes) {
        return Err(format!(
            "--data {}: {}x{}x{} images in {} classes, but the model takes {}x{}x{} images in \
             {} classes (choose another --preset or --init)",
            s.data,
            ds.resolution,
            ds.resolution,
            ds.channels,
            ds.classes,
            cfg.resolution,
            cfg.resolution,
            cfg.channels,
            cfg.num_classes
        )
        .into());
    }
    data::keep_labels(&mut ds, LabelSpec::parse(&s.labels)?, seed)?;
    Ok(ds)
}

/// The held-out set of `s`, if there is one: Fashion-MNIST's test split for fashion-mnist,
/// else the labelled images of --eval-data.
fn load_eval(cfg: &Config, s: &Settings) -> Res<Option<EvalSet>> {
    let ds = if s.data == FASHION {
        data::fashion_mnist(Path::new(data::FASHION_MNIST_DIR), Split::Test)?
    } else if let Some(dir) = &s.eval_data {
        let mut o = FolderOptions::new(cfg.resolution, cfg.channels, cfg.num_classes);
        o.labels = s.eval_labels_csv.clone();
        o.convert = s.convert;
        data::image_folder(dir, &o)?
    } else {
        return Ok(None);
    };
    let keep: Vec<usize> = (0..ds.len())
        .filter(|&i| ds.labels[i] >= 0)
        .take(s.eval_size)
        .collect();
    if keep.is_empty() {
        return Err(format!(
            "the held-out set {} has no labelled images (give --eval-labels-csv)",
            s.eval_data.as_deref().unwrap_or(Path::new("")).display()
        )
        .into());
    }
    let (x, y) = ds.batch(&keep);
    let name = if s.data == FASHION {
        format!("{} Fashion-MNIST test images", keep.len())
    } else {
        format!("{} held-out images", keep.len())
    };
    Ok(Some(EvalSet { x, y, name }))
}

/// S2GAN/S3GAN: label every unlabelled image of `ds` with a labeller trained on `ds` (rotation
/// on all images, class on the labelled ones), once per run: the labels are kept in the
/// checkpoint (`extra`), so a resumed run trains on the same labels without a second labeller.
fn pre_trained_labels(ctx: &Context, tr: &mut Trainer, ds: &mut Dataset, s: &Settings) -> Res<()> {
    if let Some(saved) = tr.extra.get(PSEUDO_KEY) {
        let labels: Vec<i32> = saved
            .split(',')
            .map(|v| v.parse::<i32>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("checkpoint: bad pre-trained labels: {e}"))?;
        if labels.len() != ds.len() {
            return Err(format!(
                "checkpoint: {} pre-trained labels for {} images",
                labels.len(),
                ds.len()
            )
            .into());
        }
        ds.labels = labels;
        return Ok(());
    }
    let mut lc = LabellerConfig::new();
    lc.steps = s.labeller_steps;
    lc.batch = s.batch;
    lc.seed = tr.cfg.seed;
    lc.rounds = s.labeller_rounds;
    lc.validate()?;
    let unlabelled: Vec<usize> = (0..ds.len()).filter(|&i| ds.labels[i] < 0).collect();
    let rounds = if lc.rounds > 1 {
        format!(
            " in each of {} rounds (each hands its surest {:.0}% per class to the next)",
            lc.rounds,
            100.0 * lc.keep
        )
    } else {
        String::new()
    };
    println!(
        "labeller: {} steps of {} images{rounds}; then it labels {} unlabelled images",
        lc.steps,
        lc.batch,
        unlabelled.len()
    );
    let total = (lc.steps * lc.rounds) as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "labeller {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .map_err(|e| e.to_string())?,
    );
    let cfg = tr.model.cfg.clone();
    // Without a terminal the bar is hidden: print a line every 100 steps instead.
    let tty = std::io::stderr().is_terminal();
    let t0 = std::time::Instant::now();
    pseudo_label(ctx, &cfg, ds, &lc, &mut |r| {
        let msg = format!(
            "rotation {:.3} class {:.3} labelled acc {:.2}",
            r.rotation_loss, r.class_loss, r.labelled_accuracy
        );
        if !tty && (r.step % 100 == 0 || r.step == lc.steps) {
            let round = if lc.rounds > 1 {
                format!("round {}/{} ", r.round, lc.rounds)
            } else {
                String::new()
            };
            eprintln!(
                "labeller {round}step {}/{}: {msg} | {:.0} s",
                r.step,
                lc.steps,
                t0.elapsed().as_secs_f64()
            );
        }
        bar.set_position(((r.round - 1) * lc.steps + r.step) as u64);
        bar.set_message(msg);
    })?;
    bar.finish();
    if s.data == FASHION && !unlabelled.is_empty() {
        // Fashion-MNIST knows every label: report how right the pre-trained labels are.
        let truth = data::fashion_mnist(Path::new(data::FASHION_MNIST_DIR), Split::Train)?;
        let right = unlabelled
            .iter()
            .filter(|&&i| truth.labels[i] == ds.labels[i])
            .count();
        println!(
            "labeller: {:.2}% of the {} pre-trained labels are right",
            100.0 * right as f64 / unlabelled.len() as f64,
            unlabelled.len()
        );
    }
    let text: Vec<String> = ds.labels.iter().map(|l| l.to_string()).collect();
    tr.extra.insert(PSEUDO_KEY.into(), text.join(","));
    Ok(())
}

/// Share of `set` whose class-head label is right.
fn evaluate(ctx: &Context, model: &Model, set: &EvalSet) -> Res<f64> {
    let (labels, _) = model.classify(ctx, &set.x, set.y.len())?;
    let right = labels.iter().zip(&set.y).filter(|(a, b)| a == b).count();
    Ok(right as f64 / set.y.len() as f64)
}

/// An independent copy of the trainer's model (train.* metadata dropped) with standing
/// statistics from `seed`, for sampling and export.
fn sampling_copy(ctx: &Context, tr: &Trainer, batch: usize, seed: u64) -> Res<Model> {
    let mut f: TensorFile = tr.model.to_file(ctx)?;
    f.metadata.retain(|k, _| !k.starts_with(TRAIN_PREFIX));
    let mut m = Model::from_file(ctx, &f)?;
    let batch = batch.clamp(1, 64).min(m.max_batch(ctx));
    m.accumulate_standing_stats(ctx, STANDING_BATCHES, batch, seed)?;
    Ok(m)
}

/// The true labels of a run whose variant trains no class head on D but has labels (s2gan,
/// s3gan): its exported model gets a class head fitted on them.
struct HeadFit<'a> {
    data: &'a Dataset,
    labels: Vec<i32>,
    eval: Option<&'a EvalSet>,
}

/// Write `model.safetensors` (a [`sampling_copy`], its class head fitted when `head` says)
/// into `out`; returns its path.
fn export_model(
    ctx: &Context,
    tr: &Trainer,
    out: &Path,
    batch: usize,
    seed: u64,
    head: Option<&HeadFit>,
) -> Res<PathBuf> {
    let path = out.join(MODEL);
    let mut m = sampling_copy(ctx, tr, batch, seed)?;
    if let Some(h) = head {
        let mut hc = HeadConfig::new();
        hc.seed = seed;
        let t = Instant::now();
        let rep = fit_class_head(ctx, &mut m, h.data, &h.labels, &hc, &mut |_, _| {})?;
        let held_out = match h.eval {
            Some(e) => format!(", {:.2}% on {}", 100.0 * evaluate(ctx, &m, e)?, e.name),
            None => String::new(),
        };
        println!(
            "class head: fitted on D's features of the {} labelled images, D frozen ({} steps, \
             {:.1} s): {:.2}% right on them{held_out}",
            rep.images,
            hc.steps,
            t.elapsed().as_secs_f64(),
            100.0 * rep.train_accuracy
        );
    }
    m.save(ctx, &path)?;
    Ok(path)
}

/// A grid of G_ema's samples, one row per class, always from the same z.
fn write_samples(ctx: &Context, m: &Model, path: &Path, seed: u64) -> Res<()> {
    let rows = m.cfg.num_classes.min(GRID_ROWS);
    let classes: Vec<i32> = (0..rows as i32)
        .flat_map(|c| std::iter::repeat_n(c, GRID_COLS))
        .collect();
    let z = m.make_z(seed, 1.0, classes.len())?;
    let chw = m.sample(ctx, Which::Ema, &classes, &z)?;
    images::write_grid(path, &chw, m.cfg.channels, m.cfg.resolution, GRID_COLS)?;
    Ok(())
}

fn write_plot(path: &Path, rows: &[Row], last: u64) -> Res<()> {
    let series = |name, colour, f: &dyn Fn(&Row) -> Option<f64>| plot::Series {
        name,
        colour,
        points: rows
            .iter()
            .filter_map(|r| f(r).map(|v| (r.step as f64, v)))
            .collect(),
    };
    let losses = [
        series("D hinge", RGBColor(31, 119, 180), &|r| {
            Some(r.d_hinge as f64)
        }),
        series("D rotation", RGBColor(255, 127, 14), &|r| {
            Some(r.d_rotation as f64)
        }),
        series("D class", RGBColor(44, 160, 44), &|r| {
            Some(r.d_class as f64)
        }),
        series("G adversarial", RGBColor(214, 39, 40), &|r| {
            Some(r.g_adversarial as f64)
        }),
        series("G rotation", RGBColor(148, 103, 189), &|r| {
            Some(r.g_rotation as f64)
        }),
    ];
    // Training accuracy smoothed over the last WINDOW steps' labelled rows.
    let mut smooth = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let w = &rows[i.saturating_sub(WINDOW - 1)..=i];
        let (right, n) = w
            .iter()
            .fold((0, 0), |(a, b), r| (a + r.right, b + r.labelled));
        if n > 0 {
            smooth.push((r.step as f64, right as f64 / n as f64));
        }
    }
    let accuracy = [
        plot::Series {
            name: "labelled training rows (recent steps)",
            colour: RGBColor(127, 127, 127),
            points: smooth,
        },
        series("held out", RGBColor(214, 39, 40), &|r| r.eval_acc),
    ];
    plot::write(path, &losses, &accuracy, last as f64)
}

/// The log's rows up to `step` (a resumed run drops the rows after its checkpoint).
fn read_log(path: &Path, step: u64) -> Res<Vec<Row>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_fail(path, e)),
    };
    let mut rows = Vec::new();
    for (no, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let row = Row::parse(line)
            .ok_or_else(|| io_fail(path, format!("line {} is not a row of this log", no + 1)))?;
        if row.step <= step {
            rows.push(row);
        }
    }
    Ok(rows)
}

fn write_log(path: &Path, rows: &[Row]) -> Res<std::fs::File> {
    let mut text = format!("{HEADER}\n");
    for r in rows {
        text.push_str(&r.csv());
        text.push('\n');
    }
    fewlabels::model::file::write_atomic(path, text.as_bytes())?;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| io_fail(path, e))
}

/// A path made absolute (so that a run resumes from any folder); as given if that fails.
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// `fashion-mnist`, or the absolute path of a --data folder.
fn data_name(d: &str) -> String {
    if d == FASHION {
        d.to_string()
    } else {
        absolute(Path::new(d)).display().to_string()
    }
}

/// Settings of a new run from the arguments and defaults.
fn new_settings(a: &Args) -> Res<Settings> {
    let data = a
        .data
        .as_deref()
        .map(data_name)
        .ok_or("--data is required (fashion-mnist or a folder of images)")?;
    let abs = |p: &Option<PathBuf>| p.as_deref().map(absolute);
    let start = match (&a.init, &a.preset) {
        (Some(p), _) => format!("init:{}", absolute(p).display()),
        (None, p) => format!("preset:{}", opt_or(p, "fashion".to_string())),
    };
    Ok(Settings {
        data,
        labels_csv: abs(&a.labels_csv),
        convert: a.convert,
        labels: opt_or(&a.labels, "all".into()),
        start,
        batch: opt_or(&a.batch, 64),
        eval_data: abs(&a.eval_data),
        eval_labels_csv: abs(&a.eval_labels_csv),
        eval_size: opt_or(&a.eval_size, 1000),
        labeller_steps: opt_or(&a.labeller_steps, LabellerConfig::new().steps),
        labeller_rounds: opt_or(&a.labeller_rounds, LabellerConfig::new().rounds),
    })
}

/// `--resume` keeps the run's settings: an argument that asks for something else is refused.
fn check_resume_args(a: &Args, s: &Settings, tc: &TrainConfig) -> Res<()> {
    let mut differ = Vec::new();
    let mut check = |name: &str, given: Option<String>, kept: String| {
        if let Some(g) = given {
            if g != kept {
                differ.push(format!("--{name} {g} (the run has {kept})"));
            }
        }
    };
    check("data", a.data.as_deref().map(data_name), s.data.clone());
    check("labels", a.labels.clone(), s.labels.clone());
    check("batch", a.batch.map(|v| v.to_string()), s.batch.to_string());
    check("variant", a.variant.clone(), tc.variant.name().into());
    check("lr-g", a.lr_g.map(|v| v.to_string()), tc.lr_g.to_string());
    check("lr-d", a.lr_d.map(|v| v.to_string()), tc.lr_d.to_string());
    check(
        "d-steps",
        a.d_steps.map(|v| v.to_string()),
        tc.d_steps.to_string(),
    );
    check("seed", a.seed.map(|v| v.to_string()), tc.seed.to_string());
    check(
        "ema-decay",
        a.ema_decay.map(|v| v.to_string()),
        tc.ema_decay.to_string(),
    );
    check(
        "ema-start",
        a.ema_start.map(|v| v.to_string()),
        tc.ema_start.to_string(),
    );
    check(
        "labeller-steps",
        a.labeller_steps.map(|v| v.to_string()),
        s.labeller_steps.to_string(),
    );
    check(
        "labeller-rounds",
        a.labeller_rounds.map(|v| v.to_string()),
        s.labeller_rounds.to_string(),
    );
    check(
        "eval-size",
        a.eval_size.map(|v| v.to_string()),
        s.eval_size.to_string(),
    );
    if a.preset.is_some() || a.init.is_some() {
        differ.push("--preset/--init (the run's model is in its checkpoint)".into());
    }
    if differ.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "--resume keeps the run's settings, but {} (leave them out to resume)",
            differ.join(", ")
        )
        .into())
    }
}

pub fn run(ctx: &Context, a: Args) -> Res<()> {
    let t0 = Instant::now();
    if a.batch == Some(0) || a.eval_size == Some(0) || a.d_steps == Some(0) {
        return Err("--batch, --d-steps and --eval-size must be at least 1".into());
    }
    std::fs::create_dir_all(&a.out).map_err(|e| io_fail(&a.out, e))?;
    let ckpt_path = a.out.join(CHECKPOINT);
    let (mut tr, settings, resumed_order) = if a.resume {
        let tr = Trainer::load_checkpoint(ctx, &ckpt_path)?;
        let s: Settings = tr
            .extra
            .get(SETTINGS_KEY)
            .and_then(|j| serde_json::from_str(j).ok())
            .ok_or_else(|| {
                io_fail(
                    &ckpt_path,
                    "not a checkpoint of `fewlabels train` (no run settings)",
                )
            })?;
        check_resume_args(&a, &s, &tr.cfg)?;
        let state: OrderState = tr
            .extra
            .get(ORDER_KEY)
            .and_then(|j| serde_json::from_str(j).ok())
            .ok_or_else(|| io_fail(&ckpt_path, "no batch order state"))?;
        let order = Order::resume(state)?;
        (tr, s, Some(order))
    } else {
        if ckpt_path.exists() {
            return Err(format!(
                "{} already holds a run; pass --resume to continue it or choose another --out",
                a.out.display()
            )
            .into());
        }
        let s = new_settings(&a)?;
        let variant = Variant::parse(a.variant.as_deref().unwrap_or("s3gan-co"))?;
        let mut tc = TrainConfig::new(variant);
        tc.lr_g = opt_or(&a.lr_g, tc.lr_g);
        tc.lr_d = opt_or(&a.lr_d, tc.lr_d);
        tc.d_steps = opt_or(&a.d_steps, tc.d_steps);
        tc.seed = opt_or(&a.seed, tc.seed);
        tc.ema_decay = opt_or(&a.ema_decay, tc.ema_decay);
        tc.ema_start = opt_or(&a.ema_start, tc.ema_start);
        tc.validate()?;
        let model = match &a.init {
            Some(p) => Model::load(ctx, p)?,
            None => {
                let name = a.preset.as_deref().unwrap_or("fashion");
                Model::init(ctx, &Config::preset(name)?, tc.seed)?
            }
        };
        let mut tr = Trainer::new(ctx, model, tc)?;
        let json = serde_json::to_string(&s).map_err(|e| e.to_string())?;
        tr.extra.insert(SETTINGS_KEY.into(), json);
        (tr, s, None)
    };
    let cfg = tr.model.cfg.clone();
    let tc = tr.cfg.clone();
    let seed = tc.seed;

    // Compile what the first step needs (CPU adapters) while the data loads.
    let todo = tr.g_steps_done() < a.steps;
    let batch = settings.batch;
    let (ds, prepared) = std::thread::scope(|scope| {
        let prep = scope.spawn(|| match todo {
            true => tr.prepare_step(ctx, batch),
            false => Ok(()),
        });
        let ds = load_data(&cfg, &settings, seed);
        (ds, prep.join())
    });
    prepared.map_err(|_| "compiling the first step's kernels failed")??;
    let mut ds = ds?;
    // s2gan and s3gan train no class head on D: their model file gets one fitted on the true
    // labels (before the labeller fills the rest in).
    let true_labels = (matches!(tc.variant, Variant::S2gan | Variant::S3gan) && cfg.class_head)
        .then(|| ds.labels.clone());
    if matches!(tc.variant, Variant::S2gan | Variant::S3gan) {
        pre_trained_labels(ctx, &mut tr, &mut ds, &settings)?;
    }
    if tc.variant.labels() == LabelUse::All && ds.labelled() < ds.len() {
        return Err(format!(
            "the {} variant needs every image labelled, but {} of {} are not \
             (use s3gan-co, or s3gan to label them first)",
            tc.variant.name(),
            ds.len() - ds.labelled(),
            ds.len()
        )
        .into());
    }
    let eval = load_eval(&cfg, &settings)?;
    let head_fit = true_labels.map(|labels| HeadFit {
        data: &ds,
        labels,
        eval: eval.as_ref(),
    });
    let mut order = match resumed_order {
        Some(o) => {
            if o.state().len != ds.len() {
                return Err(format!(
                    "--data {} now has {} images, the run had {}",
                    settings.data,
                    ds.len(),
                    o.state().len
                )
                .into());
            }
            o
        }
        None => Order::new(seed, ds.len())?,
    };
    let batch = settings.batch;
    let start = tr.g_steps_done();
    let log_path = a.out.join(LOG);
    let mut rows = if a.resume {
        read_log(&log_path, start)?
    } else {
        Vec::new()
    };
    let mut log = write_log(&log_path, &rows)?;

    println!("adapter: {}", ctx.description);
    println!(
        "data: {} ({} images, {} labelled, {} classes); model: {} ({}x{}x{}); variant {}; \
         batch {batch}; out {}",
        settings.data,
        ds.len(),
        ds.labelled(),
        ds.classes,
        settings.start,
        cfg.resolution,
        cfg.resolution,
        cfg.channels,
        tc.variant.name(),
        a.out.display()
    );
    if let Some(e) = &eval {
        println!("held out: {}", e.name);
    }
    if start == a.steps && start > 0 {
        // A run stopped between checkpoints and resumed to its last one: export its model.
        let model_path = export_model(ctx, &tr, &a.out, batch, seed, head_fit.as_ref())?;
        write_plot(&a.out.join(PLOT), &rows, a.steps)?;
        println!(
            "the run is at step {start}; wrote {} (G_ema with standing statistics) and {}",
            model_path.display(),
            a.out.join(PLOT).display()
        );
        return Ok(());
    }
    if start > a.steps {
        println!(
            "the run is at step {start}; nothing to do for --steps {}",
            a.steps
        );
        return Ok(());
    }
    if start > 0 {
        println!("resuming at step {start}");
    }

    let (r, ch) = (cfg.resolution, cfg.channels);
    let progress = Progress::new(start, a.steps);
    let mut recent: VecDeque<(usize, usize, f64)> = VecDeque::new();
    let elapsed0 = rows.last().map_or(0.0, |r| r.elapsed_s);
    let run_start = Instant::now();
    let due = |every: u64, step: u64| step == a.steps || (every > 0 && step.is_multiple_of(every));
    for step in start + 1..=a.steps {
        let t = Instant::now();
        let mut row = Row {
            step,
            ..Row::default()
        };
        let mut lab_x: Vec<f32> = Vec::new();
        let mut lab_y: Vec<i32> = Vec::new();
        for s in 0..tc.d_steps {
            let idx = order.next_batch(batch);
            let (x, y) = ds.batch(&idx);
            let xt = Tensor::from_f32(ctx, &[batch, r, r, ch], &x)?;
            let (z, yf) = tr.fake_batch(ctx, batch)?;
            let rep = tr.d_step(ctx, &xt, &y, &z, &yf)?;
            let w = 1.0 / (s + 1) as f32;
            for (acc, v) in [
                (&mut row.d_loss, rep.total),
                (&mut row.d_hinge, rep.hinge),
                (&mut row.d_rotation, rep.rotation),
                (&mut row.d_class, rep.class),
            ] {
                *acc += (v - *acc) * w;
            }
            for (i, &l) in y.iter().enumerate() {
                if l >= 0 {
                    lab_x.extend_from_slice(&x[i * r * r * ch..(i + 1) * r * r * ch]);
                    lab_y.push(l);
                }
            }
        }
        if tc.variant.class_head() && !lab_y.is_empty() {
            let (pred, _) = tr.model.classify(ctx, &lab_x, lab_y.len())?;
            row.labelled = lab_y.len();
            row.right = pred.iter().zip(&lab_y).filter(|(a, b)| a == b).count();
        }
        let (z, yf) = tr.fake_batch(ctx, batch)?;
        let g = tr.g_step(ctx, &z, &yf)?;
        row.g_loss = g.total;
        row.g_adversarial = g.adversarial;
        row.g_rotation = g.rotation;
        let state = serde_json::to_string(&order.state()).map_err(|e| e.to_string())?;
        tr.extra.insert(ORDER_KEY.into(), state);
        let figures = [
            row.d_loss,
            row.d_hinge,
            row.d_rotation,
            row.d_class,
            row.g_loss,
            row.g_adversarial,
            row.g_rotation,
        ];
        if figures.iter().any(|v| !v.is_finite()) {
            progress.bar.abandon();
            return Err(format!(
                "training diverged at step {step} (D loss {}, G loss {}); the checkpoint in {} \
                 holds the last saved step: start a new run with lower --lr-g and --lr-d",
                row.d_loss,
                row.g_loss,
                a.out.display()
            )
            .into());
        }
        let secs = t.elapsed().as_secs_f64();
        row.images_per_s = (batch * tc.d_steps) as f64 / secs.max(1e-9);
        row.elapsed_s = elapsed0 + run_start.elapsed().as_secs_f64();

        if let (Some(e), true) = (&eval, tc.variant.class_head() && due(a.eval_every, step)) {
            let acc = evaluate(ctx, &tr.model, e)?;
            row.eval_acc = Some(acc);
            progress.say(&format!(
                "step {step}: held-out class-head accuracy {:.2}% on {} (chance {:.1}%)",
                100.0 * acc,
                e.name,
                100.0 / cfg.num_classes as f64
            ));
        }
        writeln!(log, "{}", row.csv()).map_err(|e| io_fail(&log_path, e))?;

        recent.push_back((row.right, row.labelled, secs));
        if recent.len() > WINDOW {
            recent.pop_front();
        }
        let (right, lab) = recent.iter().fold((0, 0), |(a, b), v| (a + v.0, b + v.1));
        let secs_sum: f64 = recent.iter().map(|v| v.2).sum();
        let speed = (recent.len() * batch * tc.d_steps) as f64 / secs_sum.max(1e-9);
        let acc = if lab > 0 {
            format!("{:.0}%", 100.0 * right as f64 / lab as f64)
        } else {
            "-".into()
        };
        let msg = format!(
            "D hinge {:.3} rot {:.3} cls {:.3} | G {:.3} rot {:.3} | acc {acc} | {speed:.1} img/s",
            row.d_hinge, row.d_rotation, row.d_class, row.g_adversarial, row.g_rotation
        );
        let short = format!(
            "D h{:.2} r{:.2} c{:.2} G {:.2} r{:.2} acc {acc} {speed:.1} img/s",
            row.d_hinge, row.d_rotation, row.d_class, row.g_adversarial, row.g_rotation
        );
        rows.push(row);
        progress.bar.set_position(step);
        progress.bar.set_message(short);
        if !progress.tty && (step % 10 == 0 || step == a.steps || step == start + 1) {
            let left = (a.steps - step) as f64 * secs_sum / recent.len() as f64;
            eprintln!("step {step}/{}: {msg} | eta {left:.0} s", a.steps);
        }

        if due(a.sample_every, step) {
            let m = sampling_copy(ctx, &tr, batch, seed)?;
            let path = a.out.join(format!("samples_{step}.png"));
            write_samples(ctx, &m, &path, seed)?;
            progress.say(&format!("step {step}: wrote {}", path.display()));
        }
        if due(a.checkpoint_every, step) {
            tr.save_checkpoint(ctx, &ckpt_path)?;
            write_plot(&a.out.join(PLOT), &rows, a.steps)?;
            progress.say(&format!("step {step}: saved {}", ckpt_path.display()));
        }
    }
    progress.bar.finish_and_clear();
    log.flush().map_err(|e| io_fail(&log_path, e))?;
    let profile = ctx.take_profile();
    if !profile.is_empty() {
        eprintln!(
            "Per-kernel time (FEWLABELS_PROFILE=1):\n{}",
            fewlabels::kernel::format_profile(&profile)
        );
    }
    let model_path = export_model(ctx, &tr, &a.out, batch, seed, head_fit.as_ref())?;
    println!(
        "done: {} steps in {:.1} s; wrote {}, {}, {} and {}",
        a.steps - start,
        t0.elapsed().as_secs_f64(),
        model_path.display(),
        ckpt_path.display(),
        a.out.join(PLOT).display(),
        log_path.display()
    );
    Ok(())
}
