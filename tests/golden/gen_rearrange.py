"""Goldens for shaders/rearrange.wgsl: concatenation and splitting along channels,
per-image rotation by multiples of 90 degrees, zero padding / cropping of the last two
axes (resize_2d) and the same of their transpose (transpose_2d), each with the gradients of
its inputs.

References (float64 autograd): torch.cat(dim=1), torch.split(dim=1), torch.rot90(dims=(2, 3))
in NCHW; NHWC tensors are stored NHWC, 2-D [N, C] tensors as they are.
"""

import torch
import torch.nn.functional as F

from common import Cases, nchw, nhwc, rand



# Concatenation: (case, leading shape, channel counts). 4-aligned channel counts take the
# vec4 copy kernel, others the scalar one; 2-D cases are [N, C] (BigGAN's concat(z_i, e)).
CONCAT = [
    ("nhwc_c3_5", (3, 5, 5), [3, 5]),
    ("nhwc_c3_5_8", (3, 6, 6), [3, 5, 8]),
    ("nhwc_c8_4_3_5", (3, 9, 9), [8, 4, 3, 5]),
    ("nhwc_c4_8", (2, 6, 6), [4, 8]),
    ("2d_c20_128", (3,), [20, 128]),
    ("2d_c7_5", (3,), [7, 5]),
]

# Rotation: (case, k per image, S, C).
ROTATE = [
    ("k0123_s5_c3", [0, 1, 2, 3], 5, 3),
    ("k0123_s6_c3", [0, 1, 2, 3], 6, 3),
    ("krep_s5_c5", [3, 1, 1, 0, 2, 3], 5, 5),
    ("krep_s6_c8", [2, 2, 1, 3, 3, 0], 6, 8),
]


# resize_2d: (B, R, C, R', C'): pad both axes, crop both, pad one and crop the other.
RESIZE = [
    (2, 3, 5, 4, 8),
    (2, 6, 7, 4, 5),
    (3, 5, 2, 8, 1),
]

# transpose_2d: (B, R, C, R', C'): x [B, R, C] transposed to [B, C, R], then padded or
# cropped to [B, R', C']: exact, padded, cropped, and one of each.
TRANSPOSE = [
    (2, 3, 5, 5, 3),
    (3, 7, 6, 8, 9),
    (2, 6, 9, 4, 5),
    (1, 5, 2, 4, 3),
]


def store_nhwc(t):
    return nhwc(t) if t.dim() == 4 else t


def to_torch(t):
    """Stored layout -> PyTorch layout (channels at dim 1)."""
    return nchw(t) if t.dim() == 4 else t


def generate():
    c = Cases()
    for ci, (case, lead, chans) in enumerate(CONCAT):
        key = f"concat_{case}"
        xs = [to_torch(rand(100 * ci + j, *lead, ch)).requires_grad_() for j, ch in enumerate(chans)]
        y = torch.cat(xs, dim=1)
        dy = rand(100 * ci + 50, *y.shape)
        grads = torch.autograd.grad(y, xs, dy)
        for j, (x, g) in enumerate(zip(xs, grads)):
            c.add(key, f"x{j}", store_nhwc(x))
            c.add(key, f"dx{j}", store_nhwc(g))
        c.add(key, "y", store_nhwc(y))
        c.add(key, "dy", store_nhwc(dy))
        c.add(key, "sizes", torch.tensor(chans))

        key = f"split_{case}"
        x = to_torch(rand(100 * ci + 60, *lead, sum(chans))).requires_grad_()
        ys = torch.split(x, chans, dim=1)
        dys = [rand(100 * ci + 70 + j, *yj.shape) for j, yj in enumerate(ys)]
        (dx,) = torch.autograd.grad(ys, x, dys)
        c.add(key, "x", store_nhwc(x))
        c.add(key, "dx", store_nhwc(dx))
        c.add(key, "sizes", torch.tensor(chans))
        for j, (yj, dyj) in enumerate(zip(ys, dys)):
            c.add(key, f"y{j}", store_nhwc(yj))
            c.add(key, f"dy{j}", store_nhwc(dyj))

    for ri, (case, ks, s, ch) in enumerate(ROTATE):
        key = f"rotate_{case}"
        n = len(ks)
        x = nchw(rand(500 + ri, n, s, s, ch)).requires_grad_()
        y = torch.cat([torch.rot90(x[i : i + 1], ks[i], dims=(2, 3)) for i in range(n)])
        dy = rand(600 + ri, *y.shape)
        (dx,) = torch.autograd.grad(y, x, dy)
        c.add(key, "x", nhwc(x))
        c.add(key, "k", torch.tensor(ks))
        c.add(key, "y", nhwc(y))
        c.add(key, "dy", nhwc(dy))
        c.add(key, "dx", nhwc(dx))

    # One k for the whole batch.
    for k in range(4):
        key = f"rotall_k{k}"
        x = nchw(rand(700 + k, 2, 5, 5, 3)).requires_grad_()
        y = torch.rot90(x, k, dims=(2, 3))
        dy = rand(800 + k, *y.shape)
        (dx,) = torch.autograd.grad(y, x, dy)
        c.add(key, "x", nhwc(x))
        c.add(key, "k", torch.tensor([k]))
        c.add(key, "y", nhwc(y))
        c.add(key, "dy", nhwc(dy))
        c.add(key, "dx", nhwc(dx))

    # resize_2d of [B, R, C] to [B, R', C']: zero padding (F.pad) where it grows, slicing
    # where it shrinks; the gradient of one is the other. transpose_2d: the same of
    # x.transpose(1, 2).
    for name, cases, seed, transposed in (
        ("resize", RESIZE, 900, False),
        ("transpose", TRANSPOSE, 1000, True),
    ):
        for i, (b, r, cc, r2, c2) in enumerate(cases):
            key = f"{name}_b{b}r{r}c{cc}_to_r{r2}c{c2}"
            x = rand(seed + i, b, r, cc).requires_grad_()
            t = x.transpose(1, 2) if transposed else x
            rows, cols = t.shape[1], t.shape[2]
            y = F.pad(t[:, : min(rows, r2), : min(cols, c2)], (0, max(c2 - cols, 0), 0, max(r2 - rows, 0)))
            dy = rand(seed + 50 + i, b, r2, c2)
            (dx,) = torch.autograd.grad(y, x, dy)
            c.add(key, "x", x)
            c.add(key, "y", y)
            c.add(key, "dy", dy)
            c.add(key, "dx", dx)
            c.add(key, "sizes", torch.tensor([b, r, cc, r2, c2]))
    return c
