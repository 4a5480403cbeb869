/* Bad calls through the C ABI: each must answer the expected non-zero status with a
 * non-empty fl_last_error(), and a valid call must still work afterwards.
 *
 * usage: bad_calls MODEL TRUNCATED EMPTY MISSING NO_D NO_CLASS_HEAD OVERSIZED HUGE_HEADER
 *                  BAD_CONFIG WRONG_CONFIG
 *   MODEL          a valid model file
 *   TRUNCATED      the first half of a model file
 *   EMPTY          an empty file
 *   MISSING        a path that does not exist
 *   NO_D           a model file without a discriminator
 *   NO_CLASS_HEAD  a model file whose discriminator has no class head
 *   OVERSIZED      a valid model file with bytes appended after its end
 *   HUGE_HEADER    a file whose header length field claims 2^60 bytes
 *   BAD_CONFIG     a model file whose config fails its checks (resolution 17)
 *   WRONG_CONFIG   a model file whose config does not fit its tensors (5 classes, 3 stored)
 * Prints one line per check and "N passed, N failed"; exits 0 when all passed. */
#include "fewlabels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

static void expect(const char *what, fl_status got, fl_status want) {
    const char *msg = fl_last_error();
    int ok = got == want && (want == FL_OK || (msg != NULL && msg[0] != '\0'));
    if (ok)
        passed++;
    else
        failed++;
    printf("%s %s: got %s, want %s", ok ? "ok  " : "FAIL", what, fl_status_name(got),
           fl_status_name(want));
    if (got != FL_OK)
        printf("; last error: %s", msg ? msg : "(NULL)");
    printf("\n");
}

static void check(const char *what, int cond) {
    if (cond)
        passed++;
    else
        failed++;
    printf("%s %s\n", cond ? "ok  " : "FAIL", what);
}

