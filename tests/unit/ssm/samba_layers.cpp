// SPDX-License-Identifier: MIT
#include <hax/core/error.hpp>
#include <hax/nn/parameters.hpp>
#include <hax/reference/attention/sliding_window_mha.hpp>
#include <hax/reference/nn/swiglu_mlp.hpp>
#include <hax/ssm/samba_layers.hpp>

#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "support/compare.hpp"
#include "support/gradcheck.hpp"
#include "support/test_space.hpp"

namespace {

using hax::test::test_memory_space;
using hax::test::test_space;

template <class T>
using act = Kokkos::View<T***, Kokkos::LayoutRight, test_memory_space>;  // (B, L, D)
using mask_view = Kokkos::View<int**, Kokkos::LayoutRight, test_memory_space>;  // (B, L)
struct NoContext {};  // the mixers ignore the step context

template <class T>
std::vector<double> param(hax::nn::ParameterStore<test_space, T> const& store, std::string const& name) {
  return hax::test::to_vector(store.template value<2>(name));
}
template <class T>
std::vector<double> grad(hax::nn::ParameterStore<test_space, T> const& store, std::string const& name) {
  return hax::test::to_vector(store.template grad<2>(name));
}

}  // namespace

TEMPLATE_TEST_CASE("SambaAttention mixer reads its weights from the store and matches the reference",
                   "[ssm][samba]", float, double) {
  using T = TestType;
  hax::ssm::SambaAttentionConfig const cfg{12, 3, 4, 5, 1e4, 0.3};  // small; window 5 < L
  std::size_t const B = 2, L = 17, D = 12;
  hax::ssm::SambaAttention<test_space, T> const mixer(cfg);
  hax::nn::ParameterStore<test_space, T> store;
  mixer.register_parameters(store, "layers.1.mixer");  // no trailing dot: a '.' is inserted
  test_space space;
  store.finalize(space);
  store.initialize(space, 7);
  hax::test::fill_random(store.grads(), 3);  // nonzero: the mixer must accumulate
  auto const g0 = hax::test::to_vector(store.grads());

  act<T> x("x", B, L, D), y("y", B, L, D), dy("dy", B, L, D), dx("dx", B, L, D);
  mask_view mask("mask", B, L);
  std::vector<int> valid(B * L, 1);
  for (std::size_t t = 12; t < L; ++t) {
    valid[L + t] = 0;  // the second sequence has 12 real tokens
  }
  hax::test::from_vector(mask, std::vector<double>(valid.begin(), valid.end()));
  auto const hx = hax::test::fill_random(x, 1);
  auto const hdy = hax::test::fill_random(dy, 2);
  Kokkos::View<T, test_memory_space> gate_loss("gate_loss");
  Kokkos::deep_copy(gate_loss, T(1.5));
  auto const saved = mixer.forward(space, store, "layers.1.mixer.", x, mask, y, gate_loss, NoContext{});
  mixer.backward(space, store, "layers.1.mixer.", saved, dy, dx, NoContext{});
  space.fence();

  std::string const p = "layers.1.mixer.";
  auto const wq = param(store, p + "q_proj.weight"), wk = param(store, p + "k_proj.weight"),
             wv = param(store, p + "v_proj.weight"), wo = param(store, p + "o_proj.weight");
  hax::reference::attn::SlidingWindowMhaShape const s{B, L, 3, 4, 5, 1e4};
  hax::reference::attn::SlidingWindowMhaGrads<double> g;
  auto slice = [&](std::string const& name) {  // the initial gradient of one parameter
    auto const& e = store.entry(name);
    return std::vector<double>(g0.begin() + e.offset, g0.begin() + e.offset + e.size());
  };
  g.dw_q = slice(p + "q_proj.weight");
  g.dw_k = slice(p + "k_proj.weight");
  g.dw_v = slice(p + "v_proj.weight");
  g.dw_o = slice(p + "o_proj.weight");
  auto const ref_y = hax::reference::attn::sliding_window_mha_forward(hx, wq, wk, wv, wo, valid, s);
  auto const ref_dx = hax::reference::attn::sliding_window_mha_backward(hdy, hx, wq, wk, wv, wo, valid, s, g);
  using tol = hax::test::tolerance<T>;
  hax::test::check_close(hax::test::to_vector(y), ref_y, tol::rtol, tol::atol, "y");
  hax::test::check_close(hax::test::to_vector(dx), ref_dx, tol::rtol, tol::atol, "dx");
  hax::test::check_close(grad(store, p + "q_proj.weight"), g.dw_q, tol::rtol, tol::atol, "dw_q");
  hax::test::check_close(grad(store, p + "k_proj.weight"), g.dw_k, tol::rtol, tol::atol, "dw_k");
  hax::test::check_close(grad(store, p + "v_proj.weight"), g.dw_v, tol::rtol, tol::atol, "dw_v");
  hax::test::check_close(grad(store, p + "o_proj.weight"), g.dw_o, tol::rtol, tol::atol, "dw_o");
  CHECK(hax::test::to_vector(gate_loss)[0] == 1.5);  // untouched
}

