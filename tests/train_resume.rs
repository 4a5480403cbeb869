//! Training checkpoints (runtime/train/checkpoint.rs):
//! - exact resume: k iterations, save, m more, against a fresh trainer loaded from the
//!   checkpoint running the same m: every tensor (G, D, G_ema, Adam m and v), step count,
//!   counter and caller value is bit-identical; and the same run from scratch twice is
//!   bit-identical (determinism, and a save does not disturb the run);
//! - a checkpoint becomes a model through the documented paths, and a model file is not taken
//!   for a checkpoint;
//! - crash safety: a child process (this test binary re-invoked) saves two large checkpoints
//!   alternately to one path and is killed with SIGKILL at random moments (every other time
//!   while a save is writing its temporary file); the path always holds one of them whole,
//!   and loads;
//! - a truncated or altered copy is refused with a clear message;
//! - `Trainer::prepare_step` (a D and a G step recorded and never submitted, to compile
//!   their kernels ahead on CPU adapters) leaves no trace: a run that prepared another batch
//!   size first ends bit-identical to one that did not.
//!
//! An iteration is `d_steps` D steps (each on the next real batch and the next fakes) and one
//! G step. Real batches come from a fixed seed by position; the position is the caller's
//! `data.pos`, carried in [`Trainer::extra`] as a data loader would carry its own.

mod common;
use common::ctx;
use fewlabels::model::file::TensorFile;
use fewlabels::model::{Config, Model};
use fewlabels::rng::{self, Stream};
use fewlabels::train::{load_model_from_checkpoint, TrainConfig, Trainer, Variant};
use fewlabels::{Context, Tensor};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BATCH: usize = 4;
const DATA_SEED: u64 = 99;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fewlabels-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Real batch number `pos`: images in [-1, 1], labels with every other row unlabelled (-1).
fn real_batch(ctx: &Context, cfg: &Config, pos: u64) -> (Tensor, Vec<i32>) {
    let per = cfg.resolution * cfg.resolution * cfg.channels;
    let base = pos * (BATCH * per) as u64;
    let x: Vec<f32> = (0..(BATCH * per) as u64)
        .map(|i| (rng::unit(rng::bits(DATA_SEED, Stream::Data, base + i, 0)[0]) * 2.0 - 1.0) as f32)
        .collect();
    let y: Vec<i32> = (0..BATCH as u64)
        .map(|i| match i % 2 {
            0 => rng::below(DATA_SEED, Stream::Labels, pos * BATCH as u64 + i, 3) as i32,
            _ => -1,
        })
        .collect();
    let shape = [BATCH, cfg.resolution, cfg.resolution, cfg.channels];
    (Tensor::from_f32(ctx, &shape, &x).unwrap(), y)
}

fn iterate(ctx: &Context, tr: &mut Trainer, iters: usize) {
    let cfg = tr.model.cfg.clone();
    for _ in 0..iters {
        for _ in 0..tr.cfg.d_steps {
            let pos: u64 = tr.extra.get("data.pos").map_or(0, |s| s.parse().unwrap());
            let (x, y) = real_batch(ctx, &cfg, pos);
            tr.extra.insert("data.pos".into(), (pos + 1).to_string());
            let (z, yf) = tr.fake_batch(ctx, BATCH).unwrap();
            let r = tr.d_step(ctx, &x, &y, &z, &yf).unwrap();
            assert!(r.total.is_finite(), "D loss {r:?}");
        }
        let (z, yf) = tr.fake_batch(ctx, BATCH).unwrap();
        let r = tr.g_step(ctx, &z, &yf).unwrap();
        assert!(r.total.is_finite(), "G loss {r:?}");
    }
}

