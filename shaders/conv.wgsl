// conv2d (k in {1, 3}, stride 1, 'same' zero padding) as implicit GEMMs, NHWC activations.
//
// Forward: y[p, co] = b[co] + sum_{tap, ci} x[p shifted by tap, ci] * wt[tap, ci, co], p an
// output pixel, wt the weight repacked from PyTorch's [Cout, Cin, k, k] into
// [k*k, Cin_pad, Cout_pad] (channel pads are zeros and round up to multiples of 4) so that one
// vec4 holds 4 output channels. The input gradient is the same GEMM run on dy with the kernel
// flipped and transposed (conv_repack with flag 2), so the forward kernels serve both.
// Weight gradient: dw[tap, ci, co] = sum_p x[p shifted by tap, ci] * dy[p, co], split over
// chunks of pixels into partial sums, then summed over the chunks in a fixed order
// (conv_reduce). Bias gradient: the same with x = 1.
//
// Speed on lavapipe (llvmpipe): an invocation is one SIMD lane, and every storage-buffer load
// is done lane by lane (~20 cycles per lane and float), while arithmetic runs on all lanes at
// once. So the kernels are built to do many multiply-adds per loaded float, with big per-lane
// register tiles written out through small structs (NIR inlines the functions and keeps the
// struct fields in registers; local arrays indexed in loops would go to memory):
// - conv3x3_*: a lane computes an 8x8 block of output pixels x 8 output channels. Per 4 input
//   channels it loads the 10x10 input window once and reuses it for all 9 taps (~54 flops per
//   loaded float, against 8 for a 4x4 tile without the window).
// - conv3x3w_v4: 8x8 pixels x 16 output channels, chosen on CPU adapters when Cout >= 16
//   (on a loaded lavapipe machine it took 0.75x and 0.95x the CPU time of conv3x3_v4 in two
//   runs: see docs/PERFORMANCE.md; 1024 accumulators per lane would spill on a GPU, which
//   keeps conv3x3_v4).
// - conv_gemm_*: any k, a lane computes 32 consecutive pixels x 16 output channels (1x1 convs,
//   and 3x3 on images narrower than 8, where 8x8 blocks would be mostly padding).
// - conv_dw3_*: a lane owns 4 input x 8 output channels for all 9 taps and slides a 3x3
//   window along image rows, loading 3 new input vectors and 2 dy vectors per pixel.
// - conv_dw1_*: 1x1, a lane owns 16 input x 8 output channels.
// - conv3x3_t, conv1x1_t, conv_dw3_t, conv_dw1_t: for CPU adapters, the same passes reading
//   x, dy and the weight as textures (copied by the runtime), where lavapipe fetches a texel
//   about 10x faster than it loads from a storage buffer; smaller tiles, fast to compile
//   (conv_dw3_t: one kernel row of the 9 taps per lane; conv_dw1_t: 8 input channels).
// The `_v4` entry points read channels as vec4 and need the channel counts they read to be
// multiples of 4; the `_s` ones read scalars with bounds checks and take any count. Loads of
// padding are skipped (if), not clamped, so image borders cost less.

struct Params {
    // Forward kernels: batch, height, width, GEMM input/output channels, kernel size,
    // ceil(cin/4), ceil(cout/4), flags (bit 0: add bias; bits 2, 3: ReLU and 2x upsampling
    // of x as loaded, see relu_in and up_shift; 3x3 kernels only), -, m = n*h*w, -.
    // Gradient kernels: the same with cin/cout those of the forward pass and `chunk` = rows
    // (conv_dw3_*) or pixels (conv_dw1_*, conv_db_*) per chunk.
    // conv_repack: cin, cout = GEMM input/output channels, k, cin4, cout4, flags (bit 1:
    //   flip and transpose).
    // conv_reduce: n = offset into each partial, m = outputs, cin = input channels, k = taps
    //   (k*k), cin4 / cout4 = padded ci / co strides (not divided by 4), chunk = floats per
    //   partial, extra = partials.
    n: u32,
    h: u32,
    w: u32,
    cin: u32,
    cout: u32,
    k: u32,
    cin4: u32,
    cout4: u32,
    flags: u32,
    chunk: u32,
    m: u32,
    extra: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Input activations (x, or dy for the input gradient), scalar and vec4 views.
@group(0) @binding(1) var<storage, read> xs: array<f32>;
@group(0) @binding(2) var<storage, read> x4: array<vec4<f32>>;
// Repacked weight [k*k, cin4*4, cout4*4] as vec4 over output channels.
@group(0) @binding(3) var<storage, read> wt4: array<vec4<f32>>;
// Bias (forward), or the PyTorch-layout weight (conv_repack).
@group(0) @binding(4) var<storage, read> aux: array<f32>;
// Scalar output: y, the repacked weight, or a reduced gradient.
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
// Partial sums as vec4 over output channels (gradient kernels).
@group(0) @binding(6) var<storage, read_write> part4: array<vec4<f32>>;
// Output gradient dy for the weight/bias gradients, scalar and vec4 views.
@group(0) @binding(7) var<storage, read> dys: array<f32>;
@group(0) @binding(8) var<storage, read> dy4: array<vec4<f32>>;
// Partial sums read back as scalars (conv_reduce).
@group(0) @binding(9) var<storage, read> parts: array<f32>;
// Texture copies of x4 and wt4 (the runtime copies the bound tensors; vec4 i is texel
// (i % 4096, i / 4096)), for the kernels of CPU adapters (conv3x3_t).
@group(0) @binding(10) var x_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(11) var wt_tex: texture_storage_2d<rgba32float, read>;
// Texture copy of dy4 (conv_dw3_t, conv_dw1_t).
@group(0) @binding(12) var dy_tex: texture_storage_2d<rgba32float, read>;
// The output as vec4s, for kernels whose output has a multiple of 4 channels (one vector
// store where `out` takes four scalar ones; on lavapipe each store of a lane-dependent
// address is a loop over the lanes, and 128 of them were about 40% of conv3x3_sg's compile).
@group(0) @binding(13) var<storage, read_write> out4: array<vec4<f32>>;

// Workgroup sizes (the Rust side sizes its grids with the same numbers).
const WG_FWD: u32 = 16u;
const WG_DW: u32 = 8u;

// ---------------------------------------------------------------------------------------
// Weight repacking: out[(tap * cin4*4 + a) * cout4*4 + b] = w[b, a, tap] (forward), or
// w[a, b, k*k-1-tap] (flipped and transposed: a runs over the forward Cout), zero in the pads.

@compute @workgroup_size(256)
fn conv_repack(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let kk = p.k * p.k;
    let ci_pad = p.cin4 * 4u;
    let co_pad = p.cout4 * 4u;
    if i >= kk * ci_pad * co_pad { return; }
    let b = i % co_pad;
    let a = (i / co_pad) % ci_pad;
    let tap = i / (co_pad * ci_pad);
    var v = 0.0;
    if a < p.cin && b < p.cout {
        if (p.flags & 2u) != 0u {
            v = aux[(a * p.cout + b) * kk + (kk - 1u - tap)];
        } else {
            v = aux[(b * p.cin + a) * kk + tap];
        }
    }
    out[i] = v;
}

// ---------------------------------------------------------------------------------------
// Channel padding for the `_t` kernels: out[q * cin4*4 + j] = xs[q * cin + j] for j < cin,
// zero above, over m pixels.

@compute @workgroup_size(256)
fn conv_pad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let c4 = p.cin4 * 4u;
    if i >= p.m * c4 { return; }
    let j = i % c4;
    var v = 0.0;
    if j < p.cin {
        v = xs[(i / c4) * p.cin + j];
    }
    out[i] = v;
}

// ---------------------------------------------------------------------------------------
// Building blocks of the forward kernels.

