// gemm_<ab>_sg: the GEMMs of gemm.wgsl for CPU adapters with subgroups of 8 or more. Not a
// WGSL file of its own: the runtime appends it to gemm.wgsl (shader "gemm_sg"). The small
// gemm_<ab>_one_sg kernels at the end serve the products whose sizes the _sg ones do not take.
//
// A and B are read as read-only storage textures (the runtime copies them; vec4 i is texel (i % 4096,
// i / 4096)). A lane computes 8 rows x 16 columns of C; the lanes of a workgroup share the
// columns, so per 4 k they need the same 16 vec4s of B: lane l of each group of 8 fetches
// two of them and the others take them with subgroupShuffle. Needs k, n and (A transposed) m
// to be multiples of 4. Grid: x over groups of 8 rows, 16 lanes per workgroup; y over groups
// of 16 columns; z over the batch.

@group(0) @binding(8) var a_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(9) var b_tex: texture_storage_2d<rgba32float, read>;

fn a_at(i: u32) -> vec4<f32> {
    return textureLoad(a_tex, vec2<u32>(i % 4096u, i / 4096u));
}

fn b_at(i: u32) -> vec4<f32> {
    return textureLoad(b_tex, vec2<u32>(i % 4096u, i / 4096u));
}

// Four k of 4 columns: w<j> = row k + j.
struct GW4 {
    w0: vec4<f32>,
    w1: vec4<f32>,
    w2: vec4<f32>,
    w3: vec4<f32>,
}

// One row of the lane's C block: columns n0 + 4j .. n0 + 4j + 3 in c<j>.
struct CRow {
    c0: vec4<f32>,
    c1: vec4<f32>,
    c2: vec4<f32>,
    c3: vec4<f32>,
}

struct CBlk {
    r0: CRow,
    r1: CRow,
    r2: CRow,
    r3: CRow,
    r4: CRow,
    r5: CRow,
    r6: CRow,
    r7: CRow,
}

// The B block for 4 k: GW4 per column block (w<j> = row k + j of the block's 4 columns).
struct BBlk {
    b0: GW4,
    b1: GW4,
    b2: GW4,
    b3: GW4,
}

// a + v.x w.w0 + v.y w.w1 + v.z w.w2 + v.w w.w3.
fn gmac(a: vec4<f32>, v: vec4<f32>, w: GW4) -> vec4<f32> {
    return fma(vec4<f32>(v.w), w.w3, fma(vec4<f32>(v.z), w.w2, fma(vec4<f32>(v.y), w.w1, fma(vec4<f32>(v.x), w.w0, a))));
}

// row += (A row at 4 k: v) x (B block).
fn row_mac(r: CRow, v: vec4<f32>, b: BBlk) -> CRow {
    return CRow(gmac(r.c0, v, b.b0), gmac(r.c1, v, b.b1), gmac(r.c2, v, b.b2), gmac(r.c3, v, b.b3));
}

struct A8 {
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
    v3: vec4<f32>,
    v4: vec4<f32>,
    v5: vec4<f32>,
    v6: vec4<f32>,
    v7: vec4<f32>,
}

fn blk_mac(c: CBlk, a: A8, b: BBlk) -> CBlk {
    return CBlk(row_mac(c.r0, a.v0, b), row_mac(c.r1, a.v1, b), row_mac(c.r2, a.v2, b), row_mac(c.r3, a.v3, b),
        row_mac(c.r4, a.v4, b), row_mac(c.r5, a.v5, b), row_mac(c.r6, a.v6, b), row_mac(c.r7, a.v7, b));
}

// Rows m0..m0+7 of op(A) at k..k+3 (v<r>.<j> = op(A)[m0 + r, k + j]); rows past m repeat the
// last one. A is [m, k] (ta false: one fetch per row) or [k, m] (ta true: per k, two fetches
// of 4 rows, transposed here).
fn a_rows(ta: bool, base: u32, m0: u32, k: u32) -> A8 {
    let last = p.m - 1u;
    if !ta {
        let s = p.k / 4u;
        let b = base / 4u + k / 4u;
        return A8(a_at(b + min(m0, last) * s), a_at(b + min(m0 + 1u, last) * s), a_at(b + min(m0 + 2u, last) * s),
            a_at(b + min(m0 + 3u, last) * s), a_at(b + min(m0 + 4u, last) * s), a_at(b + min(m0 + 5u, last) * s),
            a_at(b + min(m0 + 6u, last) * s), a_at(b + min(m0 + 7u, last) * s));
    }
    let s = p.m / 4u;
    let g0 = base / 4u + min(m0, last) / 4u;
    let g1 = base / 4u + min(m0 + 4u, last) / 4u;
    let r0 = a_at(g0 + k * s);
    let r1 = a_at(g0 + (k + 1u) * s);
    let r2 = a_at(g0 + (k + 2u) * s);
    let r3 = a_at(g0 + (k + 3u) * s);
    let q0 = a_at(g1 + k * s);
    let q1 = a_at(g1 + (k + 1u) * s);
    let q2 = a_at(g1 + (k + 2u) * s);
    let q3 = a_at(g1 + (k + 3u) * s);
    return A8(vec4<f32>(r0.x, r1.x, r2.x, r3.x), vec4<f32>(r0.y, r1.y, r2.y, r3.y), vec4<f32>(r0.z, r1.z, r2.z, r3.z),
        vec4<f32>(r0.w, r1.w, r2.w, r3.w), vec4<f32>(q0.x, q1.x, q2.x, q3.x), vec4<f32>(q0.y, q1.y, q2.y, q3.y),
        vec4<f32>(q0.z, q1.z, q2.z, q3.z), vec4<f32>(q0.w, q1.w, q2.w, q3.w));
}

