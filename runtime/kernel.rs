//! Kernels: the registry of WGSL sources, their validation and reflection through naga, a
//! cache of compiled pipelines, and the [`Recorder`] that records many dispatches into one
//! command encoder and submits them at once.
//!
//! Conventions every shader follows:
//! - `@group(0) @binding(0)` is a `var<uniform>` of 32-bit scalars (the `params` words of
//!   [`Recorder::dispatch`]); storage buffers use bindings 1 and up.
//! - An entry point may use any subset of the file's bindings; the runtime binds only those
//!   the entry point uses (found by naga), so one file can hold a forward and a backward pass.
//! - Large 1-D launches fold into x and y (see [`grid_1d`]); a kernel recovers its index as
//!   `gid.x + gid.y * num_workgroups.x * WORKGROUP_SIZE` and returns past the end.
//! - Workgroup memory is not zero-initialised (that option costs seconds of compile on GL).

use crate::device::Context;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Every WGSL file of the runtime, by name.
pub const SHADERS: &[(&str, &str)] = &[
    ("elementwise", include_str!("../shaders/elementwise.wgsl")),
    ("gemm", include_str!("../shaders/gemm.wgsl")),
    ("conv", include_str!("../shaders/conv.wgsl")),
    ("resample", include_str!("../shaders/resample.wgsl")),
    ("batchnorm", include_str!("../shaders/batchnorm.wgsl")),
    ("embedding", include_str!("../shaders/embedding.wgsl")),
    ("softmax", include_str!("../shaders/softmax.wgsl")),
    ("loss", include_str!("../shaders/loss.wgsl")),
    (
        "spectral_norm",
        include_str!("../shaders/spectral_norm.wgsl"),
    ),
    ("optim", include_str!("../shaders/optim.wgsl")),
    ("rearrange", include_str!("../shaders/rearrange.wgsl")),
];

fn source(shader: &str) -> Result<&'static str> {
    SHADERS
        .iter()
        .find(|(n, _)| *n == shader)
        .map(|(_, s)| *s)
        .ok_or_else(|| Error::InvalidArgument(format!("no shader named {shader:?}")))
}

/// Parse and validate one WGSL source with naga (no device needed).
pub fn validate_wgsl(name: &str, src: &str) -> Result<(naga::Module, naga::valid::ModuleInfo)> {
    let module = naga::front::wgsl::parse_str(src)
        .map_err(|e| Error::Format(format!("{name}.wgsl: {}", e.emit_to_string(src))))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .map_err(|e| Error::Format(format!("{name}.wgsl: {}", e.emit_to_string(src))))?;
    Ok((module, info))
}

/// How an entry point uses a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Access {
    Uniform,
    Read,
    Write,
}

/// One compiled entry point.
pub(crate) struct Kernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    /// Bindings of group 0 the entry point uses.
    used: Vec<(u32, Access)>,
}

struct ShaderEntry {
    module: wgpu::ShaderModule,
    naga: naga::Module,
    info: naga::valid::ModuleInfo,
}

/// Compiled shader modules and pipelines, built once per (file, entry point).
#[derive(Default)]
pub(crate) struct PipelineCache {
    shaders: Mutex<HashMap<&'static str, Arc<ShaderEntry>>>,
    kernels: Mutex<HashMap<(String, String), Arc<Kernel>>>,
}

impl PipelineCache {
    fn shader(&self, ctx: &Context, name: &str) -> Result<Arc<ShaderEntry>> {
        let src = source(name)?;
        let key = SHADERS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(n, _)| *n)
            .unwrap_or("");
        if let Some(s) = self
            .shaders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return Ok(s.clone());
        }
        let (naga, info) = validate_wgsl(name, src)?;
        let module = ctx
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
        let entry = Arc::new(ShaderEntry { module, naga, info });
        self.shaders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, entry.clone());
        Ok(entry)
    }

    pub(crate) fn get(&self, ctx: &Context, shader: &str, entry: &str) -> Result<Arc<Kernel>> {
        let key = (shader.to_string(), entry.to_string());
        if let Some(k) = self
            .kernels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(k.clone());
        }
        let s = self.shader(ctx, shader)?;
        let index = s
            .naga
            .entry_points
            .iter()
            .position(|e| e.name == entry && e.stage == naga::ShaderStage::Compute)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("{shader}.wgsl has no compute entry {entry:?}"))
            })?;
        let fi = s.info.get_entry_point(index);
        let mut used = Vec::new();
        for (handle, var) in s.naga.global_variables.iter() {
            if let Some(b) = &var.binding {
                if b.group == 0 && !fi[handle].is_empty() {
                    let access = match var.space {
                        naga::AddressSpace::Uniform => Access::Uniform,
                        naga::AddressSpace::Storage { access }
                            if access.contains(naga::StorageAccess::STORE) =>
                        {
                            Access::Write
                        }
                        _ => Access::Read,
                    };
                    used.push((b.binding, access));
                }
            }
        }
        used.sort();
        let pipeline = ctx
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&format!("{shader}::{entry}")),
                layout: None,
                module: &s.module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &[],
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        ctx.check()?;
        let layout = pipeline.get_bind_group_layout(0);
        let k = Arc::new(Kernel {
            pipeline,
            layout,
            used,
        });
        self.kernels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, k.clone());
        Ok(k)
    }
}

/// Workgroup counts for `n` threads in groups of `wg`, folded into x and y so that neither
/// exceeds 65535.
pub fn grid_1d(n: u64, wg: u32) -> [u32; 3] {
    let groups = n.div_ceil(wg as u64).max(1);
    if groups <= 65535 {
        [groups as u32, 1, 1]
    } else {
        [65535, groups.div_ceil(65535) as u32, 1]
    }
}

