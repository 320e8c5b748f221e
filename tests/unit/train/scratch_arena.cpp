// SPDX-License-Identifier: MIT
/// \file
/// The trainer's scratch arena: a few steps of a tiny HAX hybrid (Mamba2 +
/// sign_bin_lsh+key_selection), of Mamba and of the stand-in mixer give the same parameters,
/// metrics and evaluation with the arena as without (bit for bit where the backend can be
/// deterministic: Serial, or an OpenMP instance of one thread), the arena serves the steps'
/// temporaries, and after the first steps it allocates no more blocks.
#include <hax/train/trainer.hpp>

#include <catch2/catch_test_macros.hpp>

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "support/compare.hpp"
#include "support/test_space.hpp"
#include "support/tiny_models.hpp"

namespace {

using space = hax::test::test_space;

hax::data::recall_spec arena_spec() {
  auto s = hax::data::make_spec(2, 2, 3);
  s.items_per_combination[0] = 12;
  s.items_per_combination[1] = 2;
  s.items_per_combination[2] = 2;
  return s;
}

hax::train::TrainConfig arena_train(bool use_arena) {
  hax::train::TrainConfig t;
  t.batch = 5;
  t.lr = 1e-2;
  t.warmup = 2;
  t.steps = 8;
  t.progress = false;
  t.gate_loss_weight = 0.5;
  t.use_scratch_arena = use_arena;
  return t;
}

/// The instance the comparison runs on: where the backend can, one whose results do not depend on
/// thread timing (float atomics and cross-thread reductions), so that the two runs must agree bit
/// for bit: Serial, or an OpenMP instance with a pool of one thread.
space deterministic_space() {
#if defined(HAX_TEST_BACKEND_OPENMP)
  return Kokkos::OpenMP(1);
#else
  return space();
#endif
}

/// Runs `steps` updates and an evaluation with and without the arena and compares everything.
template <class Trainer>
void check_arena_is_invisible(hax::models::ModelConfig const& model, int steps,
                              bool has_temporaries = true) {
  auto const instance = deterministic_space();
  Trainer with(model, arena_spec(), arena_train(true), instance);
  Trainer without(model, arena_spec(), arena_train(false), instance);
  std::vector<std::size_t> blocks;
  for (int i = 0; i < steps; ++i) {
    with.train_step();
    without.train_step();
    blocks.push_back(with.scratch_arena().block_allocations());
  }
  // Bit for bit where nothing depends on thread timing. Elsewhere (CUDA's float atomics) AdamW
  // turns rounding-level differences of near-zero gradients into updates of up to ±lr, so the
  // parameters are only checked to within the lr of every step (garbage or NaN still fails).
  bool const exact = instance.concurrency() == 1;
  double const rtol = exact ? 0.0 : 1e-3, atol = exact ? 0.0 : 1e-4;
  double const param_atol = exact ? 0.0 : 2e-2 * steps;
  auto const mw = with.last_metrics(), mo = without.last_metrics();
  // Named vectors rather than braced lists in the call: nvcc 13's host pass rejects the latter.
  std::vector<double> const metrics_with{mw.loss, mw.ce, mw.gate_loss, mw.accuracy};
  std::vector<double> const metrics_without{mo.loss, mo.ce, mo.gate_loss, mo.accuracy};
  hax::test::check_close(metrics_with, metrics_without, rtol, atol, "metrics");
  hax::test::check_close(hax::test::to_vector(with.model().store().values()),
                         hax::test::to_vector(without.model().store().values()), rtol,
                         param_atol, "parameters");
  if (exact) {
    hax::test::check_close(hax::test::to_vector(with.model().store().adam_m()),
                           hax::test::to_vector(without.model().store().adam_m()), 0.0, 0.0,
                           "adam_m");
  }
  auto const ew = with.evaluate(hax::data::split::valid, 12);
  auto const eo = without.evaluate(hax::data::split::valid, 12);
  std::vector<double> const eval_with{ew.accuracy, ew.loss};
  std::vector<double> const eval_without{eo.accuracy, eo.loss};
  hax::test::check_close(eval_with, eval_without, rtol, atol, "evaluate");

  auto const& arena = with.scratch_arena();
  INFO("blocks after each step: " << blocks.front() << " ... " << blocks.back());
  // The steps' temporaries came from the arena (the stand-in mixer's model has none: every
  // activation lives in the model's workspace).
  CHECK((arena.high_water() > 0) == has_temporaries);
  CHECK(without.scratch_arena().block_allocations() == 0);
  CHECK(without.scratch_arena().high_water() == 0);
  // Warm-up: the first step grows the arena, the second merges its blocks; then nothing.
  REQUIRE(steps >= 4);
  CHECK(blocks[2] == blocks.back());
  CHECK(arena.capacity() >= arena.high_water());
  // Evaluation batches of the training shape fit the warmed-up arena too.
  with.evaluate(hax::data::split::valid, 12);
  CHECK(arena.block_allocations() == blocks.back());
}

}  // namespace

