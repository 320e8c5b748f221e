// SPDX-License-Identifier: MIT
#include <hax/core/error.hpp>
#include <hax/core/finite.hpp>
#include <hax/nn/init.hpp>
#include <hax/nn/parameters.hpp>
#include <hax/optim/adamw.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <cmath>
#include <cstddef>
#include <limits>
#include <string>
#include <vector>

#include "support/compare.hpp"
#include "support/test_space.hpp"

namespace {

using hax::test::test_memory_space;
using hax::test::test_space;
namespace init = hax::nn::init;
using Store = hax::nn::ParameterStore<test_space, float>;

/// A small Mamba-like set of parameters.
Store make_store() {
  Store s;
  s.add("embedding", {10, 4}, init::Normal{0.0, 0.1});
  s.add("norm.weight", {4}, init::Ones{});
  s.add("conv.weight", {8, 1, 4}, init::KaimingUniform{});
  s.add("conv.bias", {8}, init::KaimingUniform{4});
  s.add("A_log", {8, 3}, init::ALog{});
  return s;
}

}  // namespace

TEST_CASE("parameter store lays parameters out contiguously in registration order",
          "[nn][parameters]") {
  test_space space;
  auto s = make_store();
  CHECK(s.size() == 5);
  CHECK(s.count() == 40 + 4 + 32 + 8 + 24);
  s.finalize(space);
  REQUIRE(s.finalized());
  CHECK(s.values().extent(0) == s.count());
  CHECK(s.grads().extent(0) == s.count());
  CHECK(s.adam_m().extent(0) == s.count());
  CHECK(s.adam_v().extent(0) == s.count());
  CHECK(s.decay_count() == s.count());  // decay on everything by default, as the reference

  std::vector<std::string> const names = {"embedding", "norm.weight", "conv.weight", "conv.bias",
                                          "A_log"};
  std::vector<std::size_t> const offsets = {0, 40, 44, 76, 84};
  for (std::size_t i = 0; i < names.size(); ++i) {
    CHECK(s.entries()[i].name == names[i]);
    CHECK(s.entries()[i].offset == offsets[i]);
    CHECK(s.index_of(names[i]) == i);
  }
  auto const emb = s.value<2>("embedding");
  CHECK(emb.data() == s.values().data());
  CHECK(emb.extent(0) == 10);
  CHECK(emb.extent(1) == 4);
  CHECK(s.value<3>("conv.weight").data() == s.values().data() + 44);
  CHECK(s.value<3>("conv.weight").extent(2) == 4);
  CHECK(s.grad<1>("conv.bias").data() == s.grads().data() + 76);
  CHECK(s.value<2>("A_log").stride(0) == 3);  // LayoutRight
  CHECK(s.entry("A_log").shape == std::vector<std::size_t>{8, 3});
  CHECK(s.contains("A_log"));
  CHECK_FALSE(s.contains("B_log"));
}

TEST_CASE("parameter store initialises each parameter from its policy", "[nn][parameters]") {
  test_space space;
  auto s = make_store();
  s.finalize(space);
  s.initialize(space, 99);
  // Each slice must equal init::fill of the same (seed, name, shape) into a standalone View.
  for (auto const& e : s.entries()) {
    Kokkos::View<float*, Kokkos::LayoutRight, test_memory_space> alone("alone", e.size());  // (n)
    init::fill(space, e.init, alone, 99, e.name, e.shape);
    space.fence();
    auto const all = hax::test::to_vector(s.values());
    std::vector<double> const slice(all.begin() + e.offset, all.begin() + e.offset + e.size());
    CAPTURE(e.name);
    CHECK(slice == hax::test::to_vector(alone));
  }
  auto const norm = hax::test::to_vector(s.value<1>("norm.weight"));
  CHECK(norm == std::vector<double>(4, 1.0));
  auto const a = hax::test::to_vector(s.value<2>("A_log"));
  CHECK(a[3 + 2] == static_cast<double>(std::log(3.0f)));
  // Gradients and moments start at zero.
  CHECK(hax::test::max_abs(hax::test::to_vector(s.grads())) == 0.0);
  CHECK(hax::test::max_abs(hax::test::to_vector(s.adam_m())) == 0.0);
  CHECK(hax::test::max_abs(hax::test::to_vector(s.adam_v())) == 0.0);
}

