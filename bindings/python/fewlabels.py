"""Python bindings for libfewlabels through ctypes (no compiled extension, no dependencies).

    import fewlabels
    model = fewlabels.Model("model.safetensors")
    z = model.make_z(seed=1, truncation=0.8, n=1)
    img = model.sample(class_id=0, z=z)      # array('f'): channels*height*width, CHW, [0, 1]
    rgba = model.sample_rgba8(0, z)          # bytes: height*width*4

Arrays are `array.array('f')` (buffer protocol: `numpy.frombuffer(img, numpy.float32)` works
without a copy); any sequence of floats is accepted as input. Failures raise `FewlabelsError`
with the status name and the library's message.

The library is found at $FEWLABELS_LIB, else as libfewlabels.so / .dylib / fewlabels.dll on the
system's library path. One `Model` may be sampled from several threads at once; a `Trainer`
is used by one thread at a time.
"""

import ctypes
import ctypes.util
import os
import sys
from array import array

__all__ = [
    "FewlabelsError",
    "Model",
    "ModelInfo",
    "StepStats",
    "TrainConfig",
    "Trainer",
    "VARIANTS",
    "library",
    "version",
]

# fl_variant values by name.
VARIANTS = {"conditional": 0, "unconditional": 1, "ssgan": 2, "s2gan-co": 3, "s3gan-co": 4}

_lib = None


class FewlabelsError(Exception):
    """A libfewlabels call failed: `status` is the code, `name` its name (FL_ERR_...)."""

    def __init__(self, status, name, message):
        super().__init__(f"{name}: {message}")
        self.status = status
        self.name = name
        self.message = message


