// SPDX-License-Identifier: MIT
#include <hax/core/error.hpp>
#include <hax/nn/parameters.hpp>
#include <hax/reference/ssm/mamba2_mixer.hpp>
#include <hax/ssm/mamba2_mixer.hpp>

#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/matchers/catch_matchers_floating_point.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "support/compare.hpp"
#include "support/mixer_checks.hpp"
#include "support/perturb.hpp"
#include "support/gradcheck.hpp"
#include "support/test_space.hpp"

namespace {

using hax::test::test_memory_space;
using hax::test::right_pad_mask;
using hax::test::test_space;

template <class T>
using act = Kokkos::View<T***, Kokkos::LayoutRight, test_memory_space>;  // (B, L, D)
using mask_view = Kokkos::View<std::int8_t**, Kokkos::LayoutRight, test_memory_space>;  // (B, L)
template <class T>
using loss_view = Kokkos::View<T, test_memory_space>;  // 0-d

std::string const kPrefix = "layers.1.mixer";  // no trailing dot: the mixer inserts one

/// The small test config: d_model 6, 2 heads × 4 (d_inner 8), N 4, conv 4, chunk 3.
hax::ssm::Mamba2Config small_config(int chunk = 3) {
  hax::ssm::Mamba2Config c;
  c.d_model = 6;
  c.d_inner = 8;
  c.num_heads = 2;
  c.head_dim = 4;
  c.state_size = 4;
  c.chunk_size = chunk;
  c.init_range = 0.3;  // larger than 0.1 so every path carries signal at these tiny widths
  return c;
}

template <class T>
hax::nn::ParameterStore<test_space, T> make_store(hax::ssm::Mamba2Mixer<test_space, T> const& mixer,
                                                  std::uint64_t seed) {
  hax::nn::ParameterStore<test_space, T> store;
  mixer.register_parameters(store, kPrefix);
  test_space space;
  store.finalize(space);
  store.initialize(space, seed);
  space.fence();
  return store;
}

template <class T>
std::vector<double> param(hax::nn::ParameterStore<test_space, T> const& store, std::string const& n) {
  auto const& e = store.entry(kPrefix + "." + n);
  auto const all = hax::test::to_vector(store.values());
  return std::vector<double>(all.begin() + e.offset, all.begin() + e.offset + e.size());
}

template <class T>
hax::reference::ssm::Mamba2MixerWeights<double> weights_of(
    hax::nn::ParameterStore<test_space, T> const& store) {
  return {param(store, "in_proj.weight"), param(store, "conv1d.weight"),
          param(store, "conv1d.bias"),    param(store, "dt_bias"),
          param(store, "A_log"),          param(store, "D"),
          param(store, "norm.weight"),    param(store, "out_proj.weight")};
}

}  // namespace

TEMPLATE_TEST_CASE("Mamba2Mixer forward matches the serial reference", "[ssm][mamba2_mixer]", float,
                   double) {
  using T = TestType;
  std::size_t const L = GENERATE(7, 13);
  int const chunk = GENERATE(1, 4, 256);
  std::size_t const B = 2;
  hax::ssm::Mamba2Mixer<test_space, T> const mixer(small_config(chunk));
  auto store = make_store(mixer, 11);
  hax::test::perturb_all(store);
  test_space space;
  act<T> x("x", B, L, 6), y("y", B, L, 6);
  mask_view mask("mask", B, L);
  auto const hmask = right_pad_mask(B, L, {L, L - 3});
  hax::test::from_vector(mask, hmask);
  auto const hx = hax::test::fill_random(x, 5);
  loss_view<T> gate_loss("gate_loss");
  mixer.forward(space, store, kPrefix, x, mask, y, gate_loss, hax::attn::StepContext{});
  space.fence();
  hax::reference::ssm::Mamba2MixerShape const s{B, L, 6, 2, 4, 4, 4, 1e-5};
  auto const expected = hax::reference::ssm::mamba2_mixer_forward(s, weights_of(store), hx, hmask);
  REQUIRE(hax::test::max_abs(expected) > 1e-3);
  hax::test::check_close(hax::test::to_vector(y), expected, 10 * hax::test::tolerance<T>::rtol,
                         10 * hax::test::tolerance<T>::atol, "y");
}

