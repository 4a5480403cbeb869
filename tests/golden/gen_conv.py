"""Goldens for shaders/conv.wgsl: conv2d (k in {1, 3}, stride 1, 'same' zero padding) and its
backward pass (dx, dw, db).

Torch computes F.conv2d in NCHW in float64; x, y, dx, dy are stored NHWC, w and dw in
PyTorch's [Cout, Cin, k, k] layout, b and db as [Cout].
"""

import torch
import torch.nn.functional as F

from common import Cases, nchw, nhwc, rand


# (name, N, Cin, Cout, H=W, k)
SHAPES = [
    ("k3_n3_ci5_co8_h9", 3, 5, 8, 9, 3),
    ("k3_n2_ci8_co3_h5", 2, 8, 3, 5, 3),
    ("k3_n1_ci3_co4_h6", 1, 3, 4, 6, 3),
    ("k1_n3_ci3_co5_h6", 3, 3, 5, 6, 1),
    ("k1_n2_ci8_co8_h5", 2, 8, 8, 5, 1),
    # Cin and Cout multiples of 4 (the vec4 path), more pixels than one tile row.
    ("k3_n2_ci16_co16_h8", 2, 16, 16, 8, 3),
    ("k1_n2_ci16_co16_h8", 2, 16, 16, 8, 1),
]

# Shapes that cross the kernels' tiles (bias only, to keep the file small): several workgroups
# of 8x8 blocks / 32-pixel groups, a partial output-channel group, and more than one chunk in
# the weight- and bias-gradient reductions (N*H*W > 1024).
CROSSING = [
    ("k3_n3_ci8_co20_h19", 3, 8, 20, 19, 3),
    ("k1_n2_ci4_co17_h23", 2, 4, 17, 23, 1),
]


# conv2d_load: x transformed as the kernels load it (ReLU, nearest 2x upsampling, or both) before
# the conv; dx is the gradient with respect to the stored x. H is x's size (the output is 2H
# when upsampling). Covers the 8-channel (co <= 8) and 16-channel tiles, odd sizes, and 1x1
# (computed through the transformed tensor).
# (name, N, Cin, Cout, H=W of x, k, relu, upsample)
LOAD = [
    ("relu_k3_n2_ci5_co8_h9", 2, 5, 8, 9, 3, True, False),
    ("up_k3_n2_ci8_co3_h5", 2, 8, 3, 5, 3, False, True),
    ("reluup_k3_n3_ci4_co9_h4", 3, 4, 9, 4, 3, True, True),
    ("up_k3_n1_ci6_co20_h7", 1, 6, 20, 7, 3, False, True),
    ("relu_k1_n2_ci3_co5_h6", 2, 3, 5, 6, 1, True, False),
    ("reluup_k1_n2_ci4_co4_h3", 2, 4, 4, 3, 1, True, True),
]


def generate_load(c, seed):
    for name, n, cin, cout, h, k, relu, up in LOAD:
        seed += 10
        add_case(c, f"load_{name}", seed, n, cin, cout, h, h, k, True, relu, up)


# A 1x1 conv whose weight gradient takes several chunks of whole images (each image over 1024
# pixels), with channel counts that are not multiples of 4. Seeded apart from the lists above
# so that adding it left their tensors as they were.
MULTI_CHUNK = [
    ("k1_n3_ci3_co6_h33", 3, 3, 6, 33, 1),
]


# 1x1 convs whose output channels are whole vec4s and whose input channels are not (the
# discriminator's first shortcut, 1 -> ch): on CPU adapters they run as padded GEMMs.
PADDED_1X1 = [
    ("k1_n3_ci1_co8_h6", 3, 1, 8, 6, 1),
    ("k1_n2_ci3_co12_h7", 2, 3, 12, 7, 1),
]


