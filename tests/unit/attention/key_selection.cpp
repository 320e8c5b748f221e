// SPDX-License-Identifier: MIT
#include <hax/attention/key_selection/features.hpp>
#include <hax/attention/key_selection/ranking_loss.hpp>
#include <hax/attention/key_selection/score_mlp.hpp>
#include <hax/attention/key_selection/topk.hpp>
#include <hax/core/error.hpp>
#include <hax/reference/attention/key_selection.hpp>

#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <utility>
#include <vector>

#include "support/compare.hpp"
#include "support/gradcheck.hpp"
#include "support/test_space.hpp"

namespace {

using hax::attn::PlanSemantics;
using hax::test::test_memory_space;
using hax::test::test_space;

template <class T>
using v1 = Kokkos::View<T*, Kokkos::LayoutRight, test_memory_space>;
template <class T>
using v2 = Kokkos::View<T**, Kokkos::LayoutRight, test_memory_space>;
template <class T>
using v3 = Kokkos::View<T***, Kokkos::LayoutRight, test_memory_space>;

std::vector<double> as_double(std::vector<int> const& v) { return {v.begin(), v.end()}; }
std::vector<int> as_int(std::vector<double> const& v) { return {v.begin(), v.end()}; }

template <class T>
using Mlp = hax::attn::ScoreMlp<test_space, T>;

/// Random MLP parameters on the device and the same values in the reference's struct.
template <class T>
std::pair<typename Mlp<T>::Params, hax::reference::attn::ScoreMlpParams<double>> random_mlp(
    test_space const& space, int D, int H, std::uint64_t seed) {
  auto p = Mlp<T>::allocate(space, D, H);
  hax::reference::attn::ScoreMlpParams<double> r{D, H};
  r.w1 = hax::test::fill_random(p.w1, seed, -0.5, 0.5);
  r.b1 = hax::test::fill_random(p.b1, seed + 1, -0.2, 0.2);
  r.w2 = hax::test::fill_random(p.w2, seed + 2, -0.5, 0.5);
  r.b2 = hax::test::fill_random(p.b2, seed + 3, -0.2, 0.2);
  r.w3 = hax::test::fill_random(p.w3, seed + 4, -1.0, 1.0);
  r.b3 = hax::test::fill_random(p.b3, seed + 5, -0.2, 0.2);
  return {p, r};
}

}  // namespace

TEMPLATE_TEST_CASE("key-selection features match the reference in both semantics",
                   "[attention][key_selection]", float, double) {
  using T = TestType;
  auto const semantics = GENERATE(PlanSemantics::causal, PlanSemantics::reference);
  bool const causal = semantics == PlanSemantics::causal;
  // L = 41 and 97: one segment, and several with a partial last one, of the causal prefix sums;
  // L = 2 100 makes the segments longer than 32 rows (at most 64 segments per row).
  auto const [B, L, N] = GENERATE(table<int, int, int>({{2, 41, 8}, {3, 97, 16}, {1, 2100, 4}}));
  CAPTURE(causal, L, N);
  test_space space;
  v3<T> q("q", B, L, N), k("k", B, L, N), feat("feat", B, L, 2 * N);
  auto const hq = hax::test::fill_random(q, 1);
  auto const hk = hax::test::fill_random(k, 2);
  hax::attn::key_selection_features(space, semantics, q, k, feat);
  space.fence();
  auto const ref = hax::reference::attn::key_selection_features(hq, hk, B, L, N, causal);
  using tol = hax::test::tolerance<T>;
  hax::test::check_close(hax::test::to_vector(feat), ref, tol::rtol, tol::atol, "feat");
}

TEST_CASE("causal key-selection features do not see later rows or padding",
          "[attention][key_selection]") {
  int const N = 4, len = 20, L = 33;
  test_space space;
  auto const hq = hax::test::random_vector(L * N, 5);
  auto const hk = hax::test::random_vector(L * N, 6);
  auto later_changed = hq;  // rows >= len replaced: later tokens / padding
  for (int r = len * N; r < L * N; ++r) { later_changed[r] = 0.0; }
  for (auto semantics : {PlanSemantics::causal, PlanSemantics::reference}) {
    std::vector<double> out[2];
    for (int v = 0; v < 2; ++v) {
      v3<double> q("q", 1, L, N), k("k", 1, L, N), feat("feat", 1, L, 2 * N);
      hax::test::from_vector(q, v == 0 ? hq : later_changed);
      hax::test::from_vector(k, hk);
      hax::attn::key_selection_features(space, semantics, q, k, feat);
      space.fence();
      out[v] = hax::test::to_vector(feat);
    }
    std::vector<double> a(out[0].begin(), out[0].begin() + len * 2 * N);
    std::vector<double> b(out[1].begin(), out[1].begin() + len * 2 * N);
    if (semantics == PlanSemantics::causal) {
      hax::test::check_close(a, b, 0.0, 0.0, "causal features of rows < len");
    } else {
      CHECK(a != b);
    }
  }
}