TEST_CASE("Mamba2Mixer gradients of every parameter and the input match finite differences",
          "[ssm][mamba2_mixer]") {
  using T = double;
  std::size_t const B = 2, L = 9;
  auto config = small_config(4);
  config.skip_padding = GENERATE(false, true);  // with it the SSD's output at pads is 0
  CAPTURE(config.skip_padding);
  hax::ssm::Mamba2Mixer<test_space, T> const mixer(config);
  auto store = make_store(mixer, 3);
  hax::test::perturb_all(store);
  test_space space;
  act<T> x("x", B, L, 6), y("y", B, L, 6), dy("dy", B, L, 6), dx("dx", B, L, 6);
  mask_view mask("mask", B, L);
  hax::test::from_vector(mask, right_pad_mask(B, L, {L, 6}));
  auto const hx = hax::test::fill_random(x, 7);
  auto const hdy = hax::test::fill_random(dy, 8);
  loss_view<T> gate_loss("gate_loss");
  hax::attn::StepContext const ctx;
  hax::test::fill_random(store.grads(), 9);  // parameter grads must accumulate onto this
  auto const g0 = hax::test::to_vector(store.grads());
  auto const saved = mixer.forward(space, store, kPrefix, x, mask, y, gate_loss, ctx);
  mixer.backward(space, store, kPrefix, saved, dy, dx, ctx);
  space.fence();
  auto g = hax::test::to_vector(store.grads());
  for (std::size_t i = 0; i < g.size(); ++i) {
    g[i] -= g0[i];
  }
  auto loss = [&](std::vector<double> const& xs, std::vector<double> const& params) {
    hax::test::from_vector(x, xs);
    hax::test::from_vector(store.values(), params);
    mixer.forward(space, store, kPrefix, x, mask, y, gate_loss, ctx);
    space.fence();
    auto const yv = hax::test::to_vector(y);
    double l = 0;
    for (std::size_t i = 0; i < yv.size(); ++i) {
      l += hdy[i] * yv[i];
    }
    return l;
  };
  auto const params = hax::test::to_vector(store.values());
  hax::test::check_gradient(
      params, g, [&](std::vector<double> const& p) { return loss(hx, p); }, "d parameters", 1e-5,
      1e-7);
  auto const dxv = hax::test::to_vector(dx);
  hax::test::check_gradient(
      hx, dxv, [&](std::vector<double> const& v) { return loss(v, params); }, "dx", 1e-5, 1e-7);
  for (std::size_t t = 6; t < L; ++t) {  // pads of the second sequence: exactly zero
    for (std::size_t d = 0; d < 6; ++d) {
      CHECK(dxv[(L + t) * 6 + d] == 0.0);
    }
  }
}

TEST_CASE("Mamba2Mixer: right padding never changes the outputs at real positions",
          "[ssm][mamba2_mixer]") {
  using T = double;
  std::size_t const L = 11, real = 7;
  hax::ssm::Mamba2Mixer<test_space, T> const mixer(small_config(3));
  auto store = make_store(mixer, 21);
  hax::test::perturb_all(store);
  test_space space;
  hax::attn::StepContext const ctx;
  loss_view<T> gate_loss("gate_loss");
  act<T> xp("xp", 1, L, 6), yp("yp", 1, L, 6);
  mask_view mask("mask", 1, L);
  hax::test::from_vector(mask, right_pad_mask(1, L, {real}));
  auto const hxp = hax::test::fill_random(xp, 31, -3.0, 3.0);
  mixer.forward(space, store, kPrefix, xp, mask, yp, gate_loss, ctx);
  act<T> xs("xs", 1, real, 6), ys("ys", 1, real, 6);
  hax::test::from_vector(xs, std::vector<double>(hxp.begin(), hxp.begin() + real * 6));
  mixer.forward(space, store, kPrefix, xs, mask_view(), ys, gate_loss, ctx);
  space.fence();
  auto const yv = hax::test::to_vector(yp);
  hax::test::check_close(std::vector<double>(yv.begin(), yv.begin() + real * 6),
                         hax::test::to_vector(ys), 1e-12, 1e-13, "y at real positions");
}

