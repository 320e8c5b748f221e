// SPDX-License-Identifier: MIT
/// \file
/// Tests of hax::train::Trainer on a tiny joint-recall task, with the stand-in mixer and with a
/// tiny HAX hybrid (Mamba2 + sign_bin_lsh+key_selection): the loss falls over a few steps,
/// resuming equals an uninterrupted run (bit for bit on Serial; the hybrid's hashing streams and
/// the `reference` evaluation counter included) and does not repeat metrics lines, checkpoint
/// and safetensors round trips, mismatching checkpoints, bad settings, a non-finite loss that
/// stops the run naming the step and keeps the last good checkpoint, and the evaluation with the
/// output head at the loss positions against the full head.
#include <hax/train/trainer.hpp>

#include <catch2/catch_approx.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <type_traits>
#include <vector>

#include "support/compare.hpp"
#include "support/test_space.hpp"
#include "support/tiny_models.hpp"

using Catch::Matchers::ContainsSubstring;
using space = hax::test::test_space;
using Trainer = hax::train::Trainer<space, float>;

namespace {

hax::models::ModelConfig tiny_model() {
  hax::models::ModelConfig c;
  c.base = hax::models::Base::mamba;
  c.hidden_size = 8;
  c.intermediate_size = 16;
  c.num_hidden_layers = 2;
  return c;
}

hax::data::recall_spec tiny_spec() {
  auto s = hax::data::make_spec(2, 2, 3);
  s.items_per_combination[0] = 12;
  s.items_per_combination[1] = 2;
  s.items_per_combination[2] = 2;
  return s;
}

hax::train::TrainConfig tiny_train(std::string dir = "") {
  hax::train::TrainConfig t;
  t.batch = 5;  // does not divide the 48 training items: exercises the wrap-around
  t.lr = 1e-2;
  t.warmup = 2;
  t.steps = 6;
  t.eval_every = 3;
  t.log_every = 2;
  t.out_dir = std::move(dir);
  t.progress = false;
  return t;
}

std::filesystem::path fresh_dir(std::string const& name) {
  auto const dir = std::filesystem::temp_directory_path() /
                   ("hax_train_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  return dir;
}

/// (split or event, step) of every line of a metrics.jsonl, and the logged values by line.
struct Metrics {
  std::vector<std::pair<std::string, std::int64_t>> keys;
  std::vector<nlohmann::json> lines;
};
Metrics read_metrics(std::filesystem::path const& path) {
  Metrics m;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    m.keys.emplace_back(j.value("split", j.value("event", std::string("?"))), j.value("step", -1));
    m.lines.push_back(std::move(j));
  }
  return m;
}

std::vector<double> tensor_values(hax::io::TensorSet const& set, std::string const& name) {
  auto const& t = set.at(name);
  std::vector<double> out(t.bytes.size() / sizeof(float));
  for (std::size_t i = 0; i < out.size(); ++i) {
    float f;
    std::memcpy(&f, t.bytes.data() + i * sizeof(float), sizeof(float));
    out[i] = f;
  }
  return out;
}

}  // namespace

TEST_CASE("train: a few steps reduce the loss on a tiny task", "[train]") {
  auto cfg = tiny_train();
  cfg.steps = 60;
  cfg.warmup = 0;
  Trainer trainer(tiny_model(), tiny_spec(), cfg);
  trainer.train_step();
  double const first = trainer.last_metrics().loss;
  double last = 0;
  for (int i = 1; i < 60; ++i) {
    trainer.train_step();
    if (i >= 50) last += trainer.last_metrics().loss / 10.0;
  }
  INFO("first loss " << first << ", mean of the last 10 " << last);
  CHECK(std::isfinite(first));
  CHECK(first > 4.0);          // ~log(100) at initialisation
  CHECK(last < first - 1.0);   // the value distribution alone is log(16) = 2.77
  CHECK(trainer.step() == 60);
}

