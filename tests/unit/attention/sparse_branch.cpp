// SPDX-License-Identifier: MIT
// Tests of hax::attn::SparseBranch: device vs the serial reference for every arch name in both
// semantics (outputs, ranking loss, accumulated dx, parameter gradients), finite-difference
// gradient checks in double, padding invariance in `causal`, evaluation determinism, bad configs.
#include <hax/attention/sparse_branch.hpp>
#include <hax/core/error.hpp>
#include <hax/reference/attention/sparse_branch.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <string>
#include <vector>

#include "support/compare.hpp"
#include "support/gradcheck.hpp"
#include "support/test_space.hpp"

namespace {

using hax::attn::Semantics;
using hax::attn::SparseBranch;
using hax::attn::SparseBranchConfig;
using hax::attn::StepContext;
using hax::test::test_memory_space;
using hax::test::test_space;

template <class T>
using v2 = Kokkos::View<T**, Kokkos::LayoutRight, test_memory_space>;
template <class T>
using v3 = Kokkos::View<T***, Kokkos::LayoutRight, test_memory_space>;
template <class T>
using v0 = Kokkos::View<T, Kokkos::LayoutRight, test_memory_space>;

using Store = hax::nn::ParameterStore<test_space, double>;
using Branch = SparseBranch<test_space, double>;

std::string const prefix = "layers.0.mixer.";

/// A finalized store with the branch's parameters set to random values (biases included, so that
/// the MLP's ReLUs are not all in the same state).
Store make_store(Branch const& branch, std::uint64_t seed) {
  Store store;
  branch.register_parameters(store, prefix);
  test_space space;
  store.finalize(space);
  hax::test::fill_random(store.values(), seed, -0.6, 0.6);
  return store;
}

std::vector<double> value_of(Store const& store, std::string const& name, int rank) {
  return rank == 1 ? hax::test::to_vector(store.value<1>(prefix + name)) : hax::test::to_vector(store.value<2>(prefix + name));
}
std::vector<double> grad_of(Store const& store, std::string const& name, int rank) {
  return rank == 1 ? hax::test::to_vector(store.grad<1>(prefix + name)) : hax::test::to_vector(store.grad<2>(prefix + name));
}

hax::reference::attn::SparseBranchParams<double> reference_params(Branch const& branch, Store const& store) {
  hax::reference::attn::SparseBranchParams<double> p;
  p.xx_proj = value_of(store, "xx_proj.weight", 2);
  if (branch.has_key_selection()) {
    int const n2 = 2 * branch.config().state_size;
    p.mlp.D = p.mlp.H = n2;
    p.mlp.w1 = value_of(store, "ks_mlp.0.weight", 2);
    p.mlp.b1 = value_of(store, "ks_mlp.0.bias", 1);
    p.mlp.w2 = value_of(store, "ks_mlp.2.weight", 2);
    p.mlp.b2 = value_of(store, "ks_mlp.2.bias", 1);
    p.mlp.w3 = value_of(store, "ks_mlp.4.weight", 2);
    p.mlp.b3 = value_of(store, "ks_mlp.4.bias", 1);
  }
  return p;
}

/// Right padding: sequence b has lengths[b] real tokens.
std::vector<int> right_pad_mask(std::vector<int> const& lengths, int L) {
  std::vector<int> m(lengths.size() * L, 0);
  for (std::size_t b = 0; b < lengths.size(); ++b) {
    for (int i = 0; i < lengths[b]; ++i) { m[b * L + i] = 1; }
  }
  return m;
}

std::vector<double> as_double(std::vector<int> const& v) { return {v.begin(), v.end()}; }

SparseBranchConfig small_config(std::string arch, Semantics semantics) {
  SparseBranchConfig c;
  c.arch = std::move(arch);
  c.keys = 8;
  c.num_hash = 2;
  c.state_size = 4;
  c.d_inner = 6;
  c.semantics = semantics;
  c.max_length = 16;
  return c;
}

}  // namespace