// Fetch f (0..15) of the B block at k: B [k, n] (tb false): f = 4j + cb is row k + j, column
// block cb; B [n, k] (tb true): f is column n0 + f, rows k..k+3. Columns past n repeat the
// last block.
fn b_fetch(tb: bool, base: u32, n0: u32, k: u32, f: u32) -> vec4<f32> {
    if !tb {
        let col = min(n0 + 4u * (f % 4u), p.n - 4u);
        return b_at((base + (k + f / 4u) * p.n + col) / 4u);
    }
    let col = min(n0 + f, p.n - 1u);
    return b_at((base + col * p.k + k) / 4u);
}

fn sh(v: vec4<f32>, lane: u32) -> vec4<f32> {
    return subgroupShuffle(v, lane);
}

// The B block from the two fetches of each lane (lo: fetch l, hi: fetch 8 + l).
fn b_block(tb: bool, lo: vec4<f32>, hi: vec4<f32>) -> BBlk {
    if !tb {
        // fetch 4j + cb: lane (4j + cb) % 8 of lo (j < 2) or hi.
        return BBlk(GW4(sh(lo, 0u), sh(lo, 4u), sh(hi, 0u), sh(hi, 4u)), GW4(sh(lo, 1u), sh(lo, 5u), sh(hi, 1u), sh(hi, 5u)),
            GW4(sh(lo, 2u), sh(lo, 6u), sh(hi, 2u), sh(hi, 6u)), GW4(sh(lo, 3u), sh(lo, 7u), sh(hi, 3u), sh(hi, 7u)));
    }
    // fetch f = column f (4 k each): column block cb holds columns 4cb..4cb+3.
    return BBlk(tw4(sh(lo, 0u), sh(lo, 1u), sh(lo, 2u), sh(lo, 3u)), tw4(sh(lo, 4u), sh(lo, 5u), sh(lo, 6u), sh(lo, 7u)),
        tw4(sh(hi, 0u), sh(hi, 1u), sh(hi, 2u), sh(hi, 3u)), tw4(sh(hi, 4u), sh(hi, 5u), sh(hi, 6u), sh(hi, 7u)));
}

// Four columns (4 k each) as rows k..k+3 over the 4 columns.
fn tw4(c0: vec4<f32>, c1: vec4<f32>, c2: vec4<f32>, c3: vec4<f32>) -> GW4 {
    return GW4(vec4<f32>(c0.x, c1.x, c2.x, c3.x), vec4<f32>(c0.y, c1.y, c2.y, c3.y), vec4<f32>(c0.z, c1.z, c2.z, c3.z),
        vec4<f32>(c0.w, c1.w, c2.w, c3.w));
}

