"""Reference S3GAN training step (compare_gan semantics, see /work/shared/reference/s3gan.md,
section "Losses") on the networks of biggan.py. The numerical reference for
runtime/train/mod.rs; tests/golden/gen_train.py runs it in float64.

Variants (`VARIANTS`): which heads are trained and which labels are used.
| variant       | class head | rotation loss | labels                                             |
|---------------|------------|---------------|----------------------------------------------------|
| conditional   | no         | no            | every real label known (>= 0)                       |
| unconditional | no         | no            | class 0 for every real and fake image               |
| ssgan         | no         | yes           | class 0 for every real and fake image               |
| s2gan-co      | yes        | no            | real label, or argmax of D's class head when -1     |
| s3gan-co      | yes        | yes           | as s2gan-co                                         |

Rotation: k = `rot_n` rows. The last k real images and the last k fakes are also fed rotated by
90, 180 and 270 degrees (torch.rot90(x, j, dims=(2, 3)), counter-clockwise). One D call sees
    X = [real (N); real_rot (3k); fake (N); fake_rot (3k)]        (D step)
    X = [fake (N); fake_rot (3k)]                                  (G step)
with real_rot = [rot90(last k real); rot180(...); rot270(...)] (same for fakes), the order of
compare_gan's merge_with_rotation_data. The rotation set of a half is its last 4k rows (the
last k unrotated images, then the three rotations) with targets [0]*k + [1]*k + [2]*k + [3]*k.
Without the rotation loss k = 0 (no rotated rows).

Projection labels of the D call: real rows their label, fake rows their fake label, rotated rows
the label of the row they were rotated from (compare_gan tiles them). With the class head, every
row whose label is -1 (an unlabelled real row or its rotated copies) uses the argmax of the
class head of that same row, with no gradient through the choice. The logit of a rotated row
is not used by any loss, so its label never matters to the result.

Losses:
    D: mean(relu(1 - logit[real])) + mean(relu(1 + logit[fake]))       (unrotated rows only)
       + d_rot_weight * CE(rotation head, real rotation set)
       + class_weight * CE(class head, labelled real rows; mean over them; 0 if none)
    G: -mean(logit[fake]) + g_rot_weight * CE(rotation head, fake rotation set)
(compare_gan's rotation CE is -log(softmax + 1e-10); the exact log-softmax is used here.)

Order of one D step: G forward in training mode without gradients (batch statistics; G's
spectral norms do their power iteration, as in BigGAN-PyTorch, where G runs in training mode
under no_grad), one D forward in training mode (one power iteration per SN layer), backward,
Adam on D (parameters without a gradient, such as a head the variant does not use, are
skipped, as torch.optim does).
Order of one G step: G forward in training mode, one D forward in training mode (D's u does its
power iteration here too: D runs in training mode in BigGAN-PyTorch's G step; D's parameters are
not updated), backward into G, Adam on G, then the EMA of G.

EMA (BigGAN-PyTorch's rule, applied to every tensor of G's state dict, parameters and state
alike): after G step t (counted from 1), G_ema = G when t < ema_start, else
G_ema = decay * G_ema + (1 - decay) * G.
"""

import torch
import torch.nn.functional as F

VARIANTS = {
    # name: (class head, rotation loss, labels)
    "conditional": (False, False, "all"),
    "unconditional": (False, False, "one"),
    "ssgan": (False, True, "one"),
    "s2gan-co": (True, False, "semi"),
    "s3gan-co": (True, True, "semi"),
}


class TrainConfig:
    def __init__(self, variant, rot_n=0, lr_g=1e-4, lr_d=4e-4, beta1=0.0, beta2=0.999,
                 eps=1e-8, d_rot_weight=1.0, g_rot_weight=0.2, class_weight=1.0,
                 ema_decay=0.9999, ema_start=0):
        assert variant in VARIANTS, variant
        self.variant = variant
        self.class_head, self.rotation, self.labels = VARIANTS[variant]
        self.rot_n = rot_n if self.rotation else 0
        self.lr_g, self.lr_d = lr_g, lr_d
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.d_rot_weight, self.g_rot_weight = d_rot_weight, g_rot_weight
        self.class_weight = class_weight
        self.ema_decay, self.ema_start = ema_decay, ema_start


