// SPDX-License-Identifier: MIT
/// \file
/// hax::train::Trainer: the reference's training protocol (semantics.md section 5) for a
/// hax::models::Model on multi-query joint recall. Batches are generated on the fly into device
/// Views in the reference's split order (no shuffle; the stream wraps around); inputs =
/// seq[:-1], labels = seq[1:], loss mask = mask[:-1]; loss = masked token-mean cross-entropy +
/// α·Σ_layers gate loss; AdamW (PyTorch defaults, weight decay on every parameter) driven from
/// device memory with warm-up then constant lr; validation every N updates, the best checkpoint
/// kept, the final test on the best checkpoint (its own embedding as the output layer, the
/// `causal` semantics of section 9). A step never synchronises with the host; the loss and
/// accuracy are read back only at log steps. Checkpoints (parameters, AdamW moments and step,
/// step and data position, best-so-far) go through hax::io (atomic, checksummed), and resuming
/// continues exactly as if the run had not stopped.
#pragma once

#include <hax/core/error.hpp>
#include <hax/core/scratch.hpp>
#include <hax/data/joint_recall.hpp>
#include <hax/io/checkpoint.hpp>
#include <hax/io/safetensors.hpp>
#include <hax/io/tensor_set.hpp>
#include <hax/models/config.hpp>
#include <hax/models/model.hpp>
#include <hax/nn/cross_entropy.hpp>
#include <hax/optim/adamw.hpp>
#include <hax/optim/schedule.hpp>
#include <hax/version.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>

namespace hax::train {

/// Version of the trainer's checkpoint contents (the metadata and tensor names below); a file
/// with another version is refused.
inline constexpr int kTrainCheckpointVersion = 1;

/// The protocol's settings; the defaults are the reference's (semantics.md section 5).
struct TrainConfig {
  int batch = 64;
  double lr = 2e-3;
  double weight_decay = 0.01;
  std::int64_t warmup = 5000;       // updates of linear warm-up from 0, constant after
  std::int64_t steps = 400000;      // total updates
  std::int64_t eval_every = 500;    // validate after every eval_every updates
  std::int64_t eval_items = 0;      // validation items (0: the whole split)
  std::int64_t test_items = 0;      // test items (0: the whole split)
  std::int64_t log_every = 100;     // read back loss/accuracy every log_every updates
  double gate_loss_weight = 0.1;    // α
  std::uint64_t seed = 1;           // parameter initialisation
  std::uint64_t hash_seed = 1;      // LSH hashing matrices (per step, per layer)
  std::string out_dir;              // checkpoints + metrics.jsonl; empty: none written
  bool resume = false;              // continue from out_dir/last.haxckpt if present
  bool progress = true;             // progress line on stderr
  /// Per-step temporaries and saved activations come from the trainer's scratch arena (no
  /// allocation, hence no hidden device synchronisation, once it has warmed up); false allocates
  /// them per op as before (same results; for comparisons and debugging).
  bool use_scratch_arena = true;
  /// Called on the host after every update of run() with the completed update count (progress
  /// hooks, tests); nothing is synchronised for it.
  std::function<void(std::int64_t)> on_step;

