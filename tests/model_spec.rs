//! The Rust parameter spec agrees with the PyTorch reference module's state dict
//! (tests/reference/names_tiny.txt, written by tests/reference/biggan.py), and configs
//! round-trip through JSON and reject bad values. No device needed.

use fewlabels::model::spec::{self, Kind};
use fewlabels::model::Config;

#[test]
fn tiny_spec_matches_the_reference_state_dict() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/names_tiny.txt"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let cfg = Config::preset("tiny").unwrap();
    let mut ours = spec::generator(&cfg, "G");
    ours.extend(spec::discriminator(&cfg));
    let mut seen = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split('\t').collect();
        let (name, shape, kind) = (f[0], f[1], f[2]);
        let e = ours
            .get(name)
            .unwrap_or_else(|| panic!("reference has {name}, the Rust spec does not"));
        let shape: Vec<usize> = shape
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse().unwrap())
            .collect();
        assert_eq!(e.shape, shape, "{name}");
        assert_eq!(
            e.kind.trained(),
            kind == "param",
            "{name}: {kind} vs {:?}",
            e.kind
        );
        seen += 1;
    }
    assert_eq!(
        seen,
        ours.len(),
        "the Rust spec has names the reference lacks"
    );
}

#[test]
fn config_json_roundtrip_and_validation() {
    for p in ["tiny", "tiny_rgb", "fashion", "imagenet64", "imagenet128"] {
        let c = Config::preset(p).unwrap();
        assert_eq!(Config::from_json(&c.to_json()).unwrap(), c);
    }
    let c = Config::preset("tiny").unwrap();
    let bad = |f: &dyn Fn(&mut Config)| {
        let mut b = c.clone();
        f(&mut b);
        b.validate().unwrap_err().to_string()
    };
    assert!(bad(&|c| c.resolution = 24).contains("resolution"));
    assert!(bad(&|c| c.channels = 2).contains("channels"));
    assert!(bad(&|c| c.g_mult.pop().map(|_| ()).unwrap()).contains("g_mult"));
    assert!(bad(&|c| c.z_dim = 13).contains("z_dim"));
    assert!(bad(&|c| c.g_attn = vec![32]).contains("g_attn"));
    assert!(bad(&|c| c.bn_eps = -1.0).contains("eps"));
    let e = Config::from_json("{\"resolution\": 16}")
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing field"), "{e}");
    let e = Config::from_json(&c.to_json().replace("\"sn\"", "\"sn\":true,\"extra\"")).unwrap_err();
    assert!(e.to_string().contains("unknown field"), "{e}");
    assert!(Config::preset("nope").is_err());
    assert!(!Kind::U.trained());
}
