// SPDX-License-Identifier: MIT
#include <hax/core/error.hpp>
#include <hax/nn/parameters.hpp>
#include <hax/reference/ssm/mamba_mixer.hpp>
#include <hax/ssm/mamba_mixer.hpp>

#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "support/compare.hpp"
#include "support/mixer_checks.hpp"
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

std::string const kPrefix = "layers.0.mixer.";

/// The small test config: d_model 6, d_inner 8, N 4, dt_rank 2, conv 4, chunk 3 (not dividing L).
hax::ssm::MambaConfig small_config(int chunk = 3) {
  hax::ssm::MambaConfig c;
  c.d_model = 6;
  c.d_inner = 8;
  c.state_size = 4;
  c.dt_rank = 2;
  c.chunk = chunk;
  c.init_range = 0.3;  // larger than 0.1 so every path carries signal at these tiny widths
  return c;
}

template <class T>
hax::nn::ParameterStore<test_space, T> make_store(hax::ssm::MambaMixer<test_space, T> const& mixer,
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
hax::reference::ssm::MambaMixerWeights<double> weights_of(
    hax::nn::ParameterStore<test_space, T> const& store) {
  auto get = [&](std::string const& n) {
    auto const& e = store.entry(kPrefix + n);
    auto const all = hax::test::to_vector(store.values());
    return std::vector<double>(all.begin() + e.offset, all.begin() + e.offset + e.size());
  };
  return {get("in_proj.weight"), get("conv1d.weight"), get("conv1d.bias"),
          get("x_proj.weight"), get("dt_proj.weight"), get("dt_proj.bias"),
          get("A_log"),          get("D"),             get("out_proj.weight")};
}

}  // namespace

TEMPLATE_TEST_CASE("MambaMixer forward matches the serial reference", "[ssm][mamba_mixer]", float,
                   double) {
  using T = TestType;
  std::size_t const L = GENERATE(7, 13);
  int const chunk = GENERATE(1, 4, 64);
  std::size_t const B = 2;
  auto const cfg = small_config(chunk);
  hax::ssm::MambaMixer<test_space, T> const mixer(cfg);
  auto store = make_store(mixer, 11);
  test_space space;
  act<T> x("x", B, L, 6), y("y", B, L, 6);
  mask_view mask("mask", B, L);
  auto const hmask = right_pad_mask(B, L, {L, L - 3});
  hax::test::from_vector(mask, hmask);
  auto const hx = hax::test::fill_random(x, 5);
  loss_view<T> gate_loss("gate_loss");
  mixer.forward(space, store, kPrefix, x, mask, y, gate_loss, hax::attn::StepContext{});
  space.fence();
  hax::reference::ssm::MambaMixerShape const s{B, L, 6, 8, 4, 2, 4};
  auto const expected = hax::reference::ssm::mamba_mixer_forward(s, weights_of(store), hx, hmask);
  REQUIRE(hax::test::max_abs(expected) > 1e-3);
  hax::test::check_close(hax::test::to_vector(y), expected, 10 * hax::test::tolerance<T>::rtol,
                         10 * hax::test::tolerance<T>::atol, "y");
}

TEST_CASE("MambaMixer gradients of every parameter and the input match finite differences",
          "[ssm][mamba_mixer]") {
  using T = double;
  std::size_t const B = 2, L = 9;
  auto config = small_config(4);
  config.skip_padding = GENERATE(false, true);  // with it the scan stops at the last real token
  CAPTURE(config.skip_padding);
  hax::ssm::MambaMixer<test_space, T> const mixer(config);
  auto store = make_store(mixer, 3);
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
  hax::test::check_gradient(
      hx, hax::test::to_vector(dx), [&](std::vector<double> const& v) { return loss(v, params); },
      "dx", 1e-5, 1e-7);
}

