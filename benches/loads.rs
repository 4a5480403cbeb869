//! What one load costs on this adapter, by where the data lives: a storage buffer (indexed per
//! lane, or with the same index on every lane), workgroup memory, a uniform buffer, and a
//! texture read with `textureLoad` (sampled, `texture_per_lane`, or a read-only storage
//! texture, `image_per_lane`). Each kernel makes every invocation load `k` vec4s and do
//! four vec4 multiply-adds per load; `none` does the arithmetic without loads. `uniform_same_index`
//! loads the same uniform element in every invocation. `store_storage`
//! and `store_texture` store one vec4 per iteration to a storage buffer or a storage texture.
//!
//! `cargo bench --bench loads` (prints a table; docs/PERFORMANCE.md quotes it). Under
//! `cargo test --all-targets` it runs once at a tiny size, so it cannot rot.

use fewlabels::{Context, Result};
use std::time::Instant;

const SHADER: &str = r#"
@group(0) @binding(0) var<uniform> k: vec4<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> u: array<vec4<f32>, 4096>;
@group(0) @binding(4) var t: texture_2d<f32>;
@group(0) @binding(5) var<storage, read_write> big: array<vec4<f32>>;
@group(0) @binding(6) var st: texture_storage_2d<rgba32float, write>;
@group(0) @binding(7) var rt: texture_storage_2d<rgba32float, read>;
var<workgroup> shared_x: array<vec4<f32>, 1024>;

fn mac4(v: vec4<f32>, a: ptr<function, array<vec4<f32>, 4>>) {
    (*a)[0] = fma(v, (*a)[0], (*a)[0]);
    (*a)[1] = fma(v, (*a)[1], (*a)[1]);
    (*a)[2] = fma(v, (*a)[2], (*a)[2]);
    (*a)[3] = fma(v, (*a)[3], (*a)[3]);
}

fn done(g: u32, a: array<vec4<f32>, 4>) {
    y[g] = a[0] + a[1] + a[2] + a[3];
}

@compute @workgroup_size(16)
fn none(@builtin(global_invocation_id) g: vec3<u32>) {
    var a = array<vec4<f32>, 4>(vec4(f32(g.x)), vec4(1.0), vec4(2.0), vec4(3.0));
    for (var i = 0u; i < k.x; i++) { mac4(vec4<f32>(f32(i)), &a); }
    done(g.x, a);
}

@compute @workgroup_size(16)
fn storage_per_lane(@builtin(global_invocation_id) g: vec3<u32>) {
    var a = array<vec4<f32>, 4>(vec4(f32(g.x)), vec4(1.0), vec4(2.0), vec4(3.0));
    for (var i = 0u; i < k.x; i++) { mac4(x[(g.x * 64u + i) & 4095u], &a); }
    done(g.x, a);
}

@compute @workgroup_size(16)
fn storage_same_index(@builtin(global_invocation_id) g: vec3<u32>) {
    var a = array<vec4<f32>, 4>(vec4(f32(g.x)), vec4(1.0), vec4(2.0), vec4(3.0));
    for (var i = 0u; i < k.x; i++) { mac4(x[i & 4095u], &a); }
    done(g.x, a);
}

@compute @workgroup_size(16)
fn workgroup_same_index(@builtin(global_invocation_id) g: vec3<u32>, @builtin(local_invocation_index) l: u32) {
    for (var j = l; j < 1024u; j += 16u) { shared_x[j] = x[j]; }
    workgroupBarrier();
    var a = array<vec4<f32>, 4>(vec4(f32(g.x)), vec4(1.0), vec4(2.0), vec4(3.0));
    for (var i = 0u; i < k.x; i++) { mac4(shared_x[i & 1023u], &a); }
    done(g.x, a);
}

@compute @workgroup_size(16)
fn uniform_per_lane(@builtin(global_invocation_id) g: vec3<u32>) {
    var a = array<vec4<f32>, 4>(vec4(f32(g.x)), vec4(1.0), vec4(2.0), vec4(3.0));
    for (var i = 0u; i < k.x; i++) { mac4(u[(g.x * 64u + i) & 4095u], &a); }
    done(g.x, a);
}

@compute @workgroup_size(16)
fn uniform_same_index(@builtin(global_invocation_id) g: vec3<u32>) {
    var a = array<vec4<f32>, 4>(vec4(f32(g.x)), vec4(1.0), vec4(2.0), vec4(3.0));
    for (var i = 0u; i < k.x; i++) { mac4(u[i & 4095u], &a); }
    done(g.x, a);
}

