// sn_forward_sg: the whole spectral-norm forward of spectral_norm.wgsl in one dispatch of one
// subgroup, for CPU adapters with subgroups of 8 or more. Not a WGSL file of its own: the
// runtime appends it to spectral_norm.wgsl (shader "spectral_norm_sg").
//
// On lavapipe each dispatch costs 0.1-0.2 ms and each storage load about 8 ns per lane, while
// a texture load costs about 0.5-1.3 ns: the five kernels of the plain path took about 2 ms for a
// 64 x 576 weight, this one about a tenth of that (docs/PERFORMANCE.md). W is read as a
// texture (element e in component e % 4 of texel e / 4; the runtime copies it); vectors the
// lanes share (u, then v) are loaded 8 at a time, one element per lane, and handed to the
// other lanes with subgroupShuffle.
//
// Where a row of W is whole texels (cols a multiple of 4), the passes work on texels
// (4 columns at a time: entry sn_forward_sg); otherwise on single elements
// (sn_forward_sg_cols).
//
// Passes (8 lanes, so every sum runs in a fixed order):
//   t = W^T u     lane l owns columns l, l + 8, ...; t goes to `t`, |t|^2 by subgroupAdd
//   v = t / max(|t|, eps)
//   s = W v       lane l owns rows l, l + 8, ...; s goes to `s`, |s|^2 by subgroupAdd
//   training: u' = s / max(|s|, eps) into u and u_saved, sigma = u' . s
//   eval:     u_saved = u, sigma = u . s
//   out = W / sigma

// rows, cols and train, set by the entry points through `opaque`. Where parameters decide
// loops or branches, lavapipe (Mesa 22.3) inlines their values at every dispatch whose
// parameters changed and compiles the shader again if that halves it: for
// sn_forward_sg_cols (small, odd-width weights) that was a recompile or a disk-cache load
// at most dispatches, about 10 ms each, and sn_forward_sg compiled once per weight shape on
// a fresh machine (docs/PERFORMANCE.md, session 11). Mixed with num_workgroups (1 here;
// never 0 where a kernel runs), which the driver cannot inline, they stay runtime values
// and each kernel compiles once; the sums do not change.
var<private> dims: vec3<u32>;

fn opaque(nwg: vec3<u32>) -> vec3<u32> {
    return select(vec3<u32>(p.rows, p.cols, p.train), vec3<u32>(0u), nwg.x == 0u);
}

@group(0) @binding(9) var w_tex: texture_storage_2d<rgba32float, read>;
// W_sn as vec4s (the quad path's stores).
@group(0) @binding(10) var<storage, read_write> out4: array<vec4<f32>>;

fn w_texel(k: u32) -> vec4<f32> {
    return textureLoad(w_tex, vec2<u32>(k % 4096u, k / 4096u));
}

// Element e of W.
fn w_at(e: u32) -> f32 {
    return w_texel(e / 4u)[e % 4u];
}

// v = t / max(|t|, eps) from this lane's sum of squares of t (lane l wrote t[c] for its
// columns c = l, l + 8, ... or column quads).
fn finish_v(l: u32, tt: f32, quads: bool) {
    let inv_t = 1.0 / max(sqrt(subgroupAdd(tt)), p.eps);
    if quads {
        for (var q = l; q < dims.y / 4u; q += 8u) {
            for (var j = 0u; j < 4u; j++) {
                v[4u * q + j] = t[4u * q + j] * inv_t;
            }
        }
    } else {
        for (var c = l; c < dims.y; c += 8u) {
            v[c] = t[c] * inv_t;
        }
    }
}

// t = W^T u, a column quad per lane, u 8 rows at a time. Returns this lane's |t|^2.
fn wt_u_quads(l: u32) -> f32 {
    let rows = dims.x;
    let cq = dims.y / 4u;
    var tt = 0.0;
    for (var q0 = 0u; q0 < cq; q0 += 8u) {
        let q = min(q0 + l, cq - 1u);
        var acc = vec4<f32>(0.0);
        for (var r0 = 0u; r0 < rows; r0 += 8u) {
            let ul = u[min(r0 + l, rows - 1u)];
            let n = min(8u, rows - r0);
            for (var k = 0u; k < n; k++) {
                acc = fma(w_texel((r0 + k) * cq + q), vec4<f32>(subgroupShuffle(ul, k)), acc);
            }
        }
        if q0 + l < cq {
            t[4u * q] = acc.x;
            t[4u * q + 1u] = acc.y;
            t[4u * q + 2u] = acc.z;
            t[4u * q + 3u] = acc.w;
            tt += dot(acc, acc);
        }
    }
    return tt;
}

