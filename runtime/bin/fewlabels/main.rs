//! The `fewlabels` command line: `train` (S3GAN and friends on a data set, with checkpoints,
//! sample grids, a CSV log and a loss plot), `sample` (a grid or one image from a model),
//! `classify` (the discriminator's class head on images), `eval` (FID, IS, class
//! consistency of a Fashion-MNIST model) and `info` (the adapter, a model).
//!
//! Every failure prints one line, `error: ...`, and exits non-zero (2 for bad arguments,
//! 1 for everything else).

mod classify;
mod eval;
mod images;
mod info;
mod plot;
mod sample;
mod train;

use clap::{Parser, Subcommand};
use fewlabels::model::Model;
use fewlabels::{Context, Error};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "fewlabels",
    version,
    about = "Few-label GANs (BigGAN + S3GAN) on any GPU, or on the CPU through lavapipe",
    after_help = "Environment: FEWLABELS_BACKEND (vulkan, metal, dx12, gl) and FEWLABELS_ADAPTER \
                  (part of an adapter's name) choose the device."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a GAN (S3GAN-CO by default) on Fashion-MNIST or a folder of images.
    Train(Box<train::Args>),
    /// Write a grid of samples (one row per class) or a single image.
    Sample(sample::Args),
    /// Label images with the discriminator's class head (accuracy and confusion matrix when
    /// the true labels are known).
    Classify(classify::Args),
    /// FID, Inception Score and class consistency of a Fashion-MNIST model (10,000 samples
    /// against the 10,000 test images, with the embedded evaluator).
    Eval(eval::Args),
    /// Show the GPU adapter, and a model file's configuration, sizes and metadata.
    Info(info::Args),
}

/// A failure for the one-line report: the library's errors and the command's own.
pub struct Fail(pub String);

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail(e.to_string())
    }
}

impl From<String> for Fail {
    fn from(s: String) -> Fail {
        Fail(s)
    }
}

impl From<&str> for Fail {
    fn from(s: &str) -> Fail {
        Fail(s.to_string())
    }
}

pub type Res<T> = Result<T, Fail>;

/// `path: what went wrong` for a file operation.
pub fn io_fail(path: &Path, e: impl std::fmt::Display) -> Fail {
    Fail(format!("{}: {e}", path.display()))
}

/// The model file, or the embedded default model.
pub fn load_model(ctx: &Context, path: Option<&PathBuf>) -> Res<Model> {
    match path {
        Some(p) => Ok(Model::load(ctx, p)?),
        None => Ok(Model::load_default(ctx)?),
    }
}

/// A clap error in one line: its lines up to the usage, trimmed and joined.
fn one_line(s: &str) -> String {
    s.lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The library's log records on stderr, at the level `FEWLABELS_LOG` names (`error`, `warn`,
/// `info`, `debug` or `trace`); for example the adapter chosen (`info`) and the time a first
/// step's kernels took to compile ahead (`debug`).
struct StderrLog(log::LevelFilter);

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.0 && m.target().starts_with("fewlabels")
    }

    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!("{}: {}", r.level().as_str().to_ascii_lowercase(), r.args());
        }
    }

    fn flush(&self) {}
}

fn init_log() {
    let Ok(v) = std::env::var("FEWLABELS_LOG") else {
        return;
    };
    match v.trim().parse::<log::LevelFilter>() {
        Ok(level) => {
            if log::set_logger(Box::leak(Box::new(StderrLog(level)))).is_ok() {
                log::set_max_level(level);
            }
        }
        Err(_) => eprintln!(
            "warning: FEWLABELS_LOG={v:?} is not a level (error, warn, info, debug, trace); \
             no log"
        ),
    }
}

fn main() -> ExitCode {
    init_log();
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // Mesa prints a warning without it; set before any thread starts.
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                eprintln!("error: no command given (train, sample, classify, eval or info; see fewlabels --help)");
                return ExitCode::from(2);
            }
            let text = e.render().to_string();
            let line = one_line(&text);
            let line = line.strip_prefix("error: ").unwrap_or(&line);
            eprintln!("error: {line} (see fewlabels --help)");
            return ExitCode::from(2);
        }
    };
    let result = Context::new()
        .map_err(Fail::from)
        .and_then(|ctx| match cli.command {
            Command::Train(a) => train::run(&ctx, *a),
            Command::Sample(a) => sample::run(&ctx, a),
            Command::Classify(a) => classify::run(&ctx, a),
            Command::Eval(a) => eval::run(&ctx, a),
            Command::Info(a) => info::run(&ctx, a),
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(m)) => {
            eprintln!("error: {}", m.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
