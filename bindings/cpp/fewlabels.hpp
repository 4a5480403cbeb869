// C++ wrapper over the libfewlabels C ABI (header only, C++11): RAII model handles and
// exceptions instead of status codes.
//
//   fewlabels::Model model("model.safetensors");
//   std::vector<float> z = model.make_z(/*seed*/ 1, /*truncation*/ 0.8f, /*n*/ 1);
//   std::vector<float> image = model.sample(/*class*/ 0, z);   // C*H*W floats in [0, 1]
//
//   fewlabels::Trainer trainer("model.safetensors");          // or Trainer::from_preset("tiny", 1)
//   fl_step_stats s = trainer.step(images, labels);            // labels: class id or -1
//   trainer.save("tuned.safetensors");
//
// Threads: as the C ABI; one Model may be sampled from several threads at once; a Trainer is
// used by one thread at a time.
#ifndef FEWLABELS_HPP
#define FEWLABELS_HPP

#include "fewlabels.h"

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace fewlabels {

/// A failed call: `status()` is the FL_ERR_* code, `what()` names it and gives the message.
class Error : public std::runtime_error {
public:
    Error(fl_status status, const std::string &message)
        : std::runtime_error(std::string(fl_status_name(status)) + ": " + message),
          status_(status) {}
    fl_status status() const noexcept { return status_; }

private:
    fl_status status_;
};

inline void check(fl_status status) {
    if (status != FL_OK) throw Error(status, fl_last_error());
}

inline std::string version() { return fl_version(); }

class Model {
public:
    /// Load a model file; `nullptr` asks for the embedded default model.
    explicit Model(const char *path) : handle_(nullptr, fl_model_free) {
        fl_model *m = nullptr;
        check(fl_model_load(path, &m));
        handle_.reset(m);
        check(fl_model_get_info(m, &info_));
    }
    explicit Model(const std::string &path) : Model(path.c_str()) {}

    const fl_model_info &info() const noexcept { return info_; }
    std::size_t image_floats() const noexcept {
        return std::size_t(info_.channels) * info_.height * info_.width;
    }

    void save(const std::string &path) const { check(fl_model_save(handle_.get(), path.c_str())); }

    /// Compile ahead what sampling `n` images in one call needs (CPU adapters; see
    /// fl_model_prepare), so that the first such call does not wait for it.
    void prepare(std::uint32_t n = 1) const { check(fl_model_prepare(handle_.get(), n)); }

    std::vector<float> make_z(std::uint64_t seed, float truncation = 1.0f,
                              std::uint32_t n = 1) const {
        std::vector<float> z(std::size_t(n) * info_.z_dim);
        check(fl_make_z(handle_.get(), seed, truncation, n, z.data()));
        return z;
    }

    std::vector<float> sample(std::int32_t class_id, const std::vector<float> &z) {
        need(z.size(), info_.z_dim, "z");
        std::vector<float> out(image_floats());
        check(fl_sample(handle_.get(), class_id, z.data(), out.data()));
        return out;
    }

    std::vector<float> sample_batch(const std::vector<std::int32_t> &class_ids,
                                    const std::vector<float> &z) {
        need(z.size(), class_ids.size() * info_.z_dim, "z");
        std::vector<float> out(class_ids.size() * image_floats());
        check(fl_sample_batch(handle_.get(), std::uint32_t(class_ids.size()), class_ids.data(),
                              z.data(), out.data()));
        return out;
    }

    std::vector<std::uint8_t> sample_rgba8(std::int32_t class_id, const std::vector<float> &z) {
        need(z.size(), info_.z_dim, "z");
        std::vector<std::uint8_t> out(std::size_t(info_.height) * info_.width * 4);
        check(fl_sample_rgba8(handle_.get(), class_id, z.data(), out.data()));
        return out;
    }

    /// Labels of `images.size() / image_floats()` images; `probs` (if given) receives
    /// n * num_classes probabilities.
    std::vector<std::int32_t> classify(const std::vector<float> &images,
                                       std::vector<float> *probs = nullptr) {
        std::size_t n = image_floats() ? images.size() / image_floats() : 0;
        need(images.size(), n * image_floats(), "images");
        std::vector<std::int32_t> labels(n);
        if (probs) probs->assign(n * info_.num_classes, 0.0f);
        check(fl_classify(handle_.get(), std::uint32_t(n), images.data(), labels.data(),
                          probs ? probs->data() : nullptr));
        return labels;
    }

    /// Fit D's class head on `labels.size()` images (labels: class ids, -1 = no label), the
    /// rest of the model unchanged; returns the share of the labelled images it gets right.
    float fit_class_head(const std::vector<float> &images, const std::vector<std::int32_t> &labels,
                         std::uint32_t steps = 0, std::uint64_t seed = 0) {
        need(images.size(), labels.size() * image_floats(), "images");
        float accuracy = 0.0f;
        check(fl_model_fit_class_head(handle_.get(), std::uint32_t(labels.size()), images.data(),
                                      labels.data(), steps, seed, &accuracy));
        return accuracy;
    }

    fl_model *get() const noexcept { return handle_.get(); }

    /// Take ownership of a handle (from `fl_trainer_model`).
    static Model adopt(fl_model *m) { return Model(Adopt(), m); }

private:
    struct Adopt {};
    Model(Adopt, fl_model *m) : handle_(m, fl_model_free) {
        check(fl_model_get_info(m, &info_));
    }

    static void need(std::size_t got, std::size_t want, const char *what) {
        if (got != want)
            throw Error(FL_ERR_INVALID_ARGUMENT, std::string(what) + " has " +
                                                     std::to_string(got) + " floats, needs " +
                                                     std::to_string(want));
    }

    std::unique_ptr<fl_model, void (*)(fl_model *)> handle_;
    fl_model_info info_{};
};

/// The default training configuration (S3GAN-CO, BigGAN's settings).
inline fl_train_config default_train_config() {
    fl_train_config cfg;
    check(fl_train_config_default(&cfg));
    return cfg;
}

/// A trainer: a model (G, D, G_ema) with Adam state, fine-tuned batch by batch. Used by one
/// thread at a time (a call from a second thread throws Error with FL_ERR_BUSY).
class Trainer {
public:
    /// Fine-tune a model file (`nullptr`: the embedded default model).
    Trainer(const char *model_path, const fl_train_config &cfg = default_train_config())
        : handle_(nullptr, fl_trainer_free) {
        fl_trainer *t = nullptr;
        check(fl_trainer_create(model_path, &cfg, &t));
        init(t);
    }
    Trainer(const std::string &model_path, const fl_train_config &cfg = default_train_config())
        : Trainer(model_path.c_str(), cfg) {}

    /// Fresh weights from a preset ("tiny", "fashion", ...).
    static Trainer from_preset(const std::string &preset, std::uint64_t seed,
                               const fl_train_config &cfg = default_train_config()) {
        fl_trainer *t = nullptr;
        check(fl_trainer_create_new(preset.c_str(), seed, &cfg, &t));
        return Trainer(Adopt(), t);
    }

    const fl_model_info &info() const noexcept { return info_; }
    std::size_t image_floats() const noexcept {
        return std::size_t(info_.channels) * info_.height * info_.width;
    }

    /// One step on `labels.size()` images (CHW floats in [0, 1], one after another); a label
    /// of -1 marks an image without one.
    fl_step_stats step(const std::vector<float> &images, const std::vector<std::int32_t> &labels) {
        if (images.size() != labels.size() * image_floats())
            throw Error(FL_ERR_INVALID_ARGUMENT,
                        "images has " + std::to_string(images.size()) + " floats, needs " +
                            std::to_string(labels.size() * image_floats()));
        fl_step_stats stats{};
        check(fl_trainer_step(handle_.get(), std::uint32_t(labels.size()), images.data(),
                              labels.data(), &stats));
        return stats;
    }

    /// Compile ahead what step() with `n` images needs (CPU adapters; see fl_trainer_prepare),
    /// so that the first such step does not wait for it.
    void prepare(std::uint32_t n) { check(fl_trainer_prepare(handle_.get(), n)); }

    /// Save the current model (G, D, G_ema) as a model file.
    void save(const std::string &path) { check(fl_trainer_save(handle_.get(), path.c_str())); }

    /// An independent sampling model from the current weights.
    Model model() {
        fl_model *m = nullptr;
        check(fl_trainer_model(handle_.get(), &m));
        return Model::adopt(m);
    }

    fl_trainer *get() const noexcept { return handle_.get(); }

private:
    struct Adopt {};
    Trainer(Adopt, fl_trainer *t) : handle_(nullptr, fl_trainer_free) { init(t); }
    void init(fl_trainer *t) {
        handle_.reset(t);
        check(fl_trainer_get_info(t, &info_));
    }

    std::unique_ptr<fl_trainer, void (*)(fl_trainer *)> handle_;
    fl_model_info info_{};
};

}  // namespace fewlabels

#endif  // FEWLABELS_HPP
