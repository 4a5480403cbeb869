//! The C ABI of libfewlabels (`include/fewlabels.h` is generated from this file by cbindgen).
//!
//! Conventions, in the style of ONNX Runtime and llama.h:
//! - opaque handles (`fl_model`), created and freed by the library;
//! - every fallible call returns an `fl_status` (`FL_OK` = 0, otherwise an `FL_ERR_*` code of
//!   the append-only `fl_status_code` enum) and leaves a message for `fl_last_error`;
//! - nothing panics or unwinds across the boundary: a Rust panic becomes `FL_ERR_PANIC`;
//! - one process-wide GPU device, opened on the first call that needs it.
//!
//! Threads: every call may be made from any thread. One `fl_model` may be used by several
//! threads at once for sampling, classification, `fl_model_get_info`, `fl_make_z` and
//! `fl_model_save` (they only read the model); `fl_model_free` must not race with any other
//! call on the same model. A trainer (`fl_trainer`, made by `fl_trainer_create*`) holds its
//! own model and is used by one thread at a time: a call on a trainer that another thread is
//! in answers `FL_ERR_BUSY` at once.

#![allow(non_camel_case_types)]

use crate::data::Dataset;
use crate::device::Context;
use crate::error::Error;
use crate::model::file::TensorFile;
use crate::model::model::chw_to_rgba8;
use crate::model::model::copy_weights;
use crate::model::model::CONFIG_KEY;
use crate::model::{Config, Model, Which};
use crate::rng;
use crate::tensor::Tensor;
use crate::train::head::{fit_class_head, HeadConfig};
use crate::train::{LabelUse, TrainConfig, Trainer, Variant};
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock, RwLock, TryLockError};

/// The status every fallible call returns: `FL_OK` (0) or one of the `FL_ERR_*` codes of
/// `fl_status_code`. On failure `fl_last_error` tells what went wrong.
pub type fl_status = i32;

/// Status codes. Append-only: a code keeps its number in every later release, and callers
/// should treat an unknown non-zero code as a failure.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum fl_status_code {
    /// Success.
    FL_OK = 0,
    /// An argument has a value the call does not accept (e.g. a model without the part the
    /// call needs, truncation outside (0, 1], images of another size than the model's, a bad
    /// training configuration or preset name).
    FL_ERR_INVALID_ARGUMENT = 1,
    /// A handle, buffer or output pointer that must not be NULL was NULL.
    FL_ERR_NULL_POINTER = 2,
    /// A count or index is outside its range (class id, n = 0 or n > FL_MAX_N, pixel values).
    FL_ERR_OUT_OF_RANGE = 3,
    /// An input holds NaN or an infinity.
    FL_ERR_NON_FINITE = 4,
    /// A file could not be read or written (missing, no permission, disk full).
    FL_ERR_IO = 5,
    /// A file (or buffer) was read but is not a complete, valid model file: empty, truncated,
    /// longer than its header says, corrupt, without a valid model config, or with tensors
    /// that do not fit its config.
    FL_ERR_FORMAT = 6,
    /// No GPU adapter (hardware or software Vulkan/Metal/DX12/GL) could be opened.
    FL_ERR_NO_DEVICE = 7,
    /// The GPU reported an error (validation, out of memory, device lost).
    FL_ERR_DEVICE = 8,
    /// The embedded default model was asked for (`fl_model_load(NULL, ..)`) and this build
    /// has none. This build embeds one, so it never returns this status; it stays so that the
    /// numbering is append-only.
    FL_ERR_NO_DEFAULT_MODEL = 9,
    /// The model is in use by a call that needs it exclusively (training); try again later.
    FL_ERR_BUSY = 10,
    /// A bug inside the library (a Rust panic) was caught; the model may be unusable.
    FL_ERR_PANIC = 11,
    /// An internal inconsistency (a tensor shape check failed inside the library).
    FL_ERR_INTERNAL = 12,
}

use fl_status_code::*;

/// Largest number of images (or z vectors) one call accepts. Larger requests answer
/// `FL_ERR_OUT_OF_RANGE` (this also catches a negative count cast to `uint32_t`).
pub const FL_MAX_N: u32 = 1 << 20;

/// An opaque model handle: configuration, generator (and its EMA copy), optional
/// discriminator, on the process-wide GPU device. Created by `fl_model_load` or
/// `fl_model_load_memory`, freed by `fl_model_free`.
pub struct fl_model {
    ctx: &'static Context,
    model: RwLock<Model>,
}

/// What a model is. Filled by `fl_model_get_info`. The layout is fixed for this ABI: a later
/// release that needs more fields adds a new struct and a new call.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct fl_model_info {
    /// Number of classes; class ids are 0 .. num_classes - 1.
    pub num_classes: u32,
    /// Floats per z vector.
    pub z_dim: u32,
    /// Image channels: 1 (grey) or 3 (RGB).
    pub channels: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Image width in pixels (equal to height).
    pub width: u32,
    /// 1 when the model holds a discriminator (needed by `fl_classify`), else 0.
    pub has_discriminator: u32,
    /// 1 when the discriminator has the S3GAN class head (needed by `fl_classify`), else 0.
    pub has_class_head: u32,
    /// 1 when the discriminator has the rotation head, else 0.
    pub has_rotation_head: u32,
    /// 1 when the model holds the EMA generator (which sampling then uses), else 0.
    pub has_ema: u32,
    /// Images the device runs in one pass; larger batches are split internally.
    pub max_batch: u32,
    /// Trained parameters of the generator.
    pub generator_params: u64,
    /// Trained parameters of the discriminator (0 when the model has none).
    pub discriminator_params: u64,
}

/// A failure on its way to the caller.
struct Fail(fl_status_code, String);

type Res<T> = std::result::Result<T, Fail>;

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        let code = match &e {
            Error::NoAdapter(_) => FL_ERR_NO_DEVICE,
            Error::Device(_) => FL_ERR_DEVICE,
            Error::InvalidArgument(_) => FL_ERR_INVALID_ARGUMENT,
            Error::Shape(_) => FL_ERR_INTERNAL,
            Error::Io(_) => FL_ERR_IO,
            Error::Format(_) => FL_ERR_FORMAT,
        };
        Fail(code, e.to_string())
    }
}

fn fail<T>(code: fl_status_code, msg: impl Into<String>) -> Res<T> {
    Err(Fail(code, msg.into()))
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Run `f`, turning its failure or panic into a status and this thread's last error.
fn guard(call: &str, f: impl FnOnce() -> Res<()>) -> fl_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => FL_OK as fl_status,
        Ok(Err(Fail(code, msg))) => {
            set_last_error(&format!("{call}: {msg}"));
            code as fl_status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!(
                "{call}: internal error (panic): {what}; please report it"
            ));
            FL_ERR_PANIC as fl_status
        }
    }
}

static CONTEXT: OnceLock<std::result::Result<Context, Error>> = OnceLock::new();

/// The process-wide device context the C ABI uses, opened on first use (honouring
/// `FEWLABELS_BACKEND` and `FEWLABELS_ADAPTER`). A failure to open it is remembered: every
/// later call answers the same error.
pub fn shared_context() -> crate::Result<&'static Context> {
    CONTEXT
        .get_or_init(Context::new)
        .as_ref()
        .map_err(Clone::clone)
}

/// Hand the C ABI a device that the host application owns, so that its C calls (and those of
/// plugins it loads) run there instead of on a device of their own. A Rust host wraps its wgpu
/// device and queue with `Context::from_device` and calls this before the first C call that
/// needs the device. Returns the context the C ABI now uses.
///
/// Errors: `Error::InvalidArgument` when the C ABI already has its device (a C call opened it,
/// or this was called before); the C ABI then keeps the device it has. C itself cannot hand
/// over a device (the header says why).
pub fn set_shared_context(ctx: Context) -> crate::Result<&'static Context> {
    let mut ours = Some(ctx);
    let got = CONTEXT.get_or_init(|| Ok(ours.take().expect("taken once")));
    if ours.is_some() {
        return Err(Error::InvalidArgument(
            "the C ABI already has its device (set_shared_context must come before the first C \
             call that needs the device, and only once)"
                .into(),
        ));
    }
    got.as_ref().map_err(Clone::clone)
}