TEMPLATE_TEST_CASE("SwiGluMlp reads its weights from the store and matches the reference",
                   "[ssm][samba]", float, double) {
  using T = TestType;
  hax::ssm::SwiGluConfig const cfg{6, 10, 0.5};
  std::size_t const B = 2, L = 5, D = 6, I = 10;
  hax::ssm::SwiGluMlp<test_space, T> const mlp(cfg);
  hax::nn::ParameterStore<test_space, T> store;
  mlp.register_parameters(store, "layers.0.mlp.");
  test_space space;
  store.finalize(space);
  store.initialize(space, 9);
  hax::test::fill_random(store.grads(), 4);
  auto const g0 = hax::test::to_vector(store.grads());
  act<T> x("x", B, L, D), y("y", B, L, D), dy("dy", B, L, D), dx("dx", B, L, D);
  mask_view no_mask;
  auto const hx = hax::test::fill_random(x, 1);
  auto const hdy = hax::test::fill_random(dy, 2);
  Kokkos::View<T, test_memory_space> gate_loss("gate_loss");
  auto const saved = mlp.forward(space, store, "layers.0.mlp.", x, no_mask, y, gate_loss, NoContext{});
  mlp.backward(space, store, "layers.0.mlp.", saved, dy, dx, NoContext{});
  space.fence();
  std::string const p = "layers.0.mlp.";
  auto slice = [&](std::string const& name) {
    auto const& e = store.entry(name);
    return std::vector<double>(g0.begin() + e.offset, g0.begin() + e.offset + e.size());
  };
  auto dwg = slice(p + "gate_proj.weight"), dwu = slice(p + "up_proj.weight"),
       dwd = slice(p + "down_proj.weight");
  auto const wg = param(store, p + "gate_proj.weight"), wu = param(store, p + "up_proj.weight"),
             wd = param(store, p + "down_proj.weight");
  auto const ref_y = hax::reference::nn::swiglu_mlp_forward(hx, wg, wu, wd, B * L, D, I);
  auto const ref_dx =
      hax::reference::nn::swiglu_mlp_backward(hdy, hx, wg, wu, wd, dwg, dwu, dwd, B * L, D, I);
  using tol = hax::test::tolerance<T>;
  hax::test::check_close(hax::test::to_vector(y), ref_y, tol::rtol, tol::atol, "y");
  hax::test::check_close(hax::test::to_vector(dx), ref_dx, tol::rtol, tol::atol, "dx");
  hax::test::check_close(grad(store, p + "gate_proj.weight"), dwg, tol::rtol, tol::atol, "dw_gate");
  hax::test::check_close(grad(store, p + "up_proj.weight"), dwu, tol::rtol, tol::atol, "dw_up");
  hax::test::check_close(grad(store, p + "down_proj.weight"), dwd, tol::rtol, tol::atol, "dw_down");
}

