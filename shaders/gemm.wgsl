// Batched GEMM and column sums.
//
// gemm_*: C[z] = op(A[z]) * op(B[z]) (+ bias[n] on every row), z = workgroup_id.z.
//   op(A) is [M, K]: A is stored [M, K] (letter n) or [K, M] (t, transposed).
//   op(B) is [K, N]: B is stored [K, N] (n) or [N, K] (t). C is stored [M, N].
//
//   Register tiling: each thread computes a 16 x 16 block of C, held as 4 x 4 mat4x4
//   accumulators (Tile.cIJ covers rows 4I..4I+3 and columns 4J..4J+3 of the block; column j
//   of a mat4x4 is a column of C, as WGSL matrices are column-major). A workgroup of 8 x 8
//   threads covers 128 x 128. Threads whose block crosses the edge of C read clamped (valid)
//   elements and store only what lies inside.
//   Why so large a block: on lavapipe (Mesa's CPU Vulkan), every storage-buffer load costs
//   far more than arithmetic, so the loads per multiply-add must be few; a 16 x 16 block
//   needs 32 values of A and B per 256 multiply-adds. Measured on Mesa 22.3 lavapipe, 1024^3:
//   8 x 8 blocks ~1 GFLOP per CPU second, 16 x 16 ~2, 32 x 32 ~3.8 but with ~15 s of shader
//   compile per entry point. (On a GPU 16 x 16 is a heavy but valid register load.) Named
//   accumulators rather than arrays: the array form measured ~20% slower.
//
//   Two kinds of entry point:
//   - gemm_<ab>:     scalar loads and stores, any M, N, K; one k per step (rank-1 update).
//   - gemm_<ab>_v4:  vec4 loads and stores through the a4/b4/c4 views of the same buffers,
//     four k per step (A block * B block). Loads run along the stored rows: k for A [M, K]
//     and B [N, K], m for A [K, M], n for B [K, N]; that dimension must be a multiple of 4,
//     and so must N (vec4 stores). The runtime picks this variant when these hold.
//     K % 4 != 0 is possible only with A [K, M] and B [K, N]; those k are done one at a time.
//   On CPU adapters with subgroups the runtime uses gemm_<ab>_sg instead (gemm_sg.wgsl,
//   appended to this file as the shader "gemm_sg"), which reads A and B as textures.
//   The transpose flags are literal arguments of the shared functions, so every entry point
//   compiles to straight code for its layout.
//
// sum_rows_partial: out[c] = sum over r of x[r, c], in a fixed order (deterministic). One
//   pass when R is small; otherwise a first pass sums chunks of rows into partials
//   [chunks, C] and a second pass of the same entry point sums those partials in order.
//
// Params (one struct for the file):
//   gemm:     m, n, k, has_bias, sa, sb, sc (batch strides of A, B, C in elements)
//   sum_rows: m = rows R, n = columns C, k = rows per chunk (R for one pass)

