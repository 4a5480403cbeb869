"""Regenerate every golden file: `python tests/golden/generate.py [family ...]`.

Each tests/golden/gen_<family>.py has generate() -> Cases; its tensors go to
tests/golden/<family>.safetensors. The output is deterministic (fixed seeds, CPU, float64
reference math), so regenerating yields the same files.
"""

import glob
import importlib
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    families = sys.argv[1:] or sorted(
        os.path.basename(p)[4:-3] for p in glob.glob(os.path.join(HERE, "gen_*.py"))
    )
    for fam in families:
        mod = importlib.import_module(f"gen_{fam}")
        cases = mod.generate()
        path = cases.save(fam)
        size = os.path.getsize(path)
        print(f"{fam}: {len(cases.tensors)} tensors, {size} bytes -> {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