TEMPLATE_TEST_CASE("score MLP forward and backward match the reference",
                   "[attention][key_selection]", float, double) {
  using T = TestType;
  // One team of the fused kernels, then several with ragged last teams (forward: 64 rows per
  // team on host backends, 16 on GPUs below impl::kScoreMlpFixedManyRows rows; backward: 16
  // sampled rows per team).
  bool const large = GENERATE(false, true);
  // N = 16 and 32: the compile-time widths 2N = 32, 64; N = 6: the general kernel.
  int const N = GENERATE(16, 32, 6);
  CAPTURE(large, N);
  int const B = large ? 3 : 2, L = large ? 70 : 30, D = 2 * N, H = 2 * N, R = large ? 25 : 6;
  test_space space;
  auto [p, ref_p] = random_mlp<T>(space, D, H, 10);
  v3<T> feat("feat", B, L, D);
  auto const hfeat = hax::test::fill_random(feat, 20);
  v2<T> scores("scores", B, L);
  Mlp<T> mlp;
  auto const saved = mlp.forward(space, p, feat, scores);
  // Rows and upstream gradients for the backward; -1 must be skipped.
  v2<int> rows("rows", B, R);
  std::vector<int> hrows = {3, 0, 29, 7, -1, 12, 5, 5, 18, 1, 2, 28};
  if (large) {
    hrows.clear();
    for (double u : hax::test::random_vector(B * R, 31, 0.0, 1.0)) {
      hrows.push_back(u < 0.1 ? -1 : static_cast<int>(u * L) % L);  // about 10% skipped
    }
  }
  hax::test::from_vector(rows, as_double(hrows));
  v2<T> ds("ds", B, R);
  auto const hds = hax::test::fill_random(ds, 30);
  auto g = Mlp<T>::allocate(space, D, H, "grads");
  auto ref_g = ref_p;
  ref_g.w1 = hax::test::fill_random(g.w1, 41);  // nonzero: gradients accumulate (+=)
  ref_g.b1 = hax::test::fill_random(g.b1, 42);
  ref_g.w2 = hax::test::fill_random(g.w2, 43);
  ref_g.b2 = hax::test::fill_random(g.b2, 44);
  ref_g.w3 = hax::test::fill_random(g.w3, 45);
  ref_g.b3 = hax::test::fill_random(g.b3, 46);
  mlp.backward(space, p, feat, saved, rows, ds, g);
  space.fence();

  using tol = hax::test::tolerance<T>;
  auto const ref_scores = hax::reference::attn::score_mlp_forward(ref_p, hfeat);
  hax::test::check_close(hax::test::to_vector(scores), ref_scores, tol::rtol, tol::atol, "scores");
  std::vector<int> flat_rows(hrows.size());  // reference rows index the flattened (B*L) feat
  for (int b = 0; b < B; ++b) {
    for (int a = 0; a < R; ++a) {
      int const j = hrows[b * R + a];
      flat_rows[b * R + a] = j < 0 ? -1 : b * L + j;
    }
  }
  hax::reference::attn::score_mlp_backward(ref_p, hfeat, flat_rows, hds, ref_g);
  hax::test::check_close(hax::test::to_vector(g.w1), ref_g.w1, tol::rtol, tol::atol, "dw1");
  hax::test::check_close(hax::test::to_vector(g.b1), ref_g.b1, tol::rtol, tol::atol, "db1");
  hax::test::check_close(hax::test::to_vector(g.w2), ref_g.w2, tol::rtol, tol::atol, "dw2");
  hax::test::check_close(hax::test::to_vector(g.b2), ref_g.b2, tol::rtol, tol::atol, "db2");
  hax::test::check_close(hax::test::to_vector(g.w3), ref_g.w3, tol::rtol, tol::atol, "dw3");
  hax::test::check_close(hax::test::to_vector(g.b3), ref_g.b3, tol::rtol, tol::atol, "db3");
}