TEST_CASE("sparse branch matches the reference for every arch in both semantics", "[attention][sparse_branch]") {
  auto const arch = GENERATE(as<std::string>{}, "sliding_window", "dilated", "sliding_window+dilated",
                             "sliding_window+sink", "sign_bin_lsh", "argmax_lsh", "key_selection",
                             "sign_bin_lsh+key_selection", "full");
  auto const semantics = GENERATE(Semantics::causal, Semantics::reference);
  bool const training = GENERATE(true, false);
  CAPTURE(arch, semantics == Semantics::causal, training);
  int const B = 2, L = 20;
  auto const cfg = small_config(arch, semantics);
  Branch const branch(cfg);
  auto const store = make_store(branch, 11);
  auto const params = reference_params(branch, store);
  test_space space;

  v3<double> x("x", B, L, cfg.d_inner), attn("attn", B, L, cfg.d_inner), dattn("dattn", B, L, cfg.d_inner),
      dx("dx", B, L, cfg.d_inner);
  v2<int> mask("mask", B, L);
  v0<double> gate("gate");
  auto const hx = hax::test::fill_random(x, 1);
  auto const hdattn = hax::test::fill_random(dattn, 2);
  auto const dx0 = hax::test::fill_random(dx, 3);
  auto const valid = right_pad_mask({L, L - 5}, L);
  hax::test::from_vector(mask, as_double(valid));
  Kokkos::deep_copy(gate, 0.25);  // gate_loss accumulates onto what is there
  StepContext ctx;
  ctx.seed = 7;
  ctx.step = 3;
  ctx.layer = 1;
  ctx.training = training;

  auto const saved = branch.forward(space, store, prefix, x, mask, attn, gate, ctx);
  branch.backward(space, store, prefix, saved, dattn, dx, ctx);
  space.fence();

  auto const ref = hax::reference::attn::sparse_branch_forward(cfg, params, hx, valid, B, L, ctx);
  auto const g = hax::reference::attn::sparse_branch_backward(cfg, params, ref, hx, valid, hdattn, B, L, ctx);
  double const rtol = 1e-9, atol = 1e-11;
  auto const attn_v = hax::test::to_vector(attn);
  REQUIRE(hax::test::max_abs(attn_v) > 0.0);
  hax::test::check_close(attn_v, ref.attn, rtol, atol, "attn");
  bool const ranking = training && branch.has_key_selection();
  CHECK(saved.ranking == ranking);
  CHECK(ref.ranking == ranking);
  if (ranking) { REQUIRE(ref.gate_loss > 0.0); }
  hax::test::check_close(hax::test::to_vector(gate), {0.25 + ref.gate_loss}, rtol, atol, "gate_loss");
  std::vector<double> dx_expected(dx0.size());
  for (std::size_t i = 0; i < dx0.size(); ++i) { dx_expected[i] = dx0[i] + g.dx[i]; }
  hax::test::check_close(hax::test::to_vector(dx), dx_expected, rtol, atol, "dx (accumulated)");
  hax::test::check_close(grad_of(store, "xx_proj.weight", 2), g.dxx_proj, rtol, atol, "d xx_proj");
  if (branch.has_key_selection()) {
    std::vector<double> zeros_w(params.mlp.w1.size(), 0.0);
    auto const& m = g.dmlp;
    hax::test::check_close(grad_of(store, "ks_mlp.0.weight", 2), ranking ? m.w1 : zeros_w, rtol, atol, "d mlp w1");
    hax::test::check_close(grad_of(store, "ks_mlp.2.weight", 2), ranking ? m.w2 : zeros_w, rtol, atol, "d mlp w2");
    if (ranking) {
      REQUIRE(hax::test::max_abs(m.w1) > 0.0);
      hax::test::check_close(grad_of(store, "ks_mlp.0.bias", 1), m.b1, rtol, atol, "d mlp b1");
      hax::test::check_close(grad_of(store, "ks_mlp.2.bias", 1), m.b2, rtol, atol, "d mlp b2");
      hax::test::check_close(grad_of(store, "ks_mlp.4.weight", 2), m.w3, rtol, atol, "d mlp w3");
      hax::test::check_close(grad_of(store, "ks_mlp.4.bias", 1), m.b3, rtol, atol, "d mlp b3");
    }
  }
}

