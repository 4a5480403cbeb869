//! Reliability of the library under bad inputs and device faults (docs/RELIABILITY.md):
//! - training faults: a D or G step whose loss or a gradient is NaN or infinite is rejected
//!   and leaves every tensor (G, D, G_ema with their u, Adam moments) and every counter
//!   bit-identical, and the next good step gives the same result as if the bad one had never
//!   been tried;
//! - device faults: allocations beyond the device's limits and a destroyed (lost) device give
//!   `Err(Error::Device/Shape/InvalidArgument)` with a message, never a panic;
//! - inputs found by fuzzing (fuzz/corpus) that once crashed a loader are refused cleanly.

mod common;
use common::ctx;
use fewlabels::model::file::TensorFile;
use fewlabels::model::{Config, Model};
use fewlabels::train::{TrainConfig, Trainer, Variant};
use fewlabels::{Context, Error, Tensor};

const N: usize = 4;

fn tiny_trainer(ctx: &Context, variant: Variant, ema_start: u64) -> Trainer {
    let cfg = Config::preset("tiny").unwrap();
    let mut tc = TrainConfig::new(variant);
    tc.ema_start = ema_start;
    tc.ema_decay = 0.9;
    tc.lr_g = 1e-3;
    tc.lr_d = 2e-3;
    let model = Model::init(ctx, &cfg, 5).unwrap();
    Trainer::new(ctx, model, tc).unwrap()
}

/// A smooth real batch in [-1, 1] with one bad value at `bad` (if any).
fn images(ctx: &Context, cfg: &Config, bad: Option<(usize, f32)>) -> Tensor {
    let (r, c) = (cfg.resolution, cfg.channels);
    let mut x: Vec<f32> = (0..N * r * r * c)
        .map(|i| ((i as f32) * 0.37).sin())
        .collect();
    if let Some((i, v)) = bad {
        x[i] = v;
    }
    Tensor::from_f32(ctx, &[N, r, r, c], &x).unwrap()
}

fn z(ctx: &Context, cfg: &Config, seed: f32, bad: Option<f32>) -> Tensor {
    let mut v: Vec<f32> = (0..N * cfg.z_dim)
        .map(|i| ((i as f32) * 0.71 + seed).cos())
        .collect();
    if let Some(b) = bad {
        v[3] = b;
    }
    Tensor::from_f32(ctx, &[N, cfg.z_dim], &v).unwrap()
}

/// Everything a checkpoint holds (all tensors incl. u and Adam state, counters, config).
fn state(ctx: &Context, tr: &Trainer) -> TensorFile {
    tr.to_checkpoint_file(ctx).unwrap()
}

fn assert_same(a: &TensorFile, b: &TensorFile, what: &str) {
    assert_eq!(a.metadata, b.metadata, "{what}: metadata (counters)");
    assert_eq!(
        a.tensors.keys().collect::<Vec<_>>(),
        b.tensors.keys().collect::<Vec<_>>(),
        "{what}: names"
    );
    let differ: Vec<&String> = a
        .tensors
        .iter()
        .filter(|(k, t)| {
            let u = &b.tensors[*k];
            t.shape != u.shape
                || t.data
                    .iter()
                    .map(|x| x.to_bits())
                    .ne(u.data.iter().map(|x| x.to_bits()))
        })
        .map(|(k, _)| k)
        .collect();
    assert!(differ.is_empty(), "{what}: tensors differ: {differ:?}");
}

const LABELS: [i32; N] = [0, -1, 2, 1];
const FAKE_LABELS: [i32; N] = [1, 0, 2, 2];