// A 4x4 weight block: w<e> holds input channel e's weights for 4 output channels.
struct W4 {
    w0: vec4<f32>,
    w1: vec4<f32>,
    w2: vec4<f32>,
    w3: vec4<f32>,
}

// Weight block at vec4 index i (input channel rows are cout4 vec4s apart).
fn load_w(i: u32) -> W4 {
    return W4(wt4[i], wt4[i + p.cout4], wt4[i + 2u * p.cout4], wt4[i + 3u * p.cout4]);
}

// a + (4 input channels v) x (weight block w): 4 output channels.
fn mac(a: vec4<f32>, v: vec4<f32>, w: W4) -> vec4<f32> {
    return a + ((v.x * w.w0 + v.y * w.w1) + (v.z * w.w2 + v.w * w.w3));
}

// Six and four vec4s (pixels or blocks of 4 channels; conv_thin.wgsl and
// conv_winograd.wgsl, appended to this file, use them).
struct V6 {
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
    v3: vec4<f32>,
    v4: vec4<f32>,
    v5: vec4<f32>,
}

struct V4 {
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
    v3: vec4<f32>,
}

// Eight pixels, 4 channels each.
struct Row8 {
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
    v3: vec4<f32>,
    v4: vec4<f32>,
    v5: vec4<f32>,
    v6: vec4<f32>,
    v7: vec4<f32>,
}

fn row_fill(v: vec4<f32>) -> Row8 {
    return Row8(v, v, v, v, v, v, v, v);
}

fn mac_row(a: Row8, x: Row8, w: W4) -> Row8 {
    return Row8(mac(a.v0, x.v0, w), mac(a.v1, x.v1, w), mac(a.v2, x.v2, w), mac(a.v3, x.v3, w),
        mac(a.v4, x.v4, w), mac(a.v5, x.v5, w), mac(a.v6, x.v6, w), mac(a.v7, x.v7, w));
}

// Initial accumulator for output block cb: the bias, or zero.
fn bias4(cb: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if (p.flags & 1u) != 0u {
        for (var j = 0u; j < 4u; j++) {
            let co = cb * 4u + j;
            if co < p.cout {
                v[j] = aux[co];
            }
        }
    }
    return v;
}

// Store output channels 4cb..4cb+3 of pixel q (those below cout).
fn store4(q: u32, ok: bool, cb: u32, v: vec4<f32>) {
    if !ok || cb >= p.cout4 { return; }
    let base = q * p.cout + cb * 4u;
    let n = min(p.cout - cb * 4u, 4u);
    out[base] = v.x;
    if n > 1u { out[base + 1u] = v.y; }
    if n > 2u { out[base + 2u] = v.z; }
    if n > 3u { out[base + 3u] = v.w; }
}

// Store output block cb of pixel q into out4 (cout a multiple of 4), if ok and cb < cout4.
fn store4_v(q: u32, ok: bool, cb: u32, v: vec4<f32>) {
    if ok && cb < p.cout4 {
        out4[q * p.cout4 + cb] = v;
    }
}

// ReLU when flags bit 2 asks for it (conv2d_load): every kernel's loads of x go through it.
fn relu_in(v: vec4<f32>) -> vec4<f32> {
    return select(v, max(v, vec4<f32>(0.0)), (p.flags & 4u) != 0u);
}

// 1 when flags bit 3 asks for x upsampled 2x on load (nearest): x then has half the height
// and width of the output, and image row or column i reads stored row or column i >> 1.
fn up_shift() -> u32 {
    return (p.flags >> 3u) & 1u;
}

// Input channels 4c..4c+3 of stored pixel q, zero where !ok (padding) or past cin.
fn x_v4(q: u32, ok: bool, c: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if ok {
        v = relu_in(x4[q * p.cin4 + c]);
    }
    return v;
}

fn x_s(q: u32, ok: bool, c: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if ok {
        let i = q * p.cin + 4u * c;
        let n = p.cin - 4u * c;
        v.x = xs[i];
        if n > 1u { v.y = xs[i + 1u]; }
        if n > 2u { v.z = xs[i + 2u]; }
        if n > 3u { v.w = xs[i + 3u]; }
        v = relu_in(v);
    }
    return v;
}

// ---------------------------------------------------------------------------------------
// conv3x3_*: 8x8 output pixels x 8 output channels per invocation.

// The invocation's 8x8 block of image `img`: input row i (0..9) of the 10x10 window is image
// row oh0 + i - 1, starting at pixel index rb[i]; window column j is image column col[j].
struct Tile {
    rb: array<i32, 10>,
    rv: array<bool, 10>,
    col: array<i32, 10>,
    cv: array<bool, 10>,
    // Where x is read from: the stored row's first pixel and column (they differ from rb and
    // col when x is upsampled on load).
    srb: array<i32, 10>,
    scol: array<i32, 10>,
}

// Ten consecutive pixels of one input row.
struct Row10 {
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
    v3: vec4<f32>,
    v4: vec4<f32>,
    v5: vec4<f32>,
    v6: vec4<f32>,
    v7: vec4<f32>,
    v8: vec4<f32>,
    v9: vec4<f32>,
}

// The 10x10 input window for 4 input channels.
struct Win {
    x0: Row10,
    x1: Row10,
    x2: Row10,
    x3: Row10,
    x4: Row10,
    x5: Row10,
    x6: Row10,
    x7: Row10,
    x8: Row10,
    x9: Row10,
}

// 8x8 pixels.
struct Blk {
    r0: Row8,
    r1: Row8,
    r2: Row8,
    r3: Row8,
    r4: Row8,
    r5: Row8,
    r6: Row8,
    r7: Row8,
}

// Two output-channel blocks of an 8x8 pixel block.
struct Acc3 {
    a: Blk,
    b: Blk,
}

fn tile3(t: u32) -> Tile {
    let bw = (p.w + 7u) / 8u;
    let bh = (p.h + 7u) / 8u;
    let img = i32(t / (bh * bw));
    let oh0 = i32(((t / bw) % bh) * 8u);
    let ow0 = i32((t % bw) * 8u);
    let h = i32(p.h);
    let w = i32(p.w);
    let s = up_shift();
    var tl: Tile;
    for (var i = 0; i < 10; i++) {
        let ih = oh0 + i - 1;
        tl.rv[i] = ih >= 0 && ih < h;
        tl.rb[i] = (img * h + ih) * w;
        tl.col[i] = ow0 + i - 1;
        tl.cv[i] = tl.col[i] >= 0 && tl.col[i] < w;
        tl.srb[i] = (img * (h >> s) + (ih >> s)) * (w >> s);
        tl.scol[i] = tl.col[i] >> s;
    }
    return tl;
}

fn row10_v4(tl: Tile, i: u32, c: u32) -> Row10 {
    let b = tl.srb[i];
    let r = tl.rv[i];
    return Row10(x_v4(u32(b + tl.scol[0]), r && tl.cv[0], c), x_v4(u32(b + tl.scol[1]), r && tl.cv[1], c),
        x_v4(u32(b + tl.scol[2]), r && tl.cv[2], c), x_v4(u32(b + tl.scol[3]), r && tl.cv[3], c),
        x_v4(u32(b + tl.scol[4]), r && tl.cv[4], c), x_v4(u32(b + tl.scol[5]), r && tl.cv[5], c),
        x_v4(u32(b + tl.scol[6]), r && tl.cv[6], c), x_v4(u32(b + tl.scol[7]), r && tl.cv[7], c),
        x_v4(u32(b + tl.scol[8]), r && tl.cv[8], c), x_v4(u32(b + tl.scol[9]), r && tl.cv[9], c));
}

