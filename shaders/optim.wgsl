// Optimiser updates on flat f32 tensors, in place: parameters and optimiser state are
// persistent buffers bound read_write.
//
// adam_step (torch.optim.Adam, no weight decay, no amsgrad), step t >= 1:
//   m = beta1 m + (1 - beta1) g
//   v = beta2 v + (1 - beta2) g^2
//   p = p - step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps)
// with step_size = lr / (1 - beta1^t) and inv_sqrt_bc2 = 1 / sqrt(1 - beta2^t), computed on
// the host per step (torch: denom = sqrt(v) / sqrt(1 - beta2^t) + eps).
//
// ema_update: ema = decay ema + (1 - decay) p.
//
// Guarded variants for a train step that must be all or nothing: check_finite ORs the bits of
// 1.0 into a one-word flag when any value of src is NaN or infinite (so the flag reads as f32
// 0.0 or 1.0); adam_step_guarded, ema_update_guarded and copy_guarded do nothing when the flag
// is set, and restore_if_flagged copies src into dst only when it is set.
//
// One uniform layout serves both entry points; c0..c6 mean, per entry point:
//   adam_step:  beta1, 1 - beta1, beta2, 1 - beta2, step_size, inv_sqrt_bc2, eps
//   ema_update: decay, 1 - decay, (unused)...

struct Params {
    n: u32,
    c0: f32,
    c1: f32,
    c2: f32,
    c3: f32,
    c4: f32,
    c5: f32,
    c6: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
// adam_step: the parameter; ema_update: the averaged copy.
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
// adam_step: the gradient; ema_update: the live parameter.
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> exp_avg: array<f32>;
@group(0) @binding(4) var<storage, read_write> exp_avg_sq: array<f32>;
// The step's flag, set by check_finite (word 0) and read by the guarded entry points.
@group(0) @binding(5) var<storage, read_write> flag_out: array<atomic<u32>>;
@group(0) @binding(6) var<storage, read> flag_in: array<u32>;

const WG: u32 = 256u;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

fn adam_at(i: u32) {
    let g = src[i];
    let m = p.c0 * exp_avg[i] + p.c1 * g;
    let v = p.c2 * exp_avg_sq[i] + p.c3 * (g * g);
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    let denom = sqrt(v) * p.c5 + p.c6;
    dst[i] = dst[i] - p.c4 * (m / denom);
}

@compute @workgroup_size(256)
fn adam_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    adam_at(i);
}

@compute @workgroup_size(256)
fn adam_step_guarded(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n || flag_in[0] != 0u { return; }
    adam_at(i);
}

@compute @workgroup_size(256)
fn ema_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    dst[i] = p.c0 * dst[i] + p.c1 * src[i];
}

@compute @workgroup_size(256)
fn ema_update_guarded(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n || flag_in[0] != 0u { return; }
    dst[i] = p.c0 * dst[i] + p.c1 * src[i];
}

// Exponent bits all ones: infinite or NaN (a bit test, immune to fast-math folding).
fn not_finite(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) == 0x7f800000u;
}

@compute @workgroup_size(256)
fn check_finite(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    if not_finite(src[i]) {
        // The bits of 1.0: the flag reads as f32 1.0 once set.
        atomicOr(&flag_out[0], 0x3f800000u);
    }
}

@compute @workgroup_size(256)
fn copy_guarded(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n || flag_in[0] != 0u { return; }
    dst[i] = src[i];
}

@compute @workgroup_size(256)
fn restore_if_flagged(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n || flag_in[0] == 0u { return; }
    dst[i] = src[i];
}

// ---- several tensors per dispatch ----------------------------------------------------------
// check_finite7 checks up to 7 tensors, copy3_guarded and restore3_if_flagged copy up to 3
// (source, destination) pairs: a train step records a few dozen dispatches here instead of a
// few hundred. With the flag that makes 8 storage bindings, the WebGPU minimum. The lengths
// are the uniform's words: n, then c0..c6 read as u32 (a length of 0 leaves a slot unused).

@group(0) @binding(7) var<storage, read> t0: array<f32>;
@group(0) @binding(8) var<storage, read> t1: array<f32>;
@group(0) @binding(9) var<storage, read> t2: array<f32>;
@group(0) @binding(10) var<storage, read> t3: array<f32>;
@group(0) @binding(11) var<storage, read> t4: array<f32>;
@group(0) @binding(12) var<storage, read> t5: array<f32>;
@group(0) @binding(13) var<storage, read> t6: array<f32>;
@group(0) @binding(14) var<storage, read_write> d0: array<f32>;
@group(0) @binding(15) var<storage, read_write> d1: array<f32>;
@group(0) @binding(16) var<storage, read_write> d2: array<f32>;

fn flag_if_not_finite(x: f32) {
    if not_finite(x) {
        atomicOr(&flag_out[0], 0x3f800000u);
    }
}

@compute @workgroup_size(256)
fn check_finite7(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i < p.n { flag_if_not_finite(t0[i]); }
    if i < bitcast<u32>(p.c0) { flag_if_not_finite(t1[i]); }
    if i < bitcast<u32>(p.c1) { flag_if_not_finite(t2[i]); }
    if i < bitcast<u32>(p.c2) { flag_if_not_finite(t3[i]); }
    if i < bitcast<u32>(p.c3) { flag_if_not_finite(t4[i]); }
    if i < bitcast<u32>(p.c4) { flag_if_not_finite(t5[i]); }
    if i < bitcast<u32>(p.c5) { flag_if_not_finite(t6[i]); }
}

fn copy_pairs(i: u32) {
    if i < p.n { d0[i] = t0[i]; }
    if i < bitcast<u32>(p.c0) { d1[i] = t1[i]; }
    if i < bitcast<u32>(p.c1) { d2[i] = t2[i]; }
}

@compute @workgroup_size(256)
fn copy3_guarded(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    if flag_in[0] != 0u { return; }
    copy_pairs(index(gid, nwg));
}

@compute @workgroup_size(256)
fn restore3_if_flagged(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    if flag_in[0] == 0u { return; }
    copy_pairs(index(gid, nwg));
}

// ema_update_guarded for up to 3 (parameter t<k>, average d<k>) pairs; lengths in n, c0, c1,
// decay and 1 - decay in c2, c3 (as f32).
@compute @workgroup_size(256)
fn ema3_update_guarded(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    if flag_in[0] != 0u { return; }
    let i = index(gid, nwg);
    if i < p.n { d0[i] = p.c2 * d0[i] + p.c3 * t0[i]; }
    if i < bitcast<u32>(p.c0) { d1[i] = p.c2 * d1[i] + p.c3 * t1[i]; }
    if i < bitcast<u32>(p.c1) { d2[i] = p.c2 * d2[i] + p.c3 * t2[i]; }
}
