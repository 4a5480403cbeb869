"""Goldens for shaders/spectral_norm.wgsl: spectral normalisation, training and eval forward,
and the weight gradient.

Reference (float64, as PyTorch's spectral_norm computes it): W seen as [out, rest];
v = normalize(W^T u), u' = normalize(W v) with u, v detached; sigma = u' . (W v) as an
autograd expression; W_sn = W / sigma; dW = autograd.grad(W_sn, W, G).
Training cases run three consecutive calls, u evolving; each call stores its u', v, sigma,
W_sn, G and dW. The eval case keeps u: v = normalize(W^T u), sigma = u . (W v).
"""

import torch
import torch.nn.functional as F

from common import Cases, rand

EPS = 1e-12


def f32(t):
    return t.float().double()


def sn_forward(w, u, training):
    wm = w.reshape(w.shape[0], -1)
    with torch.no_grad():
        v = F.normalize(wm.t() @ u, dim=0, eps=EPS)
        if training:
            u = F.normalize(wm @ v, dim=0, eps=EPS)
    sigma = torch.dot(u, wm @ v)
    return w / sigma, u, v, sigma


def generate():
    c = Cases()
    shapes = [
        ("lin7x5", (7, 5)),
        ("lin5x11", (5, 11)),
        ("conv8x5x3x3", (8, 5, 3, 3)),
        ("conv3x8x1x1", (3, 8, 1, 1)),
    ]
    for k, (name, shape) in enumerate(shapes):
        seed = 10 * (k + 1)
        w = rand(seed, *shape).requires_grad_()
        u = rand(seed + 1, shape[0])
        u = f32(u / u.norm())
        case = f"train_{name}"
        c.add(case, "w", w)
        c.add(case, "u_init", u)
        for step in range(3):
            g = rand(seed + 2 + step, *shape)
            w_sn, u, v, sigma = sn_forward(w, u, True)
            (dw,) = torch.autograd.grad(w_sn, w, g)
            c.add(case, f"g{step}", g)
            c.add(case, f"w_sn{step}", w_sn)
            c.add(case, f"u{step}", u)
            c.add(case, f"v{step}", v)
            c.add(case, f"sigma{step}", sigma.reshape(1))
            c.add(case, f"dw{step}", dw)

    # Eval mode, with a u that is not the top singular vector (a random unit vector).
    shape = (6, 4, 3, 3)
    w = rand(90, *shape).requires_grad_()
    u = rand(91, shape[0])
    u = f32(u / u.norm())
    g = rand(92, *shape)
    w_sn, _, v, sigma = sn_forward(w, u, False)
    (dw,) = torch.autograd.grad(w_sn, w, g)
    case = "eval_conv6x4x3x3"
    c.add(case, "w", w)
    c.add(case, "u", u)
    c.add(case, "g", g)
    c.add(case, "w_sn", w_sn)
    c.add(case, "v", v)
    c.add(case, "sigma", sigma.reshape(1))
    c.add(case, "dw", dw)
    return c
