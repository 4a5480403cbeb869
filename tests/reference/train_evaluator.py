"""Train the Fashion-MNIST evaluator (FID features, Inception Score, class consistency).

    /work/venv/bin/python tests/reference/train_evaluator.py [--epochs 4] [--out PATH]

writes runtime/eval/evaluator.safetensors (about 430 KB), the weights that
`fewlabels::eval::Evaluator` embeds. Everything is fixed, so a rerun on the same PyTorch build
gives the same file; on another build it gives a classifier of the same accuracy but not the
same bits (the goldens are made from the committed file, not from a rerun).

Data: all 60,000 Fashion-MNIST training images with their labels, read from the gzip IDX
files in /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist) and prepared
exactly as fewlabels::data::fashion_mnist prepares them: `v / 127.5 - 1` in float32, then
centred in 32x32 with two pixels of padding on each side, padding value -1. No augmentation.
The 10,000 test images are used only to report accuracy, never to choose anything.

Network (NCHW here, NHWC in the runtime; every conv 3x3, stride 1, padding 1):

    conv1   1 -> 16   32x32  BN  ReLU  maxpool 2x2 -> 16x16
    conv2  16 -> 32   16x16  BN  ReLU
    conv3  32 -> 32   16x16  BN  ReLU  maxpool 2x2 -> 8x8
    conv4  32 -> 64    8x8   BN  ReLU
    conv5  64 -> 128   8x8   BN  ReLU
    mean over the 8x8 pixels            -> feature [128]   (FID features)
    fc    128 -> 10                     -> logits  [10]    (softmax: IS, consistency)

Recipe: cross entropy, AdamW (lr peak 3e-3, betas (0.9, 0.999), weight decay 5e-4), one-cycle
schedule (linear warm-up over the first 30% of steps from lr/25, then cosine down to lr/1e4),
batch 128, 4 epochs, the training set shuffled each epoch by a torch.Generator seeded 0,
torch.manual_seed(0) for the initial weights, one CPU thread, deterministic algorithms.
About 10-12 minutes on one CPU core.

Export: each batch norm (eval mode, running statistics, eps 1e-5) is folded into the conv
before it, in float64: w' = w * g / sqrt(var + eps), b' = (b - mean) * g / sqrt(var + eps)
+ beta. The file holds only conv{1..5}.weight [out, in, 3, 3], conv{1..5}.bias, fc.weight
[10, 128] and fc.bias (float32), and as metadata the architecture, the recipe and the test
accuracy of the folded float32 network on all 10,000 test images and on the first 1,000.
"""

import argparse
import gzip
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA = "/usr/share/datasets/fashion-mnist"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "runtime", "eval", "evaluator.safetensors")
WIDTHS = [(1, 16), (16, 32), (32, 32), (32, 64), (64, 128)]
# A 2x2 max pool follows these convs (1-based).
POOL_AFTER = (1, 3)


def read_idx(path):
    """An IDX file of unsigned bytes (gzip) as a numpy array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    assert raw[0] == 0 and raw[1] == 0 and raw[2] == 0x08, path
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def load(split):
    """Images [N, 1, 32, 32] float32 in [-1, 1] (padded with -1) and labels [N] int64."""
    prefix = "train" if split == "train" else "t10k"
    img = read_idx(os.path.join(DATA, f"{prefix}-images-idx3-ubyte.gz"))
    lab = read_idx(os.path.join(DATA, f"{prefix}-labels-idx1-ubyte.gz"))
    x = np.full((img.shape[0], 1, 32, 32), -1.0, dtype=np.float32)
    x[:, 0, 2:30, 2:30] = img.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return torch.from_numpy(x), torch.from_numpy(lab.astype(np.int64))


class Net(nn.Module):
    """The training network (with batch norm)."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(i, o, 3, padding=1) for i, o in WIDTHS)
        self.bns = nn.ModuleList(nn.BatchNorm2d(o) for _, o in WIDTHS)
        self.fc = nn.Linear(WIDTHS[-1][1], 10)

    def forward(self, x):
        for k, (conv, bn) in enumerate(zip(self.convs, self.bns), start=1):
            x = F.relu(bn(conv(x)))
            if k in POOL_AFTER:
                x = F.max_pool2d(x, 2)
        return self.fc(x.mean((2, 3)))


