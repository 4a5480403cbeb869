//! Whole models: files that read back bit for bit, files that are refused with a message
//! naming the problem, and the sampling API (batch, single, RGBA8, truncated z, class
//! interpolation, standing statistics).

mod common;
use common::ctx;
use fewlabels::model::file::{HostTensor, TensorFile};
use fewlabels::model::{Config, Model, Which};
use fewlabels::Error;

fn tiny(seed: u64) -> Model {
    let mut m = Model::init(ctx(), &Config::preset("tiny").unwrap(), seed).unwrap();
    m.accumulate_standing_stats(ctx(), 2, 8, seed + 1).unwrap();
    m
}

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fewlabels-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn saved_model_reads_back_bit_for_bit_and_samples_identically() {
    let m = tiny(1);
    let z = m.make_z(3, 1.0, 5).unwrap();
    let classes = [0, 1, 2, 1, 0];
    let before = m.sample(ctx(), Which::Ema, &classes, &z).unwrap();
    let path = tmp("roundtrip.safetensors");
    m.save(ctx(), &path).unwrap();
    let back = Model::load(ctx(), &path).unwrap();
    assert_eq!(back.cfg, m.cfg);
    let (f1, f2) = (m.to_file(ctx()).unwrap(), back.to_file(ctx()).unwrap());
    assert_eq!(f1.tensors.len(), f2.tensors.len());
    for (k, t) in &f1.tensors {
        assert_eq!(bits(&t.data), bits(&f2.tensors[k].data), "{k}");
    }
    let after = back.sample(ctx(), Which::Ema, &classes, &z).unwrap();
    assert_eq!(bits(&before), bits(&after));
    assert!(before.iter().all(|v| (0.0..=1.0).contains(v)));
    assert_eq!(before.len(), 5 * m.image_len());
}

#[test]
fn sampling_only_file_without_d_loads() {
    let mut m = tiny(2);
    m.d = None;
    let path = tmp("no_d.safetensors");
    m.save(ctx(), &path).unwrap();
    let back = Model::load(ctx(), &path).unwrap();
    assert!(back.d.is_none() && back.g_ema.is_some());
    let z = back.make_z(1, 0.5, 1).unwrap();
    back.sample(ctx(), Which::Ema, &[2], &z).unwrap();
}

fn refused(f: &TensorFile) -> String {
    let path = tmp(&format!("bad-{}.safetensors", rand_name()));
    f.save(&path).unwrap();
    let e = Model::load(ctx(), &path)
        .err()
        .expect("a bad file must be refused");
    assert!(
        matches!(e, Error::Format(_) | Error::InvalidArgument(_)),
        "{e:?}"
    );
    e.to_string()
}

fn rand_name() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn bad_model_files_are_refused_with_the_tensor_named() {
    let good = tiny(3).to_file(ctx()).unwrap();

    let mut f = good.clone();
    f.tensors.insert(
        "G.linear.weight".into(),
        HostTensor::new(&[2, 2], vec![0.0; 4]).unwrap(),
    );
    let e = refused(&f);
    assert!(e.contains("G.linear.weight") && e.contains("shape"), "{e}");

    let mut f = good.clone();
    f.tensors.remove("G.blocks.0.conv1.bias");
    let e = refused(&f);
    assert!(e.contains("G.blocks.0.conv1.bias"), "{e}");

    let mut f = good.clone();
    f.tensors.insert(
        "G.nonsense".into(),
        HostTensor::new(&[1], vec![0.0]).unwrap(),
    );
    let e = refused(&f);
    assert!(e.contains("G.nonsense"), "{e}");

    let mut f = good.clone();
    let mut cfg = Config::preset("tiny").unwrap();
    cfg.channels = 3;
    f.metadata.insert("config".into(), cfg.to_json());
    let e = refused(&f);
    assert!(
        e.contains("G.out_conv"),
        "wrong config must name a mismatching tensor: {e}"
    );

    let mut f = good.clone();
    f.metadata.insert("config".into(), "{not json".into());
    let e = refused(&f);
    assert!(e.contains("config"), "{e}");

    let mut f = good.clone();
    f.metadata.remove("config");
    assert!(refused(&f).contains("config"));

    let mut f = good.clone();
    f.tensors.get_mut("G.linear.bias").unwrap().data[0] = f32::NAN;
    let e = refused(&f);
    assert!(e.contains("G.linear.bias") && e.contains("finite"), "{e}");

    let e = Model::load(ctx(), std::path::Path::new("/no/such/model.safetensors"))
        .err()
        .unwrap();
    assert!(matches!(e, Error::Io(_)), "{e}");
}

#[test]
fn bad_sampling_inputs_are_errors() {
    let m = tiny(4);
    let z = m.make_z(1, 1.0, 1).unwrap();
    let c = ctx();
    assert!(
        m.sample(c, Which::Ema, &[3], &z).is_err(),
        "class out of range"
    );
    assert!(
        m.sample(c, Which::Ema, &[-1], &z).is_err(),
        "negative class"
    );
    assert!(m.sample(c, Which::Ema, &[0], &z[1..]).is_err(), "short z");
    let mut nan = z.clone();
    nan[2] = f32::NAN;
    let e = m.sample(c, Which::Ema, &[0], &nan).unwrap_err().to_string();
    assert!(e.contains("z[2]"), "{e}");
    assert!(m.make_z(1, 0.0, 1).is_err());
    assert!(m.make_z(1, 1.5, 1).is_err());
    assert!(m.make_z(1, f32::NAN, 1).is_err());
}