@compute @workgroup_size(16)
fn texture_per_lane(@builtin(global_invocation_id) g: vec3<u32>) {
    var a = array<vec4<f32>, 4>(vec4(f32(g.x)), vec4(1.0), vec4(2.0), vec4(3.0));
    for (var i = 0u; i < k.x; i++) {
        let j = (g.x * 64u + i) & 4095u;
        mac4(textureLoad(t, vec2<u32>(j & 63u, j >> 6u), 0), &a);
    }
    done(g.x, a);
}

@compute @workgroup_size(16)
fn image_per_lane(@builtin(global_invocation_id) g: vec3<u32>) {
    var a = array<vec4<f32>, 4>(vec4(f32(g.x)), vec4(1.0), vec4(2.0), vec4(3.0));
    for (var i = 0u; i < k.x; i++) {
        let j = (g.x * 64u + i) & 4095u;
        mac4(textureLoad(rt, vec2<u32>(j & 63u, j >> 6u)), &a);
    }
    done(g.x, a);
}

@compute @workgroup_size(16)
fn store_storage(@builtin(global_invocation_id) g: vec3<u32>) {
    var a = array<vec4<f32>, 4>(vec4(f32(g.x)), vec4(1.0), vec4(2.0), vec4(3.0));
    for (var i = 0u; i < k.x; i++) {
        mac4(vec4<f32>(f32(i)), &a);
        big[(g.x * 64u + i) & 4095u] = a[0];
    }
    done(g.x, a);
}

@compute @workgroup_size(16)
fn store_texture(@builtin(global_invocation_id) g: vec3<u32>) {
    var a = array<vec4<f32>, 4>(vec4(f32(g.x)), vec4(1.0), vec4(2.0), vec4(3.0));
    for (var i = 0u; i < k.x; i++) {
        mac4(vec4<f32>(f32(i)), &a);
        let j = (g.x * 64u + i) & 4095u;
        textureStore(st, vec2<u32>(j & 63u, j >> 6u), a[0]);
    }
    done(g.x, a);
}
"#;

const ENTRIES: [&str; 10] = [
    "none",
    "storage_per_lane",
    "storage_same_index",
    "workgroup_same_index",
    "uniform_per_lane",
    "uniform_same_index",
    "texture_per_lane",
    "image_per_lane",
    "store_storage",
    "store_texture",
];

