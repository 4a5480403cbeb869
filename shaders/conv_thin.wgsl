// 3x3 convs with one channel on one side, for CPU adapters: D's first conv (1 -> C, the
// image in) and G's last (C -> 1, the image out), with their input and weight gradients. Not a
// WGSL file of its own: the runtime appends it to conv.wgsl (shader "conv_thin").
//
// The other kernels pad the single channel to a vec4 (conv_pad), so 3 of every 4 multiply-adds
// and loads are of zeros. Here the one-channel tensor S (N*H*W floats, W a multiple of 4) is
// read as a texture of 4 pixels per texel (dy_tex) and the C-channel tensor V (C a multiple
// of 4) as a texture of C/4 texels per pixel (x_tex, ReLU on load with flags bit 2). The
// weight comes repacked by conv_repack into K [9, 4, C] (row 0 of each tap used; wt_tex):
// K[t, c] = w[c, 0, t] for Cin = 1, and the flipped w[0, c, 8 - t] for Cout = 1.
// - thin_spread: V[p, c] = bias[c] + sum_t S[p + off(t)] K[t, c]: the forward pass of
//   1 -> C, and the input gradient of C -> 1. A lane: 4 x 4 pixels, every block of 4
//   channels.
// - thin_gather: S[p] = bias + sum_{t, c} V[p + off(t), c] K[8 - t, c]: the forward pass of
//   C -> 1, and the input gradient of 1 -> C. A lane: 4 x 4 pixels, its 6 x 6 window read
//   row by row in a loop (unrolled, the kernel took twice as long to compile, and ran no
//   faster).
// - thin_dw: R[t, c] = sum_p V[p, c] S[p + off(t)] over a chunk of image rows, and the
//   bias sum: for 1 -> C (V = dy, S = x) R is dw[c, 0, t] and the bias sum is sum_p V; for
//   C -> 1 (V = x, S = dy, flags bit 5) dw[0, c, 8 - t] and sum_p S (substituting
//   p -> p + off(t) turns x[p + off(t)] dy[p] into x[p] dy[p - off(t)], and
//   -off(t) = off(8 - t)). A lane: one block of 4 channels, one chunk; partials
//   [chunk, 10, C] (slot 9 the bias sum), added in chunk order by conv_reduce.
// off(t) = (t / 3 - 1, t % 3 - 1); outside the image S and V are zero. (Weights are fetched
// per lane: inside any branch or loop lavapipe loads even a uniform storage index lane by
// lane, which made them the slowest part here.)
// Params: n, h, w, cin = C, -, -, cin4 = C / 4, -, flags (bit 0: bias, bit 2: ReLU on V,
// bit 5: thin_dw for C -> 1), chunk = image rows per chunk (thin_dw), -, extra = chunks
// (thin_dw).

// Six values of one image row: columns 4 tx - 1 .. 4 tx + 4 (one-channel side).
struct T6 {
    s0: f32,
    s1: f32,
    s2: f32,
    s3: f32,
    s4: f32,
    s5: f32,
}

// V6 (conv.wgsl): six blocks of 4 channels of one image row, columns 4 tx - 1 .. 4 tx + 4.
// V4: four pixels of a row, 4 channels each.

// One kernel row (taps 3 ky .. 3 ky + 2), 4 channels each.
struct TW3 {
    w0: vec4<f32>,
    w1: vec4<f32>,
    w2: vec4<f32>,
}