TEMPLATE_TEST_CASE("score MLP forward over many rows matches the reference",
                   "[attention][key_selection]", float, double) {
  using T = TestType;
  // B·L = 32 800 rows: on GPUs the fixed-width kernel switches from 16 rows per team (the test
  // above, and the ranking loss's rows) to 64 at kScoreMlpFixedManyRows = 32 768; the last team is
  // ragged.
  static_assert(8 * 4100 >= hax::attn::impl::kScoreMlpFixedManyRows);
  // Each width once, one with the scoring forward and one with the saving forward.
  auto const [N, saving] = GENERATE(std::pair{16, false}, std::pair{32, true});
  CAPTURE(N, saving);
  int const B = 8, L = 4100, D = 2 * N, H = 2 * N;
  test_space space;
  auto [p, ref_p] = random_mlp<T>(space, D, H, 50);
  v3<T> feat("feat", B, L, D);
  auto const hfeat = hax::test::fill_random(feat, 51);
  v2<T> scores("scores", B, L);
  Mlp<T> mlp;
  if (saving) {
    (void)mlp.forward(space, p, feat, scores);
  } else {
    mlp.score(space, p, feat, scores);
  }
  space.fence();
  using tol = hax::test::tolerance<T>;
  hax::test::check_close(hax::test::to_vector(scores), hax::reference::attn::score_mlp_forward(ref_p, hfeat),
                         tol::rtol, tol::atol, "scores");
}

TEMPLATE_TEST_CASE("causal features and scores with row extents: exact before, skipped after",
                   "[attention][key_selection]", float, double) {
  using T = TestType;
  // N = 16 and 32: the MLP's compile-time widths; N = 6: its general kernel. L = 150 spreads a
  // row over several MLP teams (64 rows) and prefix segments (32 rows), so whole teams are absent.
  int const N = GENERATE(16, 32, 6);
  CAPTURE(N);
  int const B = 4, L = 150, D = 2 * N;
  std::vector<int> const hext = {150, 70, 0, 33};  // full, inside, empty, past a segment boundary
  test_space space;
  v3<T> q("q", B, L, N), k("k", B, L, N), full("full", B, L, D), part("part", B, L, D);
  hax::test::fill_random(q, 71);
  hax::test::fill_random(k, 72);
  v1<int> extents("extents", B);
  hax::test::from_vector(extents, as_double(hext));
  auto const sentinel = std::vector<double>(B * L * D, 7.0);  // rows past the extent stay unwritten
  hax::test::from_vector(part, sentinel);
  hax::attn::key_selection_features(space, PlanSemantics::causal, q, k, full);
  hax::attn::key_selection_features(space, PlanSemantics::causal, q, k, part, extents);
  auto [p, ref_p] = random_mlp<T>(space, D, D, 73);
  v2<T> s_full("s_full", B, L), s_part("s_part", B, L);
  Mlp<T> mlp;
  mlp.score(space, p, full, s_full);
  mlp.score(space, p, part, s_part, extents);
  space.fence();
  auto const f_full = hax::test::to_vector(full), f_part = hax::test::to_vector(part);
  auto const sc_full = hax::test::to_vector(s_full), sc_part = hax::test::to_vector(s_part);
  for (int b = 0; b < B; ++b) {
    CAPTURE(b);
    for (int j = 0; j < L; ++j) {
      bool const present = j < hext[b];
      for (int c = 0; c < D; ++c) {
        std::size_t const e = (static_cast<std::size_t>(b) * L + j) * D + c;
        CHECK(f_part[e] == (present ? f_full[e] : 7.0));
      }
      if (present) {
        CHECK(sc_part[b * L + j] == sc_full[b * L + j]);
      } else {
        CHECK(sc_part[b * L + j] == -std::numeric_limits<double>::infinity());
      }
    }
  }
  v1<int> wrong("wrong", B + 1);
  CHECK_THROWS_WITH(hax::attn::key_selection_features(space, PlanSemantics::causal, q, k, part, wrong),
                    Catch::Matchers::ContainsSubstring("extents (5) must be empty or (B) = (4)"));
  CHECK_THROWS_WITH(hax::attn::key_selection_features(space, PlanSemantics::reference, q, k, part, extents),
                    Catch::Matchers::ContainsSubstring("causal semantics only"));
  CHECK_THROWS_WITH(mlp.score(space, p, part, s_part, wrong),
                    Catch::Matchers::ContainsSubstring("hax::attn::ScoreMlp::score") &&
                        Catch::Matchers::ContainsSubstring("extents (5)"));
}