fn context() -> Res<&'static Context> {
    Ok(shared_context()?)
}

/// A model file's config must parse and pass its checks: a file with a bad config is a bad
/// file (`FL_ERR_FORMAT`), not a bad argument.
fn check_file_config(file: &TensorFile, source: &str) -> Res<()> {
    let Some(json) = file.metadata.get(CONFIG_KEY) else {
        return fail(
            FL_ERR_FORMAT,
            format!("{source}: the file has no model config (metadata key \"config\")"),
        );
    };
    match Config::from_json(json) {
        Ok(_) => Ok(()),
        Err(Error::InvalidArgument(m) | Error::Format(m)) => fail(
            FL_ERR_FORMAT,
            format!("{source}: the model config in the file is not valid: {m}"),
        ),
        Err(e) => Err(e.into()),
    }
}

/// The caller's statement of the images' size must be the model's.
fn check_image_size(model: &Model, size: Option<(u32, u32, u32)>) -> Res<()> {
    let Some((c, h, w)) = size else {
        return Ok(());
    };
    let (mc, r) = (model.cfg.channels as u32, model.cfg.resolution as u32);
    if (c, h, w) != (mc, r, r) {
        return fail(
            FL_ERR_INVALID_ARGUMENT,
            format!(
                "the images are {c} x {h} x {w} (channels x height x width) but the model takes \
                 {mc} x {r} x {r}; convert them first (nothing was read)"
            ),
        );
    }
    Ok(())
}

fn not_null<T>(p: *const T, what: &str) -> Res<()> {
    if p.is_null() {
        fail(FL_ERR_NULL_POINTER, format!("{what} is NULL"))
    } else {
        Ok(())
    }
}

/// # Safety
/// `p` must be non-NULL (checked by the caller) and valid for `len` reads.
unsafe fn slice<'a, T>(p: *const T, len: usize) -> &'a [T] {
    std::slice::from_raw_parts(p, len)
}

/// # Safety
/// `p` must be non-NULL (checked by the caller) and valid for `len` writes.
unsafe fn slice_mut<'a, T>(p: *mut T, len: usize) -> &'a mut [T] {
    std::slice::from_raw_parts_mut(p, len)
}

/// # Safety
/// `p` must be NULL or point to a NUL-terminated string.
unsafe fn path_of(p: *const c_char) -> Res<PathBuf> {
    not_null(p, "path")?;
    let bytes = CStr::from_ptr(p).to_bytes();
    if bytes.is_empty() {
        return fail(FL_ERR_INVALID_ARGUMENT, "path is the empty string");
    }
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
    }
    #[cfg(not(unix))]
    {
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(PathBuf::from(s)),
            Err(_) => fail(FL_ERR_INVALID_ARGUMENT, "path is not UTF-8"),
        }
    }
}

/// # Safety
/// `m` must be NULL or a live handle from `fl_model_load*`.
unsafe fn handle<'a>(m: *const fl_model) -> Res<&'a fl_model> {
    not_null(m, "model")?;
    Ok(&*m)
}

impl fl_model {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Model> {
        self.model.read().unwrap_or_else(|p| p.into_inner())
    }
}

fn check_n(n: u32) -> Res<usize> {
    if n == 0 {
        return fail(
            FL_ERR_OUT_OF_RANGE,
            format!("n is 0 (must be 1 ..= {FL_MAX_N})"),
        );
    }
    if n > FL_MAX_N {
        return fail(
            FL_ERR_OUT_OF_RANGE,
            format!("n = {n} is more than FL_MAX_N = {FL_MAX_N}; split the request"),
        );
    }
    Ok(n as usize)
}

fn check_classes(model: &Model, classes: &[i32]) -> Res<()> {
    let k = model.cfg.num_classes;
    if let Some((i, c)) = classes
        .iter()
        .enumerate()
        .find(|(_, &c)| c < 0 || c as usize >= k)
    {
        return fail(
            FL_ERR_OUT_OF_RANGE,
            format!("class id {c} (entry {i}) is outside 0 ..= {}", k - 1),
        );
    }
    Ok(())
}

fn check_finite(v: &[f32], what: &str) -> Res<()> {
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return fail(
            FL_ERR_NON_FINITE,
            format!("{what}[{i}] = {} is not finite", v[i]),
        );
    }
    Ok(())
}

fn image_len(model: &Model) -> usize {
    let c = &model.cfg;
    c.channels * c.resolution * c.resolution
}

/// Sample `classes.len()` images into `out`, one device pass per `max_batch` images, so the
/// host never holds more than one pass of images.
fn sample_into(
    ctx: &Context,
    model: &Model,
    classes: &[i32],
    z: &[f32],
    out: &mut [f32],
) -> Res<()> {
    check_classes(model, classes)?;
    check_finite(z, "z")?;
    let per = image_len(model);
    let zd = model.cfg.z_dim;
    let batch = model.max_batch(ctx).max(1);
    for (i, cs) in classes.chunks(batch).enumerate() {
        let first = i * batch;
        let zs = &z[first * zd..(first + cs.len()) * zd];
        let img = model.sample(ctx, Which::Ema, cs, zs)?;
        out[first * per..(first + cs.len()) * per].copy_from_slice(&img);
    }
    Ok(())
}

/// Images the discriminator runs in one pass within the device's binding limit.
/// Pixels must be finite (`FL_ERR_NON_FINITE`) and in [0, 1] (`FL_ERR_OUT_OF_RANGE`).
fn check_pixels(images: &[f32]) -> Res<()> {
    check_finite(images, "images")?;
    if let Some(i) = images.iter().position(|v| !(0.0..=1.0).contains(v)) {
        return fail(
            FL_ERR_OUT_OF_RANGE,
            format!("images[{i}] = {} is outside [0, 1]", images[i]),
        );
    }
    Ok(())
}

/// Images CHW in [0, 1], one after another -> NHWC in [-1, 1], the range G produces.
fn to_nhwc(model: &Model, images: &[f32]) -> Vec<f32> {
    let (r, ch) = (model.cfg.resolution, model.cfg.channels);
    let per = image_len(model);
    let mut x = vec![0f32; images.len()];
    for (b, im) in images.chunks_exact(per).enumerate() {
        for c in 0..ch {
            for p in 0..r * r {
                x[b * per + p * ch + c] = im[c * r * r + p] * 2.0 - 1.0;
            }
        }
    }
    x
}

fn classify_into(
    ctx: &Context,
    model: &Model,
    images: &[f32],
    labels: &mut [i32],
    probs: Option<&mut [f32]>,
) -> Res<()> {
    check_pixels(images)?;
    let (pred, p) = model.classify(ctx, &to_nhwc(model, images), labels.len())?;
    labels.copy_from_slice(&pred);
    if let Some(out) = probs {
        out.copy_from_slice(&p);
    }
    Ok(())
}

fn finish_load(model: Model, out: *mut *mut fl_model) -> Res<()> {
    let ctx = context()?;
    let h = Box::new(fl_model {
        ctx,
        model: RwLock::new(model),
    });
    // SAFETY: `out` was checked to be non-NULL by the caller.
    unsafe { *out = Box::into_raw(h) };
    Ok(())
}

/// The library version, e.g. "0.1.0". A static string: do not free it.
#[no_mangle]
pub extern "C" fn fl_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of this thread's last failed call ("" when none failed yet). The string is
/// owned by the library and stays valid until the next failing call on this thread; copy it
/// to keep it. Successful calls leave it unchanged.
#[no_mangle]
pub extern "C" fn fl_last_error() -> *const c_char {
    catch_unwind(|| LAST_ERROR.with(|e| e.borrow().as_ptr()))
        .unwrap_or(c"internal error while reading the last error".as_ptr())
}

