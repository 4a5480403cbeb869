// Losses whose value and gradient stay on the device: hinge for D and for G, softmax
// cross-entropy with masked rows (label out of [0, C), e.g. -1), and row argmax.
// Reductions run in one workgroup of 256 threads: each thread sums a fixed strided subset in
// order, then a fixed tree combines the partial sums (deterministic, no atomics).

struct Params {
    n: u32,      // hinge: real count; cross-entropy and argmax: rows
    m: u32,      // hinge: fake count
    cols: u32,   // cross-entropy and argmax: columns (classes)
    weight: f32, // cross-entropy weight
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;       // real scores / fake scores (G) / logits
@group(0) @binding(2) var<storage, read> b: array<f32>;       // fake scores (D)
@group(0) @binding(3) var<storage, read> labels: array<i32>;
@group(0) @binding(4) var<storage, read_write> loss: array<f32>;  // one element
@group(0) @binding(5) var<storage, read_write> grad_a: array<f32>;
@group(0) @binding(6) var<storage, read_write> grad_b: array<f32>;
@group(0) @binding(7) var<storage, read_write> rows: array<f32>;  // cross-entropy scratch [2R + 1]
@group(0) @binding(8) var<storage, read_write> index_out: array<i32>;

const RED: u32 = 256u;
const WG: u32 = 64u;

var<workgroup> red: array<vec2<f32>, 256>;

fn index(gid: vec3<u32>, nwg: vec3<u32>, wg: u32) -> u32 {
    return gid.x + gid.y * nwg.x * wg;
}

// Sum of every thread's `v` in a fixed tree order; every thread gets the total.
fn reduce(lid: u32, v: vec2<f32>) -> vec2<f32> {
    red[lid] = v;
    workgroupBarrier();
    for (var s = RED / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    return red[0];
}

// D: loss = mean(relu(1 - real)) + mean(relu(1 + fake)); d_real = -[real < 1] / N,
// d_fake = [fake > -1] / M. One workgroup.
@compute @workgroup_size(256)
fn hinge_d(@builtin(local_invocation_index) lid: u32) {
    let gr = -1.0 / f32(p.n);
    let gf = 1.0 / f32(p.m);
    var sr = 0.0;
    for (var i = lid; i < p.n; i += RED) {
        let v = a[i];
        sr += max(1.0 - v, 0.0);
        grad_a[i] = select(0.0, gr, v < 1.0);
    }
    var sf = 0.0;
    for (var i = lid; i < p.m; i += RED) {
        let v = b[i];
        sf += max(1.0 + v, 0.0);
        grad_b[i] = select(0.0, gf, v > -1.0);
    }
    let tot = reduce(lid, vec2<f32>(sr, sf));
    if lid == 0u {
        loss[0] = tot.x / f32(p.n) + tot.y / f32(p.m);
    }
}

// G: loss = -mean(fake); d_fake = -1 / M. One workgroup.
@compute @workgroup_size(256)
fn hinge_g(@builtin(local_invocation_index) lid: u32) {
    let g = -1.0 / f32(p.m);
    var s = 0.0;
    for (var i = lid; i < p.m; i += RED) {
        s += a[i];
        grad_a[i] = g;
    }
    let tot = reduce(lid, vec2<f32>(s, 0.0));
    if lid == 0u {
        loss[0] = -tot.x / f32(p.m);
    }
}

fn labelled(lab: i32) -> bool {
    return lab >= 0 && u32(lab) < p.cols;
}

// Cross-entropy pass 1, one thread per row: rows[r] = logsumexp(logits[r]),
// rows[R + r] = logsumexp - logits[r, label] (0 on a masked row).
@compute @workgroup_size(64)
fn ce_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = index(gid, nwg, WG);
    if r >= p.n { return; }
    let base = r * p.cols;
    var mx = a[base];
    for (var c = 1u; c < p.cols; c++) {
        mx = max(mx, a[base + c]);
    }
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        s += exp(a[base + c] - mx);
    }
    let lse = mx + log(s);
    rows[r] = lse;
    let lab = labels[r];
    var l = 0.0;
    if labelled(lab) {
        l = lse - a[base + u32(lab)];
    }
    rows[p.n + r] = l;
}

// Cross-entropy pass 2, one workgroup: loss = weight * sum(row losses) / count (0 when no row
// is labelled); rows[2R] = weight / count (0 when none), the gradient scale.
@compute @workgroup_size(256)
fn ce_reduce(@builtin(local_invocation_index) lid: u32) {
    var s = 0.0;
    var cnt = 0.0;
    for (var r = lid; r < p.n; r += RED) {
        s += rows[p.n + r];
        cnt += select(0.0, 1.0, labelled(labels[r]));
    }
    let tot = reduce(lid, vec2<f32>(s, cnt));
    if lid == 0u {
        if tot.y > 0.0 {
            loss[0] = p.weight * (tot.x / tot.y);
            rows[2u * p.n] = p.weight / tot.y;
        } else {
            loss[0] = 0.0;
            rows[2u * p.n] = 0.0;
        }
    }
}

// Cross-entropy pass 3, one thread per logit: dlogits = scale * (softmax - onehot) on labelled
// rows, 0 on masked rows.
@compute @workgroup_size(256)
fn ce_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = index(gid, nwg, RED);
    if e >= p.n * p.cols { return; }
    let r = e / p.cols;
    let c = e - r * p.cols;
    let lab = labels[r];
    var g = 0.0;
    if labelled(lab) {
        let prob = exp(a[e] - rows[r]);
        g = rows[2u * p.n] * (prob - select(0.0, 1.0, u32(lab) == c));
    }
    grad_a[e] = g;
}

// Row argmax, one thread per row; ties go to the first index (strict >).
@compute @workgroup_size(64)
fn argmax_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = index(gid, nwg, WG);
    if r >= p.n { return; }
    let base = r * p.cols;
    var best = a[base];
    var bi = 0u;
    for (var c = 1u; c < p.cols; c++) {
        let v = a[base + c];
        if v > best {
            best = v;
            bi = c;
        }
    }
    index_out[r] = i32(bi);
}

// Projection labels with the class head's choice for unlabelled rows, one thread per row:
// index_out[r] = labels[r] when it names a class (in [0, C)), else the argmax of row r of
// the class logits (ties to the first index, as argmax_rows).
@compute @workgroup_size(64)
fn fill_unlabelled(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = index(gid, nwg, WG);
    if r >= p.n { return; }
    let lab = labels[r];
    if labelled(lab) {
        index_out[r] = lab;
        return;
    }
    let base = r * p.cols;
    var best = a[base];
    var bi = 0u;
    for (var c = 1u; c < p.cols; c++) {
        let v = a[base + c];
        if v > best {
            best = v;
            bi = c;
        }
    }
    index_out[r] = i32(bi);
}