fn row10_s(tl: Tile, i: u32, c: u32) -> Row10 {
    let b = tl.srb[i];
    let r = tl.rv[i];
    return Row10(x_s(u32(b + tl.scol[0]), r && tl.cv[0], c), x_s(u32(b + tl.scol[1]), r && tl.cv[1], c),
        x_s(u32(b + tl.scol[2]), r && tl.cv[2], c), x_s(u32(b + tl.scol[3]), r && tl.cv[3], c),
        x_s(u32(b + tl.scol[4]), r && tl.cv[4], c), x_s(u32(b + tl.scol[5]), r && tl.cv[5], c),
        x_s(u32(b + tl.scol[6]), r && tl.cv[6], c), x_s(u32(b + tl.scol[7]), r && tl.cv[7], c),
        x_s(u32(b + tl.scol[8]), r && tl.cv[8], c), x_s(u32(b + tl.scol[9]), r && tl.cv[9], c));
}

fn win_v4(tl: Tile, c: u32) -> Win {
    return Win(row10_v4(tl, 0u, c), row10_v4(tl, 1u, c), row10_v4(tl, 2u, c), row10_v4(tl, 3u, c),
        row10_v4(tl, 4u, c), row10_v4(tl, 5u, c), row10_v4(tl, 6u, c), row10_v4(tl, 7u, c),
        row10_v4(tl, 8u, c), row10_v4(tl, 9u, c));
}

fn win_s(tl: Tile, c: u32) -> Win {
    return Win(row10_s(tl, 0u, c), row10_s(tl, 1u, c), row10_s(tl, 2u, c), row10_s(tl, 3u, c),
        row10_s(tl, 4u, c), row10_s(tl, 5u, c), row10_s(tl, 6u, c), row10_s(tl, 7u, c),
        row10_s(tl, 8u, c), row10_s(tl, 9u, c));
}

// Columns kx..kx+7 of a window row.
fn cols0(r: Row10) -> Row8 {
    return Row8(r.v0, r.v1, r.v2, r.v3, r.v4, r.v5, r.v6, r.v7);
}

fn cols1(r: Row10) -> Row8 {
    return Row8(r.v1, r.v2, r.v3, r.v4, r.v5, r.v6, r.v7, r.v8);
}

fn cols2(r: Row10) -> Row8 {
    return Row8(r.v2, r.v3, r.v4, r.v5, r.v6, r.v7, r.v8, r.v9);
}

fn mac_blk(a: Blk, x: Blk, w: W4) -> Blk {
    return Blk(mac_row(a.r0, x.r0, w), mac_row(a.r1, x.r1, w), mac_row(a.r2, x.r2, w), mac_row(a.r3, x.r3, w),
        mac_row(a.r4, x.r4, w), mac_row(a.r5, x.r5, w), mac_row(a.r6, x.r6, w), mac_row(a.r7, x.r7, w));
}

// One tap: both output blocks += input block x times the tap's weights.
fn tap_mac(acc: Acc3, x: Blk, wi: u32, cb0: u32, cb1: u32) -> Acc3 {
    return Acc3(mac_blk(acc.a, x, load_w(wi + cb0)), mac_blk(acc.b, x, load_w(wi + cb1)));
}

// The 8x8 input block of tap (ky, kx) for window rows r0..r7 = rows ky..ky+7.
fn blk_k0(r0: Row10, r1: Row10, r2: Row10, r3: Row10, r4: Row10, r5: Row10, r6: Row10, r7: Row10) -> Blk {
    return Blk(cols0(r0), cols0(r1), cols0(r2), cols0(r3), cols0(r4), cols0(r5), cols0(r6), cols0(r7));
}

fn blk_k1(r0: Row10, r1: Row10, r2: Row10, r3: Row10, r4: Row10, r5: Row10, r6: Row10, r7: Row10) -> Blk {
    return Blk(cols1(r0), cols1(r1), cols1(r2), cols1(r3), cols1(r4), cols1(r5), cols1(r6), cols1(r7));
}

fn blk_k2(r0: Row10, r1: Row10, r2: Row10, r3: Row10, r4: Row10, r5: Row10, r6: Row10, r7: Row10) -> Blk {
    return Blk(cols2(r0), cols2(r1), cols2(r2), cols2(r3), cols2(r4), cols2(r5), cols2(r6), cols2(r7));
}

// All 9 taps for input channels 4c..4c+3; tap t's weights start at wi + t * tstep.
fn taps3(acc0: Acc3, x: Win, wi: u32, tstep: u32, cb0: u32, cb1: u32) -> Acc3 {
    var a = acc0;
    a = tap_mac(a, blk_k0(x.x0, x.x1, x.x2, x.x3, x.x4, x.x5, x.x6, x.x7), wi, cb0, cb1);
    a = tap_mac(a, blk_k1(x.x0, x.x1, x.x2, x.x3, x.x4, x.x5, x.x6, x.x7), wi + tstep, cb0, cb1);
    a = tap_mac(a, blk_k2(x.x0, x.x1, x.x2, x.x3, x.x4, x.x5, x.x6, x.x7), wi + 2u * tstep, cb0, cb1);
    a = tap_mac(a, blk_k0(x.x1, x.x2, x.x3, x.x4, x.x5, x.x6, x.x7, x.x8), wi + 3u * tstep, cb0, cb1);
    a = tap_mac(a, blk_k1(x.x1, x.x2, x.x3, x.x4, x.x5, x.x6, x.x7, x.x8), wi + 4u * tstep, cb0, cb1);
    a = tap_mac(a, blk_k2(x.x1, x.x2, x.x3, x.x4, x.x5, x.x6, x.x7, x.x8), wi + 5u * tstep, cb0, cb1);
    a = tap_mac(a, blk_k0(x.x2, x.x3, x.x4, x.x5, x.x6, x.x7, x.x8, x.x9), wi + 6u * tstep, cb0, cb1);
    a = tap_mac(a, blk_k1(x.x2, x.x3, x.x4, x.x5, x.x6, x.x7, x.x8, x.x9), wi + 7u * tstep, cb0, cb1);
    a = tap_mac(a, blk_k2(x.x2, x.x3, x.x4, x.x5, x.x6, x.x7, x.x8, x.x9), wi + 8u * tstep, cb0, cb1);
    return a;
}

fn acc3_init(cb0: u32) -> Acc3 {
    let a = row_fill(bias4(cb0));
    let b = row_fill(bias4(cb0 + 1u));
    return Acc3(Blk(a, a, a, a, a, a, a, a), Blk(b, b, b, b, b, b, b, b));
}

// Output row r of the block is window row r + 1, columns 1..8.
fn store_row3(tl: Tile, i: u32, cb: u32, a: Row8) {
    let b = tl.rb[i];
    let r = tl.rv[i];
    store4(u32(b + tl.col[1]), r && tl.cv[1], cb, a.v0);
    store4(u32(b + tl.col[2]), r && tl.cv[2], cb, a.v1);
    store4(u32(b + tl.col[3]), r && tl.cv[3], cb, a.v2);
    store4(u32(b + tl.col[4]), r && tl.cv[4], cb, a.v3);
    store4(u32(b + tl.col[5]), r && tl.cv[5], cb, a.v4);
    store4(u32(b + tl.col[6]), r && tl.cv[6], cb, a.v5);
    store4(u32(b + tl.col[7]), r && tl.cv[7], cb, a.v6);
    store4(u32(b + tl.col[8]), r && tl.cv[8], cb, a.v7);
}

fn store_blk3(tl: Tile, cb: u32, a: Blk) {
    store_row3(tl, 1u, cb, a.r0);
    store_row3(tl, 2u, cb, a.r1);
    store_row3(tl, 3u, cb, a.r2);
    store_row3(tl, 4u, cb, a.r3);
    store_row3(tl, 5u, cb, a.r4);
    store_row3(tl, 6u, cb, a.r5);
    store_row3(tl, 7u, cb, a.r6);
    store_row3(tl, 8u, cb, a.r7);
}