int main(int argc, char **argv) {
    fl_model *m = NULL, *other = NULL;
    fl_model_info info;
    float *z, *img, *probs;
    unsigned char *rgba;
    int32_t classes[2], labels[2];
    size_t per;
    uint32_t i;
    int in_range = 1;
    unsigned char junk[16] = {0};

    if (argc != 11) {
        fprintf(stderr, "usage: bad_calls MODEL TRUNCATED EMPTY MISSING NO_D NO_CLASS_HEAD "
                        "OVERSIZED HUGE_HEADER BAD_CONFIG WRONG_CONFIG\n");
        return 2;
    }
    check("fl_version is not empty", fl_version()[0] != '\0');
    check("fl_last_error is \"\" before any failure", fl_last_error()[0] == '\0');
    check("fl_status_name(FL_ERR_OUT_OF_RANGE)",
          strcmp(fl_status_name(FL_ERR_OUT_OF_RANGE), "FL_ERR_OUT_OF_RANGE") == 0);
    check("fl_status_name(999)", strcmp(fl_status_name(999), "FL_ERR_UNKNOWN") == 0);

    /* Loading. */
    other = (fl_model *)junk;
    expect("load default model", fl_model_load(NULL, &other), FL_OK);
    if (other != NULL && other != (fl_model *)junk) {
        float dz[64], dimg[32 * 32];
        int k;
        for (k = 0; k < 64; k++)
            dz[k] = 0.1f;
        expect("default model: sample class 10 of 10", fl_sample(other, 10, dz, dimg),
               FL_ERR_OUT_OF_RANGE);
        expect("default model: sample class 9", fl_sample(other, 9, dz, dimg), FL_OK);
        fl_model_free(other);
    }
    other = (fl_model *)junk;
    expect("load with out NULL", fl_model_load(argv[1], NULL), FL_ERR_NULL_POINTER);
    expect("load missing file", fl_model_load(argv[4], &other), FL_ERR_IO);
    expect("load empty file", fl_model_load(argv[3], &other), FL_ERR_FORMAT);
    expect("load truncated file", fl_model_load(argv[2], &other), FL_ERR_FORMAT);
    expect("load empty path", fl_model_load("", &other), FL_ERR_INVALID_ARGUMENT);
    expect("load a directory", fl_model_load("/", &other), FL_ERR_IO);
    expect("load oversized file (bytes after the end)", fl_model_load(argv[7], &other),
           FL_ERR_FORMAT);
    expect("load file whose header claims 2^60 bytes", fl_model_load(argv[8], &other),
           FL_ERR_FORMAT);
    expect("load file with an invalid config", fl_model_load(argv[9], &other), FL_ERR_FORMAT);
    check("the message names the config and the bad value",
          strstr(fl_last_error(), "config") != NULL && strstr(fl_last_error(), "17") != NULL);
    expect("load file whose config does not fit its tensors", fl_model_load(argv[10], &other),
           FL_ERR_FORMAT);
    check("the message names a tensor and its shape", strstr(fl_last_error(), "shape") != NULL);
    expect("load_memory NULL data", fl_model_load_memory(NULL, 10, &other), FL_ERR_NULL_POINTER);
    expect("load_memory len 0", fl_model_load_memory(junk, 0, &other), FL_ERR_FORMAT);
    expect("load_memory junk", fl_model_load_memory(junk, sizeof junk, &other), FL_ERR_FORMAT);
    check("no handle came back from failed loads", other == NULL);

    expect("load valid model", fl_model_load(argv[1], &m), FL_OK);
    if (m == NULL) {
        printf("%d passed, %d failed\n", passed, failed + 1);
        return 1;
    }
    expect("get_info model NULL", fl_model_get_info(NULL, &info), FL_ERR_NULL_POINTER);
    expect("get_info out NULL", fl_model_get_info(m, NULL), FL_ERR_NULL_POINTER);
    expect("get_info", fl_model_get_info(m, &info), FL_OK);
    per = (size_t)info.channels * info.height * info.width;
    z = calloc(2 * info.z_dim, sizeof(float));
    img = calloc(2 * per, sizeof(float));
    probs = calloc(2 * info.num_classes, sizeof(float));
    rgba = calloc((size_t)info.height * info.width * 4, 1);

    /* z. */
    expect("make_z model NULL", fl_make_z(NULL, 1, 1.0f, 1, z), FL_ERR_NULL_POINTER);
    expect("make_z out NULL", fl_make_z(m, 1, 1.0f, 1, NULL), FL_ERR_NULL_POINTER);
    expect("make_z truncation 0", fl_make_z(m, 1, 0.0f, 1, z), FL_ERR_INVALID_ARGUMENT);
    expect("make_z truncation 1.5", fl_make_z(m, 1, 1.5f, 1, z), FL_ERR_INVALID_ARGUMENT);
    expect("make_z truncation -1", fl_make_z(m, 1, -1.0f, 1, z), FL_ERR_INVALID_ARGUMENT);
    expect("make_z truncation NaN", fl_make_z(m, 1, NAN, 1, z), FL_ERR_INVALID_ARGUMENT);
    expect("make_z n 0", fl_make_z(m, 1, 1.0f, 0, z), FL_ERR_OUT_OF_RANGE);
    expect("make_z n FL_MAX_N + 1", fl_make_z(m, 1, 1.0f, FL_MAX_N + 1, z), FL_ERR_OUT_OF_RANGE);
    expect("make_z n (uint32_t)-1", fl_make_z(m, 1, 1.0f, (uint32_t)-1, z), FL_ERR_OUT_OF_RANGE);

    /* Sampling. */
    expect("prepare model NULL", fl_model_prepare(NULL, 1), FL_ERR_NULL_POINTER);
    expect("prepare n 0", fl_model_prepare(m, 0), FL_ERR_OUT_OF_RANGE);
    expect("prepare n FL_MAX_N + 1", fl_model_prepare(m, FL_MAX_N + 1), FL_ERR_OUT_OF_RANGE);
    expect("valid prepare", fl_model_prepare(m, 2), FL_OK);
    expect("make_z", fl_make_z(m, 7, 0.5f, 2, z), FL_OK);
    expect("sample model NULL", fl_sample(NULL, 0, z, img), FL_ERR_NULL_POINTER);
    expect("sample z NULL", fl_sample(m, 0, NULL, img), FL_ERR_NULL_POINTER);
    expect("sample out NULL", fl_sample(m, 0, z, NULL), FL_ERR_NULL_POINTER);
    expect("sample class -1", fl_sample(m, -1, z, img), FL_ERR_OUT_OF_RANGE);
    expect("sample class num_classes", fl_sample(m, (int32_t)info.num_classes, z, img),
           FL_ERR_OUT_OF_RANGE);
    z[1] = NAN;
    expect("sample NaN z", fl_sample(m, 0, z, img), FL_ERR_NON_FINITE);
    check("the message names z[1]", strstr(fl_last_error(), "z[1]") != NULL);
    z[1] = INFINITY;
    expect("sample infinite z", fl_sample(m, 0, z, img), FL_ERR_NON_FINITE);
    expect("make_z again", fl_make_z(m, 7, 0.5f, 2, z), FL_OK);
    classes[0] = 0;
    classes[1] = 99;
    expect("sample_batch class 99 at entry 1", fl_sample_batch(m, 2, classes, z, img),
           FL_ERR_OUT_OF_RANGE);
    check("the message names entry 1", strstr(fl_last_error(), "entry 1") != NULL);
    classes[1] = 1 % (int32_t)info.num_classes;
    expect("sample_batch n 0", fl_sample_batch(m, 0, classes, z, img), FL_ERR_OUT_OF_RANGE);
    expect("sample_batch huge n", fl_sample_batch(m, (uint32_t)-1, classes, z, img),
           FL_ERR_OUT_OF_RANGE);
    expect("sample_batch class_ids NULL", fl_sample_batch(m, 2, NULL, z, img),
           FL_ERR_NULL_POINTER);
    expect("sample_rgba8 out NULL", fl_sample_rgba8(m, 0, z, NULL), FL_ERR_NULL_POINTER);
    expect("sample_rgba8 class -5", fl_sample_rgba8(m, -5, z, rgba), FL_ERR_OUT_OF_RANGE);

    /* Classification. */
    img[0] = NAN;
    expect("classify NaN pixel", fl_classify(m, 1, img, labels, probs), FL_ERR_NON_FINITE);
    img[0] = 2.0f;
    expect("classify pixel 2.0", fl_classify(m, 1, img, labels, probs), FL_ERR_OUT_OF_RANGE);
    img[0] = 0.5f;
    expect("classify labels NULL", fl_classify(m, 1, img, NULL, probs), FL_ERR_NULL_POINTER);
    expect("classify n 0", fl_classify(m, 0, img, labels, probs), FL_ERR_OUT_OF_RANGE);
    expect("classify n FL_MAX_N + 1", fl_classify(m, FL_MAX_N + 1, img, labels, probs),
           FL_ERR_OUT_OF_RANGE);
    expect("classify n (uint32_t)-1", fl_classify(m, (uint32_t)-1, img, labels, probs),
           FL_ERR_OUT_OF_RANGE);
    expect("classify model NULL", fl_classify(NULL, 1, img, labels, probs), FL_ERR_NULL_POINTER);
    expect("classify images NULL", fl_classify(m, 1, NULL, labels, probs), FL_ERR_NULL_POINTER);
    expect("classify_sized wrong width",
           fl_classify_sized(m, 1, info.channels, info.height, info.width + 1, img, labels, probs),
           FL_ERR_INVALID_ARGUMENT);
    check("the message names both sizes",
          strstr(fl_last_error(), "but the model takes") != NULL);
    expect("classify_sized wrong channels",
           fl_classify_sized(m, 1, info.channels + 2, info.height, info.width, img, labels, probs),
           FL_ERR_INVALID_ARGUMENT);
    expect("classify_sized 0 x 0 x 0", fl_classify_sized(m, 1, 0, 0, 0, img, labels, probs),
           FL_ERR_INVALID_ARGUMENT);
    expect("classify_sized model NULL",
           fl_classify_sized(NULL, 1, info.channels, info.height, info.width, img, labels, probs),
           FL_ERR_NULL_POINTER);
    expect("classify_sized right size",
           fl_classify_sized(m, 1, info.channels, info.height, info.width, img, labels, probs),
           FL_OK);
    {
        int32_t fit_labels[1] = {1000};
        expect("fit_class_head label 1000",
               fl_model_fit_class_head(m, 1, img, fit_labels, 5, 0, NULL), FL_ERR_INVALID_ARGUMENT);
        fit_labels[0] = -1;
        expect("fit_class_head no label",
               fl_model_fit_class_head(m, 1, img, fit_labels, 5, 0, NULL), FL_ERR_INVALID_ARGUMENT);
        expect("fit_class_head model NULL",
               fl_model_fit_class_head(NULL, 1, img, fit_labels, 5, 0, NULL), FL_ERR_NULL_POINTER);
        expect("fit_class_head labels NULL", fl_model_fit_class_head(m, 1, img, NULL, 5, 0, NULL),
               FL_ERR_NULL_POINTER);
        expect("fit_class_head n 0", fl_model_fit_class_head(m, 0, img, fit_labels, 5, 0, NULL),
               FL_ERR_OUT_OF_RANGE);
    }
    expect("load model without D", fl_model_load(argv[5], &other), FL_OK);
    expect("classify without D", fl_classify(other, 1, img, labels, NULL),
           FL_ERR_INVALID_ARGUMENT);
    check("the message says there is no discriminator",
          strstr(fl_last_error(), "no discriminator") != NULL);
    fl_model_free(other);
    other = NULL;
    expect("load model without class head", fl_model_load(argv[6], &other), FL_OK);
    expect("classify without class head", fl_classify(other, 1, img, labels, NULL),
           FL_ERR_INVALID_ARGUMENT);
    check("the message says there is no class head", strstr(fl_last_error(), "class head") != NULL);
    fl_model_free(other);

    /* Saving. */
    expect("save path NULL", fl_model_save(m, NULL), FL_ERR_NULL_POINTER);
    expect("save model NULL", fl_model_save(NULL, "x.safetensors"), FL_ERR_NULL_POINTER);
    expect("save into a missing directory",
           fl_model_save(m, "/nonexistent-fewlabels-dir/sub/model.safetensors"), FL_ERR_IO);
    fl_model_free(NULL);

    /* Device. */
    expect("device_name out NULL", fl_device_name(NULL), FL_ERR_NULL_POINTER);
    {
        const char *dev = NULL;
        expect("device_name", fl_device_name(&dev), FL_OK);
        check("the device has a name", dev != NULL && dev[0] != '\0');
    }

    /* After all that, valid calls still work. */
    expect("valid sample_batch", fl_sample_batch(m, 2, classes, z, img), FL_OK);
    for (i = 0; i < 2 * per; i++)
        if (!(img[i] >= 0.0f && img[i] <= 1.0f))
            in_range = 0;
    check("sampled pixels are in [0, 1]", in_range);
    check("a success leaves the last error in place", fl_last_error()[0] != '\0');
    expect("valid sample_rgba8", fl_sample_rgba8(m, 0, z, rgba), FL_OK);
    check("rgba8 alpha is 255", rgba[3] == 255);
    expect("valid classify", fl_classify(m, 2, img, labels, probs), FL_OK);
    check("labels are class ids",
          labels[0] >= 0 && labels[0] < (int32_t)info.num_classes && labels[1] >= 0 &&
              labels[1] < (int32_t)info.num_classes);
    {
        float s = 0.0f;
        for (i = 0; i < info.num_classes; i++)
            s += probs[i];
        check("probabilities sum to 1", fabsf(s - 1.0f) < 1e-4f);
    }

    /* Training. */
    {
        fl_train_config cfg, bad;
        fl_trainer *t = NULL, *cond = NULL;
        fl_step_stats st;
        fl_model_info tinfo;
        fl_model *tm = (fl_model *)junk;
        int32_t tl[2];

        expect("train_config_default out NULL", fl_train_config_default(NULL),
               FL_ERR_NULL_POINTER);
        expect("train_config_default", fl_train_config_default(&cfg), FL_OK);
        check("the default variant is S3GAN-CO with 2 D steps",
              cfg.variant == FL_VARIANT_S3GAN_CO && cfg.d_steps == 2 && cfg.lr_d == 4e-4);
        cfg.d_steps = 1;
        cfg.ema_start = 1;
        t = (fl_trainer *)junk;
        {
            fl_train_config bad = cfg;
            bad.lr_d = -1.0;
            expect("trainer_create default model, lr_d -1", fl_trainer_create(NULL, &bad, &t),
                   FL_ERR_INVALID_ARGUMENT);
            check("the message names lr_d", strstr(fl_last_error(), "lr_d") != NULL);
        }
        check("failed trainer_create sets *out to NULL", t == NULL);
        expect("trainer_create out NULL", fl_trainer_create(argv[1], &cfg, NULL),
               FL_ERR_NULL_POINTER);
        expect("trainer_create missing file", fl_trainer_create(argv[4], &cfg, &t), FL_ERR_IO);
        expect("trainer_create truncated file", fl_trainer_create(argv[2], &cfg, &t),
               FL_ERR_FORMAT);
        expect("trainer_create empty file", fl_trainer_create(argv[3], &cfg, &t), FL_ERR_FORMAT);
        expect("trainer_create oversized file", fl_trainer_create(argv[7], &cfg, &t),
               FL_ERR_FORMAT);
        expect("trainer_create huge header", fl_trainer_create(argv[8], &cfg, &t), FL_ERR_FORMAT);
        expect("trainer_create invalid config", fl_trainer_create(argv[9], &cfg, &t),
               FL_ERR_FORMAT);
        expect("trainer_create config that does not fit", fl_trainer_create(argv[10], &cfg, &t),
               FL_ERR_FORMAT);
        expect("trainer_create empty path", fl_trainer_create("", &cfg, &t),
               FL_ERR_INVALID_ARGUMENT);
        expect("trainer_create model without D", fl_trainer_create(argv[5], &cfg, &t),
               FL_ERR_INVALID_ARGUMENT);
        expect("trainer_create S3GAN-CO without class head", fl_trainer_create(argv[6], &cfg, &t),
               FL_ERR_INVALID_ARGUMENT);
        bad = cfg;
        bad.variant = 99;
        expect("trainer_create variant 99", fl_trainer_create(argv[1], &bad, &t),
               FL_ERR_INVALID_ARGUMENT);
        bad = cfg;
        bad.d_steps = 0;
        expect("trainer_create d_steps 0", fl_trainer_create(argv[1], &bad, &t),
               FL_ERR_INVALID_ARGUMENT);
        bad = cfg;
        bad.lr_g = NAN;
        expect("trainer_create lr_g NaN", fl_trainer_create(argv[1], &bad, &t),
               FL_ERR_INVALID_ARGUMENT);
        bad = cfg;
        bad.beta2 = 1.0;
        expect("trainer_create beta2 1", fl_trainer_create(argv[1], &bad, &t),
               FL_ERR_INVALID_ARGUMENT);
        expect("trainer_create_new preset NULL", fl_trainer_create_new(NULL, 1, &cfg, &t),
               FL_ERR_NULL_POINTER);
        expect("trainer_create_new unknown preset", fl_trainer_create_new("nope", 1, &cfg, &t),
               FL_ERR_INVALID_ARGUMENT);
        check("no trainer came back from failed creates", t == NULL);

        expect("trainer_create", fl_trainer_create(argv[1], &cfg, &t), FL_OK);
        expect("trainer_get_info NULL", fl_trainer_get_info(NULL, &tinfo), FL_ERR_NULL_POINTER);
        expect("trainer_get_info out NULL", fl_trainer_get_info(t, NULL), FL_ERR_NULL_POINTER);
        expect("trainer_get_info", fl_trainer_get_info(t, &tinfo), FL_OK);
        check("the trainer's model is the file's",
              tinfo.num_classes == info.num_classes && tinfo.height == info.height);
        for (i = 0; i < 2 * per; i++)
            img[i] = 0.25f + 0.5f * (float)(i % 7) / 7.0f;
        tl[0] = 0;
        tl[1] = -1;
        expect("step trainer NULL", fl_trainer_step(NULL, 2, img, tl, &st), FL_ERR_NULL_POINTER);
        expect("step images NULL", fl_trainer_step(t, 2, NULL, tl, &st), FL_ERR_NULL_POINTER);
        expect("step labels NULL", fl_trainer_step(t, 2, img, NULL, &st), FL_ERR_NULL_POINTER);
        expect("step n 0", fl_trainer_step(t, 0, img, tl, &st), FL_ERR_OUT_OF_RANGE);
        expect("step n (uint32_t)-1", fl_trainer_step(t, (uint32_t)-1, img, tl, &st),
               FL_ERR_OUT_OF_RANGE);
        expect("step n 1000000 (more than one pass)", fl_trainer_step(t, 1000000, img, tl, &st),
               FL_ERR_OUT_OF_RANGE);
        img[3] = NAN;
        expect("step NaN pixel", fl_trainer_step(t, 2, img, tl, &st), FL_ERR_NON_FINITE);
        check("the message names images[3]", strstr(fl_last_error(), "images[3]") != NULL);
        img[3] = -INFINITY;
        expect("step infinite pixel", fl_trainer_step(t, 2, img, tl, &st), FL_ERR_NON_FINITE);
        img[3] = 1.5f;
        expect("step pixel 1.5", fl_trainer_step(t, 2, img, tl, &st), FL_ERR_OUT_OF_RANGE);
        img[3] = -0.01f;
        expect("step pixel -0.01", fl_trainer_step(t, 2, img, tl, &st), FL_ERR_OUT_OF_RANGE);
        img[3] = 0.5f;
        tl[1] = -2;
        expect("step label -2", fl_trainer_step(t, 2, img, tl, &st), FL_ERR_OUT_OF_RANGE);
        check("the message names labels[1]", strstr(fl_last_error(), "labels[1]") != NULL);
        tl[1] = (int32_t)info.num_classes;
        expect("step label num_classes", fl_trainer_step(t, 2, img, tl, &st),
               FL_ERR_OUT_OF_RANGE);
        tl[1] = INT32_MIN;
        expect("step label INT32_MIN", fl_trainer_step(t, 2, img, tl, &st), FL_ERR_OUT_OF_RANGE);
        tl[1] = INT32_MAX;
        expect("step label INT32_MAX", fl_trainer_step(t, 2, img, tl, &st), FL_ERR_OUT_OF_RANGE);
        tl[1] = -1;
        expect("step_sized images twice as high",
               fl_trainer_step_sized(t, 2, info.channels, 2 * info.height, info.width, img, tl,
                                     &st),
               FL_ERR_INVALID_ARGUMENT);
        check("the message names both sizes",
              strstr(fl_last_error(), "but the model takes") != NULL);
        expect("step_sized RGB images for a grey model (or grey for RGB)",
               fl_trainer_step_sized(t, 2, info.channels == 3 ? 1 : 3, info.height, info.width,
                                     img, tl, &st),
               FL_ERR_INVALID_ARGUMENT);
        expect("step_sized trainer NULL",
               fl_trainer_step_sized(NULL, 2, info.channels, info.height, info.width, img, tl,
                                     &st),
               FL_ERR_NULL_POINTER);
        expect("step_sized n 0",
               fl_trainer_step_sized(t, 0, info.channels, info.height, info.width, img, tl, &st),
               FL_ERR_OUT_OF_RANGE);
        expect("step_sized labels NULL",
               fl_trainer_step_sized(t, 2, info.channels, info.height, info.width, img, NULL,
                                     &st),
               FL_ERR_NULL_POINTER);
        tl[1] = -3;
        expect("step_sized label -3",
               fl_trainer_step_sized(t, 2, info.channels, info.height, info.width, img, tl, &st),
               FL_ERR_OUT_OF_RANGE);
        tl[1] = -1;
        expect("prepare trainer NULL", fl_trainer_prepare(NULL, 2), FL_ERR_NULL_POINTER);
        expect("prepare n 0", fl_trainer_prepare(t, 0), FL_ERR_OUT_OF_RANGE);
        expect("prepare n UINT32_MAX", fl_trainer_prepare(t, UINT32_MAX), FL_ERR_OUT_OF_RANGE);
        expect("valid prepare", fl_trainer_prepare(t, 2), FL_OK);
        expect("valid step, stats NULL", fl_trainer_step(t, 2, img, tl, NULL), FL_OK);
        expect("valid step_sized",
               fl_trainer_step_sized(t, 2, info.channels, info.height, info.width, img, tl, &st),
               FL_OK);
        check("two steps of one D step each were counted (refused calls changed nothing)",
              st.d_steps_done == 2 && st.g_steps_done == 2 && st.labelled == 1);
        check("the losses are finite", isfinite(st.d_loss) && isfinite(st.g_loss));
        check("the class accuracy is 0 or 1 on one labelled row",
              st.class_accuracy == 0.0f || st.class_accuracy == 1.0f);

        expect("trainer_save path NULL", fl_trainer_save(t, NULL), FL_ERR_NULL_POINTER);
        expect("trainer_save trainer NULL", fl_trainer_save(NULL, "x.safetensors"),
               FL_ERR_NULL_POINTER);
        expect("trainer_save into a missing directory",
               fl_trainer_save(t, "/nonexistent-fewlabels-dir/sub/model.safetensors"), FL_ERR_IO);
        expect("trainer_model out NULL", fl_trainer_model(t, NULL), FL_ERR_NULL_POINTER);
        expect("trainer_model trainer NULL", fl_trainer_model(NULL, &tm), FL_ERR_NULL_POINTER);
        check("failed trainer_model sets *out to NULL", tm == NULL);
        expect("trainer_model", fl_trainer_model(t, &tm), FL_OK);
        fl_trainer_free(t);
        fl_trainer_free(NULL);
        expect("sample the trainer's model after fl_trainer_free",
               fl_sample_batch(tm, 2, classes, z, img), FL_OK);
        fl_model_free(tm);

        cfg.variant = FL_VARIANT_CONDITIONAL;
        expect("trainer_create conditional", fl_trainer_create(argv[1], &cfg, &cond), FL_OK);
        for (i = 0; i < 2 * per; i++)
            img[i] = 0.5f;
        expect("conditional step with a -1 label", fl_trainer_step(cond, 2, img, tl, &st),
               FL_ERR_INVALID_ARGUMENT);
        tl[1] = 1 % (int32_t)info.num_classes;
        expect("conditional step with every label", fl_trainer_step(cond, 2, img, tl, &st),
               FL_OK);
        check("the conditional step measured the class head on 2 labelled rows",
              st.labelled == 2 && isfinite(st.class_accuracy));
        fl_trainer_free(cond);
    }

    free(z);
    free(img);
    free(probs);
    free(rgba);
    fl_model_free(m);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
