"""Self-checks of the reference networks and of tests/golden/model.safetensors.

`python tests/reference/check.py` (CPU, a few seconds):
1. spectral norm: one training-mode step equals torch.nn.utils.spectral_norm (same u), and the
   autograd gradient equals (G - <G, W_sn> u v^T) / sigma;
2. gradcheck of a tiny generator and discriminator (SN frozen so that u stays put);
3. save_safetensors / load_safetensors round trip;
4. the goldens re-derive from what the file stores: every `<case>/param.*` set is written as a
   model file, loaded with load_safetensors, run in float64, and compared with the stored
   outputs, gradients and u (relative error ~1e-7 expected: float32 storage);
5. the standing statistics re-derive from the stored standing_z / standing_y batches.
"""

import os
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "golden"))

import biggan as B  # noqa: E402
from common import nchw, nhwc  # noqa: E402

TOL = 1e-6


def rel(a, b):
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / (b.abs().max() + 1e-30)).item()


def check_sn():
    torch.manual_seed(0)
    lay = B.SNLinear(7, 5, True, True, 1e-12).double()
    B.init_weights(lay, 3)
    lay.train()
    u0 = lay.u.clone()
    ref = torch.nn.Linear(7, 5).double()
    with torch.no_grad():
        ref.weight.copy_(lay.weight)
        ref.bias.copy_(lay.bias)
    ref = torch.nn.utils.spectral_norm(ref, eps=1e-12)
    ref.weight_u.copy_(u0)
    x = torch.randn(4, 7, dtype=torch.float64)
    assert rel(lay(x), ref(x)) < 1e-14 and rel(lay.u, ref.weight_u) < 1e-14
    lay.u.copy_(u0)
    w = lay.weight
    w_sn = lay.sn_weight()
    u = lay.u.clone()
    v = B.l2n(w.detach().t() @ u0, 1e-12)
    sigma = u @ w.detach() @ v
    gm = torch.randn(5, 7, dtype=torch.float64)
    (g,) = torch.autograd.grad((w_sn * gm).sum(), w)
    formula = (gm - (gm * w_sn.detach()).sum() * torch.outer(u, v)) / sigma
    assert rel(g, formula) < 1e-12
    # eval mode: u untouched
    lay.eval()
    u1 = lay.u.clone()
    lay(x)
    assert torch.equal(u1, lay.u)
    print("spectral norm: ok")


def check_gradcheck():
    cfg = B.preset("tiny")
    G = B.Generator(cfg, seed=5).double().train()
    D = B.Discriminator(cfg, seed=6).double().train()
    with torch.no_grad():
        for m in list(G.modules()) + list(D.modules()):
            if isinstance(m, B.Attention):
                m.gamma.fill_(0.7)
    z = torch.randn(2, cfg.z_dim, dtype=torch.float64, requires_grad=True)
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 2])
    with B.frozen_sn(G), B.frozen_sn(D):
        assert torch.autograd.gradcheck(lambda z: G(z, y), (z,))
        assert torch.autograd.gradcheck(lambda x: torch.cat([t.reshape(-1) for t in D(x, y)]), (x,))
    print("gradcheck: ok")


