//! Crash safety of training with checkpoints (docs/RELIABILITY.md, "Crash safety").
//!
//! A child process (this test binary re-invoked in its helper mode, [`crash_child`]) trains
//! the tiny preset and saves a checkpoint after every iteration, resuming from that checkpoint
//! when it starts. The parent kills it with SIGKILL at random moments, `FL_CRASH_TRIALS` times
//! (default 3 in the test suite; more with the variable; `FL_CRASH_SEED` replays a run), and after every kill checks that:
//! - the checkpoint path holds a whole checkpoint that loads (length and CRC checked) and
//!   resumes, at the last iteration the child reported saved or the one after (a kill between
//!   the rename and the report);
//! - every temporary file a killed save left (`.<name>.tmp-<pid>-<n>`, never the checkpoint's
//!   own path) is refused when read, unless the kill came after its last byte, in which case
//!   it is a whole checkpoint; the next save removes it.
//!
//! At the end the run, killed and resumed many times, is bit-identical to the same number of
//! iterations run without interruption in this process.

mod common;
use common::ctx;
use fewlabels::model::file::TensorFile;
use fewlabels::model::{Config, Model};
use fewlabels::rng::{self, Stream};
use fewlabels::train::{check_checkpoint_file, TrainConfig, Trainer, Variant};
use fewlabels::{Context, Tensor};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "FL_TRAIN_CRASH_DIR";
const BATCH: usize = 4;
const CKPT: &str = "run.ckpt";
/// The child stops after this many iterations (the trials kill it long before).
const MAX_ITERS: u64 = 1000;

fn tiny_trainer(ctx: &Context) -> Trainer {
    let cfg = Config::preset("tiny").unwrap();
    let mut tc = TrainConfig::new(Variant::S3ganCo);
    tc.d_steps = 1;
    tc.ema_start = 2;
    tc.ema_decay = 0.9;
    tc.seed = 21;
    tc.lr_g = 1e-3;
    tc.lr_d = 2e-3;
    Trainer::new(ctx, Model::init(ctx, &cfg, 8).unwrap(), tc).unwrap()
}

/// Real batch number `pos` (a function of the position alone, so a resumed run sees the
/// same data): images in [-1, 1], every other row unlabelled.
fn real_batch(ctx: &Context, cfg: &Config, pos: u64) -> (Tensor, Vec<i32>) {
    let per = cfg.resolution * cfg.resolution * cfg.channels;
    let x: Vec<f32> = (0..(BATCH * per) as u64)
        .map(|i| {
            let b = rng::bits(7, Stream::Data, pos * (BATCH * per) as u64 + i, 0)[0];
            (rng::unit(b) * 2.0 - 1.0) as f32
        })
        .collect();
    let y: Vec<i32> = (0..BATCH as i32)
        .map(|i| if i % 2 == 0 { (pos as i32 + i) % 3 } else { -1 })
        .collect();
    let shape = [BATCH, cfg.resolution, cfg.resolution, cfg.channels];
    (Tensor::from_f32(ctx, &shape, &x).unwrap(), y)
}

/// One iteration: `d_steps` D steps on the next real batches, one G step.
fn iterate(ctx: &Context, tr: &mut Trainer) {
    let cfg = tr.model.cfg.clone();
    for _ in 0..tr.cfg.d_steps {
        let (x, y) = real_batch(ctx, &cfg, tr.d_steps_done());
        let (z, yf) = tr.fake_batch(ctx, BATCH).unwrap();
        let r = tr.d_step(ctx, &x, &y, &z, &yf).unwrap();
        assert!(!r.rejected, "{r:?}");
    }
    let (z, yf) = tr.fake_batch(ctx, BATCH).unwrap();
    assert!(!tr.g_step(ctx, &z, &yf).unwrap().rejected);
}

/// The helper mode: does nothing unless [`CHILD_ENV`] names a folder. Resumes from the
/// checkpoint there (or starts afresh), then iterates and saves, reporting each save.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let ctx = ctx();
    let path = PathBuf::from(dir).join(CKPT);
    let mut tr = match path.exists() {
        true => Trainer::load_checkpoint(ctx, &path).unwrap(),
        false => tiny_trainer(ctx),
    };
    let mut out = std::io::stdout();
    writeln!(out, "\nREADY {}", tr.g_steps_done()).unwrap();
    out.flush().unwrap();
    while tr.g_steps_done() < MAX_ITERS {
        let t = Instant::now();
        iterate(ctx, &mut tr);
        tr.save_checkpoint(ctx, &path).unwrap();
        let ms = t.elapsed().as_millis();
        writeln!(out, "\nSAVED {} {ms}", tr.g_steps_done()).unwrap();
        out.flush().unwrap();
    }
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".tmp-"))
        .collect();
    v.sort();
    v
}

enum Event {
    Ready(u64),
    Saved(u64, u64),
}

