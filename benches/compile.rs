//! What compiling a kernel costs on this adapter: `n` small kernels as `n` pipelines, against
//! one pipeline whose body picks among the same `n` by a value it reads from a storage buffer
//! (lavapipe folds uniform values that decide branches into the shader at dispatch and would
//! compile only the case taken; a value in a storage buffer it cannot fold). Each kernel is
//! dispatched once with zero workgroups, which is when lavapipe compiles it. Every kernel
//! adds a constant that differs from compile to compile, so Mesa's disk cache never has it:
//! every compile is a first one.
//!
//! `cargo bench --bench compile` (prints the times; docs/PERFORMANCE.md quotes them). Under
//! `cargo test --all-targets` it runs once with two kernels, so it cannot rot.

use fewlabels::{Context, Result};
use std::time::Instant;

/// A small elementwise body, different for each `i`.
fn body(i: usize) -> String {
    format!(
        "v = a[j] * {}.0 + b[j] * {}.5 - sqrt(abs(a[j])) * {}.25;",
        i + 1,
        i,
        i + 2
    )
}

/// WGSL with `n` kernels `k0..` (`merged`: one kernel `k0` with a case per body).
fn module(n: usize, merged: bool, salt: u32) -> String {
    let mut s = String::from(
        "@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> o: array<f32>;
@group(0) @binding(3) var<storage, read> pick: array<u32>;
",
    );
    let head = "(@builtin(global_invocation_id) g: vec3<u32>) {\n    let j = g.x % 16u;\n    var v = 0.0;\n";
    if merged {
        s += &format!("@compute @workgroup_size(64)\nfn k0{head}    switch pick[0] {{\n");
        for i in 0..n {
            s += &format!("        case {i}u: {{ {} }}\n", body(i));
        }
        s += &format!("        default: {{}}\n    }}\n    o[j] = v + f32({salt}u);\n}}\n");
    } else {
        for i in 0..n {
            s += &format!(
                "@compute @workgroup_size(64)\nfn k{i}{head}    {}\n    o[j] = v + f32(pick[0] ^ {salt}u);\n}}\n",
                body(i)
            );
        }
    }
    s
}

/// Milliseconds to create and first dispatch every kernel of `module(n, merged)`.
fn compile_ms(ctx: &Context, n: usize, merged: bool) -> f64 {
    let dev = &ctx.device;
    let salt = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let buf = || {
        dev.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: 256,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        })
    };
    let bufs = [buf(), buf(), buf(), buf()];
    let start = Instant::now();
    let m = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: None,
        source: wgpu::ShaderSource::Wgsl(module(n, merged, salt).into()),
    });
    let kernels = if merged { 1 } else { n };
    for i in 0..kernels {
        let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: None,
            layout: None,
            module: &m,
            entry_point: Some(&format!("k{i}")),
            compilation_options: Default::default(),
            cache: None,
        });
        let entries: Vec<wgpu::BindGroupEntry> = bufs
            .iter()
            .enumerate()
            .map(|(b, buf)| wgpu::BindGroupEntry {
                binding: b as u32,
                resource: buf.as_entire_binding(),
            })
            .collect();
        let group = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut enc = dev.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(0, 0, 0);
        }
        ctx.queue.submit([enc.finish()]);
        let _ = dev.poll(wgpu::PollType::wait_indefinitely());
    }
    start.elapsed().as_secs_f64() * 1e3
}

fn main() -> Result<()> {
    let full = std::env::args().any(|a| a == "--bench");
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let ctx = Context::new()?;
    println!("adapter: {}", ctx.description);
    let (sizes, rounds): (&[usize], usize) = if full { (&[1, 10, 20], 3) } else { (&[2], 1) };
    println!("| kernels | as separate pipelines, ms | as one pipeline, ms |\n|---|---|---|");
    for &n in sizes {
        let sep: Vec<String> = (0..rounds)
            .map(|_| format!("{:.1}", compile_ms(&ctx, n, false)))
            .collect();
        let one: Vec<String> = (0..rounds)
            .map(|_| format!("{:.1}", compile_ms(&ctx, n, true)))
            .collect();
        println!("| {n} | {} | {} |", sep.join(", "), one.join(", "));
    }
    ctx.check()
}