/// The name of a status code ("FL_OK", "FL_ERR_IO", ...; "FL_ERR_UNKNOWN" for a code this
/// build does not know). A static string: do not free it.
#[no_mangle]
pub extern "C" fn fl_status_name(status: fl_status) -> *const c_char {
    let s: &CStr = match status {
        0 => c"FL_OK",
        1 => c"FL_ERR_INVALID_ARGUMENT",
        2 => c"FL_ERR_NULL_POINTER",
        3 => c"FL_ERR_OUT_OF_RANGE",
        4 => c"FL_ERR_NON_FINITE",
        5 => c"FL_ERR_IO",
        6 => c"FL_ERR_FORMAT",
        7 => c"FL_ERR_NO_DEVICE",
        8 => c"FL_ERR_DEVICE",
        9 => c"FL_ERR_NO_DEFAULT_MODEL",
        10 => c"FL_ERR_BUSY",
        11 => c"FL_ERR_PANIC",
        12 => c"FL_ERR_INTERNAL",
        _ => c"FL_ERR_UNKNOWN",
    };
    s.as_ptr()
}

/// Describe the GPU device the library runs on, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)
/// (vulkan, Cpu, Mesa 22.3.6)": the adapter's name, then its backend, type and driver. Opens the
/// process-wide device when no call has opened it yet (as `fl_model_load` does).
///
/// `out` receives a string owned by the library, valid for the life of the process: do not
/// free it. Set to NULL on failure. Errors: `FL_ERR_NULL_POINTER`, `FL_ERR_NO_DEVICE`.
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fl_device_name(out: *mut *const c_char) -> fl_status {
    static NAME: OnceLock<CString> = OnceLock::new();
    guard("fl_device_name", || {
        not_null(out, "out")?;
        *out = std::ptr::null();
        let ctx = context()?;
        let name = NAME.get_or_init(|| {
            CString::new(ctx.description.to_string().replace('\0', " ")).unwrap_or_default()
        });
        *out = name.as_ptr();
        Ok(())
    })
}

/// Load a model file (a fewlabels safetensors file) onto the GPU.
///
/// `path`: a NUL-terminated file name, or NULL for the embedded default model (Fashion-MNIST,
/// 10 classes, 32 x 32 grey, trained by libfewlabels with 10% of the labels; it holds the
/// discriminator too, so it can classify and be fine-tuned; see docs/MODEL_CARD.md).
/// `out`: receives a new handle, owned by the caller, to be freed with `fl_model_free`; set
/// to NULL on failure.
///
/// The first call that needs the GPU opens the process-wide device, honouring the environment
/// variables `FEWLABELS_BACKEND` (vulkan, metal, dx12, gl) and `FEWLABELS_ADAPTER` (part of an
/// adapter name); `FL_ERR_NO_DEVICE` with an install hint when there is none (the failure is
/// remembered for the life of the process). Errors: `FL_ERR_IO` (cannot read), `FL_ERR_FORMAT`
/// (empty, truncated, oversized, corrupt, not a model file, a missing or invalid model config,
/// tensors that do not fit the config; the file is checked before the device is opened),
/// `FL_ERR_INVALID_ARGUMENT` (`path` is ""), `FL_ERR_NULL_POINTER` (`out` is NULL). The file
/// is read whole into host memory during the call and uploaded; `path` is not kept.
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string; `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fl_model_load(path: *const c_char, out: *mut *mut fl_model) -> fl_status {
    guard("fl_model_load", || {
        not_null(out, "out")?;
        *out = std::ptr::null_mut();
        if path.is_null() {
            let model = Model::load_default(context()?)?;
            return finish_load(model, out);
        }
        let path = path_of(path)?;
        // The file first: a missing or damaged file is reported even without a device.
        let file = TensorFile::load(&path)?;
        check_file_config(&file, &path.display().to_string())?;
        let ctx = context()?;
        let model = Model::from_file(ctx, &file).map_err(|e| match e {
            Error::Format(m) => Error::Format(format!("{}: {m}", path.display())),
            other => other,
        })?;
        finish_load(model, out)
    })
}

/// Load a model from the bytes of a model file held in memory (`len` bytes at `data`; the
/// library copies what it needs, the caller keeps ownership of `data`). Otherwise as
/// `fl_model_load`.
///
/// # Safety
/// `data` must be NULL or valid for `len` reads; `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fl_model_load_memory(
    data: *const u8,
    len: usize,
    out: *mut *mut fl_model,
) -> fl_status {
    guard("fl_model_load_memory", || {
        not_null(out, "out")?;
        *out = std::ptr::null_mut();
        not_null(data, "data")?;
        if len == 0 {
            return fail(FL_ERR_FORMAT, "the buffer is empty (len = 0)");
        }
        let file = TensorFile::from_bytes(slice(data, len))?;
        check_file_config(&file, "the buffer")?;
        let ctx = context()?;
        let model = Model::from_file(ctx, &file)?;
        finish_load(model, out)
    })
}

/// Free a model handle and its GPU memory. NULL is a no-op. No other call may use the model
/// during or after this call.
///
/// # Safety
/// `model` must be NULL or a handle from `fl_model_load*` not freed before.
#[no_mangle]
pub unsafe extern "C" fn fl_model_free(model: *mut fl_model) {
    if !model.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(model))));
    }
}

/// Save a model to a file, atomically (a crash leaves the old file or the new one). Loading
/// it back gives the same tensors bit for bit. May run while other threads sample.
///
/// # Safety
/// `model` must be NULL or a live handle; `path` must be NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn fl_model_save(model: *const fl_model, path: *const c_char) -> fl_status {
    guard("fl_model_save", || {
        let h = handle(model)?;
        let path = path_of(path)?;
        h.read().save(h.ctx, &path)?;
        Ok(())
    })
}

/// Describe a model: fills `*out` (sizes, which parts it holds, parameter counts).
///
/// # Safety
/// `model` must be NULL or a live handle; `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fl_model_get_info(
    model: *const fl_model,
    out: *mut fl_model_info,
) -> fl_status {
    guard("fl_model_get_info", || {
        let h = handle(model)?;
        not_null(out, "out")?;
        *out = model_info(h.ctx, &h.read());
        Ok(())
    })
}

fn model_info(ctx: &Context, m: &Model) -> fl_model_info {
    let c = &m.cfg;
    let (gp, dp) = m.parameter_counts();
    fl_model_info {
        num_classes: c.num_classes as u32,
        z_dim: c.z_dim as u32,
        channels: c.channels as u32,
        height: c.resolution as u32,
        width: c.resolution as u32,
        has_discriminator: m.d.is_some() as u32,
        has_class_head: (m.d.is_some() && c.class_head) as u32,
        has_rotation_head: (m.d.is_some() && c.rotation_head) as u32,
        has_ema: m.g_ema.is_some() as u32,
        max_batch: m.max_batch(ctx).min(u32::MAX as usize) as u32,
        generator_params: gp as u64,
        discriminator_params: if m.d.is_some() { dp as u64 } else { 0 },
    }
}

/// Fill `out` with `n` z vectors (`n * z_dim` floats) for `seed`: a standard normal
/// truncated to [-2, 2], times `truncation` in (0, 1] (1 = no truncation; smaller trades
/// variety for fidelity; nothing else changes with it). Bit-reproducible on any machine;
/// vector i depends only on (seed, i). Needs no GPU.
///
/// Errors: `FL_ERR_INVALID_ARGUMENT` (truncation outside (0, 1] or NaN),
/// `FL_ERR_OUT_OF_RANGE` (n = 0 or n > FL_MAX_N), `FL_ERR_NULL_POINTER`.
///
/// # Safety
/// `model` must be NULL or a live handle; `out` must be NULL or valid for `n * z_dim` writes.
#[no_mangle]
pub unsafe extern "C" fn fl_make_z(
    model: *const fl_model,
    seed: u64,
    truncation: f32,
    n: u32,
    out: *mut f32,
) -> fl_status {
    guard("fl_make_z", || {
        let h = handle(model)?;
        not_null(out, "out")?;
        let n = check_n(n)?;
        if !(truncation > 0.0 && truncation <= 1.0) {
            return fail(
                FL_ERR_INVALID_ARGUMENT,
                format!("truncation {truncation} is outside (0, 1]"),
            );
        }
        let zd = h.read().cfg.z_dim;
        for (i, v) in slice_mut(out, n * zd).iter_mut().enumerate() {
            *v = rng::truncated_normal_at(seed, i as u64, truncation);
        }
        Ok(())
    })
}

