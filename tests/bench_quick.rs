//! The benchmark (benches/fewlabels.rs) in quick mode: tiny preset and sizes, no PyTorch.
//! Checks that it runs and reports every item; nothing here depends on timing.

#[path = "../benches/suite/mod.rs"]
mod suite;

#[test]
fn quick_benchmark_reports_every_item() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let report = suite::run(&suite::Options::quick()).unwrap_or_else(|e| panic!("{e}"));
    let items: Vec<&str> = report.rows.iter().map(|r| r.item.as_str()).collect();
    for want in [
        "tiny: G sampling, batch 1",
        "tiny: G sampling, batch 4",
        "tiny: D forward, batch 4",
        "tiny: train step (2 D + 1 G), batch 4",
        "matmul 32x32x32",
        "conv3x3 forward, N=2, 8->8, 8x8",
        "conv3x3 input gradient, N=2, 8->8, 8x8",
        "conv3x3 weight gradient, N=2, 8->8, 8x8",
    ] {
        assert!(items.contains(&want), "missing {want:?} in {items:?}");
    }
    for r in &report.rows {
        assert!(r.ours.is_finite() && r.ours > 0.0, "{r:?}");
        assert!(r.torch.is_none(), "quick mode runs no PyTorch: {r:?}");
    }
    // The profile of a train step names the kernels it ran, with their dispatch counts.
    let (_, rows) = &report.profiles[0];
    assert!(rows.iter().any(|r| r.shader == "conv"), "{rows:?}");
    assert!(
        rows.iter().any(|r| r.entry.starts_with("adam_step")),
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r.count > 0 && r.total_ms >= 0.0));
    // After the first steps the pools serve every buffer a step needs.
    assert_eq!(report.new_buffers_per_step, vec![("tiny".to_string(), 0)]);
    let md = report.markdown();
    assert!(
        md.contains("| item |") && md.contains("Per-kernel time"),
        "{md}"
    );
}

#[test]
fn generated_section_is_replaced_not_repeated() {
    let doc = "# Performance\n\nhand-written text\n";
    let once = suite::splice(doc, "table one");
    assert!(once.contains("hand-written text") && once.contains("table one"));
    let twice = suite::splice(&once, "table two");
    assert!(!twice.contains("table one") && twice.contains("table two"));
    assert_eq!(twice.matches(suite::BEGIN).count(), 1);
    assert_eq!(suite::splice(&twice, "table two"), twice);
}
