//! 2-D convolution for BigGAN: kernel 1x1 or 3x3, stride 1, 'same' zero padding (k / 2),
//! NHWC activations, weights in PyTorch's `[Cout, Cin, k, k]` layout, optional bias.
//! Shader: `shaders/conv.wgsl` (its header describes the kernels and their tiling).
//!
//! Every pass is an implicit GEMM (no im2col buffer):
//! - forward: M = N*H*W pixels, N = Cout, K = Cin*k*k, on a weight repacked per call into
//!   `[k*k, Cin, Cout]` (channel counts padded to multiples of 4). 3x3 on images at least 8
//!   wide and high uses `conv3x3_*` (8x8 pixel blocks sharing one input window per lane; on
//!   CPU adapters, with at least 16 output channels, `conv3x3w_v4`, which computes 16 output
//!   channels per lane instead of 8);
//!   1x1, and 3x3 on smaller images, use `conv_gemm_*` (32 consecutive pixels per lane);
//! - input gradient: the same kernels on `dy`, with the weight flipped and transposed;
//! - weight and bias gradients: the reduction over N*H*W is split into chunks whose partial
//!   sums go to a scratch tensor, then `conv_reduce` adds the chunks in order (deterministic,
//!   no atomics).
//!
//! On CPU adapters ([`Recorder::cpu_kernels`]) every pass uses the `_t` kernels instead, which
//! read x, dy and the weight as read-only storage textures (cheaper loads on lavapipe than
//! storage buffers, see [`crate::kernel::TEXTURE_WIDTH`]) with small register tiles that
//! compile in under a second: `conv3x3_t` (8 pixels of a row x 8 output channels),
//! `conv1x1_t` (8 pixels x 8 channels), `conv_dw3_t` (one kernel row of `conv_dw3_v4`'s
//! 3x3 taps: 4 input x 8 output channels) and `conv_dw1_t` (8 input x 8 output channels, half
//! of `conv_dw1_v4`'s). Channel counts that are not multiples
//! of 4 are padded with zeros first (`conv_pad`). With subgroups, 3x3 passes use `conv3x3_sg`
//! (16 output channels, weights shared by shuffles) or, with at most 8 output channels,
//! `conv3x3_sg8` (the tile of `conv3x3_t`, weights shared by shuffles); their `_v4` twins,
//! for a multiple of 4 output channels, store vec4s (lavapipe compiles them faster). 1x1
//! passes other than the weight gradient are products of the pixel rows with the weight
//! (`ops::gemm`'s `_sg` kernels) when both channel counts are multiples of 4, or when Cout is
//! and Cin is padded to one (`padded_1x1`); other 1x1 passes keep `conv1x1_t`.
//!
//! On CPU adapters with subgroups, 3x3 passes with at least [`WINOGRAD_MIN_CHANNELS`] input
//! and output channels (the weight gradient: and [`WINOGRAD_DW_WIDE_CHANNELS`] on one side)
//! and [`WINOGRAD_MIN_TILES`] 4x4 output tiles are Winograd F(4x4, 3x3) instead (in a
//! recorder with no backward pass, sampling, only from [`WINOGRAD_FORWARD_ONLY_CHANNELS`])
//! (`shaders/conv_winograd.wgsl`):
//! transforms of the 6x6 input patches and of the weight (or of dy's 4x4 tiles), 36 products
//! as one batched GEMM (`ops::gemm`'s `_sg` kernels), and the transform back: 4x fewer
//! multiply-adds than the direct kernels, in a GEMM that lavapipe runs about as fast as them.
//!
//! On CPU adapters, 3x3 passes with one channel on one side ([`thin`]: D's first conv, the
//! image in, and G's last, the image out) take the kernels of `shaders/conv_thin.wgsl`,
//! which read the single channel as 4 pixels per texel instead of padding it to 4 channels.
//!
//! The `_v4` kernels load channels as vec4 and need the channel counts they read to be
//! multiples of 4 (Cin for the forward pass, Cout for the input gradient, both for the weight
//! gradient); other counts take the `_s` kernels, which load scalars with bounds checks.

use crate::ensure_shape;
use crate::error::Result;
use crate::kernel::{grid_1d, Recorder};
use crate::ops::{elementwise as ew, gemm, rearrange, resample};
use crate::tensor::{DType, Tensor};

const SHADER: &str = "conv";
/// Invocations per workgroup of the forward kernels (WG_FWD in the shader).
const WG_FWD: u64 = 16;
/// Invocations per workgroup of the weight-gradient kernels (WG_DW in the shader).
const WG_DW: u64 = 8;
/// Pixels per invocation of `conv_gemm_*`.
const GEMM_PIXELS: u64 = 32;
/// Pixels per chunk of the weight-gradient reduction, before capping the chunk count.
const DW_CHUNK_PIXELS: u64 = 1024;
/// Lanes the weight gradient aims for when its channels alone give fewer (more chunks).
const MIN_LANES: u64 = 512;
/// Most chunks the weight gradient is split into (unless MIN_LANES asks for more).
const MAX_CHUNKS: u64 = 16;
/// Pixels per chunk of the bias-gradient reduction.
const DB_CHUNK_PIXELS: u64 = 256;
/// Fewest input and output channels for which 3x3 passes on CPU adapters take the Winograd
/// kernels by default.
const WINOGRAD_MIN_CHANNELS: usize = 32;
/// The weight gradient takes them only where one side also has at least
/// [`WINOGRAD_DW_WIDE_CHANNELS`]: with 32 on both, its Winograd kernels made no step measurably
/// faster, and cost the default model's first run two more kernels to compile
/// (docs/PERFORMANCE.md).
const WINOGRAD_DW_WIDE_CHANNELS: usize = 64;
/// Fewest input and output channels for Winograd in a forward pass that no backward pass
/// follows ([`Recorder::forward_only`]): there no weight gradient reuses the input
/// transform, and sampling the default model and `fashion` ran no faster with Winograd at
/// 32 channels while its three transforms cost a first run about 0.7 s of compile
/// (docs/PERFORMANCE.md).
const WINOGRAD_FORWARD_ONLY_CHANNELS: usize = 64;
/// Fewest 4x4 output tiles (over the batch) for which 3x3 passes take the Winograd kernels by
/// default: below it their three dispatches cost more than they save (batch-1 sampling of
/// `fashion` ran at half the speed).
const WINOGRAD_MIN_TILES: usize = 128;
/// Tiles per chunk of the Winograd weight gradient's sum over tiles (one GEMM each).
const WINOGRAD_DW_TILES: usize = 256;
/// Most floats of weight-gradient partial sums (64 MiB).
const MAX_PARTIAL_FLOATS: u64 = 1 << 24;

/// A transform of x that the conv kernels apply as they load it, so that the transformed input
/// is never stored ([`conv2d_load`]): ReLU, then nearest 2x upsampling (x is then
/// `[N, H/2, W/2, Cin]` for an output of `[N, H, W, Cout]`). Every 3x3 kernel applies it; for
/// 1x1 kernels the transformed input is computed first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// ReLU on x.
    pub relu: bool,
    /// Nearest-neighbour 2x upsampling of x.
    pub upsample: bool,
}

