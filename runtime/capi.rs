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
//! call on the same model. Calls that change a model (training, added later) take it
//! exclusively and answer `FL_ERR_BUSY` while another thread uses it.

#![allow(non_camel_case_types)]

use crate::device::Context;
use crate::error::Error;
use crate::model::file::TensorFile;
use crate::model::layers::Mode;
use crate::model::model::chw_to_rgba8;
use crate::model::{Discriminator, Model, Which};
use crate::rng;
use crate::tensor::Tensor;
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{OnceLock, RwLock};

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
    /// call needs, truncation outside (0, 1], a bad model config).
    FL_ERR_INVALID_ARGUMENT = 1,
    /// A handle, buffer or output pointer that must not be NULL was NULL.
    FL_ERR_NULL_POINTER = 2,
    /// A count or index is outside its range (class id, n = 0 or n > FL_MAX_N, pixel values).
    FL_ERR_OUT_OF_RANGE = 3,
    /// An input holds NaN or an infinity.
    FL_ERR_NON_FINITE = 4,
    /// A file could not be read or written (missing, no permission, disk full).
    FL_ERR_IO = 5,
    /// A file was read but is not a complete, valid model file (truncated, corrupt, wrong
    /// tensors for its config).
    FL_ERR_FORMAT = 6,
    /// No GPU adapter (hardware or software Vulkan/Metal/DX12/GL) could be opened.
    FL_ERR_NO_DEVICE = 7,
    /// The GPU reported an error (validation, out of memory, device lost).
    FL_ERR_DEVICE = 8,
    /// The embedded default model was asked for (`fl_model_load(NULL, ..)`) and this build
    /// has none.
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

fn context() -> Res<&'static Context> {
    Ok(shared_context()?)
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
fn d_max_batch(ctx: &Context, model: &Model) -> usize {
    let c = &model.cfg;
    let widest = c
        .d_channels()
        .into_iter()
        .max()
        .unwrap_or(1)
        .max(c.channels);
    let mut per = c.resolution * c.resolution * widest;
    for &r in &c.d_attn {
        per = per.max(r * r * r * r / 4);
    }
    let per = (per.max(1) * 4) as u64;
    (ctx.max_binding_bytes() / per).clamp(1, 1024) as usize
}

fn classify_into(
    ctx: &Context,
    model: &Model,
    images: &[f32],
    labels: &mut [i32],
    mut probs: Option<&mut [f32]>,
) -> Res<()> {
    let cfg = &model.cfg;
    let Some(dw) = &model.d else {
        return fail(
            FL_ERR_INVALID_ARGUMENT,
            "the model has no discriminator (a sampling-only file), so it cannot classify",
        );
    };
    if !cfg.class_head {
        return fail(
            FL_ERR_INVALID_ARGUMENT,
            "the model's discriminator has no class head (config class_head = false), so it \
             cannot classify",
        );
    }
    check_finite(images, "images")?;
    if let Some(i) = images.iter().position(|v| !(0.0..=1.0).contains(v)) {
        return fail(
            FL_ERR_OUT_OF_RANGE,
            format!("images[{i}] = {} is outside [0, 1]", images[i]),
        );
    }
    let (r, ch, k) = (cfg.resolution, cfg.channels, cfg.num_classes);
    let per = image_len(model);
    let d = Discriminator { cfg };
    let batch = d_max_batch(ctx, model);
    let n = labels.len();
    let mut start = 0;
    while start < n {
        let m = batch.min(n - start);
        // CHW in [0, 1] -> NHWC in [-1, 1], the range G produces.
        let mut x = vec![0f32; m * per];
        for b in 0..m {
            let im = &images[(start + b) * per..(start + b + 1) * per];
            for c in 0..ch {
                for p in 0..r * r {
                    x[b * per + p * ch + c] = im[c * r * r + p] * 2.0 - 1.0;
                }
            }
        }
        let xt = Tensor::from_f32(ctx, &[m, r, r, ch], &x)?;
        let yt = Tensor::from_i32(ctx, &[m], &vec![0; m])?;
        let logits = ctx.run(|rec| {
            let (out, _) = d.forward(rec, dw, &xt, &yt, Mode::EVAL)?;
            out.class
                .ok_or_else(|| Error::Shape("discriminator returned no class logits".into()))
        })?;
        let logits = logits.to_f32(ctx)?;
        for b in 0..m {
            let row = &logits[b * k..(b + 1) * k];
            check_finite(row, "class logits")
                .map_err(|Fail(_, m)| Fail(FL_ERR_DEVICE, format!("the device produced {m}")))?;
            let (best, mx) = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |a, (i, &v)| {
                        if v > a.1 {
                            (i, v)
                        } else {
                            a
                        }
                    },
                );
            labels[start + b] = best as i32;
            if let Some(p) = probs.as_deref_mut() {
                let e: Vec<f64> = row.iter().map(|&v| ((v - mx) as f64).exp()).collect();
                let s: f64 = e.iter().sum();
                for (j, v) in e.iter().enumerate() {
                    p[(start + b) * k + j] = (v / s) as f32;
                }
            }
        }
        start += m;
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

/// Load a model file (a fewlabels safetensors file) onto the GPU.
///
/// `path`: a NUL-terminated file name, or NULL for the embedded default model. This build has
/// no embedded default model yet: NULL answers `FL_ERR_NO_DEFAULT_MODEL`.
/// `out`: receives a new handle, owned by the caller, to be freed with `fl_model_free`; set
/// to NULL on failure.
///
/// The first call that needs the GPU opens the process-wide device, honouring the environment
/// variables `FEWLABELS_BACKEND` (vulkan, metal, dx12, gl) and `FEWLABELS_ADAPTER` (part of an
/// adapter name); `FL_ERR_NO_DEVICE` with an install hint when there is none (the failure is
/// remembered for the life of the process). Errors: `FL_ERR_IO` (cannot read), `FL_ERR_FORMAT`
/// (truncated, corrupt, not a model file), `FL_ERR_NULL_POINTER` (`out` is NULL).
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string; `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fl_model_load(path: *const c_char, out: *mut *mut fl_model) -> fl_status {
    guard("fl_model_load", || {
        not_null(out, "out")?;
        *out = std::ptr::null_mut();
        if path.is_null() {
            return fail(
                FL_ERR_NO_DEFAULT_MODEL,
                "this build of libfewlabels has no embedded default model yet (it arrives with \
                 a trained model in a later release); pass the path of a model file",
            );
        }
        let path = path_of(path)?;
        // The file first: a missing or damaged file is reported even without a device.
        let file = TensorFile::load(&path)?;
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
        let m = h.read();
        let c = &m.cfg;
        let (gp, dp) = m.parameter_counts();
        *out = fl_model_info {
            num_classes: c.num_classes as u32,
            z_dim: c.z_dim as u32,
            channels: c.channels as u32,
            height: c.resolution as u32,
            width: c.resolution as u32,
            has_discriminator: m.d.is_some() as u32,
            has_class_head: (m.d.is_some() && c.class_head) as u32,
            has_rotation_head: (m.d.is_some() && c.rotation_head) as u32,
            has_ema: m.g_ema.is_some() as u32,
            max_batch: m.max_batch(h.ctx).min(u32::MAX as usize) as u32,
            generator_params: gp as u64,
            discriminator_params: if m.d.is_some() { dp as u64 } else { 0 },
        };
        Ok(())
    })
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
    guard("fl_classify", || {
        let h = handle(model)?;
        not_null(images, "images")?;
        not_null(labels, "labels")?;
        let n = check_n(n)?;
        let m = h.read();
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