  void validate() const {
    constexpr char const* op = "hax::train::TrainConfig";
    core::require(batch >= 1, op, "batch must be >= 1, got ", batch);
    core::require(lr > 0.0 && std::isfinite(lr), op, "lr must be > 0, got ", lr);
    core::require(weight_decay >= 0.0, op, "weight_decay must be >= 0, got ", weight_decay);
    core::require(warmup >= 0, op, "warmup must be >= 0, got ", warmup);
    core::require(steps >= 1, op, "steps must be >= 1, got ", steps);
    core::require(eval_every >= 1, op, "eval_every must be >= 1, got ", eval_every);
    core::require(eval_items >= 0 && test_items >= 0, op, "eval_items (", eval_items,
                  ") and test_items (", test_items, ") must be >= 0");
    core::require(log_every >= 1, op, "log_every must be >= 1, got ", log_every);
    core::require(gate_loss_weight >= 0.0, op, "gate_loss_weight must be >= 0, got ",
                  gate_loss_weight);
  }
};

/// Data layout fields that a checkpoint must agree on.
inline nlohmann::json spec_to_json(data::recall_spec const& s) {
  nlohmann::json j;
  j["levels"] = s.levels;
  j["n_min"] = std::vector<int>(s.n_min, s.n_min + s.levels);
  j["n_max"] = std::vector<int>(s.n_max, s.n_max + s.levels);
  j["n_values"] = s.n_values;
  j["vocab_size"] = s.vocab_size;
  j["padded_length"] = s.padded_length;
  j["items_per_combination"] = std::vector<std::int64_t>(s.items_per_combination,
                                                         s.items_per_combination + 3);
  j["seed"] = s.seed;
  return j;
}

/// The metrics of one training step, read back at log steps.
struct StepMetrics {
  double loss = 0.0;       // ce + α · gate_loss: what the step minimised
  double ce = 0.0;         // masked token-mean cross-entropy
  double gate_loss = 0.0;  // Σ_layers ranking (gate) loss; 0 without key selection
  double accuracy = 0.0;   // mean per-item masked accuracy of the batch
};

/// The `step` of the hashing streams at evaluation under `reference` semantics: a per-batch
/// counter offset far past any training step, so evaluation draws its own projections (fresh per
/// batch, as the reference's per-call draw) and never reuses a training step's.
inline constexpr std::uint64_t kEvalStepBase = std::uint64_t{1} << 62;

/// One evaluation's result.
struct EvalResult {
  double accuracy = 0.0;  // mean over items of the per-item masked accuracy
  double loss = 0.0;      // mean over batches of the token-mean cross-entropy
  std::int64_t items = 0;
};

template <execution_space Space, class T = float, class Mixer = models::LinearMixer<Space, T>>
class Trainer {
 public:
  using model_type = models::Model<Space, T, Mixer>;
  using memory_space = typename Space::memory_space;
  using token_view = Kokkos::View<std::int32_t**, Kokkos::LayoutRight, memory_space>;  // (B, Lpad)
  using mask_view = Kokkos::View<std::int8_t**, Kokkos::LayoutRight, memory_space>;    // (B, Lpad)

  /// `spec` is resolved here; its vocabulary must fit the model's.
  Trainer(models::ModelConfig const& model_config, data::recall_spec const& spec,
          TrainConfig const& config, Space const& space = Space{})
      : space_(space),
        config_(config),
        spec_(data::resolve(spec, "hax::train::Trainer")),
        model_((config.validate(), model_config), config.seed, space),
        optimizer_(optim::AdamWConfig{0.9, 0.999, 1e-8, config.weight_decay}, space) {
    constexpr char const* op = "hax::train::Trainer";
    core::require(spec_.vocab_size <= model_config.vocab_size, op, "the data's vocabulary (",
                  spec_.vocab_size, ") exceeds the model's vocab_size (", model_config.vocab_size,
                  ")");
    exclusions_ = data::make_exclusions(space_, spec_);
    int const b = config_.batch, lp = spec_.padded_length;
    tokens_ = token_view(Kokkos::view_alloc(space_, std::string("hax::train::tokens")), b, lp);
    mask_ = mask_view(Kokkos::view_alloc(space_, std::string("hax::train::mask")), b, lp);
    failures_ = Kokkos::View<int, memory_space>(
        Kokkos::view_alloc(space_, std::string("hax::train::failures")));
    // The loss and the accuracy read the logits at the loss positions only (at most
    // max_loss_positions per item, 256 of 1 057 in the reference's data): the output head runs
    // there alone (docs/math/output_rows.md).
    int const r = std::min(data::max_loss_positions(spec_), lp - 1);
    ws_ = model_.make_workspace(space_, b, lp - 1, r);
    positions_ = slot_view<int>(Kokkos::view_alloc(space_, std::string("hax::train::positions")), b, r);
    labels_at_ = slot_view<std::int32_t>(
        Kokkos::view_alloc(space_, std::string("hax::train::labels_at")), b, r);
    mask_at_ = slot_view<std::int8_t>(Kokkos::view_alloc(space_, std::string("hax::train::mask_at")),
                                      b, r);
    overflow_ = Kokkos::View<int, memory_space>(
        Kokkos::view_alloc(space_, std::string("hax::train::overflow")));
    ce_ = Kokkos::View<T, memory_space>(Kokkos::view_alloc(space_, std::string("hax::train::ce")));
    count_ = Kokkos::View<std::int64_t, memory_space>(
        Kokkos::view_alloc(space_, std::string("hax::train::count")));
    acc_item_ = Kokkos::View<T*, memory_space>(
        Kokkos::view_alloc(space_, std::string("hax::train::acc_item")), b);
    acc_mean_ = Kokkos::View<T, memory_space>(
        Kokkos::view_alloc(space_, std::string("hax::train::acc_mean")));
    sums_ = Kokkos::View<double[2], memory_space>(
        Kokkos::view_alloc(space_, std::string("hax::train::eval_sums")));
  }

