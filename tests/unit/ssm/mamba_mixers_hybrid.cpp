// SPDX-License-Identifier: MIT
// Tests of the HAX hybrid Mamba and Mamba2 mixers (a `sparse` config): forward and gate loss vs
// the serial references (the mixer references extended with the sparse branch's reference),
// finite-difference gradient checks in double through the whole mixer (every parameter, E,
// xx_proj, the scoring MLP against α · d(ranking loss), the input), padding invariance in
// `causal`, E = 0 equals the mixer without the branch, parameter counts of semantics.md section 2,
// and bad configs. Each case runs for both mixers (MambaKind, Mamba2Kind).
#include <hax/attention/sparse_branch.hpp>
#include <hax/core/error.hpp>
#include <hax/nn/parameters.hpp>
#include <hax/reference/ssm/mamba2_mixer.hpp>
#include <hax/reference/ssm/mamba_mixer.hpp>
#include <hax/ssm/mamba2_mixer.hpp>
#include <hax/ssm/mamba_mixer.hpp>

#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "support/compare.hpp"
#include "support/gradcheck.hpp"
#include "support/test_space.hpp"

namespace {

using hax::attn::Semantics;
using hax::attn::SparseBranchConfig;
using hax::attn::StepContext;
using hax::test::test_memory_space;
using hax::test::test_space;

template <class T>
using act = Kokkos::View<T***, Kokkos::LayoutRight, test_memory_space>;  // (B, L, D)
using mask_view = Kokkos::View<std::int8_t**, Kokkos::LayoutRight, test_memory_space>;  // (B, L)
template <class T>
using loss_view = Kokkos::View<T, test_memory_space>;  // 0-d

std::string const kPrefix = "layers.0.mixer.";
int const kDModel = 6;

/// The branch of the tests: k = 4 (k' = 2 per part of a union), h = 2 bits, widths from the mixer.
SparseBranchConfig branch_config(std::string arch, Semantics semantics = Semantics::causal) {
  SparseBranchConfig c;
  c.arch = std::move(arch);
  c.keys = 4;
  c.num_hash = 2;
  c.state_size = 0;  // 0: the mixer fills in its own N and d_inner
  c.d_inner = 0;
  c.semantics = semantics;
  c.max_length = 8;  // dilation stride 8 / k'
  return c;
}

/// Reference gradients by parameter name (without the prefix), and the input's.
struct Grads {
  std::map<std::string, std::vector<double>> by_name;
  std::vector<double> dx;
};

/// E, xx_proj and (with ranking) the MLP's reference gradients into g.
void add_branch_grads(Grads& g, hax::reference::ssm::MixerBranch<double> const* br,
                      std::vector<double> const& dE,
                      hax::reference::attn::SparseBranchGrads<double> const& b) {
  if (br == nullptr) {
    return;
  }
  g.by_name["E"] = dE;
  g.by_name["xx_proj.weight"] = b.dxx_proj;
  if (!b.dmlp.w1.empty()) {
    g.by_name["ks_mlp.0.weight"] = b.dmlp.w1;
    g.by_name["ks_mlp.0.bias"] = b.dmlp.b1;
    g.by_name["ks_mlp.2.weight"] = b.dmlp.w2;
    g.by_name["ks_mlp.2.bias"] = b.dmlp.b2;
    g.by_name["ks_mlp.4.weight"] = b.dmlp.w3;
    g.by_name["ks_mlp.4.bias"] = b.dmlp.b3;
  }
}

/// Mamba-1: d_model 6, d_inner 8, N 4, dt_rank 2, chunk `chunk`.
struct MambaKind {
  static constexpr char const* name = "mamba";
  template <class T>
  using mixer = hax::ssm::MambaMixer<test_space, T>;
  using config = hax::ssm::MambaConfig;
  static config small(int chunk) {
    config c;
    c.d_model = kDModel;
    c.d_inner = 8;
    c.state_size = 4;
    c.dt_rank = 2;
    c.chunk = chunk;
    c.init_range = 0.3;  // larger than 0.1 so every path carries signal at these tiny widths
    return c;
  }
  /// The reference forward with the store's values.
  template <class Get>
  static std::vector<double> reference(config const& c, Get get, std::size_t B, std::size_t L,
                                       std::vector<double> const& x,
                                       std::vector<double> const& mask,
                                       hax::reference::ssm::MixerBranch<double> const* br,
                                       double* gate_loss) {
    return hax::reference::ssm::mamba_mixer_forward(shape(c, B, L), weights(get), x, mask, br,
                                                    gate_loss);
  }
  static hax::reference::ssm::MambaMixerShape shape(config const& c, std::size_t B, std::size_t L) {
    return {B,
            L,
            std::size_t(c.d_model),
            std::size_t(c.d_inner),
            std::size_t(c.state_size),
            std::size_t(c.dt_rank),
            std::size_t(c.conv_kernel)};
  }
  template <class Get>
  static hax::reference::ssm::MambaMixerWeights<double> weights(Get get) {
    return {get("in_proj.weight"), get("conv1d.weight"), get("conv1d.bias"),
            get("x_proj.weight"),  get("dt_proj.weight"), get("dt_proj.bias"),
            get("A_log"),          get("D"),              get("out_proj.weight")};
  }
  /// The reference backward: gradients by parameter name (branch ones included), and dx.
  template <class Get>
  static Grads reference_grads(config const& c, Get get, std::size_t B, std::size_t L,
                               std::vector<double> const& x, std::vector<double> const& mask,
                               hax::reference::ssm::MixerBranch<double> const* br,
                               std::vector<double> const& dy) {
    auto const s = shape(c, B, L);
    auto const w = weights(get);
    auto const tr = hax::reference::ssm::mamba_mixer_trace(s, w, x, mask, br);
    auto const g = hax::reference::ssm::mamba_mixer_backward(s, w, x, mask, tr, dy, br);
    Grads out;
    out.dx = g.dx;
    out.by_name = {{"in_proj.weight", g.dw.in_proj}, {"conv1d.weight", g.dw.conv_w},
                   {"conv1d.bias", g.dw.conv_b},     {"x_proj.weight", g.dw.x_proj},
                   {"dt_proj.weight", g.dw.dt_proj_w}, {"dt_proj.bias", g.dw.dt_proj_b},
                   {"A_log", g.dw.A_log},            {"D", g.dw.D},
                   {"out_proj.weight", g.dw.out_proj}};
    add_branch_grads(out, br, g.dE, g.branch);
    return out;
  }
};

/// Mamba-2: d_model 6, 2 heads × 4 (d_inner 8), N 4, chunk `chunk`.
struct Mamba2Kind {
  static constexpr char const* name = "mamba2";
  template <class T>
  using mixer = hax::ssm::Mamba2Mixer<test_space, T>;
  using config = hax::ssm::Mamba2Config;
  static config small(int chunk) {
    config c;
    c.d_model = kDModel;
    c.d_inner = 8;
    c.num_heads = 2;
    c.head_dim = 4;
    c.state_size = 4;
    c.chunk_size = chunk;
    c.init_range = 0.3;
    return c;
  }
  template <class Get>
  static std::vector<double> reference(config const& c, Get get, std::size_t B, std::size_t L,
                                       std::vector<double> const& x,
                                       std::vector<double> const& mask,
                                       hax::reference::ssm::MixerBranch<double> const* br,
                                       double* gate_loss) {
    return hax::reference::ssm::mamba2_mixer_forward(shape(c, B, L), weights(get), x, mask, br,
                                                     gate_loss);
  }
  static hax::reference::ssm::Mamba2MixerShape shape(config const& c, std::size_t B,
                                                     std::size_t L) {
    hax::reference::ssm::Mamba2MixerShape s;
    s.B = B;
    s.L = L;
    s.D = std::size_t(c.d_model);
    s.H = std::size_t(c.num_heads);
    s.P = std::size_t(c.head_dim);
    s.N = std::size_t(c.state_size);
    s.K = std::size_t(c.conv_kernel);
    s.eps = c.norm_eps;
    return s;
  }
  template <class Get>
  static hax::reference::ssm::Mamba2MixerWeights<double> weights(Get get) {
    return {get("in_proj.weight"), get("conv1d.weight"), get("conv1d.bias"),
            get("dt_bias"),        get("A_log"),         get("D"),
            get("norm.weight"),    get("out_proj.weight")};
  }
  template <class Get>
  static Grads reference_grads(config const& c, Get get, std::size_t B, std::size_t L,
                               std::vector<double> const& x, std::vector<double> const& mask,
                               hax::reference::ssm::MixerBranch<double> const* br,
                               std::vector<double> const& dy) {
    auto const s = shape(c, B, L);
    auto const w = weights(get);
    auto const tr = hax::reference::ssm::mamba2_mixer_trace(s, w, x, mask, br);
    auto const g = hax::reference::ssm::mamba2_mixer_backward(s, w, mask, tr, dy, br);
    Grads out;
    out.dx = g.dx;
    out.by_name = {{"in_proj.weight", g.dw.in_proj}, {"conv1d.weight", g.dw.conv_w},
                   {"conv1d.bias", g.dw.conv_b},     {"dt_bias", g.dw.dt_bias},
                   {"A_log", g.dw.A_log},            {"D", g.dw.D},
                   {"norm.weight", g.dw.norm_w},     {"out_proj.weight", g.dw.out_proj}};
    add_branch_grads(out, br, g.dE, g.branch);
    return out;
  }
};

template <class T>
using Store = hax::nn::ParameterStore<test_space, T>;

/// The values of parameter `n` (under kPrefix) as doubles.
template <class T>
std::vector<double> param(Store<T> const& store, std::string const& n) {
  auto const& e = store.entry(kPrefix + n);
  auto const all = hax::test::to_vector(store.values());
  return std::vector<double>(all.begin() + e.offset, all.begin() + e.offset + e.size());
}

/// Overwrites parameter `n` (under kPrefix) in the flat value buffer.
template <class T>
void set_param(Store<T>& store, std::string const& n, std::vector<double> const& v) {
  auto const& e = store.entry(kPrefix + n);
  auto all = hax::test::to_vector(store.values());
  std::copy(v.begin(), v.end(), all.begin() + e.offset);
  hax::test::from_vector(store.values(), all);
}

bool is_mlp(std::string const& name) { return name.find("ks_mlp.") != std::string::npos; }

/// The reference's initialisation, then E and the branch's parameters redrawn in ±0.6 (biases
/// included, so that the scoring MLP's ReLUs are not all in one state), E around 1.
template <class Mixer, class T>
Store<T> make_store(Mixer const& mixer, std::uint64_t seed) {
  Store<T> store;
  mixer.register_parameters(store, kPrefix);
  test_space space;
  store.finalize(space);
  store.initialize(space, seed);
  space.fence();
  if (mixer.has_sparse_branch()) {
    auto const& cfg = mixer.sparse_branch().config();
    std::uint64_t s = seed * 100;
    for (auto const& e : store.entries()) {
      auto const name = e.name.substr(kPrefix.size());
      if (name == "E") {
        set_param(store, name, hax::test::random_vector(e.size(), ++s, 0.5, 1.5));
      } else if (name == "xx_proj.weight" || is_mlp(name)) {
        set_param(store, name, hax::test::random_vector(e.size(), ++s, -0.6, 0.6));
      }
    }
    REQUIRE(cfg.d_inner == mixer.config().d_inner);
  }
  return store;
}

/// The branch reference's view of the store.
template <class Mixer, class T>
hax::reference::ssm::MixerBranch<double> branch_of(Mixer const& mixer, Store<T> const& store,
                                                   StepContext const& ctx) {
  hax::reference::ssm::MixerBranch<double> br;
  br.config = mixer.sparse_branch().config();
  br.ctx = ctx;
  br.E = param(store, "E");
  br.params.xx_proj = param(store, "xx_proj.weight");
  if (mixer.sparse_branch().has_key_selection()) {
    auto& m = br.params.mlp;
    m.D = m.H = 2 * br.config.state_size;
    m.w1 = param(store, "ks_mlp.0.weight");
    m.b1 = param(store, "ks_mlp.0.bias");
    m.w2 = param(store, "ks_mlp.2.weight");
    m.b2 = param(store, "ks_mlp.2.bias");
    m.w3 = param(store, "ks_mlp.4.weight");
    m.b3 = param(store, "ks_mlp.4.bias");
  }
  return br;
}

/// Right padding: sequence b has lengths[b] real tokens.
std::vector<double> right_pad_mask(std::size_t L, std::vector<std::size_t> const& lengths) {
  std::vector<double> m(lengths.size() * L, 0.0);
  for (std::size_t b = 0; b < lengths.size(); ++b) {
    for (std::size_t t = 0; t < lengths[b]; ++t) {
      m[b * L + t] = 1.0;
    }
  }
  return m;
}

template <class Kind, class T>
typename Kind::config hybrid_config(std::string const& arch, Semantics semantics, int chunk) {
  auto c = Kind::small(chunk);
  c.sparse = branch_config(arch, semantics);
  return c;
}

/// Device forward (with gate_loss starting at 0.25) vs the reference forward, y and gate loss.
template <class Kind, class T>
void check_forward(std::string const& arch, Semantics semantics, bool training, std::size_t L,
                   int chunk) {
  CAPTURE(Kind::name, arch, semantics == Semantics::causal, training, L, chunk);
  std::size_t const B = 2;
  auto const cfg = hybrid_config<Kind, T>(arch, semantics, chunk);
  typename Kind::template mixer<T> const mixer(cfg);
  auto store = make_store<decltype(mixer), T>(mixer, 11);
  test_space space;
  act<T> x("x", B, L, kDModel), y("y", B, L, kDModel);
  mask_view mask("mask", B, L);
  auto const hmask = right_pad_mask(L, {L, L - 3});
  hax::test::from_vector(mask, hmask);
  auto const hx = hax::test::fill_random(x, 5);
  loss_view<T> gate_loss("gate_loss");
  Kokkos::deep_copy(gate_loss, T(0.25));  // the mixer adds onto what is there
  StepContext ctx;
  ctx.seed = 3;
  ctx.step = 4;
  ctx.layer = 1;
  ctx.training = training;
  mixer.forward(space, store, kPrefix, x, mask, y, gate_loss, ctx);
  space.fence();
  auto const br = branch_of(mixer, store, ctx);
  double ref_gate = 0;
  auto const expected = Kind::reference(
      cfg, [&](std::string const& n) { return param(store, n); }, B, L, hx, hmask, &br, &ref_gate);
  REQUIRE(hax::test::max_abs(expected) > 1e-3);
  double const rtol = 10 * hax::test::tolerance<T>::rtol, atol = 10 * hax::test::tolerance<T>::atol;
  hax::test::check_close(hax::test::to_vector(y), expected, rtol, atol, "y");
  bool const ranking = training && mixer.sparse_branch().has_key_selection();
  if (ranking) {
    REQUIRE(ref_gate > 0.0);
  } else {
    REQUIRE(ref_gate == 0.0);
  }
  hax::test::check_close(hax::test::to_vector(gate_loss), {0.25 + ref_gate}, rtol, atol,
                         "gate_loss");
  // the branch changes the output: the reference without it differs
  auto const base = Kind::reference(
      cfg, [&](std::string const& n) { return param(store, n); }, B, L, hx, hmask, nullptr,
      nullptr);
  double diff = 0;
  for (std::size_t i = 0; i < base.size(); ++i) {
    diff = std::max(diff, std::abs(base[i] - expected[i]));
  }
  CHECK(diff > 1e-3);
}

/// Central differences through the whole hybrid mixer in double: every parameter except the
/// scoring MLP's and the input against Σ dy ⊙ y; the MLP's against Σ dy ⊙ y + α · gate_loss
/// (y is piecewise constant in them: top-k), i.e. α · d(ranking loss) away from ties.
template <class Kind>
void check_gradients(std::string const& arch, Semantics semantics) {
  using T = double;
  CAPTURE(Kind::name, arch, semantics == Semantics::causal);
  std::size_t const B = 2, L = 9;
  auto const cfg = hybrid_config<Kind, T>(arch, semantics, 4);
  typename Kind::template mixer<T> const mixer(cfg);
  auto store = make_store<decltype(mixer), T>(mixer, 3);
  test_space space;
  act<T> x("x", B, L, kDModel), y("y", B, L, kDModel), dy("dy", B, L, kDModel),
      dx("dx", B, L, kDModel);
  mask_view mask("mask", B, L);
  hax::test::from_vector(mask, right_pad_mask(L, {L, 6}));
  auto const hx = hax::test::fill_random(x, 7);
  auto const hdy = hax::test::fill_random(dy, 8);
  loss_view<T> gate_loss("gate_loss");
  StepContext ctx;  // fixed seed and step: the same projections and candidates in every evaluation
  ctx.seed = 5;
  ctx.step = 2;
  ctx.gate_loss_weight = 0.3;  // not the default, so that a missing α would show
  hax::test::fill_random(store.grads(), 9);  // parameter gradients must accumulate onto this
  auto const g0 = hax::test::to_vector(store.grads());
  auto const saved = mixer.forward(space, store, kPrefix, x, mask, y, gate_loss, ctx);
  mixer.backward(space, store, kPrefix, saved, dy, dx, ctx);
  space.fence();
  auto g = hax::test::to_vector(store.grads());
  for (std::size_t i = 0; i < g.size(); ++i) {
    g[i] -= g0[i];
  }
  // (Σ dy ⊙ y, gate loss) at input xs and flat parameter values ps
  auto losses = [&](std::vector<double> const& xs, std::vector<double> const& ps) {
    hax::test::from_vector(x, xs);
    hax::test::from_vector(store.values(), ps);
    Kokkos::deep_copy(gate_loss, 0.0);
    mixer.forward(space, store, kPrefix, x, mask, y, gate_loss, ctx);
    space.fence();
    auto const yv = hax::test::to_vector(y);
    double l = 0;
    for (std::size_t i = 0; i < yv.size(); ++i) {
      l += hdy[i] * yv[i];
    }
    return std::pair{l, hax::test::to_vector(gate_loss)[0]};
  };
  auto const params = hax::test::to_vector(store.values());
  // the parameters split into the attention/SSM path's and the MLP's (index lists)
  std::vector<std::size_t> path, mlp;
  for (auto const& e : store.entries()) {
    auto& into = is_mlp(e.name) ? mlp : path;
    for (std::size_t i = 0; i < e.size(); ++i) {
      into.push_back(e.offset + i);
    }
  }
  auto check_subset = [&](std::vector<std::size_t> const& idx, bool with_gate, char const* what) {
    std::vector<double> sub(idx.size()), gsub(idx.size());
    for (std::size_t i = 0; i < idx.size(); ++i) {
      sub[i] = params[idx[i]];
      gsub[i] = g[idx[i]];
    }
    hax::test::check_gradient(
        sub, gsub,
        [&](std::vector<double> const& v) {
          auto ps = params;
          for (std::size_t i = 0; i < idx.size(); ++i) {
            ps[idx[i]] = v[i];
          }
          auto const [l, gl] = losses(hx, ps);
          return with_gate ? l + ctx.gate_loss_weight * gl : l;
        },
        what, 1e-5, 1e-7);
  };
  check_subset(path, false, "d parameters (SSM path, E, xx_proj)");
  // E and xx_proj must carry gradient of their own (not only hidden among the others)
  for (char const* n : {"E", "xx_proj.weight"}) {
    auto const& e = store.entry(kPrefix + n);
    CHECK(hax::test::max_abs(std::vector<double>(g.begin() + e.offset,
                                                 g.begin() + e.offset + e.size())) > 1e-6);
  }
  if (mixer.sparse_branch().has_key_selection()) {
    REQUIRE(!mlp.empty());
    check_subset(mlp, true, "d ks_mlp (alpha * ranking loss)");
  } else {
    REQUIRE(mlp.empty());
  }
  hax::test::check_gradient(
      hx, hax::test::to_vector(dx),
      [&](std::vector<double> const& v) { return losses(v, params).first; }, "dx", 1e-5, 1e-7);
}

/// Device backward (parameter gradients accumulating onto random values) vs the reference
/// backward, every parameter by name and the input; `arch` empty = the mixer without the branch.
template <class Kind, class T>
void check_backward(std::string const& arch, Semantics semantics, double tol_scale) {
  CAPTURE(Kind::name, arch, semantics == Semantics::causal);
  std::size_t const B = 2, L = 11;
  auto cfg = Kind::small(4);
  if (!arch.empty()) {
    cfg.sparse = branch_config(arch, semantics);
  }
  typename Kind::template mixer<T> const mixer(cfg);
  auto store = make_store<decltype(mixer), T>(mixer, 13);
  test_space space;
  act<T> x("x", B, L, kDModel), y("y", B, L, kDModel), dy("dy", B, L, kDModel),
      dx("dx", B, L, kDModel);
  mask_view mask("mask", B, L);
  auto const hmask = right_pad_mask(L, {L, L - 4});
  hax::test::from_vector(mask, hmask);
  auto const hx = hax::test::fill_random(x, 14);
  auto const hdy = hax::test::fill_random(dy, 15);
  loss_view<T> gate_loss("gate_loss");
  StepContext ctx;
  ctx.seed = 9;
  ctx.step = 1;
  ctx.layer = 1;
  ctx.gate_loss_weight = 0.3;
  hax::test::fill_random(store.grads(), 16);
  auto const g0 = hax::test::to_vector(store.grads());
  auto const saved = mixer.forward(space, store, kPrefix, x, mask, y, gate_loss, ctx);
  mixer.backward(space, store, kPrefix, saved, dy, dx, ctx);
  space.fence();
  auto const g = hax::test::to_vector(store.grads());
  hax::reference::ssm::MixerBranch<double> br;
  if (!arch.empty()) {
    br = branch_of(mixer, store, ctx);
  }
  auto const ref = Kind::reference_grads(
      cfg, [&](std::string const& n) { return param(store, n); }, B, L, hx, hmask,
      arch.empty() ? nullptr : &br, hdy);
  double const rtol = tol_scale * hax::test::tolerance<T>::rtol;
  double const atol = tol_scale * hax::test::tolerance<T>::atol;
  REQUIRE(ref.by_name.size() == store.size());  // every parameter has a reference gradient
  for (auto const& e : store.entries()) {
    auto const name = e.name.substr(kPrefix.size());
    REQUIRE(ref.by_name.count(name) == 1);
    auto const& expected = ref.by_name.at(name);
    std::vector<double> got(e.size());
    for (std::size_t i = 0; i < e.size(); ++i) {
      got[i] = g[e.offset + i] - g0[e.offset + i];
    }
    if (name != "ks_mlp.4.bias") {  // exactly zero: the ranking loss sees score differences only
      CHECK(hax::test::max_abs(expected) > 0.0);
    }
    hax::test::check_close(got, expected, rtol, atol, "d " + name);
  }
  REQUIRE(hax::test::max_abs(ref.dx) > 0.0);
  hax::test::check_close(hax::test::to_vector(dx), ref.dx, rtol, atol, "dx");
}

}  // namespace