TEMPLATE_TEST_CASE("ranking targets, loss and score gradient match the reference",
                   "[attention][key_selection]", float, double) {
  using T = TestType;
  auto const semantics = GENERATE(PlanSemantics::causal, PlanSemantics::reference);
  bool const causal = semantics == PlanSemantics::causal;
  CAPTURE(causal);
  int const B = 3, L = 40, N = 8, kprime = 6;
  test_space space;
  v3<T> q("q", B, L, N), k("k", B, L, N);
  auto hq = hax::test::random_vector(B * L * N, 50);
  auto const hk = hax::test::fill_random(k, 51);
  std::vector<int> const hlen = {40, 25, 31};
  for (int b = 0; b < B; ++b) {  // pads have q = 0 (they add 0.5 each under `reference`)
    for (int i = hlen[b]; i < L; ++i) {
      for (int n = 0; n < N; ++n) { hq[(b * L + i) * N + n] = 0.0; }
    }
  }
  hax::test::from_vector(q, hq);
  hq = hax::test::to_vector(q);
  v1<int> len("len", B);
  hax::test::from_vector(len, as_double(hlen));
  v2<int> cand("cand", B, kprime);
  hax::attn::sample_candidates(space, len, 3, 0, 7, cand);
  v2<T> targets("targets", B, kprime), scores("scores", B, L), ds("ds", B, kprime);
  auto const hscores = hax::test::fill_random(scores, 52, -2.0, 2.0);
  hax::attn::ranking_targets(space, semantics, q, k, len, cand, targets);
  Kokkos::View<T, test_memory_space> loss("loss");
  hax::attn::ranking_loss(space, scores, cand, targets, loss, ds);
  space.fence();
  auto const hcand = as_int(hax::test::to_vector(cand));
  auto ref_targets = hax::reference::attn::ranking_targets(hq, hk, hlen, hcand, B, L, N, kprime, causal);
  using tol = hax::test::tolerance<T>;
  hax::test::check_close(hax::test::to_vector(targets), ref_targets, tol::rtol, tol::atol, "targets");
  // Use the device's targets for the loss (so float rounding cannot flip a comparison), with one
  // forced tie to exercise the 0.5 target.
  auto dev_targets = hax::test::to_vector(targets);
  dev_targets[1] = dev_targets[0];
  hax::test::from_vector(targets, dev_targets);
  hax::attn::ranking_loss(space, scores, cand, targets, loss, ds);
  space.fence();
  std::vector<double> s(B * kprime);
  for (int b = 0; b < B; ++b) {
    for (int a = 0; a < kprime; ++a) { s[b * kprime + a] = hscores[b * L + hcand[b * kprime + a]]; }
  }
  std::vector<double> ref_ds;
  double const ref_loss = hax::reference::attn::ranking_loss(s, dev_targets, B, kprime, ref_ds);
  CHECK(ref_loss > std::log(2.0) * 0.1);  // far from trivial
  hax::test::check_close(hax::test::to_vector(loss), {ref_loss}, tol::rtol, tol::atol, "loss");
  hax::test::check_close(hax::test::to_vector(ds), ref_ds, tol::rtol, tol::atol, "ds");
}