  model_type& model() { return model_; }
  model_type const& model() const { return model_; }
  TrainConfig const& config() const { return config_; }
  data::recall_spec const& spec() const { return spec_; }
  /// Completed updates.
  std::int64_t step() const { return step_; }
  double best_accuracy() const { return best_acc_; }

  /// The arena of the per-step temporaries (counters for tests and benchmarks).
  core::ScratchArena<memory_space> const& scratch_arena() const { return arena_; }

  /// One update on the next training batch. No host synchronisation (once the scratch arena has
  /// warmed up, i.e. after the first step: see core/scratch.hpp).
  void train_step() {
    // Every temporary of the step comes from the arena, reset here; what outlives the step (the
    // loss, gate loss and logits read by last_metrics) lives in persistent buffers (ce_, ws_).
    core::ScratchScope<memory_space> scope(scratch());
    load_batch(data::split::train, data_pos_);
    auto const batch = data::shift_for_training(tokens_, mask_);
    model_type::set_pad_mask(space_, ws_, batch.inputs, spec_.pad);
    data::loss_positions(space_, batch.loss_mask, batch.labels, positions_, labels_at_, mask_at_,
                         overflow_);
    models::StepContext ctx;
    ctx.seed = config_.hash_seed;
    ctx.step = static_cast<std::uint64_t>(step_);
    ctx.training = true;
    ctx.gate_loss_weight = config_.gate_loss_weight;
    model_.store().zero_grad(space_);
    model_.forward(space_, ws_, batch.inputs, positions_, ctx);
    nn::cross_entropy_forward(space_, ws_.logits, labels_at_, mask_at_, ce_, count_, ws_.dlogits);
    model_.backward(space_, ws_, batch.inputs, positions_, ctx);
    optimizer_.update(space_, optim::WarmupCosine{config_.lr, config_.warmup, 0, 0.0},
                      model_.store());
    ++step_;
    data_pos_ = (data_pos_ + config_.batch) % data::split_size(spec_, data::split::train);
  }

  /// Loss (CE + α·gate loss), its two terms and the batch accuracy of the last training step,
  /// read back to the host (synchronises: only at log steps).
  StepMetrics last_metrics() {
    nn::masked_accuracy(space_, ws_.logits, labels_at_, mask_at_, acc_item_, acc_mean_);
    T ce = 0, gate = 0, acc = 0;
    Kokkos::deep_copy(space_, ce, ce_);
    Kokkos::deep_copy(space_, gate, ws_.gate_loss);
    Kokkos::deep_copy(space_, acc, acc_mean_);
    space_.fence("hax::train::last_metrics");
    check_loss_positions("hax::train::Trainer::last_metrics");
    StepMetrics m;
    m.ce = static_cast<double>(ce);
    m.gate_loss = static_cast<double>(gate);
    m.loss = m.ce + config_.gate_loss_weight * m.gate_loss;
    m.accuracy = static_cast<double>(acc);
    return m;
  }

