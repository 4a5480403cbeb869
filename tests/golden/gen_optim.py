"""Goldens for shaders/optim.wgsl: Adam (torch.optim.Adam, float64) and a weight EMA.

Adam: a [5, 7] parameter, three steps with stored gradients, for (beta1, beta2, lr) in
{(0.0, 0.999, 1e-3) (BigGAN), (0.9, 0.999, 4e-4)}, eps 1e-8; p, exp_avg and exp_avg_sq are
stored after every step. EMA: three updates of ema = d ema + (1 - d) p with a new p each
time, for d in {0.9, 0.999}.
"""

import torch

from common import Cases, rand


def generate():
    c = Cases()
    shape = (5, 7)
    for k, (name, b1, b2, lr) in enumerate(
        [("b0_lr1e-3", 0.0, 0.999, 1e-3), ("b09_lr4e-4", 0.9, 0.999, 4e-4)]
    ):
        seed = 100 * (k + 1)
        case = f"adam_{name}"
        p = rand(seed, *shape).requires_grad_()
        c.add(case, "p0", p)
        c.add(case, "config", torch.tensor([lr, b1, b2, 1e-8], dtype=torch.float64))
        opt = torch.optim.Adam([p], lr=lr, betas=(b1, b2), eps=1e-8, foreach=False)
        for step in range(1, 4):
            # Gradients of different sizes per step, so the bias corrections matter.
            g = rand(seed + step, *shape, scale=0.5 * step)
            p.grad = g.clone()
            opt.step()
            st = opt.state[p]
            c.add(case, f"g{step}", g)
            c.add(case, f"p{step}", p)
            c.add(case, f"m{step}", st["exp_avg"])
            c.add(case, f"v{step}", st["exp_avg_sq"])

    for k, (name, d) in enumerate([("d09", 0.9), ("d0999", 0.999)]):
        seed = 500 + 10 * k
        case = f"ema_{name}"
        ema = rand(seed, *shape)
        c.add(case, "ema0", ema)
        c.add(case, "decay", torch.tensor([d], dtype=torch.float64))
        for step in range(1, 4):
            p = rand(seed + step, *shape)
            ema = d * ema + (1 - d) * p
            c.add(case, f"p{step}", p)
            c.add(case, f"ema{step}", ema)
    return c