// Grid: x over 8x8 blocks (n * ceil(h/8) * ceil(w/8), WG_FWD per group), y over pairs of
// output-channel blocks.
@compute @workgroup_size(16)
fn conv3x3_v4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = wg.x * WG_FWD + lid.x;
    if t >= p.n * ((p.h + 7u) / 8u) * ((p.w + 7u) / 8u) { return; }
    let tl = tile3(t);
    let cb0 = 2u * wg.y;
    let cb1 = min(cb0 + 1u, p.cout4 - 1u);
    let tstep = p.cin4 * 4u * p.cout4;
    var acc = acc3_init(cb0);
    for (var c = 0u; c < p.cin4; c++) {
        acc = taps3(acc, win_v4(tl, c), c * 4u * p.cout4, tstep, cb0, cb1);
    }
    store_blk3(tl, cb0, acc.a);
    store_blk3(tl, cb0 + 1u, acc.b);
}

@compute @workgroup_size(16)
fn conv3x3_s(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = wg.x * WG_FWD + lid.x;
    if t >= p.n * ((p.h + 7u) / 8u) * ((p.w + 7u) / 8u) { return; }
    let tl = tile3(t);
    let cb0 = 2u * wg.y;
    let cb1 = min(cb0 + 1u, p.cout4 - 1u);
    let tstep = p.cin4 * 4u * p.cout4;
    var acc = acc3_init(cb0);
    for (var c = 0u; c < p.cin4; c++) {
        acc = taps3(acc, win_s(tl, c), c * 4u * p.cout4, tstep, cb0, cb1);
    }
    store_blk3(tl, cb0, acc.a);
    store_blk3(tl, cb0 + 1u, acc.b);
}

// conv3x3w_v4: the same with 16 output channels (4 blocks) per invocation, for CPU adapters:
// each loaded input window feeds twice the multiply-adds. Grid y over groups of 4 blocks;
// blocks past cout4 read the last block's weights and are not stored.
@compute @workgroup_size(16)
fn conv3x3w_v4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = wg.x * WG_FWD + lid.x;
    if t >= p.n * ((p.h + 7u) / 8u) * ((p.w + 7u) / 8u) { return; }
    let tl = tile3(t);
    let last = p.cout4 - 1u;
    let cb0 = 4u * wg.y;
    let cb1 = min(cb0 + 1u, last);
    let cb2 = min(cb0 + 2u, last);
    let cb3 = min(cb0 + 3u, last);
    let tstep = p.cin4 * 4u * p.cout4;
    var acc = acc3_init(cb0);
    var acc2 = acc3_init(cb0 + 2u);
    for (var c = 0u; c < p.cin4; c++) {
        let x = win_v4(tl, c);
        acc = taps3(acc, x, c * 4u * p.cout4, tstep, cb0, cb1);
        acc2 = taps3(acc2, x, c * 4u * p.cout4, tstep, cb2, cb3);
    }
    store_blk3(tl, cb0, acc.a);
    store_blk3(tl, cb0 + 1u, acc.b);
    store_blk3(tl, cb0 + 2u, acc2.a);
    store_blk3(tl, cb0 + 3u, acc2.b);
}

// ---------------------------------------------------------------------------------------
// conv3x3_t: for CPU adapters. A lane computes 8 pixels of one output row x 8 output
// channels, reading x and the weight as textures. On lavapipe (Mesa 22.3) a texture load
// costs a fraction of a storage load, so a small tile is as fast as the 8x8-pixel ones
// above and compiles in well under a second instead of 30-170 s (docs/PERFORMANCE.md).

fn x_tex_at(q: i32, ok: bool, c: u32) -> vec4<f32> {
    let i = u32(q) * p.cin4 + c;
    let v = textureLoad(x_tex, vec2<u32>(i % 4096u, i / 4096u));
    return select(vec4<f32>(0.0), relu_in(v), ok);
}

fn wt_tex_at(i: u32) -> W4 {
    let s = p.cout4;
    return W4(textureLoad(wt_tex, vec2<u32>(i % 4096u, i / 4096u)),
        textureLoad(wt_tex, vec2<u32>((i + s) % 4096u, (i + s) / 4096u)),
        textureLoad(wt_tex, vec2<u32>((i + 2u * s) % 4096u, (i + 2u * s) / 4096u)),
        textureLoad(wt_tex, vec2<u32>((i + 3u * s) % 4096u, (i + 3u * s) / 4096u)));
}

// Input row `rb` (first pixel index of the clamped image row; `rok` false: padding),
// columns ow0 - 1 .. ow0 + 8, channels 4c..4c+3.
fn row10_t(rb: i32, rok: bool, ow0: i32, c: u32) -> Row10 {
    let w = i32(p.w);
    let s = up_shift();
    return Row10(x_tex_at(rb + (clamp(ow0 - 1, 0, w - 1) >> s), rok && ow0 >= 1, c),
        x_tex_at(rb + (clamp(ow0, 0, w - 1) >> s), rok && ow0 < w, c),
        x_tex_at(rb + (clamp(ow0 + 1, 0, w - 1) >> s), rok && ow0 + 1 < w, c),
        x_tex_at(rb + (clamp(ow0 + 2, 0, w - 1) >> s), rok && ow0 + 2 < w, c),
        x_tex_at(rb + (clamp(ow0 + 3, 0, w - 1) >> s), rok && ow0 + 3 < w, c),
        x_tex_at(rb + (clamp(ow0 + 4, 0, w - 1) >> s), rok && ow0 + 4 < w, c),
        x_tex_at(rb + (clamp(ow0 + 5, 0, w - 1) >> s), rok && ow0 + 5 < w, c),
        x_tex_at(rb + (clamp(ow0 + 6, 0, w - 1) >> s), rok && ow0 + 6 < w, c),
        x_tex_at(rb + (clamp(ow0 + 7, 0, w - 1) >> s), rok && ow0 + 7 < w, c),
        x_tex_at(rb + (clamp(ow0 + 8, 0, w - 1) >> s), rok && ow0 + 8 < w, c));
}

// The input row that kernel row ky of output row oh (image img) reads: columns ow0 - 1 ..
// ow0 + 8, channels 4c..4c+3, zero outside the image. `rb` is the stored row's first pixel.
fn in_row_t(img: u32, oh: u32, ky: u32, ow0: u32, c: u32) -> Row10 {
    let s = up_shift();
    let ih = i32(oh + ky) - 1;
    let rok = ih >= 0 && ih < i32(p.h);
    let rb = (i32(img * (p.h >> s)) + (clamp(ih, 0, i32(p.h) - 1) >> s)) * i32(p.w >> s);
    return row10_t(rb, rok, i32(ow0), c);
}

// Output pixels ow0..ow0+7 of the row starting at pixel index q0 (those inside the image).
fn store_row_t(q0: u32, ow0: u32, cb: u32, a: Row8) {
    let w = p.w;
    store4(q0 + ow0, ow0 < w, cb, a.v0);
    store4(q0 + ow0 + 1u, ow0 + 1u < w, cb, a.v1);
    store4(q0 + ow0 + 2u, ow0 + 2u < w, cb, a.v2);
    store4(q0 + ow0 + 3u, ow0 + 3u < w, cb, a.v3);
    store4(q0 + ow0 + 4u, ow0 + 4u < w, cb, a.v4);
    store4(q0 + ow0 + 5u, ow0 + 5u < w, cb, a.v5);
    store4(q0 + ow0 + 6u, ow0 + 6u < w, cb, a.v6);
    store4(q0 + ow0 + 7u, ow0 + 7u < w, cb, a.v7);
}

