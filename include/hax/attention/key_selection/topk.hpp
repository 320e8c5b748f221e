// SPDX-License-Identifier: MIT
/// \file
/// The causal top-k' plan of key selection: for each query i, the k' highest-scoring key
/// positions among j <= i (all of 0..i when i + 1 <= k').
///
/// Order and ties: candidate a ranks above b when s_a > s_b, or s_a == s_b and a > b (the more
/// recent key wins a tie, as the LSH window prefers recent keys). A NaN score ranks below every
/// number (as if it were -inf), so the order stays total and every slot gets exactly one key.
/// Slots hold the selected positions best first, then -1. Rows are never empty.
///
/// Algorithm: the sequence is cut into blocks of S = kTopkBlock positions, and every list is
/// built by *ranking* rather than by inserting: in a merge of sorted lists, an entry's slot is its
/// position in its own list plus the number of entries of the other lists that beat it, so the
/// entries of a merge are placed independently, one thread each.
///   1. prefixes, one team per sequence b, sequential over blocks: prefix(c) = top-k' of the
///      positions < c·S is the merge of prefix(c-1) with block c-1's own top-k' (each key's rank
///      among the block's S keys). Each entry finds its rank by a binary search in the other list,
///      which lives in team scratch: O(L/S · log k') steps per sequence, 2k' threads wide.
///   2. rows, one team per (b, block c), parallel: row i of block c is the merge of prefix(c) with
///      the block's keys begin..i. A thread owns one entry (a prefix entry or a block key) and walks
///      the block's rows; going from row i-1 to i only adds key i, which moves the entry down one
///      slot when key i beats it: O(S) per entry, one coalesced write of k' slots per row.
/// O(B·L·(k' + S)) work in all, O(B·L/S · k') of it sequential per sequence in step 1 only.
/// Workspace: one (B, L/S, k') index list (the prefixes).
///
/// TopkMethod::insertion keeps the earlier algorithm as a variant for benchmarks: one thread per
/// block inserts its keys into sorted lists, one thread per sequence merges the block lists, and
/// one thread per block copies each row from the previous one and inserts the row's key. The
/// same lists, O(B·L·k') time, but with B threads in its sequential phase and uncoalesced rows.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>
#include <hax/core/views.hpp>

#include <algorithm>
#include <cstddef>