#[test]
fn non_finite_d_step_is_rejected_and_changes_nothing() {
    let ctx = ctx();
    let mut a = tiny_trainer(ctx, Variant::S3ganCo, 2);
    let mut b = tiny_trainer(ctx, Variant::S3ganCo, 2);
    let cfg = a.model.cfg.clone();
    let good = images(ctx, &cfg, None);
    let zf = z(ctx, &cfg, 0.0, None);
    // One good step first, so that Adam moments and counters are not all zero.
    for t in [&mut a, &mut b] {
        let r = t.d_step(ctx, &good, &LABELS, &zf, &FAKE_LABELS).unwrap();
        assert!(!r.rejected && r.total.is_finite(), "{r:?}");
    }
    let before = state(ctx, &a);
    assert_same(&before, &state(ctx, &b), "twins");
    for (what, bad) in [("NaN pixel", f32::NAN), ("infinite pixel", f32::INFINITY)] {
        let x = images(ctx, &cfg, Some((5, bad)));
        let r = a.d_step(ctx, &x, &LABELS, &zf, &FAKE_LABELS).unwrap();
        // (The loss itself may come out finite: relu and max drop a NaN on some devices;
        // the gradients do not.)
        assert!(r.rejected, "{what}: {r:?}");
        assert_eq!(a.d_steps_done(), 1, "{what}");
        assert_same(&before, &state(ctx, &a), what);
    }
    // The run goes on as if the bad steps had not been tried.
    let z2 = z(ctx, &cfg, 1.0, None);
    for t in [&mut a, &mut b] {
        let r = t.d_step(ctx, &good, &LABELS, &z2, &FAKE_LABELS).unwrap();
        assert!(!r.rejected, "{r:?}");
    }
    assert_eq!(a.d_steps_done(), 2);
    assert_same(&state(ctx, &a), &state(ctx, &b), "after a good step");
}

#[test]
fn non_finite_g_step_is_rejected_and_changes_nothing() {
    let ctx = ctx();
    // ema_start 3: G step 2 copies G into G_ema, step 3 averages; both paths are tried.
    let mut a = tiny_trainer(ctx, Variant::S3ganCo, 3);
    let mut b = tiny_trainer(ctx, Variant::S3ganCo, 3);
    let cfg = a.model.cfg.clone();
    for t in [&mut a, &mut b] {
        let r = t
            .g_step(ctx, &z(ctx, &cfg, 0.0, None), &FAKE_LABELS)
            .unwrap();
        assert!(!r.rejected, "{r:?}");
    }
    for step in 2..=3u64 {
        let before = state(ctx, &a);
        for bad in [f32::NAN, f32::NEG_INFINITY] {
            let r = a
                .g_step(ctx, &z(ctx, &cfg, 5.0, Some(bad)), &FAKE_LABELS)
                .unwrap();
            assert!(r.rejected, "step {step}, z {bad}: {r:?}");
            assert_eq!(a.g_steps_done(), step - 1);
            assert_same(&before, &state(ctx, &a), &format!("G step {step}, z {bad}"));
        }
        let zs = z(ctx, &cfg, step as f32, None);
        for t in [&mut a, &mut b] {
            let r = t.g_step(ctx, &zs, &FAKE_LABELS).unwrap();
            assert!(!r.rejected, "{r:?}");
        }
        assert_eq!(a.g_steps_done(), step);
        assert_same(&state(ctx, &a), &state(ctx, &b), &format!("G step {step}"));
    }
}

#[test]
fn diverging_learning_rate_is_rejected_not_applied() {
    let ctx = ctx();
    let mut tc = TrainConfig::new(Variant::S3ganCo);
    // Finite as f64, infinite as the f32 step size: refused before any work.
    tc.lr_d = 1e39;
    let e = tc.validate().unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument(_)) && e.to_string().contains("lr_d"),
        "{e}"
    );
    let mut t = tiny_trainer(ctx, Variant::S3ganCo, 2);
    let cfg = t.model.cfg.clone();
    let (x, zf) = (images(ctx, &cfg, None), z(ctx, &cfg, 0.0, None));
    let before = state(ctx, &t);
    t.cfg.lr_d = 1e39;
    let e = t.d_step(ctx, &x, &LABELS, &zf, &FAKE_LABELS).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    t.cfg.lr_d = 2e-3;
    assert_same(&before, &state(ctx, &t), "refused learning rate");
}

