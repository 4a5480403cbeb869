// Winograd F(4x4, 3x3) for 3x3 convs on CPU adapters. Not a WGSL file of its own: the
// runtime appends it to conv.wgsl (shader "conv_winograd").
//
// A 4x4 block of output pixels ("tile") is A^T [(G g G^T) * (B^T d B)] A, with d the 6x6
// input patch around the tile and g a 3x3 kernel (Lavin and Gray, 2016). Summed over input
// channels, the elementwise products become 36 independent GEMMs, so the conv is:
// 1. wino_weight: U[t, ci, co] = (G g[ci, co] G^T)[t], t = 6 a + b (from the repacked weight);
// 2. wino_input: V[t, tile, ci] = (B^T d[tile, ci] B)[t], with the ReLU / upsampling of the
//    conv's load flags and zero padding applied as the patch is loaded;
// 3. a batched GEMM M[t] = V[t] U[t] (ops::gemm, outside this file);
// 4. wino_output: y[tile pixels, co] = (A^T M[., tile, co] A) + bias, cropped to the image.
// V and M may have more rows than tiles (p.extra, zeros past the tiles): the forward pass
// pads them as the weight gradient's chunks need, so that it can reuse V.
// The GEMM does 36 multiply-adds per 16 outputs and channel pair where the direct conv does
// 144; the transforms cost little next to it for the channel counts that take this path.
// Tiles: ceil(h / 4) x ceil(w / 4) per image, in (image, tile row, tile column) order.
// V6 and V4 are in conv.wgsl.

// G (6x3) times a 3-vector of kernel taps.
fn wino_g(g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>) -> V6 {
    let s = (g0 + g2) * (-1.0 / 6.0);
    let t = g1 * (1.0 / 6.0);
    let u = g0 * (1.0 / 24.0) + g2 * (1.0 / 6.0);
    let v = g1 * (1.0 / 12.0);
    return V6(g0 * 0.25, s - t, s + t, u + v, u - v, g2);
}

// B^T (6x6) times a 6-vector of input values.
fn wino_bt(d: V6) -> V6 {
    let a = d.v4 - 4.0 * d.v2;
    let b = d.v3 - 4.0 * d.v1;
    let c = d.v4 - d.v2;
    let e = 2.0 * (d.v3 - d.v1);
    return V6(4.0 * d.v0 - 5.0 * d.v2 + d.v4, a + b, a - b, c + e, c - e,
        4.0 * d.v1 - 5.0 * d.v3 + d.v5);
}

// A^T (4x6) times a 6-vector of products.
fn wino_at(m: V6) -> V4 {
    let a = m.v1 + m.v2;
    let b = m.v1 - m.v2;
    let c = m.v3 + m.v4;
    let e = m.v3 - m.v4;
    return V4(m.v0 + a + c, b + 2.0 * e, a + 4.0 * c, b + 8.0 * e + m.v5);
}