def folded_forward(w, x):
    """The exported network (batch norm folded) on NCHW x: (features, logits)."""
    for k in range(1, len(WIDTHS) + 1):
        x = F.relu(F.conv2d(x, w[f"conv{k}.weight"], w[f"conv{k}.bias"], padding=1))
        if k in POOL_AFTER:
            x = F.max_pool2d(x, 2)
    feat = x.mean((2, 3))
    return feat, F.linear(feat, w["fc.weight"], w["fc.bias"])


def fold(net):
    """Float32 tensors of the exported network, batch norm folded in float64."""
    out = {}
    for k, (conv, bn) in enumerate(zip(net.convs, net.bns), start=1):
        s = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        out[f"conv{k}.weight"] = (conv.weight.double() * s[:, None, None, None]).float()
        out[f"conv{k}.bias"] = ((conv.bias.double() - bn.running_mean.double()) * s
                                + bn.bias.double()).float()
    out["fc.weight"] = net.fc.weight.detach().float()
    out["fc.bias"] = net.fc.bias.detach().float()
    return {k: v.detach().contiguous() for k, v in out.items()}


def accuracy(w, x, y):
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 500):
            _, logits = folded_forward(w, x[i : i + 500])
            correct += (logits.argmax(1) == y[i : i + 500]).sum().item()
    return correct / len(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)

    xtr, ytr = load("train")
    xte, yte = load("test")
    net = Net()
    batch, lr = 128, 3e-3
    steps_per_epoch = math.ceil(len(xtr) / batch)
    total = args.epochs * steps_per_epoch
    opt = torch.optim.AdamW(net.parameters(), lr=lr, betas=(0.9, 0.999), weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=total, pct_start=0.3, anneal_strategy="cos",
        div_factor=25.0, final_div_factor=1e4, cycle_momentum=False)
    gen = torch.Generator().manual_seed(0)
    start = time.time()
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(len(xtr), generator=gen)
        seen, loss_sum = 0, 0.0
        for i in range(0, len(xtr), batch):
            idx = perm[i : i + batch]
            loss = F.cross_entropy(net(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
        net.eval()
        acc = accuracy(fold(net), xte, yte)
        print(f"epoch {epoch + 1}: train loss {loss_sum / seen:.4f}, test accuracy {acc:.4f}, "
              f"{time.time() - start:.0f} s", flush=True)

    net.eval()
    w = fold(net)
    acc = accuracy(w, xte, yte)
    acc1k = accuracy(w, xte[:1000], yte[:1000])
    # One metadata key (safetensors writes metadata from a hash map; one key keeps the bytes
    # of a rerun identical).
    info = {
        "architecture": {"convs": WIDTHS, "pool_after": list(POOL_AFTER),
                         "feature": "mean over H and W of conv5's ReLU output", "classes": 10},
        "recipe": f"AdamW lr 3e-3 one-cycle wd 5e-4, batch 128, {args.epochs} epochs, seed 0, "
                  "no augmentation, all 60000 training labels; BN folded into the convs",
        "test_accuracy": round(acc, 4),
        "test_accuracy_first_1000": round(acc1k, 4),
        "torch_version": torch.__version__,
    }
    meta = {"evaluator": json.dumps(info, sort_keys=True)}
    from safetensors.torch import save_file

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    save_file(w, args.out, metadata=meta)
    print(f"test accuracy {acc:.4f} (first 1000: {acc1k:.4f}) -> {os.path.relpath(args.out)}")


if __name__ == "__main__":
    main()