def adam(params, lr, tc):
    return torch.optim.Adam(params, lr=lr, betas=(tc.beta1, tc.beta2), eps=tc.eps, foreach=False)


def labels_used(tc, y):
    """The labels a variant feeds G and D: class 0 everywhere for the one-class variants."""
    if tc.labels == "one":
        return torch.zeros_like(y)
    if tc.labels == "all":
        assert bool((y >= 0).all()), "the conditional variant needs every label"
    return y


def with_rotations(x, y, k):
    """[x; rot90(x[-k:]); rot180(x[-k:]); rot270(x[-k:])] (NCHW) and the labels tiled alike."""
    if k == 0:
        return x, y
    xs = [x] + [torch.rot90(x[-k:], j, dims=(2, 3)) for j in (1, 2, 3)]
    ys = [y] + [y[-k:]] * 3
    return torch.cat(xs), torch.cat(ys)


def rotation_targets(k):
    return torch.arange(4).repeat_interleave(k)


def d_forward(D, x, y):
    """D's outputs with the projection labels filled in: rows whose label is -1 use the
    argmax of the class head (no gradient through the choice)."""
    h = D.features(x)
    rot = D.rotation(h) if D.rotation is not None else None
    cls = D.classifier(h) if D.classifier is not None else None
    if cls is not None:
        y = torch.where(y >= 0, y, cls.detach().argmax(dim=1))
    else:
        assert bool((y >= 0).all())
    logit = D.linear(h).squeeze(1) + (D.embed(y) * h).sum(dim=1)
    return logit, rot, cls, y


def d_step(G, D, opt_d, tc, x, y, z, y_fake):
    """One D step. x: real images NCHW [N, C, R, R]; y: labels [N] (-1 = unlabelled);
    z [N, z_dim]; y_fake [N]. Returns the losses (total, hinge, rotation, class) and the
    projection labels D used."""
    n, k = x.shape[0], tc.rot_n
    y = labels_used(tc, y)
    y_fake = labels_used(tc, y_fake)
    with torch.no_grad():
        fake = G(z, y_fake)
    xr, yr = with_rotations(x, y, k)
    xf, yf = with_rotations(fake, y_fake, k)
    half = n + 3 * k
    logit, rot, cls, y_used = d_forward(D, torch.cat([xr, xf]), torch.cat([yr, yf]))
    hinge = F.relu(1 - logit[:n]).mean() + F.relu(1 + logit[half:half + n]).mean()
    zero = hinge.new_zeros(())
    rot_loss = zero
    if k > 0:
        rot_loss = tc.d_rot_weight * F.cross_entropy(rot[n - k:half], rotation_targets(k))
    cls_loss = zero
    if tc.class_head:
        lab = y[:n] >= 0
        if bool(lab.any()):
            cls_loss = tc.class_weight * F.cross_entropy(cls[:n][lab], y[:n][lab])
    loss = hinge + rot_loss + cls_loss
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    return torch.stack([loss, hinge, rot_loss, cls_loss]).detach(), y_used


def g_step(G, D, G_ema, opt_g, tc, z, y_fake, t):
    """One G step (t = G steps so far including this one, from 1). Returns the losses
    (total, adversarial, rotation)."""
    n, k = z.shape[0], tc.rot_n
    y_fake = labels_used(tc, y_fake)
    fake = G(z, y_fake)
    xf, yf = with_rotations(fake, y_fake, k)
    logit, rot, _, _ = d_forward(D, xf, yf)
    adv = -logit[:n].mean()
    rot_loss = adv.new_zeros(())
    if k > 0:
        rot_loss = tc.g_rot_weight * F.cross_entropy(rot[n - k:], rotation_targets(k))
    loss = adv + rot_loss
    params = [p for p in G.parameters()]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    opt_g.zero_grad(set_to_none=True)
    for p, g in zip(params, grads):
        p.grad = g
    opt_g.step()
    ema_update(G_ema, G, tc, t)
    return torch.stack([loss, adv, rot_loss]).detach()


@torch.no_grad()
def ema_update(G_ema, G, tc, t):
    decay = 0.0 if t < tc.ema_start else tc.ema_decay
    src = G.state_dict()
    for name, v in G_ema.state_dict().items():
        v.copy_(decay * v + (1 - decay) * src[name])


