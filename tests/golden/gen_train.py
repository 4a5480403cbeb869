"""Training-step goldens: one D step then one G step of tests/reference/s3gan.py (float64,
torch.optim.Adam) on the tiny networks of biggan.py -> tests/golden/train.safetensors.

Cases (one per variant; batch N = 6, 16x16 grey images, rot_n = 2 rotated rows):
  s3gan-co     tiny preset (rotation and class heads), labels [0, -1, 2, -1, 1, -1],
               EMA decay 0.9 from step 0 (the G step averages)
  conditional  tiny preset without heads, labels [0, 1, 2, 2, 1, 0], EMA start 5 (the G step
               copies G into G_ema)
  ssgan        tiny preset with the rotation head only, labels as s3gan-co (the variant uses
               class 0 for all), EMA decay 0.9 from step 1 (averages)

Weights: gen_model's fixed-seed float32 randomisation of every parameter; G_ema starts from a
different randomisation, so averaging and copying differ. Per case <v>:
  before.{G,D,G_ema}.<name>   every tensor of the state dicts before the D step
  x [6, 16, 16, 1] (NHWC, uniform in [-1, 1]), y [6] (-1 = unlabelled), z_d [6, 12], yf_d [6]
  (D step), z_g [6, 12], yf_g [6] (G step)
  hyper [8] = lr_g, lr_d, d_rot_weight, g_rot_weight, class_weight, ema_decay, ema_start, rot_n
  loss_d [4] = total, hinge, rotation (weighted), class (weighted)
  y_used [2N + 6 rot_n]: the projection labels of the D step's D call (argmax fill included)
  loss_g [3] = total, adversarial, rotation (weighted)
  after.{G,D,G_ema}.<name>    every tensor after the G step (parameters, u, statistics)
  m.{G,D}.<param>, v.{G,D}.<param>  Adam's exp_avg and exp_avg_sq of every parameter that got
                              a gradient (one step each)

Every ReLU input (and each hinge term, which uses F.relu) of every forward stays at least
gen_model.RELU_MARGIN away from 0, and the class head's top two logits of each unlabelled real
row differ by at least ARGMAX_MARGIN; inputs are redrawn otherwise.
"""

import copy
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import biggan  # noqa: E402
import s3gan  # noqa: E402
from common import Cases, nchw, nhwc, rand, uniform  # noqa: E402
from gen_model import ReluMargin, RELU_MARGIN, make_d, make_g  # noqa: E402

N = 6
ROT_N = 2
ARGMAX_MARGIN = 1e-3
SEMI = [0, -1, 2, -1, 1, -1]

CASES = [
    # name, variant, heads (rotation, class), labels, ema decay, ema start, seed
    ("s3gan-co", "s3gan-co", (True, True), SEMI, 0.9, 0, 3000),
    ("conditional", "conditional", (False, False), [0, 1, 2, 2, 1, 0], 0.9, 5, 4000),
    ("ssgan", "ssgan", (True, False), SEMI, 0.9, 1, 5000),
]


def networks(cfg, seed):
    G = make_g(cfg, seed)
    D = make_d(cfg, seed + 500)
    G_ema = make_g(cfg, seed + 50)
    for m in (G, D, G_ema):
        m.train()
    return G, D, G_ema


def run(cfg, tc, seed, inputs):
    """Both steps on fresh networks; returns everything the golden stores."""
    G, D, G_ema = networks(cfg, seed)
    before = {p: copy.deepcopy(m.state_dict()) for p, m in (("G", G), ("D", D), ("G_ema", G_ema))}
    opt_d = s3gan.adam(D.parameters(), tc.lr_d, tc)
    opt_g = s3gan.adam(G.parameters(), tc.lr_g, tc)
    x, y, z_d, yf_d, z_g, yf_g = inputs
    loss_d, y_used = s3gan.d_step(G, D, opt_d, tc, nchw(x), y, z_d, yf_d)
    loss_g = s3gan.g_step(G, D, G_ema, opt_g, tc, z_g, yf_g, 1)
    return G, D, G_ema, opt_g, opt_d, before, loss_d, y_used, loss_g


def argmax_ok(cfg, tc, seed, x, y):
    """Top-two gap of the class head on the unlabelled real rows (D's weights before the
    step; one power iteration from the stored u, as in the step)."""
    if not tc.class_head:
        return True
    _, D, _ = networks(cfg, seed)
    with torch.no_grad():
        _, _, cls, _ = s3gan.d_forward(D, nchw(x), y)
    top = cls.topk(2, dim=1).values
    gap = (top[:, 0] - top[:, 1])[y < 0]
    return bool((gap >= ARGMAX_MARGIN).all())


def gen_case(c, name, variant, heads, labels, decay, start, seed):
    cfg = biggan.preset("tiny")
    cfg.rotation_head, cfg.class_head = heads
    tc = s3gan.TrainConfig(variant, rot_n=ROT_N, ema_decay=decay, ema_start=start)
    y = torch.tensor(labels, dtype=torch.int64)
    K = cfg.num_classes
    for attempt in range(100):
        s = seed + 1000 * attempt
        x = uniform(s + 1, N, cfg.resolution, cfg.resolution, cfg.channels)
        inputs = (
            x,
            y,
            rand(s + 2, N, cfg.z_dim),
            torch.randint(0, K, (N,), generator=torch.Generator().manual_seed(s + 3)),
            rand(s + 4, N, cfg.z_dim),
            torch.randint(0, K, (N,), generator=torch.Generator().manual_seed(s + 5)),
        )
        with ReluMargin() as m:
            run(cfg, tc, seed, inputs)
        if m.min >= RELU_MARGIN and argmax_ok(cfg, tc, seed, x, y):
            break
    else:
        raise RuntimeError(f"{name}: no inputs keep the margins")
    G, D, G_ema, opt_g, opt_d, before, loss_d, y_used, loss_g = run(cfg, tc, seed, inputs)
    for p, sd in before.items():
        for k, v in sd.items():
            c.add(name, f"before.{p}.{k}", v)
    for k, v in zip(("x", "y", "z_d", "yf_d", "z_g", "yf_g"), inputs):
        c.add(name, k, v)
    hyper = [tc.lr_g, tc.lr_d, tc.d_rot_weight, tc.g_rot_weight, tc.class_weight,
             tc.ema_decay, tc.ema_start, tc.rot_n]
    c.add(name, "hyper", torch.tensor(hyper, dtype=torch.float64))
    c.add(name, "loss_d", loss_d)
    c.add(name, "y_used", y_used)
    c.add(name, "loss_g", loss_g)
    for p, m in (("G", G), ("D", D), ("G_ema", G_ema)):
        for k, v in m.state_dict().items():
            c.add(name, f"after.{p}.{k}", v)
    for p, m, opt in (("G", G, opt_g), ("D", D, opt_d)):
        for k, param in m.named_parameters():
            st = opt.state.get(param)
            if st:
                c.add(name, f"m.{p}.{k}", st["exp_avg"])
                c.add(name, f"v.{p}.{k}", st["exp_avg_sq"])


def generate():
    c = Cases()
    for case in CASES:
        gen_case(c, *case)
    return c
