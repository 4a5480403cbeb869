"""Shared helpers for the golden-tensor generators.

Every generator builds its inputs in float32 from a fixed seed, runs the op in float64 with
PyTorch autograd (so the reference is more exact than the float32 code under test), and
stores inputs, outputs and gradients as float32 (int32 for integer tensors).

Layout: activations are stored NHWC, the runtime's layout (PyTorch computes in NCHW; `nhwc`
permutes). Parameters keep PyTorch's layout.

A case's tensors are named "<case>/<tensor>".
"""

import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def rand(seed, *shape, scale=1.0):
    """Normal float32 values from a fixed seed, returned as float64 (exact copies)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float32) * scale).double()


def uniform(seed, *shape, lo=-1.0, hi=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g, dtype=torch.float32) * (hi - lo) + lo).double()


def randint(seed, lo, hi, *shape):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(lo, hi, shape, generator=g, dtype=torch.int64)


def nhwc(t):
    """NCHW -> NHWC."""
    return t.permute(0, 2, 3, 1).contiguous()


def nchw(t):
    """NHWC -> NCHW."""
    return t.permute(0, 3, 1, 2).contiguous()


class Cases:
    """Collects named tensors for one op family."""

    def __init__(self):
        self.tensors = {}

    def add(self, case, name, t):
        key = f"{case}/{name}"
        assert key not in self.tensors, key
        t = t.detach()
        if t.dtype in (torch.int64, torch.int32, torch.bool):
            t = t.to(torch.int32)
        else:
            t = t.to(torch.float32)
        self.tensors[key] = t.contiguous()

    def save(self, family):
        from safetensors.torch import save_file

        path = os.path.join(HERE, f"{family}.safetensors")
        ordered = {k: self.tensors[k] for k in sorted(self.tensors)}
        # One metadata key: safetensors writes metadata from a hash map, so with several keys
        # their order (and the file's bytes) could change between runs.
        save_file(ordered, path, metadata={"generator": f"tests/golden/generate.py {family}"})
        return path
