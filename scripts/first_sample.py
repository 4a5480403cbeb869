"""Time a model's first samples through the C ABI (Python binding), with or without
fl_model_prepare: `python3 scripts/first_sample.py prepare|none` (FEWLABELS_LIB names the
library; the embedded default model, one image per call). Run it on an empty and on a filled
Mesa cache (MESA_SHADER_CACHE_DIR)."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bindings", "python"))
import fewlabels  # noqa: E402

t0 = time.time()
m = fewlabels.Model()
t1 = time.time()
if sys.argv[1:] == ["prepare"]:
    m.prepare(1)
t2 = time.time()
z = m.make_z(1, 1.0, 1)
times = []
for c in range(3):
    a = time.time()
    m.sample(c, z)
    times.append(time.time() - a)
print(f"load {t1 - t0:.2f} s, prepare {t2 - t1:.2f} s, samples "
      + ", ".join(f"{x:.3f}" for x in times) + " s")
