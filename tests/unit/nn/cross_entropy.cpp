// SPDX-License-Identifier: MIT
#include <hax/core/error.hpp>
#include <hax/nn/cross_entropy.hpp>
#include <hax/reference/nn/cross_entropy.hpp>

#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "support/compare.hpp"
#include "support/gradcheck.hpp"
#include "support/test_space.hpp"

namespace {

using hax::test::test_memory_space;
using hax::test::test_space;

template <class T>
using view0 = Kokkos::View<T, test_memory_space>;
template <class T>
using view1 = Kokkos::View<T*, Kokkos::LayoutRight, test_memory_space>;
template <class T>
using view2 = Kokkos::View<T**, Kokkos::LayoutRight, test_memory_space>;
template <class T>
using view3 = Kokkos::View<T***, Kokkos::LayoutRight, test_memory_space>;

template <class I>
view2<I> device_ints(std::vector<I> const& host, std::size_t B, std::size_t L) {
  view2<I> v("ints", B, L);  // (B, L)
  auto mirror = Kokkos::create_mirror_view(v);
  for (std::size_t i = 0; i < host.size(); ++i) {
    mirror.data()[i] = host[i];
  }
  Kokkos::deep_copy(v, mirror);
  return v;
}

/// Labels in [0, V) and a mask with about 40% ones; item `empty_item` (if < B) has no ones.
struct Targets {
  std::vector<std::int32_t> labels;  // (B, L)
  std::vector<std::int8_t> mask;     // (B, L)
};
Targets random_targets(std::size_t B, std::size_t L, std::size_t V, std::size_t empty_item,
                       std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> label(0, static_cast<int>(V) - 1);
  std::bernoulli_distribution scored(0.4);
  Targets out{std::vector<std::int32_t>(B * L), std::vector<std::int8_t>(B * L)};
  for (std::size_t i = 0; i < B * L; ++i) {
    out.labels[i] = label(rng);
    out.mask[i] = (i / L != empty_item && scored(rng)) ? 1 : 0;
  }
  return out;
}

template <class V>
double scalar_of(V const& v) {
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, v);
  return static_cast<double>(host());
}

}  // namespace

TEMPLATE_TEST_CASE("masked cross-entropy and accuracy match the reference", "[nn][cross_entropy]",
                   float, double) {
  using T = TestType;
  // V = 11: fewer entries than a GPU row's 32 lanes; V = 100 (joint recall): three and a bit
  // entries per lane. B·L = 92 rows: the last team of 8 rows is ragged.
  std::size_t const V = GENERATE(std::size_t{11}, std::size_t{100});
  CAPTURE(V);
  std::size_t const B = 4, L = 23;
  test_space space;
  auto const targets = random_targets(B, L, V, /*empty_item=*/2, 1);
  auto const labels = device_ints(targets.labels, B, L);
  auto const mask = device_ints(targets.mask, B, L);
  view3<T> logits("logits", B, L, V);     // (B, L, V)
  view3<T> dlogits("dlogits", B, L, V);   // (B, L, V)
  view3<T> dlogits2("dlogits2", B, L, V); // (B, L, V)
  view0<T> loss("loss"), loss_eval("loss_eval"), acc_mean("acc_mean");
  view0<int> count("count");
  view1<T> acc_item("acc_item", B);  // (B)
  auto const hlogits = hax::test::fill_random(logits, 2, -4.0, 4.0);
  hax::test::fill_random(dlogits, 3);   // garbage: must be overwritten, also on unmasked rows
  hax::test::fill_random(dlogits2, 4);

  hax::nn::cross_entropy_forward(space, logits, labels, mask, loss, count, dlogits);
  hax::nn::cross_entropy_forward(space, logits, labels, mask, loss_eval, count, view3<T>());
  hax::nn::cross_entropy_backward(space, logits, labels, mask, count, dlogits2, T(0.5));
  hax::nn::masked_accuracy(space, logits, labels, mask, acc_item, acc_mean);
  space.fence();

  std::vector<double> ref_dlogits;
  double const ref_loss =
      hax::reference::nn::cross_entropy(hlogits, targets.labels, targets.mask, V, ref_dlogits);
  double ref_mean = 0;
  auto const ref_acc = hax::reference::nn::masked_accuracy(hlogits, targets.labels, targets.mask,
                                                           B, L, V, ref_mean);
  std::size_t ref_count = 0;
  for (auto m : targets.mask) {
    ref_count += m != 0 ? 1 : 0;
  }
  REQUIRE(ref_count > 0);
  std::vector<double> half_ref_dlogits(ref_dlogits.size());
  for (std::size_t i = 0; i < ref_dlogits.size(); ++i) {
    half_ref_dlogits[i] = 0.5 * ref_dlogits[i];
  }

  using tol = hax::test::tolerance<T>;
  CHECK(scalar_of(count) == static_cast<double>(ref_count));
  // Explicit std::vector: nvcc's front end turns `{f(x)}` for a const& parameter into plain f(x).
  hax::test::check_close(std::vector<double>{scalar_of(loss)}, std::vector<double>{ref_loss},
                         tol::rtol, tol::atol, "loss (fused)");
  hax::test::check_close(std::vector<double>{scalar_of(loss_eval)}, std::vector<double>{ref_loss},
                         tol::rtol, tol::atol, "loss (eval)");
  hax::test::check_close(hax::test::to_vector(dlogits), ref_dlogits, tol::rtol, tol::atol,
                         "dlogits (fused)");
  hax::test::check_close(hax::test::to_vector(dlogits2), half_ref_dlogits, tol::rtol, tol::atol,
                         "dlogits (backward, dloss 0.5)");
  hax::test::check_close(hax::test::to_vector(acc_item), ref_acc, 0.0, 1e-6, "acc_item");
  hax::test::check_close(std::vector<double>{scalar_of(acc_mean)}, std::vector<double>{ref_mean},
                         tol::rtol, tol::atol, "acc_mean");
  CHECK(ref_acc[2] == 0.0);  // the item without masked positions
}

