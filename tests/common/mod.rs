//! Test harness shared by the golden tests: one device context per test binary, golden
//! files (written by tests/golden/generate.py with PyTorch autograd), and comparison.
#![allow(dead_code)]

use fewlabels::{Context, Tensor};
use std::collections::HashMap;
use std::sync::OnceLock;

/// One device context for the whole test binary.
pub fn ctx() -> &'static Context {
    static CTX: OnceLock<Context> = OnceLock::new();
    CTX.get_or_init(|| {
        if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
            // Silences Mesa's warning on machines without a session.
            std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
        }
        let c = Context::new().unwrap_or_else(|e| panic!("{e}"));
        // Every transient tensor starts as NaN, so a kernel that leaves part of its output
        // unwritten, or reads scratch it did not fill, fails the comparison.
        c.set_poison_pool(true);
        eprintln!("adapter: {}", c.description);
        c
    })
}

enum Data {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

/// The tensors of one golden file.
pub struct Golden {
    family: String,
    tensors: HashMap<String, (Vec<usize>, Data)>,
}

impl Golden {
    /// Load tests/golden/<family>.safetensors.
    pub fn load(family: &str) -> Golden {
        let path = format!(
            "{}/tests/golden/{family}.safetensors",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let st =
            safetensors::SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            let shape = view.shape().to_vec();
            let data = match view.dtype() {
                safetensors::Dtype::F32 => Data::F32(bytemuck::pod_collect_to_vec(view.data())),
                safetensors::Dtype::I32 => Data::I32(bytemuck::pod_collect_to_vec(view.data())),
                d => panic!("{path}: {name} has dtype {d:?}"),
            };
            tensors.insert(name, (shape, data));
        }
        Golden {
            family: family.to_string(),
            tensors,
        }
    }

    fn entry(&self, name: &str) -> &(Vec<usize>, Data) {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("golden {}: no tensor {name}", self.family))
    }

    pub fn shape(&self, name: &str) -> Vec<usize> {
        self.entry(name).0.clone()
    }

    pub fn f32(&self, name: &str) -> Vec<f32> {
        match &self.entry(name).1 {
            Data::F32(v) => v.clone(),
            Data::I32(_) => panic!("golden {}: {name} is i32", self.family),
        }
    }

    pub fn i32(&self, name: &str) -> Vec<i32> {
        match &self.entry(name).1 {
            Data::I32(v) => v.clone(),
            Data::F32(_) => panic!("golden {}: {name} is f32", self.family),
        }
    }

    /// A scalar f32 stored as a one-element tensor.
    pub fn scalar(&self, name: &str) -> f32 {
        let v = self.f32(name);
        assert_eq!(v.len(), 1, "golden {}: {name} is not a scalar", self.family);
        v[0]
    }

    /// Upload a golden tensor (f32 or i32, as stored).
    pub fn tensor(&self, name: &str) -> Tensor {
        let (shape, data) = self.entry(name);
        match data {
            Data::F32(v) => Tensor::from_f32(ctx(), shape, v).unwrap(),
            Data::I32(v) => Tensor::from_i32(ctx(), shape, v).unwrap(),
        }
    }

    /// Names of the cases whose name starts with `prefix` (the part before '/').
    pub fn cases(&self, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .tensors
            .keys()
            .filter_map(|k| k.split('/').next())
            .filter(|c| c.starts_with(prefix))
            .map(|c| c.to_string())
            .collect();
        v.sort();
        v.dedup();
        assert!(
            !v.is_empty(),
            "golden {}: no case starts with {prefix}",
            self.family
        );
        v
    }

    /// Names (after the prefix) of the tensors whose name starts with `prefix`.
    pub fn names(&self, prefix: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .tensors
            .keys()
            .filter_map(|k| k.strip_prefix(prefix).map(str::to_string))
            .collect();
        v.sort();
        v
    }

