"""Time the first calls of a trainer or a model through the C ABI (Python binding), with or
without compiling at load (fl_trainer_prepare / fl_model_prepare), on the embedded default
model: `python3 scripts/first_call.py train|sample prepare|none` (FEWLABELS_LIB names the
library). train: batch 32, three steps; sample: one image per call, three calls. Run it on an
empty and on a filled Mesa cache (MESA_SHADER_CACHE_DIR) to see where the first run's
compile goes."""
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bindings", "python"))
import fewlabels  # noqa: E402

what, mode = sys.argv[1:3]
t0 = time.time()
if what == "train":
    obj = fewlabels.Trainer(None, fewlabels.TrainConfig.default(ema_start=1))
    n = 32
    random.seed(1)
    images = [random.random() for _ in range(n * obj.image_floats)]
    labels = [i % 10 if i % 4 == 0 else -1 for i in range(n)]
    calls = [lambda: obj.step(images, labels)] * 3
else:
    obj = fewlabels.Model()
    n = 1
    z = obj.make_z(1, 1.0, 1)
    calls = [lambda c=c: obj.sample(c, z) for c in range(3)]
t1 = time.time()
if mode == "prepare":
    obj.prepare(n)
t2 = time.time()
times = []
for call in calls:
    a = time.time()
    call()
    times.append(time.time() - a)
print(f"{what}: create {t1 - t0:.2f} s, prepare {t2 - t1:.2f} s, calls "
      + ", ".join(f"{x:.3f}" for x in times) + " s")