TEST_CASE("Mamba2Mixer: skip_padding changes no output and no gradient", "[ssm][mamba2_mixer]") {
  // The mixer zeroes x, B and C at pads after the conv, so the full SSD's output there is 0 and
  // skipping it is exact; the HAX branch reads x, never the SSD's output
  // (support/mixer_checks.hpp).
  auto const branch = GENERATE(std::string(), std::string("sign_bin_lsh+key_selection"));
  auto const semantics = GENERATE(hax::attn::Semantics::causal, hax::attn::Semantics::reference);
  CAPTURE(branch, semantics == hax::attn::Semantics::causal);
  using Mixer = hax::ssm::Mamba2Mixer<test_space, double>;
  hax::test::check_skip_padding_is_exact<Mixer>(small_config(4), kPrefix, branch, semantics);
}

TEMPLATE_TEST_CASE("Mamba2Mixer step mode equals the parallel forward", "[ssm][mamba2_mixer]",
                   float, double) {
  using T = TestType;
  std::size_t const B = 2, L = 10;
  hax::ssm::Mamba2Mixer<test_space, T> const mixer(small_config(4));
  auto store = make_store(mixer, 17);
  hax::test::perturb_all(store);
  test_space space;
  act<T> x("x", B, L, 6), y("y", B, L, 6);
  auto const hx = hax::test::fill_random(x, 41);
  loss_view<T> gate_loss("gate_loss");
  mixer.forward(space, store, kPrefix, x, mask_view(), y, gate_loss, hax::attn::StepContext{});
  auto const state = mixer.make_step_state(space, B);
  using tok = Kokkos::View<T**, Kokkos::LayoutRight, test_memory_space>;  // (B, d_model)
  tok xt("xt", B, 6), yt("yt", B, 6);
  std::vector<double> stepped(B * L * 6);
  for (std::size_t t = 0; t < L; ++t) {
    std::vector<double> v(B * 6);
    for (std::size_t b = 0; b < B; ++b) {
      std::copy_n(hx.begin() + (b * L + t) * 6, 6, v.begin() + b * 6);
    }
    hax::test::from_vector(xt, v);
    mixer.step(space, store, kPrefix, state, xt, yt);
    auto const out = hax::test::to_vector(yt);
    for (std::size_t b = 0; b < B; ++b) {
      std::copy_n(out.begin() + b * 6, 6, stepped.begin() + (b * L + t) * 6);
    }
  }
  REQUIRE(hax::test::max_abs(stepped) > 1e-3);
  hax::test::check_close(stepped, hax::test::to_vector(y), 10 * hax::test::tolerance<T>::rtol,
                         10 * hax::test::tolerance<T>::atol, "stepped y");
}

