// SPDX-License-Identifier: MIT
/// \file
/// Tests of hax::models: config parsing and its errors, parameter counts against the shapes of
/// semantics.md section 2 (Mamba, Mamba2, their hybrids, Samba), and finite-difference gradient
/// checks of whole models (embedding, blocks, norm_f, tied output) in double: the stand-in mixer,
/// Mamba, the hybrids Mamba2 + sign_bin_lsh+key_selection and Mamba + sliding_window (with the
/// α-weighted gate loss for the key-score MLPs), and a tiny Samba.
#include <hax/models/config.hpp>
#include <hax/models/model.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_floating_point.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "support/compare.hpp"
#include "support/gradcheck.hpp"
#include "support/test_space.hpp"

using hax::models::Base;
using hax::models::ModelConfig;
using Catch::Matchers::ContainsSubstring;

namespace {

nlohmann::json mamba2_json() {
  return nlohmann::json{{"model_type", "mamba2"}, {"hidden_size", 64},  {"state_size", 32},
                        {"expand", 2},            {"num_heads", 8},     {"head_dim", 16},
                        {"n_groups", 1},          {"chunk_size", 256},  {"conv_kernel", 4},
                        {"num_hidden_layers", 2}, {"vocab_size", 100}, {"norm_eps", 1e-5}};
}
nlohmann::json mamba_json() {
  return nlohmann::json{{"model_type", "mamba"},  {"hidden_size", 64},  {"state_size", 16},
                        {"expand", 2},            {"intermediate_size", 128},
                        {"time_step_rank", 8},    {"conv_kernel", 4},   {"num_hidden_layers", 2},
                        {"vocab_size", 100}};
}

// Parameter counts written out from the shapes listed in semantics.md section 2, independently of
// hax::models::reference_parameter_count.
std::int64_t mamba_layer(std::int64_t d, std::int64_t di, std::int64_t n, std::int64_t r) {
  std::int64_t in_proj = d * 2 * di, conv = di * 4 + di, x_proj = di * (r + 2 * n),
               dt_proj = r * di + di, a_log = di * n, dd = di, out_proj = di * d, norm = d;
  return in_proj + conv + x_proj + dt_proj + a_log + dd + out_proj + norm;
}
std::int64_t mamba2_layer(std::int64_t d, std::int64_t di, std::int64_t n, std::int64_t h) {
  std::int64_t in_proj = d * (di + (di + 2 * n) + h), conv = (di + 2 * n) * 4 + (di + 2 * n),
               heads = 3 * h, gnorm = di, out_proj = di * d, norm = d;
  return in_proj + conv + heads + gnorm + out_proj + norm;
}

}  // namespace

TEST_CASE("models: parameter counts match semantics.md section 2", "[models]") {
  auto count = [](nlohmann::json j) {
    return hax::models::reference_parameter_count(hax::models::config_from_json(j));
  };
  // Shapes (independent arithmetic) and the table's numbers.
  std::int64_t const m1 = 2 * mamba_layer(64, 128, 16, 8) + 100 * 64 + 64;
  std::int64_t const m2 = 2 * mamba2_layer(64, 128, 32, 8) + 100 * 64 + 64;
  CHECK(m1 == 73920);
  CHECK(m2 == 67184);
  CHECK(count(mamba_json()) == m1);
  CHECK(count(mamba2_json()) == m2);

  auto j = mamba_json();
  j["hidden_size"] = 128;
  j["intermediate_size"] = 256;
  CHECK(count(j) == 2 * mamba_layer(128, 256, 16, 8) + 100 * 128 + 128);
  CHECK(count(j) == 246144);

  j = mamba2_json();
  j["hidden_size"] = 128;
  j["head_dim"] = 32;
  CHECK(count(j) == 231984);

  for (std::string arch : {"sliding_window", "dilated", "sliding_window+dilated",
                           "sliding_window+sink", "sign_bin_lsh"}) {
    j = mamba_json();
    j["sparse_arch"] = arch;
    CHECK(count(j) == 82368);
    j = mamba2_json();
    j["sparse_arch"] = arch;
    CHECK(count(j) == 83824);
  }
  for (std::string arch : {"key_selection", "sign_bin_lsh+key_selection"}) {
    j = mamba_json();
    j["sparse_arch"] = arch;
    CHECK(count(j) == 86658);
    j = mamba2_json();
    j["sparse_arch"] = arch;
    CHECK(count(j) == 100594);
  }
}

