"""Goldens for shaders/loss.wgsl: hinge losses for D and G, masked softmax cross-entropy,
argmax. Losses are one-element tensors; each gradient is that of the loss itself."""

import torch
import torch.nn.functional as F

from common import Cases, rand, randint, uniform


def away_from(x, kink, eps=1e-2):
    """Move values within eps of a kink of the hinge off it (the derivative is undefined there)."""
    near = (x - kink).abs() < eps
    return torch.where(near, x + 4 * eps, x)


def generate():
    c = Cases()
    # Hinge: values spread over both sides of the kinks (real at 1, fake at -1). The second case
    # has more elements than the 256 threads of the reduction.
    for case, n, m, seed in [("n5m7", 5, 7, 1), ("n300m513", 300, 513, 2)]:
        real = away_from(uniform(seed, n, lo=-1.0, hi=3.0), 1.0).requires_grad_()
        fake = away_from(uniform(seed + 10, m, lo=-3.0, hi=1.0), -1.0).requires_grad_()
        loss = F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        d_real, d_fake = torch.autograd.grad(loss, (real, fake))
        name = f"hinge_d_{case}"
        c.add(name, "real", real)
        c.add(name, "fake", fake)
        c.add(name, "loss", loss.reshape(1))
        c.add(name, "d_real", d_real)
        c.add(name, "d_fake", d_fake)

        loss = -fake.mean()
        (d_fake,) = torch.autograd.grad(loss, fake)
        name = f"hinge_g_{case}"
        c.add(name, "fake", fake)
        c.add(name, "loss", loss.reshape(1))
        c.add(name, "d_fake", d_fake)

    # Cross-entropy over the rows whose label is not -1, scaled by weight.
    for case, r, cols, weight, seed, masked in [
        ("r6c4", 6, 4, 1.0, 1, [1, 4]),
        ("r5c10", 5, 10, 0.2, 2, []),
        ("r4c4", 4, 4, 1.0, 3, [0, 1, 2, 3]),
        ("r300c7", 300, 7, 0.2, 4, list(range(0, 300, 3))),
    ]:
        logits = rand(seed, r, cols, scale=2.0).requires_grad_()
        labels = randint(seed + 10, 0, cols, r)
        labels[masked] = -1
        keep = labels >= 0
        if keep.any():
            loss = weight * F.cross_entropy(logits[keep], labels[keep])
        else:
            loss = (logits * 0).sum()  # no labelled row: loss 0, gradient 0
        (dlogits,) = torch.autograd.grad(loss, logits)
        name = f"ce_{case}"
        c.add(name, "logits", logits)
        c.add(name, "labels", labels)
        c.add(name, "weight", torch.tensor([weight], dtype=torch.float64))
        c.add(name, "loss", loss.reshape(1))
        c.add(name, "dlogits", dlogits)

    # Argmax over rows (random normals: no ties).
    for (r, cols), seed in [((6, 7), 5), ((70, 12), 6)]:
        x = rand(seed, r, cols)
        name = f"argmax_r{r}c{cols}"
        c.add(name, "x", x)
        c.add(name, "idx", torch.argmax(x, dim=1))
    return c
