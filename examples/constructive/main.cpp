// SPDX-License-Identifier: MIT
/// \file
/// The `constructive` command: runs the hand-set 2-layer model of Propositions 3.2 / C.1
/// (hax::constructive::JointRecallSolver, docs/constructive.md) on generated recall items with
/// w levels of n symbols each (w = 1 associative recall, w = 2 joint recall, w >= 3 multi-level)
/// and prints its accuracy at the queried positions and its state width.
///   constructive --levels 2 --n 16 --items 1000
/// Exits with status 2 when the accuracy is below 100%.
#include <hax/constructive/joint_recall_solver.hpp>
#include <hax/core/cli.hpp>
#include <hax/data/joint_recall.hpp>

#include <CLI/CLI.hpp>
#include <Kokkos_Core.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace {

using hax::data::recall_spec;
using space_t = Kokkos::DefaultExecutionSpace;
using mem_t = space_t::memory_space;

struct options {
  int levels = 2;
  int n = 16;
  int n_values = 16;
  std::int64_t items = 1000;
  std::uint64_t seed = 1;
  std::int64_t max_batch_tokens = std::int64_t{1} << 22;
};

/// Every item has n symbols per level; the items are the validation split of that spec.
recall_spec make_spec(options const& o) {
  recall_spec s = hax::data::make_spec(o.levels, o.n, o.n);
  s.n_values = o.n_values;
  s.vocab_size = std::max(100, s.value_bias + o.n_values + o.levels * o.n);
  s.items_per_combination[0] = 0;
  s.items_per_combination[1] = o.items;
  s.items_per_combination[2] = 0;
  s.seed = o.seed;
  return hax::data::resolve(s, "constructive");
}

int run(options const& o) {
  recall_spec const s = make_spec(o);
  hax::constructive::JointRecallSolver<space_t> const solver(s);
  auto const& lay = solver.layout();
  std::int64_t const L = s.padded_length;
  std::int64_t entries = 1;
  for (int l = 0; l < s.levels; ++l) entries *= o.n;
  std::printf("constructive: w = %d levels of n = %d symbols (%lld table entries), |V| = %d, %lld items of %lld tokens\n",
              s.levels, o.n, static_cast<long long>(entries), s.n_values,
              static_cast<long long>(o.items), static_cast<long long>(L));
  std::string codes;
  for (int l = 0; l < s.levels; ++l) codes += (l ? "+" : "") + std::to_string(lay.level_bits[l]);
  std::printf("state width D = %d (level codes %s, value code %d, is_value 1); key width = hash bits = %d; value width %d\n",
              lay.state_width, codes.c_str(), lay.value_bits, lay.key_width, lay.value_width);

  space_t space;
  std::int64_t const batch = std::clamp<std::int64_t>(o.max_batch_tokens / L, 1, o.items);
  Kokkos::View<std::int32_t**, Kokkos::LayoutRight, mem_t> tokens("tokens", batch, L);  // (B, L)
  Kokkos::View<std::int8_t**, Kokkos::LayoutRight, mem_t> mask("mask", batch, L);       // (B, L)
  Kokkos::View<int**, Kokkos::LayoutRight, mem_t> pred("predictions", batch, L);        // (B, L)
  Kokkos::View<std::int64_t*, mem_t> correct("correct", batch), total("total", batch);  // (B)
  Kokkos::View<int, mem_t> failures("failures");
  auto const act = solver.allocate(space, static_cast<int>(batch), static_cast<int>(L));
  hax::data::split_exclusions<mem_t> none;  // the valid split excludes nothing

  std::int64_t n_correct = 0, n_total = 0, perfect_items = 0;
  double item_accuracy_sum = 0.0, model_seconds = 0.0;
  for (std::int64_t first = 0; first < o.items; first += batch) {
    std::int64_t const b = std::min(batch, o.items - first);
    auto const rows = Kokkos::make_pair<std::int64_t, std::int64_t>(0, b);
    auto const t = Kokkos::subview(tokens, rows, Kokkos::ALL);
    auto const m = Kokkos::subview(mask, rows, Kokkos::ALL);
    auto const p = Kokkos::subview(pred, rows, Kokkos::ALL);
    hax::data::generate_batch(space, s, none, hax::data::split::valid, first, t, m, failures);
    space.fence();
    auto const start = std::chrono::steady_clock::now();
    if (b == batch) {
      solver.forward(space, t, act, p);
    } else {  // the last, shorter batch
      solver.forward(space, t, solver.allocate(space, static_cast<int>(b), static_cast<int>(L)), p);
    }
    space.fence();
    model_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    auto const c = Kokkos::subview(correct, rows);
    auto const n = Kokkos::subview(total, rows);
    hax::constructive::score_items(space, p, t, m, c, n);
    auto const hc = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, c);
    auto const hn = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, n);
    for (std::int64_t i = 0; i < b; ++i) {
      n_correct += hc(i);
      n_total += hn(i);
      item_accuracy_sum += hn(i) > 0 ? static_cast<double>(hc(i)) / static_cast<double>(hn(i)) : 0.0;
      perfect_items += hc(i) == hn(i) ? 1 : 0;
    }
  }
  double const accuracy = n_total > 0 ? 100.0 * static_cast<double>(n_correct) / static_cast<double>(n_total) : 0.0;
  std::printf("accuracy %.2f%% (%lld of %lld queries), per-item mean %.2f%%, %lld of %lld items perfect\n",
              accuracy, static_cast<long long>(n_correct), static_cast<long long>(n_total),
              100.0 * item_accuracy_sum / static_cast<double>(o.items),
              static_cast<long long>(perfect_items), static_cast<long long>(o.items));
  std::printf("model forward: %.3f s for %lld tokens (%.3g tokens/s) on %s\n", model_seconds,
              static_cast<long long>(o.items * L),
              static_cast<double>(o.items * L) / std::max(model_seconds, 1e-12), space_t::name());
  return n_correct == n_total && n_total > 0 ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  hax::core::KokkosScope kokkos(argc, argv);  // leaves -h/--help to CLI11
  CLI::App app{"constructive: the hand-set 2-layer model of Propositions 3.2 / C.1 (hax)"};
  options o;
  app.add_option("--levels", o.levels, "w: 1 associative recall, 2 joint recall, 3+ multi-level")
      ->check(CLI::Range(1, hax::data::kMaxLevels))->capture_default_str();
  app.add_option("--n", o.n, "symbols per level (every item has n per level)")
      ->check(CLI::Range(1, hax::data::kMaxLevelSize))->capture_default_str();
  app.add_option("--values", o.n_values, "number of values |V|")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--items", o.items, "items to evaluate")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seed", o.seed, "random seed of the generator")->capture_default_str();
  app.add_option("--batch-tokens", o.max_batch_tokens, "largest batch, in tokens")
      ->check(CLI::PositiveNumber)->capture_default_str();
  try {
    app.parse(argc, argv);
    return run(o);
  } catch (CLI::ParseError const& e) {
    return app.exit(e);
  } catch (std::exception const& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