namespace hax::attn {

/// Block length of causal_topk (see the file comment).
inline constexpr int kTopkBlock = 32;

namespace impl {

/// The score as causal_topk compares it: NaN becomes -inf, which keeps the order total.
template <class T>
KOKKOS_INLINE_FUNCTION T topk_key(T s) {
  return s != s ? -Kokkos::Experimental::infinity_v<T> : s;
}

/// Number of leading entries of the non-increasing `keys` (n of them) for which `beats(key)`
/// holds, where `beats` is monotone: true on a prefix, false after it.
template <class Keys, class Beats>
KOKKOS_INLINE_FUNCTION int count_leading(Keys const& keys, int n, Beats const& beats) {
  int lo = 0, hi = n;
  while (lo < hi) {
    int const mid = (lo + hi) / 2;
    if (beats(keys(mid))) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

/// Inserts key j, more recent than every key in `list`, into the sorted list `list` (k' slots, the
/// first `count` filled) of sequence b: it ties with equal keys in its favour, so it goes before
/// the first entry whose key is <= its own; the last entry drops out once the list is full.
template <class S, class List>
KOKKOS_INLINE_FUNCTION void insert_most_recent(S const& scores, int b, List const& list,
                                               int& count, int kprime, int j) {
  auto const sj = topk_key(scores(b, j));
  int pos = 0;
  while (pos < count && topk_key(scores(b, list(pos))) > sj) { ++pos; }
  if (pos < kprime) {
    int const last = count < kprime ? count : kprime - 1;
    for (int t = last; t > pos; --t) { list(t) = list(t - 1); }
    list(pos) = j;
    if (count < kprime) { ++count; }
  }
}

/// Teams covering `work` independent entries: a multiple of a warp up to 256 threads on GPUs;
/// one thread on host backends, where a team's entries run in order.
template <class Space>
Kokkos::TeamPolicy<Space> topk_teams(Space const& space, int league, int work) {
  return core::gpu_wide_teams(space, league, std::min(256, (work + 31) / 32 * 32));
}

/// TopkMethod::ranking (see the file comment); shapes checked by the caller, B > 0.
template <class Space, class S, class Idx>
void causal_topk_ranking(Space const& space, S const& scores, Idx const& idx) {
  int const B = scores.extent_int(0), L = scores.extent_int(1), kprime = idx.extent_int(2);
  constexpr int block = kTopkBlock;
  int const nb = (L + block - 1) / block;
  using value_type = typename S::non_const_value_type;
  using memory_space = typename Space::memory_space;
  using member = typename Kokkos::TeamPolicy<Space>::member_type;
  using scratch_space = typename Space::scratch_memory_space;
  using scratch_keys = Kokkos::View<value_type*, scratch_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  using scratch_pos = Kokkos::View<int*, scratch_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  using lists_view = Kokkos::View<int***, Kokkos::LayoutRight, memory_space>;
  // (B, nb, k'): prefix(c) sorted best first, then -1.
  auto const prefix =
      uninitialized_view<lists_view>(space, "hax::attn::causal_topk::prefix", B, nb, kprime);

  // 1. Prefixes. Scratch: the running prefix and the next one (positions and keys), the block's
  //    own top-k' and the block's S keys.
  {
    std::size_t const bytes = 3 * (scratch_keys::shmem_size(kprime) + scratch_pos::shmem_size(kprime)) +
                              scratch_keys::shmem_size(block);
    int const level = core::scratch_level(bytes);
    Kokkos::parallel_for(
        "hax::attn::causal_topk::prefixes",
        topk_teams(space, B, 2 * kprime).set_scratch_size(level, Kokkos::PerTeam(bytes)),
        KOKKOS_LAMBDA(member const& team) {
          auto const& mem = team.team_scratch(level);
          scratch_pos pos_a(mem, kprime), pos_b(mem, kprime), own_pos(mem, kprime);
          scratch_keys key_a(mem, kprime), key_b(mem, kprime), own_key(mem, kprime);
          scratch_keys block_key(mem, block);
          int const b = team.league_rank();
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kprime), [&](int t) { prefix(b, 0, t) = -1; });
          int count = 0;  // entries of the running prefix
          for (int c = 1; c < nb; ++c) {
            bool const odd = (c & 1) != 0;  // ping-pong: read one buffer, write the other
            auto const& cur_pos = odd ? pos_a : pos_b;
            auto const& cur_key = odd ? key_a : key_b;
            auto const& next_pos = odd ? pos_b : pos_a;
            auto const& next_key = odd ? key_b : key_a;
            int const begin = (c - 1) * block;  // block c-1 is full: it is not the last one
            Kokkos::parallel_for(Kokkos::TeamThreadRange(team, block),
                                 [&](int r) { block_key(r) = topk_key(scores(b, begin + r)); });
            team.team_barrier();
            // Block c-1's own top-k': a key's rank among the block's keys.
            Kokkos::parallel_for(Kokkos::TeamThreadRange(team, block), [&](int r) {
              value_type const s = block_key(r);
              int rank = 0;
              for (int q = 0; q < block; ++q) {
                value_type const sq = block_key(q);
                rank += (sq > s || (sq == s && q > r)) ? 1 : 0;
              }
              if (rank < kprime) {
                own_pos(rank) = begin + r;
                own_key(rank) = s;
              }
            });
            team.team_barrier();
            int const own_count = block < kprime ? block : kprime;
            int const total = count + own_count < kprime ? count + own_count : kprime;
            // Merge by ranking. The block's keys are more recent than the prefix's: they win ties.
            Kokkos::parallel_for(Kokkos::TeamThreadRange(team, count + own_count), [&](int e) {
              if (e < count) {
                value_type const s = cur_key(e);
                int const rank =
                    e + count_leading(own_key, own_count, [&](value_type o) { return o >= s; });
                if (rank < kprime) {
                  next_pos(rank) = cur_pos(e);
                  next_key(rank) = s;
                }
              } else {
                int const q = e - count;
                value_type const s = own_key(q);
                int const rank =
                    q + count_leading(cur_key, count, [&](value_type a) { return a > s; });
                if (rank < kprime) {
                  next_pos(rank) = own_pos(q);
                  next_key(rank) = s;
                }
              }
            });
            team.team_barrier();
            Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kprime),
                                 [&](int t) { prefix(b, c, t) = t < total ? next_pos(t) : -1; });
            count = total;
          }
        });
  }