// store_row_t into out4 (cout a multiple of 4).
fn store_row_v(q0: u32, ow0: u32, cb: u32, a: Row8) {
    let w = p.w;
    store4_v(q0 + ow0, ow0 < w, cb, a.v0);
    store4_v(q0 + ow0 + 1u, ow0 + 1u < w, cb, a.v1);
    store4_v(q0 + ow0 + 2u, ow0 + 2u < w, cb, a.v2);
    store4_v(q0 + ow0 + 3u, ow0 + 3u < w, cb, a.v3);
    store4_v(q0 + ow0 + 4u, ow0 + 4u < w, cb, a.v4);
    store4_v(q0 + ow0 + 5u, ow0 + 5u < w, cb, a.v5);
    store4_v(q0 + ow0 + 6u, ow0 + 6u < w, cb, a.v6);
    store4_v(q0 + ow0 + 7u, ow0 + 7u < w, cb, a.v7);
}

// Grid: x over (image, row, 8-pixel segment) lanes in groups of WG_FWD, y over pairs of
// output blocks. Needs cin a multiple of 4.
@compute @workgroup_size(16)
fn conv3x3_t(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let segs = (p.w + 7u) / 8u;
    let t = wg.x * WG_FWD + lid.x;
    if t >= p.n * p.h * segs { return; }
    let ow0 = (t % segs) * 8u;
    let row = t / segs;
    let oh = row % p.h;
    let img = row / p.h;
    let cb0 = 2u * wg.y;
    let cb1 = min(cb0 + 1u, p.cout4 - 1u);
    let tstep = p.cin4 * 4u * p.cout4;
    var a = row_fill(bias4(cb0));
    var b = row_fill(bias4(cb0 + 1u));
    for (var c = 0u; c < p.cin4; c++) {
        for (var ky = 0u; ky < 3u; ky++) {
            let x = in_row_t(img, oh, ky, ow0, c);
            let wi = ky * 3u * tstep + c * 4u * p.cout4;
            a = mac_row(a, cols0(x), wt_tex_at(wi + cb0));
            b = mac_row(b, cols0(x), wt_tex_at(wi + cb1));
            a = mac_row(a, cols1(x), wt_tex_at(wi + tstep + cb0));
            b = mac_row(b, cols1(x), wt_tex_at(wi + tstep + cb1));
            a = mac_row(a, cols2(x), wt_tex_at(wi + 2u * tstep + cb0));
            b = mac_row(b, cols2(x), wt_tex_at(wi + 2u * tstep + cb1));
        }
    }
    let q0 = row * p.w;
    store_row_t(q0, ow0, cb0, a);
    store_row_t(q0, ow0, cb0 + 1u, b);
}

// conv1x1_t: for CPU adapters, 1x1 kernels: a lane computes 8 consecutive pixels x 8 output
// channels, reading x and the weight as textures. Grid: x over lanes (WG_FWD per workgroup),
// y over pairs of output blocks.

// Pixels q..q+7 (zero past the last pixel), channels 4c..4c+3.
fn row8_t(q: u32, c: u32) -> Row8 {
    let l = i32(p.m) - 1;
    let i = i32(q);
    return Row8(x_tex_at(min(i, l), q < p.m, c), x_tex_at(min(i + 1, l), q + 1u < p.m, c),
        x_tex_at(min(i + 2, l), q + 2u < p.m, c), x_tex_at(min(i + 3, l), q + 3u < p.m, c),
        x_tex_at(min(i + 4, l), q + 4u < p.m, c), x_tex_at(min(i + 5, l), q + 5u < p.m, c),
        x_tex_at(min(i + 6, l), q + 6u < p.m, c), x_tex_at(min(i + 7, l), q + 7u < p.m, c));
}

// Output pixels q..q+7 (those before the last pixel).
fn store_px_t(q: u32, cb: u32, a: Row8) {
    store4(q, q < p.m, cb, a.v0);
    store4(q + 1u, q + 1u < p.m, cb, a.v1);
    store4(q + 2u, q + 2u < p.m, cb, a.v2);
    store4(q + 3u, q + 3u < p.m, cb, a.v3);
    store4(q + 4u, q + 4u < p.m, cb, a.v4);
    store4(q + 5u, q + 5u < p.m, cb, a.v5);
    store4(q + 6u, q + 6u < p.m, cb, a.v6);
    store4(q + 7u, q + 7u < p.m, cb, a.v7);
}

@compute @workgroup_size(16)
fn conv1x1_t(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = wg.x * WG_FWD + lid.x;
    if t >= (p.m + 7u) / 8u { return; }
    let q0 = t * 8u;
    let cb0 = 2u * wg.y;
    let cb1 = min(cb0 + 1u, p.cout4 - 1u);
    var a = row_fill(bias4(cb0));
    var b = row_fill(bias4(cb0 + 1u));
    for (var c = 0u; c < p.cin4; c++) {
        let x = row8_t(q0, c);
        a = mac_row(a, x, wt_tex_at(c * 4u * p.cout4 + cb0));
        b = mac_row(b, x, wt_tex_at(c * 4u * p.cout4 + cb1));
    }
    store_px_t(q0, cb0, a);
    store_px_t(q0, cb0 + 1u, b);
}

// ---------------------------------------------------------------------------------------
// conv_gemm_*: any k, 32 consecutive pixels x 16 output channels per invocation.

// 32 pixels, 4 channels each.
struct Px32 {
    g0: Row8,
    g1: Row8,
    g2: Row8,
    g3: Row8,
}

// Four output-channel blocks of 32 pixels.
struct AccG {
    c0: Px32,
    c1: Px32,
    c2: Px32,
    c3: Px32,
}

// Source pixel of each of the invocation's 32 pixels for the current tap.
var<private> src: array<u32, 32>;
var<private> src_ok: array<bool, 32>;

fn mac_px(a: Px32, x: Px32, w: W4) -> Px32 {
    return Px32(mac_row(a.g0, x.g0, w), mac_row(a.g1, x.g1, w), mac_row(a.g2, x.g2, w), mac_row(a.g3, x.g3, w));
}

fn grp_v4(g: u32, c: u32) -> Row8 {
    let j = 8u * g;
    return Row8(x_v4(src[j], src_ok[j], c), x_v4(src[j + 1u], src_ok[j + 1u], c),
        x_v4(src[j + 2u], src_ok[j + 2u], c), x_v4(src[j + 3u], src_ok[j + 3u], c),
        x_v4(src[j + 4u], src_ok[j + 4u], c), x_v4(src[j + 5u], src_ok[j + 5u], c),
        x_v4(src[j + 6u], src_ok[j + 6u], c), x_v4(src[j + 7u], src_ok[j + 7u], c));
}

fn grp_s(g: u32, c: u32) -> Row8 {
    let j = 8u * g;
    return Row8(x_s(src[j], src_ok[j], c), x_s(src[j + 1u], src_ok[j + 1u], c),
        x_s(src[j + 2u], src_ok[j + 2u], c), x_s(src[j + 3u], src_ok[j + 3u], c),
        x_s(src[j + 4u], src_ok[j + 4u], c), x_s(src[j + 5u], src_ok[j + 5u], c),
        x_s(src[j + 6u], src_ok[j + 6u], c), x_s(src[j + 7u], src_ok[j + 7u], c));
}

// wi: vec4 index of the weight row (tap, 4c); blocks past cout4 reuse the last one (their
// results are not stored).
fn gemm_step(a: AccG, x: Px32, wi: u32, cb0: u32) -> AccG {
    let last = p.cout4 - 1u;
    return AccG(mac_px(a.c0, x, load_w(wi + cb0)), mac_px(a.c1, x, load_w(wi + min(cb0 + 1u, last))),
        mac_px(a.c2, x, load_w(wi + min(cb0 + 2u, last))), mac_px(a.c3, x, load_w(wi + min(cb0 + 3u, last))));
}