class ModelInfo(ctypes.Structure):
    """Mirror of fl_model_info."""

    _fields_ = [
        ("num_classes", ctypes.c_uint32),
        ("z_dim", ctypes.c_uint32),
        ("channels", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("width", ctypes.c_uint32),
        ("has_discriminator", ctypes.c_uint32),
        ("has_class_head", ctypes.c_uint32),
        ("has_rotation_head", ctypes.c_uint32),
        ("has_ema", ctypes.c_uint32),
        ("max_batch", ctypes.c_uint32),
        ("generator_params", ctypes.c_uint64),
        ("discriminator_params", ctypes.c_uint64),
    ]

    def __repr__(self):
        fields = ", ".join(f"{k}={getattr(self, k)}" for k, _ in self._fields_)
        return f"ModelInfo({fields})"


class TrainConfig(ctypes.Structure):
    """Mirror of fl_train_config (`TrainConfig.default()` gives the library's defaults)."""

    _fields_ = [
        ("variant", ctypes.c_int32),
        ("d_steps", ctypes.c_uint32),
        ("lr_g", ctypes.c_double),
        ("lr_d", ctypes.c_double),
        ("beta1", ctypes.c_double),
        ("beta2", ctypes.c_double),
        ("eps", ctypes.c_double),
        ("rot_fraction", ctypes.c_double),
        ("g_rot_weight", ctypes.c_float),
        ("d_rot_weight", ctypes.c_float),
        ("class_weight", ctypes.c_float),
        ("ema_decay", ctypes.c_double),
        ("ema_start", ctypes.c_uint64),
        ("seed", ctypes.c_uint64),
    ]

    @classmethod
    def default(cls, **changes):
        """The default configuration (S3GAN-CO), with `changes` applied; `variant` may be a
        name from VARIANTS."""
        cfg = cls()
        _check(library().fl_train_config_default(ctypes.byref(cfg)))
        for k, v in changes.items():
            if k == "variant" and isinstance(v, str):
                v = VARIANTS[v]
            if k not in dict(cls._fields_):
                raise TypeError(f"TrainConfig has no field {k!r}")
            setattr(cfg, k, v)
        return cfg

    def __repr__(self):
        fields = ", ".join(f"{k}={getattr(self, k)}" for k, _ in self._fields_)
        return f"TrainConfig({fields})"


class StepStats(ctypes.Structure):
    """Mirror of fl_step_stats."""

    _fields_ = [
        ("d_loss", ctypes.c_float),
        ("d_hinge", ctypes.c_float),
        ("d_rotation", ctypes.c_float),
        ("d_class", ctypes.c_float),
        ("g_loss", ctypes.c_float),
        ("g_adversarial", ctypes.c_float),
        ("g_rotation", ctypes.c_float),
        ("class_accuracy", ctypes.c_float),
        ("labelled", ctypes.c_uint32),
        ("d_steps_done", ctypes.c_uint64),
        ("g_steps_done", ctypes.c_uint64),
    ]

    def __repr__(self):
        fields = ", ".join(f"{k}={getattr(self, k)}" for k, _ in self._fields_)
        return f"StepStats({fields})"


def _find():
    path = os.environ.get("FEWLABELS_LIB")
    if path:
        return path
    names = {"darwin": "libfewlabels.dylib", "win32": "fewlabels.dll"}
    return ctypes.util.find_library("fewlabels") or names.get(sys.platform, "libfewlabels.so")


def library():
    """The loaded library, with every call's signature declared."""
    global _lib
    if _lib is not None:
        return _lib
    lib = ctypes.CDLL(_find())
    st = ctypes.c_int32
    model_p = ctypes.c_void_p
    f32p = ctypes.POINTER(ctypes.c_float)
    i32p = ctypes.POINTER(ctypes.c_int32)
    sigs = {
        "fl_version": (ctypes.c_char_p, []),
        "fl_last_error": (ctypes.c_char_p, []),
        "fl_status_name": (ctypes.c_char_p, [st]),
        "fl_model_load": (st, [ctypes.c_char_p, ctypes.POINTER(model_p)]),
        "fl_model_load_memory": (
            st,
            [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(model_p)],
        ),
        "fl_model_free": (None, [model_p]),
        "fl_model_save": (st, [model_p, ctypes.c_char_p]),
        "fl_model_get_info": (st, [model_p, ctypes.POINTER(ModelInfo)]),
        "fl_make_z": (st, [model_p, ctypes.c_uint64, ctypes.c_float, ctypes.c_uint32, f32p]),
        "fl_sample": (st, [model_p, ctypes.c_int32, f32p, f32p]),
        "fl_sample_batch": (st, [model_p, ctypes.c_uint32, i32p, f32p, f32p]),
        "fl_model_prepare": (st, [model_p, ctypes.c_uint32]),
        "fl_sample_rgba8": (st, [model_p, ctypes.c_int32, f32p, ctypes.c_char_p]),
        "fl_classify": (st, [model_p, ctypes.c_uint32, f32p, i32p, f32p]),
        "fl_model_fit_class_head": (
            st,
            [model_p, ctypes.c_uint32, f32p, i32p, ctypes.c_uint32, ctypes.c_uint64, f32p],
        ),
        "fl_train_config_default": (st, [ctypes.POINTER(TrainConfig)]),
        "fl_trainer_create": (
            st,
            [ctypes.c_char_p, ctypes.POINTER(TrainConfig), ctypes.POINTER(model_p)],
        ),
        "fl_trainer_create_new": (
            st,
            [
                ctypes.c_char_p,
                ctypes.c_uint64,
                ctypes.POINTER(TrainConfig),
                ctypes.POINTER(model_p),
            ],
        ),
        "fl_trainer_free": (None, [model_p]),
        "fl_trainer_get_info": (st, [model_p, ctypes.POINTER(ModelInfo)]),
        "fl_trainer_step": (
            st,
            [model_p, ctypes.c_uint32, f32p, i32p, ctypes.POINTER(StepStats)],
        ),
        "fl_trainer_prepare": (st, [model_p, ctypes.c_uint32]),
        "fl_trainer_save": (st, [model_p, ctypes.c_char_p]),
        "fl_trainer_model": (st, [model_p, ctypes.POINTER(model_p)]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    _lib = lib
    return lib


def version():
    """The library version string."""
    return library().fl_version().decode()


def _check(status):
    if status != 0:
        lib = library()
        raise FewlabelsError(
            status,
            lib.fl_status_name(status).decode(),
            lib.fl_last_error().decode(errors="replace"),
        )


def _floats(values, n, what):
    a = values if isinstance(values, array) and values.typecode == "f" else array("f", values)
    if len(a) != n:
        raise ValueError(f"{what} needs {n} floats, got {len(a)}")
    return a


def _ptr(a, ctype=ctypes.c_float):
    address, _ = a.buffer_info()
    return ctypes.cast(address, ctypes.POINTER(ctype))


class _Owned:
    """A library handle that `close()` (or garbage collection) frees with `_free`."""

    _free = None
    _what = "handle"
    _handle = None

    def close(self):
        """Free the handle now (also done when it is garbage collected)."""
        if self._handle:
            getattr(library(), self._free)(self._handle)
            self._handle = ctypes.c_void_p()

    def __del__(self):
        if getattr(self, "_handle", None):
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _h(self):
        if not self._handle:
            raise ValueError(f"the {self._what} is closed")
        return self._handle


class Model(_Owned):
    """A model on the GPU. `path=None` asks for the embedded default model."""

    _free = "fl_model_free"
    _what = "model"

    def __init__(self, path=None, data=None, _handle=None):
        lib = library()
        handle = ctypes.c_void_p()
        if _handle is not None:
            handle = _handle
        elif data is not None:
            data = bytes(data)
            _check(lib.fl_model_load_memory(data, len(data), ctypes.byref(handle)))
        else:
            p = None if path is None else os.fsencode(path)
            _check(lib.fl_model_load(p, ctypes.byref(handle)))
        self._handle = handle
        self.info = ModelInfo()
        _check(lib.fl_model_get_info(handle, ctypes.byref(self.info)))
        self.image_floats = self.info.channels * self.info.height * self.info.width

    def save(self, path):
        _check(library().fl_model_save(self._h(), os.fsencode(path)))

    def make_z(self, seed, truncation=1.0, n=1):
        """`n` z vectors (n * z_dim floats), truncated normal, reproducible from `seed`."""
        out = array("f", bytes(4 * n * self.info.z_dim))
        _check(library().fl_make_z(self._h(), seed, truncation, n, _ptr(out)))
        return out

    def prepare(self, n=1):
        """Compile ahead what sampling n images in one call needs (CPU adapters; see
        fl_model_prepare), so that the first such call does not wait for it."""
        _check(library().fl_model_prepare(self._h(), n))

    def sample(self, class_id, z):
        """One image: channels * height * width floats in [0, 1], CHW."""
        z = _floats(z, self.info.z_dim, "z")
        out = array("f", bytes(4 * self.image_floats))
        _check(library().fl_sample(self._h(), class_id, _ptr(z), _ptr(out)))
        return out

    def sample_batch(self, class_ids, z):
        """len(class_ids) images, one after another, each CHW."""
        n = len(class_ids)
        ids = array("i", class_ids)
        z = _floats(z, n * self.info.z_dim, "z")
        out = array("f", bytes(4 * n * self.image_floats))
        _check(
            library().fl_sample_batch(
                self._h(), n, _ptr(ids, ctypes.c_int32), _ptr(z), _ptr(out)
            )
        )
        return out

    def sample_rgba8(self, class_id, z):
        """One image as height * width * 4 bytes, RGBA."""
        z = _floats(z, self.info.z_dim, "z")
        out = ctypes.create_string_buffer(self.info.height * self.info.width * 4)
        _check(library().fl_sample_rgba8(self._h(), class_id, _ptr(z), out))
        return out.raw

    def classify(self, images, n):
        """Labels (list of n ints) and probabilities (array, n * num_classes) of n images."""
        images = _floats(images, n * self.image_floats, "images")
        labels = array("i", bytes(4 * n))
        probs = array("f", bytes(4 * n * self.info.num_classes))
        _check(
            library().fl_classify(
                self._h(), n, _ptr(images), _ptr(labels, ctypes.c_int32), _ptr(probs)
            )
        )
        return list(labels), probs

    def fit_class_head(self, images, labels, steps=0, seed=0):
        """Fit D's class head on n images (labels: class ids, -1 = no label), the rest of the
        model unchanged; returns the share of the labelled images it then gets right."""
        n = len(labels)
        images = _floats(images, n * self.image_floats, "images")
        labels = array("i", labels)
        acc = array("f", [0.0])
        _check(
            library().fl_model_fit_class_head(
                self._h(), n, _ptr(images), _ptr(labels, ctypes.c_int32), steps, seed, _ptr(acc)
            )
        )
        return acc[0]


class Trainer(_Owned):
    """Fine-tunes a model (G, D, G_ema) batch by batch on the GPU.

        t = fewlabels.Trainer("model.safetensors", fewlabels.TrainConfig.default(ema_start=1))
        stats = t.step(images, labels, n)    # labels: class ids, -1 = no label
        t.save("tuned.safetensors")
        m = t.model()                        # an independent Model from the current weights

    `path=None` asks for the embedded default model; `preset="tiny"` (with `seed`) starts
    from fresh weights instead. `config` defaults to `TrainConfig.default()`. A trainer is
    used by one thread at a time (another thread's call raises FL_ERR_BUSY).
    """

    _free = "fl_trainer_free"
    _what = "trainer"

    def __init__(self, path=None, config=None, preset=None, seed=0):
        lib = library()
        handle = ctypes.c_void_p()
        cfg = ctypes.byref(config) if config is not None else None
        if preset is not None:
            _check(lib.fl_trainer_create_new(preset.encode(), seed, cfg, ctypes.byref(handle)))
        else:
            p = None if path is None else os.fsencode(path)
            _check(lib.fl_trainer_create(p, cfg, ctypes.byref(handle)))
        self._handle = handle
        self.info = ModelInfo()
        _check(lib.fl_trainer_get_info(handle, ctypes.byref(self.info)))
        self.image_floats = self.info.channels * self.info.height * self.info.width

    def step(self, images, labels):
        """One training step on len(labels) images (CHW floats in [0, 1], one after another);
        returns StepStats."""
        n = len(labels)
        images = _floats(images, n * self.image_floats, "images")
        ids = array("i", labels)
        stats = StepStats()
        _check(
            library().fl_trainer_step(
                self._h(), n, _ptr(images), _ptr(ids, ctypes.c_int32), ctypes.byref(stats)
            )
        )
        return stats

    def prepare(self, n):
        """Compile ahead what step() with n images needs (CPU adapters; see
        fl_trainer_prepare), so that the first such step does not wait for it."""
        _check(library().fl_trainer_prepare(self._h(), n))

    def save(self, path):
        """Save the current model (G, D, G_ema) as a model file."""
        _check(library().fl_trainer_save(self._h(), os.fsencode(path)))

    def model(self):
        """An independent Model holding a copy of the current weights."""
        handle = ctypes.c_void_p()
        _check(library().fl_trainer_model(self._h(), ctypes.byref(handle)))
        return Model(_handle=handle)