impl Load {
    /// x as it is.
    pub const NONE: Load = Load {
        relu: false,
        upsample: false,
    };

    /// The kernels' flag bits (see `Params` in the shader).
    fn flags(self) -> u32 {
        ((self.relu as u32) << 2) | ((self.upsample as u32) << 3)
    }

    /// The transformed input as a tensor.
    fn apply(self, rec: &mut Recorder, x: &Tensor) -> Result<Tensor> {
        let mut t = x.clone();
        if self.relu {
            t = ew::relu(rec, &t)?;
        }
        if self.upsample {
            t = resample::upsample2x(rec, &t)?;
        }
        Ok(t)
    }

    /// The gradient with respect to x from the gradient `g` with respect to the transformed
    /// input.
    fn backward(self, rec: &mut Recorder, x: &Tensor, g: &Tensor) -> Result<Tensor> {
        let mut g = g.clone();
        if self.upsample {
            g = resample::upsample2x_backward(rec, &g)?;
        }
        if self.relu {
            g = ew::relu_backward(rec, x, &g)?;
        }
        Ok(g)
    }
}

/// Gradients of [`conv2d`].
#[derive(Debug)]
pub struct ConvGrads {
    /// Input gradient, `[N, H, W, Cin]`.
    pub dx: Tensor,
    /// Weight gradient, `[Cout, Cin, k, k]`.
    pub dw: Tensor,
    /// Bias gradient, `[Cout]`, when the forward pass had a bias.
    pub db: Option<Tensor>,
}

/// Shapes of one convolution, checked.
#[derive(Clone, Copy, Debug)]
struct Dims {
    n: usize,
    h: usize,
    w: usize,
    cin: usize,
    cout: usize,
    k: usize,
}

impl Dims {
    fn m(&self) -> usize {
        self.n * self.h * self.w
    }

    /// The GEMM's input and output channels of a pass: (Cin, Cout), or for the input
    /// gradient (`transposed`) (Cout, Cin).
    fn gemm_channels(&self, transposed: bool) -> (usize, usize) {
        if transposed {
            (self.cout, self.cin)
        } else {
            (self.cin, self.cout)
        }
    }
}

fn check(op: &str, x: &Tensor, w: &Tensor) -> Result<Dims> {
    ensure_shape!(x.dtype() == DType::F32, "{op}: input x {x:?} is not f32");
    ensure_shape!(w.dtype() == DType::F32, "{op}: weight {w:?} is not f32");
    ensure_shape!(
        x.shape().len() == 4,
        "{op}: input x {x:?} is not NHWC (rank 4)"
    );
    ensure_shape!(
        w.shape().len() == 4,
        "{op}: weight {w:?} is not [Cout, Cin, k, k] (rank 4)"
    );
    let (n, h, wd, cin) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (cout, wcin, kh, kw) = (w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]);
    ensure_shape!(
        kh == kw && (kh == 1 || kh == 3),
        "{op}: weight {w:?} has a {kh}x{kw} kernel; only 1x1 and 3x3 are supported"
    );
    ensure_shape!(
        wcin == cin,
        "{op}: weight {w:?} expects {wcin} input channels but x {x:?} has {cin}"
    );
    ensure_shape!(
        n > 0 && h > 0 && wd > 0 && cin > 0 && cout > 0,
        "{op}: empty tensor (x {x:?}, weight {w:?})"
    );
    let d = Dims {
        n,
        h,
        w: wd,
        cin,
        cout,
        k: kh,
    };
    ensure_shape!(
        (d.m() as u64) * (cin.max(cout) as u64) < i32::MAX as u64,
        "{op}: x {x:?} with {cout} output channels is too large for 31-bit indexing"
    );
    Ok(d)
}

/// [`check`] for [`conv2d_load`]: the dims of the output (twice x's height and width when
/// `load` upsamples).
fn check_load(op: &str, x: &Tensor, w: &Tensor, load: Load) -> Result<Dims> {
    let mut d = check(op, x, w)?;
    if load.upsample {
        d.h *= 2;
        d.w *= 2;
        ensure_shape!(
            (d.m() as u64) * (d.cin.max(d.cout) as u64) < i32::MAX as u64,
            "{op}: x {x:?} upsampled, with {} output channels, is too large for 31-bit indexing",
            d.cout
        );
    }
    Ok(d)
}

/// The dims of the stored x of a pass over `d` with `load`.
fn source(d: &Dims, load: Load) -> Dims {
    let s = load.upsample as usize;
    Dims {
        h: d.h >> s,
        w: d.w >> s,
        ..*d
    }
}

/// Whether the forward kernels of `d` (`gin` input channels) read textures.
fn texture_fwd(rec: &Recorder, d: &Dims, gin: usize, gout: usize) -> bool {
    rec.cpu_kernels()
        && rec.texture_fits(d.m() * quads(gin) * 4)
        && rec.texture_fits(d.k * d.k * quads(gin) * 4 * quads(gout) * 4)
}

/// Whether the weight-gradient kernels of `d` read textures.
fn texture_dw(rec: &Recorder, d: &Dims) -> bool {
    rec.cpu_kernels()
        && rec.texture_fits(d.m() * quads(d.cin) * 4)
        && rec.texture_fits(d.m() * quads(d.cout) * 4)
}

fn quads(c: usize) -> usize {
    c.div_ceil(4)
}

/// Uniform words for the GEMM kernels (see `Params` in the shader).
fn params(d: &Dims, cin: usize, cout: usize, flags: u32, chunk: u64) -> [u32; 12] {
    [
        d.n as u32,
        d.h as u32,
        d.w as u32,
        cin as u32,
        cout as u32,
        d.k as u32,
        quads(cin) as u32,
        quads(cout) as u32,
        flags,
        chunk as u32,
        d.m() as u32,
        0,
    ]
}

/// Repack `w` `[Cout, Cin, k, k]` into the GEMM weight `[k*k, gin_pad, gout_pad]`: with
/// `transposed` false gin = Cin, gout = Cout; with it true gin = Cout, gout = Cin and the
/// kernel is flipped (for the input gradient).
///
/// The result is kept for later calls on the same, unchanged weight ([`Recorder::derived`]):
/// a sampling model repacks each weight once, a train step once per weight and direction.
fn repack(rec: &mut Recorder, w: &Tensor, d: &Dims, transposed: bool) -> Result<Tensor> {
    let kind = if transposed {
        "conv_repack_transposed"
    } else {
        "conv_repack"
    };
    if let Some(wt) = rec.derived(kind, w) {
        return Ok(wt);
    }
    let (gin, gout) = d.gemm_channels(transposed);
    let kk = d.k * d.k;
    let len = kk * quads(gin) * 4 * quads(gout) * 4;
    let wt = Tensor::empty(rec.ctx, &[len], DType::F32)?;
    let p = params(d, gin, gout, if transposed { 2 } else { 0 }, 0);
    rec.dispatch(
        SHADER,
        "conv_repack",
        &p,
        &[(4, w), (5, &wt)],
        grid_1d(len as u64, 256),
    )?;
    rec.keep_derived(kind, w, &wt);
    Ok(wt)
}