// Lane index of a 1-D grid of 64-lane workgroups (grid_1d splits it over x and y).
fn wino_lane(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

fn wino_tiles() -> vec2<u32> {
    return vec2<u32>((p.h + 3u) / 4u, (p.w + 3u) / 4u);
}

// Repacked weight vec4 i, from its texture copy (fetches compile to less code than storage
// loads on lavapipe).
fn wino_wt(i: u32) -> vec4<f32> {
    return textureLoad(wt_tex, vec2<u32>(i % 4096u, i / 4096u));
}

// U (36 x cin4*4 x cout4*4, vec4 over output channels, in part4) from the repacked weight
// (wt_tex: [9, cin4*4, cout4*4] as vec4 over output channels). A lane per (input channel,
// output block).
@compute @workgroup_size(64)
fn wino_weight(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = wino_lane(gid, nwg);
    let ci_pad = p.cin4 * 4u;
    if i >= ci_pad * p.cout4 { return; }
    let tap = ci_pad * p.cout4;
    // Columns of g (one kernel column kx, 3 rows), then G along the rows: gg[kx] = G g[., kx].
    let c0 = wino_g(wino_wt(i), wino_wt(i + 3u * tap), wino_wt(i + 6u * tap));
    let c1 = wino_g(wino_wt(i + tap), wino_wt(i + 4u * tap), wino_wt(i + 7u * tap));
    let c2 = wino_g(wino_wt(i + 2u * tap), wino_wt(i + 5u * tap), wino_wt(i + 8u * tap));
    // Row a of U: products 6 a .. 6 a + 5, `tap` vec4s apart.
    wino_store_row(i, tap, wino_g(c0.v0, c1.v0, c2.v0));
    wino_store_row(i + 6u * tap, tap, wino_g(c0.v1, c1.v1, c2.v1));
    wino_store_row(i + 12u * tap, tap, wino_g(c0.v2, c1.v2, c2.v2));
    wino_store_row(i + 18u * tap, tap, wino_g(c0.v3, c1.v3, c2.v3));
    wino_store_row(i + 24u * tap, tap, wino_g(c0.v4, c1.v4, c2.v4));
    wino_store_row(i + 30u * tap, tap, wino_g(c0.v5, c1.v5, c2.v5));
}

// Six vec4s `step` apart from part4 index o. (The transforms are written out element by
// element: a loop over a struct's fields through a switch runs 1.7x slower on lavapipe.)
fn wino_store_row(o: u32, step: u32, v: V6) {
    part4[o] = v.v0;
    part4[o + step] = v.v1;
    part4[o + 2u * step] = v.v2;
    part4[o + 3u * step] = v.v3;
    part4[o + 4u * step] = v.v4;
    part4[o + 5u * step] = v.v5;
}

// Input row ih (of the output-sized image, before the upsampling shift) of image img,
// columns 4 tx - 1 .. 4 tx + 4, channels 4c..4c+3, zero outside the image.
fn wino_row(img: u32, ih: i32, tx: u32, c: u32) -> V6 {
    let s = up_shift();
    let w = i32(p.w);
    let rok = ih >= 0 && ih < i32(p.h);
    let rb = (i32(img * (p.h >> s)) + (clamp(ih, 0, i32(p.h) - 1) >> s)) * i32(p.w >> s);
    let c0 = i32(tx) * 4 - 1;
    return V6(x_tex_at(rb + (clamp(c0, 0, w - 1) >> s), rok && c0 >= 0, c),
        x_tex_at(rb + (clamp(c0 + 1, 0, w - 1) >> s), rok && c0 + 1 < w, c),
        x_tex_at(rb + (clamp(c0 + 2, 0, w - 1) >> s), rok && c0 + 2 < w, c),
        x_tex_at(rb + (clamp(c0 + 3, 0, w - 1) >> s), rok && c0 + 3 < w, c),
        x_tex_at(rb + (clamp(c0 + 4, 0, w - 1) >> s), rok && c0 + 4 < w, c),
        x_tex_at(rb + (clamp(c0 + 5, 0, w - 1) >> s), rok && c0 + 5 < w, c));
}

// A lane of the transforms: (tile, channel block) with `blocks` blocks per tile. The tiles
// run to `total` = max(tiles, p.extra) (the weight gradient's padding; `pad` past the
// image's tiles); products are `step` = total * blocks vec4s apart in V, DY and M.
struct WTile {
    lane: u32,
    live: bool,
    pad: bool,
    img: u32,
    ty: u32,
    tx: u32,
    cb: u32,
    tile: u32,
    total: u32,
    step: u32,
}

fn wino_tile(gid: vec3<u32>, nwg: vec3<u32>, blocks: u32) -> WTile {
    let i = wino_lane(gid, nwg);
    let tl = wino_tiles();
    let tiles = p.n * tl.x * tl.y;
    let total = max(tiles, p.extra);
    let tile = i / blocks;
    let live = i < total * blocks;
    let pad = tile >= tiles;
    return WTile(i, live, pad, tile / (tl.x * tl.y), (tile / tl.y) % tl.x, tile % tl.y, i % blocks,
        tile, total, total * blocks);
}

// The 36 products of a padding tile: zeros.
fn wino_zero(t: WTile) {
    for (var k = 0u; k < 36u; k++) {
        part4[k * t.step + t.lane] = vec4<f32>(0.0);
    }
}

// V (36 x tiles x cin4*4, vec4 over input channels, in part4) from x (x_tex, cin4 texels a
// pixel). A lane per (tile, input block).
@compute @workgroup_size(64)
fn wino_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = wino_tile(gid, nwg, p.cin4);
    if !t.live { return; }
    if t.pad {
        wino_zero(t);
        return;
    }
    let i = t.lane;
    let step = t.step;
    let img = t.img;
    let tx = t.tx;
    let c = t.cb;
    let h0 = i32(t.ty) * 4 - 1;
    // B^T along each row, then along the columns.
    let r0 = wino_bt(wino_row(img, h0, tx, c));
    let r1 = wino_bt(wino_row(img, h0 + 1, tx, c));
    let r2 = wino_bt(wino_row(img, h0 + 2, tx, c));
    let r3 = wino_bt(wino_row(img, h0 + 3, tx, c));
    let r4 = wino_bt(wino_row(img, h0 + 4, tx, c));
    let r5 = wino_bt(wino_row(img, h0 + 5, tx, c));
    wino_store_col(i, step, wino_bt(V6(r0.v0, r1.v0, r2.v0, r3.v0, r4.v0, r5.v0)));
    wino_store_col(i + step, step, wino_bt(V6(r0.v1, r1.v1, r2.v1, r3.v1, r4.v1, r5.v1)));
    wino_store_col(i + 2u * step, step, wino_bt(V6(r0.v2, r1.v2, r2.v2, r3.v2, r4.v2, r5.v2)));
    wino_store_col(i + 3u * step, step, wino_bt(V6(r0.v3, r1.v3, r2.v3, r3.v3, r4.v3, r5.v3)));
    wino_store_col(i + 4u * step, step, wino_bt(V6(r0.v4, r1.v4, r2.v4, r3.v4, r4.v4, r5.v4)));
    wino_store_col(i + 5u * step, step, wino_bt(V6(r0.v5, r1.v5, r2.v5, r3.v5, r4.v5, r5.v5)));
}