// Fill src/src_ok for pixels q0..q0+31 and tap (ky, kx).
fn gemm_sources(q0: u32, ky: u32, kx: u32) {
    let pad = i32(p.k / 2u);
    let dy = i32(ky) - pad;
    let dx = i32(kx) - pad;
    let s = up_shift();
    let hw = p.h * p.w;
    for (var j = 0u; j < 32u; j++) {
        let q = q0 + j;
        let r = q % hw;
        let ih = i32(r / p.w) + dy;
        let iw = i32(r % p.w) + dx;
        src_ok[j] = q < p.m && ih >= 0 && ih < i32(p.h) && iw >= 0 && iw < i32(p.w);
        // The stored pixel (image, ih >> s, iw >> s); q + dy * w + dx without upsampling.
        src[j] = u32((i32((q / hw) * (p.h >> s)) + (ih >> s)) * i32(p.w >> s) + (iw >> s));
    }
}

fn px_fill(v: vec4<f32>) -> Px32 {
    let r = row_fill(v);
    return Px32(r, r, r, r);
}

fn gemm_init(cb0: u32) -> AccG {
    return AccG(px_fill(bias4(cb0)), px_fill(bias4(cb0 + 1u)), px_fill(bias4(cb0 + 2u)), px_fill(bias4(cb0 + 3u)));
}

fn store_row8(q: u32, cb: u32, a: Row8) {
    store4(q, q < p.m, cb, a.v0);
    store4(q + 1u, q + 1u < p.m, cb, a.v1);
    store4(q + 2u, q + 2u < p.m, cb, a.v2);
    store4(q + 3u, q + 3u < p.m, cb, a.v3);
    store4(q + 4u, q + 4u < p.m, cb, a.v4);
    store4(q + 5u, q + 5u < p.m, cb, a.v5);
    store4(q + 6u, q + 6u < p.m, cb, a.v6);
    store4(q + 7u, q + 7u < p.m, cb, a.v7);
}

fn store_px(q0: u32, cb: u32, a: Px32) {
    store_row8(q0, cb, a.g0);
    store_row8(q0 + 8u, cb, a.g1);
    store_row8(q0 + 16u, cb, a.g2);
    store_row8(q0 + 24u, cb, a.g3);
}

fn store_gemm(q0: u32, cb0: u32, a: AccG) {
    store_px(q0, cb0, a.c0);
    store_px(q0, cb0 + 1u, a.c1);
    store_px(q0, cb0 + 2u, a.c2);
    store_px(q0, cb0 + 3u, a.c3);
}

// Grid: x over groups of 32 pixels (WG_FWD per workgroup), y over groups of 4 output blocks.
@compute @workgroup_size(16)
fn conv_gemm_v4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q0 = (wg.x * WG_FWD + lid.x) * 32u;
    if q0 >= p.m { return; }
    let cb0 = 4u * wg.y;
    var acc = gemm_init(cb0);
    for (var ky = 0u; ky < p.k; ky++) {
        for (var kx = 0u; kx < p.k; kx++) {
            gemm_sources(q0, ky, kx);
            var wi = (ky * p.k + kx) * p.cin4 * 4u * p.cout4;
            for (var c = 0u; c < p.cin4; c++) {
                acc = gemm_step(acc, Px32(grp_v4(0u, c), grp_v4(1u, c), grp_v4(2u, c), grp_v4(3u, c)), wi, cb0);
                wi += 4u * p.cout4;
            }
        }
    }
    store_gemm(q0, cb0, acc);
}

@compute @workgroup_size(16)
fn conv_gemm_s(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let q0 = (wg.x * WG_FWD + lid.x) * 32u;
    if q0 >= p.m { return; }
    let cb0 = 4u * wg.y;
    var acc = gemm_init(cb0);
    for (var ky = 0u; ky < p.k; ky++) {
        for (var kx = 0u; kx < p.k; kx++) {
            gemm_sources(q0, ky, kx);
            var wi = (ky * p.k + kx) * p.cin4 * 4u * p.cout4;
            for (var c = 0u; c < p.cin4; c++) {
                acc = gemm_step(acc, Px32(grp_s(0u, c), grp_s(1u, c), grp_s(2u, c), grp_s(3u, c)), wi, cb0);
                wi += 4u * p.cout4;
            }
        }
    }
    store_gemm(q0, cb0, acc);
}

// ---------------------------------------------------------------------------------------
// Weight gradient building blocks. An invocation accumulates outer products of 4 input
// channels (a vec4 of x) with 8 output channels (2 vec4 of dy). With 16 output channels per
// invocation the sums were the same, but lavapipe took 4x as long to compile the kernels
// (docs/PERFORMANCE.md, session 11).

struct D2 {
    d0: vec4<f32>,
    d1: vec4<f32>,
}

// e<i>.d<j>: input channel i, output channels 4j..4j+3 of the invocation's pair of blocks.
struct M8 {
    e0: D2,
    e1: D2,
    e2: D2,
    e3: D2,
}

fn outer2(a: D2, s: f32, d: D2) -> D2 {
    let v = vec4<f32>(s);
    return D2(fma(v, d.d0, a.d0), fma(v, d.d1, a.d1));
}

fn outer(a: M8, v: vec4<f32>, d: D2) -> M8 {
    return M8(outer2(a.e0, v.x, d), outer2(a.e1, v.y, d), outer2(a.e2, v.z, d), outer2(a.e3, v.w, d));
}

// dy of pixel q, output blocks cb0, cb0 + 1 (zero past cout).
fn dy_v4(q: u32, cb0: u32) -> D2 {
    let i = q * p.cout4 + cb0;
    var d = D2(dy4[i], vec4<f32>(0.0));
    if cb0 + 1u < p.cout4 { d.d1 = dy4[i + 1u]; }
    return d;
}

fn dy_s4(q: u32, cb: u32) -> vec4<f32> {
    var v = vec4<f32>(0.0);
    if cb < p.cout4 {
        let i = q * p.cout + cb * 4u;
        let n = min(p.cout - cb * 4u, 4u);
        v.x = dys[i];
        if n > 1u { v.y = dys[i + 1u]; }
        if n > 2u { v.z = dys[i + 2u]; }
        if n > 3u { v.w = dys[i + 3u]; }
    }
    return v;
}

fn dy_s(q: u32, cb0: u32) -> D2 {
    return D2(dy_s4(q, cb0), dy_s4(q, cb0 + 1u));
}

// Write rows (tap, 4cib..4cib+3) x output blocks cb0, cb0 + 1 of one chunk's partial sums
// [chunk][tap][ci_pad][cout4] (vec4).
fn store_m8(chunk: u32, tap: u32, cib: u32, cb0: u32, a: M8) {
    let row0 = (chunk * p.k * p.k + tap) * p.cin4 * 4u + cib * 4u;
    let two = cb0 + 1u < p.cout4;
    let e = array<D2, 4>(a.e0, a.e1, a.e2, a.e3);
    for (var j = 0u; j < 4u; j++) {
        let i = (row0 + j) * p.cout4 + cb0;
        part4[i] = e[j].d0;
        if two { part4[i + 1u] = e[j].d1; }
    }
}

fn m8_zero() -> M8 {
    let z = D2(vec4<f32>(0.0), vec4<f32>(0.0));
    return M8(z, z, z, z);
}

// ---------------------------------------------------------------------------------------
// conv_dw3_*: 3x3 weight gradient. Invocation (cib, co pair, chunk) owns input channels
// 4cib..4cib+3, output blocks 2g, 2g + 1 and all 9 taps, over the image rows (n, oh) of its
// chunk. Along a row it keeps the 3x3 input window (t<ky><kx> = input at row oh+ky-1,
// column ow+kx-1) and loads only the next column.

struct Taps {
    t00: M8,
    t01: M8,
    t02: M8,
    t10: M8,
    t11: M8,
    t12: M8,
    t20: M8,
    t21: M8,
    t22: M8,
}

// Three input rows at one column.
struct Col3 {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
}

// The stored rows (first pixels b0..b2) that image rows row - 1 .. row + 1 read (clamped to
// the image; ok0 / ok2 false at its edges), with the load transform's up_shift.
struct RowsT {
    b0: i32,
    b1: i32,
    b2: i32,
    ok0: bool,
    ok2: bool,
}

