//! Embedding ops against PyTorch float64 autograd goldens (tests/golden/gen_embedding.py).
//! Tolerance 1e-5 x max|reference| for every output and gradient: the forward is a copy or a
//! two-term blend, each table-gradient element a short sum over the batch, and dt a D-term dot
//! product, all a few f32 roundings from the reference.

mod common;
use common::{ctx, Golden};
use fewlabels::ops::embedding as emb;
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

#[test]
fn embedding_forward() {
    let g = Golden::load("embedding");
    for c in g.cases("embedding_") {
        let table = g.tensor(&format!("{c}/table"));
        let ids = g.tensor(&format!("{c}/ids"));
        let y = ctx().run(|r| emb::embedding(r, &table, &ids)).unwrap();
        check(&g, &format!("{c}/y"), &y);
    }
}

#[test]
fn embedding_backward() {
    let g = Golden::load("embedding");
    for c in g.cases("embedding_") {
        let ids = g.tensor(&format!("{c}/ids"));
        let dy = g.tensor(&format!("{c}/dy"));
        let k = g.shape(&format!("{c}/table"))[0];
        let dtable = ctx()
            .run(|r| emb::embedding_backward(r, &ids, &dy, k))
            .unwrap();
        check(&g, &format!("{c}/dtable"), &dtable);
    }
}

#[test]
fn mix_forward() {
    let g = Golden::load("embedding");
    for c in g.cases("mix_") {
        let table = g.tensor(&format!("{c}/table"));
        let a = g.tensor(&format!("{c}/ids_a"));
        let b = g.tensor(&format!("{c}/ids_b"));
        let t = g.tensor(&format!("{c}/t"));
        let y = ctx()
            .run(|r| emb::embedding_mix(r, &table, &a, &b, &t))
            .unwrap();
        check(&g, &format!("{c}/y"), &y);
    }
}

#[test]
fn mix_backward() {
    let g = Golden::load("embedding");
    for c in g.cases("mix_") {
        let table = g.tensor(&format!("{c}/table"));
        let a = g.tensor(&format!("{c}/ids_a"));
        let b = g.tensor(&format!("{c}/ids_b"));
        let t = g.tensor(&format!("{c}/t"));
        let dy = g.tensor(&format!("{c}/dy"));
        let grads = ctx()
            .run(|r| emb::embedding_mix_backward(r, &table, &a, &b, &t, &dy))
            .unwrap();
        check(&g, &format!("{c}/dtable"), &grads.dtable);
        check(&g, &format!("{c}/dt"), &grads.dt);
    }
}

/// Ids outside [0, K) read zero rows and receive no gradient.
#[test]
fn out_of_range_ids() {
    let c = ctx();
    let table = Tensor::from_f32(c, &[3, 2], &[1., 2., 3., 4., 5., 6.]).unwrap();
    let ids = Tensor::from_i32(c, &[4], &[2, 3, -1, 2]).unwrap();
    let dy = Tensor::from_f32(c, &[4, 2], &[1., 1., 10., 10., 100., 100., 2., 3.]).unwrap();
    let (y, dtable) = c
        .run(|r| {
            Ok((
                emb::embedding(r, &table, &ids)?,
                emb::embedding_backward(r, &ids, &dy, 3)?,
            ))
        })
        .unwrap();
    assert_eq!(y.to_f32(c).unwrap(), [5., 6., 0., 0., 0., 0., 5., 6.]);
    assert_eq!(dtable.to_f32(c).unwrap(), [0., 0., 0., 0., 3., 4.]);

    let ids_b = Tensor::from_i32(c, &[4], &[0, 0, 7, -5]).unwrap();
    let t = Tensor::from_f32(c, &[4], &[0.5, 0.5, 0.5, 0.25]).unwrap();
    let (y, grads) = c
        .run(|r| {
            Ok((
                emb::embedding_mix(r, &table, &ids, &ids_b, &t)?,
                emb::embedding_mix_backward(r, &table, &ids, &ids_b, &t, &dy)?,
            ))
        })
        .unwrap();
    assert_eq!(y.to_f32(c).unwrap(), [3., 4., 0.5, 1., 0., 0., 3.75, 4.5]);
    assert_eq!(
        grads.dtable.to_f32(c).unwrap(),
        [5.5, 5.5, 0., 0., 2., 2.75]
    );
    // dt = dy . (E[b] - E[a]) with out-of-range rows read as zero.
    assert_eq!(grads.dt.to_f32(c).unwrap(), [-8., 30., 0., -28.]);
}

#[test]
fn bad_calls_return_err() {
    let c = ctx();
    let table = Tensor::zeros(c, &[7, 5]).unwrap();
    let ids = Tensor::from_i32(c, &[3], &[0, 1, 2]).unwrap();
    let ids_f = Tensor::zeros(c, &[3]).unwrap();
    let ids_2d = Tensor::from_i32(c, &[3, 1], &[0, 1, 2]).unwrap();
    let t = Tensor::zeros(c, &[3]).unwrap();
    let t4 = Tensor::zeros(c, &[4]).unwrap();
    let dy = Tensor::zeros(c, &[3, 5]).unwrap();
    let dy_bad = Tensor::zeros(c, &[4, 5]).unwrap();
    let table_1d = Tensor::zeros(c, &[35]).unwrap();
    let mut r = c.recorder();
    assert!(emb::embedding(&mut r, &table, &ids_f).is_err());
    assert!(emb::embedding(&mut r, &table, &ids_2d).is_err());
    assert!(emb::embedding(&mut r, &table_1d, &ids).is_err());
    assert!(emb::embedding(&mut r, &ids_f, &ids).is_err());
    assert!(emb::embedding_backward(&mut r, &ids, &dy_bad, 7).is_err());
    assert!(emb::embedding_backward(&mut r, &ids, &dy, 0).is_err());
    assert!(emb::embedding_mix(&mut r, &table, &ids, &ids, &t4).is_err());
    assert!(emb::embedding_mix(&mut r, &table, &ids, &ids_f, &t).is_err());
    assert!(emb::embedding_mix_backward(&mut r, &table, &ids, &ids, &t, &dy_bad).is_err());
    assert!(emb::embedding_mix_backward(&mut r, &table, &ids, &ids, &t, &dy).is_ok());
    assert!(emb::embedding(&mut r, &table, &ids).is_ok());
    r.submit().unwrap();
}
