"""Goldens for shaders/resample.wgsl: nearest upsampling by 2, 2x2 average and max pooling,
and the sum over H and W, each with the gradient of its input.

References (float64 autograd, NCHW, stored NHWC): F.interpolate(scale_factor=2,
mode="nearest"), F.avg_pool2d(x, 2), F.max_pool2d(x, 2), x.sum((2, 3)).
Shapes are [N, H, W, C]; C = 3 and 5 take the scalar kernels, C % 4 == 0 the vec4 ones.
"""

import torch
import torch.nn.functional as F

from common import Cases, nchw, nhwc, rand



# (N, H, W, C): any H, W for upsampling and the sum; even H, W for the pools.
# The last of each is more than 4096 vec4s (ANY: already at the coarse size, EVEN: at the fine
# size): on CPU adapters the kernels read it as a texture of more than one row.
ANY = [(3, 5, 5, 3), (3, 6, 6, 5), (3, 9, 9, 8), (2, 5, 7, 4), (2, 10, 10, 12), (1, 16, 17, 64)]
EVEN = [(3, 6, 6, 3), (3, 10, 10, 5), (3, 6, 6, 8), (2, 6, 10, 4), (2, 16, 16, 12), (2, 24, 24, 16)]


def name(shape):
    n, h, w, c = shape
    return f"n{n}h{h}w{w}c{c}"


def one(c, op, case, fn, x_nhwc, dy_seed, stored_input="x"):
    """Run fn on NCHW, store x, y, dy, dx (NHWC; 2-D outputs as they are)."""
    x = nchw(x_nhwc).requires_grad_()
    y = fn(x)
    dy = rand(dy_seed, *y.shape)
    (dx,) = torch.autograd.grad(y, x, dy)
    to_store = nhwc if y.dim() == 4 else (lambda t: t)
    key = f"{op}_{case}"
    c.add(key, stored_input, x_nhwc)
    c.add(key, "y", to_store(y))
    c.add(key, "dy", to_store(dy))
    c.add(key, "dx", nhwc(dx))


def generate():
    c = Cases()
    for i, shape in enumerate(ANY):
        x = rand(10 + i, *shape)
        one(c, "upsample", name(shape), lambda t: F.interpolate(t, scale_factor=2, mode="nearest"), x, 110 + i)
        one(c, "sumhw", name(shape), lambda t: t.sum((2, 3)), x, 210 + i)
    for i, shape in enumerate(EVEN):
        x = rand(30 + i, *shape)
        one(c, "avgpool", name(shape), lambda t: F.avg_pool2d(t, 2), x, 130 + i)
        # Normal float32 draws: ties inside a 2x2 window are (checked) absent.
        xn = nchw(x)
        blocks = xn.unfold(2, 2, 2).unfold(3, 2, 2).reshape(*xn.shape[:2], xn.shape[2] // 2, xn.shape[3] // 2, 4)
        top2 = blocks.topk(2, dim=-1).values
        assert (top2[..., 0] > top2[..., 1]).all(), "tie in a max-pool window"
        one(c, "maxpool", name(shape), lambda t: F.max_pool2d(t, 2), x, 150 + i)
    return c
