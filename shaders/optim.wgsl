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

const WG: u32 = 256u;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(256)
fn adam_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let g = src[i];
    let m = p.c0 * exp_avg[i] + p.c1 * g;
    let v = p.c2 * exp_avg_sq[i] + p.c3 * (g * g);
    exp_avg[i] = m;
    exp_avg_sq[i] = v;
    let denom = sqrt(v) * p.c5 + p.c6;
    dst[i] = dst[i] - p.c4 * (m / denom);
}

@compute @workgroup_size(256)
fn ema_update(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    dst[i] = p.c0 * dst[i] + p.c1 * src[i];
}