  // 2. Rows: merge prefix(c) with the block's keys, one thread per entry walking the rows.
  {
    std::size_t const bytes = scratch_keys::shmem_size(kprime) + scratch_pos::shmem_size(kprime) +
                              scratch_keys::shmem_size(block);
    int const level = core::scratch_level(bytes);
    Kokkos::parallel_for(
        "hax::attn::causal_topk::rows",
        topk_teams(space, B * nb, kprime + block).set_scratch_size(level, Kokkos::PerTeam(bytes)),
        KOKKOS_LAMBDA(member const& team) {
          auto const& mem = team.team_scratch(level);
          scratch_keys pre_key(mem, kprime);
          scratch_pos pre_pos(mem, kprime);
          scratch_keys block_key(mem, block);
          int const b = team.league_rank() / nb;
          int const c = team.league_rank() % nb;
          int const begin = c * block;
          int const n = L - begin < block ? L - begin : block;
          int const count = begin < kprime ? begin : kprime;  // entries of prefix(c)
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, count), [&](int p) {
            int const j = prefix(b, c, p);
            pre_pos(p) = j;
            pre_key(p) = topk_key(scores(b, j));
          });
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, n),
                               [&](int r) { block_key(r) = topk_key(scores(b, begin + r)); });
          team.team_barrier();
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, count + n), [&](int e) {
            if (e < count) {
              // A prefix entry: every block key at least as good (more recent) moves it down.
              value_type const s = pre_key(e);
              int const j = pre_pos(e);
              int rank = e;
              for (int r = 0; r < n; ++r) {
                rank += block_key(r) >= s ? 1 : 0;
                if (rank >= kprime) { break; }
                idx(b, begin + r, rank) = j;
              }
            } else {
              // Block key r0 enters at row r0, behind the prefix entries and older block keys
              // that beat it; later keys move it down when they are at least as good.
              int const r0 = e - count;
              value_type const s = block_key(r0);
              int rank = count_leading(pre_key, count, [&](value_type a) { return a > s; });
              for (int q = 0; q < r0; ++q) { rank += block_key(q) > s ? 1 : 0; }
              for (int r = r0; r < n; ++r) {
                if (r > r0) { rank += block_key(r) >= s ? 1 : 0; }
                if (rank >= kprime) { break; }
                idx(b, begin + r, rank) = begin + r0;
              }
            }
          });
          // Rows with fewer than k' candidates (only while begin + r + 1 < k'): -1 after them.
          if (count + 1 < kprime) {
            Kokkos::parallel_for(Kokkos::TeamThreadRange(team, n * kprime), [&](int e) {
              int const r = e / kprime;
              int const t = e % kprime;
              if (t >= count + r + 1) { idx(b, begin + r, t) = -1; }
            });
          }
        });
  }
}