TEMPLATE_TEST_CASE("mixer backward matches the reference backward (with and without the branch)",
                   "[ssm][mamba_mixer][mamba2_mixer][hybrid]", MambaKind, Mamba2Kind) {
  auto const arch = GENERATE(as<std::string>{}, "", "sliding_window", "sign_bin_lsh",
                             "sign_bin_lsh+key_selection", "sliding_window+dilated");
  auto const semantics = GENERATE(Semantics::causal, Semantics::reference);
  check_backward<TestType, double>(arch, semantics, 10.0);
}

TEMPLATE_TEST_CASE("mixer backward in float matches the double reference backward",
                   "[ssm][mamba_mixer][mamba2_mixer][hybrid]", MambaKind, Mamba2Kind) {
  auto const arch = GENERATE(as<std::string>{}, "", "sliding_window", "sign_bin_lsh+key_selection");
  check_backward<TestType, float>(arch, Semantics::causal, 10.0);
}

TEMPLATE_TEST_CASE("hybrid mixer forward and gate loss match the reference",
                   "[ssm][mamba_mixer][mamba2_mixer][hybrid]", MambaKind, Mamba2Kind) {
  auto const arch = GENERATE(as<std::string>{}, "sliding_window", "sign_bin_lsh", "key_selection",
                             "sign_bin_lsh+key_selection", "sliding_window+dilated");
  auto const semantics = GENERATE(Semantics::causal, Semantics::reference);
  std::size_t const L = GENERATE(7, 13);
  check_forward<TestType, double>(arch, semantics, true, L, 4);
}