/// `x` `[N, H, W, c]` with its channels padded with zeros to a multiple of 4 (itself when
/// they are), for the `_t` kernels, which read channels as vec4.
fn pad4(rec: &mut Recorder, x: &Tensor, d: &Dims, c: usize) -> Result<Tensor> {
    if c.is_multiple_of(4) {
        return Ok(x.clone());
    }
    let c4 = quads(c) * 4;
    let out = Tensor::empty(rec.ctx, &[d.n, d.h, d.w, c4], DType::F32)?;
    let p = params(d, c, c4, 0, 0);
    rec.dispatch(
        SHADER,
        "conv_pad",
        &p,
        &[(1, x), (5, &out)],
        grid_1d((d.m() * c4) as u64, 256),
    )?;
    Ok(out)
}

/// The forward GEMM on `x` `[N, H, W, gin]` with `wt`, the weight `w` repacked by
/// [`repack`] with `transposed`, giving `[N, H, W, gout]` (gin, gout = Cin, Cout, or with
/// `transposed` Cout, Cin). `bias` is added when given; `w` is bound in its place otherwise
/// (the entry point always declares the binding).
#[allow(clippy::too_many_arguments)]
fn gemm(
    rec: &mut Recorder,
    op: &str,
    x: &Tensor,
    wt: &Tensor,
    bias: Option<&Tensor>,
    w: &Tensor,
    transposed: bool,
    d: &Dims,
    load: Load,
) -> Result<Tensor> {
    let (gin, gout) = d.gemm_channels(transposed);
    let y = Tensor::empty(rec.ctx, &[d.n, d.h, d.w, gout], DType::F32)?;
    let p = params(d, gin, gout, bias.is_some() as u32 | load.flags(), 0);
    let v4 = gin.is_multiple_of(4);
    let cpu = texture_fwd(rec, d, gin, gout);
    ensure_shape!(
        load == Load::NONE || d.k == 3,
        "{op}: the 1x1 kernels cannot transform x as they load it"
    );
    let stored = x;
    let padded;
    let x = if cpu {
        padded = pad4(rec, x, &source(d, load), gin)?;
        &padded
    } else {
        x
    };
    if cpu && d.k == 3 && rec.subgroups() && winograd_pays(rec, d, gin, gout, false) {
        return winograd(rec, stored, x, wt, bias, w, transposed, d, load);
    }
    let (entry, groups) = if cpu && d.k == 1 {
        // CPU adapters: 8 pixels x 8 output channels per lane, read as textures.
        let lanes = (d.m() as u64).div_ceil(8);
        (
            "conv1x1_t",
            [lanes.div_ceil(WG_FWD), quads(gout).div_ceil(2) as u64],
        )
    } else if cpu && d.k == 3 && rec.subgroups() && quads(gout) > 2 {
        // The same tile with 16 output channels, weights shared through subgroup shuffles.
        // With 8 or fewer output channels half its lanes' work or more would be padding, and
        // conv3x3_t is faster (docs/PERFORMANCE.md, conv_speed_fashion_small).
        let lanes = (d.n * d.h * d.w.div_ceil(8)) as u64;
        let entry = if gout.is_multiple_of(4) {
            "conv3x3_sg_v4"
        } else {
            "conv3x3_sg"
        };
        (
            entry,
            [lanes.div_ceil(WG_FWD), quads(gout).div_ceil(4) as u64],
        )
    } else if cpu && d.k == 3 && rec.subgroups() {
        // The tile of conv3x3_t, its weights shared through subgroup shuffles.
        let lanes = (d.n * d.h * d.w.div_ceil(8)) as u64;
        let entry = if gout.is_multiple_of(4) {
            "conv3x3_sg8_v4"
        } else {
            "conv3x3_sg8"
        };
        (
            entry,
            [lanes.div_ceil(WG_FWD), quads(gout).div_ceil(2) as u64],
        )
    } else if cpu && d.k == 3 {
        // CPU adapters: 8 pixels of a row x 8 output channels per lane, read as textures.
        let lanes = (d.n * d.h * d.w.div_ceil(8)) as u64;
        (
            "conv3x3_t",
            [lanes.div_ceil(WG_FWD), quads(gout).div_ceil(2) as u64],
        )
    } else if d.k == 3 && d.h >= 8 && d.w >= 8 {
        let tiles = (d.n * d.h.div_ceil(8) * d.w.div_ceil(8)) as u64;
        if v4 && gout >= 16 && rec.cpu_kernels() {
            // CPU adapters (lavapipe): 16 output channels per invocation (see the shader).
            (
                "conv3x3w_v4",
                [tiles.div_ceil(WG_FWD), quads(gout).div_ceil(4) as u64],
            )
        } else {
            let entry = if v4 { "conv3x3_v4" } else { "conv3x3_s" };
            (
                entry,
                [tiles.div_ceil(WG_FWD), quads(gout).div_ceil(2) as u64],
            )
        }
    } else {
        let lanes = (d.m() as u64).div_ceil(GEMM_PIXELS);
        let entry = if v4 { "conv_gemm_v4" } else { "conv_gemm_s" };
        (
            entry,
            [lanes.div_ceil(WG_FWD), quads(gout).div_ceil(4) as u64],
        )
    };
    ensure_shape!(
        groups.iter().all(|&g| g <= 65535),
        "{op}: {} pixels x {gout} channels exceed one dispatch; split the batch",
        d.m()
    );
    let xb = if v4 { 2 } else { 1 };
    let aux = bias.unwrap_or(w);
    let shader = if entry.starts_with("conv3x3_sg") {
        "conv_sg"
    } else {
        SHADER
    };
    rec.dispatch(
        shader,
        entry,
        &p,
        // y as scalars (5) and as vec4s (13, for the `_v4` kernels).
        &[
            (xb, x),
            (3, wt),
            (4, aux),
            (5, &y),
            (10, x),
            (11, wt),
            (13, &y),
        ],
        [groups[0] as u32, groups[1] as u32, 1],
    )?;
    Ok(y)
}