TEST_CASE("train: the scratch arena changes nothing but the allocations (mamba)",
          "[train][scratch]") {
  hax::models::ModelConfig c;
  c.base = hax::models::Base::mamba;
  c.hidden_size = 8;
  c.intermediate_size = 16;
  c.num_hidden_layers = 2;
  check_arena_is_invisible<hax::train::Trainer<space, float>>(c, 5, false);  // the stand-in
#if HAX_MODELS_HAS_MAMBA && HAX_MODELS_HAS_SPARSE_BRANCH
  check_arena_is_invisible<
      hax::train::Trainer<space, float, hax::ssm::MambaMixer<space, float>>>(c, 5);
#endif
}

#if HAX_MODELS_HAS_MAMBA2 && HAX_MODELS_HAS_SPARSE_BRANCH
TEST_CASE("train: the scratch arena changes nothing but the allocations (mamba2 + HAX)",
          "[train][scratch][hybrid]") {
  auto const c = hax::test::tiny_mamba2_hybrid();
  check_arena_is_invisible<
      hax::train::Trainer<space, float, hax::ssm::Mamba2Mixer<space, float>>>(c, 5);
}
#endif

namespace {

/// Counts the Views Kokkos allocates while it is installed (Kokkos Tools' allocation callback; the
/// previous callback, normally none in the test executables, is restored on destruction).
/// Zero-byte allocations are not counted: Kokkos' CUDA backend asks its team-scratch pool for the
/// level-1 scratch of every TeamPolicy launch, and a pool that has never held any reports a new
/// zero-byte "allocation" (cudaMalloc of 0 bytes: no memory and no fence) each time.
class AllocationCounter {
 public:
  AllocationCounter() {
    count_ = 0;
    Kokkos::Tools::Experimental::set_allocate_data_callback(&AllocationCounter::on_allocate);
  }
  ~AllocationCounter() { Kokkos::Tools::Experimental::set_allocate_data_callback(nullptr); }
  AllocationCounter(AllocationCounter const&) = delete;
  AllocationCounter& operator=(AllocationCounter const&) = delete;
  static int count() { return count_; }
  static std::string const& last_label() { return last_; }

 private:
  static void on_allocate(Kokkos::Profiling::SpaceHandle, char const* label, void const*,
                          std::uint64_t bytes) {
    if (bytes == 0) { return; }
    ++count_;
    last_ = label;
  }
  static inline int count_ = 0;
  static inline std::string last_;
};

}  // namespace

#if HAX_MODELS_HAS_MAMBA2 && HAX_MODELS_HAS_SPARSE_BRANCH
TEST_CASE("train: a warmed-up training step allocates no View (mamba2 + HAX)",
          "[train][scratch][hybrid]") {
  // On CUDA every View allocation and deallocation fences the device, so this is the test that
  // the step has no hidden host synchronisation from allocations.
  auto const c = hax::test::tiny_mamba2_hybrid();
  hax::train::Trainer<space, float, hax::ssm::Mamba2Mixer<space, float>> trainer(
      c, arena_spec(), arena_train(true));
  for (int i = 0; i < 3; ++i) { trainer.train_step(); }  // warm-up: the arena grows, then merges
  Kokkos::fence();
  int allocations = 0;
  std::string last;
  {
    AllocationCounter counter;
    trainer.train_step();
    trainer.train_step();
    Kokkos::fence();
    allocations = AllocationCounter::count();
    last = AllocationCounter::last_label();
  }
  INFO("last allocation: " << last);
  CHECK(allocations == 0);
  // The counter sees allocations at all (it can fail): a View made while it is installed counts.
  {
    AllocationCounter counter;
    Kokkos::View<float*, typename space::memory_space> probe("hax::test::probe", 3);
    CHECK(AllocationCounter::count() == 1);
  }
}
#endif

#if HAX_MODELS_HAS_MAMBA2 && HAX_MODELS_HAS_SPARSE_BRANCH
TEST_CASE("train: scratch frames free each layer's backward temporaries for the next layer",
          "[train][scratch][hybrid]") {
  // What one warmed-up step of an n-layer model holds at its peak, and what it takes in all.
  auto measure = [](int layers) {
    auto c = hax::test::tiny_mamba2_hybrid();
    c.num_hidden_layers = layers;
    hax::train::Trainer<space, float, hax::ssm::Mamba2Mixer<space, float>> trainer(
        c, arena_spec(), arena_train(true));
    for (int i = 0; i < 3; ++i) { trainer.train_step(); }
    Kokkos::fence();
    return std::pair{trainer.scratch_arena().high_water(), trainer.scratch_arena().taken()};
  };
  auto const [peak1, taken1] = measure(1);
  auto const [peak2, taken2] = measure(2);
  INFO("1 layer: peak " << peak1 << " of " << taken1 << " B taken; 2 layers: peak " << peak2 << " of "
                        << taken2 << " B taken");
  // Released temporaries (packed projections, plan-step scratch, backward temporaries) are
  // reused: the peak is well below the sum of the takes.
  CHECK(peak1 < taken1);
  CHECK(peak2 < taken2);
  // A second layer adds its saved activations to the peak, not its backward temporaries: those
  // reuse the memory of the other layer's backward.
  CHECK(peak2 - peak1 < taken2 - taken1);
}
#endif
