//! Device tensors: a storage buffer with a shape and a dtype.
//!
//! Layout: activations are NHWC (channels innermost, so a pixel's channels are contiguous and
//! a conv reads them as one run); parameters keep PyTorch's layout (linear `[out, in]`, conv
//! `[out, in, kh, kw]`) so a PyTorch state dict and a model file are the same tensors.
//! Integer tensors (labels, argmax results) are `i32`, stored in the same kind of buffer.
//!
//! Transient tensors come from a [`BufferPool`]: when the last handle to a pooled tensor is
//! dropped its buffer goes back to the pool and is handed out again for the next tensor of the
//! same size class. A [`crate::Recorder`] holds a handle to every tensor it binds until it has
//! submitted, so a buffer returns to the pool only when no unsubmitted work can use it; work
//! recorded later (by any thread) is submitted later and runs after. A fresh tensor's contents
//! are unspecified: every kernel writes all of its outputs.

use crate::device::Context;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    I32,
}

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Free buffers by size class.
#[derive(Default, Clone)]
pub(crate) struct BufferPool {
    free: Arc<Mutex<HashMap<u64, Vec<wgpu::Buffer>>>>,
    /// Fill every handed-out buffer with NaN (a debugging aid: a kernel that reads an output
    /// it did not write, or leaves part of it unwritten, then fails loudly).
    poison: Arc<std::sync::atomic::AtomicBool>,
    /// Free readback (MAP_READ) buffers by size class.
    staging: Arc<Mutex<HashMap<u64, Vec<wgpu::Buffer>>>>,
    /// wgpu buffers created so far (storage and readback).
    created: Arc<std::sync::atomic::AtomicU64>,
}

impl BufferPool {
    /// Bytes actually allocated for a request: at least 16, rounded up to a size class so
    /// nearby sizes share buffers (multiples of 256 bytes, then of 1/8 of the power of two).
    fn class(bytes: u64) -> u64 {
        let b = bytes.max(16);
        if b <= 4096 {
            return b.div_ceil(256) * 256;
        }
        let p = b.next_power_of_two();
        let step = p / 8;
        b.div_ceil(step) * step
    }

    fn take(&self, device: &wgpu::Device, queue: &wgpu::Queue, bytes: u64) -> wgpu::Buffer {
        let class = Self::class(bytes);
        let reused = self
            .free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&class)
            .and_then(|v| v.pop());
        let buf = reused.unwrap_or_else(|| {
            self.created
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("fewlabels pooled"),
                size: class,
                usage: USAGE,
                mapped_at_creation: false,
            })
        });
        if self.poison.load(std::sync::atomic::Ordering::Relaxed) {
            // Lands after all submitted work and before the work that will use the buffer.
            let nan = vec![0xffu8; class as usize];
            queue.write_buffer(&buf, 0, &nan);
        }
        buf
    }

    fn give(&self, buf: wgpu::Buffer) {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(buf.size())
            .or_default()
            .push(buf);
    }

    /// A readback buffer of at least `bytes`; give it back with [`BufferPool::give_staging`].
    fn take_staging(&self, device: &wgpu::Device, bytes: u64) -> wgpu::Buffer {
        let class = Self::class(bytes);
        let reused = self
            .staging
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&class)
            .and_then(|v| v.pop());
        reused.unwrap_or_else(|| {
            self.created
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("fewlabels readback"),
                size: class,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
    }

    fn give_staging(&self, buf: wgpu::Buffer) {
        self.staging
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(buf.size())
            .or_default()
            .push(buf);
    }

    pub(crate) fn created(&self) -> u64 {
        self.created.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes held by free buffers.
    pub(crate) fn free_bytes(&self) -> u64 {
        let free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        free.values().flatten().map(|b| b.size()).sum()
    }

    /// Drop every free buffer.
    pub(crate) fn trim(&self) {
        self.free.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.staging
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// A buffer that returns to its pool when dropped (if it came from one).
pub(crate) struct Storage {
    buffer: Option<wgpu::Buffer>,
    pool: Option<BufferPool>,
    /// Writes recorded into the buffer since its creation (kernel bindings that write, copies
    /// into it, `write_f32`): what the caches of derived tensors check.
    writes: std::sync::atomic::AtomicU64,
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let (Some(buf), Some(pool)) = (self.buffer.take(), &self.pool) {
            pool.give(buf);
        }
    }
}

/// A device tensor. Cloning shares the buffer.
#[derive(Clone)]
pub struct Tensor {
    storage: Arc<Storage>,
    shape: Vec<usize>,
    dtype: DType,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {:?})", self.dtype, self.shape)
    }
}

