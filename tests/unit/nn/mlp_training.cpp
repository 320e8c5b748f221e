// SPDX-License-Identifier: MIT
/// End-to-end check of the training toolkit: a two-layer MLP (Linear → SiLU → Linear → masked
/// cross-entropy) on a toy task that a linear model cannot solve (XOR of the signs of two
/// coordinates), its parameters in a ParameterStore, trained with device-driven AdamW under the
/// reference's warm-up. The loss must fall by a large factor on every backend.
#include <hax/core/finite.hpp>
#include <hax/core/random.hpp>
#include <hax/nn/activation.hpp>
#include <hax/nn/cross_entropy.hpp>
#include <hax/nn/init.hpp>
#include <hax/nn/linear.hpp>
#include <hax/nn/parameters.hpp>
#include <hax/optim/adamw.hpp>
#include <hax/optim/schedule.hpp>

#include <catch2/catch_test_macros.hpp>

#include <cmath>
#include <cstdint>

#include "support/compare.hpp"
#include "support/test_space.hpp"

namespace {

using hax::test::test_memory_space;
using hax::test::test_space;

template <class D>
using view = Kokkos::View<D, Kokkos::LayoutRight, test_memory_space>;

/// Points uniform in [-1, 1)², label = [x0 > 0] XOR [x1 > 0], every position scored.
void make_xor_data(test_space const& space, view<float***> const& x, view<int**> const& labels,
                   view<int**> const& mask) {
  int const n = x.extent_int(1);
  Kokkos::parallel_for(
      "test::xor_data", Kokkos::RangePolicy<test_space>(space, 0, n), KOKKOS_LAMBDA(int i) {
        hax::core::RngStream rng(hax::core::stream_key(7, 0, static_cast<std::uint64_t>(i)));
        float const a = static_cast<float>(2.0 * rng.uniform() - 1.0);
        float const b = static_cast<float>(2.0 * rng.uniform() - 1.0);
        x(0, i, 0) = a;
        x(0, i, 1) = b;
        labels(0, i) = (a > 0.f) != (b > 0.f) ? 1 : 0;
        mask(0, i) = 1;
      });
}

}  // namespace

TEST_CASE("a two-layer MLP trained with AdamW drives its loss down", "[nn][training]") {
  int const n = 128, d_in = 2, hidden = 16, classes = 2, steps = 120;
  test_space space;

  hax::nn::ParameterStore<test_space, float> store;
  store.add("fc1.weight", {hidden, d_in}, hax::nn::init::KaimingUniform{});
  store.add("fc1.bias", {hidden}, hax::nn::init::KaimingUniform{d_in});
  store.add("fc2.weight", {classes, hidden}, hax::nn::init::KaimingUniform{});
  store.add("fc2.bias", {classes}, hax::nn::init::Zeros{});
  store.finalize(space);
  store.initialize(space, 2024);
  auto const w1 = store.value<2>("fc1.weight");   // (H, 2)
  auto const b1 = store.value<1>("fc1.bias");     // (H)
  auto const w2 = store.value<2>("fc2.weight");   // (C, H)
  auto const b2 = store.value<1>("fc2.bias");     // (C)
  auto const dw1 = store.grad<2>("fc1.weight");   // (H, 2)
  auto const db1 = store.grad<1>("fc1.bias");     // (H)
  auto const dw2 = store.grad<2>("fc2.weight");   // (C, H)
  auto const db2 = store.grad<1>("fc2.bias");     // (C)

  view<float***> x("x", 1, n, d_in);              // (1, N, 2)
  view<int**> labels("labels", 1, n);             // (1, N)
  view<int**> mask("mask", 1, n);                 // (1, N)
  view<float***> pre("pre", 1, n, hidden);        // (1, N, H) fc1 output, saved for SiLU'
  view<float***> h("h", 1, n, hidden);            // (1, N, H) SiLU output, saved for fc2's dW
  view<float***> logits("logits", 1, n, classes);   // (1, N, C)
  view<float***> dlogits("dlogits", 1, n, classes); // (1, N, C)
  view<float***> dh("dh", 1, n, hidden);          // (1, N, H)
  view<float***> dpre("dpre", 1, n, hidden);      // (1, N, H)
  view<float> loss("loss");                        // ()
  view<std::int64_t> count("count");               // ()
  view<float**> no_dx;                             // first layer: no input gradient
  make_xor_data(space, x, labels, mask);

  hax::optim::AdamW<test_space> adamw(hax::optim::AdamWConfig{}, space);
  hax::optim::WarmupCosine const schedule{5e-2, 10};
  Kokkos::View<std::int64_t, test_memory_space> nonfinite("nonfinite");
  double first_loss = 0.0;
  double last_loss = 0.0;
  for (int step = 0; step < steps; ++step) {
    // forward
    hax::nn::linear_forward(space, hax::nn::as_rows(x), w1, b1, hax::nn::as_rows(pre));
    hax::nn::silu_forward(space, pre, h);
    hax::nn::linear_forward(space, hax::nn::as_rows(h), w2, b2, hax::nn::as_rows(logits));
    hax::nn::cross_entropy_forward(space, logits, labels, mask, loss, count, dlogits);
    // backward (parameter gradients accumulate into the store's flat buffer)
    hax::nn::linear_backward(space, hax::nn::as_rows(dlogits), hax::nn::as_rows(h), w2,
                             hax::nn::as_rows(dh), dw2, db2);
    hax::nn::silu_backward(space, dh, pre, dpre);
    hax::nn::linear_backward(space, hax::nn::as_rows(dpre), hax::nn::as_rows(x), w1, no_dx, dw1,
                             db1);
    // update, then zero the gradients (the reference's order)
    adamw.update(space, schedule, store);
    store.zero_grad(space);
    if (step == 0 || step == steps - 1) {
      auto const host_loss = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, loss);
      (step == 0 ? first_loss : last_loss) = host_loss();
      hax::core::check_finite(space, store.values(), "mlp_training", "parameters", step);
    }
  }
  auto const t = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, adamw.step_count());
  CHECK(t() == steps);
  INFO("loss at step 1: " << first_loss << ", at step " << steps << ": " << last_loss);
  CHECK(std::abs(first_loss - std::log(2.0)) < 0.2);  // near chance at the start
  CHECK(last_loss < first_loss / 10.0);
}
