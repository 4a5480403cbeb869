// conv3x3_sg: conv3x3_t with the weights shared through subgroup shuffles. Not a WGSL file
// of its own: the runtime appends it to conv.wgsl (shader "conv_sg", built only on devices
// with subgroups of at least 8 invocations).
//
// A lane computes 8 pixels of one output row x 16 output channels (4 blocks). All lanes of a
// workgroup share the output channels, so they need the same 48 weight vec4s per (4 input
// channels, kernel row): lane l of each group of 8 loads vec4s l, 8 + l, .., 40 + l and the
// others take them with subgroupShuffle. The weight loads were 24 of conv3x3_t's 34 fetches
// per step; docs/PERFORMANCE.md compares the two kernels.

// Weight vec4 f = 8m + l (m = 0..5, l = lane % 8) of the 48 a kernel row needs: f = 16 kx +
// 4 j + q for tap kx, input channel j of the 4, output block cb0 + q.
struct WRow {
    m0: vec4<f32>,
    m1: vec4<f32>,
    m2: vec4<f32>,
    m3: vec4<f32>,
    m4: vec4<f32>,
    m5: vec4<f32>,
}

fn w_part(wi: u32, tstep: u32, cb0: u32, m: u32, l: u32) -> vec4<f32> {
    let f = 8u * m + l;
    let kx = f / 16u;
    let j = (f / 4u) % 4u;
    let q = f % 4u;
    let i = wi + kx * tstep + j * p.cout4 + min(cb0 + q, p.cout4 - 1u);
    return textureLoad(wt_tex, vec2<u32>(i % 4096u, i / 4096u));
}

fn w_row(wi: u32, tstep: u32, cb0: u32, l: u32) -> WRow {
    return WRow(w_part(wi, tstep, cb0, 0u, l), w_part(wi, tstep, cb0, 1u, l), w_part(wi, tstep, cb0, 2u, l),
        w_part(wi, tstep, cb0, 3u, l), w_part(wi, tstep, cb0, 4u, l), w_part(wi, tstep, cb0, 5u, l));
}

// The weight block of tap kx (its two loads lo, hi) for output block cb0 + q: input channel j
// is f = 16 kx + 4 j + q, held by lane f % 8 in load f / 8.
fn w_block(lo: vec4<f32>, hi: vec4<f32>, q: u32) -> W4 {
    return W4(subgroupShuffle(lo, q), subgroupShuffle(lo, 4u + q), subgroupShuffle(hi, q),
        subgroupShuffle(hi, 4u + q));
}

struct Acc4 {
    a: Row8,
    b: Row8,
    c: Row8,
    d: Row8,
}

fn tap_sg(acc: Acc4, x: Row8, lo: vec4<f32>, hi: vec4<f32>) -> Acc4 {
    return Acc4(mac_row(acc.a, x, w_block(lo, hi, 0u)), mac_row(acc.b, x, w_block(lo, hi, 1u)),
        mac_row(acc.c, x, w_block(lo, hi, 2u)), mac_row(acc.d, x, w_block(lo, hi, 3u)));
}

// Grid: x over (image, row, 8-pixel segment) lanes in groups of WG_FWD, y over groups of 4
// output blocks. Lanes past the end compute a clamped copy and store nothing (they must
// stay for the shuffles).
// A lane's 8-pixel row segment. Lanes past the end (live = false) take the last segment's
// place: they compute a copy and store nothing, but stay for the shuffles.
struct Seg {
    live: bool,
    ow0: u32,
    row: u32,
    oh: u32,
    img: u32,
}

fn seg_of(wgx: u32, lidx: u32) -> Seg {
    let segs = (p.w + 7u) / 8u;
    let total = p.n * p.h * segs;
    let t_raw = wgx * WG_FWD + lidx;
    let t = min(t_raw, total - 1u);
    let row = t / segs;
    return Seg(t_raw < total, (t % segs) * 8u, row, row % p.h, row / p.h);
}

// A lane's segment and first output block, and its sums.
struct SgTile {
    sg: Seg,
    cb0: u32,
    acc: Acc4,
}

fn conv3x3_sg_tile(wgx: u32, wgy: u32, lidx: u32, sl: u32) -> SgTile {
    let sg = seg_of(wgx, lidx);
    let cb0 = 4u * wgy;
    let l = sl % 8u;
    let tstep = p.cin4 * 4u * p.cout4;
    var acc = Acc4(row_fill(bias4(cb0)), row_fill(bias4(cb0 + 1u)), row_fill(bias4(cb0 + 2u)),
        row_fill(bias4(cb0 + 3u)));
    for (var c = 0u; c < p.cin4; c++) {
        for (var ky = 0u; ky < 3u; ky++) {
            let x = in_row_t(sg.img, sg.oh, ky, sg.ow0, c);
            let w = w_row(ky * 3u * tstep + c * 4u * p.cout4, tstep, cb0, l);
            acc = tap_sg(acc, cols0(x), w.m0, w.m1);
            acc = tap_sg(acc, cols1(x), w.m2, w.m3);
            acc = tap_sg(acc, cols2(x), w.m4, w.m5);
        }
    }
    return SgTile(sg, cb0, acc);
}