  /// Accuracy and loss on the first `items` items of split `sp` (0: all), evaluation mode (no
  /// gate loss; hashing: the fixed evaluation projection under `causal` semantics, a fresh one per
  /// batch under `reference`, numbered by a counter kept in checkpoints). Synchronises once at
  /// the end.
  EvalResult evaluate(data::split sp, std::int64_t items = 0) {
    std::int64_t const total = data::split_size(spec_, sp);
    std::int64_t const n = items > 0 ? std::min(items, total) : total;
    core::require(n > 0, "hax::train::Trainer::evaluate", "split ", data::split_name(sp),
                  " is empty");
    Kokkos::deep_copy(space_, sums_, 0.0);
    models::StepContext ctx;
    ctx.seed = config_.hash_seed;
    ctx.step = 0;
    ctx.training = false;
    ctx.gate_loss_weight = config_.gate_loss_weight;
    std::int64_t batches = 0;
    auto const acc_item = acc_item_;
    auto const ce = ce_;
    auto const sums = sums_;
    for (std::int64_t first = 0; first < n; first += config_.batch) {
      std::int64_t const nb = std::min<std::int64_t>(config_.batch, n - first);
      core::ScratchScope<memory_space> scope(scratch());  // one step of the arena per batch
      // Under `causal` the branch ignores ctx.step at evaluation (one fixed projection).
      ctx.step = kEvalStepBase + static_cast<std::uint64_t>(eval_batches_++);
      // Rows past nb keep the previous batch's (valid) tokens; only the first nb items count.
      auto const rows = Kokkos::make_pair<std::int64_t, std::int64_t>(0, nb);
      data::generate_batch(space_, spec_, exclusions_, sp, first,
                           Kokkos::subview(tokens_, rows, Kokkos::ALL),
                           Kokkos::subview(mask_, rows, Kokkos::ALL), failures_);
      auto const batch = data::shift_for_training(tokens_, mask_);
      model_type::set_pad_mask(space_, ws_, batch.inputs, spec_.pad);
      data::loss_positions(space_, batch.loss_mask, batch.labels, positions_, labels_at_,
                           mask_at_, overflow_);
      model_.forward(space_, ws_, batch.inputs, positions_, ctx);
      nn::cross_entropy_forward(space_, Kokkos::subview(ws_.logits, rows, Kokkos::ALL, Kokkos::ALL),
                                Kokkos::subview(labels_at_, rows, Kokkos::ALL),
                                Kokkos::subview(mask_at_, rows, Kokkos::ALL), ce_, count_,
                                Kokkos::View<T***, memory_space>());
      nn::masked_accuracy(space_, ws_.logits, labels_at_, mask_at_, acc_item_, acc_mean_);
      Kokkos::parallel_for(
          "hax::train::eval_accumulate", Kokkos::RangePolicy<Space>(space_, 0, 1),
          KOKKOS_LAMBDA(int) {
            double a = 0;
            for (std::int64_t b = 0; b < nb; ++b) a += static_cast<double>(acc_item(b));
            sums(0) += a;
            sums(1) += static_cast<double>(ce());
          });
      ++batches;
    }
    double host[2] = {0, 0};
    Kokkos::View<double[2], Kokkos::HostSpace> h(host);
    Kokkos::deep_copy(space_, h, sums_);
    space_.fence("hax::train::evaluate");
    check_loss_positions("hax::train::Trainer::evaluate");
    return EvalResult{host[0] / static_cast<double>(n), host[1] / static_cast<double>(batches), n};
  }

  /// Writes a checkpoint: parameters, AdamW moments and step, the trainer's counters and the
  /// configs (so resuming checks it continues the same run). Atomic. Synchronises.
  void save_checkpoint(std::filesystem::path const& path) const {
    io::TensorSet set;
    set.metadata() = run_metadata();
    set.metadata()["step"] = step_;
    set.metadata()["data_position"] = data_pos_;
    set.metadata()["best_accuracy"] = best_acc_;
    set.metadata()["best_step"] = best_step_;
    set.metadata()["eval_batches"] = eval_batches_;
    auto const& store = model_.store();
    set.add(space_, "params", store.values());
    set.add(space_, "adam_m", store.adam_m());
    set.add(space_, "adam_v", store.adam_v());
    set.add(space_, "adam_step", optimizer_.step_count());
    io::write_checkpoint(path, set);
  }

