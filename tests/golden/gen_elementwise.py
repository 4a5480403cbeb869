"""Goldens for shaders/elementwise.wgsl: relu, tanh, add, scale, axpy, mul, device-scalar
axpy/scale, sum_all and dot, forward and backward."""

import torch

from common import Cases, rand


def generate():
    c = Cases()
    # n3h5w5c3 and n2h9w9c5 are not whole vec4s (scalar kernels everywhere); n2h6w6c4 and
    # n1h17w17c60 are, so CPU adapters take the vec4 kernels (both end in a partial
    # workgroup).
    shapes = [
        ("n3h5w5c3", (3, 5, 5, 3), 1),
        ("n2h9w9c5", (2, 9, 9, 5), 2),
        ("n2h6w6c4", (2, 6, 6, 4), 3),
        ("n1h17w17c60", (1, 17, 17, 60), 4),
    ]
    for case, shape, seed in shapes:
        x = rand(seed, *shape).requires_grad_()
        dy = rand(seed + 100, *shape)
        # ReLU: keep inputs away from 0 where the derivative is undefined.
        xr = torch.where(x.abs() < 1e-3, torch.full_like(x, 0.5), x).detach().requires_grad_()
        y = torch.relu(xr)
        (dx,) = torch.autograd.grad(y, xr, dy)
        c.add(f"relu_{case}", "x", xr)
        c.add(f"relu_{case}", "dy", dy)
        c.add(f"relu_{case}", "y", y)
        c.add(f"relu_{case}", "dx", dx)

        y = torch.tanh(x)
        (dx,) = torch.autograd.grad(y, x, dy)
        c.add(f"tanh_{case}", "x", x)
        c.add(f"tanh_{case}", "dy", dy)
        c.add(f"tanh_{case}", "y", y)
        c.add(f"tanh_{case}", "dx", dx)

        a = rand(seed + 200, *shape).requires_grad_()
        b = rand(seed + 300, *shape).requires_grad_()
        y = a + b
        da, db = torch.autograd.grad(y, (a, b), dy)
        c.add(f"add_{case}", "a", a)
        c.add(f"add_{case}", "b", b)
        c.add(f"add_{case}", "dy", dy)
        c.add(f"add_{case}", "y", y)
        c.add(f"add_{case}", "da", da)
        c.add(f"add_{case}", "db", db)

        s = -1.75
        y = s * a
        (da,) = torch.autograd.grad(y, a, dy)
        c.add(f"scale_{case}", "x", a)
        c.add(f"scale_{case}", "dy", dy)
        c.add(f"scale_{case}", "y", y)
        c.add(f"scale_{case}", "dx", da)

        y = 0.3 * a + b
        c.add(f"axpy_{case}", "x", a)
        c.add(f"axpy_{case}", "y_in", b)
        c.add(f"axpy_{case}", "out", y)
    generate_reductions(c)
    return c


def generate_reductions(c):
    """mul, device-scalar axpy/scale, sum_all and dot, with gradients."""
    for case, shape, seed in [("n3h5w5c3", (3, 5, 5, 3), 11), ("big", (1500, 3), 12)]:
        x = rand(seed, *shape).requires_grad_()
        y = rand(seed + 1, *shape).requires_grad_()
        dy = rand(seed + 2, *shape)
        s = rand(seed + 3, 1).requires_grad_()
        out = x * y
        dx, dyy = torch.autograd.grad(out, (x, y), dy)
        for k, v in dict(x=x, y=y, dy=dy, out=out, dx=dx, dy_in=dyy).items():
            c.add(f"mul_{case}", k, v)
        out = s * x + y
        ds, dx, dyy = torch.autograd.grad(out, (s, x, y), dy)
        for k, v in dict(s=s, x=x, y=y, dy=dy, out=out, ds=ds, dx=dx, dy_in=dyy).items():
            c.add(f"axpydev_{case}", k, v)
        g = rand(seed + 4, 1)
        total = x.sum().reshape(1)
        (dx,) = torch.autograd.grad(total, x, g)
        for k, v in dict(x=x, g=g, out=total, dx=dx).items():
            c.add(f"sumall_{case}", k, v)
        d = (x * y).sum().reshape(1)
        dx, dyy = torch.autograd.grad(d, (x, y), g)
        for k, v in dict(x=x, y=y, g=g, out=d, dx=dx, dy_in=dyy).items():
            c.add(f"dot_{case}", k, v)