@compute @workgroup_size(16)
fn conv3x3_sg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(subgroup_invocation_id) sl: u32) {
    let t = conv3x3_sg_tile(wg.x, wg.y, lid.x, sl);
    if !t.sg.live { return; }
    let q0 = t.sg.row * p.w;
    store_row_t(q0, t.sg.ow0, t.cb0, t.acc.a);
    store_row_t(q0, t.sg.ow0, t.cb0 + 1u, t.acc.b);
    store_row_t(q0, t.sg.ow0, t.cb0 + 2u, t.acc.c);
    store_row_t(q0, t.sg.ow0, t.cb0 + 3u, t.acc.d);
}

// conv3x3_sg for a multiple of 4 output channels: vector stores into out4.
@compute @workgroup_size(16)
fn conv3x3_sg_v4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(subgroup_invocation_id) sl: u32) {
    let t = conv3x3_sg_tile(wg.x, wg.y, lid.x, sl);
    if !t.sg.live { return; }
    let q0 = t.sg.row * p.w;
    store_row_v(q0, t.sg.ow0, t.cb0, t.acc.a);
    store_row_v(q0, t.sg.ow0, t.cb0 + 1u, t.acc.b);
    store_row_v(q0, t.sg.ow0, t.cb0 + 2u, t.acc.c);
    store_row_v(q0, t.sg.ow0, t.cb0 + 3u, t.acc.d);
}

// conv3x3_sg8: the same for convs with at most 8 output channels (2 blocks per lane, as
// conv3x3_t). The 24 weight vec4s of a (4 input channels, kernel row) step are 3 loads per
// lane instead of conv3x3_t's 24: vec4 f = 8 kx + 2 j + q (input channel j, output block
// cb0 + q) is held by lane f % 8 = 2 j + q in load kx.

fn w8_part(wi: u32, tstep: u32, cb0: u32, kx: u32, l: u32) -> vec4<f32> {
    let i = wi + kx * tstep + (l / 2u) * p.cout4 + min(cb0 + l % 2u, p.cout4 - 1u);
    return textureLoad(wt_tex, vec2<u32>(i % 4096u, i / 4096u));
}

fn w8_block(v: vec4<f32>, q: u32) -> W4 {
    return W4(subgroupShuffle(v, q), subgroupShuffle(v, 2u + q), subgroupShuffle(v, 4u + q),
        subgroupShuffle(v, 6u + q));
}

// The two output blocks of a conv3x3_sg8 lane.
struct Sg8Tile {
    sg: Seg,
    cb0: u32,
    a: Row8,
    b: Row8,
}

fn conv3x3_sg8_tile(wgx: u32, wgy: u32, lidx: u32, sl: u32) -> Sg8Tile {
    let sg = seg_of(wgx, lidx);
    let cb0 = 2u * wgy;
    let l = sl % 8u;
    let tstep = p.cin4 * 4u * p.cout4;
    var a = row_fill(bias4(cb0));
    var b = row_fill(bias4(cb0 + 1u));
    for (var c = 0u; c < p.cin4; c++) {
        for (var ky = 0u; ky < 3u; ky++) {
            let x = in_row_t(sg.img, sg.oh, ky, sg.ow0, c);
            let wi = ky * 3u * tstep + c * 4u * p.cout4;
            let w0 = w8_part(wi, tstep, cb0, 0u, l);
            let w1 = w8_part(wi, tstep, cb0, 1u, l);
            let w2 = w8_part(wi, tstep, cb0, 2u, l);
            a = mac_row(a, cols0(x), w8_block(w0, 0u));
            b = mac_row(b, cols0(x), w8_block(w0, 1u));
            a = mac_row(a, cols1(x), w8_block(w1, 0u));
            b = mac_row(b, cols1(x), w8_block(w1, 1u));
            a = mac_row(a, cols2(x), w8_block(w2, 0u));
            b = mac_row(b, cols2(x), w8_block(w2, 1u));
        }
    }
    return Sg8Tile(sg, cb0, a, b);
}

// Grid as conv3x3_t (y over pairs of output blocks). Lanes past the end compute a clamped
// copy and store nothing (they must stay for the shuffles).
@compute @workgroup_size(16)
fn conv3x3_sg8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(subgroup_invocation_id) sl: u32) {
    let t = conv3x3_sg8_tile(wg.x, wg.y, lid.x, sl);
    if !t.sg.live { return; }
    let q0 = t.sg.row * p.w;
    store_row_t(q0, t.sg.ow0, t.cb0, t.a);
    store_row_t(q0, t.sg.ow0, t.cb0 + 1u, t.b);
}

// conv3x3_sg8 for a multiple of 4 output channels: vector stores into out4.
@compute @workgroup_size(16)
fn conv3x3_sg8_v4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(subgroup_invocation_id) sl: u32) {
    let t = conv3x3_sg8_tile(wg.x, wg.y, lid.x, sl);
    if !t.sg.live { return; }
    let q0 = t.sg.row * p.w;
    store_row_v(q0, t.sg.ow0, t.cb0, t.a);
    store_row_v(q0, t.sg.ow0, t.cb0 + 1u, t.b);
}