TEMPLATE_TEST_CASE("ranking targets over several candidate chunks match the reference",
                   "[attention][key_selection]", float, double) {
  using T = TestType;
  // k' = 19: two whole chunks of impl::kRankingTargetsPerTeam = 8 candidates and a ragged one;
  // L = 300 rows (more than a GPU team's 128 threads); a sequence shorter than k' (slots of -1)
  // and one that ends mid-way.
  static_assert(hax::attn::impl::kRankingTargetsPerTeam == 8);
  auto const semantics = GENERATE(PlanSemantics::causal, PlanSemantics::reference);
  bool const causal = semantics == PlanSemantics::causal;
  CAPTURE(causal);
  int const B = 3, L = 300, N = 32, kprime = 19;
  test_space space;
  v3<T> q("q", B, L, N), k("k", B, L, N);
  auto const hq = hax::test::fill_random(q, 60, -0.4, 0.4);
  auto const hk = hax::test::fill_random(k, 61, -0.4, 0.4);
  std::vector<int> const hlen = {300, 10, 157};
  v1<int> len("len", B);
  hax::test::from_vector(len, as_double(hlen));
  v2<int> cand("cand", B, kprime);
  hax::attn::sample_candidates(space, len, 5, 1, 3, cand);
  v2<T> targets("targets", B, kprime);
  hax::attn::ranking_targets(space, semantics, q, k, len, cand, targets);
  space.fence();
  auto const hcand = as_int(hax::test::to_vector(cand));
  CHECK(std::count(hcand.begin(), hcand.end(), -1) == kprime - hlen[1]);
  auto const ref_targets = hax::reference::attn::ranking_targets(hq, hk, hlen, hcand, B, L, N, kprime, causal);
  using tol = hax::test::tolerance<T>;
  hax::test::check_close(hax::test::to_vector(targets), ref_targets, tol::rtol, tol::atol, "targets");
}

TEST_CASE("ranking loss matches a hand computation", "[attention][key_selection]") {
  // One sequence, two candidates with scores 1 and 0 and targets 2 > 1: pairs (a,b) with logits
  // 0, 1, -1, 0 and targets 0.5, 1, 0, 0.5. BCE(0, .5) = log 2; BCE(1, 1) = BCE(-1, 0) =
  // log(1 + e^-1). Mean over 4 pairs.
  test_space space;
  v2<double> scores("scores", 1, 2), targets("targets", 1, 2), ds("ds", 1, 2);
  v2<int> cand("cand", 1, 2);
  hax::test::from_vector(scores, {1.0, 0.0});
  hax::test::from_vector(targets, {2.0, 1.0});
  hax::test::from_vector(cand, {0, 1});
  Kokkos::View<double, test_memory_space> loss("loss");
  hax::attn::ranking_loss(space, scores, cand, targets, loss, ds);
  space.fence();
  double const expected = (2 * std::log(2.0) + 2 * std::log1p(std::exp(-1.0))) / 4;
  double const g = 2 * (1 / (1 + std::exp(-1.0)) - 1) / 4;  // ds_0 = 2/4 Σ_b (σ(s0-sb) - t)
  hax::test::check_close(hax::test::to_vector(loss), {expected}, 1e-14, 1e-14, "loss");
  hax::test::check_close(hax::test::to_vector(ds), {g, -g}, 1e-14, 1e-14, "ds");
}

TEST_CASE("score MLP gradients through the ranking loss match finite differences",
          "[attention][key_selection]") {
  int const B = 2, L = 12, N = 3, D = 2 * N, H = 2 * N, kprime = 5;
  test_space space;
  auto [p, ref_p] = random_mlp<double>(space, D, H, 60);
  v3<double> q("q", B, L, N), k("k", B, L, N), feat("feat", B, L, D);
  hax::test::fill_random(q, 61);
  hax::test::fill_random(k, 62);
  hax::attn::key_selection_features(space, PlanSemantics::causal, q, k, feat);
  v1<int> len("len", B);
  hax::test::from_vector(len, {12, 9});
  v2<int> cand("cand", B, kprime);
  hax::attn::sample_candidates(space, len, 1, 0, 0, cand);
  v2<double> targets("targets", B, kprime), scores("scores", B, L), ds("ds", B, kprime);
  hax::attn::ranking_targets(space, PlanSemantics::causal, q, k, len, cand, targets);
  Kokkos::View<double, test_memory_space> loss("loss");
  Mlp<double> mlp;
  auto const saved = mlp.forward(space, p, feat, scores);
  hax::attn::ranking_loss(space, scores, cand, targets, loss, ds);
  auto g = Mlp<double>::allocate(space, D, H, "grads");
  mlp.backward(space, p, feat, saved, cand, ds, g);
  space.fence();

  auto loss_of = [&](auto const& param, std::vector<double> const& values) {
    auto const saved_values = hax::test::to_vector(param);
    hax::test::from_vector(param, values);
    mlp.forward(space, p, feat, scores);
    hax::attn::ranking_loss(space, scores, cand, targets, loss, ds);
    space.fence();
    double const out = hax::test::to_vector(loss)[0];
    hax::test::from_vector(param, saved_values);
    return out;
  };
  auto check = [&](auto const& param, auto const& grad, char const* what) {
    hax::test::check_gradient(
        hax::test::to_vector(param), hax::test::to_vector(grad),
        [&](std::vector<double> const& v) { return loss_of(param, v); }, what);
  };
  check(p.w1, g.w1, "dw1");
  check(p.b1, g.b1, "db1");
  check(p.w2, g.w2, "dw2");
  check(p.b2, g.b2, "db2");
  check(p.w3, g.w3, "dw3");
  // The loss depends on score differences only, so it is invariant to b3: its gradient is 0.
  CHECK(std::abs(hax::test::to_vector(g.b3)[0]) < 1e-12);
}