fn thin_lane(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

// The 4 x 4-pixel tile of a thin_spread or thin_gather lane: image n, rows h0 .. h0 + 3,
// texel column tx (pixels 4 tx .. 4 tx + 3); lanes in (image, 4-row block, texel column)
// order.
struct TTile {
    live: bool,
    n: u32,
    h0: u32,
    tx: u32,
}

fn thin_tile(gid: vec3<u32>, nwg: vec3<u32>) -> TTile {
    let i = thin_lane(gid, nwg);
    let w4 = p.w / 4u;
    let hq = (p.h + 3u) / 4u;
    return TTile(i < p.n * hq * w4, i / (w4 * hq), ((i / w4) % hq) * 4u, i % w4);
}

fn thin_k(t: u32, cb: u32) -> vec4<f32> {
    let i = t * 4u * p.cin4 + cb;
    return textureLoad(wt_tex, vec2<u32>(i % 4096u, i / 4096u));
}

// K at kernel row ky (taps 3 ky .. 3 ky + 2), channels 4 cb .. 4 cb + 3; flipped (K[8 - t]):
// taps 8 - 3 ky .. 6 - 3 ky.
fn thin_krow(cb: u32, ky: u32, flip: bool) -> TW3 {
    if flip {
        let t = 8u - 3u * ky;
        return TW3(thin_k(t, cb), thin_k(t - 1u, cb), thin_k(t - 2u, cb));
    }
    let t = 3u * ky;
    return TW3(thin_k(t, cb), thin_k(t + 1u, cb), thin_k(t + 2u, cb));
}

// The one-channel side at image n, row h, columns 4 tx - 1 .. 4 tx + 4 (zero outside).
fn thin_s(n: u32, h: i32, tx: u32) -> T6 {
    let w4 = p.w / 4u;
    let ok = h >= 0 && h < i32(p.h);
    let base = (n * p.h + u32(clamp(h, 0, i32(p.h) - 1))) * w4;
    let c = select(vec4<f32>(0.0), dy_tex_at(base + tx), ok);
    let l = select(0.0, dy_tex_at(base + max(tx, 1u) - 1u).w, ok && tx > 0u);
    let r = select(0.0, dy_tex_at(base + min(tx + 1u, w4 - 1u)).x, ok && tx + 1u < w4);
    return T6(l, c.x, c.y, c.z, c.w, r);
}

// a + one kernel row of thin_spread: pixel j takes s(j), s(j + 1), s(j + 2).
fn spread_row(a: V4, s: T6, w: TW3) -> V4 {
    return V4(fma(vec4<f32>(s.s2), w.w2, fma(vec4<f32>(s.s1), w.w1, fma(vec4<f32>(s.s0), w.w0, a.v0))),
        fma(vec4<f32>(s.s3), w.w2, fma(vec4<f32>(s.s2), w.w1, fma(vec4<f32>(s.s1), w.w0, a.v1))),
        fma(vec4<f32>(s.s4), w.w2, fma(vec4<f32>(s.s3), w.w1, fma(vec4<f32>(s.s2), w.w0, a.v2))),
        fma(vec4<f32>(s.s5), w.w2, fma(vec4<f32>(s.s4), w.w1, fma(vec4<f32>(s.s3), w.w0, a.v3))));
}

fn thin_bias4(cb: u32) -> vec4<f32> {
    if (p.flags & 1u) == 0u {
        return vec4<f32>(0.0);
    }
    let c = cb * 4u;
    return vec4<f32>(aux[c], aux[c + 1u], aux[c + 2u], aux[c + 3u]);
}

// Row h of image n (if inside), 4 pixels from column 4 tx, block cb of V.
fn spread_store(n: u32, h: u32, tx: u32, cb: u32, a: V4) {
    if h >= p.h { return; }
    let q = ((n * p.h + h) * p.w + tx * 4u) * p.cin4 + cb;
    part4[q] = a.v0;
    part4[q + p.cin4] = a.v1;
    part4[q + 2u * p.cin4] = a.v2;
    part4[q + 3u * p.cin4] = a.v3;
}

// One output row of thin_spread from S rows s0, s1, s2.
fn spread_out(b: vec4<f32>, s0: T6, s1: T6, s2: T6, w0: TW3, w1: TW3, w2: TW3) -> V4 {
    return spread_row(spread_row(spread_row(V4(b, b, b, b), s0, w0), s1, w1), s2, w2);
}

// S (dy_tex) -> V (part4, [N, H, W, C]), K in wt_tex. Grid: 1-D over the tiles (thin_tile),
// 64 lanes per workgroup.
@compute @workgroup_size(64)
fn thin_spread(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = thin_tile(gid, nwg);
    if !t.live { return; }
    let n = t.n;
    let tx = t.tx;
    let h0 = t.h0;
    let h = i32(h0);
    let s0 = thin_s(n, h - 1, tx);
    let s1 = thin_s(n, h, tx);
    let s2 = thin_s(n, h + 1, tx);
    let s3 = thin_s(n, h + 2, tx);
    let s4 = thin_s(n, h + 3, tx);
    let s5 = thin_s(n, h + 4, tx);
    for (var cb = 0u; cb < p.cin4; cb++) {
        let b = thin_bias4(cb);
        let w0 = thin_krow(cb, 0u, false);
        let w1 = thin_krow(cb, 1u, false);
        let w2 = thin_krow(cb, 2u, false);
        spread_store(n, h0, tx, cb, spread_out(b, s0, s1, s2, w0, w1, w2));
        spread_store(n, h0 + 1u, tx, cb, spread_out(b, s1, s2, s3, w0, w1, w2));
        spread_store(n, h0 + 2u, tx, cb, spread_out(b, s2, s3, s4, w0, w1, w2));
        spread_store(n, h0 + 3u, tx, cb, spread_out(b, s3, s4, s5, w0, w1, w2));
    }
}

// The C-channel side, block cb, at image n, row h, columns 4 tx - 1 .. 4 tx + 4 (zero
// outside; ReLU with flags bit 2).
fn thin_v(n: u32, h: i32, tx: u32, cb: u32) -> V6 {
    let ok = h >= 0 && h < i32(p.h);
    let rb = i32((n * p.h + u32(clamp(h, 0, i32(p.h) - 1))) * p.w);
    let c0 = i32(tx * 4u);
    let last = i32(p.w) - 1;
    return V6(x_tex_at(rb + max(c0 - 1, 0), ok && c0 > 0, cb), x_tex_at(rb + c0, ok, cb),
        x_tex_at(rb + c0 + 1, ok, cb), x_tex_at(rb + c0 + 2, ok, cb), x_tex_at(rb + c0 + 3, ok, cb),
        x_tex_at(rb + min(c0 + 4, last), ok && c0 + 4 <= last, cb));
}

// a + one kernel row of thin_gather: pixel j takes v(j), v(j + 1), v(j + 2).
fn gather_row(a: V4, v: V6, w: TW3) -> V4 {
    return V4(fma(v.v2, w.w2, fma(v.v1, w.w1, fma(v.v0, w.w0, a.v0))),
        fma(v.v3, w.w2, fma(v.v2, w.w1, fma(v.v1, w.w0, a.v1))),
        fma(v.v4, w.w2, fma(v.v3, w.w1, fma(v.v2, w.w0, a.v2))),
        fma(v.v5, w.w2, fma(v.v4, w.w1, fma(v.v3, w.w0, a.v3))));
}

// Kernel row ky of w0, w1, w2 (zeros for ky outside 0..2).
fn krow_pick(ky: i32, w0: TW3, w1: TW3, w2: TW3) -> TW3 {
    let z = vec4<f32>(0.0);
    let a = ky == 0;
    let b = ky == 1;
    let c = ky == 2;
    return TW3(select(select(select(z, w2.w0, c), w1.w0, b), w0.w0, a),
        select(select(select(z, w2.w1, c), w1.w1, b), w0.w1, a),
        select(select(select(z, w2.w2, c), w1.w2, b), w0.w2, a));
}

// Row h of image n (if inside), the 4 pixels' channel sums plus b.
fn gather_store(n: u32, h: u32, tx: u32, a: V4, b: f32) {
    if h >= p.h { return; }
    let one = vec4<f32>(1.0);
    part4[(n * p.h + h) * (p.w / 4u) + tx] = vec4<f32>(dot(a.v0, one), dot(a.v1, one), dot(a.v2, one),
        dot(a.v3, one)) + vec4<f32>(b);
}

// V (x_tex) -> S (part4, [N, H, W, 1]), K in wt_tex. Grid: 1-D over the tiles (thin_tile),
// 64 lanes per workgroup.
@compute @workgroup_size(64)
fn thin_gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = thin_tile(gid, nwg);
    if !t.live { return; }
    let n = t.n;
    let tx = t.tx;
    let h0 = t.h0;
    let z = vec4<f32>(0.0);
    var a0 = V4(z, z, z, z);
    var a1 = a0;
    var a2 = a0;
    var a3 = a0;
    let h = i32(h0);
    for (var cb = 0u; cb < p.cin4; cb++) {
        let w0 = thin_krow(cb, 0u, true);
        let w1 = thin_krow(cb, 1u, true);
        let w2 = thin_krow(cb, 2u, true);
        // Window row r feeds output row o through kernel row r - o.
        for (var r = 0; r < 6; r++) {
            let v = thin_v(n, h - 1 + r, tx, cb);
            a0 = gather_row(a0, v, krow_pick(r, w0, w1, w2));
            a1 = gather_row(a1, v, krow_pick(r - 1, w0, w1, w2));
            a2 = gather_row(a2, v, krow_pick(r - 2, w0, w1, w2));
            a3 = gather_row(a3, v, krow_pick(r - 3, w0, w1, w2));
        }
    }
    let b = select(0.0, aux[0], (p.flags & 1u) != 0u);
    gather_store(n, h0, tx, a0, b);
    gather_store(n, h0 + 1u, tx, a1, b);
    gather_store(n, h0 + 2u, tx, a2, b);
    gather_store(n, h0 + 3u, tx, a3, b);
}