#[test]
fn one_image_at_a_time_matches_the_batch() {
    let m = tiny(5);
    let z = m.make_z(11, 0.8, 4).unwrap();
    let classes = [2, 0, 1, 2];
    let batch = m.sample(ctx(), Which::Ema, &classes, &z).unwrap();
    let n = m.image_len();
    for i in 0..4 {
        let one = m
            .sample(
                ctx(),
                Which::Ema,
                &classes[i..i + 1],
                &z[i * 12..(i + 1) * 12],
            )
            .unwrap();
        common::check_close(
            "single vs batch row",
            &one,
            &batch[i * n..(i + 1) * n],
            1e-5,
        );
    }
    let rgba = m.sample_rgba8(ctx(), Which::Ema, 1, &z[..12]).unwrap();
    assert_eq!(rgba.len(), 16 * 16 * 4);
    assert!(rgba
        .chunks(4)
        .all(|p| p[3] == 255 && p[0] == p[1] && p[1] == p[2]));
}

#[test]
fn class_interpolation_ends_at_the_two_classes() {
    let m = tiny(6);
    let z = m.make_z(5, 1.0, 2).unwrap();
    let a = m.sample(ctx(), Which::Ema, &[0, 0], &z).unwrap();
    let b = m.sample(ctx(), Which::Ema, &[2, 2], &z).unwrap();
    let mix = m
        .sample_mix(ctx(), Which::Ema, &[0, 0], &[2, 2], &[0.0, 1.0], &z)
        .unwrap();
    let n = m.image_len();
    common::check_close("t = 0", &mix[..n], &a[..n], 1e-5);
    common::check_close("t = 1", &mix[n..], &b[n..], 1e-5);
    let half = m
        .sample_mix(ctx(), Which::Ema, &[0], &[2], &[0.5], &z[..12])
        .unwrap();
    assert!(half.iter().zip(&a[..n]).any(|(h, x)| (h - x).abs() > 1e-4));
}

#[test]
fn make_z_is_reproducible() {
    let m = tiny(7);
    assert_eq!(
        bits(&m.make_z(42, 0.7, 3).unwrap()),
        bits(&m.make_z(42, 0.7, 3).unwrap())
    );
    assert_ne!(
        bits(&m.make_z(42, 0.7, 3).unwrap()),
        bits(&m.make_z(43, 0.7, 3).unwrap())
    );
    assert!(m
        .make_z(42, 0.5, 10)
        .unwrap()
        .iter()
        .all(|v| v.abs() <= 1.0));
}

#[test]
fn imagenet_presets_match_the_reference_parameter_counts() {
    // Counts printed by tests/golden/gen_model.py (tests/reference/biggan.py).
    for (p, g, d) in [
        ("fashion", 160_578, 150_272),
        ("imagenet64", 70_377_348, 47_055_118),
        ("imagenet128", 70_433_988, 89_525_518),
    ] {
        let cfg = Config::preset(p).unwrap();
        let gs =
            fewlabels::model::spec::parameter_count(&fewlabels::model::spec::generator(&cfg, "G"));
        let ds =
            fewlabels::model::spec::parameter_count(&fewlabels::model::spec::discriminator(&cfg));
        assert_eq!((gs, ds), (g, d), "{p}");
    }
}

/// Sampling keeps each layer's spectrally normalised weight between calls (eval mode leaves
/// u alone). A write into a weight or a u, even in place, makes the kept result stale: the
/// next call computes it again and matches a model that never kept one.
#[test]
fn kept_spectral_norm_follows_writes_to_weights_and_u() {
    let c = ctx();
    let m = tiny(4);
    let ws = m.sampling_weights(Which::Ema);
    let cache = ws
        .sn_cache
        .clone()
        .expect("a loaded or initialised model keeps them");
    let z = m.make_z(9, 1.0, 3).unwrap();
    let classes = [0, 1, 2];
    let first = m.sample(c, Which::Ema, &classes, &z).unwrap();
    let layers = cache.len();
    assert!(layers > 0, "nothing was kept");
    assert_eq!(
        bits(&m.sample(c, Which::Ema, &classes, &z).unwrap()),
        bits(&first)
    );
    assert_eq!(cache.len(), layers);

    // The same model without kept results, to compare with after each write.
    let mut fresh = tiny(4);
    for w in [&mut fresh.g, fresh.g_ema.as_mut().unwrap()] {
        w.sn_cache = None;
    }
    let fresh_ws = fresh.sampling_weights(Which::Ema);
    for name in ["G.blocks.0.conv1.weight", "G.blocks.0.conv1.u"] {
        let t = &ws.map[name];
        let v: Vec<f32> = t
            .to_f32(c)
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, x)| x + 0.5 * ((i % 5) as f32 - 2.0))
            .collect();
        t.write_f32(c, &v).unwrap();
        fresh_ws.map[name].write_f32(c, &v).unwrap();
        let after = m.sample(c, Which::Ema, &classes, &z).unwrap();
        assert_ne!(
            bits(&after),
            bits(&first),
            "{name}: the write changed nothing"
        );
        assert_eq!(
            bits(&after),
            bits(&fresh.sample(c, Which::Ema, &classes, &z).unwrap()),
            "{name}: a stale spectral norm was used"
        );
    }
}