TEST_CASE("sparse branch in float matches the double reference", "[attention][sparse_branch]") {
  auto const arch = GENERATE(as<std::string>{}, "sliding_window+dilated", "full");
  CAPTURE(arch);
  int const B = 2, L = 20;
  auto const cfg = small_config(arch, Semantics::causal);
  SparseBranch<test_space, float> const branch(cfg);
  hax::nn::ParameterStore<test_space, float> store;
  branch.register_parameters(store, prefix);
  test_space space;
  store.finalize(space);
  hax::test::fill_random(store.values(), 5, -0.6, 0.6);
  hax::reference::attn::SparseBranchParams<double> params;
  params.xx_proj = hax::test::to_vector(store.value<2>(prefix + "xx_proj.weight"));
  v3<float> x("x", B, L, cfg.d_inner), attn("attn", B, L, cfg.d_inner);
  v2<int> no_mask;
  v0<float> gate("gate");
  auto const hx = hax::test::fill_random(x, 1);
  branch.forward(space, store, prefix, x, no_mask, attn, gate, StepContext{});
  space.fence();
  auto const ref = hax::reference::attn::sparse_branch_forward(cfg, params, hx, {}, B, L, StepContext{});
  hax::test::check_close(hax::test::to_vector(attn), ref.attn, hax::test::tolerance<float>::rtol,
                         hax::test::tolerance<float>::atol, "attn (float)");
}

namespace {

void check_branch_gradients(std::string const& arch) {
  CAPTURE(arch);
  int const B = 2, L = 12;
  auto const cfg = small_config(arch, Semantics::causal);
  Branch const branch(cfg);
  auto store = make_store(branch, 21);
  test_space space;
  v3<double> x("x", B, L, cfg.d_inner), attn("attn", B, L, cfg.d_inner), dattn("dattn", B, L, cfg.d_inner),
      dx("dx", B, L, cfg.d_inner);
  v2<int> mask("mask", B, L);
  v0<double> gate("gate");
  auto const hx = hax::test::fill_random(x, 31);
  hax::test::fill_random(dattn, 32);
  hax::test::from_vector(mask, as_double(right_pad_mask({L, L - 3}, L)));
  auto const hdattn = hax::test::to_vector(dattn);
  StepContext ctx;  // fixed seed and step: the same projection and candidates on both sides of a difference
  ctx.seed = 5;
  ctx.step = 2;
  double const alpha = ctx.gate_loss_weight;

  auto const saved = branch.forward(space, store, prefix, x, mask, attn, gate, ctx);
  branch.backward(space, store, prefix, saved, dattn, dx, ctx);
  space.fence();

  // Σ dattn ⊙ attn and the gate loss at the current store values and input xs.
  auto losses = [&](std::vector<double> const& xs) {
    v3<double> xv("x", B, L, cfg.d_inner), out("attn", B, L, cfg.d_inner);
    v0<double> gl("gate");
    hax::test::from_vector(xv, xs);
    branch.forward(space, store, prefix, xv, mask, out, gl, ctx);
    auto const o = hax::test::to_vector(out);
    double s = 0;
    for (std::size_t i = 0; i < o.size(); ++i) { s += hdattn[i] * o[i]; }
    return std::pair{s, hax::test::to_vector(gl)[0]};
  };

  // x and xx_proj: only the attention path (the key-selection inputs are detached by design, so
  // the ranking loss has no gradient with respect to them).
  hax::test::check_gradient(hx, hax::test::to_vector(dx), [&](std::vector<double> const& xs) { return losses(xs).first; },
                            "dx", 1e-6, 1e-8);
  auto w_of = [&](std::string const& name, int rank) {
    return rank == 1 ? hax::test::to_vector(store.value<1>(prefix + name)) : hax::test::to_vector(store.value<2>(prefix + name));
  };
  auto set_w = [&](std::string const& name, int rank, std::vector<double> const& w) {
    if (rank == 1) {
      hax::test::from_vector(store.value<1>(prefix + name), w);
    } else {
      hax::test::from_vector(store.value<2>(prefix + name), w);
    }
  };
  auto check_param = [&](std::string const& name, int rank, bool with_gate) {
    auto const w0 = w_of(name, rank);
    hax::test::check_gradient(
        w0, grad_of(store, name, rank),
        [&](std::vector<double> const& w) {
          set_w(name, rank, w);
          auto const [a, gl] = losses(hx);
          set_w(name, rank, w0);
          return with_gate ? a + alpha * gl : a;
        },
        "d " + name, 1e-6, 1e-8);
  };
  check_param("xx_proj.weight", 2, false);
  if (branch.has_key_selection()) {
    // The full objective: the attention output is piecewise constant in the MLP weights (top-k),
    // so away from ties only α · gate_loss moves.
    check_param("ks_mlp.0.weight", 2, true);
    check_param("ks_mlp.0.bias", 1, true);
    check_param("ks_mlp.2.weight", 2, true);
    check_param("ks_mlp.4.weight", 2, true);
    // b3 shifts every score equally, and the ranking loss only sees score differences: its
    // gradient is zero exactly (a finite difference would be zero too, so compare directly).
    hax::test::check_close(grad_of(store, "ks_mlp.4.bias", 1), {0.0}, 0.0, 1e-12, "d ks_mlp.4.bias");
  }
}

}  // namespace

