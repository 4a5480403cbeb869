/* Threads through the C ABI (POSIX threads):
 *  1. several threads sampling from one model at once get, bit for bit, the images that
 *     sequential calls gave (fl_sample and fl_sample_batch);
 *  2. two models and two trainers in one process on one device, all working at once: the two
 *     trainers (same file, same configuration, same batches) end equal, and the second model
 *     samples what the first did;
 *  3. the threading rule of trainers: two threads stepping one trainer at once get FL_OK or
 *     FL_ERR_BUSY (with a message), never anything else, and the trainer ends exactly where a
 *     trainer stepped as many times by one thread ends (a refused call changed nothing).
 *
 * usage: threads MODEL        (a model file with a discriminator, class and rotation heads)
 * Prints one line per check and "N passed, N failed"; exits 0 when all passed. */
#define _POSIX_C_SOURCE 200112L /* nanosleep with -std=c99 */
#include "fewlabels.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define JOBS 12
#define SAMPLERS 4
#define ROUNDS 2

static int passed, failed;
static const char *model_path;
static fl_model_info info;
static size_t per;

static void check(const char *what, int cond) {
    if (cond)
        passed++;
    else
        failed++;
    printf("%s %s\n", cond ? "ok  " : "FAIL", what);
    fflush(stdout);
}

static void die(const char *what, fl_status st) {
    printf("FAIL %s: %s: %s\n", what, fl_status_name(st), fl_last_error());
    exit(1);
}

/* ---- 1. one model, several sampling threads ------------------------------------------- */

static fl_model *shared_model;
static float *z_all, *want_single, *want_batch;
static int32_t classes[JOBS];

struct sampler {
    fl_model *m;
    int id;
    int mismatches;
    fl_status bad_status;
};

static void *sample_thread(void *arg) {
    struct sampler *s = arg;
    float *img = malloc(sizeof(float) * per * JOBS);
    int round, j;
    fl_status st;
    if (img == NULL) {
        s->bad_status = -1;
        return NULL;
    }
    for (round = 0; round < ROUNDS; round++) {
        if (s->id % 2 == 0) {
            /* One image per call, each thread starting at another job. */
            for (j = 0; j < JOBS; j++) {
                int k = (j + s->id * 3) % JOBS;
                st = fl_sample(s->m, classes[k], z_all + (size_t)k * info.z_dim, img);
                if (st != FL_OK)
                    s->bad_status = st;
                else if (memcmp(img, want_single + (size_t)k * per, sizeof(float) * per) != 0)
                    s->mismatches++;
            }
        } else {
            st = fl_sample_batch(s->m, JOBS, classes, z_all, img);
            if (st != FL_OK)
                s->bad_status = st;
            else if (memcmp(img, want_batch, sizeof(float) * per * JOBS) != 0)
                s->mismatches++;
        }
    }
    free(img);
    return NULL;
}

/* ---- 2. models and trainers side by side ------------------------------------------------ */

static float *train_img;
static int32_t train_labels[4] = {0, -1, 2, -1};
#define TRAIN_N 4
#define TRAIN_STEPS 3

struct stepper {
    fl_trainer *t;
    int steps;
    fl_status bad_status;
    fl_step_stats last;
};

static void *step_thread(void *arg) {
    struct stepper *s = arg;
    int i;
    for (i = 0; i < s->steps; i++) {
        fl_status st = fl_trainer_step(s->t, TRAIN_N, train_img, train_labels, &s->last);
        if (st != FL_OK) {
            s->bad_status = st;
            printf("     step thread: %s: %s\n", fl_status_name(st), fl_last_error());
            return NULL;
        }
    }
    return NULL;
}

/* ---- 3. one trainer, two threads -------------------------------------------------------- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int other_saw_busy, first_done;

struct contender {
    fl_trainer *t;
    int min_steps; /* the first thread: at least this many steps, and until the other saw BUSY */
    int ok, busy, other;
    int busy_message_ok;
};

static int get_flag(int *flag) {
    int v;
    pthread_mutex_lock(&lock);
    v = *flag;
    pthread_mutex_unlock(&lock);
    return v;
}

static void set_flag(int *flag) {
    pthread_mutex_lock(&lock);
    *flag = 1;
    pthread_mutex_unlock(&lock);
}

static void count(struct contender *c, fl_status st) {
    if (st == FL_OK) {
        c->ok++;
    } else if (st == FL_ERR_BUSY) {
        struct timespec pause = {0, 1000000}; /* 1 ms before trying again */
        c->busy++;
        if (strstr(fl_last_error(), "one thread at a time") != NULL)
            c->busy_message_ok++;
        nanosleep(&pause, NULL);
    } else {
        c->other++;
        printf("     contender: %s: %s\n", fl_status_name(st), fl_last_error());
    }
}