fn crow_init(n0: u32) -> CRow {
    var r = CRow(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    if p.has_bias != 0u {
        let l = p.n - 4u;
        r.c0 = vec4<f32>(bias[min(n0, l)], bias[min(n0, l) + 1u], bias[min(n0, l) + 2u], bias[min(n0, l) + 3u]);
        r.c1 = vec4<f32>(bias[min(n0 + 4u, l)], bias[min(n0 + 4u, l) + 1u], bias[min(n0 + 4u, l) + 2u], bias[min(n0 + 4u, l) + 3u]);
        r.c2 = vec4<f32>(bias[min(n0 + 8u, l)], bias[min(n0 + 8u, l) + 1u], bias[min(n0 + 8u, l) + 2u], bias[min(n0 + 8u, l) + 3u]);
        r.c3 = vec4<f32>(bias[min(n0 + 12u, l)], bias[min(n0 + 12u, l) + 1u], bias[min(n0 + 12u, l) + 2u], bias[min(n0 + 12u, l) + 3u]);
    }
    return r;
}

fn store_crow(cbase: u32, m: u32, n0: u32, r: CRow) {
    if m >= p.m { return; }
    let i = (cbase + m * p.n + n0) / 4u;
    if n0 < p.n { c4[i] = r.c0; }
    if n0 + 4u < p.n { c4[i + 1u] = r.c1; }
    if n0 + 8u < p.n { c4[i + 2u] = r.c2; }
    if n0 + 12u < p.n { c4[i + 3u] = r.c3; }
}

fn gemm_sg(wg: vec3<u32>, lid: vec3<u32>, sl: u32, ta: bool, tb: bool) {
    let m0 = (wg.x * 16u + lid.x) * 8u;
    let n0 = wg.y * 16u;
    let z = wg.z;
    let abase = z * p.sa;
    let bbase = z * p.sb;
    let l = sl % 8u;
    let r = crow_init(n0);
    var c = CBlk(r, r, r, r, r, r, r, r);
    for (var k = 0u; k < p.k; k += 4u) {
        let lo = b_fetch(tb, bbase, n0, k, l);
        let hi = b_fetch(tb, bbase, n0, k, 8u + l);
        c = blk_mac(c, a_rows(ta, abase, m0, k), b_block(tb, lo, hi));
    }
    let cbase = z * p.sc;
    store_crow(cbase, m0, n0, c.r0);
    store_crow(cbase, m0 + 1u, n0, c.r1);
    store_crow(cbase, m0 + 2u, n0, c.r2);
    store_crow(cbase, m0 + 3u, n0, c.r3);
    store_crow(cbase, m0 + 4u, n0, c.r4);
    store_crow(cbase, m0 + 5u, n0, c.r5);
    store_crow(cbase, m0 + 6u, n0, c.r6);
    store_crow(cbase, m0 + 7u, n0, c.r7);
}

@compute @workgroup_size(16)
fn gemm_nn_sg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(subgroup_invocation_id) sl: u32) {
    gemm_sg(wg, lid, sl, false, false);
}

@compute @workgroup_size(16)
fn gemm_nt_sg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(subgroup_invocation_id) sl: u32) {
    gemm_sg(wg, lid, sl, false, true);
}

@compute @workgroup_size(16)
fn gemm_tn_sg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(subgroup_invocation_id) sl: u32) {
    gemm_sg(wg, lid, sl, true, false);
}

@compute @workgroup_size(16)
fn gemm_tt_sg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(subgroup_invocation_id) sl: u32) {
    gemm_sg(wg, lid, sl, true, true);
}

// ---------------------------------------------------------------------------------------
// gemm_<ab>_one_sg: one element of C per lane, any m, n, k, storage loads. For the small
// products of CPU adapters whose sizes gemm_<ab>_sg does not take (heads with 1 or 10
// outputs): they compile in milliseconds, where the register-tiled scalar kernels of
// gemm.wgsl take about 3 s each on a cold shader cache. (No subgroup operation: the suffix
// only places them in this file.) Grid: x over columns in groups of 64, y over rows, z over
// the batch.

fn gemm_one(gid: vec3<u32>, ta: bool, tb: bool) {
    let col = gid.x;
    let row = gid.y;
    let z = gid.z;
    if col >= p.n || row >= p.m { return; }
    var acc = 0.0;
    if p.has_bias != 0u { acc = bias[col]; }
    let ab = z * p.sa;
    let bb = z * p.sb;
    for (var kk = 0u; kk < p.k; kk++) {
        var av: f32;
        if ta { av = a[ab + kk * p.m + row]; } else { av = a[ab + row * p.k + kk]; }
        var bv: f32;
        if tb { bv = b[bb + col * p.k + kk]; } else { bv = b[bb + kk * p.n + col]; }
        acc = fma(av, bv, acc);
    }
    c[z * p.sc + row * p.n + col] = acc;
}

@compute @workgroup_size(64)
fn gemm_nn_one_sg(@builtin(global_invocation_id) gid: vec3<u32>) {
    gemm_one(gid, false, false);
}

@compute @workgroup_size(64)
fn gemm_nt_one_sg(@builtin(global_invocation_id) gid: vec3<u32>) {
    gemm_one(gid, false, true);
}

@compute @workgroup_size(64)
fn gemm_tn_one_sg(@builtin(global_invocation_id) gid: vec3<u32>) {
    gemm_one(gid, true, false);
}

@compute @workgroup_size(64)
fn gemm_tt_one_sg(@builtin(global_invocation_id) gid: vec3<u32>) {
    gemm_one(gid, true, true);
}
