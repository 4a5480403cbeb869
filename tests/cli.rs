//! The `fewlabels` command (runtime/bin/fewlabels/), run as a built binary:
//! - `train` on a small generated folder of PNGs with a labels CSV for half of them: the
//!   checkpoint, model, sample grids and loss plot exist and decode, the CSV log has a row per
//!   step with held-out accuracy where due; `--resume` to step 5 gives the same log figures
//!   and bit-identical checkpoint tensors as a straight 5-step run;
//! - `classify` on those images (labels, accuracy, confusion matrix), `sample` (a grid and a
//!   single image of the right sizes), `info` on a checkpoint;
//! - bad invocations: one line `error: ...` on stderr and a non-zero exit.

mod common;
use fewlabels::model::file::TensorFile;
use fewlabels::model::{Config, Model};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fewlabels"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fewlabels-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(args: &[&str]) -> Output {
    let o = bin().args(args).output().unwrap();
    assert!(
        o.status.success(),
        "fewlabels {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// 12 grey 16x16 PNGs (a bright square whose place depends on the class, plus noise) and a
/// CSV labelling the even-numbered ones.
fn image_folder(dir: &Path) -> (PathBuf, PathBuf) {
    let imgs = dir.join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    let mut csv = String::from("filename,label\n");
    for i in 0..12u32 {
        let class = i % 3;
        let img = image::GrayImage::from_fn(16, 16, |x, y| {
            let inside = x / 6 == class && y < 8;
            let noise = (x * 31 + y * 17 + i * 7) % 40;
            image::Luma([if inside {
                200 + noise as u8
            } else {
                noise as u8
            }])
        });
        let name = format!("im{i:02}.png");
        img.save(imgs.join(&name)).unwrap();
        if i % 2 == 0 {
            csv.push_str(&format!("{name},{class}\n"));
        }
    }
    let labels = dir.join("labels.csv");
    std::fs::write(&labels, csv).unwrap();
    (imgs, labels)
}

fn log_rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("step,d_loss,d_hinge"));
    lines
        .map(|l| l.split(',').map(String::from).collect())
        .collect()
}

fn decode(path: &Path) -> image::DynamicImage {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[1..4], b"PNG", "{}", path.display());
    image::load_from_memory(&bytes).unwrap()
}