TEMPLATE_TEST_CASE("hybrid mixer forward in evaluation and in float match the reference",
                   "[ssm][mamba_mixer][mamba2_mixer][hybrid]", MambaKind, Mamba2Kind) {
  auto const arch = GENERATE(as<std::string>{}, "sign_bin_lsh+key_selection", "sliding_window");
  check_forward<TestType, double>(arch, Semantics::causal, false, 11, 3);
  check_forward<TestType, float>(arch, Semantics::causal, true, 10, 64);
}

TEMPLATE_TEST_CASE("hybrid mixer gradients match finite differences (causal)",
                   "[ssm][mamba_mixer][mamba2_mixer][hybrid]", MambaKind, Mamba2Kind) {
  check_gradients<TestType>(
      GENERATE(as<std::string>{}, "sliding_window", "sign_bin_lsh"), Semantics::causal);
}

// About 2 s on 2 cores (a minute under the sanitizers): every MLP weight costs two forwards.
// The default suite still checks the MLP's gradients against the reference backward.
TEMPLATE_TEST_CASE("hybrid mixer gradients with key selection match finite differences",
                   "[ssm][mamba_mixer][mamba2_mixer][hybrid][slow]", MambaKind, Mamba2Kind) {
  check_gradients<TestType>(
      GENERATE(as<std::string>{}, "key_selection", "sign_bin_lsh+key_selection"),
      Semantics::causal);
}