/// Sample one image of class `class_id` from z (`z_dim` floats, e.g. from `fl_make_z`).
///
/// `out` receives `channels * height * width` floats in [0, 1], channel-major (CHW), owned by
/// the caller. Uses the EMA generator when the model has one, and standing batch-norm
/// statistics; the same call with the same inputs gives the same image on the same device.
/// Several threads may sample from one model at once.
///
/// Errors: `FL_ERR_OUT_OF_RANGE` (class id outside 0 .. num_classes - 1),
/// `FL_ERR_NON_FINITE` (z holds NaN/inf), `FL_ERR_NULL_POINTER`, `FL_ERR_DEVICE`.
///
/// # Safety
/// `model` must be NULL or a live handle; `z` NULL or `z_dim` readable floats; `out` NULL or
/// `channels * height * width` writable floats.
#[no_mangle]
pub unsafe extern "C" fn fl_sample(
    model: *mut fl_model,
    class_id: i32,
    z: *const f32,
    out: *mut f32,
) -> fl_status {
    guard("fl_sample", || {
        let h = handle(model)?;
        not_null(z, "z")?;
        not_null(out, "out")?;
        let m = h.read();
        let z = slice(z, m.cfg.z_dim);
        let out = slice_mut(out, image_len(&m));
        sample_into(h.ctx, &m, &[class_id], z, out)
    })
}

/// Compile ahead what sampling `n` images in one call needs (`fl_sample`: n = 1;
/// `fl_sample_batch`), so that the first such call does not wait for it: call it while the
/// program loads. Only adapters that compile a kernel at its first dispatch (CPU adapters such
/// as lavapipe, unless `FEWLABELS_WARM=0`) compile here, for about 1 s the first time on a
/// machine (Mesa keeps the result on disk); on the others the kernels were compiled at load
/// and this returns at once. Nothing runs: later samples are the same with or without it.
///
/// Errors: `FL_ERR_NULL_POINTER` (model NULL); `FL_ERR_OUT_OF_RANGE` (n = 0 or n > FL_MAX_N);
/// `FL_ERR_DEVICE`.
///
/// # Safety
/// `model` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn fl_model_prepare(model: *mut fl_model, n: u32) -> fl_status {
    guard("fl_model_prepare", || {
        let h = handle(model)?;
        let n = check_n(n)?;
        let m = h.read();
        m.prepare_sample(h.ctx, n)?;
        Ok(())
    })
}

/// Sample `n` images: image i has class `class_ids[i]` and z `z[i * z_dim ..]`. `out`
/// receives `n * channels * height * width` floats in [0, 1], image after image, each CHW.
/// Batches larger than the device holds are split internally. Checks every input before
/// running anything; otherwise as `fl_sample`.
///
/// Errors: as `fl_sample`, and `FL_ERR_OUT_OF_RANGE` for n = 0 or n > FL_MAX_N.
///
/// # Safety
/// `model` must be NULL or a live handle; `class_ids` NULL or `n` readable ids; `z` NULL or
/// `n * z_dim` readable floats; `out` NULL or `n * channels * height * width` writable floats.
#[no_mangle]
pub unsafe extern "C" fn fl_sample_batch(
    model: *mut fl_model,
    n: u32,
    class_ids: *const i32,
    z: *const f32,
    out: *mut f32,
) -> fl_status {
    guard("fl_sample_batch", || {
        let h = handle(model)?;
        not_null(class_ids, "class_ids")?;
        not_null(z, "z")?;
        not_null(out, "out")?;
        let n = check_n(n)?;
        let m = h.read();
        let classes = slice(class_ids, n);
        let z = slice(z, n * m.cfg.z_dim);
        let out = slice_mut(out, n * image_len(&m));
        sample_into(h.ctx, &m, classes, z, out)
    })
}

/// Sample one image as texture-ready bytes: `out` receives `height * width * 4` bytes, RGBA,
/// row-major, top row first (grey images replicated into R, G and B; alpha 255). Otherwise as
/// `fl_sample`.
///
/// # Safety
/// `model` must be NULL or a live handle; `z` NULL or `z_dim` readable floats; `out` NULL or
/// `height * width * 4` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn fl_sample_rgba8(
    model: *mut fl_model,
    class_id: i32,
    z: *const f32,
    out: *mut u8,
) -> fl_status {
    guard("fl_sample_rgba8", || {
        let h = handle(model)?;
        not_null(z, "z")?;
        not_null(out, "out")?;
        let m = h.read();
        let z = slice(z, m.cfg.z_dim);
        let mut chw = vec![0f32; image_len(&m)];
        sample_into(h.ctx, &m, &[class_id], z, &mut chw)?;
        let r = m.cfg.resolution;
        slice_mut(out, r * r * 4).copy_from_slice(&chw_to_rgba8(&chw, m.cfg.channels, r));
        Ok(())
    })
}

/// Classify `n` images with the discriminator's S3GAN class head.
///
/// `images`: `n * channels * height * width` floats in [0, 1], image after image, each CHW
/// (the layout `fl_sample` writes). `labels` receives `n` class ids (the most likely class);
/// `probs`, when not NULL, receives `n * num_classes` softmax probabilities, row by row.
///
/// Errors: `FL_ERR_INVALID_ARGUMENT` when the model has no discriminator (a sampling-only
/// file) or its discriminator has no class head; `FL_ERR_NON_FINITE` / `FL_ERR_OUT_OF_RANGE`
/// for pixels that are NaN/inf or outside [0, 1]; `FL_ERR_OUT_OF_RANGE` for n = 0 or
/// n > FL_MAX_N; `FL_ERR_NULL_POINTER`.
///
/// # Safety
/// `model` must be NULL or a live handle; `images` NULL or readable as above; `labels` NULL
/// or `n` writable ids; `probs` NULL or `n * num_classes` writable floats.
#[no_mangle]
pub unsafe extern "C" fn fl_classify(
    model: *mut fl_model,
    n: u32,
    images: *const f32,
    labels: *mut i32,
    probs: *mut f32,
) -> fl_status {
    classify("fl_classify", model, n, None, images, labels, probs)
}

/// As `fl_classify`, with the size of the images stated: `channels`, `height` and `width`
/// must be the model's (`fl_model_get_info`), else `FL_ERR_INVALID_ARGUMENT` naming both sizes,
/// and nothing is read from `images`. Use it for images from elsewhere (files, a camera), so
/// that a size mismatch is a status instead of a read past the end of the buffer.
///
/// # Safety
/// As `fl_classify`; `images` NULL or `n * channels * height * width` readable floats.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn fl_classify_sized(
    model: *mut fl_model,
    n: u32,
    channels: u32,
    height: u32,
    width: u32,
    images: *const f32,
    labels: *mut i32,
    probs: *mut f32,
) -> fl_status {
    let size = Some((channels, height, width));
    classify("fl_classify_sized", model, n, size, images, labels, probs)
}