TEST_CASE("Samba layer shapes reproduce the released parameter count", "[ssm][samba]") {
  // samba.json: vocab 100, d_model 32, 4 blocks; layers 0 and 2 are Mamba mixers (d_inner 64,
  // N 16, dt_rank 8, conv 4 with bias), layers 1 and 3 attention; every block has two RMSNorms
  // and a SwiGLU MLP; a final norm. The Mamba shapes are written out here from the reference.
  hax::ssm::SambaAttention<test_space> const attention(hax::ssm::SambaAttentionConfig{});
  hax::ssm::SwiGluMlp<test_space> const mlp(hax::ssm::SwiGluConfig{});
  CHECK(hax::ssm::fla_gated_mlp_intermediate(32) == 256);
  hax::nn::ParameterStore<test_space> store;
  hax::nn::init::Ones const ones;
  store.add("embeddings.weight", {100, 32}, hax::nn::init::Normal{0.0, 0.02});
  std::size_t const d = 32, di = 64, n = 16, r = 8;
  for (int layer = 0; layer < 4; ++layer) {
    std::string const p = "layers." + std::to_string(layer) + ".";
    store.add(p + "mixer_norm.weight", {d}, ones);
    if (layer % 2 == 0) {
      store.add(p + "mixer.in_proj.weight", {2 * di, d}, ones);
      store.add(p + "mixer.conv1d.weight", {di, 4}, ones);
      store.add(p + "mixer.conv1d.bias", {di}, ones);
      store.add(p + "mixer.x_proj.weight", {r + 2 * n, di}, ones);
      store.add(p + "mixer.dt_proj.weight", {di, r}, ones);
      store.add(p + "mixer.dt_proj.bias", {di}, ones);
      store.add(p + "mixer.A_log", {di, n}, ones);
      store.add(p + "mixer.D", {di}, ones);
      store.add(p + "mixer.out_proj.weight", {d, di}, ones);
    } else {
      attention.register_parameters(store, p + "mixer.");
    }
    store.add(p + "mlp_norm.weight", {d}, ones);
    std::size_t const before = store.count();
    mlp.register_parameters(store, p + "mlp.");
    CHECK(store.count() - before == 24576);  // semantics.md: the SwiGLU MLPs are 4 × 24 576
  }
  store.add("norm.weight", {d}, ones);
  CHECK(store.count() == 131360);
  CHECK(store.contains("layers.1.mixer.q_proj.weight"));
  CHECK(store.contains("layers.3.mixer.o_proj.weight"));
  CHECK(store.contains("layers.2.mlp.down_proj.weight"));
  CHECK(store.entry("layers.3.mlp.gate_proj.weight").shape == std::vector<std::size_t>{256, 32});
}

TEST_CASE("Samba layers initialise their weights N(0, init_range)", "[ssm][samba]") {
  auto const cfg = hax::ssm::samba_paper_attention();  // d_model 64: 4096 draws per weight
  CHECK(cfg.d_model == 64);
  CHECK(cfg.window == 64);
  hax::ssm::SambaAttention<test_space> const attention(cfg);
  hax::ssm::SwiGluMlp<test_space> const mlp(hax::ssm::samba_paper_mlp());
  CHECK(hax::ssm::samba_paper_mlp().intermediate == 256);
  hax::nn::ParameterStore<test_space> store;
  attention.register_parameters(store, "a.");
  mlp.register_parameters(store, "m.");
  test_space space;
  store.finalize(space);
  store.initialize(space, 123);
  for (auto const& e : store.entries()) {
    auto const v = hax::test::to_vector(store.value<2>(e.name));
    double mean = 0, sq = 0;
    for (double x : v) {
      mean += x;
      sq += x * x;
    }
    mean /= double(v.size());
    double const std = std::sqrt(sq / double(v.size()) - mean * mean);
    CAPTURE(e.name, mean, std);
    CHECK(std::abs(mean) < 4 * 0.02 / std::sqrt(double(v.size())));
    CHECK(std::abs(std - 0.02) < 0.05 * 0.02);
  }
}

