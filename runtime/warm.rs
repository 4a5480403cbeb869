//! Compile-ahead for adapters that compile a kernel at its first dispatch.
//!
//! lavapipe (Mesa 22.3) turns a compute pipeline into machine code when it is first
//! dispatched, on its one queue thread, and not when wgpu creates the pipeline; the result
//! goes to Mesa's disk cache. So the first submit of new work compiles its kernels one
//! after another on one core (docs/PERFORMANCE.md, "First run on a machine").
//!
//! lavapipe also inlines uniform values that decide branches and loop bounds into the
//! shader at dispatch, and keeps the inlined shader where that shrinks it by half or more:
//! such a kernel is compiled once per set of parameter values, not once.
//!
//! Before such a submit, [`Context::warm`] compiles what the submit uses for the first
//! time (each kernel with each new set of parameters) on two devices at once: this one,
//! and a second device on the same adapter (opened once, on first need). Each takes the
//! next kernel from a shared list and dispatches it, with its real parameters and zero
//! workgroups, which compiles it without running anything. What the second device
//! compiles reaches this device through Mesa's disk cache. The real dispatches then find
//! their kernels compiled. [`Context::warm_behind`] does the same on the second device
//! alone, in the background, for kernels that later work needs while this device runs
//! earlier work.

use crate::device::Context;
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Whether warming can help on a device of `adapter` (`opened`: by the runtime, not handed
/// in by the host): a CPU adapter (compiles at first dispatch), a machine with at least two
/// cores, Mesa's disk cache on (it carries the second device's work over), not under
/// valgrind, and `FEWLABELS_WARM` not `0`. Decided once per context.
pub(crate) fn enabled(adapter: &crate::device::AdapterDescription, opened: bool) -> bool {
    let off = |name: &str| {
        std::env::var(name).is_ok_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "y"
            )
        })
    };
    adapter.device_type == "Cpu"
        && opened
        && std::env::var("FEWLABELS_WARM").as_deref() != Ok("0")
        && !off("MESA_SHADER_CACHE_DISABLE")
        && !off("MESA_GLSL_CACHE_DISABLE")
        && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
        && !under_valgrind()
}

/// Valgrind runs one thread at a time and Mesa's disk cache is not used under it, so there
/// a second device only adds work.
fn under_valgrind() -> bool {
    std::env::var("LD_PRELOAD").is_ok_and(|v| v.contains("vgpreload"))
}

/// A dispatch recorded with a kernel and parameters new to its context.
pub(crate) struct Fresh {
    /// The kernel's size, which orders the work (see `Kernel::size`).
    pub size: usize,
    pub shader: String,
    pub entry: String,
    pub params: Vec<u32>,
}

impl Context {
    /// Compile `kernels` on this device and on a helper device at once (see the module's
    /// documentation). Does nothing where [`enabled`] was false, for fewer than two kernels,
    /// or while [`Context::warm_behind`]'s work runs (the helper's queue would take these only
    /// after it). Failures only cost the gain: the real dispatches compile what is missing,
    /// and report their own errors.
    pub(crate) fn warm(&self, kernels: &[Fresh]) {
        if kernels.len() < 2 || !self.warm_on {
            return;
        }
        if self.behind_running() {
            return;
        }
        let Some(helper) = self.warm_helper() else {
            return;
        };
        let start = std::time::Instant::now();
        let mut groups = by_kernel(kernels);
        // Largest first, so that the two devices finish close together.
        groups.sort_by_key(|g| std::cmp::Reverse(g[0].size));
        let next = AtomicUsize::new(0);
        let work = |ctx: &Context| {
            while let Some(group) = groups.get(next.fetch_add(1, Ordering::Relaxed)) {
                compile(ctx, group);
            }
        };
        std::thread::scope(|scope| {
            scope.spawn(|| work(helper));
            work(self);
        });
        log::debug!(
            "fewlabels: {} kernels ({} parameter sets) compiled ahead in {:.1} ms",
            groups.len(),
            kernels.len(),
            start.elapsed().as_secs_f64() * 1e3
        );
    }