fn rows_t(row: u32) -> RowsT {
    let s = up_shift();
    let h = i32(p.h);
    let oh = i32(row % p.h);
    let first = i32((row / p.h) * (p.h >> s));
    let ws = i32(p.w >> s);
    return RowsT((first + (max(oh - 1, 0) >> s)) * ws, (first + (oh >> s)) * ws,
        (first + (min(oh + 1, h - 1) >> s)) * ws, oh >= 1, oh + 1 < h);
}

fn col3_v4(rc: RowsT, iw: i32, c: u32) -> Col3 {
    let ok = iw >= 0 && iw < i32(p.w);
    let col = iw >> up_shift();
    return Col3(x_v4(u32(rc.b0 + col), ok && rc.ok0, c), x_v4(u32(rc.b1 + col), ok, c),
        x_v4(u32(rc.b2 + col), ok && rc.ok2, c));
}

fn col3_s(rc: RowsT, iw: i32, c: u32) -> Col3 {
    let ok = iw >= 0 && iw < i32(p.w);
    let col = iw >> up_shift();
    return Col3(x_s(u32(rc.b0 + col), ok && rc.ok0, c), x_s(u32(rc.b1 + col), ok, c),
        x_s(u32(rc.b2 + col), ok && rc.ok2, c));
}

// One output pixel: left/mid/right are input columns ow-1, ow, ow+1; d its dy.
fn dw3_pixel(a: Taps, l: Col3, m: Col3, r: Col3, d: D2) -> Taps {
    return Taps(outer(a.t00, l.r0, d), outer(a.t01, m.r0, d), outer(a.t02, r.r0, d),
        outer(a.t10, l.r1, d), outer(a.t11, m.r1, d), outer(a.t12, r.r1, d),
        outer(a.t20, l.r2, d), outer(a.t21, m.r2, d), outer(a.t22, r.r2, d));
}

fn dw3_store(chunk: u32, cib: u32, cb0: u32, a: Taps) {
    store_m8(chunk, 0u, cib, cb0, a.t00);
    store_m8(chunk, 1u, cib, cb0, a.t01);
    store_m8(chunk, 2u, cib, cb0, a.t02);
    store_m8(chunk, 3u, cib, cb0, a.t10);
    store_m8(chunk, 4u, cib, cb0, a.t11);
    store_m8(chunk, 5u, cib, cb0, a.t12);
    store_m8(chunk, 6u, cib, cb0, a.t20);
    store_m8(chunk, 7u, cib, cb0, a.t21);
    store_m8(chunk, 8u, cib, cb0, a.t22);
}

fn taps_zero() -> Taps {
    let z = m8_zero();
    return Taps(z, z, z, z, z, z, z, z, z);
}

// Grid: x over input blocks (WG_DW per workgroup), y over pairs of output blocks, z over
// chunks of p.chunk rows.
@compute @workgroup_size(8)
fn conv_dw3_v4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let cib = wg.x * WG_DW + lid.x;
    if cib >= p.cin4 { return; }
    let cb0 = 2u * wg.y;
    let chunk = wg.z;
    let row_end = min((chunk + 1u) * p.chunk, p.n * p.h);
    var a = taps_zero();
    for (var row = chunk * p.chunk; row < row_end; row++) {
        let rc = rows_t(row);
        var l = Col3(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
        var m = col3_v4(rc, 0, cib);
        for (var ow = 0; ow < i32(p.w); ow++) {
            let r = col3_v4(rc, ow + 1, cib);
            a = dw3_pixel(a, l, m, r, dy_v4(row * p.w + u32(ow), cb0));
            l = m;
            m = r;
        }
    }
    dw3_store(chunk, cib, cb0, a);
}

@compute @workgroup_size(8)
fn conv_dw3_s(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let cib = wg.x * WG_DW + lid.x;
    if cib >= p.cin4 { return; }
    let cb0 = 2u * wg.y;
    let chunk = wg.z;
    let row_end = min((chunk + 1u) * p.chunk, p.n * p.h);
    var a = taps_zero();
    for (var row = chunk * p.chunk; row < row_end; row++) {
        let rc = rows_t(row);
        var l = Col3(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
        var m = col3_s(rc, 0, cib);
        for (var ow = 0; ow < i32(p.w); ow++) {
            let r = col3_s(rc, ow + 1, cib);
            a = dw3_pixel(a, l, m, r, dy_s(row * p.w + u32(ow), cb0));
            l = m;
            m = r;
        }
    }
    dw3_store(chunk, cib, cb0, a);
}

// ---------------------------------------------------------------------------------------
// conv_dw1_*: 1x1 weight gradient. Invocation (ci group, co pair, chunk) owns input blocks
// 4g'..4g'+3 (16 channels) x output blocks 2g, 2g + 1 over the pixels of its chunk.

struct Dw1 {
    a0: M8,
    a1: M8,
    a2: M8,
    a3: M8,
}

fn dw1_x_v4(q: u32, cib: u32) -> vec4<f32> {
    return x_v4(q, cib < p.cin4, cib);
}

fn dw1_x_s(q: u32, cib: u32) -> vec4<f32> {
    return x_s(q, cib < p.cin4, cib);
}

fn dw1_store(chunk: u32, ci0: u32, cb0: u32, a: Dw1) {
    store_m8(chunk, 0u, ci0, cb0, a.a0);
    if ci0 + 1u < p.cin4 { store_m8(chunk, 0u, ci0 + 1u, cb0, a.a1); }
    if ci0 + 2u < p.cin4 { store_m8(chunk, 0u, ci0 + 2u, cb0, a.a2); }
    if ci0 + 3u < p.cin4 { store_m8(chunk, 0u, ci0 + 3u, cb0, a.a3); }
}

// Grid: x over groups of 4 input blocks (WG_DW per workgroup), y over pairs of output
// blocks, z over chunks of p.chunk pixels.
@compute @workgroup_size(8)
fn conv_dw1_v4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let ci0 = (wg.x * WG_DW + lid.x) * 4u;
    if ci0 >= p.cin4 { return; }
    let cb0 = 2u * wg.y;
    let chunk = wg.z;
    let end = min((chunk + 1u) * p.chunk, p.m);
    let z = m8_zero();
    var a = Dw1(z, z, z, z);
    for (var q = chunk * p.chunk; q < end; q++) {
        let d = dy_v4(q, cb0);
        a.a0 = outer(a.a0, dw1_x_v4(q, ci0), d);
        a.a1 = outer(a.a1, dw1_x_v4(q, ci0 + 1u), d);
        a.a2 = outer(a.a2, dw1_x_v4(q, ci0 + 2u), d);
        a.a3 = outer(a.a3, dw1_x_v4(q, ci0 + 3u), d);
    }
    dw1_store(chunk, ci0, cb0, a);
}

@compute @workgroup_size(8)
fn conv_dw1_s(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let ci0 = (wg.x * WG_DW + lid.x) * 4u;
    if ci0 >= p.cin4 { return; }
    let cb0 = 2u * wg.y;
    let chunk = wg.z;
    let end = min((chunk + 1u) * p.chunk, p.m);
    let z = m8_zero();
    var a = Dw1(z, z, z, z);
    for (var q = chunk * p.chunk; q < end; q++) {
        let d = dy_s(q, cb0);
        a.a0 = outer(a.a0, dw1_x_s(q, ci0), d);
        a.a1 = outer(a.a1, dw1_x_s(q, ci0 + 1u), d);
        a.a2 = outer(a.a2, dw1_x_s(q, ci0 + 2u), d);
        a.a3 = outer(a.a3, dw1_x_s(q, ci0 + 3u), d);
    }
    dw1_store(chunk, ci0, cb0, a);
}