// Column b of a transformed 6x6 block (products t = 6 a + b, a = 0..5) at part4 index o (the
// a = 0 one; products are `step` vec4s apart).
fn wino_store_col(o: u32, step: u32, v: V6) {
    wino_store_row(o, 6u * step, v);
}

// Six texels of x_tex, s apart from texel i.
fn x_v6(i: u32, s: u32) -> V6 {
    return V6(textureLoad(x_tex, vec2<u32>(i % 4096u, i / 4096u)),
        textureLoad(x_tex, vec2<u32>((i + s) % 4096u, (i + s) / 4096u)),
        textureLoad(x_tex, vec2<u32>((i + 2u * s) % 4096u, (i + 2u * s) / 4096u)),
        textureLoad(x_tex, vec2<u32>((i + 3u * s) % 4096u, (i + 3u * s) / 4096u)),
        textureLoad(x_tex, vec2<u32>((i + 4u * s) % 4096u, (i + 4u * s) / 4096u)),
        textureLoad(x_tex, vec2<u32>((i + 5u * s) % 4096u, (i + 5u * s) / 4096u)));
}

// Row a (6 products) of tile `tile`, output block cb, from M (x_tex: 36 x tiles x cout4
// texels).
fn wino_m_row(a: u32, tile: u32, tiles: u32, cb: u32) -> V6 {
    let s = tiles * p.cout4;
    let i = 6u * a * s + tile * p.cout4 + cb;
    return x_v6(i, s);
}