fn tiny_trainer(ctx: &Context) -> Trainer {
    let cfg = Config::preset("tiny").unwrap();
    let mut tc = TrainConfig::new(Variant::S3ganCo);
    tc.d_steps = 2;
    tc.ema_start = 2;
    tc.ema_decay = 0.9;
    tc.seed = 11;
    // Larger steps than the default so that a few iterations visibly move every network.
    tc.lr_g = 1e-3;
    tc.lr_d = 2e-3;
    let model = Model::init(ctx, &cfg, 3).unwrap();
    let mut tr = Trainer::new(ctx, model, tc).unwrap();
    tr.extra.insert("data.epoch".into(), "0".into());
    tr
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Same metadata, same tensor names and shapes, same bits.
fn assert_same(a: &TensorFile, b: &TensorFile, what: &str) {
    assert_eq!(a.metadata, b.metadata, "{what}: metadata");
    let (ka, kb): (Vec<_>, Vec<_>) = (a.tensors.keys().collect(), b.tensors.keys().collect());
    assert_eq!(ka, kb, "{what}: tensor names");
    let mut bad = Vec::new();
    for (k, t) in &a.tensors {
        let u = &b.tensors[k];
        if t.shape != u.shape || bits(&t.data) != bits(&u.data) {
            bad.push(k.clone());
        }
    }
    assert!(bad.is_empty(), "{what}: tensors differ: {bad:?}");
}

fn same_bits(a: &TensorFile, b: &TensorFile) -> bool {
    a.metadata == b.metadata
        && a.tensors.len() == b.tensors.len()
        && a.tensors.iter().all(|(k, t)| {
            b.tensors
                .get(k)
                .is_some_and(|u| t.shape == u.shape && bits(&t.data) == bits(&u.data))
        })
}

fn g_equals_ema(f: &TensorFile) -> bool {
    let g: Vec<_> = f
        .tensors
        .iter()
        .filter(|(k, _)| k.starts_with("G."))
        .collect();
    g.iter()
        .all(|(k, t)| bits(&t.data) == bits(&f.tensors[&format!("G_ema.{}", &k[2..])].data))
}

#[test]
fn resume_is_bit_exact_and_runs_are_deterministic() {
    let ctx = ctx();
    let (k, m) = (2, 2);
    let path = tmp("resume.safetensors");

    // Run A: k iterations, save, m more.
    let mut a = tiny_trainer(ctx);
    let start = a.to_checkpoint_file(ctx).unwrap();
    iterate(ctx, &mut a, k);
    a.save_checkpoint(ctx, &path).unwrap();
    let at_k = a.to_checkpoint_file(ctx).unwrap();
    iterate(ctx, &mut a, m);
    let end_a = a.to_checkpoint_file(ctx).unwrap();

    // Run B: a fresh trainer from the checkpoint, m iterations.
    let mut b = Trainer::load_checkpoint(ctx, &path).unwrap();
    assert_same(
        &b.to_checkpoint_file(ctx).unwrap(),
        &at_k,
        "reloaded checkpoint",
    );
    assert_eq!(b.d_steps_done(), 2 * k as u64);
    assert_eq!(b.g_steps_done(), k as u64);
    assert_eq!(b.extra["data.pos"], (2 * k).to_string());
    assert_eq!(b.extra["data.epoch"], "0");
    assert_eq!(b.cfg, a.cfg);
    iterate(ctx, &mut b, m);
    let end_b = b.to_checkpoint_file(ctx).unwrap();
    assert_same(&end_b, &end_a, "resumed run vs. uninterrupted run");

    // Run C: from scratch, no save; after its first G step G_ema is a copy of G (t <
    // ema_start), later it averages.
    let mut c = tiny_trainer(ctx);
    iterate(ctx, &mut c, 1);
    assert!(
        g_equals_ema(&c.to_checkpoint_file(ctx).unwrap()),
        "G_ema copies G at t = 1"
    );
    iterate(ctx, &mut c, k + m - 1);
    assert_same(
        &c.to_checkpoint_file(ctx).unwrap(),
        &end_a,
        "two runs from scratch",
    );

    // The comparison is not vacuous: training moved G, D, G_ema and the Adam state, and
    // G_ema averages by the end.
    assert!(!g_equals_ema(&end_a), "G_ema averages from t = 2");
    for prefix in ["G.", "D.", "G_ema.", "adam.m.", "adam.v."] {
        let moved = at_k
            .tensors
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .filter(|(n, t)| bits(&t.data) != bits(&end_a.tensors[*n].data))
            .count();
        assert!(
            moved > 0,
            "no {prefix} tensor changed between step k and k + m"
        );
        let moved0 = start
            .tensors
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .filter(|(n, t)| bits(&t.data) != bits(&at_k.tensors[*n].data))
            .count();
        assert!(
            moved0 > 0,
            "no {prefix} tensor changed in the first k steps"
        );
    }
    let (_, _, steps) = b.adam_state("G.linear.weight").expect("trained");
    assert_eq!(steps, (k + m) as u32);
    let (_, _, steps) = b.adam_state("D.linear.weight").expect("trained");
    assert_eq!(steps, 2 * (k + m) as u32);
    let n_adam = end_a
        .tensors
        .keys()
        .filter(|k| k.starts_with("adam."))
        .count();
    eprintln!(
        "{} tensors bit-identical ({n_adam} Adam moments) after {k} + {m} iterations",
        end_a.tensors.len()
    );
}

#[test]
fn prepare_step_leaves_no_trace() {
    let ctx = ctx();
    let mut a = tiny_trainer(ctx);
    let before = a.to_checkpoint_file(ctx).unwrap();
    a.prepare_step(ctx, BATCH + 2).unwrap();
    a.prepare_step(ctx, BATCH).unwrap();
    assert_eq!((a.d_steps_done(), a.g_steps_done()), (0, 0));
    assert_same(
        &a.to_checkpoint_file(ctx).unwrap(),
        &before,
        "after prepare_step",
    );
    iterate(ctx, &mut a, 2);
    let mut b = tiny_trainer(ctx);
    iterate(ctx, &mut b, 2);
    assert_same(
        &a.to_checkpoint_file(ctx).unwrap(),
        &b.to_checkpoint_file(ctx).unwrap(),
        "prepared run vs. plain run",
    );
}

#[test]
fn checkpoint_to_model_and_back() {
    let ctx = ctx();
    let mut tr = tiny_trainer(ctx);
    iterate(ctx, &mut tr, 1);
    let path = tmp("as_model.safetensors");
    tr.save_checkpoint(ctx, &path).unwrap();

    // Model::load reads a checkpoint as a model (the optimiser state is ignored), and so
    // does the checkpoint module's loader.
    let want = tr.model.to_file(ctx).unwrap();
    let direct = Model::load(ctx, &path).unwrap();
    assert_same(
        &direct.to_file(ctx).unwrap(),
        &want,
        "checkpoint read by Model::load",
    );
    let model = load_model_from_checkpoint(ctx, &path).unwrap();
    assert_same(&model.to_file(ctx).unwrap(), &want, "model from checkpoint");

    // export_model writes a plain model file.
    let mpath = tmp("exported.safetensors");
    tr.export_model(ctx, &mpath).unwrap();
    let exported = Model::load(ctx, &mpath).unwrap();
    assert_same(&exported.to_file(ctx).unwrap(), &want, "exported model");
    assert!(exported.metadata.keys().all(|k| !k.starts_with("train.")));

    // A model file is not a checkpoint.
    let e = Trainer::load_checkpoint(ctx, &mpath)
        .err()
        .expect("a model file is not a checkpoint");
    assert!(e.to_string().contains("not a training checkpoint"), "{e}");
}

#[test]
fn truncated_or_altered_checkpoints_are_refused() {
    let ctx = ctx();
    let tr = tiny_trainer(ctx);
    let path = tmp("whole.safetensors");
    tr.save_checkpoint(ctx, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let cut_path = tmp("cut.safetensors");
    for cut in [
        0,
        5,
        8,
        header - 1,
        header,
        header + 100,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        std::fs::write(&cut_path, &bytes[..cut]).unwrap();
        let e = Trainer::load_checkpoint(ctx, &cut_path)
            .err()
            .unwrap_or_else(|| panic!("a copy cut at {cut} of {} loaded", bytes.len()));
        let msg = e.to_string();
        assert!(
            msg.contains("truncated") && msg.contains("cut.safetensors"),
            "cut at {cut}: {msg}"
        );
        if cut == bytes.len() / 2 {
            eprintln!("cut at {cut}: {msg}");
        }
    }
    let mut bad = bytes.clone();
    let i = bad.len() - 3;
    bad[i] ^= 0x10;
    std::fs::write(&cut_path, &bad).unwrap();
    let e = Trainer::load_checkpoint(ctx, &cut_path)
        .err()
        .expect("altered copy");
    assert!(e.to_string().contains("checksum"), "{e}");
}

const CHILD_ENV: &str = "FL_CKPT_CRASH_CHILD";
const READY: &str = "FL_CKPT_CHILD_READY";

fn large_trainer(ctx: &Context, seed: u64, which: &str) -> Trainer {
    let cfg = Config::preset("fashion").unwrap();
    let model = Model::init(ctx, &cfg, seed).unwrap();
    let mut tr = Trainer::new(ctx, model, TrainConfig::new(Variant::S3ganCo)).unwrap();
    tr.extra.insert("which".into(), which.into());
    tr
}

/// The child side of the crash test: does nothing unless [`CHILD_ENV`] names a folder
/// holding `a.ckpt` and `b.ckpt`; then saves them alternately to `target.ckpt` forever.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let ctx = ctx();
    let a = Trainer::load_checkpoint(ctx, &dir.join("a.ckpt")).unwrap();
    let b = Trainer::load_checkpoint(ctx, &dir.join("b.ckpt")).unwrap();
    let t = Instant::now();
    b.save_checkpoint(ctx, &dir.join("scratch.ckpt")).unwrap();
    println!("{READY} {}", t.elapsed().as_millis());
    let target = dir.join("target.ckpt");
    loop {
        b.save_checkpoint(ctx, &target).unwrap();
        a.save_checkpoint(ctx, &target).unwrap();
    }
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".tmp-"))
        .collect()
}

