// Batch norm over NHWC x [N, H, W, C]: statistics per channel over the M = N*H*W rows
// (a row is one pixel's C channels), then an affine map whose scale and shift are either per
// sample ([N, C], conditional BN: scale = 1 + gain) or per channel ([C], learnt affine).
//
// Reductions are deterministic: a thread owns one channel (or four, in the *4 entry points)
// of one chunk of rows and loops over it; a second pass combines the chunks in fixed order.
//
// Forward, training:  stats_partial[4] -> stats_final -> norm_affine[4]
// Forward, inference: norm_affine[4] with the stored mean and var
// Backward (both):    bwd_partial[4] -> bwd_final -> dx[4]  (use_stats = 0 in inference)
//
// The elementwise passes fold everything per channel (or per sample and channel) into a few
// coefficients once per thread (fac = (plus1 + scale) / sqrt(var + eps)), then loop over a
// block of rows.
// The *4 entry points read and write through vec4 views and need C % 4 == 0.

struct Params {
    n: u32,          // batch size N
    hw: u32,         // H * W
    c: u32,          // channels C
    cv: u32,         // lanes per row: C, or C / 4 in the *4 entry points
    rows: u32,       // rows per chunk (reductions) or per thread (elementwise)
    chunks: u32,     // chunks over all N*H*W rows (stats) or per sample (backward, elementwise)
    per_sample: u32, // 1: scale and shift are [N, C]; 0: they are [C]
    plus1: f32,      // added to the scale parameter: 1 for conditional BN, 0 for a plain affine
    eps: f32,
    use_stats: f32,  // dx: 1 = gradient flows through the batch statistics, 0 = constant stats
    relu: u32,       // norm_affine*: 1 = ReLU of the output (BN then ReLU in one pass)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> mean: array<f32>;
@group(0) @binding(6) var<storage, read> var_: array<f32>;
@group(0) @binding(7) var<storage, read> scale: array<f32>;
@group(0) @binding(8) var<storage, read> shift: array<f32>;
@group(0) @binding(9) var<storage, read_write> out: array<f32>;
@group(0) @binding(10) var<storage, read_write> out4: array<vec4<f32>>;
// Chunk partials [2, chunks (times N in backward), C]: (mean, M2) forward, (sum dy, sum dy*x_hat) backward.
@group(0) @binding(11) var<storage, read_write> part: array<f32>;
@group(0) @binding(12) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(13) var<storage, read_write> var_out: array<f32>;
@group(0) @binding(14) var<storage, read_write> dscale: array<f32>;
@group(0) @binding(15) var<storage, read_write> dshift: array<f32>;
// [2, C]: the per-channel dx coefficients (see bwd_final).
@group(0) @binding(16) var<storage, read_write> coef: array<f32>;
// Folded scale (plus1 + scale) * inv_std, shaped like scale.
@group(0) @binding(17) var<storage, read_write> fac: array<f32>;
// vec4 views of small tensors for the *4 kernels (C % 4 == 0, so [N, C] and [C] split evenly).
@group(0) @binding(18) var<storage, read> mean4: array<vec4<f32>>;
@group(0) @binding(19) var<storage, read> fac4: array<vec4<f32>>;
@group(0) @binding(20) var<storage, read> shift4: array<vec4<f32>>;
@group(0) @binding(21) var<storage, read> coef4: array<vec4<f32>>;

const WG: u32 = 64u;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

fn inv_std(c: u32) -> f32 {
    return 1.0 / sqrt(var_[c] + p.eps);
}

fn inv_std4(c: u32) -> vec4<f32> {
    let v = vec4<f32>(var_[c], var_[c + 1u], var_[c + 2u], var_[c + 3u]);
    return 1.0 / sqrt(v + vec4<f32>(p.eps));
}

// Index of the scale/shift parameter for channel c of sample n.
fn param_index(n: u32, c: u32) -> u32 {
    return select(c, n * p.c + c, p.per_sample == 1u);
}

// fac for channels 4c4..4c4+3, scale parameters 4pi4..4pi4+3.
fn fold4(pi4: u32, c4: u32) -> vec4<f32> {
    let i = 4u * pi4;
    let sc = vec4<f32>(scale[i], scale[i + 1u], scale[i + 2u], scale[i + 3u]);
    return (vec4<f32>(p.plus1) + sc) * inv_std4(4u * c4);
}

// ---- forward statistics -------------------------------------------------------------------

// One thread per (chunk, channel): the chunk's mean and sum of squared deviations from it,
// by Welford's update (one read per value; deviations are taken from the running mean, so no
// large sums cancel). The update runs on x minus the chunk's first value (the pivot), so the
// running mean stays small and its roundings do not add up to ulps of an offset mean.
@compute @workgroup_size(64)
fn stats_partial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.chunks * p.cv { return; }
    let k = t / p.cv;
    let c = t % p.cv;
    let r0 = k * p.rows;
    let r1 = min(r0 + p.rows, p.n * p.hw);
    let pivot = x[r0 * p.c + c];
    var mu = 0.0;
    var q = 0.0;
    for (var r = r0; r < r1; r++) {
        let v = x[r * p.c + c] - pivot;
        let d = v - mu;
        mu += d / f32(r - r0 + 1u);
        q += d * (v - mu);
    }
    part[k * p.c + c] = pivot + mu;
    part[(p.chunks + k) * p.c + c] = q;
}