/// The fuzzing seed corpus (fuzz/corpus/<target>/): valid files and cleverly broken ones.
/// Run with `cargo test --test reliability write_fuzz_corpus -- --ignored`; deterministic.
#[test]
#[ignore]
fn write_fuzz_corpus() {
    use fewlabels::model::file::HostTensor;
    use std::path::PathBuf;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    // Raw safetensors: a header (JSON) and a data section, no checks of our own.
    let raw = |header: &str, data: &[u8]| {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(data);
        b
    };
    let ctx = ctx();
    let micro = Config {
        ch: 1,
        g_mult: vec![1, 1, 1],
        d_mult: vec![1, 1, 1],
        num_classes: 2,
        z_dim: 3,
        shared_dim: 1,
        g_attn: vec![],
        d_attn: vec![],
        ..Config::preset("tiny").unwrap()
    };
    let tiny = Model::init(ctx, &Config::preset("tiny").unwrap(), 1).unwrap();
    let tiny_bytes = tiny.to_file(ctx).unwrap().to_bytes().unwrap();
    put("model_file", "tiny_model", &tiny_bytes);
    let model = Model::init(ctx, &micro, 1).unwrap();
    let file = model.to_file(ctx).unwrap();
    let good = file.to_bytes().unwrap();
    put("model_file", "micro_model", &good);
    let tr = Trainer::new(ctx, model, TrainConfig::new(Variant::S3ganCo)).unwrap();
    let ckpt = tr.to_checkpoint_file(ctx).unwrap();
    put("model_file", "micro_checkpoint", &ckpt.to_bytes().unwrap());
    put("model_file", "truncated", &good[..good.len() / 2]);
    put("model_file", "truncated_header", &good[..20]);
    let mut b = good.clone();
    b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    put("model_file", "header_length_huge", &b);
    let mut b = good.clone();
    b[..8].copy_from_slice(&((good.len() as u64) - 4).to_le_bytes());
    put("model_file", "header_length_past_data", &b);
    let mut b = good.clone();
    let last = b.len() - 3;
    b[last] ^= 1;
    put("model_file", "crc_mismatch", &b);
    let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    put("model_file", "overlapping_offsets", &raw(h, &[0; 12]));
    let h = r#"{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#;
    put("model_file", "wrong_dtype", &raw(h, &[0; 4]));
    let h = r#"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}"#;
    put("model_file", "huge_shape", &raw(h, &[0; 8]));
    let h = r#"{"a":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}}"#;
    put("model_file", "zero_times_huge_shape", &raw(h, &[]));
    let h = r#"{"__metadata__":{"config":"{\"resolution\":16}","fewlabels.data_bytes":"NaN"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    put("model_file", "nan_metadata", &raw(h, &0f32.to_le_bytes()));
    let mut f = file.clone();
    f.tensors.get_mut("G.linear.bias").unwrap().data[0] = f32::NAN;
    put("model_file", "nan_weight", &f.to_bytes().unwrap());
    let mut f = file.clone();
    let t = f.tensors.remove("G.linear.bias").unwrap();
    f.tensors.insert(
        "G.linear.bias".into(),
        HostTensor::new(&[t.data.len(), 1], t.data).unwrap(),
    );
    put("model_file", "shape_mismatch", &f.to_bytes().unwrap());
    let mut f = file.clone();
    f.tensors
        .insert("G.extra".into(), HostTensor::new(&[1], vec![1.0]).unwrap());
    put("model_file", "unknown_tensor", &f.to_bytes().unwrap());
    let mut f = ckpt.clone();
    f.metadata.insert(
        "train.config".into(),
        tr.cfg.to_json().replace("0.0001", "NaN"),
    );
    put("model_file", "checkpoint_nan_lr", &f.to_bytes().unwrap());
    let mut f = ckpt.clone();
    f.metadata.insert("train.d_steps".into(), "-1".into());
    put(
        "model_file",
        "checkpoint_bad_counter",
        &f.to_bytes().unwrap(),
    );
    let mut f = ckpt.clone();
    f.tensors.retain(|k, _| !k.starts_with("adam.m.G"));
    put("model_file", "checkpoint_no_adam", &f.to_bytes().unwrap());

    // Configs.
    let tiny_json = Config::preset("tiny").unwrap().to_json();
    put("config_json", "tiny", tiny_json.as_bytes());
    put("config_json", "micro", micro.to_json().as_bytes());
    put(
        "config_json",
        "imagenet128",
        Config::preset("imagenet128").unwrap().to_json().as_bytes(),
    );
    put("config_json", "train", tr.cfg.to_json().as_bytes());
    put(
        "config_json",
        "huge_ch",
        tiny_json
            .replace("\"ch\":4", "\"ch\":4611686018427387904")
            .as_bytes(),
    );
    put(
        "config_json",
        "huge_classes",
        tiny_json
            .replace("\"num_classes\":3", "\"num_classes\":18446744073709551615")
            .as_bytes(),
    );
    put(
        "config_json",
        "huge_mult",
        tiny_json
            .replace("[4,4,2]", "[4,9223372036854775807,2]")
            .as_bytes(),
    );
    put(
        "config_json",
        "nan_lr",
        tr.cfg.to_json().replace("0.0001", "NaN").as_bytes(),
    );
    put("config_json", "not_json", b"{\"resolution\":16,");

    // IDX.
    let idx = |dims: &[u32], data: &[u8]| {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    };
    let gz = |b: &[u8]| {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    let images = idx(&[2, 3, 3], &(0..18).collect::<Vec<u8>>());
    put("idx", "images", &images);
    put("idx", "images_gz", &gz(&images));
    put("idx", "labels", &idx(&[3], &[0, 9, 4]));
    put("idx", "truncated", &images[..images.len() - 1]);
    put(
        "idx",
        "dims_overflow",
        &idx(&[u32::MAX, u32::MAX, u32::MAX], &[]),
    );
    put(
        "idx",
        "wrong_type",
        &[0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0],
    );
    let mut bomb = idx(&[1 << 31, 2], &[]);
    bomb.extend(std::iter::repeat_n(0u8, 1 << 22));
    put("idx", "gzip_bomb", &gz(&bomb));

    // Labels CSV (first byte: the number of classes).
    put(
        "labels_csv",
        "plain",
        b"\x0afilename,label\na.png,3\nb.jpg,0\n",
    );
    put(
        "labels_csv",
        "bom_comment",
        "\x05\u{feff}# c\na.png,1\n c d.png , 2\ne,f.png,4\n".as_bytes(),
    );
    put("labels_csv", "duplicate", b"\x0aa.png,1\na.png,2\n");
    put(
        "labels_csv",
        "bad_label",
        b"\x0aa.png,-1\nb.jpg,99999999999999999999\n",
    );

    // Images (first byte: resolution index | 8 for RGB | 16 for convert).
    let enc = |img: image::DynamicImage, fmt: image::ImageFormat| {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, fmt).unwrap();
        out.into_inner()
    };
    let with = |pick: u8, b: &[u8]| {
        let mut v = vec![pick];
        v.extend_from_slice(b);
        v
    };
    let grey = image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(8, 8, |x, y| {
        image::Luma([(x * 30 + y) as u8])
    }));
    let rgb = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(8, 8, |x, y| {
        image::Rgb([x as u8 * 20, y as u8 * 20, 7])
    }));
    let png = enc(grey.clone(), image::ImageFormat::Png);
    put("image", "grey_png", &with(3, &png));
    put(
        "image",
        "rgb_png",
        &with(3 | 8, &enc(rgb.clone(), image::ImageFormat::Png)),
    );
    put(
        "image",
        "rgba_png_convert",
        &with(3 | 16, &enc(rgb.to_rgba8().into(), image::ImageFormat::Png)),
    );
    put(
        "image",
        "grey16_png",
        &with(3, &enc(grey.to_luma16().into(), image::ImageFormat::Png)),
    );
    put(
        "image",
        "rgb_jpeg",
        &with(3 | 8, &enc(rgb, image::ImageFormat::Jpeg)),
    );
    put("image", "truncated_png", &with(3, &png[..png.len() / 2]));
    // IHDR claiming 100000 x 100000 (with its CRC fixed): refused from the header.
    let mut big = png.clone();
    big[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    big[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32fast::hash(&big[12..29]);
    big[29..33].copy_from_slice(&crc.to_be_bytes());
    put("image", "huge_png_header", &with(3, &big));
}

/// Run `f`, turning a panic into a test failure that names `what`.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| panic!("{what} panicked instead of returning an error"))
}