TEST_CASE("sparse branch gradients match finite differences in double", "[attention][sparse_branch]") {
  check_branch_gradients(GENERATE(as<std::string>{}, "sliding_window+dilated", "argmax_lsh"));
}

// About 5 s on 2 cores: every MLP weight costs two forward passes with key selection.
TEST_CASE("sparse branch gradients with key selection match finite differences in double",
          "[attention][sparse_branch][slow]") {
  check_branch_gradients("sign_bin_lsh+key_selection");
}

TEST_CASE("causal sparse branch: padding never changes non-pad outputs", "[attention][sparse_branch]") {
  auto const arch = GENERATE(as<std::string>{}, "sliding_window+dilated", "sliding_window+sink", "sign_bin_lsh",
                             "argmax_lsh", "sign_bin_lsh+key_selection", "full");
  CAPTURE(arch);
  int const Lreal = 11, Lpad = 16;
  auto const cfg = small_config(arch, Semantics::causal);
  Branch const branch(cfg);
  auto const store = make_store(branch, 41);
  test_space space;
  StepContext ctx;
  ctx.step = 9;
  int const D = cfg.d_inner;
  // The padded batch: the same 11 tokens, then 5 pads holding arbitrary (non-zero) values.
  v3<double> xs("xs", 1, Lreal, D), as("as", 1, Lreal, D), xp("xp", 1, Lpad, D), ap("ap", 1, Lpad, D);
  v2<int> no_mask, mask("mask", 1, Lpad);
  v0<double> gs("gs"), gp("gp");
  auto const pad_values = hax::test::fill_random(xp, 51);
  std::vector<double> short_values(pad_values.begin(), pad_values.begin() + Lreal * D);
  hax::test::from_vector(xs, short_values);
  hax::test::from_vector(mask, as_double(right_pad_mask({Lreal}, Lpad)));
  branch.forward(space, store, prefix, xs, no_mask, as, gs, ctx);
  branch.forward(space, store, prefix, xp, mask, ap, gp, ctx);
  space.fence();
  auto const out_short = hax::test::to_vector(as);
  auto const out_pad = hax::test::to_vector(ap);
  REQUIRE(hax::test::max_abs(out_short) > 0.0);
  hax::test::check_close(std::vector<double>(out_pad.begin(), out_pad.begin() + Lreal * D), out_short, 1e-12, 1e-14,
                         "non-pad outputs");
  hax::test::check_close(std::vector<double>(out_pad.begin() + Lreal * D, out_pad.end()),
                         std::vector<double>((Lpad - Lreal) * D, 0.0), 0.0, 0.0, "pad outputs");
  hax::test::check_close(hax::test::to_vector(gp), hax::test::to_vector(gs), 1e-12, 1e-14, "gate_loss");
}