// A^T along each row of M (rows r<a>), then column j of the 4x4 result plus the bias.
struct WRows {
    r0: V4,
    r1: V4,
    r2: V4,
    r3: V4,
    r4: V4,
    r5: V4,
}

fn wino_out_rows(t: WTile) -> WRows {
    return WRows(wino_at(wino_m_row(0u, t.tile, t.total, t.cb)), wino_at(wino_m_row(1u, t.tile, t.total, t.cb)),
        wino_at(wino_m_row(2u, t.tile, t.total, t.cb)), wino_at(wino_m_row(3u, t.tile, t.total, t.cb)),
        wino_at(wino_m_row(4u, t.tile, t.total, t.cb)), wino_at(wino_m_row(5u, t.tile, t.total, t.cb)));
}

fn wino_out_col(c: V6, bias: vec4<f32>) -> V4 {
    let o = wino_at(c);
    return V4(o.v0 + bias, o.v1 + bias, o.v2 + bias, o.v3 + bias);
}

// Column j of the rows, for wino_out_col.
fn wino_col0(r: WRows) -> V6 {
    return V6(r.r0.v0, r.r1.v0, r.r2.v0, r.r3.v0, r.r4.v0, r.r5.v0);
}

fn wino_col1(r: WRows) -> V6 {
    return V6(r.r0.v1, r.r1.v1, r.r2.v1, r.r3.v1, r.r4.v1, r.r5.v1);
}

fn wino_col2(r: WRows) -> V6 {
    return V6(r.r0.v2, r.r1.v2, r.r2.v2, r.r3.v2, r.r4.v2, r.r5.v2);
}

fn wino_col3(r: WRows) -> V6 {
    return V6(r.r0.v3, r.r1.v3, r.r2.v3, r.r3.v3, r.r4.v3, r.r5.v3);
}

// y [n, h, w, cout] from M, plus the bias (flags bit 0), any cout: y in `out`. A lane per
// (tile, output block).
@compute @workgroup_size(64)
fn wino_output(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = wino_tile(gid, nwg, p.cout4);
    if !t.live || t.pad { return; }
    let r = wino_out_rows(t);
    let bias = bias4(t.cb);
    wino_out_s(t, 0u, wino_out_col(wino_col0(r), bias));
    wino_out_s(t, 1u, wino_out_col(wino_col1(r), bias));
    wino_out_s(t, 2u, wino_out_col(wino_col2(r), bias));
    wino_out_s(t, 3u, wino_out_col(wino_col3(r), bias));
}

// Column j (4 pixels down) of tile t's output, into `out`.
fn wino_out_s(t: WTile, j: u32, o: V4) {
    let oh = t.ty * 4u;
    let ow = t.tx * 4u + j;
    let q = (t.img * p.h + oh) * p.w + ow;
    let ok = ow < p.w;
    store4(q, ok && oh < p.h, t.cb, o.v0);
    store4(q + p.w, ok && oh + 1u < p.h, t.cb, o.v1);
    store4(q + 2u * p.w, ok && oh + 2u < p.h, t.cb, o.v2);
    store4(q + 3u * p.w, ok && oh + 3u < p.h, t.cb, o.v3);
}

// The same for cout a multiple of 4: y in `part4`, one vec4 store per pixel.
@compute @workgroup_size(64)
fn wino_output_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = wino_tile(gid, nwg, p.cout4);
    if !t.live || t.pad { return; }
    let r = wino_out_rows(t);
    let bias = bias4(t.cb);
    wino_out_v4(t, 0u, wino_out_col(wino_col0(r), bias));
    wino_out_v4(t, 1u, wino_out_col(wino_col1(r), bias));
    wino_out_v4(t, 2u, wino_out_col(wino_col2(r), bias));
    wino_out_v4(t, 3u, wino_out_col(wino_col3(r), bias));
}

