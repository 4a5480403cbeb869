/* A C program written from include/fewlabels.h alone: load the default model (or a model
 * file), read its info, sample every class, classify images, fine-tune a few steps with partial
 * labels, save, and load the saved model back.
 *
 * usage: from_header MODEL OUT [STEPS]
 *   MODEL  "-" for the embedded default model, or a model file with a discriminator (class and
 *          rotation heads)
 *   OUT    where the fine-tuned checkpoint is saved
 *   STEPS  fine-tuning steps (default 3)
 * Prints what it does; exits 0 when every call behaved as the header says, 1 otherwise. */
#include "fewlabels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

/* Report a failed call with its status name and message; returns 1 when the call succeeded. */
static int ok(const char *what, fl_status st) {
    if (st == FL_OK)
        return 1;
    printf("FAIL %s: %s: %s\n", what, fl_status_name(st), fl_last_error());
    failures++;
    return 0;
}

static void expect(const char *what, int cond) {
    if (!cond) {
        printf("FAIL %s\n", what);
        failures++;
    }
}

static int all_in_unit_range(const float *v, size_t len) {
    size_t i;
    for (i = 0; i < len; i++)
        if (!(v[i] >= 0.0f && v[i] <= 1.0f))
            return 0;
    return 1;
}

int main(int argc, char **argv) {
    fl_model *model = NULL, *tuned = NULL, *saved = NULL;
    fl_trainer *trainer = NULL;
    fl_model_info info, tinfo;
    fl_train_config cfg;
    fl_step_stats stats;
    const char *device = NULL, *path;
    float *z = NULL, *images = NULL, *one = NULL, *probs = NULL, *a = NULL, *b = NULL;
    int32_t *classes = NULL, *labels = NULL, *predicted = NULL;
    uint8_t *rgba = NULL;
    uint32_t k, n, i, c, steps = 3;
    size_t per;
    fl_status st;

    if (argc < 3) {
        fprintf(stderr, "usage: from_header MODEL OUT [STEPS]\n");
        return 2;
    }
    if (argc > 3)
        steps = (uint32_t)strtoul(argv[3], NULL, 10);
    printf("libfewlabels %s\n", fl_version());

    path = strcmp(argv[1], "-") == 0 ? NULL : argv[1];
    printf("model: %s\n", path ? path : "the embedded default model");

    /* The default model is always there: 10 Fashion-MNIST classes, 32 x 32 grey. */
    if (!ok("fl_model_load(NULL)", fl_model_load(NULL, &model)))
        return 1;
    if (!ok("fl_model_get_info (default)", fl_model_get_info(model, &info)))
        return 1;
    expect("the default model has 10 classes of 32 x 32 grey images",
           info.num_classes == 10 && info.channels == 1 && info.height == 32 &&
               info.width == 32);
    expect("the default model has D, both heads and G_ema",
           info.has_discriminator && info.has_class_head && info.has_rotation_head &&
               info.has_ema);
    fl_model_free(model);
    model = NULL;

    if (!ok("fl_model_load", fl_model_load(path, &model)))
        return 1;
    if (ok("fl_device_name", fl_device_name(&device)))
        printf("device: %s\n", device);
    if (!ok("fl_model_get_info", fl_model_get_info(model, &info)))
        return 1;
    printf("model: %u classes, z_dim %u, %u x %u x %u, max batch %u, G %llu / D %llu "
           "parameters, D %s, class head %s, rotation head %s, EMA %s\n",
           info.num_classes, info.z_dim, info.channels, info.height, info.width, info.max_batch,
           (unsigned long long)info.generator_params,
           (unsigned long long)info.discriminator_params, info.has_discriminator ? "yes" : "no",
           info.has_class_head ? "yes" : "no", info.has_rotation_head ? "yes" : "no",
           info.has_ema ? "yes" : "no");
    expect("the model can classify and train (D with class head)",
           info.has_discriminator && info.has_class_head);

    /* Every class twice: n = 2k images, image i of class i % k. */
    k = info.num_classes;
    n = 2 * k;
    per = (size_t)info.channels * info.height * info.width;
    z = malloc(sizeof(float) * n * info.z_dim);
    images = malloc(sizeof(float) * n * per);
    one = malloc(sizeof(float) * per);
    a = malloc(sizeof(float) * per);
    b = malloc(sizeof(float) * per);
    probs = malloc(sizeof(float) * n * k);
    classes = malloc(sizeof(int32_t) * n);
    labels = malloc(sizeof(int32_t) * n);
    predicted = malloc(sizeof(int32_t) * n);
    rgba = malloc((size_t)info.height * info.width * 4);
    if (!z || !images || !one || !a || !b || !probs || !classes || !labels || !predicted ||
        !rgba) {
        fprintf(stderr, "from_header: out of memory\n");
        return 1;
    }
    for (i = 0; i < n; i++)
        classes[i] = (int32_t)(i % k);
    if (!ok("fl_make_z", fl_make_z(model, 1, 0.8f, n, z)))
        goto done;
    if (!ok("fl_sample_batch", fl_sample_batch(model, n, classes, z, images)))
        goto done;
    expect("sampled pixels are in [0, 1]", all_in_unit_range(images, n * per));
    for (c = 0; c < k; c++) {
        double diff = 0.0;
        size_t p;
        if (!ok("fl_sample", fl_sample(model, (int32_t)c, z + (size_t)c * info.z_dim, one)))
            goto done;
        for (p = 0; p < per; p++)
            diff = fmax(diff, fabs((double)one[p] - images[c * per + p]));
        printf("class %u: one image alone vs in the batch: max difference %.2g\n", c, diff);
        expect("an image alone is the batch's image (to 1e-5)", diff <= 1e-5);
        if (!ok("fl_sample_rgba8",
                fl_sample_rgba8(model, (int32_t)c, z + (size_t)c * info.z_dim, rgba)))
            goto done;
        expect("RGBA alpha is 255", rgba[3] == 255 && rgba[4 * (per / info.channels) - 1] == 255);
    }

    /* Classify the samples, stating their size. */
    if (!ok("fl_classify_sized", fl_classify_sized(model, n, info.channels, info.height,
                                                   info.width, images, predicted, probs)))
        goto done;
    for (i = 0; i < n; i++) {
        float sum = 0.0f;
        int32_t best = 0;
        for (c = 0; c < k; c++) {
            sum += probs[i * k + c];
            if (probs[i * k + c] > probs[i * k + (uint32_t)best])
                best = (int32_t)c;
        }
        expect("class probabilities sum to 1", fabsf(sum - 1.0f) < 1e-4f);
        expect("the label is the most probable class", predicted[i] == best);
    }
    printf("classified %u images: first label %d\n", n, predicted[0]);

    /* Fine-tune on the samples, half of them labelled (S3GAN-CO labels the rest). */
    if (!ok("fl_train_config_default", fl_train_config_default(&cfg)))
        goto done;
    cfg.d_steps = 1;
    cfg.ema_start = 1;
    cfg.seed = 3;
    if (!ok("fl_trainer_create", fl_trainer_create(path, &cfg, &trainer)))
        goto done;
    if (!ok("fl_trainer_get_info", fl_trainer_get_info(trainer, &tinfo)))
        goto done;
    expect("the trainer takes the model's images",
           tinfo.channels == info.channels && tinfo.height == info.height);
    for (i = 0; i < n; i++)
        labels[i] = i < k ? classes[i] : -1;
    for (i = 0; i < steps; i++) {
        st = fl_trainer_step_sized(trainer, n, info.channels, info.height, info.width, images,
                                   labels, &stats);
        if (!ok("fl_trainer_step_sized", st))
            goto done;
        printf("step %u: D %.4f (hinge %.4f, rotation %.4f, class %.4f), G %.4f, class accuracy "
               "%.2f on %u labelled; steps D %llu G %llu\n",
               i + 1, stats.d_loss, stats.d_hinge, stats.d_rotation, stats.d_class, stats.g_loss,
               stats.class_accuracy, stats.labelled, (unsigned long long)stats.d_steps_done,
               (unsigned long long)stats.g_steps_done);
        expect("losses are finite", isfinite(stats.d_loss) && isfinite(stats.g_loss));
        expect("half the batch is labelled", stats.labelled == k);
        expect("steps are counted", stats.g_steps_done == i + 1 && stats.d_steps_done == i + 1);
    }
    if (!ok("fl_trainer_save", fl_trainer_save(trainer, argv[2])))
        goto done;
    if (!ok("fl_trainer_model", fl_trainer_model(trainer, &tuned)))
        goto done;

    /* The saved file samples what the trainer's model samples. */
    if (!ok("fl_model_load (saved)", fl_model_load(argv[2], &saved)))
        goto done;
    if (ok("fl_sample (tuned)", fl_sample(tuned, 0, z, a)) &&
        ok("fl_sample (saved)", fl_sample(saved, 0, z, b)))
        expect("the saved model samples the trainer's image",
               memcmp(a, b, sizeof(float) * per) == 0);
    printf("saved %s\n", argv[2]);

done:
    fl_model_free(saved);
    fl_model_free(tuned);
    fl_trainer_free(trainer);
    fl_model_free(model);
    free(z);
    free(images);
    free(one);
    free(a);
    free(b);
    free(probs);
    free(classes);
    free(labels);
    free(predicted);
    free(rgba);
    printf("from_header: %s\n", failures == 0 ? "ok" : "FAILED");
    return failures == 0 ? 0 : 1;
}