TEST_CASE("train: resuming equals an uninterrupted run", "[train]") {
  auto const a_dir = fresh_dir("a"), b_dir = fresh_dir("b");
  {
    Trainer a(tiny_model(), tiny_spec(), tiny_train(a_dir.string()));
    a.run();
  }
  {
    auto cfg = tiny_train(b_dir.string());
    cfg.steps = 3;
    Trainer b(tiny_model(), tiny_spec(), cfg);
    b.run();
  }
  {
    auto cfg = tiny_train(b_dir.string());
    cfg.resume = true;
    Trainer c(tiny_model(), tiny_spec(), cfg);
    auto const result = c.run();
    CHECK(result["step"] == 6);
  }
  auto const a = hax::io::read_checkpoint(a_dir / "last.haxckpt");
  auto const b = hax::io::read_checkpoint(b_dir / "last.haxckpt");
  CHECK(a.metadata()["step"] == 6);
  CHECK(b.metadata()["step"] == 6);
  CHECK(a.metadata()["data_position"] == b.metadata()["data_position"]);
  CHECK(a.metadata()["best_step"] == b.metadata()["best_step"]);
  for (char const* name : {"params", "adam_m", "adam_v", "adam_step"}) {
    INFO(name);
    if constexpr (std::is_same_v<space, Kokkos::Serial>) {
      CHECK(a.at(name).bytes == b.at(name).bytes);  // bit for bit
    } else if (std::string(name) != "adam_step") {
      // Atomic accumulation order may differ between thread schedules.
      hax::test::check_close(tensor_values(b, name), tensor_values(a, name), 1e-4, 1e-6, name);
    } else {
      CHECK(a.at(name).bytes == b.at(name).bytes);
    }
  }
  // metrics.jsonl: the resumed run's lines are the uninterrupted run's, plus one resume event
  // (the first part's final test line is gone, and nothing repeats).
  auto const ma = read_metrics(a_dir / "metrics.jsonl");
  auto mb = read_metrics(b_dir / "metrics.jsonl");
  auto const resume = std::find(mb.keys.begin(), mb.keys.end(),
                                std::pair<std::string, std::int64_t>{"resume", 3});
  REQUIRE(resume != mb.keys.end());
  mb.lines.erase(mb.lines.begin() + (resume - mb.keys.begin()));
  mb.keys.erase(resume);
  CHECK(mb.keys == ma.keys);
  CHECK(ma.keys.size() == 7);  // train 2, 3; valid 3; train 4, 6; valid 6; test
  std::filesystem::remove_all(a_dir);
  std::filesystem::remove_all(b_dir);
}

TEST_CASE("train: checkpoint round trip and mismatching checkpoints", "[train]") {
  auto const dir = fresh_dir("rt");
  std::filesystem::create_directories(dir);
  auto cfg = tiny_train();
  Trainer a(tiny_model(), tiny_spec(), cfg);
  for (int i = 0; i < 4; ++i) a.train_step();
  a.save_checkpoint(dir / "x.haxckpt");
  auto other = cfg;
  other.seed = 99;  // different initial parameters, same run otherwise? no: seed is part of the run
  auto same = cfg;
  Trainer b(tiny_model(), tiny_spec(), same);
  b.load_checkpoint(dir / "x.haxckpt");
  CHECK(b.step() == 4);
  auto const pa = hax::test::to_vector(a.model().store().values());
  auto const pb = hax::test::to_vector(b.model().store().values());
  CHECK(pa == pb);
  CHECK(hax::test::to_vector(a.model().store().adam_v()) ==
        hax::test::to_vector(b.model().store().adam_v()));
  // Both continue identically for one more step.
  a.train_step();
  b.train_step();
  hax::test::check_close(hax::test::to_vector(b.model().store().values()),
                         hax::test::to_vector(a.model().store().values()), 1e-5, 1e-7, "params");

  Trainer c(tiny_model(), tiny_spec(), other);
  CHECK_THROWS_WITH(c.load_checkpoint(dir / "x.haxckpt"), ContainsSubstring("another protocol"));
  auto wider = tiny_model();
  wider.hidden_size = 4;
  wider.intermediate_size = 8;
  Trainer d(wider, tiny_spec(), cfg);
  CHECK_THROWS_WITH(d.load_checkpoint(dir / "x.haxckpt"), ContainsSubstring("another model"));
  CHECK_THROWS_AS(d.load_checkpoint(dir / "missing.haxckpt"), hax::io_error);
  std::filesystem::remove_all(dir);
}