TEST_CASE("weight-decay exclusions move parameters after the decayed block", "[nn][parameters]") {
  test_space space;
  auto s = make_store();
  s.exclude_from_weight_decay("norm.weight");
  s.exclude_from_weight_decay("A_log");
  s.finalize(space);
  CHECK(s.decay_count() == 40 + 32 + 8);
  CHECK(s.entry("embedding").offset == 0);
  CHECK(s.entry("conv.weight").offset == 40);
  CHECK(s.entry("conv.bias").offset == 72);
  CHECK(s.entry("norm.weight").offset == 80);
  CHECK(s.entry("A_log").offset == 84);
  CHECK_FALSE(s.entry("A_log").weight_decay);
  CHECK(s.entries()[1].name == "norm.weight");  // iteration order stays registration order

  // AdamW with zero gradients: only the decay moves parameters, and only the decayed ones.
  s.initialize(space, 3);
  space.fence();
  auto const before = hax::test::to_vector(s.values());
  hax::optim::AdamWConfig cfg;
  cfg.weight_decay = 0.5;
  hax::optim::AdamW<test_space> adamw(cfg, space);
  adamw.update(space, hax::optim::ConstantLr{0.1}, s);
  space.fence();
  auto const after = hax::test::to_vector(s.values());
  for (std::size_t i = 0; i < before.size(); ++i) {
    double const expected = i < s.decay_count() ? static_cast<float>(before[i] * 0.95f) : before[i];
    CHECK(std::abs(after[i] - expected) <= 1e-7 * std::abs(expected));
  }
}

TEST_CASE("zero_grad and the gradient norm are single passes over the flat buffer",
          "[nn][parameters]") {
  test_space space;
  auto s = make_store();
  s.finalize(space);
  auto const g = hax::test::fill_random(s.grads(), 8);
  double sum = 0.0;
  for (double x : g) {
    sum += x * x;
  }
  Kokkos::View<hax::core::FiniteStats, test_memory_space> stats("stats");
  s.grad_stats(space, stats);
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, stats);
  CHECK(std::abs(h().sum_squares - sum) <= 1e-6 * sum);
  CHECK(h().nonfinite == 0);

  // A NaN in one parameter's gradient is seen through the flat buffer.
  auto cb = s.grad<1>("conv.bias");
  auto one = Kokkos::subview(cb, 3);
  Kokkos::deep_copy(one, std::numeric_limits<float>::quiet_NaN());
  s.grad_stats(space, stats);
  Kokkos::deep_copy(h, stats);
  CHECK(h().nonfinite == 1);

  s.zero_grad(space);
  space.fence();
  CHECK(hax::test::max_abs(hax::test::to_vector(s.grads())) == 0.0);
  s.grad_stats(space, stats);
  Kokkos::deep_copy(h, stats);
  CHECK(h().sum_squares == 0.0);
  CHECK(h().nonfinite == 0);
}

TEST_CASE("parameter store rejects bad names, shapes and use out of order", "[nn][parameters]") {
  using Catch::Matchers::ContainsSubstring;
  test_space space;
  Store s;
  s.add("w", {3, 4}, init::Zeros{});
  CHECK_THROWS_WITH(s.add("w", {5}, init::Zeros{}),
                    ContainsSubstring("hax::nn::ParameterStore::add") &&
                        ContainsSubstring("duplicate") && ContainsSubstring("(3, 4)") &&
                        ContainsSubstring("(5)"));
  CHECK_THROWS_WITH(s.add("x", {}, init::Zeros{}), ContainsSubstring("rank 1..3"));
  CHECK_THROWS_WITH(s.add("x", {1, 2, 3, 4}, init::Zeros{}),
                    ContainsSubstring("rank 4") && ContainsSubstring("(1, 2, 3, 4)"));
  CHECK_THROWS_WITH(s.add("x", {3, 0}, init::Zeros{}), ContainsSubstring("empty extent"));
  CHECK_THROWS_AS(s.add("", {3}, init::Zeros{}), hax::invalid_argument);
  CHECK_THROWS_WITH(s.index_of("nope"),
                    ContainsSubstring("unknown parameter \"nope\"") && ContainsSubstring("w"));
  CHECK_THROWS_AS(s.exclude_from_weight_decay("nope"), hax::invalid_argument);
  CHECK_THROWS_WITH(s.value<2>("w"), ContainsSubstring("finalize"));
  CHECK_THROWS_AS(s.zero_grad(space), hax::invalid_argument);
  s.finalize(space);
  CHECK_THROWS_WITH(s.value<1>("w"), ContainsSubstring("rank 2") && ContainsSubstring("rank 1"));
  CHECK_THROWS_AS(s.grad<2>("nope"), hax::invalid_argument);
  CHECK_THROWS_WITH(s.add("y", {2}, init::Zeros{}), ContainsSubstring("after finalize"));
  CHECK_THROWS_AS(s.finalize(space), hax::invalid_argument);
  Store empty;
  CHECK_THROWS_WITH(empty.finalize(space), ContainsSubstring("no parameters"));
}
