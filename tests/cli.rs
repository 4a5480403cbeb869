//! The `fewlabels` command: sampling a grid from a model file, info, and clean errors.

mod common;
use fewlabels::model::{Config, Model};
use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fewlabels"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

#[test]
fn sample_writes_a_grid_from_a_model_file() {
    let dir = std::env::temp_dir().join(format!("fewlabels-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("tiny.safetensors");
    let mut m = Model::init(common::ctx(), &Config::preset("tiny").unwrap(), 9).unwrap();
    m.accumulate_standing_stats(common::ctx(), 1, 8, 1).unwrap();
    m.save(common::ctx(), &model).unwrap();
    let out = dir.join("grid.pgm");
    let o = bin()
        .args([
            "sample",
            "--model",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--per-class", "4", "--seed", "3"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&out).unwrap();
    let header = b"P5\n64 48\n255\n";
    assert_eq!(&bytes[..header.len()], header);
    assert_eq!(bytes.len(), header.len() + 64 * 48);

    let o = bin()
        .args(["info", "--model", model.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("\"resolution\":16"),
        "{text}"
    );
}

#[test]
fn bad_invocations_fail_with_one_line() {
    let o = bin()
        .args(["sample", "--model", "/no/such/file"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("/no/such/file") && !err.contains("panicked"),
        "{err}"
    );
    let o = bin().args(["sample", "--per-class", "0"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = bin().arg("frobnicate").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}