struct Params {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
    sa: u32,
    sb: u32,
    sc: u32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
@group(0) @binding(5) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> c4: array<vec4<f32>>;

// Rows (and columns) of C per thread; threads per workgroup along x (columns) and y (rows).
const T: u32 = 16u;
const WX: u32 = 8u;
const WY: u32 = 8u;

// The 16 x 16 accumulator block.
struct Tile {
    c00: mat4x4<f32>, c01: mat4x4<f32>, c02: mat4x4<f32>, c03: mat4x4<f32>,
    c10: mat4x4<f32>, c11: mat4x4<f32>, c12: mat4x4<f32>, c13: mat4x4<f32>,
    c20: mat4x4<f32>, c21: mat4x4<f32>, c22: mat4x4<f32>, c23: mat4x4<f32>,
    c30: mat4x4<f32>, c31: mat4x4<f32>, c32: mat4x4<f32>, c33: mat4x4<f32>,
}

// Four 4 x 4 blocks: of op(A), rows 4I..4I+3 (columns = 4 k); of op(B), columns 4J..4J+3
// (column j = 4 k of one column of op(B)).
struct Quad {
    q0: mat4x4<f32>,
    q1: mat4x4<f32>,
    q2: mat4x4<f32>,
    q3: mat4x4<f32>,
}

// Sixteen values: rows of op(A) at one k, or columns of op(B) at one k.
struct Vec16 {
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
    v3: vec4<f32>,
}

// t += A * B for four k at once.
fn tile_mad(t: ptr<function, Tile>, x: Quad, y: Quad) {
    (*t).c00 += x.q0 * y.q0; (*t).c01 += x.q0 * y.q1; (*t).c02 += x.q0 * y.q2; (*t).c03 += x.q0 * y.q3;
    (*t).c10 += x.q1 * y.q0; (*t).c11 += x.q1 * y.q1; (*t).c12 += x.q1 * y.q2; (*t).c13 += x.q1 * y.q3;
    (*t).c20 += x.q2 * y.q0; (*t).c21 += x.q2 * y.q1; (*t).c22 += x.q2 * y.q2; (*t).c23 += x.q2 * y.q3;
    (*t).c30 += x.q3 * y.q0; (*t).c31 += x.q3 * y.q1; (*t).c32 += x.q3 * y.q2; (*t).c33 += x.q3 * y.q3;
}

// Outer product u v^T as a mat4x4 (column j = u * v[j]).
fn outer(u: vec4<f32>, v: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(u * v.x, u * v.y, u * v.z, u * v.w);
}

// t += x y^T for one k (x: 16 rows of op(A), y: 16 columns of op(B)).
fn tile_rank1(t: ptr<function, Tile>, x: Vec16, y: Vec16) {
    (*t).c00 += outer(x.v0, y.v0); (*t).c01 += outer(x.v0, y.v1); (*t).c02 += outer(x.v0, y.v2); (*t).c03 += outer(x.v0, y.v3);
    (*t).c10 += outer(x.v1, y.v0); (*t).c11 += outer(x.v1, y.v1); (*t).c12 += outer(x.v1, y.v2); (*t).c13 += outer(x.v1, y.v3);
    (*t).c20 += outer(x.v2, y.v0); (*t).c21 += outer(x.v2, y.v1); (*t).c22 += outer(x.v2, y.v2); (*t).c23 += outer(x.v2, y.v3);
    (*t).c30 += outer(x.v3, y.v0); (*t).c31 += outer(x.v3, y.v1); (*t).c32 += outer(x.v3, y.v2); (*t).c33 += outer(x.v3, y.v3);
}

fn zero_tile() -> Tile {
    let z = mat4x4<f32>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    return Tile(z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z);
}

// First row and column of this thread's block.
fn block_origin(wg: vec3<u32>, lid: vec3<u32>) -> vec2<u32> {
    return vec2<u32>((wg.y * WY + lid.y) * T, (wg.x * WX + lid.x) * T);
}

// Bias of columns n0 .. n0 + 3 (clamped), or zeros.
fn bias4(n0: u32) -> vec4<f32> {
    if p.has_bias == 0u {
        return vec4<f32>(0.0);
    }
    let last = p.n - 1u;
    return vec4<f32>(bias[min(n0, last)], bias[min(n0 + 1u, last)], bias[min(n0 + 2u, last)],
                     bias[min(n0 + 3u, last)]);
}

// ---- scalar path ----

// Store one 4 x 4 block (column j = C column n0 + j) plus bias, where it lies inside C.
fn store_block_s(base: u32, m0: u32, n0: u32, blk: mat4x4<f32>) {
    if m0 >= p.m || n0 >= p.n { return; }
    let t = transpose(blk);
    let bv = bias4(n0);
    let rows = min(p.m - m0, 4u);
    let cols = min(p.n - n0, 4u);
    for (var r = 0u; r < rows; r++) {
        let v = t[r] + bv;
        let o = base + (m0 + r) * p.n + n0;
        c[o] = v.x;
        if cols > 1u { c[o + 1u] = v.y; }
        if cols > 2u { c[o + 2u] = v.z; }
        if cols > 3u { c[o + 3u] = v.w; }
    }
}

fn gemm_scalar(wg: vec3<u32>, lid: vec3<u32>, ta: bool, tb: bool) {
    let o = block_origin(wg, lid);
    let m0 = o.x;
    let n0 = o.y;
    if m0 >= p.m || n0 >= p.n { return; }
    let z = wg.z;
    // op(A)[m, k] = a[za + m * am + k * ak]; op(B)[k, n] = b[zb + n * bn + k * bk].
    let za = z * p.sa;
    let zb = z * p.sb;
    let am = select(p.k, 1u, ta);
    let ak = select(1u, p.m, ta);
    let bn = select(1u, p.k, tb);
    let bk = select(p.n, 1u, tb);
    // Clamped rows and columns of the block, as offsets.
    let lm = p.m - 1u;
    let ln = p.n - 1u;
    let r4 = vec4<u32>(0u, 1u, 2u, 3u);
    let ra0 = za + min(vec4<u32>(m0) + r4, vec4<u32>(lm)) * am;
    let ra1 = za + min(vec4<u32>(m0 + 4u) + r4, vec4<u32>(lm)) * am;
    let ra2 = za + min(vec4<u32>(m0 + 8u) + r4, vec4<u32>(lm)) * am;
    let ra3 = za + min(vec4<u32>(m0 + 12u) + r4, vec4<u32>(lm)) * am;
    let cb0 = zb + min(vec4<u32>(n0) + r4, vec4<u32>(ln)) * bn;
    let cb1 = zb + min(vec4<u32>(n0 + 4u) + r4, vec4<u32>(ln)) * bn;
    let cb2 = zb + min(vec4<u32>(n0 + 8u) + r4, vec4<u32>(ln)) * bn;
    let cb3 = zb + min(vec4<u32>(n0 + 12u) + r4, vec4<u32>(ln)) * bn;
    var t = zero_tile();
    for (var k = 0u; k < p.k; k++) {
        let i0 = ra0 + k * ak;
        let i1 = ra1 + k * ak;
        let i2 = ra2 + k * ak;
        let i3 = ra3 + k * ak;
        let x = Vec16(vec4<f32>(a[i0.x], a[i0.y], a[i0.z], a[i0.w]),
                      vec4<f32>(a[i1.x], a[i1.y], a[i1.z], a[i1.w]),
                      vec4<f32>(a[i2.x], a[i2.y], a[i2.z], a[i2.w]),
                      vec4<f32>(a[i3.x], a[i3.y], a[i3.z], a[i3.w]));
        let j0 = cb0 + k * bk;
        let j1 = cb1 + k * bk;
        let j2 = cb2 + k * bk;
        let j3 = cb3 + k * bk;
        let y = Vec16(vec4<f32>(b[j0.x], b[j0.y], b[j0.z], b[j0.w]),
                      vec4<f32>(b[j1.x], b[j1.y], b[j1.z], b[j1.w]),
                      vec4<f32>(b[j2.x], b[j2.y], b[j2.z], b[j2.w]),
                      vec4<f32>(b[j3.x], b[j3.y], b[j3.z], b[j3.w]));
        tile_rank1(&t, x, y);
    }
    let zc = z * p.sc;
    store_block_s(zc, m0, n0, t.c00);
    store_block_s(zc, m0, n0 + 4u, t.c01);
    store_block_s(zc, m0, n0 + 8u, t.c02);
    store_block_s(zc, m0, n0 + 12u, t.c03);
    store_block_s(zc, m0 + 4u, n0, t.c10);
    store_block_s(zc, m0 + 4u, n0 + 4u, t.c11);
    store_block_s(zc, m0 + 4u, n0 + 8u, t.c12);
    store_block_s(zc, m0 + 4u, n0 + 12u, t.c13);
    store_block_s(zc, m0 + 8u, n0, t.c20);
    store_block_s(zc, m0 + 8u, n0 + 4u, t.c21);
    store_block_s(zc, m0 + 8u, n0 + 8u, t.c22);
    store_block_s(zc, m0 + 8u, n0 + 12u, t.c23);
    store_block_s(zc, m0 + 12u, n0, t.c30);
    store_block_s(zc, m0 + 12u, n0 + 4u, t.c31);
    store_block_s(zc, m0 + 12u, n0 + 8u, t.c32);
    store_block_s(zc, m0 + 12u, n0 + 12u, t.c33);
}

// ---- vec4 path ----
// A block is a mat4x4 of op(A) rows r..r+3 x k = 4q..4q+3 (column kk: the 4 rows at k = 4q + kk)
// or of op(B) k = 4q..4q+3 x columns j..j+3 (column jj: the 4 k of column j + jj).

// vec4 index of the 4-run starting at row (column) r0 of a matrix stored [K, rows] (rows % 4
// == 0), at k = 0; a run past the edge is clamped to the last one (never stored).
fn run4(z_off: u32, r0: u32, rows: u32) -> u32 {
    return z_off / 4u + min(r0, rows - 4u) / 4u;
}

// A stored [K, M]: the block of rows at `at` (from run4); k steps are s = M/4 vec4s apart.
fn a_block_km(at: u32, s: u32, q: u32) -> mat4x4<f32> {
    let i = at + 4u * q * s;
    return mat4x4<f32>(a4[i], a4[i + s], a4[i + 2u * s], a4[i + 3u * s]);
}

// A stored [M, K]: the rows whose vec4 offsets (k = 0) are in `at`.
fn a_block_mk(at: vec4<u32>, q: u32) -> mat4x4<f32> {
    return transpose(mat4x4<f32>(a4[at.x + q], a4[at.y + q], a4[at.z + q], a4[at.w + q]));
}

// B stored [K, N]: the block of columns at `at` (from run4); k steps are s = N/4 vec4s apart.
fn b_block_kn(at: u32, s: u32, q: u32) -> mat4x4<f32> {
    let i = at + 4u * q * s;
    return transpose(mat4x4<f32>(b4[i], b4[i + s], b4[i + 2u * s], b4[i + 3u * s]));
}

// B stored [N, K]: the columns whose vec4 offsets (k = 0) are in `at`.
fn b_block_nk(at: vec4<u32>, q: u32) -> mat4x4<f32> {
    return mat4x4<f32>(b4[at.x + q], b4[at.y + q], b4[at.z + q], b4[at.w + q]);
}

// vec4 offsets (k = 0) of rows r0..r0+3 of a matrix stored [rows, K], each clamped to the
// last row.
fn rows4(z_off: u32, r0: u32, rows: u32, k4: u32) -> vec4<u32> {
    let r = min(vec4<u32>(r0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(rows - 1u));
    return vec4<u32>(z_off / 4u) + r * k4;
}

// Store one 4 x 4 block plus bias as vec4 rows, where it lies inside C (N % 4 == 0).
fn store_block_v(base4: u32, m0: u32, n0: u32, blk: mat4x4<f32>) {
    if m0 >= p.m || n0 >= p.n { return; }
    let t = transpose(blk);
    let bv = bias4(n0);
    let rows = min(p.m - m0, 4u);
    let n4 = p.n / 4u;
    let o = base4 + m0 * n4 + n0 / 4u;
    for (var r = 0u; r < rows; r++) {
        c4[o + r * n4] = t[r] + bv;
    }
}

fn gemm_vec4(wg: vec3<u32>, lid: vec3<u32>, ta: bool, tb: bool) {
    let o = block_origin(wg, lid);
    let m0 = o.x;
    let n0 = o.y;
    if m0 >= p.m || n0 >= p.n { return; }
    let z = wg.z;
    let k4 = p.k / 4u;
    let m4 = p.m / 4u;
    let n4 = p.n / 4u;
    let za = z * p.sa;
    let zb = z * p.sb;
    // Starts of the 4-runs of A [K, M] and B [K, N], and row offsets of A [M, K] and
    // B [N, K] (each kernel uses the ones of its layouts).
    let ra0 = rows4(za, m0, p.m, k4);
    let ra1 = rows4(za, m0 + 4u, p.m, k4);
    let ra2 = rows4(za, m0 + 8u, p.m, k4);
    let ra3 = rows4(za, m0 + 12u, p.m, k4);
    let cb0 = rows4(zb, n0, p.n, k4);
    let cb1 = rows4(zb, n0 + 4u, p.n, k4);
    let cb2 = rows4(zb, n0 + 8u, p.n, k4);
    let cb3 = rows4(zb, n0 + 12u, p.n, k4);
    let xa0 = run4(za, m0, p.m);
    let xa1 = run4(za, m0 + 4u, p.m);
    let xa2 = run4(za, m0 + 8u, p.m);
    let xa3 = run4(za, m0 + 12u, p.m);
    let yb0 = run4(zb, n0, p.n);
    let yb1 = run4(zb, n0 + 4u, p.n);
    let yb2 = run4(zb, n0 + 8u, p.n);
    let yb3 = run4(zb, n0 + 12u, p.n);
    var t = zero_tile();
    for (var q = 0u; q < k4; q++) {
        var x: Quad;
        if ta {
            x = Quad(a_block_km(xa0, m4, q), a_block_km(xa1, m4, q), a_block_km(xa2, m4, q),
                     a_block_km(xa3, m4, q));
        } else {
            x = Quad(a_block_mk(ra0, q), a_block_mk(ra1, q), a_block_mk(ra2, q),
                     a_block_mk(ra3, q));
        }
        var y: Quad;
        if tb {
            y = Quad(b_block_nk(cb0, q), b_block_nk(cb1, q), b_block_nk(cb2, q),
                     b_block_nk(cb3, q));
        } else {
            y = Quad(b_block_kn(yb0, n4, q), b_block_kn(yb1, n4, q), b_block_kn(yb2, n4, q),
                     b_block_kn(yb3, n4, q));
        }
        tile_mad(&t, x, y);
    }
    // The k left over when K % 4 != 0 (only with A [K, M] and B [K, N]).
    if ta && !tb {
        for (var k = 4u * k4; k < p.k; k++) {
            let x = Vec16(a4[xa0 + k * m4], a4[xa1 + k * m4], a4[xa2 + k * m4], a4[xa3 + k * m4]);
            let y = Vec16(b4[yb0 + k * n4], b4[yb1 + k * n4], b4[yb2 + k * n4], b4[yb3 + k * n4]);
            tile_rank1(&t, x, y);
        }
    }
    let zc = (z * p.sc) / 4u;
    store_block_v(zc, m0, n0, t.c00);
    store_block_v(zc, m0, n0 + 4u, t.c01);
    store_block_v(zc, m0, n0 + 8u, t.c02);
    store_block_v(zc, m0, n0 + 12u, t.c03);
    store_block_v(zc, m0 + 4u, n0, t.c10);
    store_block_v(zc, m0 + 4u, n0 + 4u, t.c11);
    store_block_v(zc, m0 + 4u, n0 + 8u, t.c12);
    store_block_v(zc, m0 + 4u, n0 + 12u, t.c13);
    store_block_v(zc, m0 + 8u, n0, t.c20);
    store_block_v(zc, m0 + 8u, n0 + 4u, t.c21);
    store_block_v(zc, m0 + 8u, n0 + 8u, t.c22);
    store_block_v(zc, m0 + 8u, n0 + 12u, t.c23);
    store_block_v(zc, m0 + 12u, n0, t.c30);
    store_block_v(zc, m0 + 12u, n0 + 4u, t.c31);
    store_block_v(zc, m0 + 12u, n0 + 8u, t.c32);
    store_block_v(zc, m0 + 12u, n0 + 12u, t.c33);
}

@compute @workgroup_size(WX, WY, 1)
fn gemm_nn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm_scalar(wg, lid, false, false);
}

@compute @workgroup_size(WX, WY, 1)
fn gemm_nt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm_scalar(wg, lid, false, true);
}