// a + sum_j v(j) s(j + kx) for kx = 0, 1, 2 (one kernel row of thin_dw).
fn dw_row(a: TW3, v: V4, s: T6) -> TW3 {
    return TW3(fma(v.v3, vec4<f32>(s.s3), fma(v.v2, vec4<f32>(s.s2), fma(v.v1, vec4<f32>(s.s1), fma(v.v0, vec4<f32>(s.s0), a.w0)))),
        fma(v.v3, vec4<f32>(s.s4), fma(v.v2, vec4<f32>(s.s3), fma(v.v1, vec4<f32>(s.s2), fma(v.v0, vec4<f32>(s.s1), a.w1)))),
        fma(v.v3, vec4<f32>(s.s5), fma(v.v2, vec4<f32>(s.s4), fma(v.v1, vec4<f32>(s.s3), fma(v.v0, vec4<f32>(s.s2), a.w2)))));
}

// The one-channel side's texel tx of image row h (zero outside the image or past the row).
fn thin_s_texel(n: u32, h: i32, tx: u32) -> vec4<f32> {
    let w4 = p.w / 4u;
    let ok = h >= 0 && h < i32(p.h) && tx < w4;
    let base = (n * p.h + u32(clamp(h, 0, i32(p.h) - 1))) * w4;
    return select(vec4<f32>(0.0), dy_tex_at(base + min(tx, w4 - 1u)), ok);
}