/// TopkMethod::insertion (see the file comment); shapes checked by the caller, B > 0.
template <class Space, class S, class Idx>
void causal_topk_insertion(Space const& space, S const& scores, Idx const& idx) {
  int const B = scores.extent_int(0), L = scores.extent_int(1), kprime = idx.extent_int(2);
  constexpr int block = kTopkBlock;
  int const nb = (L + block - 1) / block;
  using memory_space = typename Space::memory_space;
  using lists_view = Kokkos::View<int***, Kokkos::LayoutRight, memory_space>;
  // (B, nb, k') each, -1 = empty slot; lists are sorted best first.
  auto const own =
      uninitialized_view<lists_view>(space, "hax::attn::causal_topk_insertion::own", B, nb, kprime);
  auto const prefix =
      uninitialized_view<lists_view>(space, "hax::attn::causal_topk_insertion::prefix", B, nb, kprime);
  using policy2 = Kokkos::MDRangePolicy<Space, core::rank_right<2>>;

  // 1. Each block's own top-k': insert its keys in order (a later key wins a tie).
  Kokkos::parallel_for(
      "hax::attn::causal_topk_insertion::blocks", policy2(space, {0, 0}, {B, nb}),
      KOKKOS_LAMBDA(int b, int c) {
        auto const list = Kokkos::subview(own, b, c, Kokkos::ALL);
        int count = 0;
        int const end = Kokkos::min(L, (c + 1) * block);
        for (int j = c * block; j < end; ++j) { insert_most_recent(scores, b, list, count, kprime, j); }
        for (int t = count; t < kprime; ++t) { list(t) = -1; }
      });

  // 2. prefix(c) = top-k' of blocks 0..c-1: merge prefix(c-1) with own(c-1), both sorted.
  Kokkos::parallel_for(
      "hax::attn::causal_topk_insertion::prefixes", Kokkos::RangePolicy<Space>(space, 0, B),
      KOKKOS_LAMBDA(int b) {
        for (int t = 0; t < kprime; ++t) { prefix(b, 0, t) = -1; }
        for (int c = 1; c < nb; ++c) {
          int p = 0, q = 0;  // cursors into prefix(c-1) and own(c-1)
          for (int t = 0; t < kprime; ++t) {
            int const a = prefix(b, c - 1, p);
            int const o = own(b, c - 1, q);
            // Every key of block c-1 is more recent than every key of the prefix, so it wins ties.
            bool const take_own = o >= 0 && (a < 0 || topk_key(scores(b, o)) >= topk_key(scores(b, a)));
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
      "hax::attn::causal_topk_insertion::rows", policy2(space, {0, 0}, {B, nb}),
      KOKKOS_LAMBDA(int b, int c) {
        int const begin = c * block;
        int const end = Kokkos::min(L, begin + block);
        int count = 0;
        while (count < kprime && prefix(b, c, count) >= 0) { ++count; }
        for (int i = begin; i < end; ++i) {
          auto const row = Kokkos::subview(idx, b, i, Kokkos::ALL);
          for (int t = 0; t < count; ++t) { row(t) = i == begin ? prefix(b, c, t) : idx(b, i - 1, t); }
          insert_most_recent(scores, b, row, count, kprime, i);
          for (int t = count; t < kprime; ++t) { row(t) = -1; }
        }
      });
}

}  // namespace impl

/// The algorithm of causal_topk (see the file comment); both give the same lists.
enum class TopkMethod {
  ranking,    ///< merges by ranking, parallel over entries (the default)
  insertion,  ///< insertion sweeps, one thread per block or sequence (a benchmark variant)
};

/// idx (B, L, k') = causal top-k' of scores (B, L) (see the file comment).
/// Asynchronous on `space`. Throws hax::invalid_argument on mismatched shapes or k' > L.
template <execution_space Space, class S, class Idx>
  requires(view_accessible_from<S, Space> && view_accessible_from<Idx, Space>)
void causal_topk(Space const& space, S const& scores, Idx const& idx,
                 TopkMethod method = TopkMethod::ranking) {
  static_assert(S::rank() == 2 && Idx::rank() == 3,
                "hax::attn::causal_topk: scores must be (B, L) and idx (B, L, k')");
  int const B = scores.extent_int(0), L = scores.extent_int(1), kprime = idx.extent_int(2);
  core::require(idx.extent_int(0) == B && idx.extent_int(1) == L, "hax::attn::causal_topk", "idx (",
                idx.extent(0), ", ", idx.extent(1), ", ", kprime, ") must be (B, L, k') with (B, L) = (",
                B, ", ", L, ") of scores");
  core::require(kprime >= 1 && kprime <= L, "hax::attn::causal_topk", "k' = ", kprime,
                " (idx extent 2) must be in [1, L] with L = ", L);
  if (B == 0) { return; }
  if (method == TopkMethod::insertion) {
    impl::causal_topk_insertion(space, scores, idx);
  } else {
    impl::causal_topk_ranking(space, scores, idx);
  }
}

/// Overload on the default instance of idx's execution space.
template <class S, class Idx>
void causal_topk(S const& scores, Idx const& idx, TopkMethod method = TopkMethod::ranking) {
  causal_topk(typename Idx::execution_space{}, scores, idx, method);
}

}  // namespace hax::attn
