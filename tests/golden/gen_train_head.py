"""Class-head fit golden: tests/reference/s3gan.py's fit_class_head (float64,
torch.optim.Adam) on the tiny discriminator of biggan.py -> tests/golden/train_head.safetensors.

Case "fit" (N = 8 grey 16x16 images, labels [0, -1, 2, 1, -1, 2, 0, 1], 3 steps, lr 1e-2,
Adam (0.9, 0.999, 1e-8), every labelled row in each step):
  before.D.<name>      every tensor of D's state dict before the fit
  x [8, 16, 16, 1]     NHWC, uniform in [-1, 1]; y [8] (-1 = unlabelled)
  hyper [2] = lr, steps
  feats [6, 16]        D's pooled features of the labelled rows (eval mode)
  losses [3]           the mean cross-entropy of each step (before its update)
  after.<weight|bias|u>  D.classifier's tensors after the fit
  logits [6, 3]        the fitted head's eval-mode logits of the features

Every ReLU input of D stays gen_model.RELU_MARGIN away from 0; every element of the head's
gradient, at every step, is 0 or at least GRAD_MARGIN times its tensor's largest (Adam's
update g / (|g| + eps) is only well conditioned away from 0); the top two logits of every
row after the fit differ by at least ARGMAX_MARGIN. Inputs are redrawn otherwise.
"""

import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import biggan  # noqa: E402
import s3gan  # noqa: E402
from common import Cases, nchw, uniform  # noqa: E402
from gen_model import ReluMargin, RELU_MARGIN, make_d  # noqa: E402

N = 8
LABELS = [0, -1, 2, 1, -1, 2, 0, 1]
STEPS = 3
LR = 1e-2
GRAD_MARGIN = 1e-3
ARGMAX_MARGIN = 1e-3
SEED = 7100


def grad_margin(grads):
    worst = float("inf")
    for step in grads:
        for g in step:
            a = g.abs()
            nz = a[a > 0]
            if nz.numel():
                worst = min(worst, float(nz.min() / a.max()))
    return worst


def run(cfg, x, y):
    D = make_d(cfg, SEED)
    D.train()
    before = {k: v.clone() for k, v in D.state_dict().items()}
    feats, losses, logits, grads = s3gan.fit_class_head(D, nchw(x), y, STEPS, LR)
    top = logits.topk(2, dim=1).values
    gap = float((top[:, 0] - top[:, 1]).min())
    return D, before, feats, losses, logits, grad_margin(grads), gap


def generate():
    c = Cases()
    cfg = biggan.preset("tiny")
    assert cfg.class_head
    y = torch.tensor(LABELS, dtype=torch.int64)
    for attempt in range(100):
        x = uniform(SEED + 1 + 1000 * attempt, N, cfg.resolution, cfg.resolution, cfg.channels)
        with ReluMargin() as m:
            *_, gm, gap = run(cfg, x, y)
        if m.min >= RELU_MARGIN and gm >= GRAD_MARGIN and gap >= ARGMAX_MARGIN:
            break
    else:
        raise RuntimeError("train_head: no inputs keep the margins")
    D, before, feats, losses, logits, _, _ = run(cfg, x, y)
    name = "fit"
    for k, v in before.items():
        c.add(name, f"before.D.{k}", v)
    c.add(name, "x", x)
    c.add(name, "y", y)
    c.add(name, "hyper", torch.tensor([LR, STEPS], dtype=torch.float64))
    c.add(name, "feats", feats)
    c.add(name, "losses", losses)
    for k in ("weight", "bias", "u"):
        c.add(name, f"after.{k}", getattr(D.classifier, k))
    c.add(name, "logits", logits)
    return c
