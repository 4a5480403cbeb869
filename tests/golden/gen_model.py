"""Whole-model goldens: the reference BigGAN generator and discriminator (tests/reference/biggan.py)
for the presets "tiny" and "tiny_rgb" -> tests/golden/model.safetensors.

Weights: the module's seeded init, then every parameter overwritten with fixed-seed float32
values (so biases, the CBN maps, the output BN affine, the shared embedding and the attention
gammas are all nonzero and random); u keeps its init (normalised float32 normal). Math in
float64. Tensors are float32 (labels int32); images NHWC; parameters in PyTorch layout.

Per preset P (C = image channels, K = classes):
  P_g     G in training mode (batch statistics, SN power iteration):
          param.G.<name>   every G parameter and state entry before the forward
          z [3, z_dim], y [3], out [3, 16, 16, C] (NHWC), R [3, 16, 16, C], L [1] = sum(out * R)
          grad.G.<param>   dL/dparam for every trained parameter
          u_after.G.<name> every .u after the forward
          out2, L2, grad2.G.<param>, u_after2.G.<name>: a second forward/backward, same
          inputs and weights (u has moved once more)
  P_d     D in training mode:
          param.D.<name>, x [5, 16, 16, C] (NHWC, uniform in [-1, 1]), y [5]
          logit [5], rot [5, 4], cls [5, K]; a [5], b [5, 4], c [5, K]
          L [1] = sum(logit * a) + sum(rot * b) + sum(cls * c)
          grad.D.<param>, grad.x (NHWC), u_after.D.<name>
          logit2, rot2, cls2, L2, grad2.D.<param>, grad2.x, u_after2.D.<name>: second call
  P_eval  G (same initial weights as P_g) with standing statistics from
          biggan.accumulate_standing_stats(G, 4, 8, seed) (rounded to float32), then eval mode
          (standing statistics, stored u, no update):
          param.G.<name>   every parameter and state entry (with the standing .mean / .var)
          standing_z [4, 8, z_dim], standing_y [4, 8]: the batches the helper drew, in order
          z_b1 [1, z_dim], y_b1 [1], out_b1 [1, 16, 16, C]
          z_b7 [7, z_dim], y_b7 [7], out_b7 [7, 16, 16, C]

`python tests/golden/gen_model.py` prints the parameter counts of every preset.
"""

import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import biggan  # noqa: E402
from common import Cases, nhwc, nchw, rand, randint, uniform  # noqa: E402

PRESETS = [("tiny", 1000), ("tiny_rgb", 2000)]
STANDING = (4, 8)  # n_batches, batch


def randomize(model, seed):
    """Overwrite every parameter with fixed-seed float32 values (float64 copies)."""
    with torch.no_grad():
        for k, (name, p) in enumerate(model.named_parameters()):
            s = seed + k
            leaf = name.rsplit(".", 1)[-1]
            if name.endswith("attn.gamma"):
                v = uniform(s, 1, lo=0.4, hi=0.9)
            elif name.startswith("out_bn.weight"):
                v = 1 + 0.2 * rand(s, *p.shape)
            elif name.startswith("out_bn.bias") or leaf == "bias":
                v = 0.2 * rand(s, *p.shape)
            else:
                v = 0.5 * rand(s, *p.shape)
            p.copy_(v.float())  # round to float32: the stored values are the ones used


def assert_f32_exact(model):
    for k, v in model.state_dict().items():
        assert torch.equal(v, v.float().double()), f"{k} is not float32-exact"


def make_g(cfg, seed):
    G = biggan.Generator(cfg, seed=seed).double()
    randomize(G, seed + 100)
    assert_f32_exact(G)
    return G


def make_d(cfg, seed):
    D = biggan.Discriminator(cfg, seed=seed).double()
    randomize(D, seed + 100)
    assert_f32_exact(D)
    return D


def add_state(c, case, prefix, model):
    for k, v in model.state_dict().items():
        c.add(case, f"param.{prefix}.{k}", v)


def add_u(c, case, tag, prefix, model):
    for k, v in model.state_dict().items():
        if k.endswith(".u") or k == "u":
            c.add(case, f"{tag}.{prefix}.{k}", v)


RELU_MARGIN = 1e-5


class ReluMargin:
    """Records the smallest |input| of any ReLU while active. f32 can flip the sign of an
    input that close to 0, and with it the ReLU's gradient mask, so a case whose ReLU inputs
    come within RELU_MARGIN of 0 is redrawn (the whole-model goldens would otherwise test
    rounding luck rather than the runtime)."""

    def __enter__(self):
        self.min = float("inf")
        self.orig = F.relu
        F.relu = self._relu
        return self

    def _relu(self, x, *args, **kwargs):
        self.min = min(self.min, x.detach().abs().min().item())
        return self.orig(x, *args, **kwargs)

    def __exit__(self, *exc):
        F.relu = self.orig


def margin_ok(run):
    """Run `run()` (both calls of a case on fresh modules) and check the ReLU margin."""
    with ReluMargin() as m:
        run()
    return m.min >= RELU_MARGIN