/// Whether a 3x3 pass over `d` (`gin` -> `gout` channels; the weight gradient with `dw`)
/// takes the Winograd kernels ([`winograd`], [`winograd_dw`]): where [`Recorder::winograd`]
/// says so, else where both channel counts are at least [`WINOGRAD_MIN_CHANNELS`] (with
/// `dw`, one of them also [`WINOGRAD_DW_WIDE_CHANNELS`]; in a forward-only recorder
/// [`WINOGRAD_FORWARD_ONLY_CHANNELS`]) and the images hold at least
/// [`WINOGRAD_MIN_TILES`] 4x4 tiles (docs/PERFORMANCE.md). The
/// transformed tensors must fit in textures.
fn winograd_pays(rec: &Recorder, d: &Dims, gin: usize, gout: usize, dw: bool) -> bool {
    let tiles = d.n * d.h.div_ceil(4) * d.w.div_ceil(4);
    let (ci, co) = (quads(gin) * 4, quads(gout) * 4);
    let sizes = if dw {
        let (chunks, per) = dw_chunks(tiles);
        [
            36 * chunks * per * ci,
            36 * chunks * per * co,
            36 * chunks * ci * co,
        ]
    } else {
        [36 * tiles * ci, 36 * ci * co, 36 * tiles * co]
    };
    // The batched product's grid: one z per (product, chunk), at most 65535.
    let batch = if dw { 36 * dw_chunks(tiles).0 } else { 36 };
    let fits = batch <= 65535
        && sizes
            .iter()
            .all(|&e| u32::try_from(e).is_ok() && rec.texture_fits(e));
    let wide = !dw || gin.max(gout) >= WINOGRAD_DW_WIDE_CHANNELS;
    let min_channels = if rec.forward_only() && !dw {
        WINOGRAD_FORWARD_ONLY_CHANNELS
    } else {
        WINOGRAD_MIN_CHANNELS
    };
    fits && rec
        .winograd()
        .unwrap_or(gin.min(gout) >= min_channels && wide && tiles >= WINOGRAD_MIN_TILES)
}

/// Chunks of the Winograd weight gradient's sum over `tiles` tiles, and tiles per chunk (a
/// multiple of 4, at most [`WINOGRAD_DW_TILES`] rounded up).
fn dw_chunks(tiles: usize) -> (usize, usize) {
    let chunks = tiles.div_ceil(WINOGRAD_DW_TILES);
    (chunks, tiles.div_ceil(chunks).div_ceil(4) * 4)
}

/// The kind under which the Winograd input transform of a stored x with `load` is kept
/// ([`Recorder::keep_derived`]).
fn input_kind(load: Load) -> &'static str {
    match (load.relu, load.upsample) {
        (false, false) => "conv_winograd_input",
        (true, false) => "conv_winograd_input_relu",
        (false, true) => "conv_winograd_input_up",
        (true, true) => "conv_winograd_input_relu_up",
    }
}

/// The 3x3 forward GEMM of [`gemm`] (same arguments) as Winograd F(4x4, 3x3)
/// (`shaders/conv_winograd.wgsl`): the weight transform (kept, as [`repack`] keeps `wt`,
/// for later calls on the unchanged `w`), the input transform (with `load` applied), 36
/// GEMMs in one batched product, the output transform with the bias. `x` is `stored` with its
/// channels padded to a multiple of 4. Where the weight gradient is Winograd too, the forward
/// pass keeps its input transform, laid out as [`winograd_dw`] needs it, for the weight
/// gradient of the same `stored` x.
#[allow(clippy::too_many_arguments)]
fn winograd(
    rec: &mut Recorder,
    stored: &Tensor,
    x: &Tensor,
    wt: &Tensor,
    bias: Option<&Tensor>,
    w: &Tensor,
    transposed: bool,
    d: &Dims,
    load: Load,
) -> Result<Tensor> {
    const SHADER_WINO: &str = "conv_winograd";
    let (gin, gout) = d.gemm_channels(transposed);
    let kind = if transposed {
        "conv_winograd_weight_transposed"
    } else {
        "conv_winograd_weight"
    };
    let (ci, co) = (quads(gin) * 4, quads(gout) * 4);
    let tiles = d.n * d.h.div_ceil(4) * d.w.div_ceil(4);
    let p = params(d, gin, gout, bias.is_some() as u32 | load.flags(), 0);
    let u = match rec.derived(kind, w) {
        Some(u) => u,
        None => {
            let u = Tensor::empty(rec.ctx, &[36, ci, co], DType::F32)?;
            rec.dispatch(
                SHADER_WINO,
                "wino_weight",
                &p,
                &[(11, wt), (6, &u)],
                grid_1d((ci * quads(gout)) as u64, 64),
            )?;
            rec.keep_derived(kind, w, &u);
            u
        }
    };
    // Rows padded to the weight gradient's chunks (zeros past the tiles).
    let (chunks, per) = dw_chunks(tiles);
    let total = chunks * per;
    let mut p = p;
    p[11] = total as u32;
    let v = Tensor::empty(rec.ctx, &[36, total, ci], DType::F32)?;
    rec.dispatch(
        SHADER_WINO,
        "wino_input",
        &p,
        &[(10, x), (6, &v)],
        grid_1d((total * quads(gin)) as u64, 64),
    )?;
    if !transposed && winograd_pays(rec, d, gin, gout, true) {
        rec.keep_derived(input_kind(load), stored, &v);
    }
    let m = gemm::bmm(rec, &v, &u, false, false)?;
    let y = Tensor::empty(rec.ctx, &[d.n, d.h, d.w, gout], DType::F32)?;
    let (entry, yb) = if gout.is_multiple_of(4) {
        ("wino_output_v4", 6)
    } else {
        ("wino_output", 5)
    };
    rec.dispatch(
        SHADER_WINO,
        entry,
        &p,
        &[(10, &m), (4, bias.unwrap_or(w)), (yb, &y)],
        grid_1d((tiles * quads(gout)) as u64, 64),
    )?;
    Ok(y)
}

/// Which side of a conv taking the one-channel kernels ([`thin`]) has the one channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Thin {
    /// Cin = 1: D's first conv, the image in.
    In,
    /// Cout = 1: G's last conv, the image out.
    Out,
}

const SHADER_THIN: &str = "conv_thin";
/// Flag bit of `thin_dw` for Cout = 1 (bits 0, the bias, and 2, ReLU on load, as in the other
/// kernels).
const THIN_DW_OUT: u32 = 32;
/// Lanes (chunks of image rows x blocks of 4 channels) that `thin_dw` aims for.
const THIN_DW_LANES: usize = 512;

/// Whether a 3x3 pass over `d` (x read with `load`) takes the one-channel kernels of
/// `shaders/conv_thin.wgsl` on a CPU adapter, and which side has the one channel: Cin = 1
/// (x as stored) or Cout = 1 (ReLU on load allowed), the other count a multiple of 4, the
/// image width a multiple of 4, no upsampling, the wider tensor within one texture. The other
/// kernels would pad the one channel to four.
fn thin(rec: &Recorder, d: &Dims, load: Load) -> Option<Thin> {
    if !rec.cpu_kernels() || d.k != 3 || !d.w.is_multiple_of(4) || load.upsample {
        return None;
    }
    let side = if d.cin == 1 && d.cout.is_multiple_of(4) && !load.relu {
        Thin::In
    } else if d.cout == 1 && d.cin.is_multiple_of(4) {
        Thin::Out
    } else {
        return None;
    };
    rec.texture_fits(d.m() * d.cin.max(d.cout)).then_some(side)
}