TEMPLATE_TEST_CASE("hybrid mixer gradients match finite differences (reference semantics)",
                   "[ssm][mamba_mixer][mamba2_mixer][hybrid]", MambaKind, Mamba2Kind) {
  check_gradients<TestType>("sliding_window+dilated", Semantics::reference);
}

TEMPLATE_TEST_CASE("causal hybrid mixer: right padding never changes non-pad outputs",
                   "[ssm][mamba_mixer][mamba2_mixer][hybrid]", MambaKind, Mamba2Kind) {
  using T = double;
  auto const arch =
      GENERATE(as<std::string>{}, "sign_bin_lsh+key_selection", "sliding_window+dilated");
  CAPTURE(TestType::name, arch);
  std::size_t const L = 12, real = 8;
  auto const cfg = hybrid_config<TestType, T>(arch, Semantics::causal, 5);
  typename TestType::template mixer<T> const mixer(cfg);
  auto store = make_store<decltype(mixer), T>(mixer, 21);
  test_space space;
  StepContext ctx;
  ctx.step = 6;
  loss_view<T> gp("gp"), gs("gs");
  // padded: 8 real tokens then 4 pads holding garbage
  act<T> xp("xp", 1, L, kDModel), yp("yp", 1, L, kDModel);
  mask_view mask("mask", 1, L);
  hax::test::from_vector(mask, right_pad_mask(L, {real}));
  auto const hxp = hax::test::fill_random(xp, 31, -3.0, 3.0);
  mixer.forward(space, store, kPrefix, xp, mask, yp, gp, ctx);
  // unpadded: the same 8 tokens alone, no mask
  act<T> xs("xs", 1, real, kDModel), ys("ys", 1, real, kDModel);
  hax::test::from_vector(xs, std::vector<double>(hxp.begin(), hxp.begin() + real * kDModel));
  mixer.forward(space, store, kPrefix, xs, mask_view(), ys, gs, ctx);
  space.fence();
  auto const yv = hax::test::to_vector(yp);
  REQUIRE(hax::test::max_abs(yv) > 1e-3);
  hax::test::check_close(std::vector<double>(yv.begin(), yv.begin() + real * kDModel),
                         hax::test::to_vector(ys), 1e-12, 1e-13, "y at real positions");
  hax::test::check_close(hax::test::to_vector(gp), hax::test::to_vector(gs), 1e-12, 1e-14,
                         "gate_loss");
}

