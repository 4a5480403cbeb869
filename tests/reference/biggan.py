"""Reference BigGAN generator and discriminator (with the S3GAN rotation and class heads).

Plain PyTorch, written for this project from the spec in /work/shared/reference/s3gan.md. It is
the numerical reference for the Rust/WGSL runtime: the goldens in tests/golden/gen_model.py are
computed with it (in float64, via `.double()`), and its state dict is the model-file format.

Layout choices fixed for the runtime:
- Modules compute in NCHW internally; the runtime is NHWC, so the goldens permute at the edges.
- The generator's first linear layer writes its output as [N, 4, 4, C0] (row index of
  G.linear.weight = (h * 4 + w) * C0 + c); the module then permutes it to NCHW. An NHWC runtime
  uses the linear output as is.
- Spectral norm is explicit code (class `SNLayer`), not torch.nn.utils.spectral_norm.

Spectral norm (every layer whose state has a `.u` entry)
    W2 = weight.reshape(out, -1)                      (out = weight.shape[0])
    l2n(x) = x / max(|x|, sn_eps)
    training mode, updating (the default):
        v = l2n(W2^T u);  u <- l2n(W2 v)  (stored);  sigma = u . W2 v
    eval mode, or training mode with `sn_update = False` (see `frozen_sn`):
        v = l2n(W2^T u);  sigma = u . W2 v             (u not changed)
    W_sn = weight / sigma. u and v are computed without gradient; sigma carries the gradient
    through W2. With config.sn = False there is no `.u` and the raw weight is used.

Batch norm (CBN in the blocks, plain BN before the output conv)
    training mode: batch mean and biased batch variance over (N, H, W);
    eval mode: the stored standing statistics `.mean` / `.var`.
    x_hat = (x - mean) / sqrt(var + bn_eps).
    CBN:  x_hat * (1 + c @ W_gain_sn^T) + c @ W_bias_sn^T      (W_* = .gain / .bias, [C, cdim])
    BN:   x_hat * weight + bias
    The training-mode forward does NOT keep running statistics; `.mean` / `.var` change only
    through `accumulate_standing_stats`.

Parameter and state names (the state dict; model files prefix them with "G.", "D." or "G_ema.")
Shapes use: n_g = log2(resolution / 4) generator blocks; Cg[i] = ch * g_mult[i];
Cd[i] = ch * d_mult[i]; chunk = z_dim / (n_g + 1) if hier else z_dim;
cdim = chunk + shared_dim if hier else shared_dim; K = num_classes; img = channels.
Attention modules ("attn") belong to the block after which they run; for a module over C
channels: ck = max(1, C // 8) (theta/phi), cv = max(1, C // 2) (g).
Entries marked (SN) exist only with sn = true. "state" = buffer, not trained.

| name                                   | shape                   | kind   | meaning |
|----------------------------------------|-------------------------|--------|---------|
| G.linear.weight                        | [16*Cg[0], chunk]       | param  | z chunk 0 -> [4, 4, Cg[0]] (HWC row order) |
| G.linear.bias                          | [16*Cg[0]]              | param  | |
| G.linear.u                             | [16*Cg[0]]              | state  | (SN) |
| G.shared.weight                        | [K, shared_dim]         | param  | shared class embedding, no SN |
| G.blocks.i.bn1.gain.weight             | [Cg[i], cdim]           | param  | CBN1 gain map (SN) |
| G.blocks.i.bn1.gain.u                  | [Cg[i]]                 | state  | (SN) |
| G.blocks.i.bn1.bias.weight             | [Cg[i], cdim]           | param  | CBN1 bias map |
| G.blocks.i.bn1.bias.u                  | [Cg[i]]                 | state  | (SN) |
| G.blocks.i.bn1.mean / .var             | [Cg[i]]                 | state  | standing statistics (init 0 / 1) |
| G.blocks.i.conv1.weight                | [Cg[i+1], Cg[i], 3, 3]  | param  | after upsample |
| G.blocks.i.conv1.bias / .u             | [Cg[i+1]]               | p / st | |
| G.blocks.i.bn2.{gain,bias}.weight      | [Cg[i+1], cdim]         | param  | CBN2 |
| G.blocks.i.bn2.{gain,bias}.u           | [Cg[i+1]]               | state  | (SN) |
| G.blocks.i.bn2.mean / .var             | [Cg[i+1]]               | state  | |
| G.blocks.i.conv2.weight                | [Cg[i+1], Cg[i+1], 3, 3]| param  | |
| G.blocks.i.conv2.bias / .u             | [Cg[i+1]]               | p / st | |
| G.blocks.i.conv_sc.weight              | [Cg[i+1], Cg[i], 1, 1]  | param  | shortcut, after upsample |
| G.blocks.i.conv_sc.bias / .u           | [Cg[i+1]]               | p / st | |
| G.blocks.i.attn.theta.weight           | [ck, C, 1, 1]           | param  | C = Cg[i+1]; only if 8*2^i in g_attn |
| G.blocks.i.attn.theta.u                | [ck]                    | state  | (SN) |
| G.blocks.i.attn.phi.weight / .u        | [ck, C, 1, 1] / [ck]    |        | |
| G.blocks.i.attn.g.weight / .u          | [cv, C, 1, 1] / [cv]    |        | |
| G.blocks.i.attn.o.weight / .u          | [C, cv, 1, 1] / [C]     |        | |
| G.blocks.i.attn.gamma                  | [1]                     | param  | init 0 |
| G.out_bn.weight / .bias                | [Cg[n_g]]               | param  | init 1 / 0 |
| G.out_bn.mean / .var                   | [Cg[n_g]]               | state  | standing statistics |
| G.out_conv.weight                      | [img, Cg[n_g], 3, 3]    | param  | |
| G.out_conv.bias / .u                   | [img]                   | p / st | |
| D.blocks.j.conv1.weight                | [Cd[j], Cin, 3, 3]      | param  | Cin = img for j = 0, else Cd[j-1] |
| D.blocks.j.conv1.bias / .u             | [Cd[j]]                 | p / st | |
| D.blocks.j.conv2.weight                | [Cd[j], Cd[j], 3, 3]    | param  | |
| D.blocks.j.conv2.bias / .u             | [Cd[j]]                 | p / st | |
| D.blocks.j.conv_sc.weight              | [Cd[j], Cin, 1, 1]      | param  | present iff j = 0, Cin != Cd[j] or down |
| D.blocks.j.conv_sc.bias / .u           | [Cd[j]]                 | p / st | |
| D.blocks.j.attn.*                      | as in G, C = Cd[j]      |        | iff the output resolution of block j is in d_attn |
| D.linear.weight                        | [1, C]                  | param  | C = Cd[n_g] |
| D.linear.bias / .u                     | [1]                     | p / st | |
| D.embed.weight                         | [K, C]                  | param  | projection embedding (SN, out = K) |
| D.embed.u                              | [K]                     | state  | (SN) |
| D.rotation.weight / .bias / .u         | [4, C] / [4] / [4]      |        | iff rotation_head |
| D.classifier.weight / .bias / .u       | [K, C] / [K] / [K]      |        | iff class_head |

Block index i runs over 0..n_g-1 (G) and j over 0..n_g (D); D blocks 0..n_g-1 downsample,
block n_g does not. G block i outputs resolution 8 * 2^i; D block j outputs resolution / 2^(j+1)
for j < n_g and 4 for j = n_g.

Initialisation (seed given): every weight orthogonal (rows/columns of the weight reshaped to
[out, -1]), biases 0, BN weight 1, gamma 0, standing mean 0 / var 1, each u a normalised standard
normal; all drawn in float32 from torch.Generator().manual_seed(seed) in registration order.
"""