/// Uniform words of the one-channel kernels (see the header of `shaders/conv_thin.wgsl`).
fn thin_params(d: &Dims, flags: u32, rows: usize, chunks: usize) -> [u32; 12] {
    let c = d.cin.max(d.cout);
    [
        d.n as u32,
        d.h as u32,
        d.w as u32,
        c as u32,
        0,
        3,
        quads(c) as u32,
        0,
        flags,
        rows as u32,
        d.m() as u32,
        chunks as u32,
    ]
}

/// The weight of a [`thin`] conv as the one-channel kernels read it: [`repack`]'s `[9, 4, C]`
/// (transposed, so flipped, for Cout = 1; kept per weight as `repack` keeps it).
fn thin_weight(rec: &mut Recorder, side: Thin, d: &Dims, w: &Tensor) -> Result<Tensor> {
    repack(rec, w, d, side == Thin::Out)
}

/// One pass of the one-channel kernels over 4x4-pixel tiles: `thin_spread` (the one-channel
/// `input` to `[N, H, W, C]`) or `thin_gather` (`input` `[N, H, W, C]`, read with `load`, to
/// `[N, H, W, 1]`), through `k` (see [`thin_weight`]), plus `bias`.
fn thin_pass(
    rec: &mut Recorder,
    d: &Dims,
    spread: bool,
    input: &Tensor,
    k: &Tensor,
    bias: Option<&Tensor>,
    load: Load,
) -> Result<Tensor> {
    let (entry, input_binding, c) = if spread {
        ("thin_spread", 12, d.cin.max(d.cout))
    } else {
        ("thin_gather", 10, 1)
    };
    let y = Tensor::empty(rec.ctx, &[d.n, d.h, d.w, c], DType::F32)?;
    let tiles = d.n * d.h.div_ceil(4) * (d.w / 4);
    rec.dispatch(
        SHADER_THIN,
        entry,
        &thin_params(d, bias.is_some() as u32 | load.flags(), 0, 0),
        &[
            (input_binding, input),
            (11, k),
            (4, bias.unwrap_or(k)),
            (6, &y),
        ],
        grid_1d(tiles as u64, 64),
    )?;
    Ok(y)
}

/// The forward pass of a [`thin`] conv.
fn thin_forward(
    rec: &mut Recorder,
    side: Thin,
    d: &Dims,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    load: Load,
) -> Result<Tensor> {
    let k = thin_weight(rec, side, d, w)?;
    thin_pass(rec, d, side == Thin::In, x, &k, b, load)
}

/// The input gradient of a [`thin`] conv (with respect to the transformed input).
fn thin_input_grad(
    rec: &mut Recorder,
    side: Thin,
    d: &Dims,
    w: &Tensor,
    dy: &Tensor,
) -> Result<Tensor> {
    let k = thin_weight(rec, side, d, w)?;
    thin_pass(rec, d, side == Thin::Out, dy, &k, None, Load::NONE)
}

/// The weight and bias gradients of a [`thin`] conv: `thin_dw` over chunks of image rows,
/// then the chunks added in order.
fn thin_weight_grad(
    rec: &mut Recorder,
    side: Thin,
    d: &Dims,
    x: &Tensor,
    dy: &Tensor,
    has_bias: bool,
    load: Load,
) -> Result<(Tensor, Option<Tensor>)> {
    let c = d.cin.max(d.cout);
    let rows = d.n * d.h;
    let per = rows.div_ceil((THIN_DW_LANES / quads(c)).clamp(1, rows));
    let chunks = rows.div_ceil(per);
    let (v, s, flags, ci_pad, co_pad) = match side {
        Thin::In => (dy, x, 0, 1, c),
        Thin::Out => (x, dy, THIN_DW_OUT | load.flags(), c, 1),
    };
    let parts = Tensor::empty(rec.ctx, &[chunks * 10 * c], DType::F32)?;
    rec.dispatch(
        SHADER_THIN,
        "thin_dw",
        &thin_params(d, flags, per, chunks),
        &[(10, v), (12, s), (6, &parts)],
        grid_1d((chunks * quads(c)) as u64, 64),
    )?;
    let at = |offset, taps, ci_pad, co_pad| Partials {
        chunks: chunks as u64,
        stride: 10 * c,
        offset,
        taps,
        ci_pad,
        co_pad,
    };
    let dw = Tensor::empty(rec.ctx, &[d.cout, d.cin, 3, 3], DType::F32)?;
    reduce(rec, &parts, &dw, d.cin, at(0, 9, ci_pad, co_pad))?;
    let db = if has_bias {
        let db = Tensor::empty(rec.ctx, &[d.cout], DType::F32)?;
        reduce(rec, &parts, &db, 1, at(9 * c, 1, 1, c))?;
        Some(db)
    } else {
        None
    };
    Ok((dw, db))
}

/// `y = conv2d(x, w) + b`: x `[N, H, W, Cin]`, w `[Cout, Cin, k, k]` with k in {1, 3},
/// b `[Cout]`; stride 1 and zero padding k / 2, so y is `[N, H, W, Cout]`.
pub fn conv2d(rec: &mut Recorder, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let op = "conv2d";
    let d = check(op, x, w)?;
    check_bias(op, b, &d)?;
    if gemm_1x1(rec, &d) {
        let (x2, w2) = (x.reshape(&[d.m(), d.cin])?, w.reshape(&[d.cout, d.cin])?);
        return gemm::linear(rec, &x2, &w2, b)?.reshape(&[d.n, d.h, d.w, d.cout]);
    }
    if padded_1x1(rec, &d) {
        let cin4 = quads(d.cin) * 4;
        let x4 = pad4(rec, x, &d, d.cin)?.reshape(&[d.m(), cin4])?;
        let w4 = weight_1x1_padded(rec, w, &d)?;
        return gemm::linear(rec, &x4, &w4, b)?.reshape(&[d.n, d.h, d.w, d.cout]);
    }
    if let Some(side) = thin(rec, &d, Load::NONE) {
        return thin_forward(rec, side, &d, x, w, b, Load::NONE);
    }
    let wt = repack(rec, w, &d, false)?;
    gemm(rec, op, x, &wt, b, w, false, &d, Load::NONE)
}

/// `y = conv2d(load(x), w) + b` with the transform `load` applied as the kernels read x
/// (see [`Load`]): x `[N, H, W, Cin]`, or `[N, H/2, W/2, Cin]` when `load` upsamples; y
/// `[N, H, W, Cout]`.
pub fn conv2d_load(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    load: Load,
) -> Result<Tensor> {
    let op = "conv2d_load";
    let d = check_load(op, x, w, load)?;
    if load == Load::NONE || d.k != 3 {
        let t = load.apply(rec, x)?;
        return conv2d(rec, &t, w, b);
    }
    check_bias(op, b, &d)?;
    if let Some(side) = thin(rec, &d, load) {
        return thin_forward(rec, side, &d, x, w, b, load);
    }
    let wt = repack(rec, w, &d, false)?;
    gemm(rec, op, x, &wt, b, w, false, &d, load)
}

