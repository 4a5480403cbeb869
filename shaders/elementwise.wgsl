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
// For CPU adapters: the same ops four elements per invocation, loading outside any branch:
// invocations past the end load the last vec4 and store nothing. lavapipe loads from a
// storage buffer lane by lane inside a branch (an early return makes one) and at full speed
// outside any, so these read storage directly and beat a texture copy plus a texture read
// (docs/PERFORMANCE.md, session 17). Need n a multiple of 4; grid over n / 4 invocations.
@group(0) @binding(5) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> y4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> out4: array<vec4<f32>>;

fn index4(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return min(gid.x + gid.y * nwg.x * 64u, p.n / 4u - 1u);
}

fn live4(gid: vec3<u32>, nwg: vec3<u32>) -> bool {
    return gid.x + gid.y * nwg.x * 64u < p.n / 4u;
}

@compute @workgroup_size(64)
fn relu_forward_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index4(gid, nwg);
    let v = max(x4[i], vec4<f32>(0.0));
    if live4(gid, nwg) { out4[i] = v; }
}

@compute @workgroup_size(64)
fn relu_backward_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index4(gid, nwg);
    let v = select(vec4<f32>(0.0), y4[i], x4[i] > vec4<f32>(0.0));
    if live4(gid, nwg) { out4[i] = v; }
}

@compute @workgroup_size(64)
fn tanh_forward_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index4(gid, nwg);
    let v = tanh(x4[i]);
    if live4(gid, nwg) { out4[i] = v; }
}

@compute @workgroup_size(64)
fn tanh_backward_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index4(gid, nwg);
    let v = y4[i] * (vec4<f32>(1.0) - x4[i] * x4[i]);
    if live4(gid, nwg) { out4[i] = v; }
}

@compute @workgroup_size(64)
fn add_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index4(gid, nwg);
    let v = x4[i] + y4[i];
    if live4(gid, nwg) { out4[i] = v; }
}

@compute @workgroup_size(64)
fn scale_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index4(gid, nwg);
    let v = p.a * x4[i];
    if live4(gid, nwg) { out4[i] = v; }
}

@compute @workgroup_size(64)
fn axpy_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index4(gid, nwg);
    let v = p.a * x4[i] + y4[i];
    if live4(gid, nwg) { out4[i] = v; }
}

@compute @workgroup_size(64)
fn mul_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index4(gid, nwg);
    let v = x4[i] * y4[i];
    if live4(gid, nwg) { out4[i] = v; }
}