# 3x3 convs with one channel on one side and the image width a multiple of 4 (D's first conv
# and G's last): on CPU adapters they take the one-channel kernels (shaders/conv_thin.wgsl).
# Height not a multiple of 4 (the 4-row tiles), one texel per row (h4w4), and enough rows for
# weight-gradient chunks of several rows. (name, N, Cin, Cout, H, W)
THIN = [
    ("thin_k3_n3_ci1_co8_h7w12", 3, 1, 8, 7, 12),
    ("thin_k3_n2_ci12_co1_h9w8", 2, 12, 1, 9, 8),
    ("thin_k3_n1_ci1_co4_h4w4", 1, 1, 4, 4, 4),
    ("thin_k3_n5_ci1_co16_h31w8", 5, 1, 16, 31, 8),
    ("thin_k3_n2_ci8_co1_h6w4", 2, 8, 1, 6, 4),
]

# The same with a transform on load: ReLU with Cout = 1 (G's last conv; the one-channel
# kernels), and two that must take the other kernels (ReLU into Cin = 1, upsampling).
# (name, N, Cin, Cout, H, W of x, relu, upsample)
THIN_LOAD = [
    ("relu_thin_k3_n3_ci8_co1_h5w16", 3, 8, 1, 5, 16, True, False),
    ("relu_thin_k3_n2_ci1_co4_h6w8", 2, 1, 4, 6, 8, True, False),
    ("up_thin_k3_n2_ci4_co1_h3w4", 2, 4, 1, 3, 4, False, True),
]


def generate_thin(c, seed):
    for (name, n, cin, cout, h, w), bias in [(s, b) for s in THIN for b in (True, False)]:
        seed += 10
        add_case(c, f"conv_{name}_{'bias' if bias else 'nobias'}", seed, n, cin, cout, h, w, 3,
                 bias)
    for name, n, cin, cout, h, w, relu, up in THIN_LOAD:
        seed += 10
        add_case(c, f"load_{name}", seed, n, cin, cout, h, w, 3, True, relu, up)


def generate():
    c = Cases()
    seed = 10
    add_cases(c, seed, [(s, bias) for s in SHAPES for bias in (True, False)]
              + [(s, True) for s in CROSSING])
    seed += 10 * (2 * len(SHAPES) + len(CROSSING))
    generate_load(c, seed)
    add_cases(c, 900, [(s, True) for s in MULTI_CHUNK])
    add_cases(c, 950, [(s, bias) for s in PADDED_1X1 for bias in (True, False)])
    generate_thin(c, 1000)
    return c


def add_cases(c, seed, runs):
    """conv2d goldens for (shape, bias) pairs, seeds seed + 10, seed + 20, ..."""
    for (name, n, cin, cout, h, k), bias in runs:
        seed += 10
        add_case(c, f"conv_{name}_{'bias' if bias else 'nobias'}", seed, n, cin, cout, h, h, k,
                 bias)


def add_case(c, case, seed, n, cin, cout, h, w, k, bias, relu=False, up=False):
    """One case: x [n, h, w, cin] (seed), the weight (seed + 1), the bias (seed + 2, when
    `bias`), dy (seed + 3); y = conv2d(x with ReLU and/or 2x nearest upsampling when asked)
    and the gradients of x, w and b."""
    x = rand(seed, n, h, w, cin).requires_grad_()
    # Weights at roughly PyTorch's default scale so outputs stay O(1).
    wt = rand(seed + 1, cout, cin, k, k, scale=(cin * k * k) ** -0.5).requires_grad_()
    b = rand(seed + 2, cout).requires_grad_() if bias else None
    s = 2 if up else 1
    dy = rand(seed + 3, n, s * h, s * w, cout)
    t = nchw(x)
    if relu:
        t = F.relu(t)
    if up:
        t = F.interpolate(t, scale_factor=2, mode="nearest")
    y = nhwc(F.conv2d(t, wt, b, stride=1, padding=k // 2))
    inputs = (x, wt) + ((b,) if bias else ())
    grads = torch.autograd.grad(y, inputs, dy)
    for key, v in (("x", x), ("w", wt), ("dy", dy), ("y", y), ("dx", grads[0]),
                   ("dw", grads[1])):
        c.add(case, key, v)
    if bias:
        c.add(case, "b", b)
        c.add(case, "db", grads[2])