/// Backward pass of [`conv2d_load`]: `dx` is the gradient with respect to x itself (through
/// the transform).
pub fn conv2d_load_backward(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    has_bias: bool,
    load: Load,
) -> Result<ConvGrads> {
    let dx = conv2d_load_backward_input(rec, x, w, dy, load)?;
    let (dw, db) = conv2d_load_backward_weight(rec, x, w, dy, has_bias, load)?;
    Ok(ConvGrads { dx, dw, db })
}

/// The input gradient of [`conv2d_load`] alone.
pub fn conv2d_load_backward_input(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    load: Load,
) -> Result<Tensor> {
    let op = "conv2d_load_backward_input";
    let d = check_load_dy(op, x, w, dy, load)?;
    let dt = backward_input(rec, op, &d, w, dy)?;
    load.backward(rec, x, &dt)
}

/// The weight and bias gradients of [`conv2d_load`] alone.
pub fn conv2d_load_backward_weight(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    has_bias: bool,
    load: Load,
) -> Result<(Tensor, Option<Tensor>)> {
    let op = "conv2d_load_backward_weight";
    let d = check_load_dy(op, x, w, dy, load)?;
    if load == Load::NONE || d.k != 3 {
        let t = load.apply(rec, x)?;
        return conv2d_backward_weight(rec, &t, w, dy, has_bias);
    }
    backward_weight(rec, op, x, &d, dy, has_bias, load)
}

/// On CPU adapters with subgroups a 1x1 conv and its input gradient are products of the pixel
/// rows with the weight: `gemm_sg`'s kernels (weights shared by shuffles, no repack), which
/// linear layers compile anyway. Channel counts must be multiples of 4 (those kernels would
/// pad the operands with extra passes; attention's 2-channel convs stay on `conv1x1_t`).
fn gemm_1x1(rec: &Recorder, d: &Dims) -> bool {
    d.k == 1
        && rec.cpu_kernels()
        && rec.subgroups()
        && d.cin.is_multiple_of(4)
        && d.cout.is_multiple_of(4)
}

/// On CPU adapters with subgroups, a 1x1 conv whose output channels are whole vec4s and whose
/// input channels are not (D's first shortcut, 1 -> ch): x padded to vec4 channels (as the
/// 1x1 kernels read it) times the weight padded with zero columns, on `gemm_sg`'s kernels,
/// so that `conv1x1_t` does not compile for it (0.2-0.3 s on lavapipe); the input gradient
/// is the same product cropped back to Cin.
fn padded_1x1(rec: &Recorder, d: &Dims) -> bool {
    d.k == 1
        && rec.cpu_kernels()
        && rec.subgroups()
        && d.cout.is_multiple_of(4)
        && !d.cin.is_multiple_of(4)
}

/// The weight `[Cout, Cin, 1, 1]` of a [`padded_1x1`] conv as `[Cout, Cin4]`, zeros after Cin;
/// kept per weight as [`repack`] keeps its result (one pad per weight version).
fn weight_1x1_padded(rec: &mut Recorder, w: &Tensor, d: &Dims) -> Result<Tensor> {
    const KIND: &str = "conv_pad_1x1";
    if let Some(w4) = rec.derived(KIND, w) {
        return Ok(w4);
    }
    let cin4 = quads(d.cin) * 4;
    let w2 = w.reshape(&[d.cout, d.cin])?;
    let w4 = rearrange::resize_2d(rec, &w2, 1, (d.cout, d.cin), (d.cout, cin4))?
        .reshape(&[d.cout, cin4])?;
    rec.keep_derived(KIND, w, &w4);
    Ok(w4)
}

/// Split `units` (image rows or pixels, `unit_px` pixels each) into chunks for the weight
/// gradient with `floats_per_chunk` partial sums per chunk: returns (chunks, units per chunk).
/// Fixed by the shapes alone, so results are reproducible.
fn chunking(units: u64, unit_px: u64, floats_per_chunk: u64, lanes: u64) -> (u64, u64) {
    // Few lanes per chunk (few channels) get more chunks, so that the device has work for
    // all its threads: at least about MIN_LANES lanes in all.
    let most = MAX_CHUNKS.max(MIN_LANES / lanes.max(1));
    let cap = (MAX_PARTIAL_FLOATS / floats_per_chunk.max(1)).clamp(1, most);
    let want = (units * unit_px).div_ceil(DW_CHUNK_PIXELS);
    let chunks = want.clamp(1, cap).min(units.max(1));
    let per = units.div_ceil(chunks).max(1);
    (units.div_ceil(per).max(1), per)
}

/// Where a gradient's partial sums lie: `chunks` partials of `stride` floats, each holding
/// `[taps, ci_pad, co_pad]` from float `offset` on.
struct Partials {
    chunks: u64,
    stride: usize,
    offset: usize,
    taps: usize,
    ci_pad: usize,
    co_pad: usize,
}

impl Partials {
    /// Partials of exactly `[taps, ci_pad, co_pad]` each.
    fn dense(chunks: u64, taps: usize, ci_pad: usize, co_pad: usize) -> Partials {
        Partials {
            chunks,
            stride: taps * ci_pad * co_pad,
            offset: 0,
            taps,
            ci_pad,
            co_pad,
        }
    }
}

/// Sum the partials of `parts` (laid out as `at` says) into `out` in PyTorch's
/// `[co, ci, taps]` order, `cin` input channels.
fn reduce(
    rec: &mut Recorder,
    parts: &Tensor,
    out: &Tensor,
    cin: usize,
    at: Partials,
) -> Result<()> {
    let total = out.numel() as u64;
    let p = [
        at.offset as u32,
        0,
        0,
        cin as u32,
        0,
        at.taps as u32,
        at.ci_pad as u32,
        at.co_pad as u32,
        0,
        at.stride as u32,
        total as u32,
        at.chunks as u32,
    ];
    rec.dispatch(
        SHADER,
        "conv_reduce",
        &p,
        &[(9, parts), (5, out)],
        grid_1d(total, 256),
    )
}

fn check_bias(op: &str, b: Option<&Tensor>, d: &Dims) -> Result<()> {
    if let Some(b) = b {
        ensure_shape!(
            b.dtype() == DType::F32 && b.shape() == [d.cout],
            "{op}: bias {b:?} is not f32 [{}]",
            d.cout
        );
    }
    Ok(())
}

/// [`check_load`] and dy's shape.
fn check_load_dy(op: &str, x: &Tensor, w: &Tensor, dy: &Tensor, load: Load) -> Result<Dims> {
    let d = check_load(op, x, w, load)?;
    check_dy_dims(op, &d, dy)?;
    Ok(d)
}

fn check_dy(op: &str, x: &Tensor, w: &Tensor, dy: &Tensor) -> Result<Dims> {
    let d = check(op, x, w)?;
    check_dy_dims(op, &d, dy)?;
    Ok(d)
}