TEST_CASE("train: safetensors export and import with the reference's names", "[train]") {
  auto const dir = fresh_dir("st");
  std::filesystem::create_directories(dir);
  Trainer a(tiny_model(), tiny_spec(), tiny_train());
  a.train_step();
  a.export_safetensors(dir / "p.safetensors");
  auto const set = hax::io::read_safetensors(dir / "p.safetensors");
  CHECK(set.at("embeddings.weight").shape == std::vector<std::uint64_t>{100, 8});
  CHECK(set.at("layers.1.norm.weight").shape == std::vector<std::uint64_t>{8});
  CHECK(set.at("norm_f.weight").shape == std::vector<std::uint64_t>{8});
  CHECK(set.size() == a.model().store().size());
  auto cfg = tiny_train();
  cfg.seed = 5;
  Trainer b(tiny_model(), tiny_spec(), cfg);
  CHECK(hax::test::to_vector(b.model().store().values()) !=
        hax::test::to_vector(a.model().store().values()));
  b.import_safetensors(dir / "p.safetensors");
  CHECK(hax::test::to_vector(b.model().store().values()) ==
        hax::test::to_vector(a.model().store().values()));
  std::filesystem::remove_all(dir);
}

TEST_CASE("train: the loss and accuracy at the loss positions equal those over every position",
          "[train]") {
  // The trainer runs the output head at the loss positions only (Model::forward with positions);
  // here the same batches go through the full head, and the masked loss and the per-item
  // accuracy are taken over every position, as before the output rows existed.
  auto cfg = tiny_train();
  Trainer trainer(tiny_model(), tiny_spec(), cfg);
  for (int i = 0; i < 3; ++i) trainer.train_step();  // trained weights: non-uniform logits
  auto const got = trainer.evaluate(hax::data::split::valid);
  auto const& spec = trainer.spec();
  auto const& model = trainer.model();
  using mem = space::memory_space;
  space const s;
  auto const ex = hax::data::make_exclusions(s, spec);
  std::int64_t const n = hax::data::split_size(spec, hax::data::split::valid);
  REQUIRE(n > cfg.batch);  // two batches, the second one short
  double acc_sum = 0, loss_sum = 0;
  int batches = 0;
  for (std::int64_t first = 0; first < n; first += cfg.batch) {
    int const nb = static_cast<int>(std::min<std::int64_t>(cfg.batch, n - first));
    Kokkos::View<std::int32_t**, Kokkos::LayoutRight, mem> tokens("tokens", nb, spec.padded_length);
    Kokkos::View<std::int8_t**, Kokkos::LayoutRight, mem> mask("mask", nb, spec.padded_length);
    Kokkos::View<int, mem> failures("failures");
    hax::data::generate_batch(s, spec, ex, hax::data::split::valid, first, tokens, mask, failures);
    auto const batch = hax::data::shift_for_training(tokens, mask);
    auto ws = model.make_workspace(s, nb, spec.padded_length - 1);
    Trainer::model_type::set_pad_mask(s, ws, batch.inputs, spec.pad);
    hax::models::StepContext ctx;
    ctx.seed = cfg.hash_seed;
    ctx.training = false;
    model.forward(s, ws, batch.inputs, ctx);
    Kokkos::View<float, mem> ce("ce"), acc_mean("acc_mean");
    Kokkos::View<std::int64_t, mem> count("count");
    Kokkos::View<float*, mem> acc_item("acc_item", nb);
    hax::nn::cross_entropy_forward(s, ws.logits, batch.labels, batch.loss_mask, ce, count,
                                   Kokkos::View<float***, mem>());
    hax::nn::masked_accuracy(s, ws.logits, batch.labels, batch.loss_mask, acc_item, acc_mean);
    for (double a : hax::test::to_vector(acc_item)) acc_sum += a;
    loss_sum += hax::test::to_vector(ce)[0];
    ++batches;
  }
  CHECK(got.items == n);
  CHECK(got.accuracy == Catch::Approx(acc_sum / static_cast<double>(n)).margin(1e-6));
  CHECK(got.loss == Catch::Approx(loss_sum / batches).epsilon(1e-5));
  CHECK(got.loss > 0.1);  // not a degenerate comparison
}