// Partial slot `slot` (0..9) of lane (chunk, cb).
fn dw_put(chunk: u32, slot: u32, cb: u32, v: vec4<f32>) {
    part4[(chunk * 10u + slot) * p.cin4 + cb] = v;
}

// Grid: 1-D over (chunk, block) pairs, block fastest, 64 lanes per workgroup.
@compute @workgroup_size(64)
fn thin_dw(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = thin_lane(gid, nwg);
    if i >= p.cin4 * p.extra { return; }
    let cb = i % p.cin4;
    let chunk = i / p.cin4;
    let w4 = p.w / 4u;
    let out_b = (p.flags & 32u) != 0u;
    let z = vec4<f32>(0.0);
    var a0 = TW3(z, z, z);
    var a1 = a0;
    var a2 = a0;
    var bsum = z;
    let row_end = min((chunk + 1u) * p.chunk, p.n * p.h);
    for (var row = chunk * p.chunk; row < row_end; row++) {
        let n = row / p.h;
        let h = i32(row % p.h);
        // Per S row: the texel left of the current one (its .w is column 4 tx - 1), the current.
        var l0 = 0.0;
        var l1 = 0.0;
        var l2 = 0.0;
        var c0 = thin_s_texel(n, h - 1, 0u);
        var c1 = thin_s_texel(n, h, 0u);
        var c2 = thin_s_texel(n, h + 1, 0u);
        for (var tx = 0u; tx < w4; tx++) {
            let n0 = thin_s_texel(n, h - 1, tx + 1u);
            let n1 = thin_s_texel(n, h, tx + 1u);
            let n2 = thin_s_texel(n, h + 1, tx + 1u);
            let s0 = T6(l0, c0.x, c0.y, c0.z, c0.w, n0.x);
            let s1 = T6(l1, c1.x, c1.y, c1.z, c1.w, n1.x);
            let s2 = T6(l2, c2.x, c2.y, c2.z, c2.w, n2.x);
            let q = i32(row * p.w + tx * 4u);
            let v = V4(x_tex_at(q, true, cb), x_tex_at(q + 1, true, cb), x_tex_at(q + 2, true, cb),
                x_tex_at(q + 3, true, cb));
            a0 = dw_row(a0, v, s0);
            a1 = dw_row(a1, v, s1);
            a2 = dw_row(a2, v, s2);
            bsum += select(v.v0 + v.v1 + v.v2 + v.v3, vec4<f32>(c1.x + c1.y + c1.z + c1.w), out_b);
            l0 = c0.w;
            l1 = c1.w;
            l2 = c2.w;
            c0 = n0;
            c1 = n1;
            c2 = n2;
        }
    }
    // C -> 1: R[tap] is dw[8 - tap].
    let f = select(0u, 8u, out_b);
    let s = select(1u, 0xffffffffu, out_b);
    dw_put(chunk, f, cb, a0.w0);
    dw_put(chunk, f + s, cb, a0.w1);
    dw_put(chunk, f + 2u * s, cb, a0.w2);
    dw_put(chunk, f + 3u * s, cb, a1.w0);
    dw_put(chunk, f + 4u * s, cb, a1.w1);
    dw_put(chunk, f + 5u * s, cb, a1.w2);
    dw_put(chunk, f + 6u * s, cb, a2.w0);
    dw_put(chunk, f + 7u * s, cb, a2.w1);
    dw_put(chunk, f + 8u * s, cb, a2.w2);
    dw_put(chunk, 9u, cb, bsum);
}