@compute @workgroup_size(64)
fn stats_partial4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.chunks * p.cv { return; }
    let k = t / p.cv;
    let c4 = t % p.cv;
    let r0 = k * p.rows;
    let r1 = min(r0 + p.rows, p.n * p.hw);
    let pivot = x4[r0 * p.cv + c4];
    var mu = vec4<f32>(0.0);
    var q = vec4<f32>(0.0);
    for (var r = r0; r < r1; r++) {
        let v = x4[r * p.cv + c4] - pivot;
        let d = v - mu;
        mu += d / f32(r - r0 + 1u);
        q += d * (v - mu);
    }
    let c = 4u * c4;
    let m = pivot + mu;
    for (var j = 0u; j < 4u; j++) {
        part[k * p.c + c + j] = m[j];
        part[(p.chunks + k) * p.c + c + j] = q[j];
    }
}

// One thread per channel: combine the chunks in order into the batch mean and biased
// variance: mean = m_0 + sum_k n_k (m_k - m_0) / M (chunk 0's mean as pivot, for the same
// reason as above), M2 = sum_k (M2_k + n_k (m_k - mean)^2).
@compute @workgroup_size(64)
fn stats_final(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = index(gid, nwg);
    if c >= p.c { return; }
    let m = p.n * p.hw;
    let m0 = part[c];
    var s = 0.0;
    for (var k = 1u; k < p.chunks; k++) {
        let cnt = f32(min(p.rows, m - k * p.rows));
        s += cnt * (part[k * p.c + c] - m0);
    }
    let mu = m0 + s / f32(m);
    var q = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        let cnt = f32(min(p.rows, m - k * p.rows));
        let d = part[k * p.c + c] - mu;
        q += part[(p.chunks + k) * p.c + c] + cnt * d * d;
    }
    mean_out[c] = mu;
    var_out[c] = q / f32(m);
}

// ---- normalise and apply the affine map ----------------------------------------------------

// out = (x - mean) * fac + shift, fac = (plus1 + scale) / sqrt(var + eps) made per thread.
// Grid: z = sample n; x, y = (block of `rows` rows, lane),
// lane fastest; a thread loads its coefficients once and loops over its rows.
@compute @workgroup_size(64)
fn norm_affine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.chunks * p.cv { return; }
    let n = gid.z;
    let c = t % p.cv;
    let r0 = n * p.hw + (t / p.cv) * p.rows;
    let r1 = min(r0 + p.rows, (n + 1u) * p.hw);
    let pi = param_index(n, c);
    let mu = mean[c];
    let a = (p.plus1 + scale[pi]) * inv_std(c);
    let b = shift[pi];
    for (var r = r0; r < r1; r++) {
        let i = r * p.c + c;
        let y = (x[i] - mu) * a + b;
        out[i] = select(y, max(y, 0.0), p.relu != 0u);
    }
}

@compute @workgroup_size(64)
fn norm_affine4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.chunks * p.cv { return; }
    let n = gid.z;
    let c4 = t % p.cv;
    let r0 = n * p.hw + (t / p.cv) * p.rows;
    let r1 = min(r0 + p.rows, (n + 1u) * p.hw);
    let pi4 = select(c4, n * p.cv + c4, p.per_sample == 1u);
    let mu = mean4[c4];
    let a = fold4(pi4, c4);
    let b = shift4[pi4];
    for (var r = r0; r < r1; r++) {
        let i = r * p.cv + c4;
        let y = (x4[i] - mu) * a + b;
        out4[i] = select(y, max(y, vec4<f32>(0.0)), p.relu != 0u);
    }
}

// ---- backward ------------------------------------------------------------------------------