# --------------------------------------------------------------------------------------------
# Pre-trained labels (s2gan, s3gan): the labeller, then a conditional GAN on its labels
# --------------------------------------------------------------------------------------------
#
# The GAN of s2gan / s3gan is trained like the conditional variant (every real label known:
# the labeller filled the gaps), with the rotation loss for s3gan. No class head.
VARIANTS.update({
    "s2gan": (False, False, "all"),
    "s3gan": (False, True, "all"),
})


class LabellerConfig:
    """Labeller hyper-parameters (runtime/train/labeller.rs): Adam with torch's default betas
    and eps, `rot_n` rotated rows per batch, class-loss weight."""

    def __init__(self, rot_n, lr=4e-4, beta1=0.9, beta2=0.999, eps=1e-8, class_weight=1.0):
        assert rot_n >= 1
        self.rot_n = rot_n
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.class_weight = class_weight


def labeller_adam(D, lc):
    return torch.optim.Adam(D.parameters(), lr=lc.lr, betas=(lc.beta1, lc.beta2), eps=lc.eps,
                            foreach=False)


def labeller_step(D, opt, lc, x, y):
    """One labeller step on D (with both heads, training mode). x: NCHW [N, C, R, R]; y [N]
    (-1 = unlabelled). One D call over [x; rot90(x[-k:]); rot180(...); rot270(...)] with
    projection labels 0 everywhere: the logit enters no loss (D.linear and D.embed get no
    gradient, so Adam skips them), but their spectral norms take their power iteration, as
    the runtime's D forward does.
    Loss = CE(rotation head, last 4k rows, targets [0]*k + [1]*k + [2]*k + [3]*k)
         + class_weight * CE(class head, labelled rows of x; mean over them; 0 if none).
    Returns (total, rotation, class) and the class head's argmax of the N rows (before the
    update)."""
    n, k = x.shape[0], lc.rot_n
    xr, _ = with_rotations(x, y, k)
    _, rot, cls = D(xr, torch.zeros(xr.shape[0], dtype=torch.int64))
    rot_loss = F.cross_entropy(rot[n - k:], rotation_targets(k))
    lab = y >= 0
    cls_loss = rot_loss.new_zeros(())
    if bool(lab.any()):
        cls_loss = lc.class_weight * F.cross_entropy(cls[:n][lab], y[lab])
    loss = rot_loss + cls_loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return torch.stack([loss, rot_loss, cls_loss]).detach(), cls[:n].detach().argmax(dim=1)


@torch.no_grad()
def labeller_predict(D, x):
    """Class logits and argmax of images x (NCHW) with D in eval mode (spectral norms from the
    stored u, no update); D's training flag is restored."""
    was = D.training
    D.eval()
    _, _, cls = D(x, torch.zeros(x.shape[0], dtype=torch.int64))
    D.train(was)
    return cls, cls.argmax(dim=1)


# --------------------------------------------------------------------------------------------
# Class head fitted alone (runtime/train/head.rs)
# --------------------------------------------------------------------------------------------


def fit_class_head(D, x, y, steps, lr):
    """The class-head fit of runtime/train/head.rs with one batch of every labelled row (the
    runtime draws batches from a seeded order; with the batch as large as the labelled set,
    each of its batches is those rows, whose order the mean loss does not see).
    D's pooled features of the labelled rows of x (NCHW) are computed once in eval mode
    (spectral norms from the stored u); then D.classifier alone takes `steps` Adam steps
    (PyTorch's defaults: betas 0.9, 0.999, eps 1e-8) on the mean cross-entropy, in training
    mode (one power iteration per step). Returns the features, the loss of every step, the
    head's eval-mode logits of the features after the fit, and the head's gradients (weight,
    bias) of every step. D's training flag is restored."""
    lab = (y >= 0).nonzero().squeeze(1)
    was = D.training
    D.eval()
    with torch.no_grad():
        feats = D.features(x[lab])
    head = D.classifier
    head.train()
    opt = torch.optim.Adam(head.parameters(), lr=lr, foreach=False)
    losses, grads = [], []
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(head(feats), y[lab])
        loss.backward()
        grads.append([p.grad.clone() for p in head.parameters()])
        opt.step()
        losses.append(loss.detach())
    head.eval()
    with torch.no_grad():
        logits = head(feats)
    D.train(was)
    return feats, torch.stack(losses), logits, grads