TEST_CASE("Mamba2Mixer initial values follow the reference's rules", "[ssm][mamba2_mixer]") {
  hax::ssm::Mamba2Config const cfg;  // mamba2.json: d_model 64, 8 heads × 16, N 32, 2 layers
  hax::ssm::Mamba2Mixer<test_space, double> const mixer(cfg);
  auto store = make_store(mixer, 1);
  auto stats = [](std::vector<double> const& v) {
    double m = 0, s = 0;
    for (double a : v) m += a;
    m /= double(v.size());
    for (double a : v) s += (a - m) * (a - m);
    return std::pair{m, std::sqrt(s / double(v.size()))};
  };
  auto const [m_in, s_in] = stats(param(store, "in_proj.weight"));  // N(0, 0.1), 20 992 draws
  CHECK(std::abs(m_in) < 0.005);
  CHECK(std::abs(s_in - 0.1) < 0.003);
  auto const [m_c, s_c] = stats(param(store, "conv1d.weight"));  // N(0, 0.1), 768 draws
  CHECK(std::abs(s_c - 0.1) < 0.01);
  for (double b : param(store, "conv1d.bias")) {
    CHECK(b == 0.0);
  }
  double const bound = 1.0 / std::sqrt(128.0) / std::sqrt(2.0);  // kaiming(a=√5)/√num_layers
  auto const wo = param(store, "out_proj.weight");
  CHECK(*std::max_element(wo.begin(), wo.end()) <= bound);
  CHECK(*std::min_element(wo.begin(), wo.end()) >= -bound);
  CHECK(std::abs(stats(wo).second - bound / std::sqrt(3.0)) < 0.002);
  for (double b : param(store, "dt_bias")) {  // softplus(dt_bias) = dt in [1e-3, 0.1]
    double const dt = std::log1p(std::exp(b));
    CHECK(dt >= 1e-3 * (1 - 1e-9));
    CHECK(dt <= 0.1 * (1 + 1e-9));
  }
  auto const a_log = param(store, "A_log");  // log(1..H) exactly
  REQUIRE(a_log.size() == 8);
  for (std::size_t h = 0; h < 8; ++h) {
    CHECK(a_log[h] == std::log(double(h + 1)));
  }
  for (double d : param(store, "D")) CHECK(d == 1.0);
  for (double w : param(store, "norm.weight")) CHECK(w == 1.0);
}

TEST_CASE("Mamba2Mixer parameter counts of the paper's configs", "[ssm][mamba2_mixer]") {
  // semantics.md section 2: whole-model totals (vocab 100, 2 layers, 2 block norms + norm_f)
  auto mixer_count = [](hax::ssm::Mamba2Config const& c) {
    hax::ssm::Mamba2Mixer<test_space, float> const m(c);
    hax::nn::ParameterStore<test_space, float> store;
    m.register_parameters(store, "m.");
    return store.count();
  };
  hax::ssm::Mamba2Config base;
  CHECK(mixer_count(base) == (67184 - 100 * 64 - 3 * 64) / 2);
  hax::ssm::Mamba2Config dbl;
  dbl.d_model = 128;
  dbl.d_inner = 256;
  dbl.head_dim = 32;
  CHECK(mixer_count(dbl) == (231984 - 100 * 128 - 3 * 128) / 2);
}

TEST_CASE("Mamba2Mixer rejects bad configs and shapes", "[ssm][mamba2_mixer]") {
  using Catch::Matchers::ContainsSubstring;
  using M = hax::ssm::Mamba2Mixer<test_space, float>;
  auto with = [](auto f) {
    auto c = small_config();
    f(c);
    return c;
  };
  CHECK_THROWS_WITH(M(with([](auto& c) { c.d_model = 0; })), ContainsSubstring("d_model"));
  CHECK_THROWS_WITH(M(with([](auto& c) { c.head_dim = 3; })),
                    ContainsSubstring("num_heads · head_dim"));
  CHECK_THROWS_WITH(M(with([](auto& c) { c.num_heads = 0; })), ContainsSubstring("num_heads"));
  CHECK_THROWS_WITH(M(with([](auto& c) { c.state_size = 0; })), ContainsSubstring("state_size"));
  CHECK_THROWS_WITH(M(with([](auto& c) { c.conv_kernel = 0; })), ContainsSubstring("conv_kernel"));
  CHECK_THROWS_WITH(M(with([](auto& c) { c.chunk_size = 0; })), ContainsSubstring("chunk_size"));
  CHECK_THROWS_WITH(M(with([](auto& c) { c.num_layers = 0; })), ContainsSubstring("num_layers"));
  CHECK_THROWS_WITH(M(with([](auto& c) { c.norm_eps = 0; })), ContainsSubstring("norm_eps"));

  M const mixer(small_config());
  auto store = make_store(mixer, 1);
  test_space space;
  act<float> x("x", 2, 5, 6), y("y", 2, 4, 6);  // y has the wrong length
  loss_view<float> gate_loss("gate_loss");
  CHECK_THROWS_WITH(
      mixer.forward(space, store, kPrefix, x, mask_view(), y, gate_loss, hax::attn::StepContext{}),
      ContainsSubstring("must match x"));
}