// Column j of tile t's output, into `part4`.
fn wino_out_v4(t: WTile, j: u32, o: V4) {
    let oh = t.ty * 4u;
    let ow = t.tx * 4u + j;
    if ow >= p.w { return; }
    let q = ((t.img * p.h + oh) * p.w + ow) * p.cout4 + t.cb;
    let s = p.w * p.cout4;
    part4[q] = o.v0;
    if oh + 1u < p.h { part4[q + s] = o.v1; }
    if oh + 2u < p.h { part4[q + 2u * s] = o.v2; }
    if oh + 3u < p.h { part4[q + 3u * s] = o.v3; }
}

// ---------------------------------------------------------------------------------------
// Weight gradient. Per tile, dw = G^T [(B^T d B) * (A dy A^T)] G, with d the 6x6 input patch
// (as wino_input) and dy the tile's 4x4 output gradient: the transposition of the forward
// algorithm. Summed over tiles in the transform domain, that is 36 products V[t]^T DY[t], done
// as a batched GEMM split over chunks of tiles (ops::conv), then wino_dw_out adds the chunks
// in order and applies G^T . G.

// A (6x4) times 4 values.
fn wino_a(v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>) -> V6 {
    let e = v0 + v2;
    let o = v1 + v3;
    let e4 = v0 + 4.0 * v2;
    let o8 = 2.0 * v1 + 8.0 * v3;
    return V6(v0, e + o, e - o, e4 + o8, e4 - o8, v3);
}

fn wino_dy_at(img: u32, oh: u32, ow: u32, cb: u32) -> vec4<f32> {
    let i = ((img * p.h + min(oh, p.h - 1u)) * p.w + min(ow, p.w - 1u)) * p.cout4 + cb;
    let v = textureLoad(x_tex, vec2<u32>(i % 4096u, i / 4096u));
    return select(vec4<f32>(0.0), v, oh < p.h && ow < p.w);
}

fn wino_dy_row(img: u32, oh: u32, tx: u32, cb: u32) -> V6 {
    let w0 = tx * 4u;
    return wino_a(wino_dy_at(img, oh, w0, cb), wino_dy_at(img, oh, w0 + 1u, cb),
        wino_dy_at(img, oh, w0 + 2u, cb), wino_dy_at(img, oh, w0 + 3u, cb));
}

// DY (36 x p.extra tiles x cout4*4, vec4 over output channels, in part4) from dy (x_tex,
// cout4 texels a pixel); tiles past the image's are zeros. A lane per (tile, output block).
@compute @workgroup_size(64)
fn wino_dy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = wino_tile(gid, nwg, p.cout4);
    if !t.live { return; }
    if t.pad {
        wino_zero(t);
        return;
    }
    let i = t.lane;
    let step = t.step;
    let img = t.img;
    let tx = t.tx;
    let ty = t.ty;
    let cb = t.cb;
    // A along each row (4 rows of the tile), then along the columns.
    let r0 = wino_dy_row(img, ty * 4u, tx, cb);
    let r1 = wino_dy_row(img, ty * 4u + 1u, tx, cb);
    let r2 = wino_dy_row(img, ty * 4u + 2u, tx, cb);
    let r3 = wino_dy_row(img, ty * 4u + 3u, tx, cb);
    wino_store_col(i, step, wino_a(r0.v0, r1.v0, r2.v0, r3.v0));
    wino_store_col(i + step, step, wino_a(r0.v1, r1.v1, r2.v1, r3.v1));
    wino_store_col(i + 2u * step, step, wino_a(r0.v2, r1.v2, r2.v2, r3.v2));
    wino_store_col(i + 3u * step, step, wino_a(r0.v3, r1.v3, r2.v3, r3.v3));
    wino_store_col(i + 4u * step, step, wino_a(r0.v4, r1.v4, r2.v4, r3.v4));
    wino_store_col(i + 5u * step, step, wino_a(r0.v5, r1.v5, r2.v5, r3.v5));
}

