"""PyTorch side of `cargo bench --bench fewlabels`: the same measurements on the CPU with the
reference networks (tests/reference/biggan.py, s3gan.py) and the same weights.

Usage: python benches/torch_bench.py SPEC_JSON
SPEC_JSON names the model file written by the Rust side and the sizes; the result is one JSON
object on the last line of stdout. Times are medians of `iters` runs after `warmup` runs.
"""

import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import biggan  # noqa: E402
import s3gan  # noqa: E402


def timed(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(max(iters, 1)):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def noise(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1


def main():
    spec = json.loads(sys.argv[1])
    warmup, iters = spec["warmup"], spec["iters"]
    torch.manual_seed(0)
    res = {"threads": torch.get_num_threads(), "version": torch.__version__}

    # Peak: a large matmul.
    n = spec["peak_n"]
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = timed(lambda: torch.mm(a, b), 1, 3)
    res["cpu_peak_gflops"] = 2 * n ** 3 / t / 1e9

    # Kernels (more timed runs than the networks: each takes milliseconds).
    kiters = spec.get("kernel_iters", iters)
    for m in spec["matmul"]:
        a, b = torch.randn(m, m), torch.randn(m, m)
        t = timed(lambda: torch.mm(a, b), warmup, kiters)
        res[f"matmul_{m}"] = 2 * m ** 3 / t / 1e9
    for i, (cn, cin, cout, hw) in enumerate(spec["convs"]):
        x = torch.randn(cn, cin, hw, hw)
        w = torch.randn(cout, cin, 3, 3)
        dy = torch.randn(cn, cout, hw, hw)
        flops = 2 * cn * hw * hw * cin * cout * 9
        t = timed(lambda: F.conv2d(x, w, padding=1), warmup, kiters)
        res[f"conv_fwd_{i}"] = flops / t / 1e9
        t = timed(lambda: torch.nn.grad.conv2d_input(x.shape, w, dy, padding=1), warmup, kiters)
        res[f"conv_dx_{i}"] = flops / t / 1e9
        t = timed(lambda: torch.nn.grad.conv2d_weight(x, w.shape, dy, padding=1), warmup, kiters)
        res[f"conv_dw_{i}"] = flops / t / 1e9

    # One G block, forward and backward (block 1 of the model file the Rust side wrote), in
    # training mode: batch statistics, a power iteration, every gradient.
    if spec.get("gblock_file"):
        n, cin, cout = spec["gblock"]
        cfg, G, _, _ = biggan.load_safetensors(spec["gblock_file"])
        G.train()
        blk = G.blocks[1]
        x = noise((n, cin, 8, 8), 11).requires_grad_()
        c = noise((n, cfg.cdim), 12).requires_grad_()
        dy = noise((n, cout, 16, 16), 13)

        def gblock():
            blk.zero_grad(set_to_none=True)
            x.grad = None
            c.grad = None
            blk(x, c).backward(dy)

        res["gblock_ms"] = timed(gblock, warmup, iters) * 1e3

    # Networks, from the model file the Rust side wrote.
    for key, path in spec["models"].items():
        cfg, G, D, _ = biggan.load_safetensors(path)
        G_ema = biggan.Generator(cfg, seed=None)
        G_ema.load_state_dict(G.state_dict())
        r = {}
        G.eval()
        D.eval()
        with torch.no_grad():
            for nb in spec["sample_batches"]:
                z = torch.randn(nb, cfg.z_dim)
                y = torch.arange(nb) % cfg.num_classes
                t = timed(lambda: G(z, y), warmup, iters)
                r[f"sample_{nb}"] = nb / t
            nb = spec["d_batch"]
            xd = noise((nb, cfg.channels, cfg.resolution, cfg.resolution), 7)
            y = torch.arange(nb) % cfg.num_classes
            t = timed(lambda: D(xd, y), warmup, iters)
            r["d_forward"] = nb / t
        G.train()
        D.train()
        nb = spec["train_batch"][key]
        rot_n = max(1, min(nb, round(nb * spec["rot_fraction"])))
        tc = s3gan.TrainConfig("s3gan-co", rot_n=rot_n, ema_start=spec["ema_start"])
        opt_g = s3gan.adam(G.parameters(), tc.lr_g, tc)
        opt_d = s3gan.adam(D.parameters(), tc.lr_d, tc)
        xr = noise((nb, cfg.channels, cfg.resolution, cfg.resolution), 7)
        yr = torch.tensor([(i // 2) % cfg.num_classes if i % 2 == 0 else -1 for i in range(nb)])
        steps = [0]

        def step():
            for _ in range(spec["d_steps"]):
                z = torch.randn(nb, cfg.z_dim)
                yf = torch.randint(0, cfg.num_classes, (nb,))
                s3gan.d_step(G, D, opt_d, tc, xr, yr, z, yf)
            z = torch.randn(nb, cfg.z_dim)
            yf = torch.randint(0, cfg.num_classes, (nb,))
            steps[0] += 1
            s3gan.g_step(G, D, G_ema, opt_g, tc, z, yf, steps[0])

        t = timed(step, warmup, iters)
        r["train_step_ms"] = t * 1e3
        res[key] = r
    print(json.dumps(res))


if __name__ == "__main__":
    main()