TEST_CASE("models: shipped configs parse and have the documented parameter counts",
          "[models]") {
  std::filesystem::path const dir = std::filesystem::path(__FILE__).parent_path() / ".." / ".." /
                                    ".." / "examples" / "joint_recall" / "configs";
  if (!std::filesystem::exists(dir)) {
    SKIP("configs directory not found: " << dir);
  }
  // The files carry no sparse_arch; the trainer injects it, as the reference's script does.
  auto mamba = hax::models::load_config(dir / "mamba.json");
  auto mamba2 = hax::models::load_config(dir / "mamba2.json");
  CHECK(hax::models::reference_parameter_count(mamba) == 73920);
  CHECK(hax::models::reference_parameter_count(mamba2) == 67184);
  mamba.sparse_arch = mamba2.sparse_arch = "sign_bin_lsh+key_selection";
  CHECK(hax::models::reference_parameter_count(mamba) == 86658);
  CHECK(hax::models::reference_parameter_count(mamba2) == 100594);
  CHECK(hax::models::reference_parameter_count(
            hax::models::load_config(dir / "mamba_double_size.json")) == 246144);
  CHECK(hax::models::reference_parameter_count(
            hax::models::load_config(dir / "mamba2_double_size.json")) == 231984);
  // The built-in copies the command line uses are the files.
  using hax::models::config_to_json;
  using hax::models::reference_config;
  CHECK(config_to_json(reference_config(Base::mamba, false)) ==
        config_to_json(hax::models::load_config(dir / "mamba.json")));
  CHECK(config_to_json(reference_config(Base::mamba, true)) ==
        config_to_json(hax::models::load_config(dir / "mamba_double_size.json")));
  CHECK(config_to_json(reference_config(Base::mamba2, false)) ==
        config_to_json(hax::models::load_config(dir / "mamba2.json")));
  CHECK(config_to_json(reference_config(Base::mamba2, true)) ==
        config_to_json(hax::models::load_config(dir / "mamba2_double_size.json")));
  CHECK(config_to_json(reference_config(Base::samba, false)) ==
        config_to_json(hax::models::load_config(dir / "samba.json")));
  auto const samba = hax::models::load_config(dir / "samba.json");
  CHECK(samba.base == Base::samba);
  CHECK(samba.num_hidden_layers == 4);
  CHECK(samba.hidden_size == 32);
}

TEST_CASE("models: config errors name the field", "[models]") {
  auto j = mamba2_json();
  j["hiden_size"] = 64;
  CHECK_THROWS_WITH(hax::models::config_from_json(j), ContainsSubstring("unknown field \"hiden_size\""));
  j = mamba2_json();
  j["head_dim"] = 15;
  CHECK_THROWS_WITH(hax::models::config_from_json(j),
                    ContainsSubstring("num_heads (8) * head_dim (15)"));
  j = mamba_json();
  j["intermediate_size"] = 100;
  CHECK_THROWS_WITH(hax::models::config_from_json(j), ContainsSubstring("intermediate_size (100)"));
  j = mamba2_json();
  j["sparse_arch"] = "sliding_window+magic";
  CHECK_THROWS_WITH(hax::models::config_from_json(j), ContainsSubstring("unknown pattern \"magic\""));
  j = mamba2_json();
  j["sparse_arch"] = "sliding_window+dilated";
  j["sparse_keys"] = 63;
  CHECK_THROWS_WITH(hax::models::config_from_json(j), ContainsSubstring("divisible"));
  j = mamba2_json();
  j["model_type"] = "transformer";
  CHECK_THROWS_AS(hax::models::config_from_json(j), hax::invalid_argument);
  j = mamba2_json();
  j["semantics"] = "acausal";
  CHECK_THROWS_WITH(hax::models::config_from_json(j), ContainsSubstring("semantics"));
  j = mamba2_json();
  j["hidden_size"] = "64";
  CHECK_THROWS_WITH(hax::models::config_from_json(j), ContainsSubstring("\"hidden_size\" must be an integer"));
}

TEST_CASE("models: config JSON round trip", "[models]") {
  auto j = mamba2_json();
  j["sparse_arch"] = "sign_bin_lsh+key_selection";
  j["semantics"] = "reference";
  auto const c = hax::models::config_from_json(j);
  auto const back = hax::models::config_from_json(hax::models::config_to_json(c));
  CHECK(hax::models::config_to_json(back) == hax::models::config_to_json(c));
  CHECK(back.sparse_arch == "sign_bin_lsh+key_selection");
  CHECK(back.semantics == "reference");
}

TEST_CASE("models: model with the stand-in mixer has the expected names and count", "[models]") {
  using space = hax::test::test_space;
  ModelConfig c;
  c.base = Base::mamba;
  c.vocab_size = 11;
  c.hidden_size = 6;
  c.intermediate_size = 12;
  c.num_hidden_layers = 3;
  hax::models::Model<space, float> model(c, 1);
  // embedding + per layer (norm + W) + norm_f
  CHECK(model.parameter_count() == 11 * 6 + 3 * (6 + 36) + 6);
  CHECK(model.store().contains("embeddings.weight"));
  CHECK(model.store().contains("layers.2.norm.weight"));
  CHECK(model.store().contains("layers.0.mixer.weight"));
  CHECK(model.store().contains("norm_f.weight"));
  c.base = Base::samba;
  c.num_hidden_layers = 4;  // a valid Samba layout (attention on layers 1 and 3, 4 heads of 2),
  c.hidden_size = 8;        // but the model is built with the wrong mixer
  c.intermediate_size = 16;
  CHECK_THROWS_WITH((hax::models::Model<space, float>(c, 1)),
                    ContainsSubstring("needs the Samba model"));
}