#[test]
fn oversized_allocations_are_errors() {
    let ctx = ctx();
    let max = ctx.max_binding_bytes();
    let over = (max / 4 + 1) as usize;
    let cases: Vec<(&str, Vec<usize>)> = vec![
        ("one element past the binding limit", vec![over]),
        ("a shape whose element count overflows", vec![usize::MAX, 2]),
        ("1 TiB", vec![1 << 38]),
    ];
    for (what, shape) in cases {
        for (call, r) in [
            (
                "empty",
                no_panic(what, || Tensor::empty(ctx, &shape, fewlabels::DType::F32)),
            ),
            // zeros and full build their values on the host: they must refuse before that.
            ("zeros", no_panic(what, || Tensor::zeros(ctx, &shape))),
            ("full", no_panic(what, || Tensor::full(ctx, &shape, 1.0))),
        ] {
            let e = r.expect_err(what);
            assert!(matches!(e, Error::Shape(_)), "{call}, {what}: {e}");
            assert!(
                e.to_string().contains("bytes") || e.to_string().contains("memory"),
                "{e}"
            );
        }
    }
    // Nothing reached the device; the context stays usable.
    ctx.check().unwrap();
    let t = Tensor::from_f32(ctx, &[2], &[1.0, 2.0]).unwrap();
    assert_eq!(t.to_f32(ctx).unwrap(), vec![1.0, 2.0]);
}

