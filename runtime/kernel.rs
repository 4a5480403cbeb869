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
    // conv.wgsl plus kernels that need subgroups (built only where the device has them).
    (
        "conv_sg",
        concat!(
            include_str!("../shaders/conv.wgsl"),
            include_str!("../shaders/conv_sg.wgsl")
        ),
    ),
    // conv.wgsl plus the Winograd kernels of 3x3 convs on CPU adapters.
    (
        "conv_winograd",
        concat!(
            include_str!("../shaders/conv.wgsl"),
            include_str!("../shaders/conv_winograd.wgsl")
        ),
    ),
    // conv.wgsl plus the one-channel 3x3 kernels of CPU adapters.
    (
        "conv_thin",
        concat!(
            include_str!("../shaders/conv.wgsl"),
            include_str!("../shaders/conv_thin.wgsl")
        ),
    ),
    (
        "gemm_sg",
        concat!(
            include_str!("../shaders/gemm.wgsl"),
            include_str!("../shaders/gemm_sg.wgsl")
        ),
    ),
    (
        "spectral_norm_sg",
        concat!(
            include_str!("../shaders/spectral_norm.wgsl"),
            include_str!("../shaders/spectral_norm_sg.wgsl")
        ),
    ),
];

/// Shader files made of another one plus more kernels, with that other one's name.
const APPENDED: &[(&str, &str)] = &[
    ("conv_sg", "conv"),
    ("conv_winograd", "conv"),
    ("conv_thin", "conv"),
    ("gemm_sg", "gemm"),
    ("spectral_norm_sg", "spectral_norm"),
];

/// Shader files that use subgroup operations: compiled only on devices with
/// [`Context::subgroups`].
pub const SUBGROUP_SHADERS: &[&str] = &["conv_sg", "gemm_sg", "spectral_norm_sg"];

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
        naga::valid::Capabilities::SUBGROUP,
    )
    .validate(&module)
    .map_err(|e| Error::Format(format!("{name}.wgsl: {}", e.emit_to_string(src))))?;
    Ok((module, info))
}

/// How an entry point uses a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Access {
    Uniform,
    Read,
    Write,
    /// A read-only storage texture (`texture_storage_2d<rgba32float, read>`) read with
    /// `textureLoad`: the dispatch copies the bound tensor into a pooled texture (see
    /// [`TEXTURE_WIDTH`]).
    Texture,
}

/// Width in texels of the textures tensors are copied into for kernels that read them as
/// read-only storage textures: vec4 element i of the tensor is texel (i % 4096, i / 4096). On
/// lavapipe (Mesa 22.3) such a load costs about 0.5 ns per lane, a third of a sampled texel
/// fetch, and a storage-buffer load inside a branch goes lane by lane (docs/PERFORMANCE.md).
pub const TEXTURE_WIDTH: u32 = 4096;

impl Access {
    pub(crate) fn is_texture(self) -> bool {
        self == Access::Texture
    }

    pub(crate) fn is_uniform(self) -> bool {
        self == Access::Uniform
    }
}

/// One compiled entry point.
pub(crate) struct Kernel {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    /// Bindings of group 0 the entry point uses.
    used: Vec<(u32, Access)>,
    /// Size of the entry point with every call inlined, in naga expressions: a rough
    /// measure of its compile time (see `warm.rs`).
    pub(crate) size: usize,
    /// Parameter sets recorded so far (at most [`SEEN_PARAMS`]; see `warm.rs`).
    pub(crate) seen: Mutex<std::collections::HashSet<Vec<u32>>>,
}

/// Parameter sets per kernel that [`Recorder::dispatch`] remembers for `warm.rs`.
const SEEN_PARAMS: usize = 256;

impl Kernel {
    pub(crate) fn pipeline(&self) -> &wgpu::ComputePipeline {
        &self.pipeline
    }

    pub(crate) fn layout(&self) -> &wgpu::BindGroupLayout {
        &self.layout
    }

    /// Bindings of group 0 the entry point uses, and how.
    pub(crate) fn bindings(&self) -> &[(u32, Access)] {
        &self.used
    }
}

struct ShaderEntry {
    module: wgpu::ShaderModule,
    naga: naga::Module,
    info: naga::valid::ModuleInfo,
}