  /// Restores a checkpoint written by save_checkpoint for the same model, data and protocol.
  /// `params_only` restores the parameters alone (the best checkpoint for the final test).
  /// Throws hax::invalid_argument naming the mismatching setting, hax::io_error for bad files.
  void load_checkpoint(std::filesystem::path const& path, bool params_only = false) {
    constexpr char const* op = "hax::train::Trainer::load_checkpoint";
    auto const set = io::read_checkpoint(path);
    auto const& meta = set.metadata();
    core::require(meta.value("format", std::string()) == "hax.train" &&
                      meta.value("format_version", 0) == kTrainCheckpointVersion,
                  op, "\"", path.string(), "\" is not a hax training checkpoint of version ",
                  kTrainCheckpointVersion, " (format ", meta.value("format", std::string("?")),
                  ", version ", meta.value("format_version", 0), ")");
    auto const mine = run_metadata();
    for (char const* key : {"model", "data", "protocol"}) {
      if (meta.value(key, nlohmann::json()) != mine[key]) {
        throw invalid_argument(core::concat(
            op, ": \"", path.string(), "\" was written for another ", key, " configuration: ",
            meta.value(key, nlohmann::json()).dump(), " vs this run's ", mine[key].dump()));
      }
    }
    auto& store = model_.store();
    set.copy_to(space_, "params", store.values());
    if (params_only) return;
    set.copy_to(space_, "adam_m", store.adam_m());
    set.copy_to(space_, "adam_v", store.adam_v());
    set.copy_to(space_, "adam_step", optimizer_.step_count());
    step_ = meta.at("step").get<std::int64_t>();
    data_pos_ = meta.at("data_position").get<std::int64_t>();
    best_acc_ = meta.at("best_accuracy").get<double>();
    best_step_ = meta.at("best_step").get<std::int64_t>();
    eval_batches_ = meta.value("eval_batches", std::int64_t{0});
  }

  /// Exports the parameters to safetensors with the reference's names (embeddings.weight,
  /// layers.{i}.norm.weight, layers.{i}.mixer.*, norm_f.weight). Synchronises.
  void export_safetensors(std::filesystem::path const& path) const {
    io::TensorSet set;
    auto const& store = model_.store();
    for (auto const& e : store.entries()) {
      switch (e.shape.size()) {
        case 1: set.add(space_, e.name, store.template value<1>(e.name)); break;
        case 2: set.add(space_, e.name, store.template value<2>(e.name)); break;
        default: set.add(space_, e.name, store.template value<3>(e.name)); break;
      }
    }
    set.metadata() = nlohmann::json{{"format", "pt"}, {"hax_version", hax::version_string}};
    io::write_safetensors(path, set);
  }

  /// Imports parameters from a safetensors file with the reference's names (every parameter must
  /// be present with its shape, as f32 for T = float). Synchronises.
  void import_safetensors(std::filesystem::path const& path) {
    auto const set = io::read_safetensors(path);
    auto& store = model_.store();
    for (auto const& e : store.entries()) {
      switch (e.shape.size()) {
        case 1: set.copy_to(space_, e.name, store.template value<1>(e.name)); break;
        case 2: set.copy_to(space_, e.name, store.template value<2>(e.name)); break;
        default: set.copy_to(space_, e.name, store.template value<3>(e.name)); break;
      }
    }
  }