TEST_CASE("train: a step's gradients equal those of the full head on the same batch", "[train]") {
  // train_step leaves the step's gradients in the store (zero_grad comes first in a step). The
  // same model before its first step, run with the full head over every position on the step's
  // batch (the first `batch` training items), must give the same gradients.
  auto cfg = tiny_train();
  Trainer trainer(tiny_model(), tiny_spec(), cfg);
  Trainer untouched(tiny_model(), tiny_spec(), cfg);  // same seed: the same initial parameters
  trainer.train_step();
  auto const got = hax::test::to_vector(trainer.model().store().grads());

  auto const& spec = untouched.spec();
  auto& model = untouched.model();
  using mem = space::memory_space;
  space const s;
  auto const ex = hax::data::make_exclusions(s, spec);
  Kokkos::View<std::int32_t**, Kokkos::LayoutRight, mem> tokens("tokens", cfg.batch, spec.padded_length);
  Kokkos::View<std::int8_t**, Kokkos::LayoutRight, mem> mask("mask", cfg.batch, spec.padded_length);
  Kokkos::View<int, mem> failures("failures");
  hax::data::generate_batch(s, spec, ex, hax::data::split::train, 0, tokens, mask, failures);
  auto const batch = hax::data::shift_for_training(tokens, mask);
  auto ws = model.make_workspace(s, cfg.batch, spec.padded_length - 1);
  Trainer::model_type::set_pad_mask(s, ws, batch.inputs, spec.pad);
  hax::models::StepContext ctx;
  ctx.seed = cfg.hash_seed;
  ctx.step = 0;
  ctx.training = true;
  ctx.gate_loss_weight = cfg.gate_loss_weight;
  model.store().zero_grad(s);
  model.forward(s, ws, batch.inputs, ctx);
  Kokkos::View<float, mem> ce("ce");
  Kokkos::View<std::int64_t, mem> count("count");
  hax::nn::cross_entropy_forward(s, ws.logits, batch.labels, batch.loss_mask, ce, count, ws.dlogits);
  model.backward(s, ws, batch.inputs, ctx);
  auto const want = hax::test::to_vector(model.store().grads());
  REQUIRE(hax::test::max_abs(want) > 0.0);
  hax::test::check_close(got, want, 1e-4, 1e-6, "gradients of the first step");
}

TEST_CASE("train: bad settings are rejected", "[train]") {
  auto cfg = tiny_train();
  cfg.lr = 0.0;
  CHECK_THROWS_WITH(Trainer(tiny_model(), tiny_spec(), cfg), ContainsSubstring("lr must be > 0"));
  cfg = tiny_train();
  cfg.steps = 0;
  CHECK_THROWS_WITH(Trainer(tiny_model(), tiny_spec(), cfg), ContainsSubstring("steps must be >= 1"));
  auto m = tiny_model();
  m.vocab_size = 20;
  CHECK_THROWS_WITH(Trainer(m, tiny_spec(), tiny_train()), ContainsSubstring("vocab_size"));
}

