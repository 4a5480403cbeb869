// Resampling of NHWC activations by a factor of two, and the sum over H and W.
//
// The 2x ops all pair a "coarse" tensor [N, Hc, Wc, C] with a "fine" one [N, 2Hc, 2Wc, C]:
// coarse pixel (n, h, w) covers fine pixels (n, 2h + dh, 2w + dw), dh, dw in {0, 1}.
// One thread per coarse element does the whole 2x2 block:
//   spread:      fine block = a * coarse value       (upsample2x a = 1; avgpool backward a = 1/4)
//   gather_sum:  coarse = a * sum of the fine block  (avgpool a = 1/4; upsample backward a = 1)
//   maxpool_forward / maxpool_backward (first maximum in scan order, as PyTorch).
// sum_hw: one thread per (n, c) loops over H*W pixels in a fixed order (four partial sums).
//
// Each entry point has a scalar form and a `_v4` form; the `_v4` form moves four channels at
// once through array<vec4<f32>> and needs C % 4 == 0 (its `c` is then C / 4).
//
// Params: total = number of threads' work items; wc = coarse width (2x ops) or H*W (sum ops);
// c = channel units per pixel (channels, or channels / 4); a = scale factor (f32 bits).

struct Params {
    total: u32,
    wc: u32,
    c: u32,
    a: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> src2: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<storage, read> src_v: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> src2_v: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> dst_v: array<vec4<f32>>;

const WG: u32 = 256u;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// Index of the top-left fine element of coarse element t.
fn fine_base(t: u32) -> u32 {
    let ch = t % p.c;
    let pix = t / p.c;
    let w = pix % p.wc;
    let nh = pix / p.wc; // n * Hc + h
    return ((2u * nh) * (2u * p.wc) + 2u * w) * p.c + ch;
}

// Distance between fine rows, in units.
fn fine_row() -> u32 {
    return 2u * p.wc * p.c;
}

// ---- spread: src coarse -> dst fine, each of the four = a * src ----

@compute @workgroup_size(256)
fn spread(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.total { return; }
    let v = p.a * src[t];
    let b = fine_base(t);
    let r = fine_row();
    dst[b] = v;
    dst[b + p.c] = v;
    dst[b + r] = v;
    dst[b + r + p.c] = v;
}

// Loads outside any branch (threads past the end load element total - 1 and store nothing):
// lavapipe loads from a storage buffer lane by lane inside a branch and at full speed outside
// any (see elementwise.wgsl); other adapters lose nothing.
@compute @workgroup_size(256)
fn spread_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = min(index(gid, nwg), p.total - 1u);
    let v = p.a * src_v[t];
    if index(gid, nwg) >= p.total { return; }
    let b = fine_base(t);
    let r = fine_row();
    dst_v[b] = v;
    dst_v[b + p.c] = v;
    dst_v[b + r] = v;
    dst_v[b + r + p.c] = v;
}

// ---- gather_sum: src fine -> dst coarse = a * (sum of the 2x2 block) ----

@compute @workgroup_size(256)
fn gather_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.total { return; }
    let b = fine_base(t);
    let r = fine_row();
    let s = (src[b] + src[b + p.c]) + (src[b + r] + src[b + r + p.c]);
    dst[t] = p.a * s;
}

// As spread_v4, loads outside any branch.
@compute @workgroup_size(256)
fn gather_sum_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = min(index(gid, nwg), p.total - 1u);
    let b = fine_base(t);
    let r = fine_row();
    let s = (src_v[b] + src_v[b + p.c]) + (src_v[b + r] + src_v[b + r + p.c]);
    if index(gid, nwg) >= p.total { return; }
    dst_v[t] = p.a * s;
}

// ---- maxpool_forward: src fine -> dst coarse = max of the block ----

@compute @workgroup_size(256)
fn maxpool_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.total { return; }
    let b = fine_base(t);
    let r = fine_row();
    dst[t] = max(max(src[b], src[b + p.c]), max(src[b + r], src[b + r + p.c]));
}

@compute @workgroup_size(256)
fn maxpool_forward_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.total { return; }
    let b = fine_base(t);
    let r = fine_row();
    dst_v[t] = max(max(src_v[b], src_v[b + p.c]), max(src_v[b + r], src_v[b + r + p.c]));
}

