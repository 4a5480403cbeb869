// Row softmax of a 2-D [R, C] tensor (row-major) and its backward pass. One thread per row
// loops over the row in order (deterministic, no workgroup memory); the *_vec4 entry points
// read and write four columns at a time and need C % 4 == 0 (cols4 = C / 4).

struct Params {
    rows: u32,
    cols: u32,
    cols4: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> dy4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> out4: array<vec4<f32>>;

const WG: u32 = 64u;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

fn hmax(v: vec4<f32>) -> f32 {
    return max(max(v.x, v.y), max(v.z, v.w));
}

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

// y = exp(x - max) / sum(exp(x - max)). The exponentials go to `out` first and are rescaled
// in place, so each element costs one exp.
@compute @workgroup_size(64)
fn softmax_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = index(gid, nwg);
    if r >= p.rows { return; }
    let base = r * p.cols;
    var m = x[base];
    for (var c = 1u; c < p.cols; c++) {
        m = max(m, x[base + c]);
    }
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        let e = exp(x[base + c] - m);
        out[base + c] = e;
        s += e;
    }
    let inv = 1.0 / s;
    for (var c = 0u; c < p.cols; c++) {
        out[base + c] *= inv;
    }
}

@compute @workgroup_size(64)
fn softmax_forward_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = index(gid, nwg);
    if r >= p.rows { return; }
    let base = r * p.cols4;
    var m4 = x4[base];
    for (var c = 1u; c < p.cols4; c++) {
        m4 = max(m4, x4[base + c]);
    }
    let m = hmax(m4);
    var s4 = vec4<f32>(0.0);
    for (var c = 0u; c < p.cols4; c++) {
        let e = exp(x4[base + c] - m);
        out4[base + c] = e;
        s4 += e;
    }
    let inv = 1.0 / hsum(s4);
    for (var c = 0u; c < p.cols4; c++) {
        out4[base + c] *= inv;
    }
}

// dx = y * (dy - sum(dy * y)) with y the forward output (x binding) and dy the output gradient.
@compute @workgroup_size(64)
fn softmax_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = index(gid, nwg);
    if r >= p.rows { return; }
    let base = r * p.cols;
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        s += x[base + c] * dy[base + c];
    }
    for (var c = 0u; c < p.cols; c++) {
        out[base + c] = x[base + c] * (dy[base + c] - s);
    }
}

@compute @workgroup_size(64)
fn softmax_backward_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = index(gid, nwg);
    if r >= p.rows { return; }
    let base = r * p.cols4;
    var s4 = vec4<f32>(0.0);
    for (var c = 0u; c < p.cols4; c++) {
        s4 += x4[base + c] * dy4[base + c];
    }
    let s = hsum(s4);
    for (var c = 0u; c < p.cols4; c++) {
        out4[base + c] = x4[base + c] * (dy4[base + c] - s);
    }
}

// CPU adapters: the vec4 kernels reading x and dy as textures (vec4 i at texel (i % 4096,
// i / 4096)); lavapipe fetches a texel several times faster than it loads from a storage
// buffer. The forward pass recomputes exp instead of reading its output back. Twins of the
// storage kernels, for the reason given in batchnorm.wgsl.
@group(0) @binding(7) var x_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(8) var dy_tex: texture_storage_2d<rgba32float, read>;

fn xt(i: u32) -> vec4<f32> {
    return textureLoad(x_tex, vec2<u32>(i % 4096u, i / 4096u));
}

fn dyt(i: u32) -> vec4<f32> {
    return textureLoad(dy_tex, vec2<u32>(i % 4096u, i / 4096u));
}

@compute @workgroup_size(64)
fn softmax_forward_vec4_t(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = index(gid, nwg);
    if r >= p.rows { return; }
    let base = r * p.cols4;
    var m4 = xt(base);
    for (var c = 1u; c < p.cols4; c++) {
        m4 = max(m4, xt(base + c));
    }
    let m = hmax(m4);
    var s4 = vec4<f32>(0.0);
    for (var c = 0u; c < p.cols4; c++) {
        s4 += exp(xt(base + c) - m);
    }
    let inv = 1.0 / hsum(s4);
    for (var c = 0u; c < p.cols4; c++) {
        out4[base + c] = exp(xt(base + c) - m) * inv;
    }
}

@compute @workgroup_size(64)
fn softmax_backward_vec4_t(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = index(gid, nwg);
    if r >= p.rows { return; }
    let base = r * p.cols4;
    var s4 = vec4<f32>(0.0);
    for (var c = 0u; c < p.cols4; c++) {
        s4 += xt(base + c) * dyt(base + c);
    }
    let s = hsum(s4);
    for (var c = 0u; c < p.cols4; c++) {
        out4[base + c] = xt(base + c) * (dyt(base + c) - s);
    }
}