// G^T (3x6) times 6 values.
fn wino_gt(u: V6) -> V3 {
    let a = (u.v1 + u.v2) * (-1.0 / 6.0);
    let b = (u.v2 - u.v1) * (1.0 / 6.0);
    let c = (u.v3 + u.v4) * (1.0 / 24.0);
    let e = (u.v3 - u.v4) * (1.0 / 12.0);
    return V3(u.v0 * 0.25 + a + c, b + e, a + 4.0 * c + u.v5);
}

struct V3 {
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
}


// Row a (products 6 a .. 6 a + 5) of chunk c's partial sums for input channel ci, output
// block cb (x_tex: [36 * chunks, cin4 * 4, cout4] texels).
fn wino_dw_part(a: u32, c: u32, chunks: u32, ci: u32, cb: u32) -> V6 {
    let s = chunks * p.cin4 * 4u * p.cout4;
    let i = ((6u * a * chunks + c) * p.cin4 * 4u + ci) * p.cout4 + cb;
    return x_v6(i, s);
}

fn v6_add(x: V6, y: V6) -> V6 {
    return V6(x.v0 + y.v0, x.v1 + y.v1, x.v2 + y.v2, x.v3 + y.v3, x.v4 + y.v4, x.v5 + y.v5);
}

// dw in PyTorch's layout [cout, cin, 3, 3] (`out`). A lane per (input channel, output block):
// the p.extra chunks added in order, then G^T . G.
@compute @workgroup_size(64)
fn wino_dw_out(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = wino_lane(gid, nwg);
    if i >= p.cin * p.cout4 { return; }
    let cb = i % p.cout4;
    let ci = i / p.cout4;
    // The chunk count through num_workgroups (never 0 where this runs), so that lavapipe
    // cannot inline it: inlined, the loop was unrolled and each count compiled for seconds.
    let chunks = select(p.extra, 0u, nwg.x == 0u);
    let z = vec4<f32>(0.0);
    var m0 = V6(z, z, z, z, z, z);
    var m1 = m0;
    var m2 = m0;
    var m3 = m0;
    var m4 = m0;
    var m5 = m0;
    for (var c = 0u; c < chunks; c++) {
        m0 = v6_add(m0, wino_dw_part(0u, c, chunks, ci, cb));
        m1 = v6_add(m1, wino_dw_part(1u, c, chunks, ci, cb));
        m2 = v6_add(m2, wino_dw_part(2u, c, chunks, ci, cb));
        m3 = v6_add(m3, wino_dw_part(3u, c, chunks, ci, cb));
        m4 = v6_add(m4, wino_dw_part(4u, c, chunks, ci, cb));
        m5 = v6_add(m5, wino_dw_part(5u, c, chunks, ci, cb));
    }
    // G^T . along each row a (over b), then along the columns.
    let r0 = wino_gt(m0);
    let r1 = wino_gt(m1);
    let r2 = wino_gt(m2);
    let r3 = wino_gt(m3);
    let r4 = wino_gt(m4);
    let r5 = wino_gt(m5);
    wino_dw_store(ci, cb, 0u, wino_gt(V6(r0.v0, r1.v0, r2.v0, r3.v0, r4.v0, r5.v0)));
    wino_dw_store(ci, cb, 1u, wino_gt(V6(r0.v1, r1.v1, r2.v1, r3.v1, r4.v1, r5.v1)));
    wino_dw_store(ci, cb, 2u, wino_gt(V6(r0.v2, r1.v2, r2.v2, r3.v2, r4.v2, r5.v2)));
}

// Kernel column kx (rows ky = 0..2 in g) of output channels 4 cb.. and input channel ci.
fn wino_dw_store(ci: u32, cb: u32, kx: u32, g: V3) {
    for (var j = 0u; j < 4u; j++) {
        let co = cb * 4u + j;
        if co < p.cout {
            let o = (co * p.cin + ci) * 9u + kx;
            out[o] = g.v0[j];
            out[o + 3u] = g.v1[j];
            out[o + 6u] = g.v2[j];
        }
    }
}
