// Spectral normalisation of a weight W viewed as a matrix [rows, cols] (PyTorch layout:
// rows = out, cols = in*kh*kw, row-major), with one power iteration per training forward.
//
// Forward (training):   t = W^T u        (sn_wt_u, one thread per column)
//                       v = t / max(|t|, eps)          (sn_normalize_v, one workgroup)
//                       s = W v          (sn_w_v, one workgroup per row)
//                       u' = s / max(|s|, eps); sigma = u' . s   (sn_finish_train, one workgroup)
//                       W_sn = W / sigma (sn_scale)
// Forward (eval):       same, but sn_finish_eval keeps u: sigma = u . s.
// Backward:             c = <G, W_sn>    (sn_dot_partial, then reduced inside sn_backward)
//                       dW = (G - c u v^T) / sigma      (sn_backward)
//
// On CPU adapters with subgroups, sn_forward_sg (spectral_norm_sg.wgsl) does the whole
// forward in one dispatch.
//
// Every reduction runs in a fixed order (strided per-thread sums, then a workgroup tree), so
// results are bitwise reproducible. No atomics.

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    // sn_dot_partial / sn_backward: number of partial sums and elements per partial.
    parts: u32,
    chunk: u32,
    // sn_forward_sg: 1 in training (power iteration, u updated), 0 in eval.
    train: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Weight W (forward) or W_sn (backward), [rows * cols].
@group(0) @binding(1) var<storage, read> w: array<f32>;
// u: persistent state (training forward writes it), or the saved u (backward).
@group(0) @binding(2) var<storage, read_write> u: array<f32>;
// t = W^T u before normalisation [cols] (forward) / G = dL/dW_sn (backward) [rows * cols].
@group(0) @binding(3) var<storage, read_write> t: array<f32>;
// v [cols].
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
// s = W v [rows] (forward) / partial sums of <G, W_sn> [parts] (backward).
@group(0) @binding(5) var<storage, read_write> s: array<f32>;
// Saved copy of u used by this call [rows].
@group(0) @binding(6) var<storage, read_write> u_saved: array<f32>;
// sigma [1].
@group(0) @binding(7) var<storage, read_write> sigma: array<f32>;
// W_sn (forward output) / dW (backward output) [rows * cols].
@group(0) @binding(8) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;
const ROW_WG: u32 = 64u;

var<workgroup> red: array<f32, 256>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// Tree sum of red[0..256] into red[0]; every thread must call it (barriers inside).
fn tree_sum(l: u32) {
    for (var k = WG / 2u; k > 0u; k = k / 2u) {
        workgroupBarrier();
        if l < k {
            red[l] = red[l] + red[l + k];
        }
    }
    workgroupBarrier();
}

// t[c] = sum_r W[r, c] u[r], rows in order.
@compute @workgroup_size(256)
fn sn_wt_u(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = index(gid, nwg);
    if c >= p.cols { return; }
    var acc = 0.0;
    for (var r = 0u; r < p.rows; r = r + 1u) {
        acc = acc + w[r * p.cols + c] * u[r];
    }
    t[c] = acc;
}

// v = t / max(|t|, eps). One workgroup.
@compute @workgroup_size(256)
fn sn_normalize_v(@builtin(local_invocation_index) l: u32) {
    var acc = 0.0;
    for (var i = l; i < p.cols; i = i + WG) {
        let x = t[i];
        acc = acc + x * x;
    }
    red[l] = acc;
    tree_sum(l);
    let inv = 1.0 / max(sqrt(red[0]), p.eps);
    for (var i = l; i < p.cols; i = i + WG) {
        v[i] = t[i] * inv;
    }
}

var<workgroup> red_row: array<f32, 64>;

// s[r] = sum_c W[r, c] v[c]. One workgroup of 64 per row (rows fold into x and y).
@compute @workgroup_size(64)
fn sn_w_v(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) l: u32) {
    let r = wid.x + wid.y * nwg.x;
    // r is uniform across the workgroup, so this return keeps barriers uniform.
    if r >= p.rows { return; }
    let base = r * p.cols;
    var acc = 0.0;
    for (var c = l; c < p.cols; c = c + ROW_WG) {
        acc = acc + w[base + c] * v[c];
    }
    red_row[l] = acc;
    for (var k = ROW_WG / 2u; k > 0u; k = k / 2u) {
        workgroupBarrier();
        if l < k {
            red_row[l] = red_row[l] + red_row[l + k];
        }
    }
    if l == 0u {
        s[r] = red_row[0];
    }
}

// u' = s / max(|s|, eps), sigma = u' . s; u' goes to the persistent u and to u_saved.
// One workgroup.
@compute @workgroup_size(256)
fn sn_finish_train(@builtin(local_invocation_index) l: u32) {
    var acc = 0.0;
    for (var i = l; i < p.rows; i = i + WG) {
        let x = s[i];
        acc = acc + x * x;
    }
    red[l] = acc;
    tree_sum(l);
    let inv = 1.0 / max(sqrt(red[0]), p.eps);
    // Everyone has read red[0] before it is overwritten below.
    workgroupBarrier();
    var dot = 0.0;
    for (var i = l; i < p.rows; i = i + WG) {
        let x = s[i];
        let un = x * inv;
        u[i] = un;
        u_saved[i] = un;
        dot = dot + un * x;
    }
    red[l] = dot;
    tree_sum(l);
    if l == 0u {
        sigma[0] = red[0];
    }
}

// sigma = u . s with the stored u, which is left as it is (and copied to u_saved).
// One workgroup.
@compute @workgroup_size(256)
fn sn_finish_eval(@builtin(local_invocation_index) l: u32) {
    var dot = 0.0;
    for (var i = l; i < p.rows; i = i + WG) {
        let x = u[i];
        u_saved[i] = x;
        dot = dot + x * s[i];
    }
    red[l] = dot;
    tree_sum(l);
    if l == 0u {
        sigma[0] = red[0];
    }
}

// out = W / sigma.
@compute @workgroup_size(256)
fn sn_scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.rows * p.cols { return; }
    out[i] = w[i] / sigma[0];
}

// s[k] = sum of G * W_sn over elements [k * chunk, min((k + 1) * chunk, n)), for k < parts.
// One workgroup per partial (x only; parts <= 256).
@compute @workgroup_size(256)
fn sn_dot_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32) {
    let k = wid.x;
    let n = p.rows * p.cols;
    let lo = k * p.chunk;
    let hi = min(lo + p.chunk, n);
    var acc = 0.0;
    for (var i = lo + l; i < hi; i = i + WG) {
        acc = acc + t[i] * w[i];
    }
    red[l] = acc;
    tree_sum(l);
    if l == 0u {
        s[k] = red[0];
    }
}

// dW = (G - c u v^T) / sigma with c = sum of the partials (reduced by each workgroup in the
// same fixed order, so every workgroup gets the same c).
@compute @workgroup_size(256)
fn sn_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) l: u32) {
    red[l] = select(0.0, s[min(l, p.parts - 1u)], l < p.parts);
    tree_sum(l);
    let c = red[0];
    let i = index(gid, nwg);
    if i >= p.rows * p.cols { return; }
    let r = i / p.cols;
    let col = i - r * p.cols;
    out[i] = (t[i] - c * u[r] * v[col]) / sigma[0];
}