#[test]
fn killed_training_always_resumes_from_a_whole_checkpoint() {
    let ctx = ctx();
    let dir = std::env::temp_dir().join(format!("fewlabels-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(CKPT);
    let seed = common::seed_from_env("FL_CRASH_SEED");
    let trials: u64 = std::env::var("FL_CRASH_TRIALS").map_or(3, |s| s.parse().unwrap());
    eprintln!("crash safety: {trials} trials, FL_CRASH_SEED={seed}");
    let started = Instant::now();
    let (mut saved, mut iter_ms, mut first_ms) = (0u64, 100u64, 0u64);
    let (mut partial, mut whole_temp, mut ahead, mut before_first) = (0, 0, 0, 0);
    for trial in 0..trials {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let w: Vec<&str> = line.split_whitespace().collect();
                let ev = match w.as_slice() {
                    ["READY", g] => Event::Ready(g.parse().unwrap()),
                    ["SAVED", g, ms] => Event::Saved(g.parse().unwrap(), ms.parse().unwrap()),
                    _ => continue,
                };
                if tx.send(ev).is_err() {
                    break;
                }
            }
        });
        let resumed_at = match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(Event::Ready(g)) => g,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("trial {trial}: the child did not get ready");
            }
        };
        assert!(
            resumed_at == saved || resumed_at == saved + 1,
            "trial {trial}: resumed at {resumed_at}, {saved} reported saved"
        );
        saved = resumed_at;
        // The child's first iteration compiles the kernels (slow); most trials let it save
        // once and then kill within the next three iterations (some mid-save), every fifth
        // kills at a moment within that first iteration.
        let early = trial % 5 == 4 && first_ms > 0;
        if !early {
            let t = Instant::now();
            loop {
                match rx.recv_timeout(Duration::from_secs(300)) {
                    Ok(Event::Saved(g, ms)) => {
                        saved = g;
                        if first_ms == 0 {
                            first_ms = t.elapsed().as_millis() as u64;
                        } else {
                            iter_ms = ms.max(1);
                        }
                        break;
                    }
                    Ok(Event::Ready(_)) => {}
                    Err(_) => panic!("trial {trial}: the child saved nothing in 300 s"),
                }
            }
        }
        let span = if early { first_ms } else { 3 * iter_ms + 1 };
        let wait = rng::bits(seed, Stream::Data, trial, 0)[0] as u64 % span;
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(wait) {
            if let Ok(Event::Saved(g, ms)) = rx.recv_timeout(Duration::from_millis(1)) {
                saved = g;
                iter_ms = ms.max(1);
            }
        }
        // Every third trial waits on until a save is writing its temporary file, so that
        // some kills surely land mid-write.
        if trial % 3 == 1 {
            let t = Instant::now();
            while temp_files(&dir).is_empty() && t.elapsed() < Duration::from_secs(120) {
                std::thread::yield_now();
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        while let Ok(ev) = rx.try_recv() {
            if let Event::Saved(g, _) = ev {
                saved = g;
            }
        }

        if !path.exists() {
            assert_eq!(saved, 0, "trial {trial}: no checkpoint after {saved} saves");
            before_first += 1;
        } else {
            let file = TensorFile::load(&path)
                .unwrap_or_else(|e| panic!("trial {trial} (killed after {wait} ms): {e}"));
            check_checkpoint_file(&file).unwrap();
            let tr = Trainer::load_checkpoint(ctx, &path).unwrap();
            let g = tr.g_steps_done();
            assert!(
                g == saved || g == saved + 1,
                "trial {trial}: the checkpoint holds {g} iterations, {saved} reported saved"
            );
            if g == saved + 1 {
                ahead += 1;
            }
            saved = g;
        }
        for t in temp_files(&dir) {
            assert_ne!(t, path);
            match TensorFile::load(&t) {
                Err(_) => partial += 1,
                Ok(f) => {
                    check_checkpoint_file(&f).unwrap();
                    whole_temp += 1;
                }
            }
        }
    }
    eprintln!(
        "{trials} kills in {:.1} s: {saved} iterations saved; {before_first} kills before any \
         checkpoint existed, {ahead} between a rename and its report, {partial} partial and \
         {whole_temp} whole temporary files left (refused / complete)",
        started.elapsed().as_secs_f64()
    );
    assert!(saved > 0, "no trial got as far as one save");
    // The run, killed and resumed, matches an uninterrupted one bit for bit.
    let mut reference = tiny_trainer(ctx);
    for _ in 0..saved {
        iterate(ctx, &mut reference);
    }
    let got = TensorFile::load(&path).unwrap();
    let want = reference.to_checkpoint_file(ctx).unwrap();
    assert_eq!(
        got.metadata, want.metadata,
        "metadata after {saved} iterations"
    );
    for (k, t) in &want.tensors {
        let u = &got.tensors[k];
        let same = t
            .data
            .iter()
            .map(|x| x.to_bits())
            .eq(u.data.iter().map(|x| x.to_bits()));
        assert!(same, "{k} differs from the uninterrupted run");
    }
    // A save removes what killed saves left.
    reference.save_checkpoint(ctx, &path).unwrap();
    assert!(temp_files(&dir).is_empty(), "{:?}", temp_files(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
}