TEMPLATE_TEST_CASE("hybrid mixer with E = 0 equals the mixer without the branch",
                   "[ssm][mamba_mixer][mamba2_mixer][hybrid]", MambaKind, Mamba2Kind) {
  using T = double;
  std::size_t const B = 2, L = 10;
  auto base_cfg = TestType::small(4);
  auto hyb_cfg = base_cfg;
  hyb_cfg.sparse = branch_config("sign_bin_lsh+key_selection");
  hyb_cfg.e_init = 0.0;
  typename TestType::template mixer<T> const base(base_cfg), hyb(hyb_cfg);
  // the same initial values for the shared parameters: initialisation is keyed by name and seed
  Store<T> sb, sh;
  base.register_parameters(sb, kPrefix);
  hyb.register_parameters(sh, kPrefix);
  test_space space;
  sb.finalize(space);
  sh.finalize(space);
  sb.initialize(space, 8);
  sh.initialize(space, 8);
  REQUIRE(param(sh, "E") == std::vector<double>(8, 0.0));  // e_init
  act<T> x("x", B, L, kDModel), yb("yb", B, L, kDModel), yh("yh", B, L, kDModel),
      dy("dy", B, L, kDModel), dxb("dxb", B, L, kDModel), dxh("dxh", B, L, kDModel);
  mask_view mask("mask", B, L);
  hax::test::from_vector(mask, right_pad_mask(L, {L, 7}));
  hax::test::fill_random(x, 1);
  hax::test::fill_random(dy, 2);
  loss_view<T> gate_loss("gate_loss");
  StepContext const ctx;
  auto const saved_b = base.forward(space, sb, kPrefix, x, mask, yb, gate_loss, ctx);
  base.backward(space, sb, kPrefix, saved_b, dy, dxb, ctx);
  auto const saved_h = hyb.forward(space, sh, kPrefix, x, mask, yh, gate_loss, ctx);
  hyb.backward(space, sh, kPrefix, saved_h, dy, dxh, ctx);
  space.fence();
  REQUIRE(hax::test::max_abs(hax::test::to_vector(yb)) > 1e-3);
  hax::test::check_close(hax::test::to_vector(yh), hax::test::to_vector(yb), 1e-14, 1e-15, "y");
  hax::test::check_close(hax::test::to_vector(dxh), hax::test::to_vector(dxb), 1e-12, 1e-14, "dx");
  for (auto const& e : sb.entries()) {
    auto const n = e.name.substr(kPrefix.size());
    auto const gb = hax::test::to_vector(sb.grads());
    auto const gh = hax::test::to_vector(sh.grads());
    auto const& eh = sh.entry(e.name);
    hax::test::check_close(
        std::vector<double>(gh.begin() + eh.offset, gh.begin() + eh.offset + eh.size()),
        std::vector<double>(gb.begin() + e.offset, gb.begin() + e.offset + e.size()), 1e-12,
        1e-14, "d " + n);
  }
  // E itself still learns: dE = Σ dmixed ⊙ attn is not zero at E = 0
  auto const gh = hax::test::to_vector(sh.grads());
  auto const& ee = sh.entry(kPrefix + "E");
  CHECK(hax::test::max_abs(std::vector<double>(gh.begin() + ee.offset,
                                               gh.begin() + ee.offset + ee.size())) > 1e-6);
  CHECK(hax::test::to_vector(gate_loss)[0] > 0.0);  // the branch ran (training, key selection)
}