TEST_CASE("models: gradient check of the whole model in double", "[models]") {
  using space = hax::test::test_space;
  using Model = hax::models::Model<space, double>;
  ModelConfig c;
  c.base = Base::mamba;
  c.vocab_size = 7;
  c.hidden_size = 4;
  c.intermediate_size = 8;
  c.num_hidden_layers = 2;
  c.initializer_range = 0.5;
  Model model(c, 3);
  space const s;
  int const B = 2, L = 3;
  auto ws = model.make_workspace(s, B, L);
  Kokkos::View<int**, Kokkos::LayoutRight, hax::test::test_memory_space> tokens("tokens", B, L);
  hax::test::from_vector(tokens, {1, 5, 2, 6, 0, 3});
  Model::set_pad_mask(s, ws, tokens, -1);
  // Randomise the norm weights too (they start at one), so their gradients are generic.
  auto params = hax::test::fill_random(model.store().values(), 11, -0.8, 0.8);
  std::vector<double> const dy = hax::test::random_vector(B * L * c.vocab_size, 12);
  hax::models::StepContext ctx;

  auto loss = [&](std::vector<double> const& p) {
    hax::test::from_vector(model.store().values(), p);
    model.forward(s, ws, tokens, ctx);
    auto const y = hax::test::to_vector(ws.logits);
    double l = 0;
    for (std::size_t i = 0; i < y.size(); ++i) l += dy[i] * y[i];
    return l;
  };
  loss(params);
  hax::test::from_vector(ws.dlogits, dy);
  model.store().zero_grad(s);
  model.backward(s, ws, tokens, ctx);
  auto const analytic = hax::test::to_vector(model.store().grads());
  hax::test::check_gradient(params, analytic, loss, "model parameters", 1e-6, 1e-8);
}

#if HAX_MODELS_HAS_MAMBA && HAX_MODELS_HAS_SPARSE_BRANCH
TEST_CASE("models: Mamba model parameter counts match semantics.md section 2", "[models]") {
  using space = hax::test::test_space;
  using Mamba = hax::ssm::MambaMixer<space, float>;
  auto c = hax::models::reference_config(Base::mamba, false);
  CHECK(hax::models::Model<space, float, Mamba>(c, 1).parameter_count() ==
        2 * mamba_layer(64, 128, 16, 8) + 100 * 64 + 64);
  c = hax::models::reference_config(Base::mamba, true);
  CHECK(hax::models::Model<space, float, Mamba>(c, 1).parameter_count() == 246144);
  // The hybrids (semantics.md section 2's table).
  c = hax::models::reference_config(Base::mamba, false);
  c.sparse_arch = "sliding_window+dilated";
  CHECK(hax::models::Model<space, float, Mamba>(c, 1).parameter_count() == 82368);
  c.sparse_arch = "sign_bin_lsh+key_selection";
  hax::models::Model<space, float, Mamba> hax_mamba(c, 1);
  CHECK(hax_mamba.parameter_count() == 86658);
  CHECK(hax_mamba.store().contains("layers.1.mixer.E"));
  CHECK(hax_mamba.store().contains("layers.0.mixer.xx_proj.weight"));
  // A Mamba model refuses a config of another base.
  CHECK_THROWS_WITH((hax::models::Model<space, float, Mamba>(
                        hax::models::reference_config(Base::mamba2, false), 1)),
                    ContainsSubstring("needs base mamba"));
}

TEST_CASE("models: Mamba2 model parameter counts match semantics.md section 2", "[models]") {
  using space = hax::test::test_space;
  using Mamba2 = hax::ssm::Mamba2Mixer<space, float>;
  auto c = hax::models::reference_config(Base::mamba2, false);
  CHECK(hax::models::Model<space, float, Mamba2>(c, 1).parameter_count() == 67184);
  c.sparse_arch = "sliding_window";
  CHECK(hax::models::Model<space, float, Mamba2>(c, 1).parameter_count() == 83824);
  c.sparse_arch = "sign_bin_lsh+key_selection";
  CHECK(hax::models::Model<space, float, Mamba2>(c, 1).parameter_count() == 100594);
  CHECK(hax::models::Model<space, float, Mamba2>(hax::models::reference_config(Base::mamba2, true),
                                                 1)
            .parameter_count() == 231984);
}