    /// Compile `kernels` on the helper device alone, on a thread of its own, and return at
    /// once: for kernels that later work needs while this device runs earlier work (the
    /// first G step's, during the first D step). [`Context::finish_behind`] waits for it; a
    /// [`Context::warm`] meanwhile does nothing (its kernels compile at their dispatch). A
    /// real dispatch of one of these kernels before then compiles it again, on this device:
    /// correct, only not faster.
    pub(crate) fn warm_behind(&self, kernels: Vec<Fresh>) {
        if kernels.is_empty() || !self.warm_on {
            return;
        }
        self.finish_behind();
        let Some(helper) = self.warm_helper().cloned() else {
            return;
        };
        let thread = std::thread::Builder::new()
            .name("fewlabels compile".into())
            .spawn(move || {
                let start = std::time::Instant::now();
                let groups = by_kernel(&kernels);
                for group in &groups {
                    compile(&helper, group);
                }
                log::debug!(
                    "fewlabels: {} kernels ({} parameter sets) compiled behind in {:.1} ms",
                    groups.len(),
                    kernels.len(),
                    start.elapsed().as_secs_f64() * 1e3
                );
            });
        match thread {
            Ok(t) => *self.warm_behind.lock().unwrap_or_else(|p| p.into_inner()) = Some(t),
            Err(e) => log::debug!("fewlabels: no thread for compiling behind: {e}"),
        }
    }

    /// Wait for the kernels [`Context::warm_behind`] is compiling, if any.
    pub fn finish_behind(&self) {
        let pending = self
            .warm_behind
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        join_behind(pending);
    }

    /// Whether [`Context::warm_behind`]'s work still runs; a finished one is joined.
    fn behind_running(&self) -> bool {
        let mut slot = self.warm_behind.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|t| !t.is_finished()) {
            return true;
        }
        join_behind(slot.take());
        false
    }

    /// The second device of [`Context::warm`], opened on first call; `None` if it cannot be.
    fn warm_helper(&self) -> Option<&Arc<Context>> {
        self.warm_helper
            .get_or_init(|| {
                let adapter = self.adapter.clone()?;
                match Context::from_adapter(adapter) {
                    Ok(h) if h.subgroups() == self.subgroups() => Some(Arc::new(h)),
                    Ok(_) => None,
                    Err(e) => {
                        log::debug!("fewlabels: no helper device for compiling ahead: {e}");
                        None
                    }
                }
            })
            .as_ref()
    }
}

fn join_behind(thread: Option<std::thread::JoinHandle<()>>) {
    if thread.is_some_and(|t| t.join().is_err()) {
        log::debug!("fewlabels: compiling behind panicked");
    }
}

/// `kernels` grouped by kernel, in order of first appearance: one unit of work per kernel
/// with all its new parameter sets (the first dispatch of a pipeline on a device is what
/// compiles, so two devices must not share one).
fn by_kernel(kernels: &[Fresh]) -> Vec<Vec<&Fresh>> {
    let mut groups: Vec<Vec<&Fresh>> = Vec::new();
    for f in kernels {
        match groups
            .iter_mut()
            .find(|g| g[0].shader == f.shader && g[0].entry == f.entry)
        {
            Some(g) => g.push(f),
            None => groups.push(vec![f]),
        }
    }
    groups
}

/// Compile one group on `ctx`; a failure only costs the gain (see [`Context::warm`]).
fn compile(ctx: &Context, group: &[&Fresh]) {
    let start = std::time::Instant::now();
    let done = zero_dispatches(ctx, group);
    log::trace!(
        "fewlabels: compiled {}::{} ({} parameter sets) in {:.1} ms",
        group[0].shader,
        group[0].entry,
        group.len(),
        start.elapsed().as_secs_f64() * 1e3
    );
    if let Err(err) = done {
        log::debug!(
            "fewlabels: compiling {}::{} ahead failed: {err}",
            group[0].shader,
            group[0].entry
        );
    }
}

impl Drop for Context {
    /// A context waits for its background compile ([`Context::warm_behind`]), so that no
    /// thread of it is still in the driver when the program goes on to exit.
    fn drop(&mut self) {
        self.finish_behind();
    }
}

/// A placeholder tensor of a warm-up dispatch.
enum Owned {
    Buffer(wgpu::Buffer),
    View(wgpu::TextureView),
}

impl Owned {
    fn resource(&self) -> wgpu::BindingResource<'_> {
        match self {
            Owned::Buffer(b) => b.as_entire_binding(),
            Owned::View(v) => wgpu::BindingResource::TextureView(v),
        }
    }
}