  /// The whole protocol: (resume,) train to config().steps with logging, validation, best and last
  /// checkpoints, then the test on the best checkpoint. Returns the final metrics record.
  /// Throws hax::numerical_error naming the step when the loss becomes non-finite (the last good
  /// checkpoint is left as it was).
  nlohmann::json run() {
    namespace fs = std::filesystem;
    fs::path const dir = config_.out_dir;
    bool const files = !config_.out_dir.empty();
    if (files) fs::create_directories(dir);
    if (files && config_.resume && fs::exists(dir / "last.haxckpt")) {
      load_checkpoint(dir / "last.haxckpt");
      // Lines written after the checkpoint (and the previous final test) would repeat.
      truncate_metrics(dir / "metrics.jsonl", step_);
      log_line(nlohmann::json{{"event", "resume"}, {"step", step_}});
    }
    auto const start = std::chrono::steady_clock::now();
    std::int64_t const first_step = step_;
    while (step_ < config_.steps) {
      train_step();
      if (config_.on_step) config_.on_step(step_);
      bool const eval_now = step_ % config_.eval_every == 0;
      if (step_ % config_.log_every == 0 || eval_now || step_ == config_.steps) {
        auto const m = last_metrics();
        double const loss = m.loss, acc = m.accuracy;
        if (!std::isfinite(loss)) {
          throw numerical_error(core::concat(
              "hax::train: non-finite loss (", loss, ": cross-entropy ", m.ce, ", gate loss ",
              m.gate_loss, ") at step ", step_,
              files ? "; the last good checkpoint in " + dir.string() + " is kept"
                    : std::string()));
        }
        double const secs = std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                                          start).count();
        double const rate = static_cast<double>(step_ - first_step) / std::max(secs, 1e-9);
        log_line(nlohmann::json{{"split", "train"}, {"step", step_}, {"loss", loss},
                                {"ce", m.ce}, {"gate_loss", m.gate_loss},
                                {"accuracy", acc}, {"steps_per_s", rate},
                                {"lr", optim::WarmupCosine{config_.lr, config_.warmup, 0, 0.0}(step_)}});
        if (config_.progress) {
          double const eta = static_cast<double>(config_.steps - step_) / std::max(rate, 1e-9);
          std::fprintf(stderr,
                       "\rstep %lld/%lld  %.2f steps/s  ETA %.0fs  loss %.4f (ce %.4f, gate %.4f)"
                       "  acc %.4f   ",
                       static_cast<long long>(step_), static_cast<long long>(config_.steps), rate,
                       eta, loss, m.ce, m.gate_loss, acc);
          std::fflush(stderr);
        }
      }
      if (eval_now || step_ == config_.steps) {
        auto const r = evaluate(data::split::valid, config_.eval_items);
        log_line(nlohmann::json{{"split", "valid"}, {"step", step_}, {"accuracy", r.accuracy},
                                {"loss", r.loss}, {"items", r.items}});
        if (config_.progress) {
          std::fprintf(stderr, "\n[valid] step %lld  acc %.4f  loss %.4f  (best %.4f)\n",
                       static_cast<long long>(step_), r.accuracy, r.loss,
                       std::max(best_acc_, r.accuracy));
        }
        if (r.accuracy > best_acc_) {  // strictly greater, as the reference
          best_acc_ = r.accuracy;
          best_step_ = step_;
          if (files) save_checkpoint(dir / "best.haxckpt");
        }
        if (files) save_checkpoint(dir / "last.haxckpt");
      }
    }
    if (files) save_checkpoint(dir / "last.haxckpt");
    // Final test on the best checkpoint (its own embedding is the output layer).
    if (files && fs::exists(dir / "best.haxckpt")) {
      load_checkpoint(dir / "best.haxckpt", /*params_only=*/true);
    }
    auto const t = evaluate(data::split::test, config_.test_items);
    nlohmann::json result{{"split", "test"},          {"step", step_},
                          {"best_step", best_step_},  {"best_valid_accuracy", best_acc_},
                          {"accuracy", t.accuracy},   {"loss", t.loss},
                          {"items", t.items}};
    log_line(result);
    if (files) export_safetensors(dir / "best.safetensors");
    return result;
  }

 private:
  void load_batch(data::split sp, std::int64_t first) {
    std::int64_t const total = data::split_size(spec_, sp);
    std::int64_t const b = config_.batch;
    if (first + b <= total) {
      data::generate_batch(space_, spec_, exclusions_, sp, first, tokens_, mask_, failures_);
      return;
    }
    // Wrap around: the tail of the split, then its head (the stream is cyclic).
    std::int64_t const head = total - first;
    std::int64_t done = 0;
    std::int64_t item = first;
    while (done < b) {
      std::int64_t const take = std::min(b - done, done == 0 ? head : total);
      auto const rows = Kokkos::make_pair(done, done + take);
      data::generate_batch(space_, spec_, exclusions_, sp, item,
                           Kokkos::subview(tokens_, rows, Kokkos::ALL),
                           Kokkos::subview(mask_, rows, Kokkos::ALL), failures_);
      done += take;
      item = 0;
    }
  }

  /// Throws std::logic_error when a batch since the last check had an item with more loss
  /// positions than the output rows hold (data::max_loss_positions bounds every generated item,
  /// so this is a bug, not bad input), then clears the count. Reads a device counter: call it
  /// where the host synchronises anyway.
  void check_loss_positions(char const* op) {
    int over = 0;
    Kokkos::deep_copy(space_, over, overflow_);
    space_.fence(op);
    if (over == 0) return;
    Kokkos::deep_copy(space_, overflow_, 0);
    throw std::logic_error(core::concat(op, ": ", over, " item(s) had more loss positions than the ",
                                        ws_.output_rows,
                                        " output rows per item (data::max_loss_positions) hold"));
  }

