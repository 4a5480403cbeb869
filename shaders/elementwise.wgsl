// Elementwise ops on flat f32 arrays: ReLU, tanh (forward and backward), add, scale, axpy.
// Params: n = element count, a = scale factor where used.

struct Params {
    n: u32,
    a: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y_in: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// out = max(x, 0)
@compute @workgroup_size(256)
fn relu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out[i] = max(x[i], 0.0);
}

// out = dy * (x > 0); x = forward input, y_in = dy
@compute @workgroup_size(256)
fn relu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out[i] = select(0.0, y_in[i], x[i] > 0.0);
}

// out = tanh(x)
@compute @workgroup_size(256)
fn tanh_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out[i] = tanh(x[i]);
}

// out = dy * (1 - y^2); x = forward output y, y_in = dy
@compute @workgroup_size(256)
fn tanh_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let y = x[i];
    out[i] = y_in[i] * (1.0 - y * y);
}

// out = x + y_in
@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out[i] = x[i] + y_in[i];
}

// out = a * x
@compute @workgroup_size(256)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out[i] = p.a * x[i];
}

// out = a * x + y_in
@compute @workgroup_size(256)
fn axpy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out[i] = p.a * x[i] + y_in[i];
}

// out = x * y_in
@compute @workgroup_size(256)
fn mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out[i] = x[i] * y_in[i];
}

// Scalars held on the device (a learnt scale such as attention's gamma).
@group(0) @binding(4) var<storage, read> s: array<f32>;

// out = s[0] * x + y_in  (y_in is ignored when p.a == 0: then out = s[0] * x)
@compute @workgroup_size(256)
fn axpy_dev(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out[i] = s[0] * x[i] + y_in[i];
}

@compute @workgroup_size(256)
fn scale_dev(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out[i] = s[0] * x[i];
}

// Deterministic sums: stage 1 reduces chunks of SUM_CHUNK values to partial sums in a fixed
// order (one workgroup per chunk, a tree over the workgroup); further stages do the same on
// the partials until one value is left. dot_stage sums x * y_in instead of x.
const SUM_CHUNK: u32 = 1024u;
var<workgroup> part: array<f32, 256>;

fn tree_store(lid: u32, chunk: u32, acc: f32) {
    part[lid] = acc;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w = w / 2u) {
        if lid < w {
            part[lid] += part[lid + w];
        }
        workgroupBarrier();
    }
    if lid == 0u {
        out[chunk] = part[0];
    }
}

@compute @workgroup_size(256)
fn sum_stage(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let chunk = wid.x + wid.y * nwg.x;
    var acc = 0.0;
    for (var k = 0u; k < SUM_CHUNK / WG; k++) {
        let i = chunk * SUM_CHUNK + k * WG + lid.x;
        if i < p.n {
            acc += x[i];
        }
    }
    tree_store(lid.x, chunk, acc);
}

@compute @workgroup_size(256)
fn dot_stage(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let chunk = wid.x + wid.y * nwg.x;
    var acc = 0.0;
    for (var k = 0u; k < SUM_CHUNK / WG; k++) {
        let i = chunk * SUM_CHUNK + k * WG + lid.x;
        if i < p.n {
            acc += x[i] * y_in[i];
        }
    }
    tree_store(lid.x, chunk, acc);
}

// ---------------------------------------------------------------------------------------
// For CPU adapters: the same ops four elements per invocation, reading their inputs as
// textures (vec4 i at texel (i % 4096, i / 4096)); lavapipe fetches a texel about ten
// times faster than it loads from a storage buffer (docs/PERFORMANCE.md). Need n a
// multiple of 4; grid over n / 4 invocations.
@group(0) @binding(5) var x_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(6) var y_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(7) var<storage, read_write> out4: array<vec4<f32>>;

fn texel(t: texture_storage_2d<rgba32float, read>, i: u32) -> vec4<f32> {
    return textureLoad(t, vec2<u32>(i % 4096u, i / 4096u));
}

@compute @workgroup_size(64)
fn relu_forward_t(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.n / 4u { return; }
    out4[i] = max(texel(x_tex, i), vec4<f32>(0.0));
}

@compute @workgroup_size(64)
fn relu_backward_t(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.n / 4u { return; }
    out4[i] = select(vec4<f32>(0.0), texel(y_tex, i), texel(x_tex, i) > vec4<f32>(0.0));
}

@compute @workgroup_size(64)
fn tanh_forward_t(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.n / 4u { return; }
    out4[i] = tanh(texel(x_tex, i));
}

@compute @workgroup_size(64)
fn tanh_backward_t(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.n / 4u { return; }
    let y = texel(x_tex, i);
    out4[i] = texel(y_tex, i) * (vec4<f32>(1.0) - y * y);
}

@compute @workgroup_size(64)
fn add_t(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.n / 4u { return; }
    out4[i] = texel(x_tex, i) + texel(y_tex, i);
}

@compute @workgroup_size(64)
fn scale_t(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.n / 4u { return; }
    out4[i] = p.a * texel(x_tex, i);
}

@compute @workgroup_size(64)
fn axpy_t(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.n / 4u { return; }
    out4[i] = p.a * texel(x_tex, i) + texel(y_tex, i);
}

@compute @workgroup_size(64)
fn mul_t(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.n / 4u { return; }
    out4[i] = texel(x_tex, i) * texel(y_tex, i);
}