TEST_CASE("Samba layers reject bad configs naming the field", "[ssm][samba]") {
  using Catch::Matchers::ContainsSubstring;
  using Attention = hax::ssm::SambaAttention<test_space>;
  CHECK_THROWS_AS(Attention({30, 4, 8, 64, 1e4, 0.02}), hax::invalid_argument);
  CHECK_THROWS_WITH(Attention({30, 4, 8, 64, 1e4, 0.02}),
                    ContainsSubstring("hax::ssm::SambaAttention") && ContainsSubstring("d_model (30)"));
  CHECK_THROWS_WITH(Attention({28, 4, 7, 64, 1e4, 0.02}),
                    ContainsSubstring("head_dim (7)") && ContainsSubstring("even"));
  CHECK_THROWS_WITH(Attention({32, 4, 8, 0, 1e4, 0.02}), ContainsSubstring("window (0)"));
  CHECK_THROWS_WITH(Attention({32, 4, 8, 64, 1e4, -1.0}), ContainsSubstring("init_range"));
  using Mlp = hax::ssm::SwiGluMlp<test_space>;
  CHECK_THROWS_WITH(Mlp({32, 0, 0.02}), ContainsSubstring("hax::ssm::SwiGluMlp") &&
                                            ContainsSubstring("intermediate (0)"));
  // An input of the wrong width is named too.
  Attention const attention(hax::ssm::SambaAttentionConfig{});
  hax::nn::ParameterStore<test_space> store;
  attention.register_parameters(store, "");
  test_space space;
  store.finalize(space);
  act<float> x("x", 1, 3, 16), y("y", 1, 3, 16);
  mask_view none;
  Kokkos::View<float, test_memory_space> loss("loss");
  CHECK_THROWS_WITH(attention.forward(space, store, "", x, none, y, loss, NoContext{}),
                    ContainsSubstring("d_model = 32"));
}

TEST_CASE("Samba attention block gradients match finite differences", "[ssm][samba]") {
  // Whole block h -> h + attn(norm(h)) -> + mlp(norm(·)) in double: the input gradient and the
  // gradient of every parameter (norm weights, q/k/v/o, gate/up/down) against central differences.
  hax::ssm::SambaAttentionConfig const acfg{8, 2, 4, 3, 100.0, 0.4};
  hax::ssm::SwiGluConfig const mcfg{8, 12, 0.4};
  using Block = hax::ssm::SambaBlock<test_space, double, hax::ssm::SambaAttention<test_space, double>>;
  Block const block{hax::ssm::SambaAttention<test_space, double>(acfg),
                    hax::ssm::SwiGluMlp<test_space, double>(mcfg)};
  hax::nn::ParameterStore<test_space, double> store;
  block.register_parameters(store, "layers.1.");
  CHECK(store.contains("layers.1.mixer_norm.weight"));
  CHECK(store.contains("layers.1.mixer.q_proj.weight"));
  CHECK(store.contains("layers.1.mlp_norm.weight"));
  CHECK(store.contains("layers.1.mlp.up_proj.weight"));
  test_space space;
  store.finalize(space);
  store.initialize(space, 5);
  // Norm weights away from 1, so that their gradients are not a special case.
  auto params = hax::test::to_vector(store.values());
  auto const jitter = hax::test::random_vector(params.size(), 77, -0.2, 0.2);
  for (std::size_t i = 0; i < params.size(); ++i) {
    params[i] += jitter[i];
  }
  hax::test::from_vector(store.values(), params);
  std::size_t const B = 1, L = 6, D = 8;
  act<double> h("h", B, L, D), out("out", B, L, D), dout("dout", B, L, D), dh("dh", B, L, D);
  auto const hh = hax::test::fill_random(h, 1);
  auto const hdout = hax::test::fill_random(dout, 2);
  mask_view none;
  Kokkos::View<double, test_memory_space> loss_view("gate_loss");
  auto const saved = block.forward(space, store, "layers.1.", h, none, out, loss_view, NoContext{});
  block.backward(space, store, "layers.1.", saved, dout, dh, NoContext{});
  space.fence();
  auto const dh_analytic = hax::test::to_vector(dh);
  auto const dparams = hax::test::to_vector(store.grads());
  auto loss = [&](std::vector<double> const& hv, std::vector<double> const& pv) {
    hax::test::from_vector(h, hv);
    hax::test::from_vector(store.values(), pv);
    block.forward(space, store, "layers.1.", h, none, out, loss_view, NoContext{});
    space.fence();
    auto const y = hax::test::to_vector(out);
    double acc = 0;
    for (std::size_t i = 0; i < y.size(); ++i) {
      acc += hdout[i] * y[i];
    }
    return acc;
  };
  // Central differences on a sample (every forward costs many launches): every 3rd input element
  // and 3 elements of every parameter tensor (first, middle, last).
  std::vector<std::size_t> h_idx, p_idx;
  for (std::size_t i = 0; i < hh.size(); i += 3) {
    h_idx.push_back(i);
  }
  for (auto const& e : store.entries()) {
    for (std::size_t k : {std::size_t(0), e.size() / 2, e.size() - 1}) {
      p_idx.push_back(e.offset + k);
    }
  }
  auto sampled_check = [&](std::vector<double> x, std::vector<double> const& analytic,
                           std::vector<std::size_t> const& idx, bool is_h, char const* what) {
    std::vector<double> numeric, expected;
    double const step = 1e-6;
    for (std::size_t i : idx) {
      double const saved_x = x[i];
      x[i] = saved_x + step;
      double const up = is_h ? loss(x, params) : loss(hh, x);
      x[i] = saved_x - step;
      double const down = is_h ? loss(x, params) : loss(hh, x);
      x[i] = saved_x;
      numeric.push_back((up - down) / (2 * step));
      expected.push_back(analytic[i]);
    }
    REQUIRE(hax::test::max_abs(numeric) > 0.0);
    hax::test::check_close(expected, numeric, 1e-6, 1e-7, what);
  };
  sampled_check(hh, dh_analytic, h_idx, true, "dh_in");
  sampled_check(params, dparams, p_idx, false, "parameters");
}

