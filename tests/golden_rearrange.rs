//! Rearranging ops against PyTorch float64 autograd goldens (tests/golden/gen_rearrange.py).
//!
//! Tolerance: exact (0) for every op and gradient. concat, split and rotation only move
//! float32 values (the goldens hold the same float32 values), and their gradients are moves
//! of dy too: concat's backward is split, split's backward is concat, a rotation's backward
//! is the inverse rotation. resize_2d and transpose_2d only move values and write zeros.

mod common;
use common::{ctx, Golden};
use fewlabels::ops::rearrange as ra;
use fewlabels::{DType, Error, Tensor};

const EXACT: f32 = 0.0;

/// The channel counts of a concat or split case.
fn sizes(g: &Golden, case: &str) -> Vec<usize> {
    g.i32(&format!("{case}/sizes"))
        .iter()
        .map(|&v| v as usize)
        .collect()
}

#[test]
fn concat_forward_backward() {
    let g = Golden::load("rearrange");
    for c in g.cases("concat_") {
        let sizes = sizes(&g, &c);
        let k = sizes.len();
        assert!((2..=4).contains(&k), "{c}: {k} inputs");
        let xs: Vec<Tensor> = (0..k).map(|j| g.tensor(&format!("{c}/x{j}"))).collect();
        let dy = g.tensor(&format!("{c}/dy"));
        let (y, dxs) = ctx()
            .run(|r| {
                let refs: Vec<&Tensor> = xs.iter().collect();
                Ok((
                    ra::concat_channels(r, &refs)?,
                    ra::split_channels(r, &dy, &sizes)?,
                ))
            })
            .unwrap();
        g.check(&format!("{c}/y"), &y, EXACT);
        assert_eq!(dxs.len(), k);
        for (j, dx) in dxs.iter().enumerate() {
            g.check(&format!("{c}/dx{j}"), dx, EXACT);
        }
    }
}

#[test]
fn split_forward_backward() {
    let g = Golden::load("rearrange");
    for c in g.cases("split_") {
        let sizes = sizes(&g, &c);
        let k = sizes.len();
        let x = g.tensor(&format!("{c}/x"));
        let dys: Vec<Tensor> = (0..k).map(|j| g.tensor(&format!("{c}/dy{j}"))).collect();
        let (ys, dx) = ctx()
            .run(|r| {
                let refs: Vec<&Tensor> = dys.iter().collect();
                Ok((
                    ra::split_channels(r, &x, &sizes)?,
                    ra::concat_channels(r, &refs)?,
                ))
            })
            .unwrap();
        for (j, y) in ys.iter().enumerate() {
            g.check(&format!("{c}/y{j}"), y, EXACT);
        }
        g.check(&format!("{c}/dx"), &dx, EXACT);
    }
}

#[test]
fn rotate_forward_backward() {
    let g = Golden::load("rearrange");
    for c in g.cases("rotate_") {
        let x = g.tensor(&format!("{c}/x"));
        let k = g.tensor(&format!("{c}/k"));
        let dy = g.tensor(&format!("{c}/dy"));
        let (y, dx) = ctx()
            .run(|r| Ok((ra::rotate(r, &x, &k)?, ra::rotate_backward(r, &dy, &k)?)))
            .unwrap();
        g.check(&format!("{c}/y"), &y, EXACT);
        g.check(&format!("{c}/dx"), &dx, EXACT);
    }
}

#[test]
fn rotate_all_forward_backward() {
    let g = Golden::load("rearrange");
    for c in g.cases("rotall_") {
        let x = g.tensor(&format!("{c}/x"));
        let k = g.i32(&format!("{c}/k"))[0] as u32;
        let dy = g.tensor(&format!("{c}/dy"));
        let (y, dx) = ctx()
            .run(|r| {
                Ok((
                    ra::rotate_all(r, &x, k)?,
                    ra::rotate_all_backward(r, &dy, k)?,
                ))
            })
            .unwrap();
        g.check(&format!("{c}/y"), &y, EXACT);
        g.check(&format!("{c}/dx"), &dx, EXACT);
        // The same rotation through the per-image path, with k = 4 + k and k - 4 (mod 4).
        let n = x.shape()[0];
        for kk in [k as i32 + 4, k as i32 - 4] {
            let kt = Tensor::from_i32(ctx(), &[n], &vec![kk; n]).unwrap();
            let y2 = ctx().run(|r| ra::rotate(r, &x, &kt)).unwrap();
            g.check(&format!("{c}/y"), &y2, EXACT);
        }
    }
}

/// A resize op of `ra`: x seen as `[batch, r, c]` to `[batch, r', c']`.
type Resize = fn(
    &mut fewlabels::kernel::Recorder,
    &Tensor,
    usize,
    (usize, usize),
    (usize, usize),
) -> fewlabels::Result<Tensor>;

/// The `count` golden cases `prefix*` of `op`, forward and backward (the backward pass is
/// `op` from the output's size back to the input's), and a shape error naming `name`.
fn resize_cases(prefix: &str, count: usize, name: &str, op: Resize) {
    let g = Golden::load("rearrange");
    let cases = g.cases(prefix);
    assert_eq!(cases.len(), count);
    for c in cases {
        let s = sizes(&g, &c);
        let (b, r, cc, r2, c2) = (s[0], s[1], s[2], s[3], s[4]);
        let x = g.tensor(&format!("{c}/x"));
        let dy = g.tensor(&format!("{c}/dy"));
        let (y, dx) = ctx()
            .run(|rec| {
                Ok((
                    op(rec, &x, b, (r, cc), (r2, c2))?,
                    op(rec, &dy, b, (r2, c2), (r, cc))?,
                ))
            })
            .unwrap();
        g.check(&format!("{c}/y"), &y, EXACT);
        g.check(&format!("{c}/dx"), &dx, EXACT);
    }
    let x = Tensor::full(ctx(), &[2, 3, 4], 1.0).unwrap();
    let err = ctx().run(|rec| op(rec, &x, 2, (3, 5), (4, 4))).unwrap_err();
    assert!(matches!(err, Error::Shape(_)), "{err}");
    assert!(err.to_string().contains(name), "{err}");
}