TEST_CASE("models: gradient check of a tiny Mamba model in double", "[models][slow]") {
  using space = hax::test::test_space;
  using Model = hax::models::Model<space, double, hax::ssm::MambaMixer<space, double>>;
  ModelConfig c;
  c.base = Base::mamba;
  c.vocab_size = 7;
  c.hidden_size = 4;
  c.expand = 2;
  c.intermediate_size = 8;
  c.state_size = 2;
  c.time_step_rank = 2;
  c.num_hidden_layers = 2;
  Model model(c, 3);
  space const s;
  int const B = 2, L = 4;
  auto ws = model.make_workspace(s, B, L);
  Kokkos::View<int**, Kokkos::LayoutRight, hax::test::test_memory_space> tokens("tokens", B, L);
  hax::test::from_vector(tokens, {1, 5, 2, 6, 0, 3, 4, 4});
  Model::set_pad_mask(s, ws, tokens, -1);
  auto params = hax::test::to_vector(model.store().values());
  std::vector<double> const dy = hax::test::random_vector(B * L * c.vocab_size, 12);
  hax::models::StepContext ctx;
  auto loss = [&](std::vector<double> const& p) {
    hax::test::from_vector(model.store().values(), p);
    model.forward(s, ws, tokens, ctx);
    auto const y = hax::test::to_vector(ws.logits);
    double l = 0;
    for (std::size_t i = 0; i < y.size(); ++i) l += dy[i] * y[i];
    return l;
  };
  loss(params);
  hax::test::from_vector(ws.dlogits, dy);
  model.store().zero_grad(s);
  model.backward(s, ws, tokens, ctx);
  auto const analytic = hax::test::to_vector(model.store().grads());
  hax::test::check_gradient(params, analytic, loss, "Mamba model parameters", 1e-5, 1e-7);
}
#endif

#if HAX_MODELS_HAS_MAMBA && HAX_MODELS_HAS_MAMBA2 && HAX_MODELS_HAS_SPARSE_BRANCH
namespace {

bool is_score_mlp(std::string const& name) { return name.find("ks_mlp.") != std::string::npos; }

/// Finite-difference check of every parameter gradient of a whole model in double, on a batch
/// with a right-padded row, in training (gate loss on). The loss is Σ dy ⊙ logits, plus
/// α · Σ_layers gate loss for the key-score MLPs: the ranking loss trains only them (the
/// selection it drives is piecewise constant, and the reference detaches the rest).
template <class Mixer>
void check_model_gradients(ModelConfig const& c, std::uint64_t seed) {
  using space = hax::test::test_space;
  using Model = hax::models::Model<space, double, Mixer>;
  Model model(c, seed);
  space const s;
  int const B = 2, L = 9, pad = 0;
  auto ws = model.make_workspace(s, B, L);
  Kokkos::View<int**, Kokkos::LayoutRight, hax::test::test_memory_space> tokens("tokens", B, L);
  // row 1 is right-padded after 6 tokens
  hax::test::from_vector(tokens, {1, 5, 2, 6, 3, 3, 4, 1, 2, /**/ 4, 4, 6, 1, 5, 2, 0, 0, 0});
  Model::set_pad_mask(s, ws, tokens, pad);
  // Generic values: norm weights off one, branch parameters (E, xx_proj, score MLP) in ±0.6 so the
  // MLP's ReLUs are in both states.
  auto params = hax::test::to_vector(model.store().values());
  std::uint64_t rs = seed * 100;
  for (auto const& e : model.store().entries()) {
    bool const branch = e.name.ends_with(".E") || e.name.find("xx_proj") != std::string::npos ||
                        is_score_mlp(e.name);
    bool const norm = e.name.find("norm") != std::string::npos;
    if (!branch && !norm) continue;
    auto const v = hax::test::random_vector(e.size(), ++rs, branch ? -0.6 : 0.5, branch ? 0.6 : 1.5);
    std::copy(v.begin(), v.end(), params.begin() + e.offset);
  }
  std::vector<double> const dy = hax::test::random_vector(B * L * c.vocab_size, 12);
  hax::models::StepContext ctx;  // fixed seed and step: the same projections every forward
  ctx.seed = 5;
  ctx.step = 2;
  ctx.training = true;
  ctx.gate_loss_weight = 0.3;  // not the default, so that a missing α would show
  auto losses = [&](std::vector<double> const& p) {
    hax::test::from_vector(model.store().values(), p);
    model.forward(s, ws, tokens, ctx);
    auto const y = hax::test::to_vector(ws.logits);
    double l = 0;
    for (std::size_t i = 0; i < y.size(); ++i) l += dy[i] * y[i];
    return std::pair{l, hax::test::to_vector(ws.gate_loss)[0]};
  };
  auto const [l0, gate0] = losses(params);
  hax::test::from_vector(ws.dlogits, dy);
  model.store().zero_grad(s);
  model.backward(s, ws, tokens, ctx);
  auto const g = hax::test::to_vector(model.store().grads());

  std::vector<std::size_t> path, mlp;
  for (auto const& e : model.store().entries()) {
    auto& into = is_score_mlp(e.name) ? mlp : path;
    for (std::size_t i = 0; i < e.size(); ++i) into.push_back(e.offset + i);
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
          auto p = params;
          for (std::size_t i = 0; i < idx.size(); ++i) p[idx[i]] = v[i];
          auto const [l, gl] = losses(p);
          return with_gate ? l + ctx.gate_loss_weight * gl : l;
        },
        what, 1e-5, 1e-7);
  };
  check_subset(path, false, "model parameters (embedding, blocks, norm_f)");
  if (c.has_key_selection()) {
    REQUIRE(!mlp.empty());
    CHECK(gate0 > 0.0);  // the ranking loss is on in training
    check_subset(mlp, true, "key-score MLPs (alpha * gate loss)");
  } else {
    REQUIRE(mlp.empty());
    CHECK(gate0 == 0.0);
  }
  // The branch's own parameters carry gradient in every layer.
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    auto const& e = model.store().entry("layers." + std::to_string(i) + ".mixer.xx_proj.weight");
    CHECK(hax::test::max_abs(std::vector<double>(g.begin() + e.offset,
                                                 g.begin() + e.offset + e.size())) > 1e-6);
  }
}