fn check_dy_dims(op: &str, d: &Dims, dy: &Tensor) -> Result<()> {
    ensure_shape!(
        dy.dtype() == DType::F32 && dy.shape() == [d.n, d.h, d.w, d.cout],
        "{op}: dy {dy:?} is not f32 [{}, {}, {}, {}]",
        d.n,
        d.h,
        d.w,
        d.cout
    );
    Ok(())
}

/// Backward pass of [`conv2d`]: `x` and `w` as given to the forward pass, `dy` the gradient
/// of its output `[N, H, W, Cout]`; `has_bias` says whether the forward pass had a bias (then
/// `db` is returned).
pub fn conv2d_backward(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    has_bias: bool,
) -> Result<ConvGrads> {
    check_dy("conv2d_backward", x, w, dy)?;
    let dx = conv2d_backward_input(rec, x, w, dy)?;
    let (dw, db) = conv2d_backward_weight(rec, x, w, dy, has_bias)?;
    Ok(ConvGrads { dx, dw, db })
}

/// The input gradient alone (the `dx` of [`conv2d_backward`]); `x` only gives the shape.
pub fn conv2d_backward_input(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
) -> Result<Tensor> {
    let op = "conv2d_backward_input";
    let d = check_dy(op, x, w, dy)?;
    backward_input(rec, op, &d, w, dy)
}

/// The input gradient of a pass over `d` (x gives only the shape).
fn backward_input(
    rec: &mut Recorder,
    op: &str,
    d: &Dims,
    w: &Tensor,
    dy: &Tensor,
) -> Result<Tensor> {
    let d = *d;
    if gemm_1x1(rec, &d) {
        let (dy2, w2) = (dy.reshape(&[d.m(), d.cout])?, w.reshape(&[d.cout, d.cin])?);
        return gemm::matmul(rec, &dy2, &w2, false, false, None)?.reshape(&[d.n, d.h, d.w, d.cin]);
    }
    if padded_1x1(rec, &d) {
        let cin4 = quads(d.cin) * 4;
        let dy2 = dy.reshape(&[d.m(), d.cout])?;
        let w4 = weight_1x1_padded(rec, w, &d)?;
        let dx4 = gemm::matmul(rec, &dy2, &w4, false, false, None)?;
        let dx = rearrange::resize_2d(rec, &dx4, 1, (d.m(), cin4), (d.m(), d.cin))?;
        return dx.reshape(&[d.n, d.h, d.w, d.cin]);
    }
    if let Some(side) = thin(rec, &d, Load::NONE) {
        return thin_input_grad(rec, side, &d, w, dy);
    }
    // Correlate dy with the flipped, transposed kernel.
    let wt = repack(rec, w, &d, true)?;
    gemm(rec, op, dy, &wt, None, w, true, &d, Load::NONE)
}

/// The weight gradient `[Cout, Cin, k, k]` and, with `has_bias`, the bias gradient `[Cout]`
/// alone (the `dw` and `db` of [`conv2d_backward`]).
pub fn conv2d_backward_weight(
    rec: &mut Recorder,
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    has_bias: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    let op = "conv2d_backward_weight";
    let d = check_dy(op, x, w, dy)?;
    backward_weight(rec, op, x, &d, dy, has_bias, Load::NONE)
}

/// The weight and bias gradients of a pass over `d`, x read with `load` (3x3 only).
fn backward_weight(
    rec: &mut Recorder,
    op: &str,
    x: &Tensor,
    d: &Dims,
    dy: &Tensor,
    has_bias: bool,
    load: Load,
) -> Result<(Tensor, Option<Tensor>)> {
    let d = *d;
    if let Some(side) = thin(rec, &d, load) {
        return thin_weight_grad(rec, side, &d, x, dy, has_bias, load);
    }
    let wshape = [d.cout, d.cin, d.k, d.k];
    // dw: split-K over pixels.
    let m = d.m() as u64;
    let taps = d.k * d.k;
    let (cin4, cout4) = (quads(d.cin), quads(d.cout));
    let per_chunk = (taps * cin4 * 4 * cout4 * 4) as u64;
    let v4 = d.cin.is_multiple_of(4) && d.cout.is_multiple_of(4);
    // Groups of 4 output blocks: what the chunk counts below are sized by (kernels with 4
    // blocks per lane set them; kept, so the sums and their order stay as they were).
    let co_groups = cout4.div_ceil(4) as u64;
    // CPU adapters read x and dy as textures (the `_t` kernels), channels padded to vec4s.
    let cpu = texture_dw(rec, &d);
    ensure_shape!(
        load == Load::NONE || d.k == 3,
        "{op}: the 1x1 kernels cannot transform x as they load it"
    );
    let (xp, dyp);
    let (xk, dyk) = if cpu {
        xp = pad4(rec, x, &source(&d, load), d.cin)?;
        dyp = pad4(rec, dy, &d, d.cout)?;
        (&xp, &dyp)
    } else {
        (x, dy)
    };
    if cpu && d.k == 3 && rec.subgroups() && winograd_pays(rec, &d, d.cin, d.cout, true) {
        return winograd_dw(rec, x, xk, dyk, &d, load, has_bias);
    }
    let pick = |t: &'static str, v: &'static str, s: &'static str| {
        if cpu {
            t
        } else if v4 {
            v
        } else {
            s
        }
    };
    let (entry, chunks, per, lanes) = if d.k == 3 {
        let (chunks, per) = chunking(
            (d.n * d.h) as u64,
            d.w as u64,
            per_chunk,
            cin4 as u64 * co_groups,
        );
        let entry = pick("conv_dw3_t", "conv_dw3_v4", "conv_dw3_s");
        // conv_dw3_t: a lane per kernel row as well.
        let rows = if cpu { 3 } else { 1 };
        (entry, chunks, per, rows * cin4 as u64)
    } else {
        let (chunks, per) = chunking(m, 1, per_chunk, cin4.div_ceil(4) as u64 * co_groups);
        let entry = pick("conv_dw1_t", "conv_dw1_v4", "conv_dw1_s");
        // conv_dw1_t: a lane per pair of input blocks, the others per group of 4.
        let lanes = if cpu {
            cin4.div_ceil(2)
        } else {
            cin4.div_ceil(4)
        };
        (entry, chunks, per, lanes as u64)
    };
    // The `_t` kernels spread (channel block, chunk) pairs over the lanes.
    // Every kernel takes a pair of output blocks per lane.
    let pairs = cout4.div_ceil(2) as u64;
    let groups = if cpu {
        [(lanes * chunks).div_ceil(WG_DW), pairs, 1]
    } else {
        [lanes.div_ceil(WG_DW), pairs, chunks]
    };
    ensure_shape!(
        groups.iter().all(|&g| g <= 65535),
        "{op}: weight {wshape:?} is too large for one dispatch"
    );
    // On CPU adapters the kernel also sums dy for the bias gradient (flag bit 0), into
    // `chunks` partials of cout4 vec4s after the weight partials.
    let fused_db = cpu && has_bias;
    let db_floats = if fused_db {
        chunks * cout4 as u64 * 4
    } else {
        0
    };
    let parts = Tensor::empty(
        rec.ctx,
        &[(chunks * per_chunk + db_floats) as usize],
        DType::F32,
    )?;
    let mut p = params(&d, d.cin, d.cout, load.flags() | fused_db as u32, per);
    p[11] = chunks as u32;
    let bind: [(u32, &Tensor); 5] = if v4 {
        [(2, xk), (8, dyk), (6, &parts), (10, xk), (12, dyk)]
    } else {
        [(1, xk), (7, dyk), (6, &parts), (10, xk), (12, dyk)]
    };
    rec.dispatch(
        SHADER,
        entry,
        &p,
        &bind,
        [groups[0] as u32, groups[1] as u32, groups[2] as u32],
    )?;
    let dw = Tensor::empty(rec.ctx, &wshape, DType::F32)?;
    reduce(
        rec,
        &parts,
        &dw,
        d.cin,
        Partials::dense(chunks, taps, cin4 * 4, cout4 * 4),
    )?;
    let db = if fused_db {
        let db = Tensor::empty(rec.ctx, &[d.cout], DType::F32)?;
        let at = Partials {
            chunks,
            stride: cout4 * 4,
            offset: (chunks * per_chunk) as usize,
            taps: 1,
            ci_pad: 1,
            co_pad: cout4 * 4,
        };
        reduce(rec, &parts, &db, 1, at)?;
        Some(db)
    } else if has_bias {
        Some(bias_grad(rec, dyk, &d)?)
    } else {
        None
    };
    Ok((dw, db))
}

