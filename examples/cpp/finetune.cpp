// Fine-tune a model for a few steps on images of which only a few carry a label (S3GAN-CO),
// save it, and sample from it, through the C++ wrapper (bindings/cpp/fewlabels.hpp).
//
// usage: finetune MODEL|-|--preset NAME OUT [STEPS]
//   MODEL   a model file with a discriminator (e.g. from fl_model_save); "-" for the embedded
//           default model (Fashion-MNIST)
//   NAME    start from fresh weights of a preset instead ("tiny", "fashion", ...)
//   OUT     where the fine-tuned model is saved
//   STEPS   training steps (default 3)
//
// The images are synthetic: class c is a bright band across rows c * H / classes onwards,
// over faint noise; one image in four has its label, the others are marked -1.
//
// Build (one line):
//   c++ -std=c++11 -Iinclude -Ibindings/cpp examples/cpp/finetune.cpp -Ltarget/release
//       -lfewlabels -o finetune
#include "fewlabels.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

// A small deterministic generator for the noise (no <random> distributions, whose output
// differs between standard libraries).
struct Lcg {
    std::uint64_t s;
    float next() {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        return float((s >> 40) & 0xFFFFFF) / float(0x1000000);
    }
};

void make_batch(const fl_model_info &info, std::uint32_t n, std::uint32_t first, Lcg &rng,
                std::vector<float> &images, std::vector<std::int32_t> &labels) {
    const std::size_t hw = std::size_t(info.height) * info.width;
    const std::size_t per = hw * info.channels;
    images.assign(per * n, 0.0f);
    labels.assign(n, -1);
    for (std::uint32_t b = 0; b < n; b++) {
        const std::uint32_t cls = (first + b) % info.num_classes;
        const std::uint32_t top = cls * info.height / info.num_classes;
        const std::uint32_t bottom = top + info.height / info.num_classes;
        for (std::uint32_t c = 0; c < info.channels; c++)
            for (std::uint32_t y = 0; y < info.height; y++)
                for (std::uint32_t x = 0; x < info.width; x++) {
                    float v = 0.1f * rng.next();
                    if (y >= top && y < bottom) v += 0.85f;
                    images[b * per + c * hw + y * info.width + x] = v;
                }
        if ((first + b) % 4 == 0) labels[b] = std::int32_t(cls);
    }
}

bool in_unit_range(const std::vector<float> &v) {
    for (float x : v)
        if (!(x >= 0.0f && x <= 1.0f)) return false;
    return true;
}

}  // namespace

int main(int argc, char **argv) {
    const bool preset = argc >= 2 && std::strcmp(argv[1], "--preset") == 0;
    const int base = preset ? 3 : 2;
    if (argc < base + 1 || argc > base + 2) {
        std::fprintf(stderr, "usage: finetune MODEL|-|--preset NAME OUT [STEPS]\n");
        return 2;
    }
    const std::string out = argv[base];
    const int steps = argc == base + 2 ? std::atoi(argv[base + 1]) : 3;
    try {
        fl_train_config cfg = fewlabels::default_train_config();
        cfg.ema_start = 1;  // a short fine-tune: average G from the first step
        cfg.seed = 7;
        const bool def = !preset && std::strcmp(argv[1], "-") == 0;
        fewlabels::Trainer trainer = preset ? fewlabels::Trainer::from_preset(argv[2], 1, cfg)
                                     : def  ? fewlabels::Trainer(nullptr, cfg)
                                            : fewlabels::Trainer(argv[1], cfg);
        const fl_model_info &info = trainer.info();
        std::printf("training %u classes of %u x %u x %u images, variant %d\n",
                    info.num_classes, info.channels, info.height, info.width, cfg.variant);

        Lcg rng{42};
        std::vector<float> images;
        std::vector<std::int32_t> labels;
        const std::uint32_t batch = 8;
        // Compile what a step of this batch size needs now (CPU adapters), not in the first
        // step; a program with a loading screen would call it there.
        trainer.prepare(batch);
        for (int s = 0; s < steps; s++) {
            make_batch(info, batch, std::uint32_t(s) * batch, rng, images, labels);
            fl_step_stats st = trainer.step(images, labels);
            std::printf("step %d: d_loss %.4f (hinge %.4f, rotation %.4f, class %.4f), g_loss %.4f, "
                        "class accuracy %.2f on %u labelled, steps D %llu G %llu\n",
                        s + 1, st.d_loss, st.d_hinge, st.d_rotation, st.d_class, st.g_loss,
                        st.class_accuracy, st.labelled, (unsigned long long)st.d_steps_done,
                        (unsigned long long)st.g_steps_done);
            if (!std::isfinite(st.d_loss) || !std::isfinite(st.g_loss)) {
                std::puts("FAIL: a loss is not finite");
                return 1;
            }
        }

        trainer.save(out);
        fewlabels::Model saved(out);
        fewlabels::Model live = trainer.model();
        std::vector<float> z = saved.make_z(1, 0.8f, 1);
        for (std::uint32_t c = 0; c < info.num_classes; c++) {
            std::vector<float> a = saved.sample(std::int32_t(c), z);
            std::vector<float> b = live.sample(std::int32_t(c), z);
            if (!in_unit_range(a) || a != b) {
                std::printf("FAIL: class %u: the saved model and the trainer's model disagree\n",
                            c);
                return 1;
            }
        }
        std::printf("saved %s; sampled %u classes from it\n", out.c_str(), info.num_classes);
    } catch (const fewlabels::Error &e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    std::puts("finetune: ok");
    return 0;
}
