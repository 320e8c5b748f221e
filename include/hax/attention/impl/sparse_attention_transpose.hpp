// SPDX-License-Identifier: MIT
/// \file
/// The atomic-free backward of hax/attention/sparse_attention.hpp: the candidate lists are
/// transposed (for each key, the queries that list it) by a counting pass (histogram of key
/// indices, exclusive scan, fill), then dq is computed per query row and dk, dv are gathered per
/// key row, so no floating-point atomics are needed. Extra memory O(B·L·k') (the transposed lists)
/// plus O(B·L) (counts, offsets, D_i); docs/math/sparse_attention.md.
#pragma once

#include <cstdint>

#include <hax/attention/impl/sparse_attention_kernels.hpp>
#include <hax/core/policies.hpp>
#include <hax/core/views.hpp>

#include <Kokkos_Core.hpp>

namespace hax::attn::impl {

/// Transposed candidate lists: the queries of key (b, t) are
/// queries(offsets(b·L + t)) .. queries(offsets(b·L + t + 1) − 1), in no particular order.
template <class Space>
struct TransposedLists {
  using memory_space = typename Space::memory_space;
  // (B·L + 1) exclusive scan of the per-key counts. 64-bit: B·L·k' pairs pass 2^31 at paper scale
  // (dense causal at B·L = 2^20, L = 4096 visits 2^31 + 2^19 of them).
  Kokkos::View<std::int64_t*, memory_space> offsets;
  Kokkos::View<int*, memory_space> queries;  // (B·L·k') query index i of each (key, query) pair
};

/// Builds the transposed lists of `pattern` on `space` (asynchronous). Pairs that the kernels skip
/// (key −1, and pad keys or pad queries in causal semantics) are left out.
template <class Space, class P, class Mask>
TransposedLists<Space> transpose_candidates(Space const& space, P const& pattern, Mask const& valid, int B,
                                            int L, bool causal) {
  using memory_space = typename Space::memory_space;
  int const kmax = static_cast<int>(pattern.max_keys_per_query());
  int const rows = B * L;
  TransposedLists<Space> t;
  t.offsets = uninitialized_view<Kokkos::View<std::int64_t*, memory_space>>(
      space, "hax::attn::transpose_offsets", rows + 1);
  t.queries = uninitialized_view<Kokkos::View<int*, memory_space>>(
      space, "hax::attn::transpose_queries",
      static_cast<std::size_t>(rows) * static_cast<std::size_t>(kmax > 0 ? kmax : 1));
  auto const cursor = zeroed_view<Kokkos::View<std::int64_t*, memory_space>>(
      space, "hax::attn::transpose_cursor", rows);  // (B·L)
  auto const offsets = t.offsets;
  auto const queries = t.queries;
  // 1. Histogram of key indices (integer atomics on counts only; no floating-point atomics).
  Kokkos::parallel_for(
      "hax::attn::sparse_attention_transpose_count", Kokkos::RangePolicy<Space>(space, 0, rows),
      KOKKOS_LAMBDA(int row) {
        int const b = row / L, i = row % L;
        if (causal && !valid(b, i)) { return; }
        for (int j = 0; j < kmax; ++j) {
          int const kk = pattern.key(b, i, j);
          if (kk < 0 || (causal && !valid(b, kk))) { continue; }
          Kokkos::atomic_inc(&cursor(b * L + kk));
        }
      });
  // 2. Exclusive scan over all keys of all sequences (sequences are contiguous, so one scan).
  Kokkos::parallel_scan(
      "hax::attn::sparse_attention_transpose_scan", Kokkos::RangePolicy<Space>(space, 0, rows + 1),
      KOKKOS_LAMBDA(int r, std::int64_t& partial, bool final) {
        std::int64_t const c = r < rows ? cursor(r) : 0;
        if (final) {
          offsets(r) = partial;
          if (r < rows) { cursor(r) = partial; }  // the fill's write position
        }
        partial += c;
      });
  // 3. Fill: each (query, key) pair claims the next slot of its key.
  Kokkos::parallel_for(
      "hax::attn::sparse_attention_transpose_fill", Kokkos::RangePolicy<Space>(space, 0, rows),
      KOKKOS_LAMBDA(int row) {
        int const b = row / L, i = row % L;
        if (causal && !valid(b, i)) { return; }
        for (int j = 0; j < kmax; ++j) {
          int const kk = pattern.key(b, i, j);
          if (kk < 0 || (causal && !valid(b, kk))) { continue; }
          std::int64_t const slot = Kokkos::atomic_fetch_add(&cursor(b * L + kk), std::int64_t{1});
          queries(slot) = i;
        }
      });
  return t;
}

/// Atomic-free backward: (1) per query row, D_i = do_i·o_i and dq_i = Σ_j dS_ij k_j (written);
/// (2) transposed lists; (3) per key row t, dk_t = Σ_{i lists t} dS_it q_i and
/// dv_t = Σ_i P_it do_i (+ the uniform share of the reference semantics' empty rows), written.
template <class Space, class P, class Q, class K, class V, class Mask, class O, class LSE,
          class DO, class DQ, class DK, class DV>
void backward_gather(Space const& space, P const& pattern, Q const& q, K const& k, V const& v,
                     Mask const& valid, O const& o, LSE const& lse, DO const& dout, DQ const& dq,
                     DK const& dk, DV const& dv, AttentionOptions const& opts) {
  using T = typename DQ::non_const_value_type;
  using memory_space = typename Space::memory_space;
  using team_policy = Kokkos::TeamPolicy<Space>;
  using member = typename team_policy::member_type;
  int const B = q.extent_int(0), L = q.extent_int(1), N = q.extent_int(2), Dv = v.extent_int(2);
  int const rows = B * L;
  int const kmax = static_cast<int>(pattern.max_keys_per_query());
  bool const causal = opts.semantics == Semantics::causal;
  T const scale = static_cast<T>(opts.scale);
  auto const Dvec =
      uninitialized_view<Kokkos::View<T*, memory_space>>(space, "hax::attn::sparse_attention_D",
                                                         rows);  // (B·L) do_i·o_i
  int const league = (rows + core::kRowsPerTeam - 1) / core::kRowsPerTeam;
  Kokkos::parallel_for(
      "hax::attn::sparse_attention_backward_dq", core::row_teams(space, league),
      KOKKOS_LAMBDA(member const& team) {
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, core::kRowsPerTeam), [&](int r) {
          int const row = team.league_rank() * core::kRowsPerTeam + r;
          if (row >= rows) { return; }
          int const b = row / L, i = row % L;
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, N), [&](int n) { dq(b, i, n) = T(0); });
          T Di = T(0);
          Kokkos::parallel_reduce(
              Kokkos::ThreadVectorRange(team, Dv), [&](int d, T& acc) { acc += dout(b, i, d) * o(b, i, d); }, Di);
          Kokkos::single(Kokkos::PerThread(team), [&]() { Dvec(row) = Di; });
          if (causal && !valid(b, i)) { return; }
          T const row_lse = lse(b, i);
          for (int j = 0; j < kmax; ++j) {
            int const kk = pattern.key(b, i, j);
            if (kk < 0 || (causal && !valid(b, kk))) { continue; }
            T s = T(0);
            Kokkos::parallel_reduce(
                Kokkos::ThreadVectorRange(team, N), [&](int n, T& acc) { acc += q(b, i, n) * k(b, kk, n); }, s);
            T const p = Kokkos::exp(s * scale - row_lse);
            T dp = T(0);
            Kokkos::parallel_reduce(
                Kokkos::ThreadVectorRange(team, Dv), [&](int d, T& acc) { acc += dout(b, i, d) * v(b, kk, d); }, dp);
            T const ds = p * (dp - Di) * scale;
            Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, N), [&](int n) { dq(b, i, n) += ds * k(b, kk, n); });
          }
        });
      });
  // Reference semantics: an empty row i attends uniformly to all L positions, so every v_t gets
  // (1/L) Σ_{empty i} do_i. Empty rows are those the forward marked with lse = −∞.
  auto const uniform = uninitialized_view<Kokkos::View<T**, Kokkos::LayoutRight, memory_space>>(
      space, "hax::attn::sparse_attention_uniform", B,
      causal ? 0 : Dv);  // (B, Dv)
  if (!causal) {
    Kokkos::parallel_for(
        "hax::attn::sparse_attention_backward_uniform",
        Kokkos::MDRangePolicy<Space, core::rank_right<2>>(space, {0, 0}, {B, Dv}), KOKKOS_LAMBDA(int b, int d) {
          T sum = T(0);
          for (int i = 0; i < L; ++i) {
            if (Kokkos::isinf(lse(b, i))) { sum += dout(b, i, d); }
          }
          uniform(b, d) = sum / T(L);
        });
  }
  auto const lists = transpose_candidates(space, pattern, valid, B, L, causal);
  auto const offsets = lists.offsets;
  auto const queries = lists.queries;
  Kokkos::parallel_for(
      "hax::attn::sparse_attention_backward_dkdv", core::row_teams(space, league),
      KOKKOS_LAMBDA(member const& team) {
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, core::kRowsPerTeam), [&](int r) {
          int const row = team.league_rank() * core::kRowsPerTeam + r;
          if (row >= rows) { return; }
          int const b = row / L, t = row % L;
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, N), [&](int n) { dk(b, t, n) = T(0); });
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, Dv),
                               [&](int d) { dv(b, t, d) = causal ? T(0) : uniform(b, d); });
          std::int64_t const end = offsets(row + 1);
          for (std::int64_t e = offsets(row); e < end; ++e) {
            int const i = queries(e);
            T s = T(0);
            Kokkos::parallel_reduce(
                Kokkos::ThreadVectorRange(team, N), [&](int n, T& acc) { acc += q(b, i, n) * k(b, t, n); }, s);
            T const p = Kokkos::exp(s * scale - lse(b, i));
            T dp = T(0);
            Kokkos::parallel_reduce(
                Kokkos::ThreadVectorRange(team, Dv), [&](int d, T& acc) { acc += dout(b, i, d) * v(b, t, d); }, dp);
            T const ds = p * (dp - Dvec(b * L + i)) * scale;
            Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, N), [&](int n) { dk(b, t, n) += ds * q(b, i, n); });
            Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, Dv), [&](int d) { dv(b, t, d) += p * dout(b, i, d); });
          }
        });
      });
}

/// Runs the backward algorithm that opts.backward names (automatic: the backend's default).
template <class Space, class P, class Q, class K, class V, class Mask, class O, class LSE,
          class DO, class DQ, class DK, class DV>
void backward(Space const& space, P const& pattern, Q const& q, K const& k, V const& v, Mask const& valid,
              O const& o, LSE const& lse, DO const& dout, DQ const& dq, DK const& dk, DV const& dv,
              AttentionOptions const& opts) {
  auto algo = opts.backward;
  if (algo == BackwardAlgorithm::automatic) { algo = default_backward_algorithm<Space>(); }
  if (algo == BackwardAlgorithm::atomic_scatter) {
    backward_atomic(space, pattern, q, k, v, valid, o, lse, dout, dq, dk, dv, opts);
  } else {
    backward_gather(space, pattern, q, k, v, valid, o, lse, dout, dq, dk, dv, opts);
  }
}

}  // namespace hax::attn::impl