/// Fit the discriminator's class head (the classifier of `fl_classify`) on `n` images, some
/// of them labelled, leaving the rest of the model unchanged: D's features of the labelled
/// images (D frozen) train the head alone, with Adam on the class cross-entropy (a linear
/// probe). `fewlabels train` does this when it exports an s2gan or s3gan model, whose GAN
/// trains no class head. Use it to give such a model a classifier, or to adapt the
/// classifier to your own labelled images. Sampling is not affected; the call holds the
/// model exclusively while it runs.
///
/// `images`: as `fl_classify` (`n` CHW images in [0, 1]). `labels`: `n` class ids, or -1 for
/// an image without a label (skipped). `steps`: Adam steps of 128 images (0 for the default,
/// 2000). `seed`: the order of the images. `accuracy`, when not NULL, receives the share of
/// the labelled images the fitted head gets right. The same inputs give the same head.
///
/// Errors: `FL_ERR_INVALID_ARGUMENT` when the model has no discriminator or no class head,
/// when no image is labelled, or for a label outside -1 .. num_classes - 1;
/// `FL_ERR_NON_FINITE` / `FL_ERR_OUT_OF_RANGE` for pixels that are NaN/inf or outside [0, 1];
/// `FL_ERR_OUT_OF_RANGE` for n = 0 or n > FL_MAX_N; `FL_ERR_NULL_POINTER`; `FL_ERR_DEVICE`.
/// On an error the model is unchanged.
///
/// # Safety
/// `model` must be NULL or a live handle; `images` NULL or `n * channels * height * width`
/// readable floats; `labels` NULL or `n` readable ids; `accuracy` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fl_model_fit_class_head(
    model: *mut fl_model,
    n: u32,
    images: *const f32,
    labels: *const i32,
    steps: u32,
    seed: u64,
    accuracy: *mut f32,
) -> fl_status {
    guard("fl_model_fit_class_head", || {
        let h = handle(model)?;
        not_null(images, "images")?;
        not_null(labels, "labels")?;
        let n = check_n(n)?;
        let mut m = h.model.write().unwrap_or_else(|p| p.into_inner());
        let images = slice(images, n * image_len(&m));
        let labels = slice(labels, n);
        check_pixels(images)?;
        let k = m.cfg.num_classes as i32;
        if let Some(i) = labels.iter().position(|&y| y < -1 || y >= k) {
            return fail(
                FL_ERR_INVALID_ARGUMENT,
                format!("labels[{i}] = {} is not -1 or a class in 0..{k}", labels[i]),
            );
        }
        let data = Dataset::new(
            to_nhwc(&m, images),
            m.cfg.resolution,
            m.cfg.channels,
            labels.to_vec(),
            m.cfg.num_classes,
        )?;
        let mut cfg = HeadConfig::new();
        if steps > 0 {
            cfg.steps = steps as usize;
        }
        cfg.seed = seed;
        let rep = fit_class_head(h.ctx, &mut m, &data, labels, &cfg, &mut |_, _| {})?;
        if !accuracy.is_null() {
            *accuracy = rep.train_accuracy as f32;
        }
        Ok(())
    })
}

/// # Safety
/// As `fl_classify`.
unsafe fn classify(
    call: &str,
    model: *mut fl_model,
    n: u32,
    size: Option<(u32, u32, u32)>,
    images: *const f32,
    labels: *mut i32,
    probs: *mut f32,
) -> fl_status {
    guard(call, || {
        let h = handle(model)?;
        not_null(images, "images")?;
        not_null(labels, "labels")?;
        let n = check_n(n)?;
        let m = h.read();
        check_image_size(&m, size)?;
        let images = slice(images, n * image_len(&m));
        let labels = slice_mut(labels, n);
        let probs = if probs.is_null() {
            None
        } else {
            Some(slice_mut(probs, n * m.cfg.num_classes))
        };
        classify_into(h.ctx, &m, images, labels, probs)
    })
}

// ---------------------------------------------------------------------------------------------
// Training.

/// Which GAN a trainer trains: one of the `FL_VARIANT_*` values of `fl_variant_code`.
pub type fl_variant = i32;

/// Training variants (the values of `fl_variant`). Append-only, like `fl_status_code`.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum fl_variant_code {
    /// BigGAN with every label known (labels of -1 are refused); no class head, no rotation
    /// loss.
    FL_VARIANT_CONDITIONAL = 0,
    /// One class (0) for every image, labels ignored; no class head, no rotation loss.
    FL_VARIANT_UNCONDITIONAL = 1,
    /// As unconditional, with the rotation loss (SSGAN).
    FL_VARIANT_SSGAN = 2,
    /// The labelled rows their label, the others the argmax of D's class head; no rotation
    /// loss (S2GAN-CO).
    FL_VARIANT_S2GAN_CO = 3,
    /// As S2GAN-CO, with the rotation loss (S3GAN-CO, the default).
    FL_VARIANT_S3GAN_CO = 4,
    /// Pre-trained labels without the rotation loss (S2GAN): conditional on labels that a
    /// labeller filled in beforehand (`fewlabels train --variant s2gan` runs it; from C, pass
    /// every label), so labels of -1 are refused; no class head.
    FL_VARIANT_S2GAN = 5,
    /// Pre-trained labels with the rotation loss (S3GAN): as `FL_VARIANT_S2GAN`, plus the
    /// rotation loss of SSGAN.
    FL_VARIANT_S3GAN = 6,
}

use fl_variant_code::*;

const VARIANTS: [(fl_variant_code, Variant); 7] = [
    (FL_VARIANT_CONDITIONAL, Variant::Conditional),
    (FL_VARIANT_UNCONDITIONAL, Variant::Unconditional),
    (FL_VARIANT_SSGAN, Variant::Ssgan),
    (FL_VARIANT_S2GAN_CO, Variant::S2ganCo),
    (FL_VARIANT_S3GAN_CO, Variant::S3ganCo),
    (FL_VARIANT_S2GAN, Variant::S2gan),
    (FL_VARIANT_S3GAN, Variant::S3gan),
];

/// Training hyper-parameters. Fill it with `fl_train_config_default` and change what you
/// need. The layout is fixed for this ABI: a later release that needs more fields adds a new
/// struct and a new call.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct fl_train_config {
    /// Which GAN: an `FL_VARIANT_*` value (default `FL_VARIANT_S3GAN_CO`).
    pub variant: fl_variant,
    /// D steps per `fl_trainer_step` (each on the same real batch with fresh fakes); at least 1
    /// (default 2).
    pub d_steps: u32,
    /// Adam learning rate of G, finite and >= 0 (default 1e-4).
    pub lr_g: f64,
    /// Adam learning rate of D, finite and >= 0 (default 4e-4).
    pub lr_d: f64,
    /// Adam beta1 in [0, 1) (default 0).
    pub beta1: f64,
    /// Adam beta2 in [0, 1) (default 0.999).
    pub beta2: f64,
    /// Adam epsilon, finite and >= 0 (default 1e-8).
    pub eps: f64,
    /// Share of a batch whose last rows are also fed rotated, in (0, 1] (default 0.25; used by
    /// the variants with the rotation loss).
    pub rot_fraction: f64,
    /// Weight of the fake rotation loss in G's loss (default 0.2).
    pub g_rot_weight: f32,
    /// Weight of the real rotation loss in D's loss (default 1.0).
    pub d_rot_weight: f32,
    /// Weight of the class-head loss in D's loss (default 1.0).
    pub class_weight: f32,
    /// EMA decay of G_ema in [0, 1] (default 0.9999).
    pub ema_decay: f64,
    /// First G step (counted from 1 for each trainer) that averages; before it G_ema is a copy
    /// of G (default 1000). For a short fine-tune from a trained model, set it to 1 (or 0).
    pub ema_start: u64,
    /// Seed of the trainer's fake z and fake labels (default 0).
    pub seed: u64,
}

impl fl_train_config {
    fn from_rust(c: &TrainConfig) -> fl_train_config {
        let variant = VARIANTS
            .iter()
            .find(|(_, v)| *v == c.variant)
            .map(|(code, _)| *code as fl_variant)
            .unwrap_or(FL_VARIANT_S3GAN_CO as fl_variant);
        fl_train_config {
            variant,
            d_steps: c.d_steps.min(u32::MAX as usize) as u32,
            lr_g: c.lr_g,
            lr_d: c.lr_d,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            rot_fraction: c.rot_fraction,
            g_rot_weight: c.g_rot_weight,
            d_rot_weight: c.d_rot_weight,
            class_weight: c.class_weight,
            ema_decay: c.ema_decay,
            ema_start: c.ema_start,
            seed: c.seed,
        }
    }

    fn to_rust(self) -> Res<TrainConfig> {
        let Some(&(_, variant)) = VARIANTS.iter().find(|(c, _)| *c as i32 == self.variant) else {
            return fail(
                FL_ERR_INVALID_ARGUMENT,
                format!(
                    "variant {} is not an FL_VARIANT_* value (0 ..= 6)",
                    self.variant
                ),
            );
        };
        let c = TrainConfig {
            variant,
            lr_g: self.lr_g,
            lr_d: self.lr_d,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            d_steps: self.d_steps as usize,
            rot_fraction: self.rot_fraction,
            d_rot_weight: self.d_rot_weight,
            g_rot_weight: self.g_rot_weight,
            class_weight: self.class_weight,
            ema_decay: self.ema_decay,
            ema_start: self.ema_start,
            seed: self.seed,
        };
        c.validate()?;
        Ok(c)
    }
}