// ---- maxpool_backward: src = forward input x (fine), src2 = dy (coarse), dst = dx (fine).
// The gradient goes to the first maximum in the order (0,0), (0,1), (1,0), (1,1); a later
// element must be strictly greater to take it. The other three get 0.

@compute @workgroup_size(256)
fn maxpool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.total { return; }
    let b = fine_base(t);
    let r = fine_row();
    let i0 = b;
    let i1 = b + p.c;
    let i2 = b + r;
    let i3 = b + r + p.c;
    var best = src[i0];
    var arg = 0u;
    let v1 = src[i1];
    if v1 > best { best = v1; arg = 1u; }
    let v2 = src[i2];
    if v2 > best { best = v2; arg = 2u; }
    let v3 = src[i3];
    if v3 > best { arg = 3u; }
    let g = src2[t];
    dst[i0] = select(0.0, g, arg == 0u);
    dst[i1] = select(0.0, g, arg == 1u);
    dst[i2] = select(0.0, g, arg == 2u);
    dst[i3] = select(0.0, g, arg == 3u);
}

@compute @workgroup_size(256)
fn maxpool_backward_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.total { return; }
    let b = fine_base(t);
    let r = fine_row();
    let i0 = b;
    let i1 = b + p.c;
    let i2 = b + r;
    let i3 = b + r + p.c;
    var best = src_v[i0];
    var arg = vec4<u32>(0u);
    let v1 = src_v[i1];
    let m1 = v1 > best;
    best = select(best, v1, m1);
    arg = select(arg, vec4<u32>(1u), m1);
    let v2 = src_v[i2];
    let m2 = v2 > best;
    best = select(best, v2, m2);
    arg = select(arg, vec4<u32>(2u), m2);
    let m3 = src_v[i3] > best;
    arg = select(arg, vec4<u32>(3u), m3);
    let g = src2_v[t];
    let z = vec4<f32>(0.0);
    dst_v[i0] = select(z, g, arg == vec4<u32>(0u));
    dst_v[i1] = select(z, g, arg == vec4<u32>(1u));
    dst_v[i2] = select(z, g, arg == vec4<u32>(2u));
    dst_v[i3] = select(z, g, arg == vec4<u32>(3u));
}

// ---- sum_hw: src [N, HW, C] -> dst [N, C]; total = N * c, wc = HW ----

@compute @workgroup_size(256)
fn sum_hw(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.total { return; }
    let ch = t % p.c;
    let n = t / p.c;
    let hw = p.wc;
    var base = n * hw * p.c + ch;
    var s0 = 0.0;
    var s1 = 0.0;
    var s2 = 0.0;
    var s3 = 0.0;
    var i = 0u;
    for (; i + 4u <= hw; i += 4u) {
        s0 += src[base];
        s1 += src[base + p.c];
        s2 += src[base + 2u * p.c];
        s3 += src[base + 3u * p.c];
        base += 4u * p.c;
    }
    for (; i < hw; i += 1u) {
        s0 += src[base];
        base += p.c;
    }
    dst[t] = (s0 + s1) + (s2 + s3);
}

@compute @workgroup_size(256)
fn sum_hw_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.total { return; }
    let ch = t % p.c;
    let n = t / p.c;
    let hw = p.wc;
    var base = n * hw * p.c + ch;
    var s0 = vec4<f32>(0.0);
    var s1 = vec4<f32>(0.0);
    var s2 = vec4<f32>(0.0);
    var s3 = vec4<f32>(0.0);
    var i = 0u;
    for (; i + 4u <= hw; i += 4u) {
        s0 += src_v[base];
        s1 += src_v[base + p.c];
        s2 += src_v[base + 2u * p.c];
        s3 += src_v[base + 3u * p.c];
        base += 4u * p.c;
    }
    for (; i < hw; i += 1u) {
        s0 += src_v[base];
        base += p.c;
    }
    dst_v[t] = (s0 + s1) + (s2 + s3);
}

// ---- sum_hw_backward: src = dy [N, C] -> dst [N, HW, C] (broadcast); total = N * HW * c ----

@compute @workgroup_size(256)
fn sum_hw_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.total { return; }
    let ch = t % p.c;
    let n = t / (p.wc * p.c);
    dst[t] = src[n * p.c + ch];
}

@compute @workgroup_size(256)
fn sum_hw_backward_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.total { return; }
    let ch = t % p.c;
    let n = t / (p.wc * p.c);
    dst_v[t] = src_v[n * p.c + ch];
}