fn numel_of(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| {
            Error::Shape(format!(
                "shape {shape:?} has more elements than fit in memory"
            ))
        })
}

impl Tensor {
    fn check_size(ctx: &Context, shape: &[usize]) -> Result<u64> {
        let bytes = (numel_of(shape)? as u64).saturating_mul(4);
        if bytes > ctx.max_binding_bytes() {
            return Err(Error::Shape(format!(
                "tensor {shape:?} needs {bytes} bytes, more than one binding may cover on this \
                 adapter ({} bytes); split the batch",
                ctx.max_binding_bytes()
            )));
        }
        Ok(bytes)
    }

    /// A pooled tensor with unspecified contents.
    pub fn empty(ctx: &Context, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let bytes = Self::check_size(ctx, shape)?;
        let buf = ctx.pool.take(&ctx.device, &ctx.queue, bytes);
        Ok(Tensor {
            storage: Arc::new(Storage {
                buffer: Some(buf),
                pool: Some(ctx.pool.clone()),
                writes: Default::default(),
            }),
            shape: shape.to_vec(),
            dtype,
        })
    }

    fn from_bytes(ctx: &Context, shape: &[usize], dtype: DType, data: &[u8]) -> Result<Tensor> {
        let bytes = Self::check_size(ctx, shape)?;
        if data.len() as u64 != bytes {
            return Err(Error::Shape(format!(
                "shape {shape:?} needs {} values, got {}",
                bytes / 4,
                data.len() / 4
            )));
        }
        // A pooled buffer written through the queue: the data lands after all work submitted
        // so far (which may still use the buffer's previous tensor) and before any later work.
        let buf = ctx.pool.take(&ctx.device, &ctx.queue, bytes);
        if !data.is_empty() {
            ctx.queue.write_buffer(&buf, 0, data);
        }
        Ok(Tensor {
            storage: Arc::new(Storage {
                buffer: Some(buf),
                pool: Some(ctx.pool.clone()),
                writes: Default::default(),
            }),
            shape: shape.to_vec(),
            dtype,
        })
    }

    /// Upload f32 values.
    pub fn from_f32(ctx: &Context, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        Self::from_bytes(ctx, shape, DType::F32, bytemuck::cast_slice(data))
    }

    /// Upload i32 values.
    pub fn from_i32(ctx: &Context, shape: &[usize], data: &[i32]) -> Result<Tensor> {
        Self::from_bytes(ctx, shape, DType::I32, bytemuck::cast_slice(data))
    }

    /// A tensor filled with one value (f32).
    pub fn full(ctx: &Context, shape: &[usize], value: f32) -> Result<Tensor> {
        // Before the host vector: a shape too large for the device is refused, not allocated.
        Self::check_size(ctx, shape)?;
        let n = numel_of(shape)?;
        Self::from_f32(ctx, shape, &vec![value; n])
    }

