"""Goldens for the Fashion-MNIST evaluator (runtime/eval/): `python tests/golden/generate.py
evaluator` writes tests/golden/evaluator.safetensors.

- forward/*: the committed evaluator (runtime/eval/evaluator.safetensors, batch norm already
  folded) on eight images, computed in float64 from the float32 weights and images: the
  first six Fashion-MNIST test images, one uniform random image in [-1, 1] and one blank
  image (all -1). Features [8, 128] (mean of conv5's ReLU output), logits and softmax.
- first1000/*: labels and the float64 network's predictions for the first 1,000 test
  images, and its accuracy on them.
- fid/*: two sets of 200 random 128-long feature vectors (float32, different means and
  mixings), their mean and unbiased covariance (numpy, float64), and the Fréchet distance
  between the two Gaussians in float64, with the matrix square root from numpy's symmetric
  eigendecomposition (LAPACK); checked here against the eigenvalues of C1 C2 (a different
  route to tr sqrtm(C1 C2)).
- is/*: 200 random softmax rows over 10 classes and their Inception Score (one split).

Needs the Fashion-MNIST IDX files in /usr/share/datasets/fashion-mnist.
"""

import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

from common import HERE, Cases, nhwc, rand, uniform

ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import train_evaluator as te  # noqa: E402


def load_weights():
    from safetensors.torch import load_file

    w = load_file(os.path.join(ROOT, "runtime", "eval", "evaluator.safetensors"))
    return {k: v.double() for k, v in w.items()}


def fid_reference(mu1, c1, mu2, c2):
    def sqrtm_psd(a):
        lam, v = np.linalg.eigh(a)
        return (v * np.sqrt(np.clip(lam, 0, None))) @ v.T

    s1 = sqrtm_psd(c1)
    inner = s1 @ c2 @ s1
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)).sum()
    # Another route: the eigenvalues of C1 C2 are those of the inner matrix.
    other = np.sqrt(np.clip(np.linalg.eigvals(c1 @ c2).real, 0, None)).sum()
    assert abs(tr_sqrt - other) <= 1e-9 * abs(tr_sqrt), (tr_sqrt, other)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1) + np.trace(c2) - 2 * tr_sqrt)


def generate():
    c = Cases()
    w = load_weights()
    x, y = te.load("test")

    imgs = torch.cat([
        x[:6].double(),
        uniform(11, 1, 1, 32, 32),
        -torch.ones(1, 1, 32, 32, dtype=torch.float64),
    ])
    with torch.no_grad():
        feat, logits = te.folded_forward(w, imgs)
    c.add("forward", "images", nhwc(imgs))
    c.add("forward", "features", feat)
    c.add("forward", "logits", logits)
    c.add("forward", "probs", F.softmax(logits, dim=1))

    with torch.no_grad():
        _, logits = te.folded_forward(w, x[:1000].double())
    pred = logits.argmax(1)
    c.add("first1000", "labels", y[:1000])
    c.add("first1000", "predictions", pred)
    c.add("first1000", "accuracy", torch.tensor([(pred == y[:1000]).double().mean().item()]))

    d, n = 128, 200
    x1 = rand(21, n, d) @ (rand(22, d, d) / d**0.5) + rand(23, d, scale=0.5)
    x2 = rand(24, n, d) @ (rand(25, d, d) / d**0.5 + 0.3 * torch.eye(d, dtype=torch.float64))
    x1, x2 = x1.float().numpy(), x2.float().numpy()
    stats = []
    for name, feats in (("x1", x1), ("x2", x2)):
        f64 = feats.astype(np.float64)
        mu, cov = f64.mean(0), np.cov(f64, rowvar=False)
        stats.append((mu, cov))
        c.add("fid", name, torch.from_numpy(feats))
        c.add("fid", f"mean_{name}", torch.from_numpy(mu))
        c.add("fid", f"cov_{name}", torch.from_numpy(cov))
    value = fid_reference(*stats[0], *stats[1])
    c.add("fid", "value", torch.tensor([value]))

    logits = rand(31, 200, 10, scale=2.0)
    probs = F.softmax(logits.float(), dim=1).double()
    q = probs.mean(0, keepdim=True)
    kl = (probs * (probs.log() - q.log())).sum(1).mean()
    c.add("is", "probs", probs)
    c.add("is", "value", torch.tensor([kl.exp().item()]))
    return c