/// resize_2d pads with zeros and crops; its backward is resize_2d back to the input's size.
#[test]
fn resize_2d_forward_backward() {
    resize_cases("resize_", 3, "resize_2d", ra::resize_2d);
}

/// transpose_2d transposes the last two axes, then pads with zeros and crops as resize_2d;
/// its backward is transpose_2d back to the input's size.
#[test]
fn transpose_2d_forward_backward() {
    resize_cases("transpose_", 4, "transpose_2d", ra::transpose_2d);
}

/// The ops move bits, so i32 tensors come through unchanged.
#[test]
fn integer_tensors_move_exactly() {
    let c = ctx();
    let a: Vec<i32> = (0..2 * 3 * 3 * 2).map(|v| v * 7 - 50).collect();
    let b: Vec<i32> = (0..2 * 3 * 3 * 4)
        .map(|v| -v * 3 + i32::MAX - 100)
        .collect();
    let ta = Tensor::from_i32(c, &[2, 3, 3, 2], &a).unwrap();
    let tb = Tensor::from_i32(c, &[2, 3, 3, 4], &b).unwrap();
    let k = Tensor::from_i32(c, &[2], &[1, 3]).unwrap();
    let (cat, parts, rot, back) = c
        .run(|r| {
            let cat = ra::concat_channels(r, &[&ta, &tb])?;
            let parts = ra::split_channels(r, &cat, &[2, 4])?;
            let rot = ra::rotate(r, &cat, &k)?;
            let back = ra::rotate_backward(r, &rot, &k)?;
            Ok((cat, parts, rot, back))
        })
        .unwrap();
    assert_eq!(cat.dtype(), DType::I32);
    let cv = cat.to_i32(c).unwrap();
    for p in 0..18 {
        assert_eq!(&cv[p * 6..p * 6 + 2], &a[p * 2..p * 2 + 2]);
        assert_eq!(&cv[p * 6 + 2..p * 6 + 6], &b[p * 4..p * 4 + 4]);
    }
    assert_eq!(parts[0].to_i32(c).unwrap(), a);
    assert_eq!(parts[1].to_i32(c).unwrap(), b);
    assert_eq!(rot.dtype(), DType::I32);
    assert_ne!(rot.to_i32(c).unwrap(), cv);
    assert_eq!(back.to_i32(c).unwrap(), cv);
}

#[test]
fn bad_inputs_return_err() {
    let c = ctx();
    let x = Tensor::zeros(c, &[4, 5, 5, 3]).unwrap();
    let nonsquare = Tensor::zeros(c, &[4, 5, 6, 3]).unwrap();
    let k4 = Tensor::from_i32(c, &[4], &[0, 1, 2, 3]).unwrap();
    let k3 = Tensor::from_i32(c, &[3], &[0, 1, 2]).unwrap();
    let kf = Tensor::zeros(c, &[4]).unwrap();
    let other_n = Tensor::zeros(c, &[3, 5, 5, 2]).unwrap();
    let other_rank = Tensor::zeros(c, &[4, 3]).unwrap();
    let ints = Tensor::from_i32(c, &[4, 5, 5, 1], &[0; 100]).unwrap();
    let scalar = Tensor::zeros(c, &[]).unwrap();
    let is_shape = |r: fewlabels::Result<Tensor>| matches!(r, Err(Error::Shape(_)));
    let is_shape_v = |r: fewlabels::Result<Vec<Tensor>>| matches!(r, Err(Error::Shape(_)));
    let mut rec = c.recorder();
    let r = &mut rec;
    assert!(is_shape(ra::rotate(r, &nonsquare, &k4)));
    assert!(is_shape(ra::rotate_backward(r, &nonsquare, &k4)));
    assert!(is_shape(ra::rotate_all(r, &nonsquare, 1)));
    assert!(is_shape(ra::rotate_all(r, &other_rank, 1)));
    assert!(is_shape(ra::rotate(r, &x, &k3)));
    assert!(is_shape(ra::rotate(r, &x, &kf)));
    assert!(is_shape(ra::concat_channels(r, &[])));
    assert!(is_shape(ra::concat_channels(r, &[&x, &other_n])));
    assert!(is_shape(ra::concat_channels(r, &[&x, &other_rank])));
    assert!(is_shape(ra::concat_channels(r, &[&x, &ints])));
    assert!(is_shape(ra::concat_channels(r, &[&scalar, &scalar])));
    assert!(is_shape_v(ra::split_channels(r, &x, &[1, 1])));
    assert!(is_shape_v(ra::split_channels(r, &x, &[])));
    assert!(is_shape_v(ra::split_channels(r, &scalar, &[1])));
    let msg = format!("{:?}", ra::rotate(r, &nonsquare, &k4).unwrap_err());
    assert!(msg.contains("rotate") && msg.contains("square"), "{msg}");
    rec.submit().unwrap();
}