TEST_CASE("causal sparse branch: the plan skipping the padding changes no output or gradient",
          "[attention][sparse_branch]") {
  auto const arch = GENERATE(as<std::string>{}, "sign_bin_lsh+key_selection", "key_selection");
  // N = 4: the general MLP and hash kernels in one prefix segment; N = 16 with L = 150: the
  // register hash, the fixed-width MLP with whole teams of 64 rows past their extents, several
  // prefix segments.
  auto const [N, L] = GENERATE(table<int, int>({{4, 24}, {16, 150}}));
  CAPTURE(arch, N, L);
  int const B = 4;
  // Row 0 right-padded, row 1 with a hole of pads inside its extent, row 2 all pads, row 3 none.
  std::vector<int> hmask = right_pad_mask({13, 16, 0, L}, L);
  for (int i = 6; i < 9; ++i) { hmask[L + i] = 0; }
  auto with = small_config(arch, Semantics::causal);
  with.state_size = N;
  with.skip_padding = true;
  auto without = with;
  without.skip_padding = false;
  Branch const skipping(with), full(without);
  test_space space;
  int const D = with.d_inner;
  v3<double> x("x", B, L, D), dattn("dattn", B, L, D);
  v2<int> mask("mask", B, L);
  hax::test::fill_random(x, 61);  // arbitrary values at the pads too
  hax::test::fill_random(dattn, 62);
  hax::test::from_vector(mask, as_double(hmask));
  StepContext ctx;  // training: the ranking loss and the MLP's gradient are compared too
  ctx.step = 4;
  struct Result {
    std::vector<double> attn, gate, dx, grads;
  };
  auto run = [&](Branch const& branch) {
    auto store = make_store(branch, 63);
    v3<double> attn("attn", B, L, D), dx("dx", B, L, D);
    v0<double> gate("gate");
    auto const saved = branch.forward(space, store, prefix, x, mask, attn, gate, ctx);
    branch.backward(space, store, prefix, saved, dattn, dx, ctx);
    space.fence();
    return Result{hax::test::to_vector(attn), hax::test::to_vector(gate), hax::test::to_vector(dx),
                  hax::test::to_vector(store.grads())};
  };
  auto const a = run(skipping);
  auto const b = run(full);
  REQUIRE(hax::test::max_abs(b.attn) > 0.0);
  REQUIRE(hax::test::max_abs(b.grads) > 0.0);
  // Equal up to the order of the attention backward's atomic sums.
  hax::test::check_close(a.attn, b.attn, 1e-12, 1e-14, "attn");
  hax::test::check_close(a.gate, b.gate, 1e-12, 1e-14, "gate_loss");
  hax::test::check_close(a.dx, b.dx, 1e-12, 1e-14, "dx");
  hax::test::check_close(a.grads, b.grads, 1e-12, 1e-14, "parameter gradients");
}

TEST_CASE("sparse branch projections: redrawn per training step, fixed at causal evaluation", "[attention][sparse_branch]") {
  auto const cfg = small_config("sign_bin_lsh", Semantics::causal);
  Branch const branch(cfg);
  auto const store = make_store(branch, 61);
  test_space space;
  int const B = 2, L = 24;
  v3<double> x("x", B, L, cfg.d_inner), a("a", B, L, cfg.d_inner);
  v2<int> no_mask;
  v0<double> gate("gate");
  hax::test::fill_random(x, 62);
  auto run = [&](std::uint64_t step, bool training) {
    StepContext ctx;
    ctx.step = step;
    ctx.training = training;
    branch.forward(space, store, prefix, x, no_mask, a, gate, ctx);
    return hax::test::to_vector(a);
  };
  auto const e1 = run(1, false), e2 = run(2, false);
  CHECK(e1 == e2);  // evaluation ignores the step in causal semantics
  auto const t1 = run(1, true), t2 = run(2, true);
  CHECK(t1 != t2);  // a new step draws a new projection, hence other buckets
}