#[test]
fn a_lost_device_gives_errors_not_panics() {
    // A context of its own: the shared one stays alive for the other tests.
    let ctx = Context::new().unwrap();
    let cfg = Config::preset("tiny").unwrap();
    let model = Model::init(&ctx, &cfg, 1).unwrap();
    let mut tr = Trainer::new(
        &ctx,
        Model::init(&ctx, &cfg, 2).unwrap(),
        TrainConfig::new(Variant::S3ganCo),
    )
    .unwrap();
    let t = Tensor::from_f32(&ctx, &[3], &[1.0, 2.0, 3.0]).unwrap();
    ctx.device.destroy();
    let mut errors = Vec::new();
    let mut note = |what: &str, r: fewlabels::Result<()>| match r {
        Ok(()) => eprintln!("{what}: Ok after the device was destroyed"),
        Err(e) => errors.push(format!("{what}: {e}")),
    };
    note("wait", no_panic("wait", || ctx.wait()));
    note(
        "download",
        no_panic("download", || t.to_f32(&ctx).map(|_| ())),
    );
    note(
        "upload",
        no_panic("upload", || {
            Tensor::from_f32(&ctx, &[2], &[1.0, 2.0]).map(|_| ())
        }),
    );
    note(
        "zeros",
        no_panic("zeros", || Tensor::zeros(&ctx, &[8]).map(|_| ())),
    );
    let z = vec![0.1f32; 2 * cfg.z_dim];
    note(
        "sample",
        no_panic("sample", || {
            model
                .sample(&ctx, fewlabels::model::Which::Generator, &[0, 1], &z)
                .map(|_| ())
        }),
    );
    note(
        "d_step",
        no_panic("d_step", || {
            let x = Tensor::zeros(&ctx, &[N, 16, 16, 1])?;
            let (zf, yf) = tr.fake_batch(&ctx, N)?;
            tr.d_step(&ctx, &x, &LABELS, &zf, &yf).map(|_| ())
        }),
    );
    note(
        "save",
        no_panic("save", || {
            tr.save_checkpoint(&ctx, &std::env::temp_dir().join("fl-lost.ckpt"))
        }),
    );
    for e in &errors {
        eprintln!("{e}");
    }
    // Every call that needs the device says so; the sink reports the loss.
    assert!(errors.iter().any(|e| e.contains("lost")), "{errors:?}");
    let e = ctx.check().unwrap_err();
    assert!(
        matches!(e, Error::Device(_)) && e.to_string().contains("lost"),
        "{e}"
    );
    for what in ["wait", "download", "sample", "d_step", "save"] {
        assert!(
            errors.iter().any(|e| e.starts_with(what)),
            "{what} did not fail: {errors:?}"
        );
    }
}