/// What one `fl_trainer_step` did. Loss values are means over the call's D steps (D) or the
/// value of its G step (G), each term with its weight applied.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct fl_step_stats {
    /// D's loss: d_hinge + d_rotation + d_class.
    pub d_loss: f32,
    /// mean(relu(1 - D(real))) + mean(relu(1 + D(fake))).
    pub d_hinge: f32,
    /// d_rot_weight * cross-entropy of the rotation head on the rotated real rows (0 without
    /// the rotation loss).
    pub d_rotation: f32,
    /// class_weight * cross-entropy of the class head on the labelled real rows (0 without the
    /// class head or without labelled rows).
    pub d_class: f32,
    /// G's loss: g_adversarial + g_rotation (NaN when the call stopped before its G step).
    pub g_loss: f32,
    /// -mean(D(fake)).
    pub g_adversarial: f32,
    /// g_rot_weight * cross-entropy of the rotation head on the rotated fakes.
    pub g_rotation: f32,
    /// Share of the labelled rows of this batch whose class-head argmax, after this call's D
    /// steps, equals their label; NaN when the batch has no labelled row or the model has no
    /// class head.
    pub class_accuracy: f32,
    /// Rows of this batch with a label (not -1).
    pub labelled: u32,
    /// D steps this trainer has taken, in all (this call's included).
    pub d_steps_done: u64,
    /// G steps this trainer has taken, in all.
    pub g_steps_done: u64,
}

/// An opaque trainer handle: a model (G, D, G_ema) on the process-wide GPU device with Adam
/// state, trained by `fl_trainer_step`. Created by `fl_trainer_create` or
/// `fl_trainer_create_new`, freed by `fl_trainer_free`.
///
/// A trainer is used by one thread at a time: a call that finds another thread inside a call
/// on the same trainer answers `FL_ERR_BUSY` at once (it never waits).
pub struct fl_trainer {
    ctx: &'static Context,
    trainer: Mutex<Trainer>,
}

/// # Safety
/// `t` must be NULL or a live handle from `fl_trainer_create*`.
unsafe fn trainer_handle<'a>(t: *const fl_trainer) -> Res<&'a fl_trainer> {
    not_null(t, "trainer")?;
    Ok(&*t)
}

impl fl_trainer {
    /// The trainer, or `FL_ERR_BUSY` when another thread is in a call on it.
    fn lock(&self) -> Res<MutexGuard<'_, Trainer>> {
        match self.trainer.try_lock() {
            Ok(g) => Ok(g),
            // A panic inside an earlier call was reported as FL_ERR_PANIC then.
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(TryLockError::WouldBlock) => fail(
                FL_ERR_BUSY,
                "another thread is using this trainer (a trainer is used by one thread at a \
                 time); wait for its call to return",
            ),
        }
    }
}

/// Largest batch one training step runs: G's pass over n fakes and D's single pass over
/// `2 * (n + 3k)` rows must fit the device's binding limit.
fn train_max_n(ctx: &Context, t: &Trainer) -> usize {
    let d = t.model.d_max_batch(ctx);
    let rows = |n: usize| 2 * (n + 3 * t.cfg.rot_rows(n));
    let mut n = t.model.max_batch(ctx).max(1).min(d);
    while n > 1 && rows(n) > d {
        n -= 1;
    }
    n
}

/// `FL_ERR_OUT_OF_RANGE` unless `n` images fit in one train step of `t` on this device.
fn check_train_n(ctx: &Context, t: &Trainer, n: usize) -> Res<()> {
    let max = train_max_n(ctx, t);
    if n > max {
        return fail(
            FL_ERR_OUT_OF_RANGE,
            format!("n = {n} is more than this device trains in one step ({max})"),
        );
    }
    Ok(())
}

/// An independent device copy of a model (every tensor).
fn copy_model(ctx: &Context, m: &Model) -> Res<Model> {
    Ok(Model {
        cfg: m.cfg.clone(),
        g: copy_weights(ctx, &m.g)?,
        d: m.d.as_ref().map(|d| copy_weights(ctx, d)).transpose()?,
        g_ema: m.g_ema.as_ref().map(|e| copy_weights(ctx, e)).transpose()?,
        metadata: m.metadata.clone(),
    })
}

/// # Safety
/// `cfg` must be NULL or readable.
unsafe fn train_config(cfg: *const fl_train_config) -> Res<TrainConfig> {
    if cfg.is_null() {
        Ok(TrainConfig::new(Variant::S3ganCo))
    } else {
        (*cfg).to_rust()
    }
}

fn finish_trainer(ctx: &'static Context, model: Model, cfg: TrainConfig) -> Res<*mut fl_trainer> {
    let trainer = Trainer::new(ctx, model, cfg)?;
    Ok(Box::into_raw(Box::new(fl_trainer {
        ctx,
        trainer: Mutex::new(trainer),
    })))
}

/// Fill `*out` with the default training configuration: S3GAN-CO with BigGAN's settings
/// (Adam 0 / 0.999 / 1e-8, lr G 1e-4 and D 4e-4, two D steps per step, a quarter of each batch
/// rotated, rotation weights 1.0 for D and 0.2 for G, class weight 1.0, EMA decay 0.9999 from
/// G step 1000, seed 0).
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fl_train_config_default(out: *mut fl_train_config) -> fl_status {
    guard("fl_train_config_default", || {
        not_null(out, "out")?;
        *out = fl_train_config::from_rust(&TrainConfig::new(Variant::S3ganCo));
        Ok(())
    })
}

/// Create a trainer that fine-tunes a model file, or resumes a checkpoint.
///
/// `model_path`: a model file holding a discriminator (with the class head for the S2GAN-CO and
/// S3GAN-CO variants and the rotation head for SSGAN and S3GAN-CO), a checkpoint written by
/// `fl_trainer_save`, or NULL for the embedded default model (see `fl_model_load`).
/// `cfg`: the training configuration, or NULL for `fl_train_config_default`'s. It is copied.
/// A checkpoint resumes exactly with the configuration, optimiser state, step counts and
/// random state it was saved with, and `cfg` is then ignored.
/// `out`: receives a new handle, owned by the caller, to be freed with `fl_trainer_free`; set
/// to NULL on failure. From a model file, the trainer holds its own copy of the model (G, D,
/// G_ema; G_ema starts as a copy of G when the file has none) and Adam state starting at zero.
///
/// Errors: as `fl_model_load`; `FL_ERR_INVALID_ARGUMENT` for a bad configuration or a model
/// without the discriminator or heads the variant needs.
///
/// # Safety
/// `model_path` must be NULL or a NUL-terminated string; `cfg` NULL or readable; `out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn fl_trainer_create(
    model_path: *const c_char,
    cfg: *const fl_train_config,
    out: *mut *mut fl_trainer,
) -> fl_status {
    guard("fl_trainer_create", || {
        not_null(out, "out")?;
        *out = std::ptr::null_mut();
        let cfg = train_config(cfg)?;
        if model_path.is_null() {
            let ctx = context()?;
            let model = Model::load_default(ctx)?;
            *out = finish_trainer(ctx, model, cfg)?;
            return Ok(());
        }
        let path = path_of(model_path)?;
        let file = TensorFile::load(&path)?;
        check_file_config(&file, &path.display().to_string())?;
        let ctx = context()?;
        let in_file = |e: Error| match e {
            Error::Format(m) => Error::Format(format!("{}: {m}", path.display())),
            other => other,
        };
        if file.metadata.contains_key("train.format") {
            let trainer = Trainer::from_checkpoint_file(ctx, &file).map_err(in_file)?;
            *out = Box::into_raw(Box::new(fl_trainer {
                ctx,
                trainer: Mutex::new(trainer),
            }));
            return Ok(());
        }
        let model = Model::from_file(ctx, &file).map_err(in_file)?;
        *out = finish_trainer(ctx, model, cfg)?;
        Ok(())
    })
}

