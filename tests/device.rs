//! The device context: adapter choice, errors, a host-owned device, the buffer pool, and
//! the recorder's checks. These need an adapter (lavapipe is enough).

mod common;
use common::ctx;
use fewlabels::{Context, DType, Error, Tensor};

#[test]
fn adapter_filter_that_matches_nothing_gives_an_install_hint() {
    let err = Context::with_options(None, Some("no-such-adapter-name-xyz"))
        .err()
        .expect("a filter that matches nothing must fail");
    let msg = err.to_string();
    assert!(matches!(err, Error::NoAdapter(_)), "{msg}");
    assert!(msg.contains("mesa-vulkan-drivers"), "{msg}");
}

#[test]
fn unknown_backend_is_refused() {
    let err = Context::with_options(Some("directx9"), None).err().unwrap();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

#[test]
fn host_owned_device_runs_ops() {
    // A host application opens its own device and hands it over.
    let own = ctx();
    let adapter = own
        .adapter
        .clone()
        .expect("context opened by us has an adapter");
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("host"),
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .unwrap();
    let host = Context::from_device(device, queue, Some(adapter));
    let x = Tensor::from_f32(&host, &[2, 3], &[-1.0, 2.0, -3.0, 4.0, 0.5, -0.5]).unwrap();
    let y = host
        .run(|r| fewlabels::ops::elementwise::relu(r, &x))
        .unwrap();
    assert_eq!(y.to_f32(&host).unwrap(), vec![0.0, 2.0, 0.0, 4.0, 0.5, 0.0]);
}

#[test]
fn upload_download_roundtrip_and_dtypes() {
    let c = ctx();
    let v: Vec<f32> = (0..1000).map(|i| i as f32 * 0.37 - 50.0).collect();
    let t = Tensor::from_f32(c, &[10, 100], &v).unwrap();
    assert_eq!(t.to_f32(c).unwrap(), v);
    assert!(
        t.to_i32(c).is_err(),
        "an f32 tensor must not read back as i32"
    );
    let ids = Tensor::from_i32(c, &[4], &[3, -1, 0, 7]).unwrap();
    assert_eq!(ids.dtype(), DType::I32);
    assert_eq!(ids.to_i32(c).unwrap(), vec![3, -1, 0, 7]);
    assert!(Tensor::from_f32(c, &[3, 3], &v[..8]).is_err());
    let t2 = t.reshape(&[1000]).unwrap();
    assert!(t.reshape(&[999]).is_err());
    t2.write_f32(c, &vec![1.5; 1000]).unwrap();
    assert_eq!(t.to_f32(c).unwrap(), vec![1.5; 1000]);
}

#[test]
fn pool_reuses_transient_buffers() {
    let c = Context::new().unwrap();
    let x = Tensor::full(&c, &[64, 64], 1.0).unwrap();
    let y = c
        .run(|r| fewlabels::ops::elementwise::scale(r, &x, 2.0))
        .unwrap();
    assert_eq!(y.to_f32(&c).unwrap()[0], 2.0);
    assert_eq!(c.pool_free_bytes(), 0);
    drop(y);
    let freed = c.pool_free_bytes();
    assert!(freed >= 64 * 64 * 4, "{freed}");
    let z = c
        .run(|r| fewlabels::ops::elementwise::scale(r, &x, 3.0))
        .unwrap();
    assert_eq!(c.pool_free_bytes(), 0, "the freed buffer is taken again");
    assert_eq!(z.to_f32(&c).unwrap()[5], 3.0);
}

/// Kernels that read tensors as textures (the CPU-adapter kernels) copy each input into a
/// texture; a recorder reuses its textures from one dispatch to the next, and two inputs of
/// one dispatch get two textures.
#[test]
fn recorder_reuses_textures() {
    use fewlabels::ops::elementwise as ew;
    let c = Context::new().unwrap();
    let x = Tensor::from_f32(&c, &[4, 1024], &vec![-1.5; 4096]).unwrap();
    let dy = Tensor::from_f32(&c, &[4, 1024], &vec![-2.0; 4096]).unwrap();
    let before = c.textures_created();
    let (outs, dx) = c
        .run(|r| {
            r.set_cpu_kernels(true);
            let mut outs = Vec::new();
            let mut h = x.clone();
            for _ in 0..10 {
                h = ew::scale(r, &h, -1.0)?;
                outs.push(h.clone());
            }
            // Two inputs of one size in one dispatch: two textures (x = 1.5 > 0, so dx = dy).
            let dx = ew::relu_backward(r, &outs[0], &dy)?;
            Ok((outs, dx))
        })
        .unwrap();
    let created = c.textures_created() - before;
    // One for the chain of scales, a second for relu_backward's other input.
    assert_eq!(created, 2, "textures for 11 dispatches of one size");
    let all = |t: &Tensor, want: f32| t.to_f32(&c).unwrap().iter().all(|&v| v == want);
    for (i, o) in outs.iter().enumerate() {
        let want = if i % 2 == 0 { 1.5 } else { -1.5 };
        assert!(all(o, want), "step {i} is not {want}");
    }
    assert!(
        all(&dx, -2.0),
        "relu_backward read one texture for both inputs"
    );
}

#[test]
fn oversized_tensor_is_an_error_not_a_crash() {
    let c = ctx();
    let too_big = (c.max_binding_bytes() / 4 + 1) as usize;
    let err = Tensor::empty(c, &[too_big], DType::F32).unwrap_err();
    assert!(matches!(err, Error::Shape(_)), "{err}");
    let err = Tensor::empty(c, &[usize::MAX, 4], DType::F32).unwrap_err();
    assert!(matches!(err, Error::Shape(_)), "{err}");
}

#[test]
fn recorder_reports_bad_dispatches() {
    let c = ctx();
    let x = Tensor::full(c, &[8], 1.0).unwrap();
    let mut r = c.recorder();
    // Missing binding.
    let e = r
        .dispatch(
            "elementwise",
            "relu_forward",
            &[8, 0],
            &[(1, &x)],
            [1, 1, 1],
        )
        .unwrap_err();
    assert!(e.to_string().contains("binding 3"), "{e}");
    // Unknown shader and entry point.
    assert!(r.dispatch("nope", "x", &[], &[], [1, 1, 1]).is_err());
    assert!(r
        .dispatch("elementwise", "nope", &[], &[], [1, 1, 1])
        .is_err());
    // One buffer bound twice.
    let e = r
        .dispatch(
            "elementwise",
            "add",
            &[8, 0],
            &[(1, &x), (2, &x), (3, &x)],
            [1, 1, 1],
        )
        .unwrap_err();
    assert!(e.to_string().contains("share one buffer"), "{e}");
    r.submit().unwrap();
}

#[test]
fn shape_mismatch_is_an_error() {
    let c = ctx();
    let a = Tensor::full(c, &[3, 4], 1.0).unwrap();
    let b = Tensor::full(c, &[4, 3], 1.0).unwrap();
    let e = c
        .run(|r| fewlabels::ops::elementwise::add(r, &a, &b))
        .unwrap_err();
    assert!(matches!(e, Error::Shape(_)), "{e}");
}

#[test]
fn one_buffer_may_be_read_through_two_bindings() {
    let c = ctx();
    let x = Tensor::from_f32(c, &[3], &[1.0, 2.0, 3.0]).unwrap();
    let y = c
        .run(|r| fewlabels::ops::elementwise::mul(r, &x, &x))
        .unwrap();
    assert_eq!(y.to_f32(c).unwrap(), vec![1.0, 4.0, 9.0]);
}

/// `prepare_all` (what `Model::load` and `Trainer::new` call, except where the first submit
/// compiles ahead) compiles the kernels this adapter's ops pick, so a model's passes compile
/// nothing more; the storage fallback of a CPU adapter (or the texture kernels on a GPU)
/// compile on first use and give the same result.
#[test]
fn load_compiles_the_kernels_the_adapter_picks() {
    let own = ctx();
    let adapter = own.adapter.clone().expect("an adapter");
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("fresh"),
        required_limits: adapter.limits(),
        required_features: own.device.features(),
        ..Default::default()
    }))
    .unwrap();
    let c = Context::from_device(device, queue, Some(adapter));
    let n = c.prepare_all().unwrap();
    assert_eq!(n, c.compiled_kernels());
    assert_eq!(
        c.prepare_all().unwrap(),
        0,
        "a second call compiles nothing"
    );

    // A conv forward and backward on the adapter's own kernels: nothing new to compile.
    let cin = 8;
    let cout = 16;
    let x: Vec<f32> = (0..2 * 9 * 9 * cin)
        .map(|i| (i % 7) as f32 * 0.1 - 0.3)
        .collect();
    let w: Vec<f32> = (0..cout * cin * 9)
        .map(|i| (i % 5) as f32 * 0.05 - 0.1)
        .collect();
    let xt = Tensor::from_f32(&c, &[2, 9, 9, cin], &x).unwrap();
    let wt = Tensor::from_f32(&c, &[cout, cin, 3, 3], &w).unwrap();
    let conv = |cpu: bool| {
        let y = c
            .run(|r| {
                r.set_cpu_kernels(cpu);
                let y = fewlabels::ops::conv::conv2d(r, &xt, &wt, None)?;
                let g = fewlabels::ops::conv::conv2d_backward(r, &xt, &wt, &y, false)?;
                fewlabels::ops::rearrange::concat_batch(
                    r,
                    &[
                        &y.reshape(&[y.numel()])?,
                        &g.dx.reshape(&[x.len()])?,
                        &g.dw.reshape(&[w.len()])?,
                    ],
                )
            })
            .unwrap();
        y.to_f32(&c).unwrap()
    };
    let own_kind = c.cpu_kernels();
    let a = conv(own_kind);
    assert_eq!(
        c.compiled_kernels(),
        n,
        "the adapter's own conv kernels were not ready"
    );
    // The other kernel set compiles now, and agrees.
    let b = conv(!own_kind);
    assert!(c.compiled_kernels() > n);
    let scale = a.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (i, (p, q)) in a.iter().zip(&b).enumerate() {
        assert!((p - q).abs() <= 1e-5 * scale, "value {i}: {p} vs {q}");
    }
}

/// `Recorder::on_submit` runs after a submit, and never for a recorder dropped unsubmitted.
#[test]
fn on_submit_runs_only_after_a_submit() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let c = ctx();
    let calls = AtomicUsize::new(0);
    let mut rec = c.recorder();
    rec.on_submit(|| {
        calls.fetch_add(1, Ordering::SeqCst);
    });
    drop(rec);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let mut rec = c.recorder();
    rec.on_submit(|| {
        calls.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    rec.submit().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