def check_roundtrip(tmp):
    cfg = B.preset("tiny_rgb")
    G, D, E = B.Generator(cfg, 1), B.Discriminator(cfg, 2), B.Generator(cfg, 3)
    path = os.path.join(tmp, "m.safetensors")
    B.save_safetensors(path, cfg, G, D, E)
    cfg2, G2, D2, E2 = B.load_safetensors(path)
    assert cfg2 == cfg
    for a, b in ((G, G2), (D, D2), (E, E2)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    B.save_safetensors(path, cfg, G)
    assert B.load_safetensors(path)[2:] == (None, None)
    print("model file round trip: ok")


def load_case(t, P, part, cfg, tmp):
    """Model file from the stored params ("g"/"eval": G of that case; "d": G of P_g plus D of
    P_d), read back with load_safetensors; the requested module in float64."""
    from safetensors.torch import save_file

    def params(case):
        pre = f"{case}/param."
        return {k[len(pre):]: v for k, v in t.items() if k.startswith(pre)}

    tens = params(f"{P}_{part}") if part != "d" else {**params(f"{P}_g"), **params(f"{P}_d")}
    path = os.path.join(tmp, f"{P}_{part}.safetensors")
    save_file(tens, path, metadata={"config": cfg.to_json()})
    _, G, D, _ = B.load_safetensors(path)
    return (D if part == "d" else G).double()


def check_goldens(tmp):
    from safetensors.torch import load_file

    path = os.path.join(HERE, "..", "golden", "model.safetensors")
    t = load_file(path)
    for P in ("tiny", "tiny_rgb"):
        cfg = B.preset(P)
        errs = []
        # G, training mode
        g = lambda n: t[f"{P}_g/{n}"]  # noqa: E731
        G = load_case(t, P, "g", cfg, tmp).train()
        names, params = zip(*G.named_parameters())
        for sfx in ("", "2"):
            out = nhwc(G(g("z").double(), g("y").long()))
            L = (out * g("R").double()).sum()
            grads = torch.autograd.grad(L, params)
            errs += [rel(out, g("out" + sfx)), rel(L, g("L" + sfx))]
            errs += [rel(a, g(f"grad{sfx}.G.{n}")) for n, a in zip(names, grads)]
            errs += [rel(v, g(f"u_after{sfx}.G.{k}")) for k, v in G.state_dict().items() if k.endswith(".u")]
        # D, training mode
        d = lambda n: t[f"{P}_d/{n}"]  # noqa: E731
        D = load_case(t, P, "d", cfg, tmp).train()
        names, params = zip(*D.named_parameters())
        x = d("x").double().requires_grad_()
        for sfx in ("", "2"):
            lo, ro, co = D(nchw(x), d("y").long())
            L = (lo * d("a")).sum() + (ro * d("b")).sum() + (co * d("c")).sum()
            grads = torch.autograd.grad(L, params + (x,))
            errs += [rel(lo, d("logit" + sfx)), rel(ro, d("rot" + sfx)), rel(co, d("cls" + sfx))]
            errs += [rel(L, d("L" + sfx)), rel(grads[-1], d(f"grad{sfx}.x"))]
            errs += [rel(a, d(f"grad{sfx}.D.{n}")) for n, a in zip(names, grads[:-1])]
            errs += [rel(v, d(f"u_after{sfx}.D.{k}")) for k, v in D.state_dict().items() if k.endswith(".u")]
        # G, eval mode
        e = lambda n: t[f"{P}_eval/{n}"]  # noqa: E731
        G = load_case(t, P, "eval", cfg, tmp).eval()
        with torch.no_grad():
            for n in (1, 7):
                errs.append(rel(nhwc(G(e(f"z_b{n}").double(), e(f"y_b{n}").long())), e(f"out_b{n}")))
        # standing statistics from the stored batches, starting from the _g weights
        G = load_case(t, P, "g", cfg, tmp).train()
        bns = [(k, m) for k, m in G.named_modules() if isinstance(m, B._BatchStats)]
        for _, m in bns:
            m._acc = [torch.zeros_like(m.mean), torch.zeros_like(m.var), 0]
        with torch.no_grad(), B.frozen_sn(G):
            for zb, yb in zip(e("standing_z"), e("standing_y")):
                G(zb.double(), yb.long())
        for k, m in bns:
            errs.append(rel(m._acc[0] / m._acc[2], e(f"param.G.{k}.mean")))
            errs.append(rel(m._acc[1] / m._acc[2], e(f"param.G.{k}.var")))
        worst = max(errs)
        assert worst < TOL, (P, worst)
        print(f"goldens {P}: {len(errs)} comparisons, worst relative error {worst:.1e}: ok")


def main():
    torch.set_num_threads(1)
    check_sn()
    check_gradcheck()
    with tempfile.TemporaryDirectory() as tmp:
        check_roundtrip(tmp)
        check_goldens(tmp)


if __name__ == "__main__":
    main()