/// Records dispatches into one command encoder; [`Recorder::submit`] sends them in one
/// `queue.submit`.
pub struct Recorder<'a> {
    pub ctx: &'a Context,
    encoder: wgpu::CommandEncoder,
    dispatches: usize,
    /// Every tensor bound so far, kept out of the pool until the work is submitted.
    live: Vec<Arc<crate::tensor::Storage>>,
}

impl Context {
    /// Start recording.
    pub fn recorder(&self) -> Recorder<'_> {
        Recorder {
            ctx: self,
            encoder: self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("fewlabels"),
                }),
            dispatches: 0,
            live: Vec::new(),
        }
    }

    /// Record with `f`, submit once, and return what `f` returned.
    pub fn run<T>(&self, f: impl FnOnce(&mut Recorder) -> Result<T>) -> Result<T> {
        let mut rec = self.recorder();
        let out = f(&mut rec)?;
        rec.submit()?;
        Ok(out)
    }

    /// Compile a kernel now (pipelines are otherwise compiled on first use).
    pub fn prepare(&self, shader: &str, entry: &str) -> Result<()> {
        self.pipelines.get(self, shader, entry).map(|_| ())
    }
}

impl<'a> Recorder<'a> {
    /// Dispatches recorded so far.
    pub fn dispatch_count(&self) -> usize {
        self.dispatches
    }

    /// Record one dispatch of `shader::entry`. `params` fills the uniform at binding 0
    /// (f32 values as `f32::to_bits`); `bindings` pairs binding numbers with tensors.
    pub fn dispatch(
        &mut self,
        shader: &str,
        entry: &str,
        params: &[u32],
        bindings: &[(u32, &Tensor)],
        groups: [u32; 3],
    ) -> Result<()> {
        let ctx = self.ctx;
        let kernel = ctx.pipelines.get(ctx, shader, entry)?;
        let max = ctx.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            return Err(Error::Shape(format!(
                "{shader}::{entry}: {groups:?} workgroups exceed the device limit {max}"
            )));
        }
        if groups.contains(&0) {
            return Ok(());
        }
        let uniform = if kernel.used.iter().any(|&(_, a)| a == Access::Uniform) {
            let mut words = params.to_vec();
            words.resize(params.len().div_ceil(4).max(1) * 4, 0);
            let buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("fewlabels params"),
                size: (words.len() * 4) as u64,
                usage: wgpu::BufferUsages::UNIFORM,
                mapped_at_creation: true,
            });
            buf.slice(..)
                .get_mapped_range_mut()
                .map_err(|e| Error::Device(format!("params map: {e}")))?
                .copy_from_slice(bytemuck::cast_slice(&words));
            buf.unmap();
            Some(buf)
        } else {
            None
        };
        let max_bytes = ctx.max_binding_bytes();
        let mut entries = Vec::with_capacity(kernel.used.len());
        for &(b, access) in &kernel.used {
            if access == Access::Uniform {
                let buf = uniform.as_ref().expect("uniform made above");
                entries.push(wgpu::BindGroupEntry {
                    binding: b,
                    resource: buf.as_entire_binding(),
                });
                continue;
            }
            let t = bindings
                .iter()
                .find(|(i, _)| *i == b)
                .map(|(_, t)| *t)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "{shader}::{entry} needs a tensor at binding {b}"
                    ))
                })?;
            if t.bytes() > max_bytes {
                return Err(Error::Shape(format!(
                    "{shader}::{entry}: {t:?} is larger than one binding may be ({max_bytes} bytes)"
                )));
            }
            self.live.push(t.keep_alive());
            entries.push(wgpu::BindGroupEntry {
                binding: b,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: t.buffer(),
                    offset: 0,
                    size: std::num::NonZeroU64::new(t.bytes().max(4)),
                }),
            });
        }
        // One buffer bound twice where either binding is written is a usage conflict on the
        // device; two read-only bindings of one buffer are fine.
        let access_of = |b: u32| kernel.used.iter().find(|&&(i, _)| i == b).map(|&(_, a)| a);
        for (i, (bi, ti)) in bindings.iter().enumerate() {
            for (bj, tj) in &bindings[i + 1..] {
                let (ai, aj) = (access_of(*bi), access_of(*bj));
                if ti.same_buffer(tj)
                    && ai.is_some()
                    && aj.is_some()
                    && (ai == Some(Access::Write) || aj == Some(Access::Write))
                {
                    return Err(Error::InvalidArgument(format!(
                        "{shader}::{entry}: bindings {bi} and {bj} share one buffer that is written"
                    )));
                }
            }
        }
        let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &kernel.layout,
            entries: &entries,
        });
        {
            let mut pass = self
                .encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: None,
                });
            pass.set_pipeline(&kernel.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        }
        self.dispatches += 1;
        Ok(())
    }

    /// Record a copy of `src` into `dst` (same element count).
    pub fn copy(&mut self, src: &Tensor, dst: &Tensor) -> Result<()> {
        if src.numel() != dst.numel() {
            return Err(Error::Shape(format!("cannot copy {src:?} into {dst:?}")));
        }
        self.live.push(src.keep_alive());
        self.live.push(dst.keep_alive());
        if src.bytes() > 0 {
            self.encoder
                .copy_buffer_to_buffer(src.buffer(), 0, dst.buffer(), 0, src.bytes());
        }
        Ok(())
    }

    /// Submit everything recorded, in one `queue.submit`, and report device errors.
    pub fn submit(self) -> Result<()> {
        self.ctx.queue.submit([self.encoder.finish()]);
        // Buffers freed from here on may be reused: later work is submitted after this.
        drop(self.live);
        self.ctx.check()
    }
}