/// Create a trainer for a new model with fresh weights from a preset.
///
/// `preset`: "tiny" (16 x 16 grey, 3 classes), "tiny_rgb", "fashion" (32 x 32 grey, 10
/// classes), "fashion_small" (the default model's network), "rgb64", "imagenet64" or
/// "imagenet128". `seed`: the seed of the initial weights (the same
/// seed gives the same weights). `cfg` and `out` as in `fl_trainer_create`.
///
/// Errors: `FL_ERR_INVALID_ARGUMENT` (unknown preset, bad configuration),
/// `FL_ERR_NULL_POINTER`, `FL_ERR_NO_DEVICE`, `FL_ERR_DEVICE`.
///
/// # Safety
/// `preset` must be NULL or a NUL-terminated string; `cfg` NULL or readable; `out` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn fl_trainer_create_new(
    preset: *const c_char,
    seed: u64,
    cfg: *const fl_train_config,
    out: *mut *mut fl_trainer,
) -> fl_status {
    guard("fl_trainer_create_new", || {
        not_null(out, "out")?;
        *out = std::ptr::null_mut();
        not_null(preset, "preset")?;
        let cfg = train_config(cfg)?;
        let Ok(name) = CStr::from_ptr(preset).to_str() else {
            return fail(FL_ERR_INVALID_ARGUMENT, "preset is not UTF-8");
        };
        let mcfg = Config::preset(name)?;
        let ctx = context()?;
        let model = Model::init(ctx, &mcfg, seed)?;
        *out = finish_trainer(ctx, model, cfg)?;
        Ok(())
    })
}

/// Free a trainer handle and its GPU memory. NULL is a no-op. No other call may use the
/// trainer during or after this call. Models made by `fl_trainer_model` stay valid.
///
/// # Safety
/// `trainer` must be NULL or a handle from `fl_trainer_create*` not freed before.
#[no_mangle]
pub unsafe extern "C" fn fl_trainer_free(trainer: *mut fl_trainer) {
    if !trainer.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(trainer))));
    }
}

/// Describe the trainer's model (as `fl_model_get_info`): the image size and classes
/// `fl_trainer_step` expects.
///
/// Errors: `FL_ERR_NULL_POINTER`, `FL_ERR_BUSY` (another thread is in a call on the trainer).
///
/// # Safety
/// `trainer` must be NULL or a live handle; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fl_trainer_get_info(
    trainer: *const fl_trainer,
    out: *mut fl_model_info,
) -> fl_status {
    guard("fl_trainer_get_info", || {
        let h = trainer_handle(trainer)?;
        not_null(out, "out")?;
        let t = h.lock()?;
        *out = model_info(h.ctx, &t.model);
        Ok(())
    })
}

/// One training step on a batch of `n` real images: `cfg.d_steps` discriminator steps (each
/// with fresh fakes from the trainer's seed) and one generator step (with the EMA update of
/// G_ema), all on the GPU.
///
/// `images`: `n * channels * height * width` floats in [0, 1], image after image, each CHW
/// (the layout `fl_sample` writes). `labels`: `n` class ids, or -1 for an image without a label
/// (the S2GAN-CO and S3GAN-CO variants label those with D's class head; the unconditional and
/// SSGAN variants ignore labels; the conditional variant needs every label). `out`: when not
/// NULL, receives what the step did (losses, the class head's accuracy on the labelled rows,
/// step counts); it is also filled when a loss is not finite.
///
/// `n` must be at least 1 and at most what the device trains in one pass (the whole batch goes
/// through D at once, with its fakes and rotated copies; the message of `FL_ERR_OUT_OF_RANGE`
/// names the limit, e.g. 293 for the "tiny" preset on lavapipe). Every input is checked
/// before anything runs.
///
/// Errors: `FL_ERR_NULL_POINTER` (trainer, images or labels NULL); `FL_ERR_OUT_OF_RANGE` (n = 0
/// or too large, a pixel outside [0, 1], a label below -1 or >= num_classes);
/// `FL_ERR_NON_FINITE` (a pixel is NaN or infinite); `FL_ERR_INVALID_ARGUMENT` (a -1 label with
/// the conditional variant); `FL_ERR_BUSY` (another thread is in a call on the trainer);
/// `FL_ERR_DEVICE`.
///
/// A D or G step whose loss or any gradient comes out NaN or infinite (training diverged) is
/// rejected on the device: parameters, Adam state, spectral-norm vectors, the EMA and the step
/// counts stay as they were before that step. The call then answers `FL_ERR_NON_FINITE` and
/// skips its remaining steps; the trainer stays usable (e.g. lower the learning rates by
/// creating a trainer from its last checkpoint, or step again on other images).
///
/// # Safety
/// `trainer` must be NULL or a live handle; `images` NULL or readable as above; `labels` NULL
/// or `n` readable ids; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fl_trainer_step(
    trainer: *mut fl_trainer,
    n: u32,
    images: *const f32,
    labels: *const i32,
    out: *mut fl_step_stats,
) -> fl_status {
    trainer_step("fl_trainer_step", trainer, n, None, images, labels, out)
}

/// As `fl_trainer_step`, with the size of the images stated: `channels`, `height` and `width`
/// must be the trainer's model's (`fl_trainer_get_info`), else `FL_ERR_INVALID_ARGUMENT`
/// naming both sizes, and nothing is read from `images`. Use it for images from elsewhere
/// (files, a data set), so that a size mismatch is a status instead of a read past the end of
/// the buffer.
///
/// # Safety
/// As `fl_trainer_step`; `images` NULL or `n * channels * height * width` readable floats.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn fl_trainer_step_sized(
    trainer: *mut fl_trainer,
    n: u32,
    channels: u32,
    height: u32,
    width: u32,
    images: *const f32,
    labels: *const i32,
    out: *mut fl_step_stats,
) -> fl_status {
    let size = Some((channels, height, width));
    trainer_step(
        "fl_trainer_step_sized",
        trainer,
        n,
        size,
        images,
        labels,
        out,
    )
}

/// Compile ahead what `fl_trainer_step` with `n` images needs, so that the first step of that
/// batch size does not wait for it: call it while the program loads (it takes the trainer as
/// a step does, so another thread may run it). Only adapters that compile a kernel at its
/// first dispatch (CPU adapters such as lavapipe, unless `FEWLABELS_WARM=0`) compile here,
/// on two threads, for 2-3 s the first time on a machine (Mesa keeps the result on
/// disk); on the others every kernel was compiled when the trainer was created and this
/// returns at once. Nothing is trained or run: weights, Adam state, step counts and later
/// results are the same with or without it.
///
/// Errors: `FL_ERR_NULL_POINTER` (trainer NULL); `FL_ERR_OUT_OF_RANGE` (n = 0, or more than
/// `fl_trainer_step` takes); `FL_ERR_BUSY` (another thread is in a call on the trainer);
/// `FL_ERR_DEVICE`.
///
/// # Safety
/// `trainer` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn fl_trainer_prepare(trainer: *mut fl_trainer, n: u32) -> fl_status {
    guard("fl_trainer_prepare", || {
        let h = trainer_handle(trainer)?;
        let n = check_n(n)?;
        let mut t = h.lock()?;
        check_train_n(h.ctx, &t, n)?;
        t.prepare_step(h.ctx, n)?;
        Ok(())
    })
}