static void *first_contender(void *arg) {
    struct contender *c = arg;
    int calls = 0;
    /* Steps until it has made min_steps and the other thread has been refused at least once
     * (a bound of 200 calls keeps a broken rule from looping forever). */
    while ((c->ok < c->min_steps || !get_flag(&other_saw_busy)) && calls < 200) {
        count(c, fl_trainer_step(c->t, TRAIN_N, train_img, train_labels, NULL));
        calls++;
    }
    set_flag(&first_done);
    return NULL;
}

static void *second_contender(void *arg) {
    struct contender *c = arg;
    fl_model_info ti;
    int i = 0;
    while (!get_flag(&first_done)) {
        /* Alternate a cheap call and a step: both must obey the rule. */
        if (i++ % 2 == 0)
            count(c, fl_trainer_get_info(c->t, &ti));
        else
            count(c, fl_trainer_step(c->t, TRAIN_N, train_img, train_labels, NULL));
        if (c->busy > 0)
            set_flag(&other_saw_busy);
    }
    return NULL;
}

/* Field by field, floats bit for bit (the struct has padding, which memcmp would read). */
static int same_stats(const fl_step_stats *x, const fl_step_stats *y) {
    const float fx[8] = {x->d_loss, x->d_hinge, x->d_rotation, x->d_class,
                         x->g_loss, x->g_adversarial, x->g_rotation, x->class_accuracy};
    const float fy[8] = {y->d_loss, y->d_hinge, y->d_rotation, y->d_class,
                         y->g_loss, y->g_adversarial, y->g_rotation, y->class_accuracy};
    return memcmp(fx, fy, sizeof fx) == 0 && x->labelled == y->labelled &&
           x->d_steps_done == y->d_steps_done && x->g_steps_done == y->g_steps_done;
}

static fl_trainer *new_trainer(void) {
    fl_train_config cfg;
    fl_trainer *t = NULL;
    fl_status st = fl_train_config_default(&cfg);
    if (st != FL_OK)
        die("fl_train_config_default", st);
    cfg.d_steps = 1;
    cfg.ema_start = 1;
    cfg.seed = 5;
    st = fl_trainer_create(model_path, &cfg, &t);
    if (st != FL_OK)
        die("fl_trainer_create", st);
    return t;
}

/* A sample of the trainer's current G_ema, for comparing trainers. */
static void trainer_sample(fl_trainer *t, float *out) {
    fl_model *m = NULL;
    fl_status st = fl_trainer_model(t, &m);
    if (st != FL_OK)
        die("fl_trainer_model", st);
    st = fl_sample(m, 1, z_all, out);
    if (st != FL_OK)
        die("fl_sample of a trainer's model", st);
    fl_model_free(m);
}