TEST_CASE("Samba attention block: right padding never changes non-pad outputs", "[ssm][samba]") {
  using Block = hax::ssm::SambaBlock<test_space, double, hax::ssm::SambaAttention<test_space, double>>;
  Block const block(hax::ssm::SambaAttention<test_space, double>({8, 2, 4, 4, 1e4, 0.3}),
                    hax::ssm::SwiGluMlp<test_space, double>({8, 16, 0.3}));
  hax::nn::ParameterStore<test_space, double> store;
  block.register_parameters(store, "b.");
  test_space space;
  store.finalize(space);
  store.initialize(space, 3);
  std::size_t const B = 2, L = 13, D = 8;
  std::vector<int> valid(B * L, 1);
  for (std::size_t t = 7; t < L; ++t) {
    valid[t] = 0;  // sequence 0 has 7 real tokens, sequence 1 is full
  }
  mask_view mask("mask", B, L);
  hax::test::from_vector(mask, std::vector<double>(valid.begin(), valid.end()));
  auto const base = hax::test::random_vector(B * L * D, 8);
  auto const noise = hax::test::random_vector(B * L * D, 9, -4.0, 4.0);
  auto run = [&](bool perturb_pads) {
    auto hv = base;
    for (std::size_t i = 0; i < hv.size(); ++i) {
      if (perturb_pads && valid[i / D] == 0) {
        hv[i] = noise[i];
      }
    }
    act<double> h("h", B, L, D), out("out", B, L, D);
    hax::test::from_vector(h, hv);
    Kokkos::View<double, test_memory_space> loss("loss");
    block.forward(space, store, "b.", h, mask, out, loss, NoContext{});
    space.fence();
    return hax::test::to_vector(out);
  };
  auto const a = run(false), b = run(true);
  std::size_t compared = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (valid[i / D] != 0) {
      CHECK(a[i] == b[i]);
      ++compared;
    }
  }
  CHECK(compared == (7 + 13) * D);
}