/// Every input of the fuzzing corpus (seeds and the inputs that once crashed a target, named
/// `crash-*`) through the same calls as the fuzz targets: an `Err`, never a panic, and the
/// broken seeds are refused.
#[test]
fn fuzz_corpus_inputs_are_refused_cleanly() {
    use fewlabels::data::{decode_image, parse_idx, parse_labels, FolderOptions};
    use fewlabels::model::spec;
    use fewlabels::train::check_checkpoint_file;
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let valid = [
        "tiny_model",
        "micro_model",
        "micro_checkpoint",
        "tiny",
        "micro",
        "imagenet128",
        "train",
        "images",
        "images_gz",
        "labels",
        "plain",
        "bom_comment",
        "grey_png",
        "rgb_png",
        "rgba_png_convert",
        "grey16_png",
        "rgb_jpeg",
    ];
    let mut seen = 0;
    for target in ["model_file", "config_json", "idx", "labels_csv", "image"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(target))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        for f in files {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let data = std::fs::read(&f).unwrap();
            let what = format!("{target}/{name}");
            let ok = no_panic(&what, || match target {
                "model_file" => TensorFile::from_bytes(&data).is_ok_and(|file| {
                    let model = Model::check_file(&file);
                    let ckpt = check_checkpoint_file(&file);
                    model.is_ok() && (ckpt.is_ok() || !name.contains("checkpoint"))
                }),
                "config_json" => {
                    let text = std::str::from_utf8(&data).unwrap_or("");
                    let c = Config::from_json(text).map(|cfg| {
                        spec::parameter_count(&spec::generator(&cfg, "G"))
                            + spec::parameter_count(&spec::discriminator(&cfg))
                    });
                    c.is_ok() || TrainConfig::from_json(text).is_ok()
                }
                "idx" => parse_idx(&data, &what).is_ok(),
                "labels_csv" => {
                    let names: Vec<String> = ["a.png", "b.jpg", "c d.png", "e,f.png", "ü.jpeg"]
                        .iter()
                        .map(|s| s.to_string())
                        .collect();
                    let text = std::str::from_utf8(&data[1..]).unwrap_or("");
                    parse_labels(text, &what, &names, data[0] as usize).is_ok()
                }
                _ => {
                    let pick = data[0];
                    let r = [1, 2, 4, 8, 16, 32, 64, 128][(pick & 7) as usize];
                    let mut opts = FolderOptions::new(r, if pick & 8 == 0 { 1 } else { 3 }, 10);
                    opts.convert = pick & 16 != 0;
                    decode_image(&data[1..], &what, &opts, &mut Vec::new()).is_ok()
                }
            });
            assert_eq!(
                ok,
                valid.contains(&name.as_str()),
                "{what}: accepted = {ok}"
            );
            seen += 1;
        }
    }
    assert!(seen >= 40, "only {seen} corpus files");
}