import copy
import dataclasses
import json
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F

# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@dataclass
class Config:
    resolution: int = 16
    channels: int = 1
    ch: int = 4
    g_mult: List[int] = field(default_factory=lambda: [4, 4, 2])
    d_mult: List[int] = field(default_factory=lambda: [1, 2, 4])
    num_classes: int = 3
    z_dim: int = 12
    shared_dim: int = 6
    hier: bool = True
    g_attn: List[int] = field(default_factory=lambda: [8])
    d_attn: List[int] = field(default_factory=lambda: [8])
    sn: bool = True
    bn_eps: float = 1e-4
    sn_eps: float = 1e-12
    rotation_head: bool = True
    class_head: bool = True

    # -- derived ---------------------------------------------------------------------------
    @property
    def n_g(self):
        return int(round(math.log2(self.resolution // 4)))

    @property
    def chunk(self):
        """Size of each z chunk (hier), or the whole z."""
        return self.z_dim // (self.n_g + 1) if self.hier else self.z_dim

    @property
    def cdim(self):
        """Width of the CBN conditioning vector c_i."""
        return self.chunk + self.shared_dim if self.hier else self.shared_dim

    def g_channels(self):
        return [self.ch * m for m in self.g_mult]

    def d_channels(self):
        return [self.ch * m for m in self.d_mult]

    def g_out_res(self, i):
        return 8 * 2**i

    def d_out_res(self, j):
        return self.resolution // 2 ** (j + 1) if j < self.n_g else 4

    def validate(self):
        if self.resolution not in (16, 32, 64, 128):
            raise ValueError(f"resolution must be 16, 32, 64 or 128, not {self.resolution}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, not {self.channels}")
        n = self.n_g + 1
        if len(self.g_mult) != n or len(self.d_mult) != n:
            raise ValueError(f"g_mult and d_mult need {n} entries for resolution {self.resolution}")
        if self.ch < 1 or min(self.g_mult + self.d_mult) < 1:
            raise ValueError("ch and every multiplier must be >= 1")
        if self.num_classes < 1 or self.shared_dim < 1 or self.z_dim < 1:
            raise ValueError("num_classes, shared_dim and z_dim must be >= 1")
        if self.hier and self.z_dim % n != 0:
            raise ValueError(f"hier: z_dim {self.z_dim} does not split into {n} equal chunks")
        g_res = {self.g_out_res(i) for i in range(self.n_g)}
        d_res = {self.d_out_res(j) for j in range(self.n_g + 1)}
        for r in self.g_attn:
            if r not in g_res:
                raise ValueError(f"g_attn {r}: no generator block outputs that resolution {sorted(g_res)}")
        for r in self.d_attn:
            if r not in d_res:
                raise ValueError(f"d_attn {r}: no discriminator block outputs that resolution {sorted(d_res)}")
        return self

    # -- JSON ------------------------------------------------------------------------------
    def to_json(self):
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text):
        d = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        return cls(**d).validate()


PRESETS = {
    "tiny": Config(),
    "tiny_rgb": Config(channels=3),
    "fashion": Config(
        resolution=32, channels=1, ch=16, g_mult=[4, 4, 2, 1], d_mult=[1, 2, 4, 4],
        num_classes=10, z_dim=64, shared_dim=32, hier=True, g_attn=[16], d_attn=[16],
    ),
    "imagenet64": Config(
        resolution=64, channels=3, ch=96, g_mult=[16, 16, 8, 4, 2], d_mult=[1, 2, 4, 8, 16],
        num_classes=1000, z_dim=120, shared_dim=128, hier=True, g_attn=[32], d_attn=[32],
    ),
    "imagenet128": Config(
        resolution=128, channels=3, ch=96, g_mult=[16, 16, 8, 4, 2, 1],
        d_mult=[1, 2, 4, 8, 16, 16], num_classes=1000, z_dim=120, shared_dim=128, hier=True,
        g_attn=[64], d_attn=[64],
    ),
}


def preset(name):
    """A fresh (validated) copy of a preset config."""
    return copy.deepcopy(PRESETS[name]).validate()


# --------------------------------------------------------------------------------------------
# Spectral norm layers
# --------------------------------------------------------------------------------------------


def l2n(x, eps):
    return x / torch.clamp(torch.linalg.vector_norm(x), min=eps)


class SNLayer(nn.Module):
    """A weight (optionally with bias) used through spectral normalisation.

    `sn_update` (default True) lets a training-mode forward run the power iteration and store
    the new u; set it False (see `frozen_sn`) to use the stored u as eval mode does.
    """

    def __init__(self, weight_shape, bias, sn, sn_eps):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(*weight_shape))
        if bias:
            self.bias = nn.Parameter(torch.empty(weight_shape[0]))
        else:
            self.register_parameter("bias", None)
        self.sn = sn
        self.sn_eps = sn_eps
        self.sn_update = True
        if sn:
            self.register_buffer("u", torch.empty(weight_shape[0]))

    def init_(self, gen):
        with torch.no_grad():
            self.weight.copy_(orthogonal(self.weight.shape, gen))
            if self.bias is not None:
                self.bias.zero_()
            if self.sn:
                u = torch.randn(self.u.shape, generator=gen, dtype=torch.float32)
                self.u.copy_(l2n(u, self.sn_eps))

    def sn_weight(self):
        if not self.sn:
            return self.weight
        w2 = self.weight.reshape(self.weight.shape[0], -1)
        with torch.no_grad():
            v = l2n(w2.t() @ self.u, self.sn_eps)
            if self.training and self.sn_update:
                self.u.copy_(l2n(w2 @ v, self.sn_eps))
            u = self.u.clone()
        sigma = torch.dot(u, w2 @ v)
        return self.weight / sigma


class SNLinear(SNLayer):
    def __init__(self, cin, cout, bias, sn, sn_eps):
        super().__init__((cout, cin), bias, sn, sn_eps)

    def forward(self, x):
        return F.linear(x, self.sn_weight(), self.bias)


class SNConv2d(SNLayer):
    def __init__(self, cin, cout, k, bias, sn, sn_eps):
        super().__init__((cout, cin, k, k), bias, sn, sn_eps)
        self.pad = k // 2

    def forward(self, x):
        return F.conv2d(x, self.sn_weight(), self.bias, padding=self.pad)


class SNEmbedding(SNLayer):
    """Embedding table [num, dim]; SN treats it as a [num, dim] matrix (u has num entries)."""

    def __init__(self, num, dim, sn, sn_eps):
        super().__init__((num, dim), False, sn, sn_eps)

    def forward(self, y):
        return F.embedding(y, self.sn_weight())


@contextmanager
def frozen_sn(module):
    """Within the block, training-mode forwards of `module` use the stored u without updating
    it (exactly the eval-mode spectral norm)."""
    layers = [m for m in module.modules() if isinstance(m, SNLayer)]
    old = [m.sn_update for m in layers]
    for m in layers:
        m.sn_update = False
    try:
        yield
    finally:
        for m, o in zip(layers, old):
            m.sn_update = o


def orthogonal(shape, gen):
    """Orthogonal matrix reshaped to `shape` (rows = shape[0]); float32 from `gen`."""
    rows = shape[0]
    cols = math.prod(shape[1:])
    a = torch.randn(rows, cols, generator=gen, dtype=torch.float32).double()
    flip = rows < cols
    if flip:
        a = a.t()
    q, r = torch.linalg.qr(a)
    d = torch.sign(torch.diagonal(r))
    d[d == 0] = 1
    q = q * d
    if flip:
        q = q.t()
    return q.reshape(shape).float()


# --------------------------------------------------------------------------------------------
# Batch norm
# --------------------------------------------------------------------------------------------


class _BatchStats(nn.Module):
    """Normalisation with batch statistics (training) or standing statistics (eval).

    While `_acc` is a list [sum_mean, sum_var, count], training-mode forwards add their batch
    mean and biased variance to it (see `accumulate_standing_stats`)."""

    def __init__(self, c, eps):
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(c))
        self.register_buffer("var", torch.ones(c))
        self._acc = None

    def normalize(self, x):
        if self.training:
            mean = x.mean(dim=(0, 2, 3))
            var = x.var(dim=(0, 2, 3), correction=0)
            if self._acc is not None:
                self._acc[0] += mean.detach()
                self._acc[1] += var.detach()
                self._acc[2] += 1
        else:
            mean, var = self.mean, self.var
        return (x - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]