namespace {

/// Parameters of one mixer from the shapes of semantics.md section 2, written out independently.
struct Shapes {
  long D, E, N, K;
};
long mamba_mixer_params(Shapes s, long R) {
  return 2 * s.E * s.D                    // in_proj
         + s.E * s.K + s.E                // conv1d weight, bias
         + (R + 2 * s.N) * s.E            // x_proj
         + s.E * R + s.E                  // dt_proj weight, bias
         + s.E * s.N + s.E                // A_log, D
         + s.D * s.E;                     // out_proj
}
long mamba2_mixer_params(Shapes s, long H) {
  long const conv = s.E + 2 * s.N;
  return (2 * s.E + 2 * s.N + H) * s.D    // in_proj
         + conv * s.K + conv              // conv1d weight, bias
         + 3 * H                          // dt_bias, A_log, D
         + s.E                            // norm.weight
         + s.D * s.E;                     // out_proj
}
long branch_params(Shapes s, bool key_selection) {
  long const n2 = 2 * s.N;
  long p = n2 * s.E + s.E;  // xx_proj, E
  if (key_selection) {
    p += 2 * (n2 * n2 + n2) + n2 + 1;  // MLP 2N → 2N → 2N → 1
  }
  return p;
}
/// The whole model of the table: vocab 100 embedding (tied output), 2 blocks, 2 + 1 RMSNorms.
long model_params(long mixer, long D) { return 100 * D + 2 * mixer + 3 * D; }

}  // namespace

