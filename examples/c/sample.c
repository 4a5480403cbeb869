/* Sample one image per class from a libfewlabels model and write them as one PGM/PPM grid.
 *
 *   cc -std=c99 -Iinclude examples/c/sample.c -Ltarget/release -lfewlabels -o sample
 *   LD_LIBRARY_PATH=target/release ./sample              # the embedded default model
 *   LD_LIBRARY_PATH=target/release ./sample model.safetensors grid.ppm
 *
 * Without a model path, or with "-", it samples the embedded default model (Fashion-MNIST).
 * The output is a PGM (grey models) or PPM (colour models) named by the second argument
 * (default: samples.pgm or samples.ppm). */
#include "fewlabels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, fl_status st) {
    fprintf(stderr, "sample: %s failed: %s: %s\n", what, fl_status_name(st), fl_last_error());
    return 1;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 && strcmp(argv[1], "-") != 0 ? argv[1] : NULL;
    fl_model *model = NULL;
    fl_model_info info;
    fl_status st;
    float *z = NULL, *images = NULL;
    unsigned char *grid = NULL;
    uint32_t k, cols, rows, gw, gh, img, c, y, x;
    size_t per;
    const char *out_path;
    FILE *f;
    int rc = 1;

    printf("libfewlabels %s\n", fl_version());
    st = fl_model_load(path, &model);
    if (st != FL_OK) {
        return fail(path ? "loading the model" : "loading the default model", st);
    }
    st = fl_model_get_info(model, &info);
    if (st != FL_OK) {
        rc = fail("fl_model_get_info", st);
        goto done;
    }
    printf("model: %u classes, z_dim %u, %u x %u x %u, G %llu parameters, D %llu parameters%s%s\n",
           info.num_classes, info.z_dim, info.channels, info.height, info.width,
           (unsigned long long)info.generator_params,
           (unsigned long long)info.discriminator_params,
           info.has_ema ? ", EMA generator" : "", info.has_class_head ? ", class head" : "");

    k = info.num_classes;
    per = (size_t)info.channels * info.height * info.width;
    z = malloc(sizeof(float) * k * info.z_dim);
    images = malloc(sizeof(float) * k * per);
    if (!z || !images) {
        fprintf(stderr, "sample: out of memory\n");
        goto done;
    }
    st = fl_make_z(model, 1, 1.0f, k, z);
    if (st != FL_OK) {
        rc = fail("fl_make_z", st);
        goto done;
    }
    /* Compile what fl_sample needs now (CPU adapters; a program would do it while it loads). */
    st = fl_model_prepare(model, 1);
    if (st != FL_OK) {
        rc = fail("fl_model_prepare", st);
        goto done;
    }
    for (c = 0; c < k; c++) {
        st = fl_sample(model, (int32_t)c, z + (size_t)c * info.z_dim, images + c * per);
        if (st != FL_OK) {
            rc = fail("fl_sample", st);
            goto done;
        }
    }

    /* One image per class, in a grid about as wide as high, one pixel of black between. */
    cols = (uint32_t)ceil(sqrt((double)k));
    rows = (k + cols - 1) / cols;
    gw = cols * (info.width + 1) - 1;
    gh = rows * (info.height + 1) - 1;
    grid = calloc((size_t)gw * gh * info.channels, 1);
    if (!grid) {
        fprintf(stderr, "sample: out of memory\n");
        goto done;
    }
    for (img = 0; img < k; img++) {
        uint32_t ox = (img % cols) * (info.width + 1), oy = (img / cols) * (info.height + 1);
        for (y = 0; y < info.height; y++)
            for (x = 0; x < info.width; x++)
                for (c = 0; c < info.channels; c++) {
                    float v = images[img * per + ((size_t)c * info.height + y) * info.width + x];
                    grid[(((size_t)oy + y) * gw + ox + x) * info.channels + c] =
                        (unsigned char)(v * 255.0f + 0.5f);
                }
    }
    out_path = argc > 2 ? argv[2] : (info.channels == 1 ? "samples.pgm" : "samples.ppm");
    f = fopen(out_path, "wb");
    if (!f) {
        perror(out_path);
        goto done;
    }
    fprintf(f, "P%c\n%u %u\n255\n", info.channels == 1 ? '5' : '6', gw, gh);
    if (fwrite(grid, 1, (size_t)gw * gh * info.channels, f) != (size_t)gw * gh * info.channels ||
        fclose(f) != 0) {
        fprintf(stderr, "sample: cannot write %s\n", out_path);
        goto done;
    }
    printf("wrote %s: %u images (one per class), %u x %u pixels\n", out_path, k, gw, gh);
    rc = 0;
done:
    free(grid);
    free(images);
    free(z);
    fl_model_free(model);
    return rc;
}
