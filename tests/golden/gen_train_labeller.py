"""Labeller-step golden: one step of tests/reference/s3gan.py's labeller_step (float64,
torch.optim.Adam) on the tiny discriminator of biggan.py (both heads), then a prediction in eval
mode -> tests/golden/train_labeller.safetensors.

Case "step" (batch N = 6, 16x16 grey images, rot_n = 2 rotated rows, labels
[0, -1, 2, -1, 1, 1], class weight 0.5, lr 4e-4, Adam (0.9, 0.999, 1e-8)):
  before.D.<name>      every tensor of D's state dict before the step
  x [6, 16, 16, 1]     NHWC, uniform in [-1, 1]; y [6] (-1 = unlabelled)
  hyper [6] = lr, beta1, beta2, eps, class_weight, rot_n
  loss [3] = total, rotation, class (weighted)
  pred [6]             the class head's argmax of the step's forward (before the update)
  after.D.<name>       every tensor after the step (parameters and u)
  m.D.<param>, v.D.<param>   Adam's exp_avg and exp_avg_sq of every parameter that got a
                       gradient (not D.linear or D.embed)
  pred_after [6]       argmax of the class head on x after the step, D in eval mode

Every ReLU input of the step and the prediction stays gen_model.RELU_MARGIN away from 0, and
the top two class logits of every row differ by at least ARGMAX_MARGIN in the step and in the
prediction; inputs are redrawn otherwise.
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

N = 6
ROT_N = 2
LABELS = [0, -1, 2, -1, 1, 1]
CLASS_WEIGHT = 0.5
ARGMAX_MARGIN = 1e-3
SEED = 7000


def gap(cls):
    top = cls.topk(2, dim=1).values
    return float((top[:, 0] - top[:, 1]).min())


def run(cfg, lc, x, y):
    D = make_d(cfg, SEED)
    D.train()
    before = {k: v.clone() for k, v in D.state_dict().items()}
    opt = s3gan.labeller_adam(D, lc)
    # The step's class logits (for the margin), from the same weights and u the step starts
    # from: a copy, so the step itself is untouched.
    probe = make_d(cfg, SEED)
    probe.train()
    with torch.no_grad():
        xr, _ = s3gan.with_rotations(nchw(x), y, lc.rot_n)
        _, _, cls0 = probe(xr, torch.zeros(xr.shape[0], dtype=torch.int64))
    loss, pred = s3gan.labeller_step(D, opt, lc, nchw(x), y)
    cls1, pred_after = s3gan.labeller_predict(D, nchw(x))
    margin = min(gap(cls0[:N]), gap(cls1))
    return D, opt, before, loss, pred, pred_after, margin


def generate():
    c = Cases()
    cfg = biggan.preset("tiny")
    assert cfg.rotation_head and cfg.class_head
    lc = s3gan.LabellerConfig(ROT_N, class_weight=CLASS_WEIGHT)
    y = torch.tensor(LABELS, dtype=torch.int64)
    for attempt in range(100):
        x = uniform(SEED + 1 + 1000 * attempt, N, cfg.resolution, cfg.resolution, cfg.channels)
        with ReluMargin() as m:
            *_, margin = run(cfg, lc, x, y)
        if m.min >= RELU_MARGIN and margin >= ARGMAX_MARGIN:
            break
    else:
        raise RuntimeError("labeller: no inputs keep the margins")
    D, opt, before, loss, pred, pred_after, _ = run(cfg, lc, x, y)
    name = "step"
    for k, v in before.items():
        c.add(name, f"before.D.{k}", v)
    c.add(name, "x", x)
    c.add(name, "y", y)
    hyper = [lc.lr, lc.beta1, lc.beta2, lc.eps, lc.class_weight, lc.rot_n]
    c.add(name, "hyper", torch.tensor(hyper, dtype=torch.float64))
    c.add(name, "loss", loss)
    c.add(name, "pred", pred)
    c.add(name, "pred_after", pred_after)
    for k, v in D.state_dict().items():
        c.add(name, f"after.D.{k}", v)
    for k, p in D.named_parameters():
        st = opt.state.get(p)
        if st:
            c.add(name, f"m.D.{k}", st["exp_avg"])
            c.add(name, f"v.D.{k}", st["exp_avg_sq"])
    return c