def gen_g(c, P, cfg, seed):
    case = f"{P}_g"
    for attempt in range(100):
        zseed = seed + 1 + 1000 * attempt
        z = rand(zseed, 3, cfg.z_dim)
        y = randint(seed + 2, 0, cfg.num_classes, 3)
        G = make_g(cfg, seed)
        G.train()
        if margin_ok(lambda: [G(z, y) for _ in range(2)]):
            break
    else:
        raise RuntimeError(f"{case}: no z keeps ReLU inputs {RELU_MARGIN} away from 0")
    G = make_g(cfg, seed)
    G.train()
    add_state(c, case, "G", G)
    z = rand(zseed, 3, cfg.z_dim)
    y = randint(seed + 2, 0, cfg.num_classes, 3)
    R = rand(seed + 3, 3, cfg.resolution, cfg.resolution, cfg.channels)
    c.add(case, "z", z)
    c.add(case, "y", y)
    c.add(case, "R", R)
    names, params = zip(*G.named_parameters())
    for sfx in ("", "2"):
        out = nhwc(G(z, y))
        L = (out * R).sum()
        grads = torch.autograd.grad(L, params)
        c.add(case, f"out{sfx}", out)
        c.add(case, f"L{sfx}", L.reshape(1))
        for n, g in zip(names, grads):
            c.add(case, f"grad{sfx}.G.{n}", g)
        add_u(c, case, f"u_after{sfx}", "G", G)


def gen_d(c, P, cfg, seed):
    case = f"{P}_d"
    K = cfg.num_classes
    y = randint(seed + 2, 0, K, 5)
    for attempt in range(100):
        xseed = seed + 1 + 1000 * attempt
        x = uniform(xseed, 5, cfg.resolution, cfg.resolution, cfg.channels)
        D = make_d(cfg, seed)
        D.train()
        if margin_ok(lambda: [D(nchw(x), y) for _ in range(2)]):
            break
    else:
        raise RuntimeError(f"{case}: no x keeps ReLU inputs {RELU_MARGIN} away from 0")
    D = make_d(cfg, seed)
    D.train()
    add_state(c, case, "D", D)
    x = uniform(xseed, 5, cfg.resolution, cfg.resolution, cfg.channels).requires_grad_()
    a = rand(seed + 3, 5)
    b = rand(seed + 4, 5, 4)
    cc = rand(seed + 5, 5, K)
    for k, v in (("x", x), ("y", y), ("a", a), ("b", b), ("c", cc)):
        c.add(case, k, v)
    names, params = zip(*D.named_parameters())
    for sfx in ("", "2"):
        logit, rot, cls = D(nchw(x), y)
        L = (logit * a).sum() + (rot * b).sum() + (cls * cc).sum()
        grads = torch.autograd.grad(L, params + (x,))
        c.add(case, f"logit{sfx}", logit)
        c.add(case, f"rot{sfx}", rot)
        c.add(case, f"cls{sfx}", cls)
        c.add(case, f"L{sfx}", L.reshape(1))
        for n, g in zip(names, grads[:-1]):
            c.add(case, f"grad{sfx}.D.{n}", g)
        c.add(case, f"grad{sfx}.x", grads[-1])
        add_u(c, case, f"u_after{sfx}", "D", D)


def gen_eval(c, P, cfg, seed):
    case = f"{P}_eval"
    G = make_g(cfg, seed)  # same initial weights as the _g case
    n_batches, batch = STANDING
    sseed = seed + 7
    biggan.accumulate_standing_stats(G, n_batches, batch, sseed)
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, biggan._BatchStats):
                m.mean.copy_(m.mean.float().double())
                m.var.copy_(m.var.float().double())
    # The batches the helper drew (same generator sequence: z then y per batch).
    gen = torch.Generator().manual_seed(sseed)
    zs, ys = [], []
    for _ in range(n_batches):
        zs.append(torch.randn(batch, cfg.z_dim, generator=gen, dtype=torch.float32))
        ys.append(torch.randint(0, cfg.num_classes, (batch,), generator=gen))
    c.add(case, "standing_z", torch.stack(zs))
    c.add(case, "standing_y", torch.stack(ys))
    assert_f32_exact(G)
    G.eval()
    add_state(c, case, "G", G)
    u_before = {k: v.clone() for k, v in G.state_dict().items() if k.endswith(".u")}
    with torch.no_grad():
        outs = {}
        for n, s in ((1, seed + 8), (7, seed + 9)):
            z = rand(s, n, cfg.z_dim)
            y = randint(s + 50, 0, cfg.num_classes, n)
            out = nhwc(G(z, y))
            c.add(case, f"z_b{n}", z)
            c.add(case, f"y_b{n}", y)
            c.add(case, f"out_b{n}", out)
            outs[n] = (z, y, out)
        # Eval mode is per-sample: row 3 of the batch of 7 alone gives the same image.
        z7, y7, o7 = outs[7]
        assert torch.allclose(nhwc(G(z7[3:4], y7[3:4])), o7[3:4], atol=1e-12)
    for k, v in G.state_dict().items():
        if k.endswith(".u"):
            assert torch.equal(v, u_before[k]), k


def generate():
    c = Cases()
    for P, seed in PRESETS:
        cfg = biggan.preset(P)
        gen_g(c, P, cfg, seed)
        gen_d(c, P, cfg, seed + 500)
        gen_eval(c, P, cfg, seed)
    return c


def main():
    print(f"{'preset':<12} {'G params':>12} {'D params':>12} {'D w/o heads':>12}")
    for name in biggan.PRESETS:
        cfg = biggan.preset(name)
        G = biggan.Generator(cfg, seed=None)
        D = biggan.Discriminator(cfg, seed=None)
        heads = sum(p.numel() for m in (D.rotation, D.classifier) if m is not None for p in m.parameters())
        nd = biggan.count_params(D)
        print(f"{name:<12} {biggan.count_params(G):>12,} {nd:>12,} {nd - heads:>12,}")


if __name__ == "__main__":
    main()
