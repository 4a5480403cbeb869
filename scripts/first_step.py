"""Time a trainer's first steps through the C ABI (Python binding), with or without
fl_trainer_prepare: `python3 scripts/first_step.py prepare|none` (FEWLABELS_LIB names the
library; the embedded default model, batch 32). Run it on an empty and on a filled Mesa cache
(MESA_SHADER_CACHE_DIR) to see where the first run's compile goes."""
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bindings", "python"))
import fewlabels  # noqa: E402

t0 = time.time()
tr = fewlabels.Trainer(None, fewlabels.TrainConfig.default(ema_start=1))
t1 = time.time()
n = 32
random.seed(1)
images = [random.random() for _ in range(n * tr.image_floats)]
labels = [i % 10 if i % 4 == 0 else -1 for i in range(n)]
if sys.argv[1:] == ["prepare"]:
    tr.prepare(n)
t2 = time.time()
steps = []
for _ in range(3):
    a = time.time()
    tr.step(images, labels)
    steps.append(time.time() - a)
print(f"create {t1 - t0:.2f} s, prepare {t2 - t1:.2f} s, steps "
      + ", ".join(f"{x:.2f}" for x in steps) + " s")