TEST_CASE("cross-entropy is stable for large logits (the row max is subtracted)",
          "[nn][cross_entropy]") {
  std::size_t const B = 2, L = 5, V = 7;
  test_space space;
  auto const targets = random_targets(B, L, V, B, 11);
  auto const labels = device_ints(targets.labels, B, L);
  auto const mask = device_ints(targets.mask, B, L);
  view3<float> logits("logits", B, L, V), dlogits("dlogits", B, L, V);
  view0<float> loss("loss");
  view0<int> count("count");
  auto const base = hax::test::random_vector(B * L * V, 12, -2.0, 2.0);
  std::vector<double> shifted(base.size());
  for (std::size_t i = 0; i < base.size(); ++i) {
    shifted[i] = base[i] + 1000.0;  // exp(1000) overflows float; softmax is shift-invariant
  }
  hax::test::from_vector(logits, shifted);
  hax::nn::cross_entropy_forward(space, logits, labels, mask, loss, count, dlogits);
  space.fence();
  std::vector<double> ref_dlogits;
  double const ref_loss =
      hax::reference::nn::cross_entropy(base, targets.labels, targets.mask, V, ref_dlogits);
  // 1000 + x in float keeps ~6e-5 absolute precision of x: the looser bound is the input's.
  hax::test::check_close(std::vector<double>{scalar_of(loss)}, std::vector<double>{ref_loss},
                         1e-3, 1e-4, "loss");
  hax::test::check_close(hax::test::to_vector(dlogits), ref_dlogits, 1e-3, 1e-4, "dlogits");
}

TEST_CASE("a batch without masked positions has loss 0, dlogits 0 and accuracy 0",
          "[nn][cross_entropy]") {
  std::size_t const B = 2, L = 4, V = 5;
  test_space space;
  auto const labels = device_ints(std::vector<std::int32_t>(B * L, 1), B, L);
  auto const mask = device_ints(std::vector<std::int8_t>(B * L, 0), B, L);
  view3<float> logits("logits", B, L, V), dlogits("dlogits", B, L, V), dl2("dl2", B, L, V);
  view0<float> loss("loss"), acc_mean("acc_mean");
  view0<int> count("count");
  view1<float> acc_item("acc_item", B);
  hax::test::fill_random(logits, 21);
  hax::test::fill_random(dlogits, 22);
  hax::test::fill_random(dl2, 23);
  hax::test::fill_random(acc_item, 24);
  hax::nn::cross_entropy_forward(space, logits, labels, mask, loss, count, dlogits);
  hax::nn::cross_entropy_backward(space, logits, labels, mask, count, dl2);
  hax::nn::masked_accuracy(space, logits, labels, mask, acc_item, acc_mean);
  space.fence();
  CHECK(scalar_of(count) == 0.0);
  CHECK(scalar_of(loss) == 0.0);
  CHECK(scalar_of(acc_mean) == 0.0);
  auto const zeros = std::vector<double>(B * L * V, 0.0);
  hax::test::check_close(hax::test::to_vector(dlogits), zeros, 0.0, 0.0, "dlogits (fused)");
  hax::test::check_close(hax::test::to_vector(dl2), zeros, 0.0, 0.0, "dlogits (backward)");
  hax::test::check_close(hax::test::to_vector(acc_item), {0.0, 0.0}, 0.0, 0.0, "acc_item");
}

