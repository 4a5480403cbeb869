"""Checks of the ctypes bindings; run by tests/capi.rs (or by hand):

    FEWLABELS_LIB=target/debug/libfewlabels.so python3 bindings/python/test_fewlabels.py \
        MODEL NO_D_MODEL
"""

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fewlabels  # noqa: E402


def expect_error(name, fn, *args):
    try:
        fn(*args)
    except fewlabels.FewlabelsError as e:
        assert e.name == name, (e.name, name, e.message)
        assert e.message, "empty message"
        return e
    raise AssertionError(f"{fn.__name__}{args!r} did not raise {name}")


def main(model_path, no_d_path):
    assert fewlabels.version()
    with fewlabels.Model() as d:  # the embedded default model
        assert (d.info.num_classes, d.info.channels, d.info.height) == (10, 1, 32), d.info
        d.prepare(1)
        img = d.sample(9, d.make_z(seed=1, truncation=1.0, n=1))
        assert len(img) == 32 * 32 and all(0.0 <= v <= 1.0 for v in img)
        expect_error("FL_ERR_OUT_OF_RANGE", d.sample, 10, d.make_z(seed=1, n=1))
    expect_error("FL_ERR_IO", fewlabels.Model, model_path + ".missing")
    expect_error("FL_ERR_FORMAT", fewlabels.Model, None, b"not a model")

    with fewlabels.Model(model_path) as m:
        i = m.info
        assert (i.num_classes, i.z_dim, i.channels, i.height, i.width) == (3, 12, 1, 16, 16), i
        z = m.make_z(seed=3, truncation=0.7, n=3)
        assert len(z) == 36 and all(abs(v) <= 1.4 for v in z)
        assert m.make_z(3, 0.7, 3) == z
        imgs = m.sample_batch([0, 1, 2], z)
        assert len(imgs) == 3 * 256 and all(0.0 <= v <= 1.0 for v in imgs)
        one = m.sample(1, z[12:24])
        assert max(abs(a - b) for a, b in zip(one, imgs[256:512])) <= 1e-5
        rgba = m.sample_rgba8(1, z[12:24])
        assert len(rgba) == 1024 and rgba[3] == 255
        labels, probs = m.classify(imgs, 3)
        assert all(0 <= c < 3 for c in labels) and abs(sum(probs[:3]) - 1) < 1e-5
        acc = m.fit_class_head(imgs, [0, 1, -1], steps=20, seed=1)
        assert 0.0 <= acc <= 1.0
        e = expect_error("FL_ERR_INVALID_ARGUMENT", m.fit_class_head, imgs, [-1, -1, -1])
        assert "no image is labelled" in e.message

        expect_error("FL_ERR_OUT_OF_RANGE", m.sample, 3, z[:12])
        expect_error("FL_ERR_NON_FINITE", m.sample, 0, [float("nan")] * 12)
        expect_error("FL_ERR_INVALID_ARGUMENT", m.make_z, 1, 0.0, 1)

        # Several threads sampling one model at once get what one thread gets.
        errors = []

        def worker(c):
            try:
                for _ in range(2):
                    got = m.sample(c, z[12 * c:12 * c + 12])
                    assert got == m.sample(c, z[12 * c:12 * c + 12])
            except Exception as ex:  # noqa: BLE001 (reported below)
                errors.append(ex)

        threads = [threading.Thread(target=worker, args=(c % 3,)) for c in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors

    with fewlabels.Model(no_d_path) as nod:
        assert nod.info.has_discriminator == 0
        e = expect_error("FL_ERR_INVALID_ARGUMENT", nod.classify, imgs[:256], 1)
        assert "no discriminator" in e.message

    # Training: one step on partly labelled images, then sample from the result.
    e = expect_error("FL_ERR_INVALID_ARGUMENT", fewlabels.Trainer, None,
                     fewlabels.TrainConfig.default(lr_d=-1.0))
    assert "lr_d" in e.message
    cfg = fewlabels.TrainConfig.default(ema_start=1, seed=5)
    assert cfg.variant == fewlabels.VARIANTS["s3gan-co"] and cfg.d_steps == 2, cfg
    with fewlabels.Trainer(model_path, cfg) as t:
        assert t.info.num_classes == 3 and t.image_floats == 256
        images = [((i * 37) % 101) / 100.0 for i in range(4 * 256)]
        t.prepare(4)
        stats = t.step(images, [0, -1, 2, -1])
        assert stats.d_steps_done == 2 and stats.g_steps_done == 1, stats
        assert stats.labelled == 2 and 0.0 <= stats.class_accuracy <= 1.0, stats
        assert all(v == v for v in (stats.d_loss, stats.g_loss)), stats
        expect_error("FL_ERR_OUT_OF_RANGE", t.step, images, [0, -1, 3, -1])
        expect_error("FL_ERR_NON_FINITE", t.step, [float("nan")] * 256, [0])
        with t.model() as tuned:
            z = tuned.make_z(1, 0.8, 1)
            assert all(0.0 <= v <= 1.0 for v in tuned.sample(0, z))
    e = expect_error(
        "FL_ERR_INVALID_ARGUMENT", fewlabels.Trainer, no_d_path, cfg
    )
    assert "discriminator" in e.message
    print("python bindings: all checks passed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