TEST_CASE("sparse branch rejects bad configs and inputs, naming the setting", "[attention][sparse_branch]") {
  using Catch::Matchers::ContainsSubstring;
  auto bad = [](auto edit) {
    auto c = small_config("sign_bin_lsh+key_selection", Semantics::causal);
    edit(c);
    return c;
  };
  CHECK_THROWS_WITH(Branch(bad([](auto& c) { c.arch = "sign_bin_lsh+bogus"; })),
                    ContainsSubstring("unknown pattern part 'bogus'"));
  CHECK_THROWS_WITH(Branch(bad([](auto& c) { c.arch = ""; })), ContainsSubstring("arch is empty"));
  CHECK_THROWS_WITH(Branch(bad([](auto& c) { c.keys = 7; })), ContainsSubstring("key budget k (7)"));
  CHECK_THROWS_WITH(Branch(bad([](auto& c) { c.num_hash = 31; })), ContainsSubstring("num_hash (h = 31)"));
  CHECK_THROWS_WITH(Branch(bad([](auto& c) { c.num_hash = 0; })), ContainsSubstring("num_hash (h = 0)"));
  CHECK_THROWS_WITH(Branch(bad([](auto& c) { c.state_size = 0; })), ContainsSubstring("state_size"));
  CHECK_THROWS_WITH(Branch(bad([](auto& c) { c.d_inner = 0; })), ContainsSubstring("d_inner"));
  CHECK_THROWS_WITH(Branch(bad([](auto& c) { c.max_length = 2; })), ContainsSubstring("max_length"));
  CHECK_THROWS_AS(Branch(bad([](auto& c) { c.arch = "full+full"; })), hax::invalid_argument);
  // h does not matter without an LSH part.
  CHECK_NOTHROW(Branch(small_config("sliding_window", Semantics::causal)));

  auto const cfg = small_config("sliding_window+key_selection", Semantics::causal);
  Branch const branch(cfg);
  auto const store = make_store(branch, 71);
  test_space space;
  v2<int> no_mask;
  v0<double> gate("gate");
  {  // k' = 4 > L = 3
    v3<double> x("x", 1, 3, cfg.d_inner), a("a", 1, 3, cfg.d_inner);
    CHECK_THROWS_WITH(branch.forward(space, store, prefix, x, no_mask, a, gate, StepContext{}),
                      ContainsSubstring("larger than the sequence length L = 3"));
  }
  {  // x width
    v3<double> x("x", 1, 8, cfg.d_inner + 1), a("a", 1, 8, cfg.d_inner);
    CHECK_THROWS_WITH(branch.forward(space, store, prefix, x, no_mask, a, gate, StepContext{}),
                      ContainsSubstring("must have width d_inner = 6"));
  }
  {  // mask shape
    v3<double> x("x", 1, 8, cfg.d_inner), a("a", 1, 8, cfg.d_inner);
    v2<int> mask("mask", 1, 7);
    CHECK_THROWS_WITH(branch.forward(space, store, prefix, x, mask, a, gate, StepContext{}),
                      ContainsSubstring("pad_mask (1, 7)"));
  }
  {  // gate loss required in training with key selection
    v3<double> x("x", 1, 8, cfg.d_inner), a("a", 1, 8, cfg.d_inner);
    v0<double> none;
    CHECK_THROWS_WITH(branch.forward(space, store, prefix, x, no_mask, a, none, StepContext{}),
                      ContainsSubstring("gate_loss"));
  }
}