ModelConfig tiny_hybrid(Base base, std::string arch) {
  ModelConfig c;
  c.base = base;
  c.vocab_size = 7;
  c.hidden_size = 4;
  c.expand = 2;
  c.intermediate_size = 8;
  c.state_size = 2;
  c.time_step_rank = 2;
  c.num_heads = 2;
  c.head_dim = 4;
  c.chunk_size = 4;
  c.num_hidden_layers = 2;
  c.sparse_arch = std::move(arch);
  c.sparse_keys = 4;
  c.num_hash = 2;
  c.data_max_length = 8;
  c.validate();
  return c;
}

}  // namespace

TEST_CASE("models: gradient check of a tiny Mamba2 + sign_bin_lsh+key_selection model",
          "[models][hybrid]") {
  using space = hax::test::test_space;
  check_model_gradients<hax::ssm::Mamba2Mixer<space, double>>(
      tiny_hybrid(Base::mamba2, "sign_bin_lsh+key_selection"), 3);
}

TEST_CASE("models: gradient check of a tiny Mamba + sliding_window model", "[models][hybrid]") {
  using space = hax::test::test_space;
  check_model_gradients<hax::ssm::MambaMixer<space, double>>(
      tiny_hybrid(Base::mamba, "sliding_window"), 4);
}

TEST_CASE("models: the hybrid's gate loss is the sum over layers, only in training",
          "[models][hybrid]") {
  using space = hax::test::test_space;
  using Model = hax::models::Model<space, double, hax::ssm::Mamba2Mixer<space, double>>;
  auto const c = tiny_hybrid(Base::mamba2, "key_selection");
  Model model(c, 7);
  space const s;
  auto ws = model.make_workspace(s, 2, 9);
  Kokkos::View<int**, Kokkos::LayoutRight, hax::test::test_memory_space> tokens("tokens", 2, 9);
  hax::test::from_vector(tokens, {1, 5, 2, 6, 3, 3, 4, 1, 2, 4, 4, 6, 1, 5, 2, 3, 6, 5});
  Model::set_pad_mask(s, ws, tokens, -1);
  hax::models::StepContext ctx;
  ctx.training = true;
  model.forward(s, ws, tokens, ctx);
  double const total = hax::test::to_vector(ws.gate_loss)[0];
  // Per layer: the mixer's own gate loss on the block's normed input, from a fresh scalar.
  double by_layer = 0;
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    Kokkos::View<double, hax::test::test_memory_space> one("one");
    auto ci = ctx;
    ci.layer = i;
    auto const mixer = hax::models::MixerFactory<hax::ssm::Mamba2Mixer<space, double>>::make(c, i);
    Kokkos::View<double***, Kokkos::LayoutRight, hax::test::test_memory_space> y("y", 2, 9,
                                                                                c.hidden_size);
    mixer.forward(s, model.store(), "layers." + std::to_string(i) + ".mixer.", ws.normed[i],
                  ws.pad_mask, y, one, ci);
    by_layer += hax::test::to_vector(one)[0];
  }
  CHECK(total > 0.0);
  CHECK_THAT(total, Catch::Matchers::WithinRel(by_layer, 1e-12));
  ctx.training = false;
  model.forward(s, ws, tokens, ctx);
  CHECK(hax::test::to_vector(ws.gate_loss)[0] == 0.0);
}

