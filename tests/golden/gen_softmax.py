"""Goldens for shaders/softmax.wgsl: row softmax of a 2-D [R, C] tensor and its backward."""

import torch
import torch.nn.functional as F

from common import Cases, rand


def generate():
    c = Cases()
    # C = 5, 9: scalar kernels; C = 100, 12: the vec4 kernels (C % 4 == 0); R = 70 crosses a
    # workgroup (64 rows).
    # (300, 64) is more than 4096 vec4s: CPU adapters read it as a texture of several rows.
    for (r, cols), seed in [((3, 5), 1), ((12, 9), 2), ((4, 100), 3), ((70, 12), 4), ((300, 64), 5)]:
        # Scale 3 spreads the probabilities (some near 0, some near 1).
        x = rand(seed, r, cols, scale=3.0).requires_grad_()
        dy = rand(seed + 100, r, cols)
        y = F.softmax(x, dim=1)
        (dx,) = torch.autograd.grad(y, x, dy)
        name = f"softmax_r{r}c{cols}"
        c.add(name, "x", x)
        c.add(name, "dy", dy)
        c.add(name, "y", y)
        c.add(name, "dx", dx)
    return c
