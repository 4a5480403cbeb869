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

/// Kernels that read tensors as textures (the CPU-adapter GEMMs here) copy each input into a
/// texture; a recorder reuses its textures from one dispatch to the next, two inputs of one
/// dispatch get two textures, and a tensor read again is copied again only after a write.
#[test]
fn recorder_reuses_textures() {
    use fewlabels::ops::gemm;
    let c = Context::new().unwrap();
    if !c.subgroups() {
        eprintln!("skipped: the texture-reading GEMMs need subgroups");
        return;
    }
    let n = 64;
    // h = 1 everywhere; w = 1/n, so h w = h; w2 = -w flips the sign.
    let h0 = Tensor::from_f32(&c, &[n, n], &vec![1.0; n * n]).unwrap();
    let w = Tensor::from_f32(&c, &[n, n], &vec![1.0 / n as f32; n * n]).unwrap();
    let w2 = Tensor::from_f32(&c, &[n, n], &vec![-1.0 / n as f32; n * n]).unwrap();
    let textures = c.textures_created();
    let copies = c.texture_copies();
    let outs = c
        .run(|r| {
            r.set_cpu_kernels(true);
            r.set_subgroups(true);
            let mut outs = Vec::new();
            let mut h = h0.clone();
            for i in 0..10 {
                if i == 5 {
                    // A write into w: the next product must copy it again.
                    r.copy(&w2, &w)?;
                }
                h = gemm::matmul(r, &h, &w, false, false, None)?;
                outs.push(h.clone());
            }
            Ok(outs)
        })
        .unwrap();
    // One texture for the chain of h, a second for w.
    assert_eq!(
        c.textures_created() - textures,
        2,
        "textures for 10 products"
    );
    // Ten copies of h, w twice (before the first product and after the write).
    assert_eq!(c.texture_copies() - copies, 12, "copies for 10 products");
    for (i, o) in outs.iter().enumerate() {
        let want = if i >= 5 && i % 2 == 1 { -1.0 } else { 1.0 };
        let v = o.to_f32(&c).unwrap();
        assert!(
            v.iter().all(|&x| (x - want).abs() < 1e-5),
            "product {i} is not {want}: {}",
            v[0]
        );
    }
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

/// What lavapipe charges for the memory operations the Winograd transforms are made of: a
/// 9.4 MB buffer-to-texture and buffer-to-buffer copy, and 16384 lanes x 36 vec4s stored to a
/// storage buffer, stored to a storage texture, loaded from a storage buffer and fetched from
/// a texture. Median wall ms of 8 submits each, three rounds; nothing is asserted. Run with
/// `cargo test --release --test device -- --ignored --nocapture memory_op_speed`.
#[test]
#[ignore]
fn memory_op_speed() {
    let c = Context::new().unwrap();
    let d = &c.device;
    const LANES: u32 = 16384;
    let bytes = 36 * LANES as u64 * 16;
    let rows = (bytes / 16 / 4096) as u32;
    let buffer = |usage| {
        d.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes * 2,
            usage,
            mapped_at_creation: false,
        })
    };
    let copy_use = wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let buf = buffer(wgpu::BufferUsages::STORAGE | copy_use);
    let buf2 = buffer(copy_use);
    // Textures as the runtime makes them for kernels that read tensors.
    let store_tex = fewlabels::kernel::tensor_texture(d, rows);
    let read_tex = fewlabels::kernel::tensor_texture(d, rows);
    let src = r#"