TEST_CASE("hybrid mixer parameter counts of the paper's configs",
          "[ssm][mamba_mixer][mamba2_mixer][hybrid]") {
  auto with = [](auto c, std::string const& arch) {
    SparseBranchConfig b;
    b.arch = arch;
    b.keys = 64;
    b.num_hash = 8;
    b.state_size = c.state_size;
    b.d_inner = c.d_inner;
    c.sparse = b;
    return c;
  };
  auto count = [](auto const& mixer) {
    hax::nn::ParameterStore<test_space, float> store;
    mixer.register_parameters(store, "m.");
    return long(store.count());
  };
  using M1 = hax::ssm::MambaMixer<test_space, float>;
  using M2 = hax::ssm::Mamba2Mixer<test_space, float>;
  hax::ssm::MambaConfig const m1;  // mamba.json
  Shapes const s1{64, 128, 16, 4};
  long const base1 = mamba_mixer_params(s1, 8);
  CHECK(model_params(base1, 64) == 73920);
  for (char const* arch : {"sliding_window", "dilated", "sliding_window+dilated",
                           "sliding_window+sink", "sign_bin_lsh"}) {
    CAPTURE(arch);
    long const c = count(M1(with(m1, arch)));
    CHECK(c == base1 + branch_params(s1, false));
    CHECK(model_params(c, 64) == 82368);
  }
  for (char const* arch : {"key_selection", "sign_bin_lsh+key_selection"}) {
    CAPTURE(arch);
    long const c = count(M1(with(m1, arch)));
    CHECK(c == base1 + branch_params(s1, true));
    CHECK(model_params(c, 64) == 86658);
  }
  hax::ssm::Mamba2Config const m2;  // mamba2.json
  Shapes const s2{64, 128, 32, 4};
  long const base2 = mamba2_mixer_params(s2, 8);
  CHECK(model_params(base2, 64) == 67184);
  for (char const* arch : {"sliding_window", "dilated", "sliding_window+dilated",
                           "sliding_window+sink", "sign_bin_lsh"}) {
    CAPTURE(arch);
    long const c = count(M2(with(m2, arch)));
    CHECK(c == base2 + branch_params(s2, false));
    CHECK(model_params(c, 64) == 83824);
  }
  for (char const* arch : {"key_selection", "sign_bin_lsh+key_selection"}) {
    CAPTURE(arch);
    long const c = count(M2(with(m2, arch)));
    CHECK(c == base2 + branch_params(s2, true));
    CHECK(model_params(c, 64) == 100594);
  }
}

