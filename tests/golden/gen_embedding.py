"""Goldens for shaders/embedding.wgsl: embedding lookup, class interpolation (embedding_mix),
and their backward passes (every gradient: the table and the mixing weights t)."""

import torch
import torch.nn.functional as F

from common import Cases, rand, randint, uniform


def generate():
    c = Cases()
    # (case, K, D, N, seed); the second case has more threads than one workgroup.
    for case, k, d, n, seed in [("k7d5n9", 7, 5, 9, 1), ("k40d16n70", 40, 16, 70, 2)]:
        table = rand(seed, k, d).requires_grad_()
        ids = randint(seed + 10, 0, k, n)
        if n >= 4:
            # Repeated ids, and one id used three times, so the backward pass must sum.
            ids[3] = ids[0]
            ids[n - 1] = ids[0]
        dy = rand(seed + 20, n, d)
        y = F.embedding(ids, table)
        (dtable,) = torch.autograd.grad(y, table, dy)
        name = f"embedding_{case}"
        c.add(name, "table", table)
        c.add(name, "ids", ids)
        c.add(name, "dy", dy)
        c.add(name, "y", y)
        c.add(name, "dtable", dtable)

        ids_b = randint(seed + 30, 0, k, n)
        ids_b[1] = ids[1]  # a == b: both terms land on one row
        t = uniform(seed + 40, n, lo=0.0, hi=1.0).requires_grad_()
        ta = t.unsqueeze(1)
        y = (1 - ta) * F.embedding(ids, table) + ta * F.embedding(ids_b, table)
        dtable, dt = torch.autograd.grad(y, (table, t), dy)
        name = f"mix_{case}"
        c.add(name, "table", table)
        c.add(name, "ids_a", ids)
        c.add(name, "ids_b", ids_b)
        c.add(name, "t", t)
        c.add(name, "dy", dy)
        c.add(name, "y", y)
        c.add(name, "dtable", dtable)
        c.add(name, "dt", dt)
    return c
