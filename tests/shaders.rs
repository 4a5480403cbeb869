//! Every WGSL file parses and validates with naga, without a device.

#[test]
fn every_shader_validates_with_naga() {
    let mut failures = Vec::new();
    for (name, src) in fewlabels::kernel::SHADERS {
        match fewlabels::kernel::validate_wgsl(name, src) {
            Ok((module, _)) => {
                if module.entry_points.is_empty() {
                    failures.push(format!("{name}.wgsl has no entry point"));
                }
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_shader_file_is_registered() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/shaders");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("wgsl") {
            let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
            assert!(
                fewlabels::kernel::SHADERS.iter().any(|(n, _)| *n == stem),
                "{stem}.wgsl is not in kernel::SHADERS"
            );
        }
    }
}