TEMPLATE_TEST_CASE("hybrid mixer: branch widths come from the mixer or are rejected",
                   "[ssm][mamba_mixer][mamba2_mixer][hybrid]", MambaKind, Mamba2Kind) {
  using Catch::Matchers::ContainsSubstring;
  using M = typename TestType::template mixer<float>;
  auto with = [](auto edit) {
    auto c = TestType::small(4);
    c.sparse = branch_config("sign_bin_lsh+key_selection");
    edit(*c.sparse);
    return c;
  };
  {  // 0 = the mixer's widths
    M const m(with([](auto&) {}));
    CHECK(m.has_sparse_branch());
    CHECK(m.sparse_branch().config().d_inner == 8);
    CHECK(m.sparse_branch().config().state_size == 4);
  }
  {  // explicit and equal
    M const m(with([](auto& b) {
      b.d_inner = 8;
      b.state_size = 4;
    }));
    CHECK(m.sparse_branch().config().d_inner == 8);
  }
  CHECK_THROWS_WITH(M(with([](auto& b) { b.d_inner = 16; })),
                    ContainsSubstring("sparse.d_inner (16)") && ContainsSubstring("d_inner (8)"));
  CHECK_THROWS_WITH(M(with([](auto& b) { b.state_size = 16; })),
                    ContainsSubstring("sparse.state_size (16)") &&
                        ContainsSubstring("state_size (4)"));
  CHECK_THROWS_WITH(M(with([](auto& b) { b.arch = "sign_bin_lsh+bogus"; })),
                    ContainsSubstring("unknown pattern part 'bogus'"));
  CHECK_THROWS_WITH(M(with([](auto& b) { b.keys = 5; })), ContainsSubstring("key budget k (5)"));
  CHECK_FALSE(M(TestType::small(4)).has_sparse_branch());

  // step mode has no KV cache for the branch; training with key selection needs a gate_loss View
  M const m(with([](auto&) {}));
  auto store = make_store<M, float>(m, 1);
  test_space space;
  auto const state = m.make_step_state(space, 1);
  Kokkos::View<float**, Kokkos::LayoutRight, test_memory_space> xt("xt", 1, kDModel),
      yt("yt", 1, kDModel);
  CHECK_THROWS_WITH(m.step(space, store, kPrefix, state, xt, yt), ContainsSubstring("sparse"));
  act<float> x("x", 1, 8, kDModel), y("y", 1, 8, kDModel);
  CHECK_THROWS_WITH(m.forward(space, store, kPrefix, x, mask_view(), y, loss_view<float>(),
                              StepContext{}),
                    ContainsSubstring("gate_loss"));
}