// One thread per (sample, chunk of that sample's rows, channel): sum dy and sum dy * x_hat.
@compute @workgroup_size(64)
fn bwd_partial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    let groups = p.n * p.chunks;
    if t >= groups * p.cv { return; }
    let c = t % p.cv;
    let nk = t / p.cv;
    let n = nk / p.chunks;
    let k = nk % p.chunks;
    let r0 = n * p.hw + k * p.rows;
    let r1 = min(r0 + p.rows, (n + 1u) * p.hw);
    let mu = mean[c];
    var a = 0.0;
    var b = 0.0;
    for (var r = r0; r < r1; r++) {
        let g = dy[r * p.c + c];
        a += g;
        b += g * (x[r * p.c + c] - mu);
    }
    part[nk * p.c + c] = a;
    part[(groups + nk) * p.c + c] = b * inv_std(c);
}

@compute @workgroup_size(64)
fn bwd_partial4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    let groups = p.n * p.chunks;
    if t >= groups * p.cv { return; }
    let c4 = t % p.cv;
    let nk = t / p.cv;
    let n = nk / p.chunks;
    let k = nk % p.chunks;
    let r0 = n * p.hw + k * p.rows;
    let r1 = min(r0 + p.rows, (n + 1u) * p.hw);
    let c = 4u * c4;
    let mu = mean4[c4];
    var a = vec4<f32>(0.0);
    var b = vec4<f32>(0.0);
    for (var r = r0; r < r1; r++) {
        let g = dy4[r * p.cv + c4];
        a += g;
        b += g * (x4[r * p.cv + c4] - mu);
    }
    b *= inv_std4(c);
    for (var j = 0u; j < 4u; j++) {
        part[nk * p.c + c + j] = a[j];
        part[(groups + nk) * p.c + c + j] = b[j];
    }
}

// One thread per channel: per-sample sums (the conditional gradients), their totals (the
// per-channel gradients), fac = scale * inv_std as in fold4, and the dx coefficients
// coef = [-inv_std^2 * mean(g * x_hat), -inv_std * mean(g)] (times use_stats).
@compute @workgroup_size(64)
fn bwd_final(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = index(gid, nwg);
    if c >= p.c { return; }
    let groups = p.n * p.chunks;
    let inv = inv_std(c);
    var ta = 0.0;
    var tb = 0.0;
    var sg = 0.0;
    var sgx = 0.0;
    for (var n = 0u; n < p.n; n++) {
        var a = 0.0;
        var b = 0.0;
        for (var k = 0u; k < p.chunks; k++) {
            let nk = n * p.chunks + k;
            a += part[nk * p.c + c];
            b += part[(groups + nk) * p.c + c];
        }
        if p.per_sample == 1u {
            let i = n * p.c + c;
            dshift[i] = a;
            dscale[i] = b;
            let s = p.plus1 + scale[i];
            fac[i] = s * inv;
            sg += s * a;
            sgx += s * b;
        }
        ta += a;
        tb += b;
    }
    if p.per_sample == 0u {
        dshift[c] = ta;
        dscale[c] = tb;
        let s = p.plus1 + scale[c];
        fac[c] = s * inv;
        sg = s * ta;
        sgx = s * tb;
    }
    let m = f32(p.n * p.hw);
    coef[c] = -p.use_stats * inv * inv * sgx / m;
    coef[p.c + c] = -p.use_stats * inv * sg / m;
}

// dx = inv_std * (g - use_stats * (mean(g) + x_hat * mean(g * x_hat))), g = dy * scale,
// computed as dy * fac + (x - mean) * coef[0] + coef[1]. Grid as in norm_affine.
@compute @workgroup_size(64)
fn dx(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.chunks * p.cv { return; }
    let n = gid.z;
    let c = t % p.cv;
    let r0 = n * p.hw + (t / p.cv) * p.rows;
    let r1 = min(r0 + p.rows, (n + 1u) * p.hw);
    let mu = mean[c];
    let a = fac[param_index(n, c)];
    let cb = coef[c];
    let cd = coef[p.c + c];
    for (var r = r0; r < r1; r++) {
        let i = r * p.c + c;
        out[i] = dy[i] * a + (x[i] - mu) * cb + cd;
    }
}