/// db on adapters without the CPU kernels (which sum dy inside their weight-gradient
/// kernels): chunked sums of `dy` over the pixels, then added in chunk order.
fn bias_grad(rec: &mut Recorder, dy: &Tensor, d: &Dims) -> Result<Tensor> {
    let m = d.m() as u64;
    let cout4 = quads(d.cout);
    let chunks = m.div_ceil(DB_CHUNK_PIXELS).clamp(1, 65535);
    let per = m.div_ceil(chunks);
    let chunks = m.div_ceil(per);
    let parts = Tensor::empty(rec.ctx, &[chunks as usize * cout4 * 4], DType::F32)?;
    let p = params(d, d.cin, d.cout, 0, per);
    let (entry, dyb) = if d.cout.is_multiple_of(4) {
        ("conv_db_v4", 8)
    } else {
        ("conv_db_s", 7)
    };
    rec.dispatch(
        SHADER,
        entry,
        &p,
        &[(dyb, dy), (6, &parts)],
        [(cout4 as u64).div_ceil(64) as u32, chunks as u32, 1],
    )?;
    let db = Tensor::empty(rec.ctx, &[d.cout], DType::F32)?;
    reduce(
        rec,
        &parts,
        &db,
        1,
        Partials::dense(chunks, 1, 1, cout4 * 4),
    )?;
    Ok(db)
}

/// The 3x3 weight gradient as Winograd F(4x4, 3x3) transposed (`shaders/conv_winograd.wgsl`):
/// the input and output-gradient transforms over the tiles padded to whole chunks of
/// [`WINOGRAD_DW_TILES`], one batched product per (transform point, chunk), then the chunks
/// added in order and transformed back to `[Cout, Cin, 3, 3]`. `xk` and `dyk` are `x` and dy
/// with their channels padded to multiples of 4; the input transform is the one the forward
/// pass kept for `x`, where it did.
fn winograd_dw(
    rec: &mut Recorder,
    x: &Tensor,
    xk: &Tensor,
    dyk: &Tensor,
    d: &Dims,
    load: Load,
    has_bias: bool,
) -> Result<(Tensor, Option<Tensor>)> {
    const SHADER_WINO: &str = "conv_winograd";
    let (ci, co) = (quads(d.cin) * 4, quads(d.cout) * 4);
    let tiles = d.n * d.h.div_ceil(4) * d.w.div_ceil(4);
    let (chunks, per) = dw_chunks(tiles);
    let total = chunks * per;
    let mut p = params(d, d.cin, d.cout, load.flags(), 0);
    p[11] = total as u32;
    let v = match rec.derived(input_kind(load), x) {
        // The forward pass's transform of the same x (rows padded the same way).
        Some(v) if v.shape() == [36, total, ci] => v.reshape(&[36 * chunks, per, ci])?,
        _ => {
            let v = Tensor::empty(rec.ctx, &[36 * chunks, per, ci], DType::F32)?;
            rec.dispatch(
                SHADER_WINO,
                "wino_input",
                &p,
                &[(10, xk), (6, &v)],
                grid_1d((total * quads(d.cin)) as u64, 64),
            )?;
            v
        }
    };
    let g = Tensor::empty(rec.ctx, &[36 * chunks, per, co], DType::F32)?;
    rec.dispatch(
        SHADER_WINO,
        "wino_dy",
        &p,
        &[(10, dyk), (6, &g)],
        grid_1d((total * quads(d.cout)) as u64, 64),
    )?;
    let parts = gemm::bmm(rec, &v, &g, true, false)?;
    drop(v);
    // The bias gradient from product 7 (a = b = 1): row and column 1 of A are all ones, so
    // DY[7] of a tile is the sum of its 4x4 dy (zero past the image). `conv_reduce` adds
    // DY[7]'s `per` tiles of each dW chunk into sums `[co, chunks]` (tile k of chunk j of
    // channel c at 7 * total * co + (j * per + k) * co + c), then each channel's chunks in
    // order.
    let db = if has_bias {
        let sums = Tensor::empty(rec.ctx, &[co * chunks], DType::F32)?;
        let tiles_of_chunks = Partials {
            chunks: per as u64,
            stride: co,
            offset: 7 * total * co,
            taps: chunks,
            ci_pad: 1,
            co_pad: per * co,
        };
        reduce(rec, &g, &sums, 1, tiles_of_chunks)?;
        let db = Tensor::empty(rec.ctx, &[d.cout], DType::F32)?;
        let chunks_of_channels = Partials {
            chunks: chunks as u64,
            stride: 1,
            offset: 0,
            taps: d.cout,
            ci_pad: chunks,
            co_pad: 1,
        };
        reduce(rec, &sums, &db, 1, chunks_of_channels)?;
        Some(db)
    } else {
        None
    };
    drop(g);
    let dw = Tensor::empty(rec.ctx, &[d.cout, d.cin, 3, 3], DType::F32)?;
    p[11] = chunks as u32;
    rec.dispatch(
        SHADER_WINO,
        "wino_dw_out",
        &p,
        &[(10, &parts), (5, &dw)],
        grid_1d((d.cin * quads(d.cout)) as u64, 64),
    )?;
    Ok((dw, db))
}