class CBN(_BatchStats):
    def __init__(self, c, cdim, cfg):
        super().__init__(c, cfg.bn_eps)
        self.gain = SNLinear(cdim, c, False, cfg.sn, cfg.sn_eps)
        self.bias = SNLinear(cdim, c, False, cfg.sn, cfg.sn_eps)

    def forward(self, x, c):
        g = 1 + self.gain(c)
        b = self.bias(c)
        return self.normalize(x) * g[:, :, None, None] + b[:, :, None, None]


class BN(_BatchStats):
    def __init__(self, c, eps):
        super().__init__(c, eps)
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x):
        return self.normalize(x) * self.weight[None, :, None, None] + self.bias[None, :, None, None]


# --------------------------------------------------------------------------------------------
# Self-attention
# --------------------------------------------------------------------------------------------


class Attention(nn.Module):
    def __init__(self, c, cfg):
        super().__init__()
        ck = max(1, c // 8)
        cv = max(1, c // 2)
        self.theta = SNConv2d(c, ck, 1, False, cfg.sn, cfg.sn_eps)
        self.phi = SNConv2d(c, ck, 1, False, cfg.sn, cfg.sn_eps)
        self.g = SNConv2d(c, cv, 1, False, cfg.sn, cfg.sn_eps)
        self.o = SNConv2d(cv, c, 1, False, cfg.sn, cfg.sn_eps)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        n, c, h, w = x.shape
        theta = self.theta(x).reshape(n, -1, h * w)                  # [N, ck, HW]
        phi = F.max_pool2d(self.phi(x), 2).reshape(n, -1, h * w // 4)  # [N, ck, HW/4]
        g = F.max_pool2d(self.g(x), 2).reshape(n, -1, h * w // 4)      # [N, cv, HW/4]
        beta = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)      # [N, HW, HW/4]
        att = (g @ beta.transpose(1, 2)).reshape(n, -1, h, w)          # [N, cv, H, W]
        return x + self.gamma * self.o(att)


# --------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------


class Embedding(nn.Module):
    """Plain embedding table [num, dim] (the generator's shared class embedding, no SN)."""

    def __init__(self, num, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num, dim))

    def forward(self, y):
        return F.embedding(y, self.weight)


class GBlock(nn.Module):
    def __init__(self, cin, cout, cfg, attn):
        super().__init__()
        s, e = cfg.sn, cfg.sn_eps
        self.bn1 = CBN(cin, cfg.cdim, cfg)
        self.conv1 = SNConv2d(cin, cout, 3, True, s, e)
        self.bn2 = CBN(cout, cfg.cdim, cfg)
        self.conv2 = SNConv2d(cout, cout, 3, True, s, e)
        self.conv_sc = SNConv2d(cin, cout, 1, True, s, e)
        self.attn = Attention(cout, cfg) if attn else None

    def forward(self, x, c):
        h = F.relu(self.bn1(x, c))
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        h = self.conv1(h)
        h = F.relu(self.bn2(h, c))
        h = self.conv2(h)
        sc = self.conv_sc(F.interpolate(x, scale_factor=2, mode="nearest"))
        out = h + sc
        if self.attn is not None:
            out = self.attn(out)
        return out


class Generator(nn.Module):
    """G(z [N, z_dim], y [N] int64) -> images [N, channels, res, res] in [-1, 1] (NCHW)."""

    def __init__(self, cfg, seed=0):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        cg = cfg.g_channels()
        self.linear = SNLinear(cfg.chunk, 16 * cg[0], True, cfg.sn, cfg.sn_eps)
        self.shared = Embedding(cfg.num_classes, cfg.shared_dim)
        self.blocks = nn.ModuleList(
            GBlock(cg[i], cg[i + 1], cfg, cfg.g_out_res(i) in cfg.g_attn) for i in range(cfg.n_g)
        )
        self.out_bn = BN(cg[-1], cfg.bn_eps)
        self.out_conv = SNConv2d(cg[-1], cfg.channels, 3, True, cfg.sn, cfg.sn_eps)
        if seed is not None:
            init_weights(self, seed)

    def forward(self, z, y):
        cfg = self.cfg
        n = z.shape[0]
        e = self.shared(y)
        if cfg.hier:
            zs = torch.split(z, cfg.chunk, dim=1)
            z0 = zs[0]
            cs = [torch.cat([zs[i + 1], e], dim=1) for i in range(cfg.n_g)]
        else:
            z0 = z
            cs = [e] * cfg.n_g
        c0 = self.linear.weight.shape[0] // 16
        h = self.linear(z0).view(n, 4, 4, c0).permute(0, 3, 1, 2)
        for block, c in zip(self.blocks, cs):
            h = block(h, c)
        h = F.relu(self.out_bn(h))
        return torch.tanh(self.out_conv(h))


# --------------------------------------------------------------------------------------------
# Discriminator
# --------------------------------------------------------------------------------------------


class DBlock(nn.Module):
    def __init__(self, cin, cout, cfg, first, down, attn):
        super().__init__()
        s, e = cfg.sn, cfg.sn_eps
        self.first = first
        self.down = down
        self.conv1 = SNConv2d(cin, cout, 3, True, s, e)
        self.conv2 = SNConv2d(cout, cout, 3, True, s, e)
        if first or cin != cout or down:
            self.conv_sc = SNConv2d(cin, cout, 1, True, s, e)
        else:
            self.conv_sc = None
        self.attn = Attention(cout, cfg) if attn else None

    def forward(self, x):
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        if self.first:
            sc = self.conv_sc(F.avg_pool2d(x, 2))
        elif self.conv_sc is not None:
            sc = self.conv_sc(x)
            if self.down:
                sc = F.avg_pool2d(sc, 2)
        else:
            sc = x
        out = h + sc
        if self.attn is not None:
            out = self.attn(out)
        return out


class Discriminator(nn.Module):
    """D(x [N, channels, res, res], y [N] int64) -> (logit [N], rot [N, 4] or None,
    cls [N, num_classes] or None)."""

    def __init__(self, cfg, seed=1):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        cd = cfg.d_channels()
        cins = [cfg.channels] + cd[:-1]
        self.blocks = nn.ModuleList(
            DBlock(cins[j], cd[j], cfg, j == 0, j < cfg.n_g, cfg.d_out_res(j) in cfg.d_attn)
            for j in range(cfg.n_g + 1)
        )
        c = cd[-1]
        s, e = cfg.sn, cfg.sn_eps
        self.linear = SNLinear(c, 1, True, s, e)
        self.embed = SNEmbedding(cfg.num_classes, c, s, e)
        self.rotation = SNLinear(c, 4, True, s, e) if cfg.rotation_head else None
        self.classifier = SNLinear(c, cfg.num_classes, True, s, e) if cfg.class_head else None
        if seed is not None:
            init_weights(self, seed)

    def features(self, x):
        h = x
        for block in self.blocks:
            h = block(h)
        return F.relu(h).sum(dim=(2, 3))

    def forward(self, x, y):
        h = self.features(x)
        logit = self.linear(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)
        rot = self.rotation(h) if self.rotation is not None else None
        cls = self.classifier(h) if self.classifier is not None else None
        return logit, rot, cls


# --------------------------------------------------------------------------------------------
# Init, counting, standing statistics
# --------------------------------------------------------------------------------------------


def init_weights(model, seed):
    """The documented initialisation (see the module docstring), in registration order."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, SNLayer):
                m.init_(gen)
            elif isinstance(m, Embedding):
                m.weight.copy_(orthogonal(m.weight.shape, gen))
            elif isinstance(m, BN):
                m.weight.fill_(1)
                m.bias.zero_()
            elif isinstance(m, Attention):
                m.gamma.zero_()
            if isinstance(m, _BatchStats):
                m.mean.zero_()
                m.var.fill_(1)


def count_params(model):
    """Trained parameters only (u and the standing statistics are state, not counted)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def accumulate_standing_stats(G, n_batches, batch, seed):
    """Standing BN statistics for sampling one image at a time.

    Runs G in training mode (batch statistics) on `n_batches` batches of z ~ N(0, 1)
    (drawn in float32, then cast to G's dtype) and y uniform over the classes, from
    torch.Generator().manual_seed(seed); every BN / CBN layer stores the average of its
    per-batch means and biased variances in .mean / .var. Spectral norm does not update u
    during this (`frozen_sn`: every SN layer uses its stored u, as in eval mode). G's
    training flag is restored afterwards; nothing else changes."""
    cfg = G.cfg
    p = next(G.parameters())
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in G.modules() if isinstance(m, _BatchStats)]
    for m in bns:
        m._acc = [torch.zeros_like(m.mean), torch.zeros_like(m.var), 0]
    was_training = G.training
    G.train()
    try:
        with frozen_sn(G):
            for _ in range(n_batches):
                z = torch.randn(batch, cfg.z_dim, generator=gen, dtype=torch.float32)
                y = torch.randint(0, cfg.num_classes, (batch,), generator=gen)
                G(z.to(device=p.device, dtype=p.dtype), y.to(p.device))
        for m in bns:
            s_mean, s_var, k = m._acc
            m.mean.copy_(s_mean / k)
            m.var.copy_(s_var / k)
    finally:
        for m in bns:
            m._acc = None
        G.train(was_training)


# --------------------------------------------------------------------------------------------
# Model files
# --------------------------------------------------------------------------------------------


def save_safetensors(path, config, G, D=None, G_ema=None):
    """Write a model file: tensors "G.<name>", "D.<name>", "G_ema.<name>" (float32), the
    config JSON in the metadata key "config"."""
    from safetensors.torch import save_file

    tensors = {}
    for prefix, m in (("G", G), ("D", D), ("G_ema", G_ema)):
        if m is None:
            continue
        for k, v in m.state_dict().items():
            tensors[f"{prefix}.{k}"] = v.detach().to("cpu", torch.float32).contiguous()
    save_file(tensors, path, metadata={"config": config.to_json()})


def load_safetensors(path):
    """Read a model file -> (config, G, D or None, G_ema or None), float32 modules in
    training mode (call .eval() / .double() as needed). Loading is strict: every name of the
    config's modules must be present and no other."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        if "config" not in meta:
            raise ValueError(f"{path}: no 'config' metadata")
        cfg = Config.from_json(meta["config"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    parts = {"G": {}, "D": {}, "G_ema": {}}
    for k, v in tensors.items():
        prefix, _, rest = k.partition(".")
        if prefix not in parts or not rest:
            raise ValueError(f"{path}: unexpected tensor name {k!r}")
        parts[prefix][rest] = v
    if not parts["G"]:
        raise ValueError(f"{path}: no generator tensors")
    G = Generator(cfg, seed=None)
    G.load_state_dict(parts["G"], strict=True)
    D = G_ema = None
    if parts["D"]:
        D = Discriminator(cfg, seed=None)
        D.load_state_dict(parts["D"], strict=True)
    if parts["G_ema"]:
        G_ema = Generator(cfg, seed=None)
        G_ema.load_state_dict(parts["G_ema"], strict=True)
    return cfg, G, D, G_ema
