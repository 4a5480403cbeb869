"""Goldens for shaders/gemm.wgsl: linear (y = x w^T + b), batched matmul with every transpose
combination, and column sums, forward and backward, from float64 PyTorch autograd.

Shapes: linear (N, in, out) = (3, 5, 7), (5, 33, 17), (2, 64, 10), (1, 1, 1), each with and
without bias, and (3, 8, 12) whose sizes take the vec4 kernels (bias added in the vec4 store).
bmm (B, M, K, N) = (3, 5, 9, 6) for nn, nt, tn, tt; (2, 37, 41, 29) crossing the 16 x 16
per-thread blocks and their 4 x 4 sub-blocks (scalar kernels); (2, 36, 44, 40) and
(1, 8, 7, 12) whose sizes allow the vec4 kernels (the latter with K % 4 != 0, the tn case's k
remainder); (1, 1, 1, 1); four thin shapes with M or N past a workgroup's 128 x 128 tile.
In a bmm case, a is stored [B, K, M] when a is transposed (t) and [B, M, K] otherwise; b is
stored [B, N, K] when transposed and [B, K, N] otherwise.
"""

import torch
import torch.nn.functional as F

from common import Cases, rand


def linear_cases(c):
    seed = 10
    for n, fin, fout in [(3, 5, 7), (5, 33, 17), (2, 64, 10), (1, 1, 1), (3, 8, 12)]:
        for has_bias in (True, False):
            seed += 10
            case = f"linear_n{n}i{fin}o{fout}_{'bias' if has_bias else 'nobias'}"
            x = rand(seed, n, fin).requires_grad_()
            w = rand(seed + 1, fout, fin, scale=0.5).requires_grad_()
            b = rand(seed + 2, fout).requires_grad_() if has_bias else None
            dy = rand(seed + 3, n, fout)
            y = F.linear(x, w, b)
            inputs = (x, w, b) if has_bias else (x, w)
            grads = torch.autograd.grad(y, inputs, dy)
            c.add(case, "x", x)
            c.add(case, "w", w)
            if has_bias:
                c.add(case, "b", b)
                c.add(case, "db", grads[2])
            c.add(case, "dy", dy)
            c.add(case, "y", y)
            c.add(case, "dx", grads[0])
            c.add(case, "dw", grads[1])


def bmm_cases(c):
    shapes = [
        ((3, 5, 9, 6), ("nn", "nt", "tn", "tt")),
        ((2, 37, 41, 29), ("nn", "tt")),
        ((2, 36, 44, 40), ("nn", "tt")),
        ((1, 8, 7, 12), ("nn", "nt", "tn", "tt")),
        ((1, 1, 1, 1), ("nn", "tt")),
        # Past one workgroup's 128 x 128 tile, in rows and in columns, both kernel kinds.
        ((1, 133, 3, 12), ("nn",)),
        ((1, 132, 5, 8), ("tn",)),
        ((1, 8, 4, 132), ("tt",)),
        ((1, 6, 3, 131), ("nt",)),
        # Multiples of 4 everywhere (the subgroup kernels of CPU adapters take these), and
        # past their 128-row, 16-column workgroup tile.
        ((2, 12, 16, 20), ("nn", "nt", "tn", "tt")),
        ((1, 136, 8, 36), ("nt", "tn")),
        # No multiples of 4, batch*m*n*k past 2^16: CPU adapters with subgroups pad the operands to
        # multiples of 4 (m too when A is transposed) and crop C.
        ((2, 67, 37, 41), ("nn", "nt", "tn", "tt")),
    ]
    seed = 1000
    for (bs, m, k, n), flags in shapes:
        for f in flags:
            seed += 10
            ta, tb = f[0] == "t", f[1] == "t"
            case = f"bmm_b{bs}m{m}k{k}n{n}_{f}"
            a = rand(seed, *((bs, k, m) if ta else (bs, m, k))).requires_grad_()
            b = rand(seed + 1, *((bs, n, k) if tb else (bs, k, n))).requires_grad_()
            dc = rand(seed + 2, bs, m, n)
            opa = a.transpose(1, 2) if ta else a
            opb = b.transpose(1, 2) if tb else b
            out = torch.bmm(opa, opb)
            da, db = torch.autograd.grad(out, (a, b), dc)
            c.add(case, "a", a)
            c.add(case, "b", b)
            c.add(case, "dc", dc)
            c.add(case, "c", out)
            c.add(case, "da", da)
            c.add(case, "db", db)


def sum_rows_cases(c):
    # One pass (few rows) and two passes (many rows: partial sums, then their sum).
    for seed, (r, cols) in [(5000, (7, 5)), (5001, (1000, 6)), (5002, (3000, 1))]:
        case = f"sumrows_r{r}c{cols}"
        x = rand(seed, r, cols)
        c.add(case, "x", x)
        c.add(case, "y", x.sum(0))


def generate():
    c = Cases()
    linear_cases(c)
    bmm_cases(c)
    sum_rows_cases(c)
    return c
