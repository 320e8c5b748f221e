// SPDX-License-Identifier: MIT
/// \file
/// Small element-wise kernels of hax::attn::SparseBranch (hax/attention/sparse_branch.hpp): the
/// [K, Q] split of the xx projection, the per-sequence lengths from a pad mask, scalar
/// accumulation on the device, and the gradient packing of the backward. Free functions, so that
/// their KOKKOS_LAMBDAs compile under nvcc (no lambdas in class members or constructors).
#pragma once

#include <hax/core/policies.hpp>

#include <Kokkos_Core.hpp>

namespace hax::attn::impl {

/// k (B, L, N) = xx(:, :, 0:N) · inv_sqrt_n, q (B, L, N) = xx(:, :, N:2N), from xx (B, L, 2N).
template <class Space, class XX, class K, class Q, class T>
void branch_split_kq(Space const& space, XX const& xx, K const& k, Q const& q, T inv_sqrt_n) {
  int const B = k.extent_int(0), L = k.extent_int(1), N = k.extent_int(2);
  core::for_each_row_major(
      "hax::attn::sparse_branch::split_kq", space, B, L, N,
      KOKKOS_LAMBDA(int b, int i, int n) {
        k(b, i, n) = xx(b, i, n) * inv_sqrt_n;
        q(b, i, n) = xx(b, i, N + n);
      });
}

/// dxx (B, L, 2N) = [dk · inv_sqrt_n, dq]: the gradient at the xx projection's output.
template <class Space, class DK, class DQ, class DXX, class T>
void branch_pack_dxx(Space const& space, DK const& dk, DQ const& dq, DXX const& dxx, T inv_sqrt_n) {
  int const B = dk.extent_int(0), L = dk.extent_int(1), N = dk.extent_int(2);
  core::for_each_row_major(
      "hax::attn::sparse_branch::pack_dxx", space, B, L, N,
      KOKKOS_LAMBDA(int b, int i, int n) {
        dxx(b, i, n) = dk(b, i, n) * inv_sqrt_n;
        dxx(b, i, N + n) = dq(b, i, n);
      });
}

/// dx (B, L, D) += part (B, L, D): x feeds V directly and the xx projection, one part each.
template <class Space, class DX, class Part>
void branch_accumulate_dx(Space const& space, DX const& dx, Part const& part) {
  int const B = dx.extent_int(0), L = dx.extent_int(1), D = dx.extent_int(2);
  core::for_each_row_major(
      "hax::attn::sparse_branch::accumulate_dx", space, B, L, D,
      KOKKOS_LAMBDA(int b, int i, int d) { dx(b, i, d) += part(b, i, d); });
}

/// lengths (B) = the number of real tokens per sequence (non-zero entries of valid (B, L)), or L
/// when valid is empty. Right padding is assumed by the ranking loss (its candidates are 0..len-1).
template <class Space, class Valid, class Len>
void branch_lengths(Space const& space, Valid const& valid, int L, Len const& lengths) {
  // A team per sequence splits the count over L (a thread per sequence walking L alone took
  // 61 µs per call on an H100: one block of B threads).
  int const B = lengths.extent_int(0);
  bool const has_mask = valid.is_allocated();
  using member = typename Kokkos::TeamPolicy<Space>::member_type;
  Kokkos::parallel_for(
      "hax::attn::sparse_branch::lengths", core::long_loop_teams(space, B), KOKKOS_LAMBDA(member const& team) {
        int const b = team.league_rank();
        int n = L;
        if (has_mask) {
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(team, L), [&](int i, int& sum) { sum += valid(b, i) != 0 ? 1 : 0; }, n);
        }
        Kokkos::single(Kokkos::PerTeam(team), [&]() { lengths(b) = n; });
      });
}

/// valid (B, L) int = (mask != 0): a copy of the caller's pad mask in a fixed type for Saved.
template <class Space, class Mask, class Valid>
void branch_copy_mask(Space const& space, Mask const& mask, Valid const& valid) {
  int const B = valid.extent_int(0), L = valid.extent_int(1);
  core::for_each_row_major(
      "hax::attn::sparse_branch::copy_mask", space, B, L,
      KOKKOS_LAMBDA(int b, int i) { valid(b, i) = mask(b, i) != 0 ? 1 : 0; });
}

/// total() += part() on the device (rank-0 Views): no host synchronisation.
template <class Space, class Total, class Part>
void branch_add_scalar(Space const& space, Total const& total, Part const& part) {
  Kokkos::parallel_for(
      "hax::attn::sparse_branch::add_loss", Kokkos::RangePolicy<Space>(space, 0, 1),
      KOKKOS_LAMBDA(int) { total() += part(); });
}

/// The ranking loss's rows of the MLP's input, kept for its backward instead of all B·L rows:
/// feat_rows (B, R, D) = feat(b, cand(b, a), :), zero where cand(b, a) = -1 (so that the MLP can
/// run over every compact row), and rows (B, R) = a where cand(b, a) >= 0, else -1 (the index into
/// the compact arrays that ScoreMlp::backward reads; -1 is skipped there).
template <class Space, class Cand, class F, class FR, class Rows>
void branch_gather_ranking_rows(Space const& space, Cand const& cand, F const& feat, FR const& feat_rows,
                                Rows const& rows) {
  int const B = cand.extent_int(0), R = cand.extent_int(1), D = feat.extent_int(2);
  core::for_each_row_major(
      "hax::attn::sparse_branch::gather_ranking_rows", space, B, R, D, KOKKOS_LAMBDA(int b, int a, int c) {
        int const j = cand(b, a);
        if (c == 0) { rows(b, a) = j >= 0 ? a : -1; }
        feat_rows(b, a, c) = j >= 0 ? feat(b, j, c) : 0;
      });
}

/// out (B, R) = alpha · in (B, R).
template <class Space, class In, class Out, class T>
void branch_scale(Space const& space, In const& in, Out const& out, T alpha) {
  int const B = in.extent_int(0), R = in.extent_int(1);
  core::for_each_row_major(
      "hax::attn::sparse_branch::scale", space, B, R,
      KOKKOS_LAMBDA(int b, int r) { out(b, r) = alpha * in(b, r); });
}

}  // namespace hax::attn::impl