#[test]
fn interrupted_saves_leave_a_whole_checkpoint() {
    let ctx = ctx();
    let dir = tmp("crash");
    std::fs::create_dir_all(&dir).unwrap();
    let a = large_trainer(ctx, 1, "A");
    let b = large_trainer(ctx, 2, "B");
    a.save_checkpoint(ctx, &dir.join("a.ckpt")).unwrap();
    b.save_checkpoint(ctx, &dir.join("b.ckpt")).unwrap();
    let target = dir.join("target.ckpt");
    a.save_checkpoint(ctx, &target).unwrap();
    let fa = a.to_checkpoint_file(ctx).unwrap();
    let fb = b.to_checkpoint_file(ctx).unwrap();
    let size = std::fs::metadata(&target).unwrap().len();

    let seed = common::seed_from_env("FL_CRASH_SEED");
    let rounds: u64 = std::env::var("FL_CRASH_ROUNDS").map_or(10, |s| s.parse().unwrap());
    eprintln!("crash test: {size} bytes per checkpoint, {rounds} rounds, FL_CRASH_SEED={seed}");
    let (mut seen_a, mut seen_b, mut partial) = (0, 0, 0);
    for round in 0..rounds {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // The harness prints "test crash_child ... " before the child's line; read on a
        // thread so that a child that never gets ready fails the test instead of hanging it.
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find(READY) {
                    let _ = tx.send(line[i + READY.len()..].trim().parse::<u64>().unwrap());
                }
            }
        });
        let save_ms = match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(ms) => ms,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("round {round}: the child did not get ready: {e}");
            }
        };
        // A moment within the next few saves.
        let span = 2 * save_ms.max(1) + 1;
        let wait = rng::bits(seed, Stream::Data, round, 0)[0] as u64 % span;
        std::thread::sleep(Duration::from_millis(wait));
        // Every other round waits on until a save is writing its temporary file (then up to
        // 3 ms more), so that some kills surely land mid-write.
        if round % 2 == 1 {
            let t = Instant::now();
            while temp_files(&dir).is_empty() && t.elapsed() < Duration::from_secs(60) {
                std::thread::yield_now();
            }
            std::thread::sleep(Duration::from_micros(wait * 1000 % 3000));
        }
        child.kill().unwrap();
        child.wait().unwrap();

        let got = TensorFile::load(&target)
            .unwrap_or_else(|e| panic!("round {round} (killed after {wait} ms): {e}"));
        let which = if same_bits(&got, &fa) {
            seen_a += 1;
            "A"
        } else if same_bits(&got, &fb) {
            seen_b += 1;
            "B"
        } else {
            panic!("round {round}: the checkpoint is neither A nor B")
        };
        let tr = Trainer::load_checkpoint(ctx, &target).unwrap();
        assert_eq!(tr.extra["which"], which);
        // Temporary files a killed save left: never the checkpoint's path; read on their own
        // they are refused unless the kill came after their last byte.
        for t in temp_files(&dir) {
            match TensorFile::load(&t) {
                Err(e) => {
                    partial += 1;
                    eprintln!("round {round}: the kill left a partial temporary file: {e}");
                }
                Ok(f) => assert!(same_bits(&f, &fa) || same_bits(&f, &fb)),
            }
        }
    }
    eprintln!(
        "{rounds} kills: path held A {seen_a} times, B {seen_b}; {partial} partial temp files"
    );
    // The next save removes what killed saves left.
    let left = temp_files(&dir).len();
    b.save_checkpoint(ctx, &target).unwrap();
    assert!(
        temp_files(&dir).is_empty(),
        "temporary files remain after a save"
    );
    assert!(same_bits(&TensorFile::load(&target).unwrap(), &fb));
    eprintln!("a save removed {left} leftover temporary files");
    std::fs::remove_dir_all(&dir).unwrap();
}
