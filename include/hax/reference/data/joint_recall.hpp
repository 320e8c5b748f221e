// SPDX-License-Identifier: MIT
/// \file
/// Plain serial generator of one joint-recall item (any number of levels), written to be read and
/// used as the oracle in tests. It draws from the same counter-based streams, in the same order,
/// as hax::data's device generator: a recursive walk with std::vector, no Kokkos Views.
#pragma once

#include <hax/core/random.hpp>
#include <hax/data/joint_recall.hpp>

#include <cstdint>
#include <numeric>
#include <set>
#include <vector>

namespace hax::reference::data {

/// One unpadded item: tokens and the loss mask (1 on inquiry-half last-level tokens).
struct item {
  std::vector<int> tokens;  // (length)
  std::vector<int> mask;    // (length)
};

namespace detail {

/// A random order of 0..n-1: start from the identity and swap position i with a uniform j <= i,
/// for i from n-1 down to 1 (Fisher-Yates).
inline std::vector<int> random_order(core::RngStream& rng, int n) {
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  for (int i = n - 1; i > 0; --i) {
    int const j = static_cast<int>(rng.uniform_int(static_cast<std::uint32_t>(i + 1)));
    std::swap(order[i], order[j]);
  }
  return order;
}

/// Emits the children of the node with row-major index `parent` at level `level`: each child
/// token, then either its value (last level) or, recursively, its own children.
inline void emit_children(hax::data::recall_spec const& spec, std::vector<int> const& n,
                          std::uint64_t key, core::RngStream& rng, bool inquiry, int level,
                          std::int64_t parent, item& out) {
  bool const last = level == spec.levels - 1;
  for (int child : random_order(rng, n[level])) {
    std::int64_t const entry = parent * n[level] + child;
    out.tokens.push_back(hax::data::level_token(spec, level, child));
    out.mask.push_back(inquiry && last ? 1 : 0);
    if (last) {
      out.tokens.push_back(spec.value_bias + hax::data::leaf_value(spec, key, entry));
      out.mask.push_back(0);
    } else {
      emit_children(spec, n, key, rng, inquiry, level + 1, entry, out);
    }
  }
}

}  // namespace detail

/// The item with level sizes `n` drawn from stream key `key`: BOS, the store half, SEP, the
/// inquiry half (new orders, the same values). No padding.
inline item generate_item(hax::data::recall_spec const& spec, std::vector<int> const& n,
                          std::uint64_t key) {
  item out;
  core::RngStream orders(core::stream_key(key, 0));
  out.tokens.push_back(spec.bos);
  out.mask.push_back(0);
  detail::emit_children(spec, n, key, orders, /*inquiry=*/false, 0, 0, out);
  out.tokens.push_back(spec.sep);
  out.mask.push_back(0);
  detail::emit_children(spec, n, key, orders, /*inquiry=*/true, 0, 0, out);
  return out;
}

/// Level sizes of item `index` of a split (combination = index mod the number of combinations,
/// the last level varying fastest).
inline std::vector<int> sizes_of(hax::data::recall_spec const& spec, std::int64_t index) {
  std::int64_t combinations = 1;
  for (int l = 0; l < spec.levels; ++l) combinations *= spec.n_max[l] - spec.n_min[l] + 1;
  std::int64_t rest = index % combinations;
  std::vector<int> n(spec.levels);
  for (int l = spec.levels - 1; l >= 0; --l) {
    int const range = spec.n_max[l] - spec.n_min[l] + 1;
    n[l] = spec.n_min[l] + static_cast<int>(rest % range);
    rest /= range;
  }
  return n;
}

/// Item `index` of split `sp` at regeneration `attempt` (attempt 0 unless it collided).
inline item generate_split_item(hax::data::recall_spec const& spec, hax::data::split sp,
                                std::int64_t index, int attempt = 0) {
  return generate_item(spec, sizes_of(spec, index),
                       hax::data::item_key(spec, static_cast<int>(sp), index, attempt));
}

/// Item `index` of split `sp`, regenerated with attempt 1, 2, ... while its tokens are in
/// `excluded` (the items of the eval splits it must avoid), as hax::data does with hashes.
inline item generate_disjoint_item(hax::data::recall_spec const& spec, hax::data::split sp,
                                   std::int64_t index,
                                   std::set<std::vector<int>> const& excluded) {
  item out;
  for (int attempt = 0; attempt < hax::data::kMaxAttempts; ++attempt) {
    out = generate_split_item(spec, sp, index, attempt);
    if (excluded.count(out.tokens) == 0) break;
  }
  return out;
}

/// The items split `sp` must avoid: nothing for valid, the valid items for test, the valid and
/// test items for train (test items themselves made disjoint from valid first).
inline std::set<std::vector<int>> excluded_items(hax::data::recall_spec const& spec,
                                                 hax::data::split sp) {
  std::set<std::vector<int>> valid;
  std::set<std::vector<int>> both;
  if (sp == hax::data::split::valid) return valid;
  auto count = [&](hax::data::split s) {
    return spec.items_per_combination[static_cast<int>(s)] * hax::data::n_combinations(spec);
  };
  for (std::int64_t i = 0; i < count(hax::data::split::valid); ++i) {
    valid.insert(generate_split_item(spec, hax::data::split::valid, i).tokens);
  }
  if (sp == hax::data::split::test) return valid;
  both = valid;
  for (std::int64_t i = 0; i < count(hax::data::split::test); ++i) {
    both.insert(generate_disjoint_item(spec, hax::data::split::test, i, valid).tokens);
  }
  return both;
}

/// hax::data::loss_positions over row-major (B, L) vectors with R slots per sequence.
struct loss_slots {
  std::vector<int> positions;  // (B, R): the r-th loss position of sequence b, or -1
  std::vector<int> labels;     // (B, R): its label, 0 on empty slots
  std::vector<int> mask;       // (B, R): 1 on filled slots
  int overflow = 0;            // sequences with more than R loss positions
};

inline loss_slots loss_positions(std::vector<int> const& loss_mask, std::vector<int> const& labels,
                                 int B, int L, int R) {
  loss_slots out;
  out.positions.assign(static_cast<std::size_t>(B) * R, -1);
  out.labels.assign(static_cast<std::size_t>(B) * R, 0);
  out.mask.assign(static_cast<std::size_t>(B) * R, 0);
  for (int b = 0; b < B; ++b) {
    int slot = 0;
    for (int t = 0; t < L; ++t) {
      if (loss_mask[static_cast<std::size_t>(b) * L + t] == 0) continue;
      if (slot < R) {
        std::size_t const r = static_cast<std::size_t>(b) * R + slot;
        out.positions[r] = t;
        out.labels[r] = labels[static_cast<std::size_t>(b) * L + t];
        out.mask[r] = 1;
      }
      ++slot;
    }
    if (slot > R) ++out.overflow;
  }
  return out;
}

}  // namespace hax::reference::data