fn main() -> Result<()> {
    let full = std::env::args().any(|a| a == "--bench");
    let (groups, k, reps) = if full {
        (256u32, 4096u32, 5)
    } else {
        (4, 16, 1)
    };
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let ctx = Context::new()?;
    let dev = &ctx.device;
    use wgpu::util::DeviceExt;
    let data: Vec<f32> = (0..4096 * 4).map(|i| (i % 7) as f32 * 1e-3).collect();
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::UNIFORM;
    let x = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: bytemuck::cast_slice(&data),
        usage,
    });
    let y = dev.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: groups as u64 * 16 * 16,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let kbuf = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: bytemuck::cast_slice(&[k, 0, 0, 0]),
        usage: wgpu::BufferUsages::UNIFORM,
    });
    let tex = dev.create_texture_with_data(
        &ctx.queue,
        &wgpu::TextureDescriptor {
            label: None,
            size: wgpu::Extent3d {
                width: 64,
                height: 64,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::STORAGE_BINDING,
            view_formats: &[],
        },
        wgpu::util::TextureDataOrder::LayerMajor,
        bytemuck::cast_slice(&data),
    );
    let view = tex.create_view(&Default::default());
    let big = dev.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 4096 * 16,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let out_tex = dev.create_texture(&wgpu::TextureDescriptor {
        label: None,
        size: wgpu::Extent3d {
            width: 64,
            height: 64,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Float,
        usage: wgpu::TextureUsages::STORAGE_BINDING,
        view_formats: &[],
    });
    let out_view = out_tex.create_view(&Default::default());
    let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("loads"),
        source: wgpu::ShaderSource::Wgsl(SHADER.into()),
    });
    println!("adapter: {}", ctx.description);
    println!(
        "{} workgroups x 16 invocations x {k} vec4 loads each ({} loads), median of {reps}:",
        groups,
        groups as u64 * 16 * k as u64
    );
    println!("| load | ms | ns per load (wall, over `none`) |\n|---|---|---|");
    let mut base = 0.0;
    for entry in ENTRIES {
        let pipe = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        let layout = pipe.get_bind_group_layout(0);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: kbuf.as_entire_binding(),
        }];
        entries.push(wgpu::BindGroupEntry {
            binding: 2,
            resource: y.as_entire_binding(),
        });
        match entry {
            "storage_per_lane" | "storage_same_index" | "workgroup_same_index" => {
                entries.push(wgpu::BindGroupEntry {
                    binding: 1,
                    resource: x.as_entire_binding(),
                })
            }
            "uniform_per_lane" | "uniform_same_index" => entries.push(wgpu::BindGroupEntry {
                binding: 3,
                resource: x.as_entire_binding(),
            }),
            "texture_per_lane" => entries.push(wgpu::BindGroupEntry {
                binding: 4,
                resource: wgpu::BindingResource::TextureView(&view),
            }),
            "image_per_lane" => entries.push(wgpu::BindGroupEntry {
                binding: 7,
                resource: wgpu::BindingResource::TextureView(&view),
            }),
            "store_storage" => entries.push(wgpu::BindGroupEntry {
                binding: 5,
                resource: big.as_entire_binding(),
            }),
            "store_texture" => entries.push(wgpu::BindGroupEntry {
                binding: 6,
                resource: wgpu::BindingResource::TextureView(&out_view),
            }),
            _ => {}
        }
        let bg = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &entries,
        });
        let mut times = Vec::new();
        for rep in 0..=reps {
            let t = Instant::now();
            let mut enc = dev.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipe);
                pass.set_bind_group(0, &bg, &[]);
                pass.dispatch_workgroups(groups, 1, 1);
            }
            ctx.queue.submit([enc.finish()]);
            ctx.wait()?;
            if rep > 0 {
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        ctx.check()?;
        times.sort_by(f64::total_cmp);
        let ms = times[times.len() / 2];
        if entry == "none" {
            base = ms;
        }
        let loads = groups as f64 * 16.0 * k as f64;
        println!(
            "| {entry} | {ms:.1} | {:.2} |",
            (ms - base).max(0.0) * 1e6 / loads
        );
    }
    copy_speed(&ctx, reps)
}

/// How fast the device copies a buffer into an rgba32float texture of 4096-texel rows (what
/// `Recorder::dispatch` does before a kernel reads a tensor as a texture), against a
/// buffer-to-buffer copy of the same bytes.
fn copy_speed(ctx: &Context, reps: usize) -> Result<()> {
    let dev = &ctx.device;
    let rows = 128u32;
    let bytes = rows as u64 * 4096 * 16;
    let usage = wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let make = || {
        dev.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes,
            usage,
            mapped_at_creation: false,
        })
    };
    let (src, dst) = (make(), make());
    let tex = fewlabels::kernel::tensor_texture(dev, rows);
    println!(
        "\n| copy of {} MiB | ms | GB/s |\n|---|---|---|",
        bytes >> 20
    );
    for to_texture in [false, true] {
        let mut times = Vec::new();
        for rep in 0..=reps {
            let t = Instant::now();
            let mut enc = dev.create_command_encoder(&Default::default());
            if to_texture {
                enc.copy_buffer_to_texture(
                    wgpu::TexelCopyBufferInfo {
                        buffer: &src,
                        layout: wgpu::TexelCopyBufferLayout {
                            offset: 0,
                            bytes_per_row: Some(4096 * 16),
                            rows_per_image: None,
                        },
                    },
                    tex.as_image_copy(),
                    wgpu::Extent3d {
                        width: 4096,
                        height: rows,
                        depth_or_array_layers: 1,
                    },
                );
            } else {
                enc.copy_buffer_to_buffer(&src, 0, &dst, 0, bytes);
            }
            ctx.queue.submit([enc.finish()]);
            ctx.wait()?;
            if rep > 0 {
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        times.sort_by(f64::total_cmp);
        let ms = times[times.len() / 2];
        let what = if to_texture {
            "buffer to texture"
        } else {
            "buffer to buffer"
        };
        println!(
            "| {what} | {ms:.2} | {:.2} |",
            bytes as f64 / (ms * 1e-3) / 1e9
        );
    }
    Ok(())
}