/// # Safety
/// As `fl_trainer_step`.
unsafe fn trainer_step(
    call: &str,
    trainer: *mut fl_trainer,
    n: u32,
    size: Option<(u32, u32, u32)>,
    images: *const f32,
    labels: *const i32,
    out: *mut fl_step_stats,
) -> fl_status {
    guard(call, || {
        let h = trainer_handle(trainer)?;
        not_null(images, "images")?;
        not_null(labels, "labels")?;
        let n = check_n(n)?;
        let mut t = h.lock()?;
        check_image_size(&t.model, size)?;
        let ctx = h.ctx;
        check_train_n(ctx, &t, n)?;
        let images = slice(images, n * image_len(&t.model));
        let labels = slice(labels, n);
        check_pixels(images)?;
        let k = t.model.cfg.num_classes;
        if let Some((i, c)) = labels
            .iter()
            .enumerate()
            .find(|(_, &c)| c < -1 || c >= k as i32)
        {
            return fail(
                FL_ERR_OUT_OF_RANGE,
                format!("labels[{i}] = {c} is outside -1 (unlabelled) ..= {}", k - 1),
            );
        }
        let labelled = labels.iter().filter(|&&c| c >= 0).count();
        if t.cfg.variant.labels() == LabelUse::All && labelled < n {
            let i = labels.iter().position(|&c| c < 0).unwrap_or(0);
            return fail(
                FL_ERR_INVALID_ARGUMENT,
                format!(
                    "labels[{i}] = -1, but the {} variant needs every label (use \
                     FL_VARIANT_S3GAN_CO for partly labelled data)",
                    t.cfg.variant.name()
                ),
            );
        }
        let mc = t.model.cfg.clone();
        let (r, ch) = (mc.resolution, mc.channels);
        let xh = to_nhwc(&t.model, images);
        let x = Tensor::from_f32(ctx, &[n, r, r, ch], &xh)?;
        let mut stats = fl_step_stats {
            g_loss: f32::NAN,
            g_adversarial: f32::NAN,
            g_rotation: f32::NAN,
            class_accuracy: f32::NAN,
            labelled: labelled as u32,
            ..Default::default()
        };
        let finish = |t: &Trainer, stats: &mut fl_step_stats| {
            stats.d_steps_done = t.d_steps_done();
            stats.g_steps_done = t.g_steps_done();
            if !out.is_null() {
                // SAFETY: the caller passes NULL or a writable fl_step_stats.
                unsafe { *out = *stats };
            }
        };
        let d_steps = t.cfg.d_steps;
        for s in 0..d_steps {
            let (z, y_fake) = t.fake_batch(ctx, n)?;
            let rep = t.d_step(ctx, &x, labels, &z, &y_fake)?;
            let w = 1.0 / (s + 1) as f32;
            for (acc, v) in [
                (&mut stats.d_loss, rep.total),
                (&mut stats.d_hinge, rep.hinge),
                (&mut stats.d_rotation, rep.rotation),
                (&mut stats.d_class, rep.class),
            ] {
                *acc += (v - *acc) * w;
            }
            if rep.rejected {
                finish(&t, &mut stats);
                return fail(
                    FL_ERR_NON_FINITE,
                    format!(
                        "D step {} of this call gave a non-finite loss or gradient (total {}, \
                         hinge {}, rotation {}, class {}); the step was rejected and nothing \
                         changed (try lower learning rates)",
                        s + 1,
                        rep.total,
                        rep.hinge,
                        rep.rotation,
                        rep.class
                    ),
                );
            }
        }
        // D's class head on the labelled rows, with D as the D steps left it. (The D step's
        // y_used keeps the given label on labelled rows, so it cannot tell.)
        if labelled > 0 && mc.class_head {
            let rows: Vec<usize> = (0..n).filter(|&b| labels[b] >= 0).collect();
            let per = r * r * ch;
            let xs: Vec<f32> = rows
                .iter()
                .flat_map(|&b| xh[b * per..(b + 1) * per].iter().copied())
                .collect();
            let (pred, _) = t.model.classify(ctx, &xs, rows.len())?;
            let right = rows
                .iter()
                .zip(&pred)
                .filter(|(&b, &p)| labels[b] == p)
                .count();
            stats.class_accuracy = right as f32 / labelled as f32;
        }
        let (z, y_fake) = t.fake_batch(ctx, n)?;
        let g = t.g_step(ctx, &z, &y_fake)?;
        stats.g_loss = g.total;
        stats.g_adversarial = g.adversarial;
        stats.g_rotation = g.rotation;
        finish(&t, &mut stats);
        if g.rejected {
            return fail(
                FL_ERR_NON_FINITE,
                format!(
                    "the G step gave a non-finite loss or gradient (total {}, adversarial {}, \
                     rotation {}); the step was rejected and nothing changed (try lower \
                     learning rates)",
                    g.total, g.adversarial, g.rotation
                ),
            );
        }
        Ok(())
    })
}

/// Save a full checkpoint, atomically (temporary file, fsync, rename; a crash mid-save leaves
/// the previous file intact): G, D, G_ema, Adam state, step counts and random state.
/// `fl_trainer_create` on it resumes bit for bit; `fl_model_load` on it gives the model for
/// sampling (the training state is ignored).
///
/// Errors: `FL_ERR_NULL_POINTER`, `FL_ERR_INVALID_ARGUMENT` (empty path), `FL_ERR_IO`,
/// `FL_ERR_BUSY`.
///
/// # Safety
/// `trainer` must be NULL or a live handle; `path` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn fl_trainer_save(
    trainer: *mut fl_trainer,
    path: *const c_char,
) -> fl_status {
    guard("fl_trainer_save", || {
        let h = trainer_handle(trainer)?;
        let path = path_of(path)?;
        let t = h.lock()?;
        t.save_checkpoint(h.ctx, &path)?;
        Ok(())
    })
}

/// A model handle holding a copy of the trainer's current model (G, D and G_ema): sampling
/// uses G_ema, classification D's class head. The copy is independent: later training does not
/// change it, and it outlives the trainer. Free it with `fl_model_free`.
///
/// `out` is set to NULL on failure. Errors: `FL_ERR_NULL_POINTER`, `FL_ERR_BUSY`,
/// `FL_ERR_DEVICE`.
///
/// # Safety
/// `trainer` must be NULL or a live handle; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fl_trainer_model(
    trainer: *mut fl_trainer,
    out: *mut *mut fl_model,
) -> fl_status {
    guard("fl_trainer_model", || {
        not_null(out, "out")?;
        *out = std::ptr::null_mut();
        let h = trainer_handle(trainer)?;
        let t = h.lock()?;
        let model = copy_model(h.ctx, &t.model)?;
        finish_load(model, out)
    })
}

// A trainer handle is passed between threads (one at a time) and guarded by its mutex.
const _: () = {
    fn sync<T: Sync + Send>() {}
    let _ = sync::<fl_trainer>;
};

// A model handle is shared by reference between threads that sample; this must stay true.
const _: () = {
    fn sync<T: Sync + Send>() {}
    let _ = sync::<fl_model>;
};

#[cfg(test)]
mod tests {
    use super::*;

    fn last() -> String {
        unsafe { CStr::from_ptr(fl_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let st = guard("fl_test", || panic!("boom {}", 42));
        assert_eq!(st, FL_ERR_PANIC as fl_status);
        let msg = last();
        assert!(msg.contains("fl_test") && msg.contains("boom 42"), "{msg}");
        let st = guard("fl_test", || panic!("static boom"));
        assert_eq!(st, FL_ERR_PANIC as fl_status);
        assert!(last().contains("static boom"));
    }

    #[test]
    fn errors_map_to_their_codes_and_messages_lose_nul_bytes() {
        let cases = [
            (Error::NoAdapter("x".into()), FL_ERR_NO_DEVICE),
            (Error::Device("x".into()), FL_ERR_DEVICE),
            (Error::InvalidArgument("x".into()), FL_ERR_INVALID_ARGUMENT),
            (Error::Shape("x".into()), FL_ERR_INTERNAL),
            (Error::Io("x".into()), FL_ERR_IO),
            (Error::Format("x".into()), FL_ERR_FORMAT),
        ];
        for (e, code) in cases {
            assert_eq!(guard("c", || Err(e.into())), code as fl_status);
        }
        assert_eq!(
            guard("c", || fail(FL_ERR_IO, "a\0b")),
            FL_ERR_IO as fl_status
        );
        assert_eq!(last(), "c: a b");
        for code in 0..=12 {
            let name = unsafe { CStr::from_ptr(fl_status_name(code)) };
            assert_ne!(name.to_str().unwrap(), "FL_ERR_UNKNOWN", "code {code}");
        }
    }
}