TEST_CASE("causal top-k' equals a sort of every prefix, with and without ties",
          "[attention][key_selection]") {
  auto const method = GENERATE(hax::attn::TopkMethod::ranking, hax::attn::TopkMethod::insertion);
  bool const ties = GENERATE(false, true);
  auto const kprime = GENERATE(1, 5, 16, 33, 40);  // below, at and above the kernel's block of 32
  int const L = GENERATE(40, 70, 131);             // one, several and a ragged last block
  CAPTURE(method == hax::attn::TopkMethod::ranking, ties, kprime, L);
  int const B = 3;
  test_space space;
  v2<float> scores("scores", B, L);
  auto hs = hax::test::random_vector(B * L, 70 + kprime + L, -1.0, 1.0);
  if (ties) {
    for (auto& s : hs) { s = std::round(s * 2.0); }  // 5 distinct values: ties everywhere
  }
  hax::test::from_vector(scores, hs);
  hs = hax::test::to_vector(scores);
  v3<int> idx("idx", B, L, kprime);
  Kokkos::deep_copy(idx, 999);
  hax::attn::causal_topk(space, scores, idx, method);
  space.fence();
  auto const ref = hax::reference::attn::causal_topk(hs, B, L, kprime);
  auto const got = hax::test::to_vector(idx);
  hax::test::check_close(got, as_double(ref), 0.0, 0.0, "idx");
  // Causal and never empty.
  for (int r = 0; r < B * L; ++r) {
    int const i = r % L;
    CHECK(got[r * kprime] >= 0);
    for (int t = 0; t < kprime; ++t) { CHECK(got[r * kprime + t] <= i); }
  }
}

TEST_CASE("causal top-k' ranks a NaN score below every number and fills every slot",
          "[attention][key_selection]") {
  auto const method = GENERATE(hax::attn::TopkMethod::ranking, hax::attn::TopkMethod::insertion);
  int const kprime = GENERATE(3, 40);
  CAPTURE(method == hax::attn::TopkMethod::ranking, kprime);
  int const B = 2, L = 100;
  test_space space;
  v2<float> scores("scores", B, L);
  auto hs = hax::test::random_vector(B * L, 11, -1.0, 1.0);
  for (int j : {0, 5, 31, 32, 33, 64, 99, 100, 150}) { hs[j] = std::numeric_limits<double>::quiet_NaN(); }
  hs[7] = -std::numeric_limits<double>::infinity();  // ties with the NaNs: the later key wins
  hax::test::from_vector(scores, hs);
  v3<int> idx("idx", B, L, kprime);
  Kokkos::deep_copy(idx, 999);
  hax::attn::causal_topk(space, scores, idx, method);
  space.fence();
  auto const ref = hax::reference::attn::causal_topk(hax::test::to_vector(scores), B, L, kprime);
  auto const got = hax::test::to_vector(idx);
  hax::test::check_close(got, as_double(ref), 0.0, 0.0, "idx");
  // Row 0 of sequence 0 holds only key 0 (NaN): never empty, nothing left unwritten.
  CHECK(got[0] == 0);
  for (double v : got) { CHECK((v >= -1 && v < L)); }
}