@group(0) @binding(0) var<storage, read_write> buf: array<vec4<f32>>;
@group(0) @binding(1) var stex: texture_storage_2d<rgba32float, write>;
@group(0) @binding(2) var rtex: texture_2d<f32>;
const LANES: u32 = 16384u;
fn val(i: u32, k: u32) -> vec4<f32> { return vec4<f32>(f32(i) * 0.5 + f32(k), f32(k), 1.0, 2.0); }
@compute @workgroup_size(64)
fn store_buffer(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var k = 0u; k < 36u; k++) { buf[k * LANES + gid.x] = val(gid.x, k); }
}
@compute @workgroup_size(64)
fn store_texture(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var k = 0u; k < 36u; k++) {
        let j = k * LANES + gid.x;
        textureStore(stex, vec2<u32>(j % 4096u, j / 4096u), val(gid.x, k));
    }
}
@compute @workgroup_size(64)
fn load_buffer(@builtin(global_invocation_id) gid: vec3<u32>) {
    var s = vec4<f32>(0.0);
    for (var k = 0u; k < 36u; k++) { s += buf[(k + 36u) * LANES + gid.x] * f32(k); }
    buf[gid.x] = s;
}
@compute @workgroup_size(64)
fn fetch_texture(@builtin(global_invocation_id) gid: vec3<u32>) {
    var s = vec4<f32>(0.0);
    for (var k = 0u; k < 36u; k++) {
        let j = k * LANES + gid.x;
        s += textureLoad(rtex, vec2<u32>(j % 4096u, j / 4096u), 0) * f32(k);
    }
    buf[gid.x] = s;
}
"#;
    let module = d.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: None,
        source: wgpu::ShaderSource::Wgsl(src.into()),
    });
    let entry = |binding, ty| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty,
        count: None,
    };
    let layout = d.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: None,
        entries: &[
            entry(
                0,
                wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: false },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
            ),
            entry(
                1,
                wgpu::BindingType::StorageTexture {
                    access: wgpu::StorageTextureAccess::WriteOnly,
                    format: wgpu::TextureFormat::Rgba32Float,
                    view_dimension: wgpu::TextureViewDimension::D2,
                },
            ),
            entry(
                2,
                wgpu::BindingType::Texture {
                    sample_type: wgpu::TextureSampleType::Float { filterable: false },
                    view_dimension: wgpu::TextureViewDimension::D2,
                    multisampled: false,
                },
            ),
        ],
    });
    let (sv, rv) = (
        store_tex.create_view(&Default::default()),
        read_tex.create_view(&Default::default()),
    );
    let group = d.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &layout,
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: buf.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: wgpu::BindingResource::TextureView(&sv),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: wgpu::BindingResource::TextureView(&rv),
            },
        ],
    });
    let pipeline_layout = d.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: None,
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    // Median ms of 8 submits of what `record` puts in an encoder, after one warm-up.
    let time = |record: &dyn Fn(&mut wgpu::CommandEncoder)| {
        let mut ms = Vec::new();
        for i in 0..9 {
            let mut e = d.create_command_encoder(&Default::default());
            record(&mut e);
            let t0 = std::time::Instant::now();
            c.queue.submit([e.finish()]);
            d.poll(wgpu::PollType::wait_indefinitely()).unwrap();
            if i > 0 {
                ms.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        ms.sort_by(|x, y| x.partial_cmp(y).unwrap());
        ms[ms.len() / 2]
    };
    for round in 1..=3 {
        let to_texture = time(&|e| {
            e.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: &buf,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: 0,
                        bytes_per_row: Some(4096 * 16),
                        rows_per_image: None,
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture: &read_tex,
                    mip_level: 0,
                    origin: wgpu::Origin3d::ZERO,
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d {
                    width: 4096,
                    height: rows,
                    depth_or_array_layers: 1,
                },
            )
        });
        let to_buffer = time(&|e| e.copy_buffer_to_buffer(&buf, 0, &buf2, 0, bytes));
        let mut line = format!(
            "round {round}: {bytes} bytes buffer->texture {to_texture:.2} ms, buffer->buffer \
             {to_buffer:.2} ms"
        );
        for name in [
            "store_buffer",
            "store_texture",
            "load_buffer",
            "fetch_texture",
        ] {
            let p = d.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: None,
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(name),
                compilation_options: Default::default(),
                cache: None,
            });
            let ms = time(&|e| {
                let mut pass = e.begin_compute_pass(&Default::default());
                pass.set_pipeline(&p);
                pass.set_bind_group(0, &group, &[]);
                pass.dispatch_workgroups(LANES / 64, 1, 1);
            });
            line += &format!(", {name} {ms:.2} ms");
        }
        println!("{line}");
    }
}

/// Timings of the streaming ops whose kernels session 17 changed (docs/PERFORMANCE.md): 20
/// elementwise ops (`add`, `relu_backward` alternating) at 1M and 4M floats, four softmax ops
/// (forward, backward, twice) on the attention rows of `fashion` and on narrow rows, and four
/// 2x resampling ops (`upsample2x` and its backward, twice), each batch in one submit; median
/// wall ms of 10 runs, nothing asserted. Run with `cargo test --release --test device --
/// --ignored --nocapture streaming_op_speed`.
#[test]
#[ignore]
fn streaming_op_speed() {
    use fewlabels::ops::{elementwise as ew, resample, softmax};
    let c = Context::new().unwrap();
    let time = |what: String, f: &dyn Fn(&mut fewlabels::Recorder) -> fewlabels::Result<Tensor>| {
        let mut ms = Vec::new();
        for i in 0..12 {
            let t0 = std::time::Instant::now();
            c.run(f).unwrap();
            c.wait().unwrap();
            if i > 1 {
                ms.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        ms.sort_by(f64::total_cmp);
        println!("{what}: median {:.2} ms", ms[ms.len() / 2]);
    };
    for n in [1usize << 20, 1 << 22] {
        let x = Tensor::from_f32(&c, &[n], &vec![0.5; n]).unwrap();
        let y = Tensor::from_f32(&c, &[n], &vec![0.25; n]).unwrap();
        time(format!("20 elementwise ops, {n} floats"), &|r| {
            let mut a = x.clone();
            for _ in 0..10 {
                a = ew::add(r, &a, &y)?;
                a = ew::relu_backward(r, &x, &a)?;
            }
            Ok(a)
        });
    }
    for (rows, cols) in [(64 * 256usize, 64usize), (224 * 64, 16)] {
        let x = Tensor::from_f32(&c, &[rows, cols], &vec![0.5; rows * cols]).unwrap();
        time(format!("4 softmax ops, {rows} x {cols}"), &|r| {
            let y = softmax::softmax(r, &x)?;
            let d = softmax::softmax_backward(r, &y, &x)?;
            let y2 = softmax::softmax(r, &d)?;
            softmax::softmax_backward(r, &y2, &x)
        });
    }
    for (n, h, ch) in [(64usize, 16usize, 64usize), (224, 16, 32)] {
        let x = Tensor::from_f32(&c, &[n, h, h, ch], &vec![0.5; n * h * h * ch]).unwrap();
        time(format!("4 resampling ops, N={n} {h}x{h}x{ch}"), &|r| {
            let u = resample::upsample2x(r, &x)?;
            let d = resample::upsample2x_backward(r, &u)?;
            let u2 = resample::upsample2x(r, &d)?;
            resample::upsample2x_backward(r, &u2)
        });
    }
}
