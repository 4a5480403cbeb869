"""Goldens for shaders/batchnorm.wgsl: batch norm over NHWC, training mode (batch statistics)
and inference mode (stored statistics), each with the conditional affine
x_hat * (1 + gain[n, c]) + bias[n, c] and the per-channel affine x_hat * weight[c] + bias[c].

Reference: F.batch_norm without affine (training=True, or training=False with running
statistics), then the affine formula, all in float64; gradients by torch.autograd.grad.
Channel 0 of x is scaled down so its variance (about 1e-4) is comparable with eps.
"""

import torch
import torch.nn.functional as F

from common import Cases, nhwc, rand, uniform


# (N, C, H=W, eps). The first three at both eps; the last two cross the runtime's chunking
# (several chunks with a short last one; C % 4 == 0 for the vec4 kernels; C > 64 threads).
SHAPES = [
    (3, 5, 6, 1e-4),
    (3, 5, 6, 1e-5),
    (2, 8, 5, 1e-4),
    (2, 8, 5, 1e-5),
    (4, 3, 9, 1e-4),
    (4, 3, 9, 1e-5),
    (3, 16, 7, 1e-5),
    (2, 68, 3, 1e-4),
    # More than 4096 vec4s: CPU adapters read x and dy as textures of more than one row.
    (2, 32, 18, 1e-5),
]


def inputs(seed, n, c, h):
    # Per-channel offsets and spreads, channel 0 nearly constant.
    spread = uniform(seed + 1, c, lo=0.5, hi=2.0)
    spread[0] = 0.01
    offset = rand(seed + 2, c, scale=2.0)
    x = rand(seed, n, c, h, h) * spread[None, :, None, None] + offset[None, :, None, None]
    dy = rand(seed + 3, n, c, h, h)
    return x, dy


def generate():
    c_ = Cases()
    for i, (n, c, h, eps) in enumerate(SHAPES):
        seed = 1000 + 20 * i
        x0, dy = inputs(seed, n, c, h)
        # x0 came from float32 values through float64 arithmetic: round once to float32
        # so that the stored input is exactly the reference's input.
        x0 = x0.float().double()
        tag = f"n{n}c{c}h{h}e{round(-torch.log10(torch.tensor(eps)).item())}"
        gain = rand(seed + 4, n, c, scale=0.3)
        cbias = rand(seed + 5, n, c, scale=0.3)
        weight = 1.0 + rand(seed + 6, c, scale=0.3)
        wbias = rand(seed + 7, c, scale=0.3)
        rmean = rand(seed + 8, c, scale=0.5)
        rvar = uniform(seed + 9, c, lo=0.5, hi=2.0)
        rvar[0] = 2e-4

        for mode in ("train", "eval"):
            for form in ("cond", "chan"):
                case = f"{mode}_{form}_{tag}"
                x = x0.clone().requires_grad_()
                if form == "cond":
                    s = gain.clone().requires_grad_()
                    b = cbias.clone().requires_grad_()
                else:
                    s = weight.clone().requires_grad_()
                    b = wbias.clone().requires_grad_()
                if mode == "train":
                    xh = F.batch_norm(x, None, None, training=True, eps=eps)
                else:
                    xh = F.batch_norm(x, rmean, rvar, training=False, eps=eps)
                if form == "cond":
                    out = xh * (1 + s[:, :, None, None]) + b[:, :, None, None]
                else:
                    out = xh * s[None, :, None, None] + b[None, :, None, None]
                dx, ds, db = torch.autograd.grad(out, (x, s, b), dy)

                c_.add(case, "x", nhwc(x))
                c_.add(case, "dy", nhwc(dy))
                c_.add(case, "eps", torch.tensor([eps]))
                c_.add(case, "gain" if form == "cond" else "weight", s)
                c_.add(case, "bias", b)
                c_.add(case, "out", nhwc(out))
                # BN followed by ReLU (the generator's fused pass).
                c_.add(case, "out_relu", nhwc(F.relu(out)))
                c_.add(case, "dx", nhwc(dx))
                c_.add(case, "dgain" if form == "cond" else "dweight", ds)
                c_.add(case, "dbias", db)
                if mode == "train":
                    c_.add(case, "batch_mean", x0.mean(dim=(0, 2, 3)))
                    c_.add(case, "batch_var", x0.var(dim=(0, 2, 3), unbiased=False))
                else:
                    c_.add(case, "mean", rmean)
                    c_.add(case, "var", rvar)
    return c_