TEST_CASE("candidate sampling: distinct, non-pad, seeded and uniform", "[attention][key_selection]") {
  int const B = 4000, n = 20, kprime = 5;
  test_space space;
  v1<int> len("len", B);
  std::vector<double> hlen(B, n);
  hlen[0] = 3;   // shorter than k': all its positions, then -1
  hlen[1] = 5;   // exactly k'
  hlen[2] = 11;
  hax::test::from_vector(len, hlen);
  v2<int> cand("cand", B, kprime), again("again", B, kprime), next("next", B, kprime);
  hax::attn::sample_candidates(space, len, 9, 1, 100, cand);
  hax::attn::sample_candidates(space, len, 9, 1, 100, again);
  hax::attn::sample_candidates(space, len, 9, 1, 101, next);
  space.fence();
  auto const c = hax::test::to_vector(cand);
  hax::test::check_close(hax::test::to_vector(again), c, 0.0, 0.0, "same seed and step");
  CHECK(hax::test::to_vector(next) != c);
  hax::test::check_close({c.begin(), c.begin() + kprime}, {0, 1, 2, -1, -1}, 0.0, 0.0, "short");
  std::vector<double> counts(n, 0.0);
  int pair01 = 0;
  for (int b = 1; b < B; ++b) {
    std::set<int> distinct;
    for (int a = 0; a < kprime; ++a) {
      int const j = static_cast<int>(c[b * kprime + a]);
      REQUIRE(j >= 0);
      REQUIRE(j < hlen[b]);  // non-pad
      distinct.insert(j);
      if (b >= 3) { counts[j] += 1; }
    }
    REQUIRE(static_cast<int>(distinct.size()) == kprime);
    if (b >= 3) { pair01 += distinct.count(0) && distinct.count(1); }
  }
  // Each position is in a sample with probability p = k'/n, independently across sequences:
  // Σ (c - E)² / (E (1 - p)) is about χ² with n - 1 = 19 degrees of freedom (the counts sum to a
  // constant). 51 is its 1 - 1e-4 quantile (Wilson-Hilferty).
  int const draws = B - 3;
  double const p = double(kprime) / n, expected = draws * p;
  double chi2 = 0;
  for (double x : counts) { chi2 += (x - expected) * (x - expected) / (expected * (1 - p)); }
  CAPTURE(chi2);
  CHECK(chi2 < 51.0);
  // Pairs too: P(0 and 1 both sampled) = k'(k'-1) / (n(n-1)); within 4.5 binomial sigmas.
  double const p2 = double(kprime * (kprime - 1)) / (n * (n - 1));
  CAPTURE(pair01);
  CHECK(std::abs(pair01 - draws * p2) < 4.5 * std::sqrt(draws * p2 * (1 - p2)));
}

TEST_CASE("key selection rejects bad input", "[attention][key_selection]") {
  test_space space;
  v2<float> scores("scores", 2, 10);
  v3<int> too_wide("too_wide", 2, 10, 11), wrong("wrong", 2, 9, 4);
  CHECK_THROWS_WITH(hax::attn::causal_topk(space, scores, too_wide),
                    Catch::Matchers::ContainsSubstring("hax::attn::causal_topk") &&
                        Catch::Matchers::ContainsSubstring("k' = 11"));
  CHECK_THROWS_WITH(hax::attn::causal_topk(space, scores, wrong),
                    Catch::Matchers::ContainsSubstring("idx (2, 9, 4)"));
  v3<float> q("q", 2, 10, 4), k("k", 2, 10, 5), feat("feat", 2, 10, 8);
  CHECK_THROWS_WITH(hax::attn::key_selection_features(space, PlanSemantics::causal, q, k, feat),
                    Catch::Matchers::ContainsSubstring("k (2, 10, 5)"));
  v3<float> feat_bad("feat_bad", 2, 10, 6);
  CHECK_THROWS_AS(hax::attn::key_selection_features(space, PlanSemantics::causal, q, q, feat_bad),
                  hax::invalid_argument);
  auto p = Mlp<float>::allocate(space, 8, 8);
  v3<float> feat6("feat6", 2, 10, 6);
  CHECK_THROWS_WITH(Mlp<float>{}.forward(space, p, feat6, scores),
                    Catch::Matchers::ContainsSubstring("hax::attn::ScoreMlp::forward") &&
                        Catch::Matchers::ContainsSubstring("D = 6"));
  v2<int> cand("cand", 2, 3);
  v2<float> targets("targets", 2, 4), ds("ds", 2, 3);
  Kokkos::View<float, test_memory_space> loss("loss");
  CHECK_THROWS_WITH(hax::attn::ranking_loss(space, scores, cand, targets, loss, ds),
                    Catch::Matchers::ContainsSubstring("targets (2, 4)"));
}
