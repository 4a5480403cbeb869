// Class embedding: row lookup E[ids], class interpolation (1 - t) * E[a] + t * E[b], and the
// backward passes. Table [K, D] row-major; ids i32 [N]; outputs [N, D].
// An id outside [0, K) reads as a zero row and receives no gradient.
// No atomics: a table gradient thread owns one (row, column) and loops over the batch in order.

struct Params {
    n: u32, // batch (ids)
    d: u32, // embedding width
    k: u32, // table rows
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read> ids_a: array<i32>;
@group(0) @binding(3) var<storage, read> ids_b: array<i32>;
@group(0) @binding(4) var<storage, read> t: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

fn valid(id: i32) -> bool {
    return id >= 0 && u32(id) < p.k;
}

// E[id][j], or 0 for an id out of range.
fn lookup(id: i32, j: u32) -> f32 {
    if valid(id) {
        return table[u32(id) * p.d + j];
    }
    return 0.0;
}

// out[i, j] = E[ids_a[i], j]; one thread per output element.
@compute @workgroup_size(64)
fn embedding_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = index(gid, nwg);
    if e >= p.n * p.d { return; }
    let i = e / p.d;
    let j = e - i * p.d;
    out[e] = lookup(ids_a[i], j);
}

// out[r, j] = sum over i with ids_a[i] == r of dy[i, j]; one thread per table element.
@compute @workgroup_size(64)
fn embedding_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = index(gid, nwg);
    if e >= p.k * p.d { return; }
    let r = i32(e / p.d);
    let j = e - u32(r) * p.d;
    var acc = 0.0;
    for (var i = 0u; i < p.n; i++) {
        if ids_a[i] == r {
            acc += dy[i * p.d + j];
        }
    }
    out[e] = acc;
}

// out[i, j] = (1 - t[i]) * E[ids_a[i], j] + t[i] * E[ids_b[i], j].
@compute @workgroup_size(64)
fn mix_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = index(gid, nwg);
    if e >= p.n * p.d { return; }
    let i = e / p.d;
    let j = e - i * p.d;
    let ti = t[i];
    out[e] = (1.0 - ti) * lookup(ids_a[i], j) + ti * lookup(ids_b[i], j);
}

// Table gradient of mix: out[r, j] = sum_i ((1 - t[i]) [ids_a[i] == r] + t[i] [ids_b[i] == r]) dy[i, j].
@compute @workgroup_size(64)
fn mix_backward_table(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = index(gid, nwg);
    if e >= p.k * p.d { return; }
    let r = i32(e / p.d);
    let j = e - u32(r) * p.d;
    var acc = 0.0;
    for (var i = 0u; i < p.n; i++) {
        let ti = t[i];
        let w = select(0.0, 1.0 - ti, ids_a[i] == r) + select(0.0, ti, ids_b[i] == r);
        if w != 0.0 {
            acc += w * dy[i * p.d + j];
        }
    }
    out[e] = acc;
}

// Gradient of mix with respect to t: out[i] = sum_j dy[i, j] * (E[ids_b[i], j] - E[ids_a[i], j]).
@compute @workgroup_size(64)
fn mix_backward_t(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let a = ids_a[i];
    let b = ids_b[i];
    var acc = 0.0;
    for (var j = 0u; j < p.d; j++) {
        acc += dy[i * p.d + j] * (lookup(b, j) - lookup(a, j));
    }
    out[i] = acc;
}