@compute @workgroup_size(WX, WY, 1)
fn gemm_tn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm_scalar(wg, lid, true, false);
}

@compute @workgroup_size(WX, WY, 1)
fn gemm_tt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm_scalar(wg, lid, true, true);
}

@compute @workgroup_size(WX, WY, 1)
fn gemm_nn_v4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm_vec4(wg, lid, false, false);
}

@compute @workgroup_size(WX, WY, 1)
fn gemm_nt_v4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm_vec4(wg, lid, false, true);
}

@compute @workgroup_size(WX, WY, 1)
fn gemm_tn_v4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm_vec4(wg, lid, true, false);
}

@compute @workgroup_size(WX, WY, 1)
fn gemm_tt_v4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    gemm_vec4(wg, lid, true, true);
}

// Column sums over rows [r0, r0 + k) of x = a [R, C] for column gid.x, chunk gid.y, written
// to c[chunk * C + column]. With k = R and one chunk this is the whole sum.
@compute @workgroup_size(64, 1, 1)
fn sum_rows_partial(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = gid.x;
    if col >= p.n { return; }
    let r0 = gid.y * p.k;
    let r1 = min(r0 + p.k, p.m);
    var s = 0.0;
    for (var r = r0; r < r1; r++) {
        s += a[r * p.n + col];
    }
    c[gid.y * p.n + col] = s;
}
