// SPDX-License-Identifier: MIT
/// \file
/// The multi-level context joint-recall generator family (semantics.md sections 1 and 8):
/// w = 1 is multi-query associative recall, w = 2 the reference's multi-query joint recall,
/// w >= 3 multi-level context joint recall. Provides the layout parameters (`recall_spec`), the
/// arithmetic that maps an item index of a split to its level sizes, a per-item device generator
/// driven by counter-based random streams (so every item is a pure function of
/// (seed, split, item, attempt), identical on every backend and thread count), split exclusion
/// sets that make train / valid / test disjoint, and `generate_batch`, which streams items
/// [first, first + B) straight into (B, Lpad) device Views. docs/data.md describes it all.
#pragma once

#include <Kokkos_Core.hpp>
#include <Kokkos_Sort.hpp>

#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/random.hpp>
#include <hax/core/views.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>

namespace hax::data {

/// Most levels a spec may have (the per-item generator keeps one permutation per level).
inline constexpr int kMaxLevels = 4;
/// Largest size of one level (a permutation of a level lives in a fixed per-thread array).
inline constexpr int kMaxLevelSize = 256;
/// Regenerations tried for an item that collides with an item of another split.
inline constexpr int kMaxAttempts = 64;

/// The three splits of the reference, in its generation order.
enum class split : int { train = 0, valid = 1, test = 2 };

/// "train" / "valid" / "test".
inline char const* split_name(split s) {
  switch (s) {
    case split::train: return "train";
    case split::valid: return "valid";
    case split::test: return "test";
  }
  return "?";
}

/// Parses "train", "valid" (or "validation") and "test"; anything else is hax::invalid_argument.
inline split parse_split(std::string_view name) {
  if (name == "train") return split::train;
  if (name == "valid" || name == "validation") return split::valid;
  if (name == "test") return split::test;
  throw invalid_argument(core::concat("hax::data::parse_split: unknown split name '", name,
                                      "' (expected train, valid or test)"));
}

/// Every size, range and id of the layout; the defaults are the reference (semantics.md 1).
/// Level 0 is the top level (contexts for w = 2), level w-1 the last (keys); a last-level token
/// is followed by its value. A plain aggregate of ints, so it is captured by value in kernels.
struct recall_spec {
  int levels = 2;                            ///< w: 1 associative recall, 2 joint recall
  int n_min[kMaxLevels] = {5, 5, 5, 5};      ///< smallest size of level l (inclusive)
  int n_max[kMaxLevels] = {16, 16, 16, 16};  ///< largest size of level l (inclusive)
  int n_values = 16;                         ///< |V|: values are value_bias .. value_bias+|V|-1
  int value_bias = 10;                       ///< first value id
  int level_capacity = 0;  ///< ids reserved per level; 0 = the largest n_max (reference: 16)
  int vocab_size = 100;    ///< model vocabulary; every id must be below it
  int bos = 1;
  int pad = 3;
  int sep = 4;
  int padded_length = 0;  ///< every item is right-padded to this; 0 = the longest item (1058)
  std::int64_t items_per_combination[3] = {10000, 100, 100};  ///< train, valid, test
  std::uint64_t seed = 1;
};

/// The same spec with every level given the range [n_min, n_max] (the CLI's form).
inline recall_spec make_spec(int levels, int n_min, int n_max) {
  recall_spec s;
  s.levels = levels;
  for (int l = 0; l < kMaxLevels; ++l) {
    s.n_min[l] = n_min;
    s.n_max[l] = n_max;
  }
  return s;
}

/// Number of tokens (BOS .. last value, no padding) of an item with level sizes n[0..w).
/// 2 + 2 * (sum_l prod_{m<=l} n_m + prod_m n_m); w = 2 gives 2 + 2 n_c (2 n_k + 1).
KOKKOS_INLINE_FUNCTION std::int64_t item_length(int levels, int const* n) {
  std::int64_t nodes = 0;
  std::int64_t prod = 1;
  for (int l = 0; l < levels; ++l) {
    prod *= n[l];
    nodes += prod;
  }
  return 2 + 2 * (nodes + prod);
}

/// Number of (n_1, ..., n_w) combinations a split cycles through (reference: 144).
KOKKOS_INLINE_FUNCTION std::int64_t n_combinations(recall_spec const& s) {
  std::int64_t c = 1;
  int const w = s.levels < kMaxLevels ? s.levels : kMaxLevels;
  for (int l = 0; l < w; ++l) c *= (s.n_max[l] - s.n_min[l] + 1);
  return c;
}

/// Level sizes of item `item` of a split: item = idx * n_combinations + combination, and the
/// combination enumerates the sizes with level 0 slowest and the last level fastest (the
/// reference's loop order: n_c outer, n_k inner). Returns the combination index.
KOKKOS_INLINE_FUNCTION std::int64_t item_sizes(recall_spec const& s, std::int64_t item, int* n) {
  std::int64_t const combination = item % n_combinations(s);
  std::int64_t rest = combination;
  int const w = s.levels < kMaxLevels ? s.levels : kMaxLevels;  // resolve() enforces it; tells the compiler
  for (int l = w - 1; l >= 0; --l) {
    std::int64_t const range = s.n_max[l] - s.n_min[l] + 1;
    n[l] = s.n_min[l] + static_cast<int>(rest % range);
    rest /= range;
  }
  return combination;
}

/// Token id of entry c of level l: the last level's ids follow the values, each level above
/// takes the next block of level_capacity ids (reference: keys 26-41, contexts 42-57).
KOKKOS_INLINE_FUNCTION int level_token(recall_spec const& s, int l, int c) {
  return s.value_bias + s.n_values + (s.levels - 1 - l) * s.level_capacity + c;
}

/// The random stream key of item `item` of split `sp` at regeneration `attempt`.
KOKKOS_INLINE_FUNCTION std::uint64_t item_key(recall_spec const& s, int sp, std::int64_t item,
                                              int attempt) {
  return core::stream_key(s.seed, static_cast<std::uint64_t>(sp), static_cast<std::uint64_t>(item),
                          static_cast<std::uint64_t>(attempt));
}

/// Value index (0..|V|-1) of leaf entry `entry` (row-major over the levels) of the item with
/// stream key `key`: a pure function, so the value table needs no storage and both halves agree.
/// Entry e reads the value stream at counters e * 2^32 + 1, + 2, ... (one draw unless Lemire's
/// rejection fires), so entries never share draws.
KOKKOS_INLINE_FUNCTION int leaf_value(recall_spec const& s, std::uint64_t key, std::int64_t entry) {
  core::RngStream values(key ^ 0xA0761D6478BD642FULL, static_cast<std::uint64_t>(entry) << 32);
  return static_cast<int>(values.uniform_int(static_cast<std::uint32_t>(s.n_values)));
}

/// Item hash, one FNV-1a 64 step per token (equal items have equal hashes; split exclusion
/// compares finished hashes, see hash_finish).
KOKKOS_INLINE_FUNCTION std::uint64_t hash_step(std::uint64_t h, std::uint64_t token) {
  return (h ^ token) * 0x100000001B3ULL;
}

/// Final avalanche of an item hash (so hashes of similar items spread over all 64 bits).
KOKKOS_INLINE_FUNCTION std::uint64_t hash_finish(std::uint64_t h) { return core::mix64(h); }

namespace impl {

/// In-place Fisher-Yates shuffle of 0..n-1 (draws j = uniform_int(i + 1) for i = n-1 .. 1).
KOKKOS_INLINE_FUNCTION void shuffle_identity(core::RngStream& rng, std::uint16_t* perm, int n) {
  for (int i = 0; i < n; ++i) perm[i] = static_cast<std::uint16_t>(i);
  for (int i = n - 1; i > 0; --i) {
    int const j = static_cast<int>(rng.uniform_int(static_cast<std::uint32_t>(i + 1)));
    std::uint16_t const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}

/// Writes one half (store or inquiry) of an item at position `pos` of row `row`: a depth-first
/// walk over the levels, each node's children in a fresh random order, a value after every
/// last-level token; mask 1 on last-level tokens when `inquiry`. Iterative (no recursion on
/// device). Returns the position after the half.
template <class Tokens, class Mask>
KOKKOS_INLINE_FUNCTION std::int64_t write_half(recall_spec const& s, int const* n,
                                               std::uint64_t key, core::RngStream& rng,
                                               bool inquiry, Tokens const& tokens,
                                               Mask const& mask, std::int64_t row,
                                               std::int64_t pos, std::uint64_t& hash) {
  using token_t = typename Tokens::non_const_value_type;
  using mask_t = typename Mask::non_const_value_type;
  std::uint16_t perm[kMaxLevels][kMaxLevelSize];
  int at[kMaxLevels];             // next child to visit at each depth
  std::int64_t entry[kMaxLevels];  // row-major index of the current node at each depth
  int const w = s.levels;
  auto emit = [&](int token, bool queried) {
    tokens(row, pos) = static_cast<token_t>(token);
    mask(row, pos) = static_cast<mask_t>(queried ? 1 : 0);
    hash = hash_step(hash, static_cast<std::uint64_t>(token));
    ++pos;
  };
  shuffle_identity(rng, perm[0], n[0]);
  at[0] = 0;
  int l = 0;
  while (l >= 0) {
    if (at[l] == n[l]) {  // all children of this node done: go up
      --l;
      if (l >= 0) ++at[l];
      continue;
    }
    int const c = perm[l][at[l]];
    entry[l] = (l == 0 ? 0 : entry[l - 1] * n[l]) + c;
    bool const last = (l == w - 1);
    emit(level_token(s, l, c), inquiry && last);
    if (last) {
      emit(s.value_bias + leaf_value(s, key, entry[l]), false);
      ++at[l];
    } else {
      ++l;
      shuffle_identity(rng, perm[l], n[l]);
      at[l] = 0;
    }
  }
  return pos;
}

/// Writes the item's tokens (BOS, store half, SEP, inquiry half) with stream key `key` into row
/// `row`, positions [0, item_length); the padding after them is written by fill_padding. Returns
/// the hash of the item's tokens.
template <class Tokens, class Mask>
KOKKOS_INLINE_FUNCTION std::uint64_t write_item(recall_spec const& s, int const* n,
                                                std::uint64_t key, Tokens const& tokens,
                                                Mask const& mask, std::int64_t row) {
  using token_t = typename Tokens::non_const_value_type;
  core::RngStream rng(core::stream_key(key, 0));
  std::uint64_t hash = 0xCBF29CE484222325ULL;
  std::int64_t pos = 0;
  tokens(row, pos) = static_cast<token_t>(s.bos);
  mask(row, pos) = 0;
  hash = hash_step(hash, static_cast<std::uint64_t>(s.bos));
  ++pos;
  pos = write_half(s, n, key, rng, false, tokens, mask, row, pos, hash);
  tokens(row, pos) = static_cast<token_t>(s.sep);
  mask(row, pos) = 0;
  hash = hash_step(hash, static_cast<std::uint64_t>(s.sep));
  ++pos;
  write_half(s, n, key, rng, true, tokens, mask, row, pos, hash);
  return hash_finish(hash);
}

/// True when `h` is in the sorted View `sorted` (binary search).
template <class Sorted>
KOKKOS_INLINE_FUNCTION bool contains(Sorted const& sorted, std::uint64_t h) {
  std::int64_t lo = 0;
  std::int64_t hi = static_cast<std::int64_t>(sorted.extent(0));
  while (lo < hi) {
    std::int64_t const mid = lo + (hi - lo) / 2;
    if (sorted(mid) < h) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo < static_cast<std::int64_t>(sorted.extent(0)) && sorted(lo) == h;
}

/// log2 of the number of distinct items with level sizes n (|V|^leaves times the orderings).
inline double log2_item_space(recall_spec const& s, int const* n) {
  double bits = 0.0;
  double parents = 1.0;
  for (int l = 0; l < s.levels; ++l) {
    // each node of level l-1 orders its n_l children twice (store and inquiry)
    bits += 2.0 * parents * std::lgamma(n[l] + 1.0) / std::log(2.0);
    parents *= n[l];
  }
  bits += parents * std::log2(static_cast<double>(s.n_values));
  return bits;
}

}  // namespace impl

/// Checks every parameter and fills the derived ones (level_capacity, padded_length).
/// Throws hax::invalid_argument naming the parameter and the problem.
inline recall_spec resolve(recall_spec s, std::string_view op = "hax::data::resolve") {
  using core::require;
  require(s.levels >= 1 && s.levels <= kMaxLevels, op, "levels (", s.levels,
          ") must be in [1, ", kMaxLevels, "]");
  int largest = 0;
  for (int l = 0; l < s.levels; ++l) {
    require(s.n_min[l] >= 1, op, "n_min of level ", l, " (", s.n_min[l], ") must be >= 1");
    require(s.n_min[l] <= s.n_max[l], op, "range of level ", l, " is reversed: n_min (",
            s.n_min[l], ") > n_max (", s.n_max[l], ")");
    require(s.n_max[l] <= kMaxLevelSize, op, "n_max of level ", l, " (", s.n_max[l],
            ") exceeds the largest supported level size ", kMaxLevelSize);
    largest = s.n_max[l] > largest ? s.n_max[l] : largest;
  }
  require(s.n_values >= 1, op, "n_values (", s.n_values, ") must be >= 1");
  require(s.value_bias >= 0, op, "value_bias (", s.value_bias, ") must be >= 0");
  if (s.level_capacity == 0) s.level_capacity = largest;
  require(s.level_capacity >= largest, op, "level_capacity (", s.level_capacity,
          ") is smaller than the largest level size (", largest, ")");
  std::int64_t const top = static_cast<std::int64_t>(s.value_bias) + s.n_values +
                           static_cast<std::int64_t>(s.levels) * s.level_capacity;
  require(top <= s.vocab_size, op, "vocabulary too small: vocab_size (", s.vocab_size,
          ") < value_bias (", s.value_bias, ") + n_values (", s.n_values, ") + levels (",
          s.levels, ") * level_capacity (", s.level_capacity, ") = ", top);
  for (int special : {s.bos, s.pad, s.sep}) {
    require(special >= 0 && (special < s.value_bias || special >= top) && special < s.vocab_size,
            op, "special id ", special, " (bos/pad/sep) overlaps the values/levels ids [",
            s.value_bias, ", ", top, ") or lies outside the vocabulary of ", s.vocab_size);
  }
  require(s.bos != s.pad && s.bos != s.sep && s.pad != s.sep, op,
          "bos (", s.bos, "), pad (", s.pad, ") and sep (", s.sep, ") must be distinct");
  int longest[kMaxLevels];
  for (int l = 0; l < kMaxLevels; ++l) longest[l] = s.n_max[l];
  std::int64_t const max_len = item_length(s.levels, longest);
  if (s.padded_length == 0) s.padded_length = static_cast<int>(max_len);
  require(s.padded_length >= max_len, op, "padded_length (", s.padded_length,
          ") is shorter than the longest item (", max_len, ")");
  for (int k = 0; k < 3; ++k) {
    require(s.items_per_combination[k] >= 0, op, "items_per_combination of ",
            split_name(static_cast<split>(k)), " (", s.items_per_combination[k],
            ") must be >= 0");
  }
  // Disjoint splits must be possible for every combination: the training items of a combination
  // need at least one item outside the valid+test items of that combination, test one outside
  // valid. The item space grows with every level size, so the smallest sizes (n_min everywhere)
  // decide it for all combinations.
  std::int64_t const eval = s.items_per_combination[1] + s.items_per_combination[2];
  double const bits = impl::log2_item_space(s, s.n_min);
  if (bits < 62.0) {
    auto const space = static_cast<std::int64_t>(std::llround(std::exp2(bits)));
    bool const ok = (s.items_per_combination[0] == 0 || eval < space) &&
                    (s.items_per_combination[2] == 0 || s.items_per_combination[1] < space);
    require(ok, op, "split sizes cannot be disjoint: with the smallest level sizes (n_min) there are only ",
            space, " distinct items, but valid (", s.items_per_combination[1], ") + test (",
            s.items_per_combination[2], ") take ", eval,
            " per combination and train and test need items outside them");
  }
  return s;
}

/// Number of items in split `sp`: items_per_combination * n_combinations (reference: 1 440 000).
inline std::int64_t split_size(recall_spec const& s, split sp) {
  return s.items_per_combination[static_cast<int>(sp)] * n_combinations(s);
}

/// Sorted 64-bit item hashes a split's items must avoid: `for_test` holds the valid split,
/// `for_train` valid and test. Built once by make_exclusions (which generates both eval splits).
template <class MemorySpace>
struct split_exclusions {
  Kokkos::View<std::uint64_t*, MemorySpace> for_test;   // (n_valid)
  Kokkos::View<std::uint64_t*, MemorySpace> for_train;  // (n_valid + n_test)

  /// The exclusion set that items of split `sp` must avoid (empty for valid).
  Kokkos::View<std::uint64_t const*, MemorySpace> of(split sp) const {
    if (sp == split::train) return for_train;
    if (sp == split::test) return for_test;
    return Kokkos::View<std::uint64_t*, MemorySpace>();  // empty: valid avoids nothing
  }
};

namespace impl {

/// PAD (mask 0) at every position of rows [0, B) past item first_item + b's length, a team per
/// row. The item kernel's threads each write a whole row, one token after another, so the padding
/// (more than half of a reference row on average) is written here, by a team whose consecutive
/// threads take consecutive positions. The positions are disjoint from the item kernel's, and an
/// item's length depends only on its index, so the two kernels need no ordering.
template <class Space, class Tokens, class Mask>
void fill_padding(Space const& space, recall_spec const& s, std::int64_t first_item,
                  Tokens const& tokens, Mask const& mask) {
  using token_t = typename Tokens::non_const_value_type;
  using mask_t = typename Mask::non_const_value_type;
  using policy = Kokkos::TeamPolicy<Space>;
  std::int64_t const Lpad = static_cast<std::int64_t>(tokens.extent(1));
  Kokkos::parallel_for(
      "hax::data::fill_padding", policy(space, static_cast<int>(tokens.extent(0)), Kokkos::AUTO),
      KOKKOS_LAMBDA(typename policy::member_type const& team) {
        std::int64_t const b = team.league_rank();
        int n[kMaxLevels];
        item_sizes(s, first_item + b, n);
        Kokkos::parallel_for(Kokkos::TeamVectorRange(team, item_length(s.levels, n), Lpad),
                             [&](std::int64_t p) {
                               tokens(b, p) = static_cast<token_t>(s.pad);
                               mask(b, p) = static_cast<mask_t>(0);
                             });
      });
}

/// Generates rows [0, B) as items first_item + b of split `sp`; an item whose hash is in
/// `exclude` is regenerated with attempt + 1 (at most kMaxAttempts); writes its hash to
/// maybe_hashes(b) and counts items that ran out of attempts into failures(); then pads every row
/// (fill_padding).
template <class Space, class Tokens, class Mask, class Excl, class Hashes, class Failures>
void generate_rows(Space const& space, recall_spec const& s, split sp, std::int64_t first_item,
                   Tokens const& tokens, Mask const& mask, Excl const& exclude,
                   Hashes const& maybe_hashes, Failures const& failures) {
  int const spi = static_cast<int>(sp);
  bool const has_hashes = maybe_hashes.extent(0) > 0;
  bool const has_exclusions = exclude.extent(0) > 0;
  Kokkos::parallel_for(
      "hax::data::generate_batch",
      Kokkos::RangePolicy<Space, Kokkos::IndexType<std::int64_t>>(
          space, 0, static_cast<std::int64_t>(tokens.extent(0))),
      KOKKOS_LAMBDA(std::int64_t b) {
        int n[kMaxLevels];
        std::int64_t const item = first_item + b;
        item_sizes(s, item, n);
        std::uint64_t h = 0;
        int attempt = 0;
        for (; attempt < kMaxAttempts; ++attempt) {
          h = write_item(s, n, item_key(s, spi, item, attempt), tokens, mask, b);
          if (!has_exclusions || !contains(exclude, h)) break;
        }
        if (attempt == kMaxAttempts) Kokkos::atomic_inc(&failures());
        if (has_hashes) maybe_hashes(b) = h;
      });
  fill_padding(space, s, first_item, tokens, mask);
}

}  // namespace impl

/// Streams items [first_item, first_item + B) of split `sp` into `tokens` (B, Lpad) and `mask`
/// (B, Lpad), Lpad = spec.padded_length, in any memory space `space` can access: no disk, no host
/// round trip. Asynchronous on `space`. `exclusions` (from make_exclusions) keeps train and test
/// items disjoint from the eval splits; `failures` (a device scalar, accumulated +=) counts items
/// that still collided after kMaxAttempts regenerations (0 whenever resolve() accepted the spec,
/// except with astronomically small probability; check it outside the training step).
/// The spec must be resolved (resolve()).
template <class Space, class Tokens, class Mask, class MemorySpace>
  requires execution_space<Space> && view_accessible_from<Tokens, Space> &&
           view_accessible_from<Mask, Space>
void generate_batch(Space const& space, recall_spec const& spec,
                    split_exclusions<MemorySpace> const& exclusions, split sp,
                    std::int64_t first_item, Tokens const& tokens, Mask const& mask,
                    Kokkos::View<int, MemorySpace> const& failures) {
  static_assert(Tokens::rank == 2 && Mask::rank == 2,
                "hax::data::generate_batch: tokens and mask must be rank-2 (B, Lpad) Views");
  static_assert(std::is_integral_v<typename Tokens::value_type>,
                "hax::data::generate_batch: tokens must hold an integral type");
  using token_t = typename Tokens::non_const_value_type;
  constexpr char const* op = "hax::data::generate_batch";
  core::require(spec.padded_length > 0 && spec.level_capacity > 0, op,
                "the spec is not resolved (call hax::data::resolve first)");
  core::require(static_cast<long long>(spec.vocab_size) - 1 <=
                    static_cast<long long>(std::numeric_limits<token_t>::max()),
                op, "the token type cannot hold vocab_size ", spec.vocab_size, " (max ",
                static_cast<long long>(std::numeric_limits<token_t>::max()), ")");
  core::require(tokens.extent(0) == mask.extent(0) && tokens.extent(1) == mask.extent(1), op,
                "tokens (", tokens.extent(0), ", ", tokens.extent(1), ") and mask (",
                mask.extent(0), ", ", mask.extent(1), ") must have the same shape");
  core::require(static_cast<std::int64_t>(tokens.extent(1)) == spec.padded_length, op,
                "tokens has ", tokens.extent(1), " columns, expected padded_length ",
                spec.padded_length);
  core::require(first_item >= 0 &&
                    first_item + static_cast<std::int64_t>(tokens.extent(0)) <=
                        split_size(spec, sp),
                op, "items [", first_item, ", ", first_item + tokens.extent(0), ") lie outside the ",
                split_name(sp), " split of ", split_size(spec, sp), " items");
  auto const exclude = exclusions.of(sp);
  core::require(sp == split::valid || exclude.extent(0) == static_cast<std::size_t>(
                                                              split_size(spec, split::valid) +
                                                              (sp == split::train
                                                                   ? split_size(spec, split::test)
                                                                   : 0)),
                op, "exclusions do not match the spec (build them with make_exclusions)");
  Kokkos::View<std::uint64_t*, MemorySpace> no_hashes;
  impl::generate_rows(space, spec, sp, first_item, tokens, mask, exclude, no_hashes, failures);
}

/// Builds the exclusion sets: generates the valid split, then the test split avoiding valid, and
/// sorts their hashes on `space`. Fences `space` (it runs once, before training) and throws
/// hax::invalid_argument if an item could not be made disjoint.
template <class Space>
  requires execution_space<Space>
split_exclusions<typename Space::memory_space> make_exclusions(Space const& space,
                                                               recall_spec const& spec) {
  using mem = typename Space::memory_space;
  constexpr char const* op = "hax::data::make_exclusions";
  core::require(spec.padded_length > 0, op, "the spec is not resolved (call resolve first)");
  std::int64_t const nv = split_size(spec, split::valid);
  std::int64_t const nt = split_size(spec, split::test);
  split_exclusions<mem> ex;
  ex.for_test = Kokkos::View<std::uint64_t*, mem>(
      Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hax::data::exclusions_test"), nv);
  ex.for_train = Kokkos::View<std::uint64_t*, mem>(
      Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hax::data::exclusions_train"),
      nv + nt);
  Kokkos::View<int, mem> failures(Kokkos::view_alloc(space, "hax::data::failures"));
  // Chunked so the scratch rows stay small for any split size.
  std::int64_t const chunk = 4096;
  auto run = [&](split sp, std::int64_t count, auto const& exclude, auto const& out,
                 std::int64_t offset) {
    Kokkos::View<std::int32_t**, Kokkos::LayoutRight, mem> t(
        Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hax::data::scratch_tokens"),
        chunk, spec.padded_length);
    Kokkos::View<std::int8_t**, Kokkos::LayoutRight, mem> m(
        Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hax::data::scratch_mask"), chunk,
        spec.padded_length);
    for (std::int64_t first = 0; first < count; first += chunk) {
      std::int64_t const b = (count - first) < chunk ? (count - first) : chunk;
      auto ts = Kokkos::subview(t, Kokkos::make_pair<std::int64_t, std::int64_t>(0, b), Kokkos::ALL);
      auto ms = Kokkos::subview(m, Kokkos::make_pair<std::int64_t, std::int64_t>(0, b), Kokkos::ALL);
      auto hs = Kokkos::subview(out, Kokkos::make_pair(offset + first, offset + first + b));
      impl::generate_rows(space, spec, sp, first, ts, ms, exclude, hs, failures);
    }
  };
  Kokkos::View<std::uint64_t*, mem> none;
  run(split::valid, nv, none, ex.for_train, 0);
  Kokkos::deep_copy(space, ex.for_test, Kokkos::subview(ex.for_train, Kokkos::make_pair<std::int64_t, std::int64_t>(0, nv)));
  if (nv > 0) Kokkos::sort(space, ex.for_test);
  run(split::test, nt, ex.for_test, ex.for_train, nv);
  if (nv + nt > 0) Kokkos::sort(space, ex.for_train);
  int failed = 0;
  Kokkos::deep_copy(space, failed, failures);
  space.fence("hax::data::make_exclusions");
  core::require(failed == 0, op, failed,
                " test items could not be made distinct from the valid split in ", kMaxAttempts,
                " attempts (the item space is too small for these split sizes)");
  return ex;
}

/// The trainer's view of a batch (semantics.md 1): inputs = tokens[:, :-1], labels =
/// tokens[:, 1:], loss mask = mask[:, :-1], each (B, Lpad - 1) and strided (no copy).
template <class Tokens, class Mask>
struct shifted_batch {
  decltype(Kokkos::subview(std::declval<Tokens>(), Kokkos::ALL,
                           Kokkos::make_pair<std::size_t, std::size_t>(0, 0))) inputs;  // (B, L)
  decltype(inputs) labels;                                                              // (B, L)
  decltype(Kokkos::subview(std::declval<Mask>(), Kokkos::ALL,
                           Kokkos::make_pair<std::size_t, std::size_t>(0, 0))) loss_mask;  // (B, L)
};

/// inputs / labels / loss mask of a generated (B, Lpad) batch; L = Lpad - 1 (reference: 1057).
template <class Tokens, class Mask>
shifted_batch<Tokens, Mask> shift_for_training(Tokens const& tokens, Mask const& mask) {
  std::size_t const lp = tokens.extent(1);
  core::require(lp >= 2, "hax::data::shift_for_training", "tokens needs at least 2 columns, has ",
                lp);
  using P = Kokkos::pair<std::size_t, std::size_t>;
  return {Kokkos::subview(tokens, Kokkos::ALL, P(0, lp - 1)),
          Kokkos::subview(tokens, Kokkos::ALL, P(1, lp)),
          Kokkos::subview(mask, Kokkos::ALL, P(0, lp - 1))};
}

/// The most loss positions an item of `spec` can have: its last-level tokens of the inquiry half,
/// prod_l n_max[l] (reference: 16 · 16 = 256 of the 1 057 input positions).
/// Saturates at the largest int (such a spec's items would not fit any padded length anyway).
inline int max_loss_positions(recall_spec const& s) {
  constexpr std::int64_t most = std::numeric_limits<int>::max();
  std::int64_t leaves = 1;
  int const w = s.levels < kMaxLevels ? s.levels : kMaxLevels;
  for (int l = 0; l < w; ++l) leaves = std::min(leaves * s.n_max[l], most);
  return static_cast<int>(leaves);
}

/// The loss positions of a batch, R slots per sequence: positions(b, r) is the r-th position t
/// (in increasing order) with loss_mask(b, t) != 0, and -1 once the sequence has no more;
/// labels_at(b, r) = labels(b, t) (0 on empty slots) and mask_at(b, r) = 1 on filled slots, 0 on
/// empty ones. So a masked loss over (B, R) slots equals the masked loss over (B, L) positions.
/// A sequence with more than R loss positions keeps its first R and adds 1 to `overflow` (a
/// device scalar, accumulated +=; the trainer checks it when it reads its metrics back).
/// A team per sequence: a prefix count of the mask gives each loss position its slot.
/// Asynchronous on `space`.
template <class Space, class Mask, class Labels, class Positions, class LabelsAt, class MaskAt,
          class Overflow>
void loss_positions(Space const& space, Mask const& loss_mask, Labels const& labels,
                    Positions const& positions, LabelsAt const& labels_at, MaskAt const& mask_at,
                    Overflow const& overflow) {
  constexpr char const* op = "hax::data::loss_positions";
  static_assert(Mask::rank() == 2 && Labels::rank() == 2 && Positions::rank() == 2 &&
                    LabelsAt::rank() == 2 && MaskAt::rank() == 2 && Overflow::rank() == 0,
                "hax::data::loss_positions: loss_mask, labels (B, L); positions, labels_at, "
                "mask_at (B, R); overflow rank 0");
  int const B = loss_mask.extent_int(0), L = loss_mask.extent_int(1);
  int const R = positions.extent_int(1);
  core::require(labels.extent_int(0) == B && labels.extent_int(1) == L, op, "labels (",
                labels.extent(0), ", ", labels.extent(1), ") must match loss_mask (", B, ", ", L,
                ")");
  core::require(positions.extent_int(0) == B && labels_at.extent_int(0) == B &&
                    labels_at.extent_int(1) == R && mask_at.extent_int(0) == B &&
                    mask_at.extent_int(1) == R,
                op, "positions (", positions.extent(0), ", ", R, "), labels_at (",
                labels_at.extent(0), ", ", labels_at.extent(1), ") and mask_at (",
                mask_at.extent(0), ", ", mask_at.extent(1), ") must all be (B, R) with B = ", B);
  core::require(R >= 1, op, "positions must have at least one slot per sequence (R = ", R, ")");
  using label_t = typename LabelsAt::non_const_value_type;
  using mask_t = typename MaskAt::non_const_value_type;
  using member = typename Kokkos::TeamPolicy<Space>::member_type;
  Kokkos::parallel_for(
      op, Kokkos::TeamPolicy<Space>(space, B, Kokkos::AUTO), KOKKOS_LAMBDA(member const& team) {
        int const b = team.league_rank();
        int count = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, L),
            [&](int t, int& acc) { acc += loss_mask(b, t) != 0 ? 1 : 0; }, count);
        Kokkos::parallel_scan(Kokkos::TeamThreadRange(team, L),
                              [&](int t, int& slot, bool const final) {
                                bool const scored = loss_mask(b, t) != 0;
                                if (final && scored && slot < R) {
                                  positions(b, slot) = t;
                                  labels_at(b, slot) = static_cast<label_t>(labels(b, t));
                                  mask_at(b, slot) = mask_t(1);
                                }
                                slot += scored ? 1 : 0;
                              });
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, count < R ? count : R, R), [&](int r) {
          positions(b, r) = -1;
          labels_at(b, r) = label_t(0);
          mask_at(b, r) = mask_t(0);
        });
        if (count > R) {
          Kokkos::single(Kokkos::PerTeam(team), [&]() { Kokkos::atomic_inc(&overflow()); });
        }
      });
}

}  // namespace hax::data