  /// The arena a step uses: none (helpers allocate) when the config turns it off.
  core::ScratchArena<memory_space>* scratch() {
    return config_.use_scratch_arena ? &arena_ : nullptr;
  }

  nlohmann::json run_metadata() const {
    nlohmann::json j;
    j["format"] = "hax.train";
    j["format_version"] = kTrainCheckpointVersion;
    j["hax_version"] = hax::version_string;
    j["model"] = models::config_to_json(model_.config());
    j["data"] = spec_to_json(spec_);
    j["protocol"] = nlohmann::json{{"batch", config_.batch},
                                   {"lr", config_.lr},
                                   {"weight_decay", config_.weight_decay},
                                   {"warmup", config_.warmup},
                                   {"gate_loss_weight", config_.gate_loss_weight},
                                   {"seed", config_.seed},
                                   {"hash_seed", config_.hash_seed},
                                   {"parameters", model_.parameter_count()}};
    return j;
  }

  /// Rewrites `path` keeping only the lines of steps <= `step` (and no final-test line), through a
  /// temporary file and a rename, so that a crash leaves either the old or the new file.
  static void truncate_metrics(std::filesystem::path const& path, std::int64_t step) {
    namespace fs = std::filesystem;
    if (!fs::exists(path)) return;
    std::ifstream in(path);
    std::string kept, line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) continue;  // a torn last line from a crash
      if (j.value("split", std::string()) == "test") continue;
      if (j.contains("step") && j["step"].is_number_integer() &&
          j["step"].get<std::int64_t>() > step) {
        continue;
      }
      kept += line;
      kept += '\n';
    }
    in.close();
    fs::path tmp = path;
    tmp += ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc | std::ios::binary);
      out << kept;
      out.flush();
      if (!out) {
        throw io_error(core::concat("hax::train: cannot write \"", tmp.string(), "\""));
      }
    }
    fs::rename(tmp, path);
  }

  void log_line(nlohmann::json const& j) const {
    if (config_.out_dir.empty()) return;
    std::ofstream out(std::filesystem::path(config_.out_dir) / "metrics.jsonl", std::ios::app);
    out << j.dump() << '\n';
  }

  Space space_;
  TrainConfig config_;
  data::recall_spec spec_;
  model_type model_;
  optim::AdamW<Space> optimizer_;
  data::split_exclusions<memory_space> exclusions_;
  token_view tokens_;                                  // (B, Lpad)
  mask_view mask_;                                     // (B, Lpad)
  Kokkos::View<int, memory_space> failures_;           // rank 0
  template <class V>
  using slot_view = Kokkos::View<V**, Kokkos::LayoutRight, memory_space>;
  slot_view<int> positions_;            // (B, R) the loss positions of the batch, -1 past
  slot_view<std::int32_t> labels_at_;   // (B, R) their labels
  slot_view<std::int8_t> mask_at_;      // (B, R) 1 on filled slots
  Kokkos::View<int, memory_space> overflow_;  // rank 0: items with more than R loss positions
  typename model_type::Workspace ws_;                  // (B, Lpad - 1)
  Kokkos::View<T, memory_space> ce_;                   // rank 0
  Kokkos::View<std::int64_t, memory_space> count_;     // rank 0
  Kokkos::View<T*, memory_space> acc_item_;            // (B)
  Kokkos::View<T, memory_space> acc_mean_;             // rank 0
  Kokkos::View<double[2], memory_space> sums_;         // (2): Σ item accuracy, Σ batch CE
  core::ScratchArena<memory_space> arena_{"hax::train::scratch"};  // per-step temporaries
  std::int64_t step_ = 0;
  std::int64_t data_pos_ = 0;
  double best_acc_ = -1.0;
  std::int64_t best_step_ = -1;
  std::int64_t eval_batches_ = 0;  // evaluation batches so far (the `reference` hashing stream)
};

}  // namespace hax::train
