// Moves of whole elements, bit for bit (arrays of u32, so f32 and i32 tensors alike).
//
// copy_block: copy a [rows, width] block between two row-major matrices with their own row
//   strides and column offsets: dst[r * dst_stride + dst_off + j] = src[r * src_stride +
//   src_off + j]. Concatenation along the last axis is one copy_block per input into the
//   output's columns; splitting is one per output. `_v4` moves four columns at once (every
//   width, stride and offset then counted in units of four).
// resize_2d: copy [batch, r_in, c_in] into [batch, r_out, c_out], zero where the output
//   reaches past the input and dropping what lies past the output (zero padding or cropping
//   of the last two axes; the GEMM pads operands to multiples of 4 with it). With u5 = 1 the
//   input is read transposed: output (r, j) takes input (j, r) (the GEMM's transposes).
// rotate_*: per-image rotation of square NHWC images [N, S, S, C] by k * 90 degrees
//   counter-clockwise, as torch.rot90(img_nchw, k, dims=(2, 3)). One thread per output
//   element gathers its source element. k is taken modulo 4 (so -1 is 3); `inverse` rotates
//   by -k instead (the backward pass).

// Params at binding 0 (the runtime's one uniform), read through the named accessors below:
//   copy_block: u1 = width, u2 = src_stride, u3 = src_off, u4 = dst_stride, u5 = dst_off
//   rotate_*:   u1 = S (side), u2 = C, u3 = k (rotate_uniform), u4 = inverse (0 or 1)
//   resize_2d:  u1 = r_in, u2 = c_in, u3 = r_out, u4 = c_out, u5 = transposed (0 or 1)
struct Params {
    total: u32,
    u1: u32,
    u2: u32,
    u3: u32,
    u4: u32,
    u5: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;
@group(0) @binding(3) var<storage, read> src_v: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> dst_v: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> rot_k: array<i32>;

fn width() -> u32 { return p.u1; }
fn src_stride() -> u32 { return p.u2; }
fn src_off() -> u32 { return p.u3; }
fn dst_stride() -> u32 { return p.u4; }
fn dst_off() -> u32 { return p.u5; }
fn side() -> u32 { return p.u1; }
fn chans() -> u32 { return p.u2; }
fn k_all() -> u32 { return p.u3; }
fn inverse() -> bool { return p.u4 != 0u; }

const WG: u32 = 256u;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(256)
fn copy_block(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.total { return; }
    let r = t / width();
    let j = t % width();
    dst[r * dst_stride() + dst_off() + j] = src[r * src_stride() + src_off() + j];
}

@compute @workgroup_size(256)
fn copy_block_v4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.total { return; }
    let r = t / width();
    let j = t % width();
    dst_v[r * dst_stride() + dst_off() + j] = src_v[r * src_stride() + src_off() + j];
}

@compute @workgroup_size(256)
fn resize_2d(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.total { return; }
    let j = t % p.u4;
    let zr = t / p.u4;
    let r = zr % p.u3;
    let z = zr / p.u3;
    let flip = p.u5 != 0u;
    let sr = select(r, j, flip);
    let sc = select(j, r, flip);
    var v = 0u;
    if sr < p.u1 && sc < p.u2 {
        v = src[(z * p.u1 + sr) * p.u2 + sc];
    }
    dst[t] = v;
}

// Index in the source of output element t for a rotation by kk (0..3) quarter turns.
// With S the side, output pixel (i, j) of image n reads input pixel:
//   kk = 0: (i, j)   kk = 1: (j, S-1-i)   kk = 2: (S-1-i, S-1-j)   kk = 3: (S-1-j, i)
fn rot_source(t: u32, kk: u32) -> u32 {
    let ch = t % chans();
    let pix = t / chans();
    let j = pix % side();
    let ni = pix / side();
    let i = ni % side();
    let n = ni / side();
    let last = side() - 1u;
    var a = i;
    var b = j;
    if kk == 1u {
        a = j;
        b = last - i;
    } else if kk == 2u {
        a = last - i;
        b = last - j;
    } else if kk == 3u {
        a = last - j;
        b = i;
    }
    return ((n * side() + a) * side() + b) * chans() + ch;
}

fn quarter_turns(k: u32) -> u32 {
    return select(k & 3u, (4u - (k & 3u)) & 3u, inverse());
}

// k per image from rot_k (i32, [N]).
@compute @workgroup_size(256)
fn rotate_each(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.total { return; }
    let n = t / (side() * side() * chans());
    let kk = quarter_turns(bitcast<u32>(rot_k[n]));
    dst[t] = src[rot_source(t, kk)];
}

// One k (k_all()) for the whole batch.
@compute @workgroup_size(256)
fn rotate_uniform(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = index(gid, nwg);
    if t >= p.total { return; }
    dst[t] = src[rot_source(t, quarter_turns(k_all()))];
}
