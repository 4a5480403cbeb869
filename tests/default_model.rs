//! The embedded default model (docs/MODEL_CARD.md): it loads, reads back bit for bit, has the
//! network its card names, and its samples are the classes they were drawn for, as judged by
//! the embedded Fashion-MNIST evaluator (an outside judge: trained by PyTorch on all 60,000
//! labels, 91.8% test accuracy, docs/EVALUATOR.md).

mod common;
use common::ctx;
use fewlabels::eval::{class_consistency, evaluator, sample_outputs, Evaluator};
use fewlabels::model::{Config, Model, DEFAULT_MODEL};

/// Samples per class for the consistency check.
const PER_CLASS: usize = 40;
/// Lowest mean class consistency accepted on those samples. The model card gives the figure
/// on 1,000 samples per class; this bound leaves room for the smaller sample (40 per class:
/// a standard error of about 2 points) and for f32 differences between adapters. Measured
/// on lavapipe for the shipped model (s3gan, labeller 6,000 steps, step 12,500): 0.872 (0.901
/// on 1,000 per class).
const MIN_CONSISTENCY: f64 = 0.75;

fn default_model() -> &'static Model {
    static M: std::sync::OnceLock<Model> = std::sync::OnceLock::new();
    M.get_or_init(|| Model::load_default(ctx()).unwrap())
}

#[test]
fn default_model_reads_back_bit_for_bit() {
    let m = default_model();
    let bytes = m.to_file(ctx()).unwrap().to_bytes().unwrap();
    if bytes != DEFAULT_MODEL {
        let p = std::env::temp_dir().join("fewlabels_default_model_written.safetensors");
        std::fs::write(&p, &bytes).unwrap();
        eprintln!("wrote what came back to {}", p.display());
    }
    assert!(
        bytes == DEFAULT_MODEL,
        "the default model does not write back its own bytes ({} vs {})",
        bytes.len(),
        DEFAULT_MODEL.len()
    );
}

#[test]
fn default_model_is_the_fashion_small_network_with_every_part() {
    let m = default_model();
    assert_eq!(m.cfg, Config::preset("fashion_small").unwrap());
    assert!(m.d.is_some(), "the default model has no discriminator");
    assert!(m.g_ema.is_some(), "the default model has no G_ema");
    assert!(m.cfg.class_head && m.cfg.rotation_head);
}

#[test]
fn default_model_samples_are_their_classes() {
    let c = ctx();
    let m = default_model();
    let ev = Evaluator::new(c).unwrap();
    let k = m.cfg.num_classes;
    assert_eq!(k, evaluator::CLASSES);
    let out = sample_outputs(c, &ev, m, PER_CLASS, 7, None).unwrap();
    assert!(out.ema, "the default model is sampled from G_ema");
    let cons = class_consistency(&out.probs, &out.intended, k).unwrap();
    println!(
        "class consistency on {PER_CLASS} samples per class: mean {:.3}, per class {:?}",
        cons.mean,
        cons.per_class
            .iter()
            .map(|v| format!("{v:.2}"))
            .collect::<Vec<_>>()
    );
    assert!(
        cons.mean >= MIN_CONSISTENCY,
        "mean class consistency {:.3} < {MIN_CONSISTENCY}",
        cons.mean
    );
}