TEST_CASE("cross-entropy gradient matches central finite differences", "[nn][cross_entropy]") {
  std::size_t const B = 2, L = 6, V = 5;
  test_space space;
  auto const targets = random_targets(B, L, V, B, 31);
  auto const labels = device_ints(targets.labels, B, L);
  auto const mask = device_ints(targets.mask, B, L);
  view3<double> logits("logits", B, L, V), dlogits("dlogits", B, L, V);
  view0<double> loss("loss");
  view0<int> count("count");
  auto const hlogits = hax::test::fill_random(logits, 32, -3.0, 3.0);
  hax::nn::cross_entropy_forward(space, logits, labels, mask, loss, count, dlogits);
  space.fence();
  auto const analytic = hax::test::to_vector(dlogits);
  hax::test::check_gradient(
      hlogits, analytic,
      [&](std::vector<double> const& v) {
        hax::test::from_vector(logits, v);
        hax::nn::cross_entropy_forward(space, logits, labels, mask, loss, count, view3<double>());
        space.fence();
        return scalar_of(loss);
      },
      "dlogits");
}

TEST_CASE("accuracy: argmax ties go to the lowest index; unmasked positions do not count",
          "[nn][cross_entropy]") {
  std::size_t const B = 2, L = 3, V = 4;
  test_space space;
  // Item 0: position 0 ties at v = 1 and v = 3 with label 1 (lowest index: correct); position 1
  // ties at v = 0 and v = 2 with label 2 (not the lowest: wrong); position 2 unmasked and wrong.
  // Item 1: position 0 correct (unique max at 3); positions 1, 2 unmasked.
  std::vector<double> const hlogits = {
      0, 5, 1, 5, /**/ 7, 2, 7, 0, /**/ 9, 0, 0, 0,   // item 0
      1, 2, 3, 4, /**/ 0, 0, 0, 0, /**/ 0, 0, 0, 0};  // item 1
  std::vector<std::int32_t> const hlabels = {1, 2, 3, 3, 0, 0};
  std::vector<std::int8_t> const hmask = {1, 1, 0, 1, 0, 0};
  view3<float> logits("logits", B, L, V);
  hax::test::from_vector(logits, hlogits);
  auto const labels = device_ints(hlabels, B, L);
  auto const mask = device_ints(hmask, B, L);
  view1<float> acc_item("acc_item", B);
  view0<float> acc_mean("acc_mean");
  hax::nn::masked_accuracy(space, logits, labels, mask, acc_item, acc_mean);
  space.fence();
  double ref_mean = 0;
  auto const ref = hax::reference::nn::masked_accuracy(hlogits, hlabels, hmask, B, L, V, ref_mean);
  // Worked by hand from the comment above: item 0 scores 1 of 2, item 1 scores 1 of 1.
  CHECK(ref == std::vector<double>{0.5, 1.0});
  CHECK(ref_mean == 0.75);
  hax::test::check_close(hax::test::to_vector(acc_item), {0.5, 1.0}, 0.0, 0.0, "acc_item");
  CHECK(scalar_of(acc_mean) == 0.75);
}

TEST_CASE("cross-entropy and accuracy reject mismatched shapes naming the op and both shapes",
          "[nn][cross_entropy]") {
  test_space space;
  using Catch::Matchers::ContainsSubstring;
  view3<float> logits("logits", 2, 3, 5);
  view2<std::int32_t> labels("labels", 2, 3), bad_labels("bad_labels", 3, 2);
  view2<std::int8_t> mask("mask", 2, 3), bad_mask("bad_mask", 2, 4);
  view0<float> loss("loss");
  view0<int> count("count");
  view3<float> bad_dlogits("bad_dlogits", 2, 3, 4);
  CHECK_THROWS_AS(
      hax::nn::cross_entropy_forward(space, logits, bad_labels, mask, loss, count, view3<float>()),
      hax::invalid_argument);
  CHECK_THROWS_WITH(
      hax::nn::cross_entropy_forward(space, logits, bad_labels, mask, loss, count, view3<float>()),
      ContainsSubstring("hax::nn::cross_entropy_forward") &&
          ContainsSubstring("labels (3, 2)") && ContainsSubstring("logits (2, 3, 5)"));
  CHECK_THROWS_WITH(
      hax::nn::cross_entropy_forward(space, logits, labels, bad_mask, loss, count, view3<float>()),
      ContainsSubstring("mask (2, 4)") && ContainsSubstring("logits (2, 3, 5)"));
  CHECK_THROWS_WITH(
      hax::nn::cross_entropy_forward(space, logits, labels, mask, loss, count, bad_dlogits),
      ContainsSubstring("dlogits (2, 3, 4)") && ContainsSubstring("logits (2, 3, 5)"));
  CHECK_THROWS_WITH(
      hax::nn::cross_entropy_backward(space, logits, labels, mask, count, bad_dlogits),
      ContainsSubstring("hax::nn::cross_entropy_backward") &&
          ContainsSubstring("dlogits (2, 3, 4)"));
  view1<float> bad_acc("bad_acc", 3);
  view0<float> acc_mean("acc_mean");
  CHECK_THROWS_WITH(hax::nn::masked_accuracy(space, logits, labels, mask, bad_acc, acc_mean),
                    ContainsSubstring("hax::nn::masked_accuracy") &&
                        ContainsSubstring("acc_item (3)") &&
                        ContainsSubstring("logits (2, 3, 5)"));
}