namespace {

/// Under causal semantics the logits at positions < t never depend on the tokens at t and later:
/// the whole model (embedding, SSM, every plan step of the sparse branch, attention) is run on a
/// batch, then again with every token from t on replaced, in training (plan steps with their
/// ranking loss) and in evaluation. A leak of a later token into an earlier logit fails it.
template <class Mixer>
void check_model_is_causal(ModelConfig const& c) {
  using space = hax::test::test_space;
  using Model = hax::models::Model<space, double, Mixer>;
  Model model(c, 11);
  space const s;
  int const B = 2, L = 16, V = c.vocab_size;
  auto ws = model.make_workspace(s, B, L);
  Kokkos::View<int**, Kokkos::LayoutRight, hax::test::test_memory_space> tokens("tokens", B, L);
  std::vector<double> base(B * L);
  for (std::size_t i = 0; i < base.size(); ++i) { base[i] = static_cast<double>((i * 5 + 3) % V); }
  for (bool const training : {true, false}) {
    hax::models::StepContext ctx;
    ctx.seed = 9;
    ctx.step = 4;
    ctx.training = training;
    auto logits_of = [&](std::vector<double> const& tok) {
      hax::test::from_vector(tokens, tok);
      Model::set_pad_mask(s, ws, tokens, -1);
      model.forward(s, ws, tokens, ctx);
      return hax::test::to_vector(ws.logits);
    };
    auto const y0 = logits_of(base);
    for (int t : {3, 8, 13}) {
      CAPTURE(training, t);
      auto changed = base;
      for (int b = 0; b < B; ++b) {
        for (int i = t; i < L; ++i) { changed[b * L + i] = static_cast<double>((i * 3 + b + 1) % V); }
      }
      auto const y1 = logits_of(changed);
      std::vector<double> before0, before1, after0, after1;
      for (int b = 0; b < B; ++b) {
        for (int i = 0; i < L; ++i) {
          for (int v = 0; v < V; ++v) {
            std::size_t const at = (static_cast<std::size_t>(b) * L + i) * V + v;
            (i < t ? before0 : after0).push_back(y0[at]);
            (i < t ? before1 : after1).push_back(y1[at]);
          }
        }
      }
      hax::test::check_close(before1, before0, 1e-12, 1e-13, "logits before the changed tokens");
      CHECK(after1 != after0);  // the change itself is visible (the test can fail)
    }
  }
}

}  // namespace

namespace {

/// The output head at chosen positions (a workspace with output rows) against the head at every
/// position: the logits at the positions are the full logits there (0 on empty slots), and a
/// backward from dlogits at the positions gives the parameter gradients of the full backward
/// from those dlogits scattered to their positions (zero elsewhere). Random dlogits on the empty
/// slots must change nothing. Training context, so the gate loss's gradients are included.
template <class Mixer>
void check_output_rows(ModelConfig const& c) {
  using space = hax::test::test_space;
  using Model = hax::models::Model<space, double, Mixer>;
  using mem = hax::test::test_memory_space;
  Model model(c, 5);
  space const s;
  int const B = 2, L = 9, R = 4, V = c.vocab_size;
  std::vector<int> const pos = {2, 5, 8, -1, 0, 3, -1, -1};
  auto full = model.make_workspace(s, B, L);
  auto rows = model.make_workspace(s, B, L, R);
  REQUIRE(rows.logits.extent(1) == static_cast<std::size_t>(R));
  Kokkos::View<int**, Kokkos::LayoutRight, mem> tokens("tokens", B, L), positions("positions", B, R);
  hax::test::from_vector(tokens, {1, 5, 2, 6, 3, 3, 4, 1, 2, 4, 4, 6, 1, 5, 2, 3, 6, 5});
  hax::test::from_vector(positions, std::vector<double>(pos.begin(), pos.end()));
  hax::test::fill_random(model.store().values(), 17, -0.8, 0.8);
  Model::set_pad_mask(s, full, tokens, -1);
  Model::set_pad_mask(s, rows, tokens, -1);
  hax::models::StepContext ctx;
  ctx.seed = 3;
  ctx.step = 2;
  ctx.training = true;
  ctx.gate_loss_weight = 0.1;

  model.forward(s, full, tokens, ctx);
  model.forward(s, rows, tokens, positions, ctx);
  auto const y_full = hax::test::to_vector(full.logits);
  auto const y_rows = hax::test::to_vector(rows.logits);
  std::vector<double> want(static_cast<std::size_t>(B) * R * V, 0.0);
  auto const dy_rows = hax::test::random_vector(B * R * V, 18);
  std::vector<double> dy_full(static_cast<std::size_t>(B) * L * V, 0.0);
  for (int b = 0; b < B; ++b) {
    for (int r = 0; r < R; ++r) {
      int const t = pos[b * R + r];
      if (t < 0) continue;
      for (int v = 0; v < V; ++v) {
        want[(b * R + r) * V + v] = y_full[(b * L + t) * V + v];
        dy_full[(b * L + t) * V + v] = dy_rows[(b * R + r) * V + v];
      }
    }
  }
  hax::test::check_close(y_rows, want, 1e-13, 1e-14, "logits at the positions");
  CHECK(hax::test::to_vector(rows.gate_loss) == hax::test::to_vector(full.gate_loss));

  hax::test::from_vector(full.dlogits, dy_full);
  hax::test::fill_random(full.dh, 19);  // garbage: the head's backward must overwrite dh
  hax::test::fill_random(rows.dh, 20);
  model.store().zero_grad(s);
  model.backward(s, full, tokens, ctx);
  auto const g_full = hax::test::to_vector(model.store().grads());
  hax::test::from_vector(rows.dlogits, dy_rows);
  model.store().zero_grad(s);
  model.backward(s, rows, tokens, positions, ctx);
  auto const g_rows = hax::test::to_vector(model.store().grads());
  REQUIRE(hax::test::max_abs(g_full) > 0.0);
  hax::test::check_close(g_rows, g_full, 1e-11, 1e-13, "parameter gradients");

  using Catch::Matchers::ContainsSubstring;
  CHECK_THROWS_WITH(model.forward(s, rows, tokens, ctx),
                    ContainsSubstring("hax::models::Model::forward") &&
                        ContainsSubstring("4 output rows"));
  CHECK_THROWS_WITH(model.forward(s, full, tokens, positions, ctx),
                    ContainsSubstring("made without output rows"));
  Kokkos::View<int**, Kokkos::LayoutRight, mem> wrong("wrong", B, R + 1);
  CHECK_THROWS_WITH(model.backward(s, rows, tokens, wrong, ctx),
                    ContainsSubstring("hax::models::Model::backward") &&
                        ContainsSubstring("positions (2, 5)") && ContainsSubstring("(2, 4)"));
  CHECK_THROWS_WITH(model.make_workspace(s, B, L, L + 1),
                    ContainsSubstring("output_rows (10)") && ContainsSubstring("length = 9"));
}

}  // namespace