int main(int argc, char **argv) {
    pthread_t th[SAMPLERS + 2];
    struct sampler samplers[SAMPLERS];
    fl_model *second = NULL;
    fl_trainer *t1, *t2, *t3, *t4;
    struct stepper s1, s2;
    struct sampler side[2];
    struct contender c1, c2;
    float *a, *b;
    fl_status st;
    int i, mismatches = 0, bad = 0, n_ok;
    size_t p;

    if (argc != 2) {
        fprintf(stderr, "usage: threads MODEL\n");
        return 2;
    }
    model_path = argv[1];
    st = fl_model_load(model_path, &shared_model);
    if (st != FL_OK)
        die("fl_model_load", st);
    st = fl_model_get_info(shared_model, &info);
    if (st != FL_OK)
        die("fl_model_get_info", st);
    per = (size_t)info.channels * info.height * info.width;
    z_all = malloc(sizeof(float) * info.z_dim * JOBS);
    want_single = malloc(sizeof(float) * per * JOBS);
    want_batch = malloc(sizeof(float) * per * JOBS);
    train_img = malloc(sizeof(float) * per * TRAIN_N);
    a = malloc(sizeof(float) * per);
    b = malloc(sizeof(float) * per);
    if (!z_all || !want_single || !want_batch || !train_img || !a || !b) {
        fprintf(stderr, "threads: out of memory\n");
        return 1;
    }
    for (i = 0; i < JOBS; i++)
        classes[i] = i % (int32_t)info.num_classes;
    st = fl_make_z(shared_model, 42, 0.9f, JOBS, z_all);
    if (st != FL_OK)
        die("fl_make_z", st);

    /* 1. Sequential first, then SAMPLERS threads at once. */
    for (i = 0; i < JOBS; i++) {
        st = fl_sample(shared_model, classes[i], z_all + (size_t)i * info.z_dim,
                       want_single + (size_t)i * per);
        if (st != FL_OK)
            die("sequential fl_sample", st);
    }
    st = fl_sample_batch(shared_model, JOBS, classes, z_all, want_batch);
    if (st != FL_OK)
        die("sequential fl_sample_batch", st);
    for (i = 0; i < SAMPLERS; i++) {
        samplers[i].m = shared_model;
        samplers[i].id = i;
        samplers[i].mismatches = 0;
        samplers[i].bad_status = FL_OK;
        if (pthread_create(&th[i], NULL, sample_thread, &samplers[i]) != 0)
            die("pthread_create", -1);
    }
    for (i = 0; i < SAMPLERS; i++) {
        pthread_join(th[i], NULL);
        mismatches += samplers[i].mismatches;
        bad += samplers[i].bad_status != FL_OK;
    }
    printf("     %d threads x %d rounds sampled %d images each (fl_sample / fl_sample_batch)\n",
           SAMPLERS, ROUNDS, JOBS);
    check("every sampling thread's calls succeeded", bad == 0);
    check("threads sampling one model at once get the sequential images bit for bit",
          mismatches == 0);

    /* 2. A second model and two trainers, all busy at once. */
    st = fl_model_load(model_path, &second);
    if (st != FL_OK)
        die("fl_model_load (second model)", st);
    for (p = 0; p < per * TRAIN_N; p++)
        train_img[p] = (float)((p * 37) % 101) / 100.0f;
    t1 = new_trainer();
    t2 = new_trainer();
    memset(&s1, 0, sizeof s1);
    memset(&s2, 0, sizeof s2);
    s1.t = t1;
    s2.t = t2;
    s1.steps = s2.steps = TRAIN_STEPS;
    memset(side, 0, sizeof side);
    side[0].m = shared_model;
    side[1].m = second;
    side[1].id = 1;
    pthread_create(&th[0], NULL, step_thread, &s1);
    pthread_create(&th[1], NULL, step_thread, &s2);
    pthread_create(&th[2], NULL, sample_thread, &side[0]);
    pthread_create(&th[3], NULL, sample_thread, &side[1]);
    for (i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    check("two trainers stepping in two threads succeeded",
          s1.bad_status == FL_OK && s2.bad_status == FL_OK);
    check("both trainers counted their steps",
          s1.last.g_steps_done == TRAIN_STEPS && s2.last.g_steps_done == TRAIN_STEPS);
    check("the two trainers, trained side by side, end bit-identical",
          same_stats(&s1.last, &s2.last));
    trainer_sample(t1, a);
    trainer_sample(t2, b);
    check("their models sample the same image", memcmp(a, b, sizeof(float) * per) == 0);
    check("sampling the two models meanwhile gave the sequential images",
          side[0].bad_status == FL_OK && side[1].bad_status == FL_OK &&
              side[0].mismatches == 0 && side[1].mismatches == 0);
    fl_trainer_free(t1);
    fl_trainer_free(t2);
    fl_model_free(second);

    /* 3. One trainer, two threads. */
    t3 = new_trainer();
    memset(&c1, 0, sizeof c1);
    memset(&c2, 0, sizeof c2);
    c1.t = c2.t = t3;
    c1.min_steps = 2;
    pthread_create(&th[0], NULL, first_contender, &c1);
    pthread_create(&th[1], NULL, second_contender, &c2);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    printf("     one trainer, two threads: first %d ok / %d busy, second %d ok / %d busy "
           "(calls alternate get_info and step)\n",
           c1.ok, c1.busy, c2.ok, c2.busy);
    check("every call answered FL_OK or FL_ERR_BUSY", c1.other == 0 && c2.other == 0);
    /* Which thread meets the other's call depends on the scheduler: either may be refused. */
    check("a thread was refused with FL_ERR_BUSY at least once", c1.busy + c2.busy > 0);
    check("every FL_ERR_BUSY came with the threading rule in its message",
          c1.busy_message_ok == c1.busy && c2.busy_message_ok == c2.busy);
    /* Steps that went through: all of the first thread's, and the second thread's successful
     * step calls (its odd calls; get_info calls change nothing). Count them from the trainer. */
    {
        fl_step_stats st3, st4;
        int j;
        st = fl_trainer_step(t3, TRAIN_N, train_img, train_labels, &st3);
        check("the trainer still steps after the contention", st == FL_OK);
        n_ok = (int)st3.g_steps_done;
        t4 = new_trainer();
        for (j = 0; j < n_ok; j++) {
            st = fl_trainer_step(t4, TRAIN_N, train_img, train_labels, &st4);
            if (st != FL_OK)
                die("fl_trainer_step (sequential twin)", st);
        }
        printf("     %d steps went through in all (with one after the contention)\n", n_ok);
        check("the contended trainer equals one stepped as many times by one thread",
              same_stats(&st3, &st4));
        trainer_sample(t3, a);
        trainer_sample(t4, b);
        check("and samples the same image", memcmp(a, b, sizeof(float) * per) == 0);
        fl_trainer_free(t4);
    }
    fl_trainer_free(t3);

    free(z_all);
    free(want_single);
    free(want_batch);
    free(train_img);
    free(a);
    free(b);
    fl_model_free(shared_model);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