#[test]
fn train_resume_sample_classify() {
    let dir = tmp("train");
    let (imgs, labels) = image_folder(&dir);
    let train = |out: &Path, steps: &str, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--data",
            s(&imgs),
            "--labels-csv",
            s(&labels),
            "--eval-data",
            s(&imgs),
            "--eval-labels-csv",
            s(&labels),
            "--preset",
            "tiny",
            "--batch",
            "4",
            "--d-steps",
            "1",
            "--lr-g",
            "0.001",
            "--lr-d",
            "0.002",
            "--seed",
            "5",
            "--checkpoint-every",
            "2",
            "--sample-every",
            "2",
            "--eval-every",
            "2",
            "--steps",
            steps,
            "--out",
            s(out),
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let a = dir.join("a");
    let o = train(&a, "3", &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("6 labelled"), "{text}");
    for f in ["samples_2.png", "samples_3.png", "loss.png"] {
        decode(&a.join(f));
    }
    // 3 classes x 8 samples of 16x16 with 2-pixel gaps.
    let grid = decode(&a.join("samples_3.png"));
    assert_eq!(
        (grid.width(), grid.height()),
        (8 * 16 + 7 * 2, 3 * 16 + 2 * 2)
    );
    Model::load(common::ctx(), &a.join("model.safetensors")).unwrap();
    let rows = log_rows(&a.join("log.csv"));
    assert_eq!(rows.len(), 3);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0], (i + 1).to_string());
        assert_eq!(r.len(), 13);
        assert!(r[1..8]
            .iter()
            .all(|v| v.parse::<f32>().unwrap().is_finite()));
        // Held-out accuracy at steps 2 and 3 (the end) only.
        assert_eq!(r[10].is_empty(), i == 0, "eval_acc of step {}", i + 1);
    }

    // Resume to step 5, against a straight 5-step run. (Arguments that repeat the run's
    // settings are accepted on resume.)
    let resumed = run(&[
        "train",
        "--resume",
        "--steps",
        "5",
        "--batch",
        "4",
        "--checkpoint-every",
        "2",
        "--sample-every",
        "2",
        "--eval-every",
        "2",
        "--out",
        s(&a),
    ]);
    assert!(String::from_utf8_lossy(&resumed.stdout).contains("resuming at step 3"));
    let b = dir.join("b");
    train(&b, "5", &[]);
    let (ra, rb) = (log_rows(&a.join("log.csv")), log_rows(&b.join("log.csv")));
    assert_eq!(ra.len(), 5);
    for (x, y) in ra.iter().zip(&rb) {
        // Every figure but the timings and the held-out accuracy (run A also measured it at
        // its end, step 3).
        assert_eq!(x[..10], y[..10], "log rows differ");
        if x[0] != "3" {
            assert_eq!(x[10], y[10], "held-out accuracy differs");
        }
    }
    assert!(!rb[3][10].is_empty() && !rb[4][10].is_empty());
    let ca = TensorFile::load(&a.join("checkpoint.safetensors")).unwrap();
    let cb = TensorFile::load(&b.join("checkpoint.safetensors")).unwrap();
    assert_eq!(ca.metadata, cb.metadata);
    // A run resumed to the step it is at exports its model again: the same file.
    let model_a = std::fs::read(a.join("model.safetensors")).unwrap();
    std::fs::remove_file(a.join("model.safetensors")).unwrap();
    let again = run(&["train", "--resume", "--steps", "5", "--out", s(&a)]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("the run is at step 5; wrote"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert!(std::fs::read(a.join("model.safetensors")).unwrap() == model_a);
    let past = run(&["train", "--resume", "--steps", "4", "--out", s(&a)]);
    assert!(String::from_utf8_lossy(&past.stdout).contains("nothing to do for --steps 4"));
    assert_eq!(
        ca.tensors.keys().collect::<Vec<_>>(),
        cb.tensors.keys().collect::<Vec<_>>()
    );
    for (k, t) in &ca.tensors {
        let u = &cb.tensors[k];
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert!(
            t.shape == u.shape && bits(&t.data) == bits(&u.data),
            "{k} differs"
        );
    }
    assert_eq!(ca.metadata["train.g_steps"], "5");
    // Training moved the weights: the step-5 checkpoint differs from a fresh model.
    let fresh = Model::init(common::ctx(), &Config::preset("tiny").unwrap(), 5)
        .unwrap()
        .to_file(common::ctx())
        .unwrap();
    assert_ne!(
        ca.tensors["D.linear.weight"].data,
        fresh.tensors["D.linear.weight"].data
    );

    // Classify the folder: one line per image, then the accuracy over the labelled six.
    let model = b.join("model.safetensors");
    let o = run(&[
        "classify",
        "--model",
        s(&model),
        s(&imgs),
        "--labels-csv",
        s(&labels),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    let per_image: Vec<&str> = text.lines().filter(|l| l.starts_with("im")).collect();
    assert_eq!(per_image.len(), 12, "{text}");
    for l in &per_image {
        let f: Vec<&str> = l.split('\t').collect();
        assert!(
            f[1].parse::<i32>().is_ok_and(|c| (0..3).contains(&c)),
            "{l}"
        );
        assert!(f[2]
            .parse::<f32>()
            .is_ok_and(|p| (1.0 / 3.0 - 1e-3..=1.0).contains(&p)));
    }
    assert!(text.contains("of 6 labelled images"), "{text}");
    assert!(text.contains("confusion matrix"), "{text}");
    // One file.
    let one = imgs.join("im01.png");
    let o = run(&["classify", "--model", s(&model), s(&one)]);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("im01.png\t"));

    // Sample a grid and a single image.
    let grid = dir.join("grid.png");
    run(&[
        "sample",
        "--model",
        s(&model),
        "--out",
        s(&grid),
        "--per-class",
        "4",
    ]);
    let g = decode(&grid);
    assert_eq!((g.width(), g.height()), (4 * 16 + 3 * 2, 3 * 16 + 2 * 2));
    let single = dir.join("one.png");
    run(&[
        "sample",
        "--model",
        s(&model),
        "--out",
        s(&single),
        "--class",
        "2",
        "--single",
    ]);
    let g = decode(&single);
    assert_eq!((g.width(), g.height()), (16, 16));

    let o = run(&["info", "--model", s(&a.join("checkpoint.safetensors"))]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("\"resolution\":16") && text.contains("training checkpoint after 5 steps"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs a bad invocation: a non-zero exit and exactly one line on stderr, `error: ...`
/// containing `needle`.
fn fails(args: &[&str], needle: &str) -> i32 {
    let o = bin().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!o.status.success(), "{args:?} succeeded");
    assert_eq!(lines.len(), 1, "{args:?}: {err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "{args:?}: {err}"
    );
    o.status.code().unwrap()
}

#[test]
fn sample_without_a_model_uses_the_embedded_default_model() {
    let dir = tmp("default");
    let out = dir.join("grid.png");
    let o = bin()
        .args(["sample", "--per-class", "3", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text.contains("embedded default model") && text.contains("10 classes x 3 samples"),
        "{text}"
    );
    assert!(std::fs::metadata(&out).unwrap().len() > 100);
}

/// `FEWLABELS_LOG` prints the library's log records on stderr at the level it names (the
/// adapter at `info`, nothing at `warn`), and a value that is no level gets a warning.
#[test]
fn fewlabels_log_prints_the_library_log() {
    let stderr = |level: &str| {
        let o = bin()
            .env("FEWLABELS_LOG", level)
            .arg("info")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let info = stderr("info");
    assert!(info.contains("info: fewlabels: using adapter"), "{info}");
    let warn = stderr("warn");
    assert!(!warn.contains("using adapter"), "{warn}");
    let bad = stderr("loud");
    assert!(
        bad.contains("FEWLABELS_LOG=\"loud\" is not a level"),
        "{bad}"
    );
}

#[test]
fn bad_invocations_fail_with_one_line() {
    let dir = tmp("bad");
    assert_eq!(
        fails(&["sample", "--model", "/no/such/file"], "/no/such/file"),
        1
    );
    assert_eq!(fails(&["sample", "--per-class", "0"], "--per-class"), 2);
    assert_eq!(fails(&["sample", "--single"], "--class"), 2);
    // Without a model file: the embedded default model (10 classes).
    assert_eq!(
        fails(&["sample", "--class", "10"], "--class 10 is not a class"),
        1
    );
    assert_eq!(fails(&["classify", "/no/such.png"], "/no/such.png"), 1);
    assert_eq!(fails(&["frobnicate"], "frobnicate"), 2);
    assert_eq!(fails(&[], "no command"), 2);
    assert_eq!(fails(&["train", "--steps", "ten"], "--steps"), 2);
    let out = dir.join("run");
    let o = s(&out);
    fails(&["train", "--out", o], "--data is required");
    fails(
        &[
            "train",
            "--data",
            "fashion-mnist",
            "--variant",
            "s4gan",
            "--out",
            o,
        ],
        "s3gan-co",
    );
    fails(
        &[
            "train",
            "--data",
            "/no/such/dir",
            "--preset",
            "tiny",
            "--out",
            o,
        ],
        "/no/such/dir",
    );
    fails(
        &[
            "train",
            "--data",
            "fashion-mnist",
            "--preset",
            "huge",
            "--out",
            o,
        ],
        "no preset",
    );
    fails(&["train", "--resume", "--out", o], "checkpoint.safetensors");
    fails(
        &[
            "train",
            "--data",
            "fashion-mnist",
            "--preset",
            "tiny",
            "--init",
            "m",
            "--out",
            o,
        ],
        "--init",
    );
    // Images of the wrong size for the model.
    let (imgs, labels) = image_folder(&dir);
    let (i, l) = (s(&imgs), s(&labels));
    fails(
        &[
            "train",
            "--data",
            i,
            "--labels-csv",
            l,
            "--preset",
            "fashion",
            "--out",
            o,
        ],
        "16x16",
    );
    fails(
        &[
            "train",
            "--data",
            i,
            "--labels-csv",
            l,
            "--labels",
            "200%",
            "--preset",
            "tiny",
            "--out",
            o,
        ],
        "more than 100%",
    );
    fails(
        &["eval", "--real-train", "model.safetensors"],
        "cannot be used with",
    );
    if Path::new(fewlabels::data::FASHION_MNIST_DIR).exists() {
        fails(
            &["eval", "--real-train", "--per-class", "7000"],
            "fewer than --per-class 7000",
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// S3GAN with pre-trained labels: the labeller runs first and labels the 6 unlabelled images,
/// the labels travel in the checkpoint, and a resumed run continues without a second labeller,
/// bit for bit like a straight run.
#[test]
fn s3gan_labels_first_and_resumes_on_the_same_labels() {
    let dir = tmp("s3gan");
    let (imgs, labels) = image_folder(&dir);
    let train = |out: &Path, steps: &str| {
        run(&[
            "train",
            "--variant",
            "s3gan",
            "--labeller-steps",
            "3",
            "--data",
            s(&imgs),
            "--labels-csv",
            s(&labels),
            "--preset",
            "tiny",
            "--batch",
            "4",
            "--d-steps",
            "1",
            "--seed",
            "3",
            "--checkpoint-every",
            "1",
            "--sample-every",
            "0",
            "--eval-every",
            "0",
            "--steps",
            steps,
            "--out",
            s(out),
        ])
    };
    let a = dir.join("a");
    let text = String::from_utf8_lossy(&train(&a, "1").stdout).to_string();
    assert!(
        text.contains("labeller: 3 steps of 4 images; then it labels 6 unlabelled images"),
        "{text}"
    );
    let ckpt = TensorFile::load(&a.join("checkpoint.safetensors")).unwrap();
    let saved = ckpt
        .metadata
        .get("train.extra.data.pre_trained_labels")
        .expect("the checkpoint keeps the pre-trained labels");
    let labels: Vec<i32> = saved.split(',').map(|v| v.parse().unwrap()).collect();
    assert_eq!(labels.len(), 12, "{saved}");
    assert!(labels.iter().all(|&c| (0..3).contains(&c)), "{saved}");
    // The labelled (even) images keep their CSV labels.
    for i in (0..12).step_by(2) {
        assert_eq!(labels[i], (i % 3) as i32, "{saved}");
    }
    let o = run(&["train", "--resume", "--steps", "2", "--out", s(&a)]);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains("resuming at step 1"), "{text}");
    assert!(
        !text.contains("labeller:"),
        "a resumed run labels nothing again: {text}"
    );
    let b = dir.join("b");
    let text = String::from_utf8_lossy(&train(&b, "2").stdout).to_string();
    assert!(
        text.contains("class head: fitted on D's features of the 6 labelled images, D frozen"),
        "{text}"
    );
    let (fa, fb) = (
        TensorFile::load(&a.join("checkpoint.safetensors")).unwrap(),
        TensorFile::load(&b.join("checkpoint.safetensors")).unwrap(),
    );
    for (name, t) in &fa.tensors {
        assert_eq!(
            t.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            fb.tensors[name]
                .data
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>(),
            "{name}"
        );
    }
    // The exported model's D is the checkpoint's but for the class head, fitted on the six
    // true labels (the GAN trains none).
    let model = TensorFile::load(&b.join("model.safetensors")).unwrap();
    let mut fitted = Vec::new();
    for (name, t) in model.tensors.iter().filter(|(n, _)| n.starts_with("D.")) {
        if fb.tensors[name].data != t.data {
            fitted.push(name.as_str());
        }
    }
    assert_eq!(
        fitted,
        ["D.classifier.bias", "D.classifier.u", "D.classifier.weight"]
    );
}
