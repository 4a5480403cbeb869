//! Row softmax against PyTorch float64 autograd goldens (tests/golden/gen_softmax.py).
//! Tolerance 1e-5 x max|reference| for y and dx: each row is a max, a sum of exponentials and a
//! dot product in f32 over at most 100 terms; the error stays a few ulps of the largest value.

mod common;
use common::{ctx, Golden};
use fewlabels::ops::softmax as sm;
use fewlabels::Tensor;

const TOL: f32 = 1e-5;

fn check(g: &Golden, name: &str, got: &Tensor) {
    let want = g.f32(name);
    let v = got.to_f32(ctx()).unwrap();
    let scale = want.iter().fold(0f32, |m, w| m.max(w.abs()));
    let err = v
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("{name}: max error {:.2e} x max|ref|", err / scale);
    g.check(name, got, TOL);
}

/// Both kernel sets run on whatever adapter the tests have: the CPU-adapter kernels (`_t`,
/// inputs read as textures, for C a multiple of 4) and the storage-buffer ones.
const CPU_KERNELS: [bool; 2] = [true, false];

fn run<T>(cpu: bool, f: impl FnOnce(&mut fewlabels::Recorder) -> fewlabels::Result<T>) -> T {
    ctx()
        .run(|r| {
            r.set_cpu_kernels(cpu);
            f(r)
        })
        .unwrap()
}

#[test]
fn softmax_forward() {
    let g = Golden::load("softmax");
    for cpu in CPU_KERNELS {
        for c in g.cases("softmax_") {
            let x = g.tensor(&format!("{c}/x"));
            let y = run(cpu, |r| sm::softmax(r, &x));
            check(&g, &format!("{c}/y"), &y);
        }
    }
}

#[test]
fn softmax_backward() {
    let g = Golden::load("softmax");
    for cpu in CPU_KERNELS {
        for c in g.cases("softmax_") {
            let x = g.tensor(&format!("{c}/x"));
            let dy = g.tensor(&format!("{c}/dy"));
            // From the kernel's own forward output, as training uses it.
            let dx = run(cpu, |r| {
                let y = sm::softmax(r, &x)?;
                sm::softmax_backward(r, &y, &dy)
            });
            check(&g, &format!("{c}/dx"), &dx);
        }
    }
}

/// Large logits do not overflow (the row max is subtracted), in both kernels.
#[test]
fn softmax_is_stable() {
    let c = ctx();
    for cols in [3usize, 4] {
        let mut v = vec![1000.0f32, 1000.0, -1000.0, 0.0];
        v.truncate(cols);
        let x = Tensor::from_f32(c, &[1, cols], &v).unwrap();
        let y = c.run(|r| sm::softmax(r, &x)).unwrap().to_f32(c).unwrap();
        assert_eq!(&y[..3], &[0.5, 0.5, 0.0], "C = {cols}: {y:?}");
    }
}

#[test]
fn bad_calls_return_err() {
    let c = ctx();
    let x = Tensor::zeros(c, &[3, 5]).unwrap();
    let x1 = Tensor::zeros(c, &[15]).unwrap();
    let xi = Tensor::from_i32(c, &[3, 1], &[0, 1, 2]).unwrap();
    let dy = Tensor::zeros(c, &[5, 3]).unwrap();
    let mut r = c.recorder();
    assert!(sm::softmax(&mut r, &x1).is_err());
    assert!(sm::softmax(&mut r, &xi).is_err());
    assert!(sm::softmax_backward(&mut r, &x, &dy).is_err());
    assert!(sm::softmax_backward(&mut r, &x, &xi).is_err());
    assert!(sm::softmax(&mut r, &x).is_ok());
    r.submit().unwrap();
}

/// y and dy may be one tensor (the recorder refuses one buffer at two bindings; the op copies).
#[test]
fn backward_with_dy_aliasing_y() {
    let c = ctx();
    let y = Tensor::from_f32(c, &[1, 3], &[0.5, 0.25, 0.25]).unwrap();
    let dx = c
        .run(|r| sm::softmax_backward(r, &y, &y))
        .unwrap()
        .to_f32(c)
        .unwrap();
    // s = 0.375; dx = y * (y - s).
    assert_eq!(dx, [0.0625, -0.03125, -0.03125]);
}