TEST_CASE("MambaMixer: right padding never changes the outputs at real positions",
          "[ssm][mamba_mixer]") {
  using T = double;
  std::size_t const L = 11, real = 7;
  hax::ssm::MambaMixer<test_space, T> const mixer(small_config(3));
  auto store = make_store(mixer, 21);
  test_space space;
  hax::attn::StepContext const ctx;
  loss_view<T> gate_loss("gate_loss");
  // padded: 7 real tokens then 4 pads holding garbage
  act<T> xp("xp", 1, L, 6), yp("yp", 1, L, 6);
  mask_view mask("mask", 1, L);
  hax::test::from_vector(mask, right_pad_mask(1, L, {real}));
  auto const hxp = hax::test::fill_random(xp, 31, -3.0, 3.0);
  mixer.forward(space, store, kPrefix, xp, mask, yp, gate_loss, ctx);
  // unpadded: the same 7 tokens alone, no mask
  act<T> xs("xs", 1, real, 6), ys("ys", 1, real, 6);
  hax::test::from_vector(xs, std::vector<double>(hxp.begin(), hxp.begin() + real * 6));
  mixer.forward(space, store, kPrefix, xs, mask_view(), ys, gate_loss, ctx);
  space.fence();
  auto const yv = hax::test::to_vector(yp);
  hax::test::check_close(std::vector<double>(yv.begin(), yv.begin() + real * 6),
                         hax::test::to_vector(ys), 1e-12, 1e-13, "y at real positions");
}