TEST_CASE("train: a non-finite loss stops the run naming the step", "[train]") {
  auto const dir = fresh_dir("nan");
  auto cfg = tiny_train(dir.string());
  cfg.log_every = 1;
  Trainer t(tiny_model(), tiny_spec(), cfg);
  auto values = hax::test::to_vector(t.model().store().values());
  for (auto& v : values) v = std::nan("");
  hax::test::from_vector(t.model().store().values(), values);
  CHECK_THROWS_WITH(t.run(), ContainsSubstring("non-finite loss") && ContainsSubstring("at step 1"));
  CHECK_FALSE(std::filesystem::exists(dir / "last.haxckpt"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("train: a non-finite loss keeps the last good checkpoint", "[train]") {
  auto const dir = fresh_dir("nan_keep");
  auto cfg = tiny_train(dir.string());  // validates and checkpoints at steps 3 and 6
  cfg.log_every = 1;
  Trainer* trainer = nullptr;
  // After update 4 the parameters turn non-finite: the loss of step 5 is NaN.
  cfg.on_step = [&trainer](std::int64_t step) {
    if (step != 4) return;
    auto values = hax::test::to_vector(trainer->model().store().values());
    for (auto& v : values) v = std::nan("");
    hax::test::from_vector(trainer->model().store().values(), values);
  };
  Trainer t(tiny_model(), tiny_spec(), cfg);
  trainer = &t;
  CHECK_THROWS_WITH(t.run(), ContainsSubstring("non-finite loss") &&
                                 ContainsSubstring("at step 5") &&
                                 ContainsSubstring("last good checkpoint"));
  auto const last = hax::io::read_checkpoint(dir / "last.haxckpt");
  CHECK(last.metadata()["step"] == 3);
  for (double v : tensor_values(last, "params")) REQUIRE(std::isfinite(v));
  CHECK(std::filesystem::exists(dir / "best.haxckpt"));
  // It resumes from there (and the metrics stop at step 3 again).
  cfg.on_step = nullptr;
  cfg.resume = true;
  Trainer again(tiny_model(), tiny_spec(), cfg);
  auto const result = again.run();
  CHECK(result["step"] == 6);
  auto const m = read_metrics(dir / "metrics.jsonl");
  std::int64_t prev = 0;
  for (auto const& [what, step] : m.keys) {  // steps never go back: nothing repeats
    CAPTURE(what, step);
    if (what == "train") {
      CHECK(step > prev);
      prev = step;
    }
  }
  std::filesystem::remove_all(dir);
}

#if HAX_MODELS_HAS_MAMBA2 && HAX_MODELS_HAS_SPARSE_BRANCH
namespace {

using HybridTrainer = hax::train::Trainer<space, float, hax::ssm::Mamba2Mixer<space, float>>;

hax::models::ModelConfig tiny_hybrid(std::string semantics = "causal") {
  return hax::test::tiny_mamba2_hybrid(std::move(semantics));
}

}  // namespace

TEST_CASE("train: a tiny hybrid learns, with the gate loss beside the cross-entropy",
          "[train][hybrid]") {
  auto cfg = tiny_train();
  cfg.steps = 60;
  cfg.warmup = 0;
  cfg.gate_loss_weight = 0.5;
  HybridTrainer trainer(tiny_hybrid(), tiny_spec(), cfg);
  trainer.train_step();
  auto const first = trainer.last_metrics();
  CHECK(first.gate_loss > 0.0);  // key selection's ranking loss, summed over the two layers
  CHECK(first.loss == Catch::Approx(first.ce + 0.5 * first.gate_loss).epsilon(1e-12));
  double last = 0;
  for (int i = 1; i < 60; ++i) {
    trainer.train_step();
    if (i >= 50) last += trainer.last_metrics().ce / 10.0;
  }
  INFO("first cross-entropy " << first.ce << ", mean of the last 10 " << last);
  CHECK(first.ce > 4.0);
  CHECK(last < first.ce - 1.0);
}

TEST_CASE("train: resuming a hybrid equals an uninterrupted run (hashing streams included)",
          "[train][hybrid]") {
  // `reference` semantics: training hashes per (seed, step, layer), evaluation per batch counter;
  // both must continue where they stopped.
  auto const a_dir = fresh_dir("ha"), b_dir = fresh_dir("hb");
  auto const model = tiny_hybrid("reference");
  {
    HybridTrainer a(model, tiny_spec(), tiny_train(a_dir.string()));
    a.run();
  }
  {
    auto cfg = tiny_train(b_dir.string());
    cfg.steps = 3;
    HybridTrainer b(model, tiny_spec(), cfg);
    b.run();
  }
  {
    auto cfg = tiny_train(b_dir.string());
    cfg.resume = true;
    HybridTrainer c(model, tiny_spec(), cfg);
    CHECK(c.run()["step"] == 6);
  }
  auto const a = hax::io::read_checkpoint(a_dir / "last.haxckpt");
  auto const b = hax::io::read_checkpoint(b_dir / "last.haxckpt");
  CHECK(a.metadata()["eval_batches"] == b.metadata()["eval_batches"]);
  CHECK(a.metadata()["eval_batches"].get<std::int64_t>() > 0);
  for (char const* name : {"params", "adam_m", "adam_v"}) {
    INFO(name);
    if constexpr (std::is_same_v<space, Kokkos::Serial>) {
      CHECK(a.at(name).bytes == b.at(name).bytes);  // bit for bit
    } else {
      // Threads sum in a varying order (the attention backward's atomics), so an element whose
      // gradient is at rounding level can take an AdamW step of another size or sign: atol is
      // 1 % of one step at lr 1e-2 (seen: 2.5e-6 on one of 2 630 parameters under ASan). A
      // resume that broke the optimiser or a random stream moves most elements by about lr.
      hax::test::check_close(tensor_values(b, name), tensor_values(a, name), 1e-4, 1e-4, name);
    }
  }
  // The validation and test results after the resume are the uninterrupted run's.
  auto const ma = read_metrics(a_dir / "metrics.jsonl");
  auto const mb = read_metrics(b_dir / "metrics.jsonl");
  auto results = [](Metrics const& m) {
    std::vector<double> out;
    for (auto const& j : m.lines) {
      auto const split = j.value("split", std::string());
      if (split == "valid" || split == "test") {
        out.push_back(j["accuracy"].get<double>());
        out.push_back(j["loss"].get<double>());
      }
    }
    return out;
  };
  REQUIRE(results(ma).size() == 6);
  hax::test::check_close(results(mb), results(ma), 1e-5, 1e-6, "valid/test accuracy and loss");
  std::filesystem::remove_all(a_dir);
  std::filesystem::remove_all(b_dir);
}
#endif