TEST_CASE("models: the output head at chosen positions equals the full head there",
          "[models][hybrid]") {
  using space = hax::test::test_space;
  check_output_rows<hax::ssm::Mamba2Mixer<space, double>>(
      tiny_hybrid(Base::mamba2, "sign_bin_lsh+key_selection"));
  check_output_rows<hax::models::LinearMixer<space, double>>(tiny_hybrid(Base::mamba2, ""));
}

TEST_CASE("models: under causal semantics no logit depends on later tokens (Mamba2 + HAX)",
          "[models][hybrid]") {
  using space = hax::test::test_space;
  check_model_is_causal<hax::ssm::Mamba2Mixer<space, double>>(
      tiny_hybrid(Base::mamba2, "sign_bin_lsh+key_selection"));
}

TEST_CASE("models: under causal semantics no logit depends on later tokens (Mamba + HAX, Mamba2 + dilated)",
          "[models][hybrid]") {
  using space = hax::test::test_space;
  check_model_is_causal<hax::ssm::MambaMixer<space, double>>(tiny_hybrid(Base::mamba, "sign_bin_lsh+key_selection"));
  check_model_is_causal<hax::ssm::Mamba2Mixer<space, double>>(tiny_hybrid(Base::mamba2, "sliding_window+dilated"));
}
#endif

#if HAX_MODELS_HAS_SAMBA
namespace {

ModelConfig tiny_samba() {
  ModelConfig c = hax::models::reference_config(Base::samba, false);
  c.vocab_size = 7;
  c.hidden_size = 4;
  c.intermediate_size = 8;
  c.state_size = 2;
  c.time_step_rank = 2;
  c.attn_num_heads = 2;  // head width 2
  c.attn_window = 3;
  c.mlp_width = 6;
  c.initializer_range = 0.3;
  c.validate();
  return c;
}

}  // namespace