// ---------------------------------------------------------------------------------------
// conv_dw3_t, conv_dw1_t: conv_dw3_v4 and conv_dw1_v4 reading x and dy as textures, for CPU
// adapters (their loads, not their multiply-adds, set the speed of the storage versions on
// lavapipe), with narrower lanes (see each). Their loops repeat those of the storage kernels
// on purpose: one body choosing its loads by a flag would reference both the buffers and the
// textures, and the runtime binds (and copies into textures) every binding an entry point
// references.

fn dy_tex_at(i: u32) -> vec4<f32> {
    return textureLoad(dy_tex, vec2<u32>(i % 4096u, i / 4096u));
}

// Input row `rb` (first stored pixel; `rok` false: padding) at column iw, channels 4c..4c+3.
fn col1_t(rb: i32, rok: bool, iw: i32, c: u32) -> vec4<f32> {
    let ok = rok && iw >= 0 && iw < i32(p.w);
    let col = clamp(iw, 0, i32(p.w) - 1) >> up_shift();
    return x_tex_at(rb + col, ok, c);
}

// dy of pixel q, output blocks cb0, cb0 + 1 (zero past cout).
fn dy_t(q: u32, cb0: u32) -> D2 {
    let i = q * p.cout4 + cb0;
    let z = vec4<f32>(0.0);
    return D2(dy_tex_at(i), select(z, dy_tex_at(i + min(1u, p.cout4 - 1u - cb0)), cb0 + 1u < p.cout4));
}

// The three taps of one kernel row.
struct Taps3 {
    t0: M8,
    t1: M8,
    t2: M8,
}

// conv_dw3_t: a lane owns one kernel row ky (3 taps) of conv_dw3_v4's 9, so that its 96
// sums, not 288, are live in the loop (fewer spills, and a third of the code to compile).
// Grid: x over (input block, kernel row, chunk) triples, input block fastest (so that few
// input channels still fill the SIMD lanes), WG_DW per workgroup; y over pairs of output
// blocks; p.extra = chunks.
@compute @workgroup_size(8)
fn conv_dw3_t(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let lane = wg.x * WG_DW + lid.x;
    if lane >= p.cin4 * 3u * p.extra { return; }
    let cib = lane % p.cin4;
    let ky = (lane / p.cin4) % 3u;
    let chunk = lane / (3u * p.cin4);
    let cb0 = 2u * wg.y;
    let row_end = min((chunk + 1u) * p.chunk, p.n * p.h);
    let z = m8_zero();
    var a = Taps3(z, z, z);
    var bs = D2(vec4<f32>(0.0), vec4<f32>(0.0));
    for (var row = chunk * p.chunk; row < row_end; row++) {
        let rc = rows_t(row);
        let rb = select(select(rc.b2, rc.b1, ky == 1u), rc.b0, ky == 0u);
        let rok = select(select(rc.ok2, true, ky == 1u), rc.ok0, ky == 0u);
        var l = vec4<f32>(0.0);
        var m = col1_t(rb, rok, 0, cib);
        for (var ow = 0; ow < i32(p.w); ow++) {
            let r = col1_t(rb, rok, ow + 1, cib);
            let d = dy_t(row * p.w + u32(ow), cb0);
            a = Taps3(outer(a.t0, l, d), outer(a.t1, m, d), outer(a.t2, r, d));
            bs = D2(bs.d0 + d.d0, bs.d1 + d.d1);
            l = m;
            m = r;
        }
    }
    store_m8(chunk, 3u * ky, cib, cb0, a.t0);
    store_m8(chunk, 3u * ky + 1u, cib, cb0, a.t1);
    store_m8(chunk, 3u * ky + 2u, cib, cb0, a.t2);
    if cib == 0u && ky == 0u { store_db2(chunk, cb0, bs); }
}

// With flags bit 0, the `_t` weight-gradient kernels also sum dy for the bias gradient (the
// lanes of input block 0): chunk `chunk`'s partial for output blocks cb0, cb0 + 1 goes after
// every chunk's weight partials, at part4[(chunks * k*k * cin4*4 + chunk) * cout4 + cb].
fn store_db2(chunk: u32, cb0: u32, b: D2) {
    if (p.flags & 1u) == 0u { return; }
    let i = (p.extra * p.k * p.k * p.cin4 * 4u + chunk) * p.cout4 + cb0;
    part4[i] = b.d0;
    if cb0 + 1u < p.cout4 { part4[i + 1u] = b.d1; }
}

// A lane owns 8 input x 8 output channels (64 sums: conv_dw1_v4's 256 spill, and take long
// to compile). Grid: x over (pair of input blocks, chunk) pairs as conv_dw3_t's, y over
// pairs of output blocks.
@compute @workgroup_size(8)
fn conv_dw1_t(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let lane = wg.x * WG_DW + lid.x;
    let pairs = (p.cin4 + 1u) / 2u;
    if lane >= pairs * p.extra { return; }
    let ci0 = (lane % pairs) * 2u;
    let chunk = lane / pairs;
    let cb0 = 2u * wg.y;
    let end = min((chunk + 1u) * p.chunk, p.m);
    var a0 = m8_zero();
    var a1 = a0;
    var bs = D2(vec4<f32>(0.0), vec4<f32>(0.0));
    let ci1 = min(ci0 + 1u, p.cin4 - 1u);
    for (var q = chunk * p.chunk; q < end; q++) {
        let d = dy_t(q, cb0);
        a0 = outer(a0, x_tex_at(i32(q), true, ci0), d);
        a1 = outer(a1, x_tex_at(i32(q), true, ci1), d);
        bs = D2(bs.d0 + d.d0, bs.d1 + d.d1);
    }
    store_m8(chunk, 0u, ci0, cb0, a0);
    if ci0 + 1u < p.cin4 { store_m8(chunk, 0u, ci0 + 1u, cb0, a1); }
    if ci0 == 0u { store_db2(chunk, cb0, bs); }
}

// ---------------------------------------------------------------------------------------
// Bias gradient partials (adapters without the CPU kernels, whose weight-gradient kernels
// sum dy themselves): invocation (co block, chunk) sums dy over the chunk's pixels into
// part4[chunk * cout4 + co block].

@compute @workgroup_size(64)
fn conv_db_v4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let cb = gid.x;
    let chunk = gid.y;
    if cb >= p.cout4 { return; }
    let end = min((chunk + 1u) * p.chunk, p.m);
    var a = vec4<f32>(0.0);
    for (var q = chunk * p.chunk; q < end; q++) {
        a += dy4[q * p.cout4 + cb];
    }
    part4[chunk * p.cout4 + cb] = a;
}

@compute @workgroup_size(64)
fn conv_db_s(@builtin(global_invocation_id) gid: vec3<u32>) {
    let cb = gid.x;
    let chunk = gid.y;
    if cb >= p.cout4 { return; }
    let end = min((chunk + 1u) * p.chunk, p.m);
    var a = vec4<f32>(0.0);
    for (var q = chunk * p.chunk; q < end; q++) {
        a += dy_s4(q, cb);
    }
    part4[chunk * p.cout4 + cb] = a;
}

// ---------------------------------------------------------------------------------------
// Sum of the partials in chunk order, written in PyTorch's layout:
// out[(co * cin + ci) * taps + tap] = sum_c parts[c * chunk + n + (tap * cin4 + ci) * cout4 + co]
// (cin4 and cout4 here are the padded strides themselves; n an offset into each partial).
@compute @workgroup_size(256)
fn conv_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.m { return; }
    let taps = p.k;
    let tap = i % taps;
    let ci = (i / taps) % p.cin;
    let co = i / (taps * p.cin);
    let src_i = p.n + (tap * p.cin4 + ci) * p.cout4 + co;
    var s = 0.0;
    for (var c = 0u; c < p.extra; c++) {
        s += parts[c * p.chunk + src_i];
    }
    out[i] = s;
}