/// Expressions of `f` with each function it calls counted at every call site.
fn inlined_size(
    module: &naga::Module,
    f: &naga::Function,
    memo: &mut HashMap<naga::Handle<naga::Function>, usize>,
) -> usize {
    fn calls(block: &naga::Block, out: &mut Vec<naga::Handle<naga::Function>>) {
        for st in block.iter() {
            match st {
                naga::Statement::Call { function, .. } => out.push(*function),
                naga::Statement::Block(b) => calls(b, out),
                naga::Statement::If { accept, reject, .. } => {
                    calls(accept, out);
                    calls(reject, out);
                }
                naga::Statement::Switch { cases, .. } => {
                    for c in cases {
                        calls(&c.body, out);
                    }
                }
                naga::Statement::Loop {
                    body, continuing, ..
                } => {
                    calls(body, out);
                    calls(continuing, out);
                }
                _ => {}
            }
        }
    }
    let mut callees = Vec::new();
    calls(&f.body, &mut callees);
    let mut n = f.expressions.len();
    for h in callees {
        let size = match memo.get(&h) {
            Some(&v) => v,
            None => {
                let v = inlined_size(module, &module.functions[h], memo);
                memo.insert(h, v);
                v
            }
        };
        n += size;
    }
    n
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
                        naga::AddressSpace::Handle => Access::Texture,
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
            size: inlined_size(
                &s.naga,
                &s.naga.entry_points[index].function,
                &mut HashMap::new(),
            ),
            seen: Default::default(),
        });
        self.kernels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, k.clone());
        Ok(k)
    }
}

/// Conv kernels that CPU adapters use only for tensors too large for a texture: the storage
/// kernels of GPUs. On lavapipe the three 3x3 ones cost about 10 s of CPU to create (the
/// texture kernels that replace them, 0.2 s; docs/PERFORMANCE.md).
const GPU_CONVS: [&str; 8] = [
    "conv3x3_v4",
    "conv3x3_s",
    "conv_gemm_v4",
    "conv_gemm_s",
    "conv_dw3_v4",
    "conv_dw3_s",
    "conv_dw1_v4",
    "conv_dw1_s",
];

/// Storage kernels only CPU adapters use: the elementwise ops four elements per thread.
const CPU_STORAGE: [&str; 8] = [
    "relu_forward_v4",
    "relu_backward_v4",
    "tanh_forward_v4",
    "tanh_backward_v4",
    "add_v4",
    "scale_v4",
    "axpy_v4",
    "mul_v4",
];