    /// max |got - want| / max |want| for golden tensor `name` (shapes must agree; NaN gives
    /// infinity).
    pub fn rel_error(&self, name: &str, got: &Tensor) -> f32 {
        self.rel_error_floor(name, got, 1e-20)
    }

    /// Largest |value| of a golden tensor.
    pub fn max_abs(&self, name: &str) -> f32 {
        self.f32(name).iter().fold(0f32, |m, v| m.max(v.abs()))
    }

    /// Like [`Golden::rel_error`] with the scale at least `floor`: for tensors whose true
    /// value is (near) zero, such as the gradient of a bias that feeds batch norm.
    pub fn rel_error_floor(&self, name: &str, got: &Tensor, floor: f32) -> f32 {
        assert_eq!(got.shape(), &self.shape(name)[..], "{name}: shape");
        let want = self.f32(name);
        let got = got.to_f32(ctx()).unwrap();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(floor);
        got.iter().zip(&want).fold(0f32, |m, (g, w)| {
            if g.is_finite() {
                m.max((g - w).abs() / scale)
            } else {
                f32::INFINITY
            }
        })
    }

    /// Download `got` and compare it with golden tensor `name`: the shapes must agree and
    /// max |got - want| <= tol * max|want|.
    pub fn check(&self, name: &str, got: &Tensor, tol: f32) {
        let want = self.f32(name);
        assert_eq!(got.shape(), &self.shape(name)[..], "{name}: shape");
        let got = got.to_f32(ctx()).unwrap();
        check_close(name, &got, &want, tol);
    }

    /// Compare an i32 tensor exactly.
    pub fn check_i32(&self, name: &str, got: &Tensor) {
        let want = self.i32(name);
        assert_eq!(got.shape(), &self.shape(name)[..], "{name}: shape");
        assert_eq!(got.to_i32(ctx()).unwrap(), want, "{name}");
    }
}

/// max |got - want| <= tol * max|want| (the tolerance is relative to the reference's
/// magnitude), with no NaN or infinity anywhere.
pub fn check_close(name: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-20);
    let mut worst = (0usize, 0f32);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite(), "{name}[{i}] = {g} is not finite (want {w})");
        let e = (g - w).abs();
        if e > worst.1 {
            worst = (i, e);
        }
    }
    let (i, e) = worst;
    assert!(
        e <= tol * scale,
        "{name}: max error {e:e} at [{i}] (got {}, want {}) exceeds {tol:e} x {scale}",
        got[i],
        want[i]
    );
}

/// A seed for randomised tests: the variable `var` when set (to replay a run), else the clock.
pub fn seed_from_env(var: &str) -> u64 {
    std::env::var(var).map_or_else(
        |_| {
            std::time::SystemTime::UNIX_EPOCH
                .elapsed()
                .unwrap()
                .as_nanos() as u64
        },
        |s| s.parse().unwrap(),
    )
}

/// `per` 16x16 grey images of each of `classes` brightness levels with a little noise
/// (image i is of class i % classes), and their labels with one in five kept (the rest -1);
/// returns the data set and the true labels. For the labeller and class-head tests.
pub fn brightness_data(per: usize, classes: usize) -> (fewlabels::data::Dataset, Vec<i32>) {
    let n = per * classes;
    let mut images = Vec::with_capacity(n * 256);
    let mut truth = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % classes;
        let level = -0.6 + 1.2 * c as f32 / (classes - 1) as f32;
        for p in 0..256 {
            let h = ((i * 256 + p) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
            let noise = (h % 1000) as f32 / 1000.0 - 0.5;
            images.push(level + 0.1 * noise);
        }
        truth.push(c as i32);
    }
    let labels: Vec<i32> = (0..n)
        .map(|i| if i % 5 == 0 { truth[i] } else { -1 })
        .collect();
    let data = fewlabels::data::Dataset::new(images, 16, 1, labels, classes).unwrap();
    (data, truth)
}