TEST_CASE("models: Samba model names and parameter count (semantics.md section 2)",
          "[models][samba]") {
  using space = hax::test::test_space;
  using Samba = hax::models::Model<space, float, hax::models::SambaMixer<space, float>>;
  auto const c = hax::models::reference_config(Base::samba, false);
  // Written out from section 2: embedding 100×32, norm_f 32; per layer two norms (32 each) and a
  // SwiGLU 32→256 (3 × 32 × 256); Mamba layers 0, 2 (d_inner 64, N 16, dt_rank 8); attention
  // layers 1, 3 (4 × 32 × 32).
  std::int64_t const mamba = 2 * 64 * 32 + (64 * 4 + 64) + (8 + 2 * 16) * 64 + (64 * 8 + 64) +
                             64 * 16 + 64 + 32 * 64;
  std::int64_t const expected = 100 * 32 + 32 + 4 * (2 * 32 + 3 * 32 * 256) + 2 * mamba +
                                2 * 4 * 32 * 32;
  CHECK(expected == 131360);
  CHECK(hax::models::reference_parameter_count(c) == expected);
  Samba model(c, 1);
  CHECK(static_cast<std::int64_t>(model.parameter_count()) == expected);
  for (char const* name :
       {"embeddings.weight", "layers.0.mixer_norm.weight", "layers.0.mixer.in_proj.weight",
        "layers.0.mixer.A_log", "layers.0.mlp_norm.weight", "layers.0.mlp.gate_proj.weight",
        "layers.1.mixer.q_proj.weight", "layers.1.mixer.o_proj.weight",
        "layers.3.mlp.down_proj.weight", "layers.2.mixer.dt_proj.bias", "norm_f.weight"}) {
    CAPTURE(name);
    CHECK(model.store().contains(name));
  }
  CHECK_FALSE(model.store().contains("layers.1.mixer.in_proj.weight"));
  CHECK_FALSE(model.store().contains("layers.0.norm.weight"));
  CHECK(model.store().entry("layers.0.mlp.up_proj.weight").shape ==
        std::vector<std::size_t>{256, 32});
  // Samba has no sparse variant (the reference raises too).
  auto bad = c;
  bad.sparse_arch = "sliding_window";
  CHECK_THROWS_WITH((Samba(bad, 1)), ContainsSubstring("not supported with samba"));
  // A bad attention layout names the field.
  bad = c;
  bad.attn_layers = {1, 4};
  CHECK_THROWS_WITH((Samba(bad, 1)), ContainsSubstring("attn.layers: layer 4"));
  auto j = hax::models::config_to_json(c);
  j["attn"]["num_kv_heads"] = 2;
  CHECK_THROWS_WITH(hax::models::config_from_json(j), ContainsSubstring("num_kv_heads"));
  j = hax::models::config_to_json(c);
  j["attn"]["window"] = 2;
  CHECK_THROWS_WITH(hax::models::config_from_json(j), ContainsSubstring("\"attn.window\""));
}

TEST_CASE("models: gradient check of a tiny Samba model in double", "[models][samba]") {
  using space = hax::test::test_space;
  using Model = hax::models::Model<space, double, hax::models::SambaMixer<space, double>>;
  auto const c = tiny_samba();
  Model model(c, 5);
  space const s;
  int const B = 2, L = 6;
  auto ws = model.make_workspace(s, B, L);
  Kokkos::View<int**, Kokkos::LayoutRight, hax::test::test_memory_space> tokens("tokens", B, L);
  hax::test::from_vector(tokens, {1, 5, 2, 6, 3, 4, /**/ 4, 6, 1, 5, 0, 0});
  Model::set_pad_mask(s, ws, tokens, 0);
  auto params = hax::test::to_vector(model.store().values());
  std::uint64_t rs = 500;
  for (auto const& e : model.store().entries()) {  // norm weights off one
    if (e.name.find("norm") == std::string::npos) continue;
    auto const v = hax::test::random_vector(e.size(), ++rs, 0.5, 1.5);
    std::copy(v.begin(), v.end(), params.begin() + e.offset);
  }
  std::vector<double> const dy = hax::test::random_vector(B * L * c.vocab_size, 13);
  hax::models::StepContext ctx;
  auto loss = [&](std::vector<double> const& p) {
    hax::test::from_vector(model.store().values(), p);
    model.forward(s, ws, tokens, ctx);
    auto const y = hax::test::to_vector(ws.logits);
    double l = 0;
    for (std::size_t i = 0; i < y.size(); ++i) l += dy[i] * y[i];
    return l;
  };
  loss(params);
  CHECK(hax::test::to_vector(ws.gate_loss)[0] == 0.0);
  hax::test::from_vector(ws.dlogits, dy);
  model.store().zero_grad(s);
  model.backward(s, ws, tokens, ctx);
  auto const analytic = hax::test::to_vector(model.store().grads());
  hax::test::check_gradient(params, analytic, loss, "Samba model parameters", 1e-5, 1e-7);
  // Both kinds of layer carry gradient.
  for (char const* name : {"layers.0.mixer.in_proj.weight", "layers.1.mixer.q_proj.weight",
                           "layers.1.mlp.down_proj.weight"}) {
    auto const& e = model.store().entry(name);
    CAPTURE(name);
    CHECK(hax::test::max_abs(std::vector<double>(analytic.begin() + e.offset,
                                                 analytic.begin() + e.offset + e.size())) > 1e-6);
  }
}
#endif