TEMPLATE_TEST_CASE("MambaMixer step mode equals the parallel forward", "[ssm][mamba_mixer]", float,
                   double) {
  using T = TestType;
  std::size_t const B = 2, L = 10;
  hax::ssm::MambaMixer<test_space, T> const mixer(small_config(4));
  auto store = make_store(mixer, 17);
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

TEST_CASE("MambaMixer initial values follow the reference's rules", "[ssm][mamba_mixer]") {
  hax::ssm::MambaConfig const cfg;  // mamba.json: d_model 64, d_inner 128, N 16, dt_rank 8
  hax::ssm::MambaMixer<test_space, double> const mixer(cfg);
  auto store = make_store(mixer, 1);
  auto get = [&](std::string const& n) {
    auto const& e = store.entry(kPrefix + n);
    auto const all = hax::test::to_vector(store.values());
    return std::vector<double>(all.begin() + e.offset, all.begin() + e.offset + e.size());
  };
  auto stats = [](std::vector<double> const& v) {
    double m = 0, s = 0;
    for (double a : v) m += a;
    m /= double(v.size());
    for (double a : v) s += (a - m) * (a - m);
    return std::pair{m, std::sqrt(s / double(v.size()))};
  };
  auto const [m_in, s_in] = stats(get("in_proj.weight"));  // N(0, 0.1), 16 384 draws
  CHECK(std::abs(m_in) < 0.005);
  CHECK(std::abs(s_in - 0.1) < 0.003);
  auto const [m_out, s_out] = stats(get("out_proj.weight"));
  CHECK(std::abs(s_out - 0.1) < 0.004);
  auto const [m_x, s_x] = stats(get("x_proj.weight"));
  CHECK(std::abs(s_x - 0.1) < 0.005);
  double const dt_bound = 1.0 / std::sqrt(8.0);
  auto const dtw = get("dt_proj.weight");  // U(±8^-1/2): std bound/√3
  CHECK(*std::max_element(dtw.begin(), dtw.end()) <= dt_bound);
  CHECK(*std::min_element(dtw.begin(), dtw.end()) >= -dt_bound);
  CHECK(std::abs(stats(dtw).second - dt_bound / std::sqrt(3.0)) < 0.02);
  for (double b : get("dt_proj.bias")) {  // softplus(bias) = dt in [1e-3, 0.1]
    double const dt = std::log1p(std::exp(b));
    CHECK(dt >= 1e-3 * (1 - 1e-9));
    CHECK(dt <= 0.1 * (1 + 1e-9));
  }
  auto const convw = get("conv1d.weight"), convb = get("conv1d.bias");  // kaiming: bound 1/√4
  for (auto const* v : {&convw, &convb}) {
    CHECK(*std::max_element(v->begin(), v->end()) <= 0.5);
    CHECK(*std::min_element(v->begin(), v->end()) >= -0.5);
  }
  CHECK(std::abs(stats(convw).second - 0.5 / std::sqrt(3.0)) < 0.02);
  auto const a_log = get("A_log");  // log(1..N) in every row, exactly
  REQUIRE(a_log.size() == 128 * 16);
  for (std::size_t i = 0; i < a_log.size(); ++i) {
    CHECK(a_log[i] == std::log(double(i % 16 + 1)));
  }
  for (double d : get("D")) {
    CHECK(d == 1.0);
  }
}

TEST_CASE("MambaMixer parameter counts of the paper's configs", "[ssm][mamba_mixer]") {
  // semantics.md section 2: whole-model totals with vocab 100, 2 layers, pre-norm blocks and
  // norm_f; the per-layer mixer count is (total − embedding − norms) / 2.
  auto mixer_count = [](hax::ssm::MambaConfig const& c) {
    hax::ssm::MambaMixer<test_space, float> const m(c);
    hax::nn::ParameterStore<test_space, float> store;
    m.register_parameters(store, "m.");
    return store.count();
  };
  hax::ssm::MambaConfig base;  // d_model 64
  CHECK(mixer_count(base) == (73920 - 100 * 64 - 3 * 64) / 2);
  hax::ssm::MambaConfig dbl;
  dbl.d_model = 128;
  dbl.d_inner = 256;
  CHECK(mixer_count(dbl) == (246144 - 100 * 128 - 3 * 128) / 2);
}

TEST_CASE("MambaMixer rejects bad configs and shapes", "[ssm][mamba_mixer]") {
  using Catch::Matchers::ContainsSubstring;
  using M = hax::ssm::MambaMixer<test_space, float>;
  auto with = [](auto f) {
    auto c = small_config();
    f(c);
    return c;
  };
  CHECK_THROWS_WITH(M(with([](auto& c) { c.d_model = 0; })), ContainsSubstring("d_model"));
  CHECK_THROWS_WITH(M(with([](auto& c) { c.d_inner = -1; })), ContainsSubstring("d_inner"));
  CHECK_THROWS_WITH(M(with([](auto& c) { c.state_size = 0; })), ContainsSubstring("state_size"));
  CHECK_THROWS_WITH(M(with([](auto& c) { c.dt_rank = 0; })), ContainsSubstring("dt_rank"));
  CHECK_THROWS_WITH(M(with([](auto& c) { c.conv_kernel = 9; })), ContainsSubstring("conv_kernel"));
  CHECK_THROWS_WITH(M(with([](auto& c) { c.chunk = 0; })), ContainsSubstring("chunk"));
  CHECK_THROWS_AS(M(with([](auto& c) { c.init_range = 0; })), hax::invalid_argument);

  M const mixer(small_config());
  auto store = make_store(mixer, 1);
  test_space space;
  act<float> x("x", 2, 5, 7), y("y", 2, 5, 6);  // x has 7 features, not d_model 6
  loss_view<float> gate_loss("gate_loss");
  CHECK_THROWS_WITH(
      mixer.forward(space, store, kPrefix, x, mask_view(), y, gate_loss, hax::attn::StepContext{}),
      ContainsSubstring("d_model"));
  act<float> x6("x6", 2, 5, 6);
  mask_view bad_mask("mask", 2, 4);
  CHECK_THROWS_WITH(
      mixer.forward(space, store, kPrefix, x6, bad_mask, y, gate_loss, hax::attn::StepContext{}),
      ContainsSubstring("pad_mask"));
}

TEST_CASE("MambaMixer: skip_padding changes no output and no gradient", "[ssm][mamba_mixer]") {
  // The mixer zeroes the scan input x at pads and B, C and delta are projections of x without
  // bias, so the full scan's output there is 0 and skipping it is exact; the HAX branch reads x,
  // never the scan's output (support/mixer_checks.hpp).
  auto const branch = GENERATE(std::string(), std::string("sign_bin_lsh+key_selection"));
  auto const semantics = GENERATE(hax::attn::Semantics::causal, hax::attn::Semantics::reference);
  CAPTURE(branch, semantics == hax::attn::Semantics::causal);
  using Mixer = hax::ssm::MambaMixer<test_space, double>;
  hax::test::check_skip_padding_is_exact<Mixer>(small_config(4), kPrefix, branch, semantics);
}
