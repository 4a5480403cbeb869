// The C++ wrapper: samples, classifies, and turns failures into exceptions.
// usage: cpp_wrapper MODEL
#include "fewlabels.hpp"

#include <cstdio>
#include <thread>

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    {
        fewlabels::Model def(nullptr);
        if (def.info().num_classes != 10) {
            std::puts("FAIL: the default model does not have 10 classes");
            return 1;
        }
        try {
            def.sample(10, def.make_z(1, 1.0f, 1));
            std::puts("FAIL: class 10 of the default model sampled");
            return 1;
        } catch (const fewlabels::Error &e) {
            if (e.status() != FL_ERR_OUT_OF_RANGE) {
                std::printf("FAIL: %s\n", e.what());
                return 1;
            }
        }
    }
    fewlabels::Model model(argv[1]);
    std::vector<float> z = model.make_z(2, 0.9f, 2);
    std::vector<float> imgs = model.sample_batch({0, 2}, z);
    std::vector<float> one = model.sample(2, std::vector<float>(z.begin() + model.info().z_dim, z.end()));
    std::vector<float> other;
    std::thread t([&] { other = model.sample(2, std::vector<float>(z.begin() + model.info().z_dim, z.end())); });
    t.join();
    if (one != other) {
        std::puts("FAIL: another thread sampled a different image");
        return 1;
    }
    std::vector<float> probs;
    std::vector<std::int32_t> labels = model.classify(imgs, &probs);
    if (labels.size() != 2 || probs.size() != 2 * model.info().num_classes) {
        std::puts("FAIL: classify sizes");
        return 1;
    }
    try {
        model.sample(7, std::vector<float>(z.begin(), z.begin() + model.info().z_dim));
        std::puts("FAIL: class 7 sampled");
        return 1;
    } catch (const fewlabels::Error &e) {
        if (e.status() != FL_ERR_OUT_OF_RANGE) {
            std::printf("FAIL: %s\n", e.what());
            return 1;
        }
    }
    std::printf("C++ wrapper: ok (%zu floats per image)\n", model.image_floats());
    return 0;
}
