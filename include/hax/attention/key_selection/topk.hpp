// SPDX-License-Identifier: MIT
/// \file
/// The causal top-k' plan of key selection: for each query i, the k' highest-scoring key
/// positions among j <= i (all of 0..i when i + 1 <= k').
///
/// Order and ties: candidate a ranks above b when s_a > s_b, or s_a == s_b and a > b (the more
/// recent key wins a tie, as the LSH window prefers recent keys). Slots hold the selected
/// positions best first, then -1. Rows are never empty.
///
/// Algorithm (blocked, so that a GPU has B·L/S threads of work rather than B): the sequence is
/// cut into blocks of S = kTopkBlock positions.
///   1. per (b, block), in parallel: the block's own top-k' by an insertion sweep;
///   2. per b, a sweep over blocks merging sorted lists: prefix(c) = top-k' of positions < c·S;
///   3. per (b, block), in parallel: the insertion sweep of the old single-sweep algorithm over
///      the block's positions, started from prefix(c) instead of from empty.
/// Going from query i-1 to i only inserts key i, which costs O(k') together with copying the list
/// into row i: O(B·L·k') time overall, with phases 1 and 3 parallel over B·L/S and phase 2
/// sequential over L/S merges of O(k'). Workspace: two (B, L/S, k') index lists.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>
#include <hax/core/views.hpp>

namespace hax::attn {

/// Block length of causal_topk's parallel phases (see the file comment).
inline constexpr int kTopkBlock = 32;

namespace impl {

/// Inserts key j, more recent than every key in `list`, into the sorted list `list` (k' slots, the
/// first `count` filled) of sequence b: it ties with equal scores in its favour, so it goes before
/// the first entry whose score is <= its own; the last entry drops out once the list is full.
template <class S, class List>
KOKKOS_INLINE_FUNCTION void insert_most_recent(S const& scores, int b, List const& list,
                                               int& count, int kprime, int j) {
  auto const sj = scores(b, j);
  int pos = 0;
  while (pos < count && scores(b, list(pos)) > sj) { ++pos; }
  if (pos < kprime) {
    int const last = count < kprime ? count : kprime - 1;
    for (int t = last; t > pos; --t) { list(t) = list(t - 1); }
    list(pos) = j;
    if (count < kprime) { ++count; }
  }
}

}  // namespace impl

/// idx (B, L, k') = causal top-k' of scores (B, L) (see the file comment).
/// Asynchronous on `space`. Throws hax::invalid_argument on mismatched shapes or k' > L.
template <execution_space Space, class S, class Idx>
  requires(view_accessible_from<S, Space> && view_accessible_from<Idx, Space>)
void causal_topk(Space const& space, S const& scores, Idx const& idx) {
  static_assert(S::rank() == 2 && Idx::rank() == 3,
                "hax::attn::causal_topk: scores must be (B, L) and idx (B, L, k')");
  int const B = scores.extent_int(0), L = scores.extent_int(1), kprime = idx.extent_int(2);
  core::require(idx.extent_int(0) == B && idx.extent_int(1) == L, "hax::attn::causal_topk", "idx (",
                idx.extent(0), ", ", idx.extent(1), ", ", kprime, ") must be (B, L, k') with (B, L) = (",
                B, ", ", L, ") of scores");
  core::require(kprime >= 1 && kprime <= L, "hax::attn::causal_topk", "k' = ", kprime,
                " (idx extent 2) must be in [1, L] with L = ", L);
  if (B == 0) { return; }
  constexpr int block = kTopkBlock;
  int const nb = (L + block - 1) / block;
  using memory_space = typename Space::memory_space;
  using lists_view = Kokkos::View<int***, Kokkos::LayoutRight, memory_space>;
  // (B, nb, k') each, -1 = empty slot; lists are sorted best first.
  auto const own =
      uninitialized_view<lists_view>(space, "hax::attn::causal_topk::own", B, nb, kprime);
  auto const prefix =
      uninitialized_view<lists_view>(space, "hax::attn::causal_topk::prefix", B, nb, kprime);
  using policy2 = Kokkos::MDRangePolicy<Space, core::rank_right<2>>;

  // 1. Each block's own top-k': insert its keys in order (a later key wins a tie).
  Kokkos::parallel_for(
      "hax::attn::causal_topk::blocks", policy2(space, {0, 0}, {B, nb}),
      KOKKOS_LAMBDA(int b, int c) {
        auto const list = Kokkos::subview(own, b, c, Kokkos::ALL);
        int count = 0;
        int const end = Kokkos::min(L, (c + 1) * block);
        for (int j = c * block; j < end; ++j) {
          impl::insert_most_recent(scores, b, list, count, kprime, j);
        }
        for (int t = count; t < kprime; ++t) { list(t) = -1; }
      });

  // 2. prefix(c) = top-k' of blocks 0..c-1: merge prefix(c-1) with own(c-1), both sorted.
  Kokkos::parallel_for(
      "hax::attn::causal_topk::prefixes", Kokkos::RangePolicy<Space>(space, 0, B),
      KOKKOS_LAMBDA(int b) {
        for (int t = 0; t < kprime; ++t) { prefix(b, 0, t) = -1; }
        for (int c = 1; c < nb; ++c) {
          int p = 0, q = 0;  // cursors into prefix(c-1) and own(c-1)
          for (int t = 0; t < kprime; ++t) {
            int const a = prefix(b, c - 1, p);
            int const o = own(b, c - 1, q);
            // Every key of block c-1 is more recent than every key of the prefix, so it wins ties.
            bool const take_own =
                o >= 0 && (a < 0 || scores(b, o) >= scores(b, a));
            if (take_own) {
              prefix(b, c, t) = o;
              ++q;
            } else {
              prefix(b, c, t) = a;  // may be -1 once both lists run out
              if (a >= 0) { ++p; }
            }
          }
        }
      });

  // 3. Rows of block c: start from prefix(c), insert the block's keys one by one.
  Kokkos::parallel_for(
      "hax::attn::causal_topk::rows", policy2(space, {0, 0}, {B, nb}),
      KOKKOS_LAMBDA(int b, int c) {
        int const begin = c * block;
        int const end = Kokkos::min(L, begin + block);
        int count = 0;
        while (count < kprime && prefix(b, c, count) >= 0) { ++count; }
        for (int i = begin; i < end; ++i) {
          auto const row = Kokkos::subview(idx, b, i, Kokkos::ALL);
          for (int t = 0; t < count; ++t) {
            row(t) = i == begin ? prefix(b, c, t) : idx(b, i - 1, t);
          }
          impl::insert_most_recent(scores, b, row, count, kprime, i);
          for (int t = count; t < kprime; ++t) { row(t) = -1; }
        }
      });
}

/// Overload on the default instance of idx's execution space.
template <class S, class Idx>
void causal_topk(S const& scores, Idx const& idx) {
  causal_topk(typename Idx::execution_space{}, scores, idx);
}

}  // namespace hax::attn