    /// A tensor of zeros (f32).
    pub fn zeros(ctx: &Context, shape: &[usize]) -> Result<Tensor> {
        Self::full(ctx, shape, 0.0)
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes of data (not of the possibly larger buffer behind it).
    pub fn bytes(&self) -> u64 {
        self.numel() as u64 * 4
    }

    /// The same buffer seen with another shape of the same element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel_of(shape)? != self.numel() {
            return Err(Error::Shape(format!(
                "cannot view {:?} as {shape:?}",
                self.shape
            )));
        }
        Ok(Tensor {
            storage: self.storage.clone(),
            shape: shape.to_vec(),
            dtype: self.dtype,
        })
    }

    /// A handle that keeps the buffer out of the pool while recorded work may use it.
    pub(crate) fn keep_alive(&self) -> Arc<Storage> {
        self.storage.clone()
    }

    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.storage
            .buffer
            .as_ref()
            .expect("buffer present until drop")
    }

    /// Whether two tensors share one buffer.
    pub fn same_buffer(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }

    /// Count a write into the buffer (called when the write is recorded).
    pub(crate) fn note_write(&self) {
        self.storage
            .writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Identity of the buffer (shared by clones and reshapes).
    pub(crate) fn storage_id(&self) -> usize {
        Arc::as_ptr(&self.storage) as usize
    }

    /// A reference to the buffer that does not keep it alive.
    pub(crate) fn weak_storage(&self) -> std::sync::Weak<Storage> {
        Arc::downgrade(&self.storage)
    }

    /// Whether `w` still refers to this tensor's buffer.
    pub(crate) fn is_storage(&self, w: &std::sync::Weak<Storage>) -> bool {
        w.upgrade().is_some_and(|s| Arc::ptr_eq(&s, &self.storage))
    }

    /// Writes recorded into the buffer so far: equal counts on the same buffer mean equal
    /// contents.
    pub(crate) fn write_count(&self) -> u64 {
        self.storage
            .writes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn read_bytes(&self, ctx: &Context) -> Result<Vec<u8>> {
        let bytes = self.bytes();
        let staging = ctx.pool.take_staging(&ctx.device, bytes.max(4));
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        if bytes > 0 {
            enc.copy_buffer_to_buffer(self.buffer(), 0, &staging, 0, bytes);
        }
        ctx.queue.submit([enc.finish()]);
        let slice = staging.slice(..bytes.max(4));
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        ctx.wait()?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::Device(format!("readback failed: {e}"))),
            Err(_) => return Err(Error::Device("readback never completed".into())),
        }
        let out = slice
            .get_mapped_range()
            .map_err(|e| Error::Device(format!("readback map: {e}")))?[..bytes as usize]
            .to_vec();
        staging.unmap();
        ctx.pool.give_staging(staging);
        Ok(out)
    }

    /// Download as f32 (waits for all submitted work).
    pub fn to_f32(&self, ctx: &Context) -> Result<Vec<f32>> {
        if self.dtype != DType::F32 {
            return Err(Error::Shape(format!("{self:?} is not f32")));
        }
        Ok(bytemuck::pod_collect_to_vec(&self.read_bytes(ctx)?))
    }

    /// Download as i32 (waits for all submitted work).
    pub fn to_i32(&self, ctx: &Context) -> Result<Vec<i32>> {
        if self.dtype != DType::I32 {
            return Err(Error::Shape(format!("{self:?} is not i32")));
        }
        Ok(bytemuck::pod_collect_to_vec(&self.read_bytes(ctx)?))
    }

    /// Overwrite the contents from host memory. Ordered after all work submitted so far and
    /// before work submitted later.
    pub fn write_f32(&self, ctx: &Context, data: &[f32]) -> Result<()> {
        if self.dtype != DType::F32 || data.len() != self.numel() {
            return Err(Error::Shape(format!(
                "cannot write {} f32 values into {self:?}",
                data.len()
            )));
        }
        self.note_write();
        // Staged by the queue; it lands before the next submitted work.
        ctx.queue
            .write_buffer(self.buffer(), 0, bytemuck::cast_slice(data));
        Ok(())
    }
}

impl Context {
    /// Bytes held by the transient-buffer pool's free list.
    pub fn pool_free_bytes(&self) -> u64 {
        self.pool.free_bytes()
    }

    /// wgpu buffers the runtime has created so far: tensors, readback buffers and uniform
    /// arenas. In a steady training loop this stops growing after the first steps.
    pub fn buffers_created(&self) -> u64 {
        self.pool.created() + self.arenas.created()
    }

    /// Release the transient-buffer pool's free buffers.
    pub fn trim_pool(&self) {
        self.pool.trim()
    }

    /// Fill every transient tensor with NaN when it is handed out (for tests: a kernel that
    /// reads what it did not write, or leaves an output element unwritten, shows up as NaN).
    pub fn set_poison_pool(&self, on: bool) {
        self.pool
            .poison
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }
}