@compute @workgroup_size(64)
fn dx4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.chunks * p.cv { return; }
    let n = gid.z;
    let c4 = t % p.cv;
    let r0 = n * p.hw + (t / p.cv) * p.rows;
    let r1 = min(r0 + p.rows, (n + 1u) * p.hw);
    let mu = mean4[c4];
    let a = fac4[select(c4, n * p.cv + c4, p.per_sample == 1u)];
    let cb = coef4[c4];
    let cd = coef4[p.cv + c4];
    for (var r = r0; r < r1; r++) {
        let i = r * p.cv + c4;
        out4[i] = dy4[i] * a + (x4[i] - mu) * cb + cd;
    }
}

// ---- CPU adapters --------------------------------------------------------------------------

// The *4 kernels that stream through x and dy, reading them as textures (vec4 i at texel
// (i % 4096, i / 4096)): lavapipe fetches a texel several times faster than it loads from a
// storage buffer. They repeat the storage kernels' loops with other loads: the runtime binds
// every binding an entry point references, so a shared body reading either would make every
// dispatch bind (and copy into a texture) what it does not read.
@group(0) @binding(22) var x_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(23) var dy_tex: texture_storage_2d<rgba32float, read>;

fn xt(i: u32) -> vec4<f32> {
    return textureLoad(x_tex, vec2<u32>(i % 4096u, i / 4096u));
}

fn dyt(i: u32) -> vec4<f32> {
    return textureLoad(dy_tex, vec2<u32>(i % 4096u, i / 4096u));
}

@compute @workgroup_size(64)
fn stats_partial4_t(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.chunks * p.cv { return; }
    let k = t / p.cv;
    let c4 = t % p.cv;
    let r0 = k * p.rows;
    let r1 = min(r0 + p.rows, p.n * p.hw);
    let pivot = xt(r0 * p.cv + c4);
    var mu = vec4<f32>(0.0);
    var q = vec4<f32>(0.0);
    for (var r = r0; r < r1; r++) {
        let v = xt(r * p.cv + c4) - pivot;
        let d = v - mu;
        mu += d / f32(r - r0 + 1u);
        q += d * (v - mu);
    }
    let c = 4u * c4;
    let m = pivot + mu;
    for (var j = 0u; j < 4u; j++) {
        part[k * p.c + c + j] = m[j];
        part[(p.chunks + k) * p.c + c + j] = q[j];
    }
}

@compute @workgroup_size(64)
fn norm_affine4_t(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.chunks * p.cv { return; }
    let n = gid.z;
    let c4 = t % p.cv;
    let r0 = n * p.hw + (t / p.cv) * p.rows;
    let r1 = min(r0 + p.rows, (n + 1u) * p.hw);
    let pi4 = select(c4, n * p.cv + c4, p.per_sample == 1u);
    let mu = mean4[c4];
    let a = fold4(pi4, c4);
    let b = shift4[pi4];
    for (var r = r0; r < r1; r++) {
        let i = r * p.cv + c4;
        let y = (xt(i) - mu) * a + b;
        out4[i] = select(y, max(y, vec4<f32>(0.0)), p.relu != 0u);
    }
}

@compute @workgroup_size(64)
fn bwd_partial4_t(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    let groups = p.n * p.chunks;
    if t >= groups * p.cv { return; }
    let c4 = t % p.cv;
    let nk = t / p.cv;
    let n = nk / p.chunks;
    let k = nk % p.chunks;
    let r0 = n * p.hw + k * p.rows;
    let r1 = min(r0 + p.rows, (n + 1u) * p.hw);
    let c = 4u * c4;
    let mu = mean4[c4];
    var a = vec4<f32>(0.0);
    var b = vec4<f32>(0.0);
    for (var r = r0; r < r1; r++) {
        let g = dyt(r * p.cv + c4);
        a += g;
        b += g * (xt(r * p.cv + c4) - mu);
    }
    b *= inv_std4(c);
    for (var j = 0u; j < 4u; j++) {
        part[nk * p.c + c + j] = a[j];
        part[(groups + nk) * p.c + c + j] = b[j];
    }
}

@compute @workgroup_size(64)
fn dx4_t(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.chunks * p.cv { return; }
    let n = gid.z;
    let c4 = t % p.cv;
    let r0 = n * p.hw + (t / p.cv) * p.rows;
    let r1 = min(r0 + p.rows, (n + 1u) * p.hw);
    let mu = mean4[c4];
    let a = fac4[select(c4, n * p.cv + c4, p.per_sample == 1u)];
    let cb = coef4[c4];
    let cd = coef4[p.cv + c4];
    for (var r = r0; r < r1; r++) {
        let i = r * p.cv + c4;
        out4[i] = dyt(i) * a + (xt(i) - mu) * cb + cd;
    }
}