/// Whether the ops pick kernel `entry` (which reads textures: `tex`) on an adapter with
/// (`cpu`) or without the CPU kernels ([`Recorder::cpu_kernels`]), for tensors that fit a
/// texture: GPUs never use the kernels that read textures (the `_t` twins, the subgroup 3x3
/// conv) nor those of [`CPU_STORAGE`]; CPU adapters not the storage convs of [`GPU_CONVS`];
/// neither `conv3x3w_v4` (the CPU adapters' fallback when a texture does not fit).
pub(crate) fn picked_on(cpu: bool, entry: &str, tex: bool) -> bool {
    if entry == "conv3x3w_v4" {
        return false;
    }
    if cpu {
        !GPU_CONVS.contains(&entry)
    } else {
        !tex && !CPU_STORAGE.contains(&entry)
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

impl PipelineCache {
    /// Every compute entry point of every shader file, as (file, entry).
    fn all_entries(&self, ctx: &Context) -> Result<Vec<(&'static str, String)>> {
        let mut out = Vec::new();
        for (name, _) in SHADERS {
            if SUBGROUP_SHADERS.contains(name) && !ctx.subgroups() {
                continue;
            }
            let s = self.shader(ctx, name)?;
            // A file appended to another repeats that one's kernels: only its own ones.
            let base = match APPENDED.iter().find(|(n, _)| n == name) {
                Some((_, b)) => Some(self.shader(ctx, b)?),
                None => None,
            };
            for e in &s.naga.entry_points {
                let own = base
                    .as_ref()
                    .is_none_or(|b| !b.naga.entry_points.iter().any(|be| be.name == e.name));
                if e.stage == naga::ShaderStage::Compute && own {
                    out.push((*name, e.name.clone()));
                }
            }
        }
        Ok(out)
    }

    /// Whether compute entry `entry` of `shader` reads a texture.
    fn reads_textures(&self, ctx: &Context, shader: &str, entry: &str) -> Result<bool> {
        let s = self.shader(ctx, shader)?;
        let Some(index) = s
            .naga
            .entry_points
            .iter()
            .position(|e| e.name == entry && e.stage == naga::ShaderStage::Compute)
        else {
            return Ok(false);
        };
        let fi = s.info.get_entry_point(index);
        let tex = s
            .naga
            .global_variables
            .iter()
            .any(|(h, v)| v.space == naga::AddressSpace::Handle && !fi[h].is_empty());
        Ok(tex)
    }

    fn is_compiled(&self, shader: &str, entry: &str) -> bool {
        self.kernels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&(shader.to_string(), entry.to_string()))
    }
}

/// Bytes of the uniform arena buffers a recorder fills with dispatch parameters.
const ARENA_BYTES: u64 = 64 * 1024;

/// One arena buffer and the bytes recorded for it so far.
struct Arena {
    buffer: wgpu::Buffer,
    data: Vec<u8>,
}

/// Free arena buffers, shared by the recorders of one context.
#[derive(Default)]
pub(crate) struct ArenaPool {
    free: Mutex<Vec<wgpu::Buffer>>,
    /// Arena buffers ever created (for tests and the benchmark).
    created: std::sync::atomic::AtomicU64,
}

impl ArenaPool {
    fn take(&self, device: &wgpu::Device) -> wgpu::Buffer {
        if let Some(b) = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return b;
        }
        self.created
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("fewlabels params arena"),
            size: ARENA_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    fn give(&self, b: wgpu::Buffer) {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).push(b);
    }

    pub(crate) fn created(&self) -> u64 {
        self.created.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Key of a [`Derived`] tensor: what derives it, the source buffer and the source's shape.
type DerivedKey = (&'static str, usize, Vec<usize>);

/// A tensor computed from another by a fixed function of its contents (a repacked conv
/// weight), valid while the source buffer lives and has no new write recorded.
pub(crate) struct Derived {
    source: std::sync::Weak<crate::tensor::Storage>,
    writes: u64,
    value: Tensor,
}

impl Derived {
    fn valid_for(&self, source: &Tensor) -> bool {
        source.is_storage(&self.source) && self.writes == source.write_count()
    }
}

/// Drop the entries whose source is gone. A derived value can be another entry's source (the
/// transpose of a padded weight), so dropping one can make another stale: repeat until none
/// is, so that what is freed does not depend on the map's order.
fn drop_stale(map: &mut HashMap<DerivedKey, Derived>) {
    loop {
        let before = map.len();
        map.retain(|_, d| d.source.strong_count() > 0);
        if map.len() == before {
            break;
        }
    }
}

/// Derived tensors of submitted work, shared by later recorders; entries whose source is
/// gone are dropped at each submit.
#[derive(Default)]
pub(crate) struct DerivedCache {
    map: Mutex<HashMap<DerivedKey, Derived>>,
}

/// A new texture of [`TEXTURE_WIDTH`] x `rows` vec4s, as kernels that read a tensor as a
/// texture get it (`rgba32float`; usable as a sampled or storage texture and as a copy
/// destination).
pub fn tensor_texture(device: &wgpu::Device, rows: u32) -> wgpu::Texture {
    device.create_texture(&wgpu::TextureDescriptor {
        label: Some("fewlabels texture view of a tensor"),
        size: wgpu::Extent3d {
            width: TEXTURE_WIDTH,
            height: rows,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Float,
        usage: wgpu::TextureUsages::TEXTURE_BINDING
            | wgpu::TextureUsages::STORAGE_BINDING
            | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    })
}

/// Free textures for [`Access::Texture`] bindings, by height (a power of two), shared by the
/// recorders of one context.
#[derive(Default)]
pub(crate) struct TexturePool {
    free: Mutex<HashMap<u32, Vec<wgpu::Texture>>>,
    /// Textures ever created (for tests and the benchmark).
    created: std::sync::atomic::AtomicU64,
    /// Tensor-to-texture copies ever recorded (for tests).
    copies: std::sync::atomic::AtomicU64,
}

impl TexturePool {
    fn take(&self, device: &wgpu::Device, rows: u32) -> wgpu::Texture {
        if let Some(t) = self
            .free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&rows)
            .and_then(|v| v.pop())
        {
            return t;
        }
        self.created
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tensor_texture(device, rows)
    }

    fn give(&self, rows: u32, t: wgpu::Texture) {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(rows)
            .or_default()
            .push(t);
    }

    pub(crate) fn created(&self) -> u64 {
        self.created.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn copies(&self) -> u64 {
        self.copies.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Per-(shader, entry) wall time of dispatches run one at a time (see
/// [`Context::set_profiling`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileRow {
    pub shader: String,
    pub entry: String,
    /// Dispatches run.
    pub count: u64,
    /// Total wall time from submit to completion, in milliseconds.
    pub total_ms: f64,
}

#[derive(Default)]
pub(crate) struct Profile {
    pub(crate) on: std::sync::atomic::AtomicBool,
    rows: Mutex<HashMap<(String, String), (u64, std::time::Duration)>>,
}

/// A table of profile rows, slowest first, with each row's share of the total.
pub fn format_profile(rows: &[ProfileRow]) -> String {
    let total: f64 = rows.iter().map(|r| r.total_ms).sum();
    let mut s = String::from("| kernel | dispatches | total ms | share |\n|---|---|---|---|\n");
    for r in rows {
        let share = if total > 0.0 {
            100.0 * r.total_ms / total
        } else {
            0.0
        };
        s.push_str(&format!(
            "| {}::{} | {} | {:.1} | {:.1}% |\n",
            r.shader, r.entry, r.count, r.total_ms, share
        ));
    }
    let count: u64 = rows.iter().map(|r| r.count).sum();
    s.push_str(&format!("| all | {count} | {total:.1} | 100% |\n"));
    s
}

/// A texture a recorder copies tensors into (see `Recorder::texture_of`).
struct TextureSlot {
    rows: u32,
    texture: wgpu::Texture,
    /// The tensor whose contents it holds: its buffer, write count and bytes at the copy.
    holds: Option<(std::sync::Weak<crate::tensor::Storage>, u64, u64)>,
    /// `texture_clock` at the last dispatch that bound it.
    used: u64,
}

/// Records dispatches into one command encoder, consecutive dispatches in one compute pass,
/// their parameters in shared uniform arena buffers; [`Recorder::submit`] writes the arenas
/// and sends everything in one `queue.submit`.
pub struct Recorder<'a> {
    pub ctx: &'a Context,
    /// The open compute pass (it locks `encoder` until dropped; declared first so that it
    /// drops first).
    pass: Option<wgpu::ComputePass<'static>>,
    encoder: Option<wgpu::CommandEncoder>,
    dispatches: usize,
    /// Every tensor bound so far, kept out of the pool until the work is submitted.
    live: Vec<Arc<crate::tensor::Storage>>,
    /// Arena buffers in use; the last one is being filled.
    arenas: Vec<Arena>,
    /// Textures taken from the pool, reused by later dispatches and returned to the pool at
    /// submit; each remembers the tensor it holds, so that a tensor read again with no write
    /// in between is not copied again.
    textures: Vec<TextureSlot>,
    /// Counts texture reads (for choosing the least recently used texture to overwrite).
    texture_clock: u64,
    /// Choose the kernels tuned for CPU adapters (see [`Recorder::set_cpu_kernels`]).
    cpu_kernels: bool,
    /// Allow kernels that use subgroups (see [`Recorder::set_subgroups`]).
    subgroups: bool,
    /// Force 3x3 convs onto or off the Winograd kernels (see [`Recorder::set_winograd`]).
    winograd: Option<bool>,
    /// Let small transposed GEMM operands be transposed first (see
    /// [`Recorder::set_gemm_transposes`]).
    gemm_transposes: bool,
    /// No backward pass follows what is recorded here (see [`Recorder::set_forward_only`]).
    forward_only: bool,
    /// Called once the recorded work is submitted without a device error (see
    /// [`Recorder::on_submit`]).
    on_submit: Vec<Box<dyn FnOnce() + Send + 'a>>,
    /// Derived tensors recorded here, moved to the context's cache at submit.
    derived: HashMap<DerivedKey, Derived>,
    /// Kernels recorded here with parameters not recorded before in this context, in
    /// order: compiled ahead at submit (see `warm.rs`).
    fresh: Vec<crate::warm::Fresh>,
}

fn new_encoder(ctx: &Context) -> wgpu::CommandEncoder {
    ctx.device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("fewlabels"),
        })
}

impl Context {
    /// Start recording.
    pub fn recorder(&self) -> Recorder<'_> {
        // Derived tensors of sources dropped since the last submit go back to the pool before
        // this recorder asks it for buffers.
        drop_stale(&mut self.derived.map.lock().unwrap_or_else(|p| p.into_inner()));
        Recorder {
            ctx: self,
            pass: None,
            encoder: Some(new_encoder(self)),
            dispatches: 0,
            live: Vec::new(),
            arenas: Vec::new(),
            textures: Vec::new(),
            texture_clock: 0,
            cpu_kernels: self.cpu_kernels(),
            subgroups: self.subgroups(),
            winograd: self.winograd(),
            gemm_transposes: true,
            forward_only: false,
            on_submit: Vec::new(),
            derived: HashMap::new(),
            fresh: Vec::new(),
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

    /// Compile every kernel this adapter's ops pick ([`picked_on`]) that is not compiled yet,
    /// on as many threads as the machine has cores, so that no later call waits for a
    /// compile. Returns the number compiled now (0 when all were ready). The others (an
    /// op's fallback for tensors too large for a texture) compile on first use.
    pub fn prepare_all(&self) -> Result<usize> {
        let cpu = self.cpu_kernels();
        let todo: Vec<(&'static str, String)> = self
            .pipelines
            .all_entries(self)?
            .into_iter()
            .filter(|(s, e)| {
                let tex = self.pipelines.reads_textures(self, s, e).unwrap_or(true);
                picked_on(cpu, e, tex) && !self.pipelines.is_compiled(s, e)
            })
            .collect();
        if todo.is_empty() {
            return Ok(0);
        }
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 16)
            .min(todo.len());
        let next = std::sync::atomic::AtomicUsize::new(0);
        let first_error: Mutex<Option<Error>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((s, e)) = todo.get(i) else { break };
                    if let Err(err) = self.pipelines.get(self, s, e) {
                        first_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(err);
                    }
                });
            }
        });
        match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(todo.len()),
        }
    }

    /// What `Model::load` calls so that no later call waits for a compile:
    /// [`Context::prepare_all`], except where the adapter compiles a kernel at its first
    /// dispatch and the first submit compiles ahead on two devices (`warm.rs`; lavapipe).
    /// There creating all the pipelines at load compiles no machine code, and a program
    /// that only samples needs a tenth of them: `fewlabels sample` on a warm Mesa cache
    /// took 0.73-1.02 s with it, 0.41-0.57 s without. `Trainer::new` calls this too: a
    /// train step uses 62 of the 127 kernels, `Trainer::prepare_step` creates them as it
    /// records the step ahead, and a one-step `fewlabels train` of `fashion_small` took
    /// 0.2 s less on an empty Mesa cache and 0.45 s less on a filled one without
    /// `prepare_all` (docs/PERFORMANCE.md, session 14).
    pub fn prepare_at_load(&self) -> Result<()> {
        if self.warm_on {
            return Ok(());
        }
        self.prepare_all().map(|_| ())
    }

    /// Number of kernels compiled so far.
    pub fn compiled_kernels(&self) -> usize {
        self.pipelines
            .kernels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Profiling: while on, every dispatch is submitted and waited for alone, and its wall
    /// time is added to a per-(shader, entry) table read by [`Context::take_profile`]. Much
    /// slower than normal recording; for finding where time goes. Also switched on by the
    /// environment variable `FEWLABELS_PROFILE=1` when the context is created.
    pub fn set_profiling(&self, on: bool) {
        self.profile
            .on
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether profiling is on.
    pub fn profiling(&self) -> bool {
        self.profile.on.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The profile table gathered so far, slowest kernel first, and clear it.
    pub fn take_profile(&self) -> Vec<ProfileRow> {
        let mut rows: Vec<ProfileRow> = self
            .profile
            .rows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|((shader, entry), (count, t))| ProfileRow {
                shader,
                entry,
                count,
                total_ms: t.as_secs_f64() * 1e3,
            })
            .collect();
        rows.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
        rows
    }

    /// Uniform arena buffers created so far (each holds the parameters of many dispatches).
    pub fn arena_buffers_created(&self) -> u64 {
        self.arenas.created()
    }

    /// Textures created so far for kernels that read tensors as textures (pooled, like
    /// buffers: a steady-state train step creates none).
    pub fn textures_created(&self) -> u64 {
        self.textures.created()
    }

    /// Copies of tensors into textures recorded so far (a recorder copies a tensor again
    /// only after a write into it).
    pub fn texture_copies(&self) -> u64 {
        self.textures.copies()
    }
}

impl<'a> Recorder<'a> {
    /// Whether ops choose the kernels tuned for CPU adapters (lavapipe): smaller register
    /// tiles that read their inputs as textures. Starts as [`Context::cpu_kernels`]; tests
    /// set it to run both kernel sets on one adapter. Both give the same results within the
    /// golden tolerances.
    pub fn set_cpu_kernels(&mut self, on: bool) {
        self.cpu_kernels = on;
    }

    /// See [`Recorder::set_cpu_kernels`].
    pub fn cpu_kernels(&self) -> bool {
        self.cpu_kernels
    }

    /// Whether ops may choose kernels that use subgroup operations. Starts as
    /// [`Context::subgroups`] (false where the device lacks them, and then setting it true has
    /// no effect); tests set it false to run the kernels without them too.
    pub fn set_subgroups(&mut self, on: bool) {
        self.subgroups = on && self.ctx.subgroups();
    }

    /// See [`Recorder::set_subgroups`].
    pub fn subgroups(&self) -> bool {
        self.subgroups
    }

    /// Whether 3x3 convs on CPU adapters with subgroups take the Winograd kernels: `None`
    /// (the start) lets `ops::conv` choose by shape, `Some(on)` forces the choice where the
    /// kernels can run; tests force both to check each against the goldens.
    pub fn set_winograd(&mut self, on: Option<bool>) {
        self.winograd = on;
    }

    /// See [`Recorder::set_winograd`].
    pub fn winograd(&self) -> Option<bool> {
        self.winograd
    }

    /// Whether products on CPU adapters with subgroups transpose a small transposed operand
    /// first, so that they take the untransposed kernels (`ops::gemm`; a first run compiles
    /// fewer kernels). Starts true; tests set it false to run the transposing kernels too.
    pub fn set_gemm_transposes(&mut self, on: bool) {
        self.gemm_transposes = on;
    }

    /// See [`Recorder::set_gemm_transposes`].
    pub fn gemm_transposes(&self) -> bool {
        self.gemm_transposes
    }

    /// Declare that no backward pass will follow the work recorded here (sampling), so that
    /// ops may pick kernels for a forward pass alone: `ops::conv` then takes the Winograd
    /// kernels only for wide convs, as their transforms pay for themselves only there. Starts
    /// false; `Model::sample` and its kin set it.
    pub fn set_forward_only(&mut self, on: bool) {
        self.forward_only = on;
    }

    /// See [`Recorder::set_forward_only`].
    pub fn forward_only(&self) -> bool {
        self.forward_only
    }

    /// Whether a tensor of `elems` floats fits in one texture of [`TEXTURE_WIDTH`] columns on
    /// this device (the ops fall back to storage-buffer kernels otherwise).
    pub fn texture_fits(&self, elems: usize) -> bool {
        (elems as u64).div_ceil(4 * TEXTURE_WIDTH as u64)
            <= self.ctx.limits.max_texture_dimension_2d as u64
    }

    /// Whether a streaming kernel should read `t` as a texture (its `_t` twin): on CPU
    /// adapters, for a non-empty tensor of whole vec4s that fits in one texture.
    pub fn reads_texture(&self, t: &Tensor) -> bool {
        let n = t.numel();
        self.cpu_kernels && n > 0 && n.is_multiple_of(4) && self.texture_fits(n)
    }

    /// A texture holding `t` (see [`TEXTURE_WIDTH`]); `t` must hold a whole number of vec4s.
    /// If a texture of this recorder already holds `t` and no write into `t` has been
    /// recorded since its copy, that one; else the recorder copies `t` into the least recently
    /// used of its textures of the same size that this dispatch does not bind yet (indices in
    /// `busy`; wgpu orders the copy after the earlier dispatches that read it), else into
    /// one from the pool.
    fn texture_of(
        &mut self,
        what: &str,
        t: &Tensor,
        busy: &mut Vec<usize>,
    ) -> Result<wgpu::TextureView> {
        let bytes = t.bytes();
        if !bytes.is_multiple_of(16) {
            return Err(Error::Shape(format!(
                "{what}: {t:?} is not a whole number of vec4s and cannot be read as a texture"
            )));
        }
        let texels = (bytes / 16).max(1);
        let full = (texels / TEXTURE_WIDTH as u64) as u32;
        let rest = (texels % TEXTURE_WIDTH as u64) as u32;
        let needed = full + (rest > 0) as u32;
        let rows = needed.next_power_of_two();
        let max = self.ctx.limits.max_texture_dimension_2d;
        if TEXTURE_WIDTH > max || rows > max {
            return Err(Error::Shape(format!(
                "{what}: {t:?} needs a {TEXTURE_WIDTH}x{rows} texture; this device allows {max}"
            )));
        }
        self.texture_clock += 1;
        let writes = t.write_count();
        let held = self.textures.iter().position(|s| {
            s.rows == rows
                && s.holds
                    .as_ref()
                    .is_some_and(|(w, n, b)| *n == writes && *b == bytes && t.is_storage(w))
        });
        if let Some(i) = held {
            if !busy.contains(&i) {
                busy.push(i);
            }
            self.textures[i].used = self.texture_clock;
            return Ok(self.textures[i]
                .texture
                .create_view(&wgpu::TextureViewDescriptor::default()));
        }
        let free = self
            .textures
            .iter()
            .enumerate()
            .filter(|(i, s)| s.rows == rows && !busy.contains(i))
            .min_by_key(|(_, s)| s.used)
            .map(|(i, _)| i);
        let slot = match free {
            Some(i) => i,
            None => {
                let texture = self.ctx.textures.take(&self.ctx.device, rows);
                self.textures.push(TextureSlot {
                    rows,
                    texture,
                    holds: None,
                    used: 0,
                });
                self.textures.len() - 1
            }
        };
        busy.push(slot);
        self.textures[slot].holds = Some((t.weak_storage(), writes, bytes));
        self.textures[slot].used = self.texture_clock;
        let texture = &self.textures[slot].texture;
        self.ctx
            .textures
            .copies
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.pass = None;
        let encoder = self.encoder.as_mut().expect("present until submit");
        let row_bytes = TEXTURE_WIDTH * 16;
        let mut copy = |y: u32, width: u32, height: u32| {
            encoder.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: t.buffer(),
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: y as u64 * row_bytes as u64,
                        bytes_per_row: Some(row_bytes),
                        rows_per_image: None,
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d { x: 0, y, z: 0 },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d {
                    width,
                    height,
                    depth_or_array_layers: 1,
                },
            );
        };
        if full > 0 {
            copy(0, TEXTURE_WIDTH, full);
        }
        if rest > 0 && bytes > 0 {
            copy(full, rest, 1);
        }
        self.live.push(t.keep_alive());
        Ok(texture.create_view(&wgpu::TextureViewDescriptor::default()))
    }

    /// Dispatches recorded so far.
    pub fn dispatch_count(&self) -> usize {
        self.dispatches
    }

    /// Place `params` (padded to 16 bytes) in the arena; returns the buffer and offset.
    fn place_params(&mut self, params: &[u32]) -> (wgpu::Buffer, u64, u64) {
        let ctx = self.ctx;
        let align = (ctx.limits.min_uniform_buffer_offset_alignment as u64).max(16);
        let size = ((params.len() as u64 * 4).div_ceil(16) * 16).max(16);
        let fits = |a: &Arena| (a.data.len() as u64).div_ceil(align) * align + size <= ARENA_BYTES;
        if !self.arenas.last().is_some_and(fits) {
            let buffer = ctx.arenas.take(&ctx.device);
            self.arenas.push(Arena {
                buffer,
                data: Vec::new(),
            });
        }
        let a = self.arenas.last_mut().expect("pushed above");
        let offset = (a.data.len() as u64).div_ceil(align) * align;
        a.data.resize(offset as usize, 0);
        a.data.extend_from_slice(bytemuck::cast_slice(params));
        a.data.resize((offset + size) as usize, 0);
        (a.buffer.clone(), offset, size)
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
        if ctx.warm_on {
            let mut seen = kernel.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.len() < SEEN_PARAMS && !seen.contains(params) {
                seen.insert(params.to_vec());
                self.fresh.push(crate::warm::Fresh {
                    size: kernel.size,
                    shader: shader.to_string(),
                    entry: entry.to_string(),
                    params: params.to_vec(),
                });
            }
        }
        let max_bytes = ctx.max_binding_bytes();
        let mut tensors: Vec<(u32, &Tensor)> = Vec::with_capacity(kernel.used.len());
        for &(b, access) in &kernel.used {
            if access == Access::Uniform {
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
            tensors.push((b, t));
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
        let profiling = ctx.profiling();
        if profiling {
            // Everything recorded before runs first, outside the measurement.
            self.flush();
            ctx.wait()?;
        }
        let uniform = if kernel.used.iter().any(|&(_, a)| a == Access::Uniform) {
            Some(self.place_params(params))
        } else {
            None
        };
        let mut entries = Vec::with_capacity(kernel.used.len());
        for &(b, access) in &kernel.used {
            if access == Access::Uniform {
                let (buf, offset, size) = uniform.as_ref().expect("placed above");
                entries.push(wgpu::BindGroupEntry {
                    binding: b,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: buf,
                        offset: *offset,
                        size: std::num::NonZeroU64::new(*size),
                    }),
                });
            }
        }
        let mut views = Vec::new();
        let mut busy = Vec::new();
        for &(b, t) in &tensors {
            if access_of(b) == Some(Access::Texture) {
                let what = format!("{shader}::{entry}");
                views.push((b, self.texture_of(&what, t, &mut busy)?));
            }
        }
        for (b, view) in &views {
            entries.push(wgpu::BindGroupEntry {
                binding: *b,
                resource: wgpu::BindingResource::TextureView(view),
            });
        }
        for &(b, t) in &tensors {
            if access_of(b) == Some(Access::Texture) {
                continue;
            }
            if access_of(b) == Some(Access::Write) {
                t.note_write();
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
        let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &kernel.layout,
            entries: &entries,
        });
        if self.pass.is_none() {
            let encoder = self.encoder.as_mut().expect("present until submit");
            self.pass = Some(
                encoder
                    .begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes: None,
                    })
                    .forget_lifetime(),
            );
        }
        let pass = self.pass.as_mut().expect("opened above");
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        self.dispatches += 1;
        if profiling {
            let start = std::time::Instant::now();
            self.flush();
            ctx.wait()?;
            let took = start.elapsed();
            let mut rows = ctx.profile.rows.lock().unwrap_or_else(|p| p.into_inner());
            let row = rows
                .entry((shader.to_string(), entry.to_string()))
                .or_default();
            row.0 += 1;
            row.1 += took;
        }
        Ok(())
    }

    /// Record a copy of `src` into `dst` (same element count).
    pub fn copy(&mut self, src: &Tensor, dst: &Tensor) -> Result<()> {
        if src.numel() != dst.numel() {
            return Err(Error::Shape(format!("cannot copy {src:?} into {dst:?}")));
        }
        self.live.push(src.keep_alive());
        self.live.push(dst.keep_alive());
        dst.note_write();
        if src.bytes() > 0 {
            // Copies happen outside compute passes.
            self.pass = None;
            self.encoder
                .as_mut()
                .expect("present until submit")
                .copy_buffer_to_buffer(src.buffer(), 0, dst.buffer(), 0, src.bytes());
        }
        Ok(())
    }

    /// Send what is recorded so far: write the arenas, submit, and start a new encoder.
    fn flush(&mut self) {
        let ctx = self.ctx;
        self.pass = None;
        ctx.warm(&std::mem::take(&mut self.fresh));
        for a in &self.arenas {
            if !a.data.is_empty() {
                ctx.queue.write_buffer(&a.buffer, 0, &a.data);
            }
        }
        let encoder = self.encoder.replace(new_encoder(ctx));
        if let Some(e) = encoder {
            ctx.queue.submit([e.finish()]);
        }
        // Work recorded later is submitted later, so the arenas and buffers may be reused.
        for a in self.arenas.drain(..) {
            ctx.arenas.give(a.buffer);
        }
        for t in self.textures.drain(..) {
            ctx.textures.give(t.rows, t.texture);
        }
        self.live.clear();
    }

    /// Compile ahead what was recorded (see `warm.rs`) and drop the work unsubmitted:
    /// nothing recorded runs, and no derived tensor is kept.
    pub(crate) fn compile_ahead(mut self) {
        self.pass = None;
        self.ctx.warm(&std::mem::take(&mut self.fresh));
    }

    /// As [`Recorder::compile_ahead`], but on the helper device in the background
    /// ([`Context::warm_behind`]): returns at once.
    pub(crate) fn compile_behind(mut self) {
        self.pass = None;
        self.ctx.warm_behind(std::mem::take(&mut self.fresh));
    }

    /// Submit everything recorded, in one `queue.submit`, and report device errors.
    pub fn submit(mut self) -> Result<()> {
        let ctx = self.ctx;
        self.pass = None;
        ctx.warm(&std::mem::take(&mut self.fresh));
        for a in &self.arenas {
            if !a.data.is_empty() {
                ctx.queue.write_buffer(&a.buffer, 0, &a.data);
            }
        }
        if let Some(e) = self.encoder.take() {
            ctx.queue.submit([e.finish()]);
        }
        for a in self.arenas.drain(..) {
            ctx.arenas.give(a.buffer);
        }
        for t in self.textures.drain(..) {
            ctx.textures.give(t.rows, t.texture);
        }
        // Buffers freed from here on may be reused: later work is submitted after this.
        self.live.clear();
        ctx.check()?;
        for f in self.on_submit.drain(..) {
            f();
        }
        let mut kept = ctx.derived.map.lock().unwrap_or_else(|p| p.into_inner());
        drop_stale(&mut kept);
        kept.extend(self.derived.drain());
        Ok(())
    }

    /// The tensor `kind` derives from `source`, if one was kept ([`Recorder::keep_derived`])
    /// and `source` has had no write recorded since: from this recorder, or from submitted
    /// work.
    pub(crate) fn derived(&self, kind: &'static str, source: &Tensor) -> Option<Tensor> {
        let key = (kind, source.storage_id(), source.shape().to_vec());
        if let Some(d) = self.derived.get(&key) {
            return d.valid_for(source).then(|| d.value.clone());
        }
        let kept = self
            .ctx
            .derived
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let d = kept.get(&key)?;
        d.valid_for(source).then(|| d.value.clone())
    }

    /// Keep `value`, which work recorded here computes from `source` by `kind` (a fixed
    /// function of `source`'s contents and shape), for later [`Recorder::derived`] calls.
    /// Other recorders see it once this one is submitted. `value` must not be written later.
    pub(crate) fn keep_derived(&mut self, kind: &'static str, source: &Tensor, value: &Tensor) {
        let key = (kind, source.storage_id(), source.shape().to_vec());
        let d = Derived {
            source: source.weak_storage(),
            writes: source.write_count(),
            value: value.clone(),
        };
        self.derived.insert(key, d);
    }

    /// Run `f` once the work recorded so far is submitted by [`Recorder::submit`] and the
    /// device reported no error; never if the recorder is dropped unsubmitted. For caches of
    /// results that exist only once their work is submitted.
    pub fn on_submit(&mut self, f: impl FnOnce() + Send + 'a) {
        self.on_submit.push(Box::new(f));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A derived value that is another entry's source: once the first source is gone, the
    /// next recorder drops both entries, whatever the map's order (16 chains, so that a
    /// single pass over the map would leave some behind).
    #[test]
    fn stale_derived_chains_go_at_once() {
        let Ok(ctx) = Context::new() else {
            eprintln!("skipped: no adapter");
            return;
        };
        let mut roots = Vec::new();
        let mut rec = ctx.recorder();
        for i in 1..=16 {
            let root = Tensor::zeros(&ctx, &[i]).unwrap();
            let first = Tensor::zeros(&ctx, &[i]).unwrap();
            let second = Tensor::zeros(&ctx, &[i]).unwrap();
            rec.keep_derived("first", &root, &first);
            rec.keep_derived("second", &first, &second);
            roots.push(root);
        }
        rec.submit().unwrap();
        let kept = || ctx.derived.map.lock().unwrap().len();
        assert_eq!(kept(), 32);
        drop(ctx.recorder());
        assert_eq!(kept(), 32, "every source still lives");
        let free = ctx.pool_free_bytes();
        drop(roots);
        drop(ctx.recorder());
        assert_eq!(kept(), 0);
        // The 16 roots and the 32 derived values went back to the pool (256 bytes each).
        assert_eq!(ctx.pool_free_bytes(), free + 48 * 256);
    }
}