/// Dispatch one kernel on `ctx` once per parameter set of `group`, with zero workgroups and
/// placeholder tensors (one small buffer per binding, a 4096 x 1 texture where the kernel
/// reads one, as the runtime binds them); wait for it, and capture any device error here.
fn zero_dispatches(ctx: &Context, group: &[&Fresh]) -> Result<()> {
    let Some(first) = group.first() else {
        return Ok(());
    };
    let kernel = ctx.pipelines.get(ctx, &first.shader, &first.entry)?;
    let device = &ctx.device;
    let scopes = [
        device.push_error_scope(wgpu::ErrorFilter::Validation),
        device.push_error_scope(wgpu::ErrorFilter::OutOfMemory),
        device.push_error_scope(wgpu::ErrorFilter::Internal),
    ];
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("fewlabels warm-up"),
    });
    // The tensors: shared by every parameter set.
    let mut fixed = Vec::new();
    for &(b, access) in kernel.bindings() {
        if access.is_uniform() {
            continue;
        }
        if access.is_texture() {
            let texture = crate::kernel::tensor_texture(device, 1);
            // Written once, as the runtime's textures always are before a kernel reads them.
            let src = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("fewlabels warm-up texels"),
                size: crate::kernel::TEXTURE_WIDTH as u64 * 16,
                usage: wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            encoder.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: &src,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: 0,
                        bytes_per_row: Some(crate::kernel::TEXTURE_WIDTH * 16),
                        rows_per_image: None,
                    },
                },
                texture.as_image_copy(),
                texture.size(),
            );
            let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
            fixed.push((b, Owned::View(view)));
        } else {
            let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("fewlabels warm-up buffer"),
                size: 4096,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            });
            fixed.push((b, Owned::Buffer(buffer)));
        }
    }
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: None,
            timestamp_writes: None,
        });
        pass.set_pipeline(kernel.pipeline());
        for f in group {
            // The parameters, as Recorder::dispatch binds them: padded to 16 bytes.
            let size = ((f.params.len() as u64 * 4).div_ceil(16) * 16).max(16);
            let params = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("fewlabels warm-up parameters"),
                size,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut bytes = bytemuck::cast_slice::<u32, u8>(&f.params).to_vec();
            bytes.resize(size as usize, 0);
            ctx.queue.write_buffer(&params, 0, &bytes);
            let mut entries = Vec::new();
            for &(b, access) in kernel.bindings() {
                if access.is_uniform() {
                    entries.push(wgpu::BindGroupEntry {
                        binding: b,
                        resource: params.as_entire_binding(),
                    });
                }
            }
            for (b, r) in &fixed {
                entries.push(wgpu::BindGroupEntry {
                    binding: *b,
                    resource: r.resource(),
                });
            }
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("fewlabels warm-up"),
                layout: kernel.layout(),
                entries: &entries,
            });
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(0, 0, 0);
        }
    }
    ctx.queue.submit([encoder.finish()]);
    let polled = device.poll(wgpu::PollType::wait_indefinitely());
    let mut error = None;
    for scope in scopes.into_iter().rev() {
        if let Some(e) = pollster::block_on(scope.pop()) {
            error.get_or_insert(e.to_string());
        }
    }
    polled.map_err(|e| Error::Device(format!("poll failed: {e}")))?;
    match error {
        Some(e) => Err(Error::Device(e)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;

    fn fresh(shader: &str, entry: &str, params: &[u32]) -> Fresh {
        Fresh {
            size: 0,
            shader: shader.into(),
            entry: entry.into(),
            params: params.to_vec(),
        }
    }

    /// Warming with parameters a kernel cannot take, or a kernel that does not exist, leaves
    /// no error on the device, and later work still computes the right values.
    #[test]
    fn bad_warm_up_leaves_no_error() {
        let Ok(ctx) = Context::new() else {
            eprintln!("skipped: no adapter");
            return;
        };
        ctx.warm(&[
            // `conv_repack` takes more than four words: one is too small a binding.
            fresh("conv", "conv_repack", &[7]),
            fresh("elementwise", "no_such_kernel", &[1, 2]),
            fresh("no_such_shader", "scale", &[1, 2]),
            fresh("elementwise", "scale", &[3, 2f32.to_bits()]),
        ]);
        assert!(ctx.check().is_ok());
        if ctx.warm_on {
            assert!(
                ctx.warm_helper.get().is_some_and(|h| h.is_some()),
                "a CPU adapter with the disk cache on should have opened the helper device"
            );
        }
        let x = Tensor::from_f32(&ctx, &[3], &[1.0, -2.0, 0.5]).unwrap();
        let y = ctx
            .run(|r| crate::ops::elementwise::scale(r, &x, 3.0))
            .unwrap();
        assert_eq!(y.to_f32(&ctx).unwrap(), vec![3.0, -6.0, 1.5]);
        assert!(ctx.check().is_ok());
    }
}