// t = W^T u, a column per lane.
fn wt_u_cols(l: u32) -> f32 {
    let rows = dims.x;
    let cols = dims.y;
    var tt = 0.0;
    for (var c0 = 0u; c0 < cols; c0 += 8u) {
        let c = min(c0 + l, cols - 1u);
        var acc = 0.0;
        for (var r0 = 0u; r0 < rows; r0 += 8u) {
            let ul = u[min(r0 + l, rows - 1u)];
            let n = min(8u, rows - r0);
            for (var k = 0u; k < n; k++) {
                acc = fma(w_at((r0 + k) * cols + c), subgroupShuffle(ul, k), acc);
            }
        }
        if c0 + l < cols {
            t[c] = acc;
            tt = fma(acc, acc, tt);
        }
    }
    return tt;
}

// s[r] = W[r, :] . v for this lane's row r (clamped), v 8 quads at a time.
fn w_v_quads(r: u32, l: u32) -> f32 {
    let cq = dims.y / 4u;
    var acc = vec4<f32>(0.0);
    for (var q0 = 0u; q0 < cq; q0 += 8u) {
        let qi = 4u * min(q0 + l, cq - 1u);
        let vl = vec4<f32>(v[qi], v[qi + 1u], v[qi + 2u], v[qi + 3u]);
        let n = min(8u, cq - q0);
        for (var k = 0u; k < n; k++) {
            acc = fma(w_texel(r * cq + q0 + k), subgroupShuffle(vl, k), acc);
        }
    }
    return (acc.x + acc.y) + (acc.z + acc.w);
}

// s[r] = W[r, :] . v, v 8 elements at a time.
fn w_v_cols(r: u32, l: u32) -> f32 {
    let cols = dims.y;
    var acc = 0.0;
    for (var c0 = 0u; c0 < cols; c0 += 8u) {
        let vl = v[min(c0 + l, cols - 1u)];
        let n = min(8u, cols - c0);
        for (var k = 0u; k < n; k++) {
            acc = fma(w_at(r * cols + c0 + k), subgroupShuffle(vl, k), acc);
        }
    }
    return acc;
}

// Two entry points, so that each compiles one path (NIR folds the constant `quads`): rows of
// whole texels (cols a multiple of 4), and the rest.
@compute @workgroup_size(8)
fn sn_forward_sg(@builtin(subgroup_invocation_id) l: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
    dims = opaque(nwg);
    sn_forward(l, true);
}

@compute @workgroup_size(8)
fn sn_forward_sg_cols(@builtin(subgroup_invocation_id) l: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
    dims = opaque(nwg);
    sn_forward(l, false);
}

fn sn_forward(l: u32, quads: bool) {
    let rows = dims.x;

    // t = W^T u, v = t / |t|.
    var tt = 0.0;
    if quads {
        tt = wt_u_quads(l);
    } else {
        tt = wt_u_cols(l);
    }
    finish_v(l, tt, quads);
    storageBarrier();

    // s = W v, a row per lane.
    var ss = 0.0;
    for (var r0 = 0u; r0 < rows; r0 += 8u) {
        let r = min(r0 + l, rows - 1u);
        var acc = 0.0;
        if quads {
            acc = w_v_quads(r, l);
        } else {
            acc = w_v_cols(r, l);
        }
        if r0 + l < rows {
            s[r] = acc;
            ss = fma(acc, acc, ss);
        }
    }

    // u and sigma.
    let inv_s = 1.0 / max(sqrt(subgroupAdd(ss)), p.eps);
    var dot = 0.0;
    for (var r = l; r < rows; r += 8u) {
        let x = s[r];
        var un = u[r];
        if dims.z != 0u {
            un = x * inv_s;
            u[r] = un;
        }
        u_saved[r] = un;
        dot = fma(un, x, dot);
    }
    let sig = subgroupAdd(dot);
    if l == 0u {
        sigma[0] = sig;
    }

    // out = W / sigma, a texel (4 elements) at a time.
    for (var k = l; k < rows * dims.y / 4u; k += 8u) {
        out4[k] = w_texel(k) / sig;
    }
}
