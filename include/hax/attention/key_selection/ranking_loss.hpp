// SPDX-License-Identifier: MIT
/// \file
/// The training signal of the key-scoring MLP (semantics.md section 3, KS; docs/math/key_selection.md):
///  1. sample_candidates: k' distinct non-pad positions per sequence, uniformly without
///     replacement (Floyd's algorithm over a counter-based stream named (seed, layer, step, b)).
///  2. ranking_targets:   a_c = Σ_{i >= j_c} σ(q_i · k_{j_c}) over the non-pad rows i < length
///     (`causal`) or over all L rows, pads included (`reference`). Detached.
///  3. ranking_loss:      mean over B·k'·k' ordered pairs (diagonal included) of
///     BCE-with-logits(s_a - s_b, t_ab), t_ab = 1 / 0.5 / 0 for a_a > / = / < a_b; the loss goes
///     into a rank-0 device View and ds = dLoss/ds_a is written for the MLP backward.
/// Right padding only: sequence b's non-pad rows are 0 .. lengths(b) - 1.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/attention/hash/concepts.hpp>
#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>
#include <hax/core/random.hpp>

#include <cstdint>

namespace hax::attn {

namespace impl {
/// Candidates per team of ranking_targets: each row q_i read serves this many dot products.
inline constexpr int kRankingTargetsPerTeam = 8;
}  // namespace impl

/// cand (B, k') = k' distinct positions in [0, lengths(b)) per sequence, uniform over subsets
/// (Floyd's algorithm; slot order is the algorithm's insertion order). A sequence shorter than k'
/// gets all its positions, then -1 (checked on the device: no host synchronisation).
/// Draws are a pure function of (seed, layer, step, b): identical on every backend.
/// Asynchronous on `space`; O(B·k'²) time.
template <execution_space Space, class Len, class Cand>
  requires(view_accessible_from<Len, Space> && view_accessible_from<Cand, Space>)
void sample_candidates(Space const& space, Len const& lengths, std::uint64_t seed,
                       std::uint64_t layer, std::uint64_t step, Cand const& cand) {
  static_assert(Len::rank() == 1 && Cand::rank() == 2,
                "hax::attn::sample_candidates: lengths must be (B) and cand (B, k')");
  int const B = cand.extent_int(0), kprime = cand.extent_int(1);
  core::require(lengths.extent_int(0) == B && kprime >= 1, "hax::attn::sample_candidates",
                "lengths (", lengths.extent(0), ") must be (B) with B = ", B,
                " of cand (B, k') and k' = ", kprime, " >= 1");
  Kokkos::parallel_for(
      "hax::attn::sample_candidates", Kokkos::RangePolicy<Space>(space, 0, B), KOKKOS_LAMBDA(int b) {
        int const n = static_cast<int>(lengths(b));
        if (n <= kprime) {
          for (int c = 0; c < kprime; ++c) { cand(b, c) = c < n ? c : -1; }
          return;
        }
        // Floyd: for m = n - k' .. n - 1, draw t in [0, m]; take t unless already taken, else m.
        // Every k'-subset comes out with probability 1 / C(n, k').
        core::RngStream rng(core::stream_key(seed, layer, step, static_cast<std::uint64_t>(b)));
        int count = 0;
        for (int m = n - kprime; m < n; ++m) {
          int const t = static_cast<int>(rng.uniform_int(static_cast<std::uint32_t>(m + 1)));
          bool taken = false;
          for (int c = 0; c < count; ++c) { taken = taken || cand(b, c) == t; }
          cand(b, count++) = taken ? m : t;
        }
      });
}

/// targets (B, k') = a_c of the file comment for candidates cand (B, k'), from q, k (B, L, N)
/// (k as the attention uses it, i.e. already scaled by 1/√N). Slots with cand = -1 get 0.
/// Asynchronous on `space`; O(B·k'·L·N) time.
template <execution_space Space, class Q, class K, class Len, class Cand, class Tgt>
  requires(view_accessible_from<Q, Space> && view_accessible_from<K, Space> &&
           view_accessible_from<Len, Space> && view_accessible_from<Cand, Space> &&
           view_accessible_from<Tgt, Space>)
void ranking_targets(Space const& space, PlanSemantics semantics, Q const& q, K const& k,
                     Len const& lengths, Cand const& cand, Tgt const& targets) {
  static_assert(Q::rank() == 3 && K::rank() == 3 && Len::rank() == 1 && Cand::rank() == 2 &&
                    Tgt::rank() == 2,
                "hax::attn::ranking_targets: q, k (B, L, N), lengths (B), cand and targets (B, k')");
  int const B = q.extent_int(0), L = q.extent_int(1), N = q.extent_int(2);
  int const kprime = cand.extent_int(1);
  core::require(k.extent_int(0) == B && k.extent_int(1) == L && k.extent_int(2) == N,
                "hax::attn::ranking_targets", "k (", k.extent(0), ", ", k.extent(1), ", ",
                k.extent(2), ") must have the shape of q (", B, ", ", L, ", ", N, ")");
  core::require(lengths.extent_int(0) == B && cand.extent_int(0) == B &&
                    targets.extent_int(0) == B && targets.extent_int(1) == kprime,
                "hax::attn::ranking_targets", "lengths (", lengths.extent(0), "), cand (",
                cand.extent(0), ", ", kprime, ") and targets (", targets.extent(0), ", ",
                targets.extent(1), ") must agree with B = ", B);
  using T = typename Tgt::non_const_value_type;
  using member = typename Kokkos::TeamPolicy<Space>::member_type;
  using scratch_2d = Kokkos::View<T**, Kokkos::LayoutRight, typename Space::scratch_memory_space,
                                  Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  using scratch_int = Kokkos::View<int*, typename Space::scratch_memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  constexpr int kC = impl::kRankingTargetsPerTeam;
  bool const all_rows = semantics == PlanSemantics::reference;
  if (B == 0 || kprime == 0) { return; }
  // One team per (sequence b, chunk of kC candidates): each thread takes rows i of b in turn, loads
  // q_i once and dots it with the chunk's kC keys (staged in scratch), keeping kC partial sums in
  // registers; the team then adds the threads' partial sums in thread order (deterministic, no
  // atomics). A team per candidate re-read the rows i >= j once per candidate (B·k' = 2 048 teams at
  // the training shape, 89 µs per call on an H100, docs/perf_training_step.md); a thread per
  // candidate ran the whole sum serially (1.4 ms).
  int const chunks = (kprime + kC - 1) / kC;
  auto teams = core::long_loop_teams(space, B * chunks);
  int const threads = teams.team_size();
  std::size_t const bytes = scratch_2d::shmem_size(kC, N) + scratch_int::shmem_size(kC) +
                            scratch_2d::shmem_size(threads, kC);
  int const level = core::scratch_level(bytes);
  Kokkos::parallel_for(
      "hax::attn::ranking_targets", teams.set_scratch_size(level, Kokkos::PerTeam(bytes)),
      KOKKOS_LAMBDA(member const& team) {
        auto const& mem = team.team_scratch(level);
        scratch_2d sk(mem, kC, N);
        scratch_int sj(mem, kC);
        scratch_2d sums(mem, threads, kC);
        int const b = team.league_rank() / chunks, c0 = (team.league_rank() % chunks) * kC;
        int const nc = kprime - c0 < kC ? kprime - c0 : kC;
        int const end = all_rows ? L : static_cast<int>(lengths(b));
        // The chunk's keys; absent slots (past k', or cand = -1) get j = end: no row i < end follows.
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kC), [&](int u) {
          int const j = u < nc ? cand(b, c0 + u) : -1;
          sj(u) = j >= 0 ? j : end;
        });
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kC * N), [&](int e) {
          int const u = e / N, n = e % N;
          int const j = u < nc ? cand(b, c0 + u) : -1;
          sk(u, n) = j >= 0 ? k(b, j, n) : T(0);
        });
        team.team_barrier();
        int first = end;
        for (int u = 0; u < kC; ++u) { first = sj(u) < first ? sj(u) : first; }
        int const rank = team.team_rank();
        T part[kC];
HAX_UNROLL
        for (int u = 0; u < kC; ++u) { part[u] = 0; }
        for (int i = first + rank; i < end; i += threads) {
          T dot[kC];
HAX_UNROLL
          for (int u = 0; u < kC; ++u) { dot[u] = 0; }
          for (int n = 0; n < N; ++n) {
            T const qn = q(b, i, n);
HAX_UNROLL
            for (int u = 0; u < kC; ++u) { dot[u] += qn * sk(u, n); }
          }
HAX_UNROLL
          for (int u = 0; u < kC; ++u) {
            if (i >= sj(u)) { part[u] += T(1) / (T(1) + Kokkos::exp(-dot[u])); }
          }
        }
HAX_UNROLL
        for (int u = 0; u < kC; ++u) { sums(rank, u) = part[u]; }
        team.team_barrier();
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, nc), [&](int u) {
          T acc = 0;
          for (int t = 0; t < threads; ++t) { acc += sums(t, u); }
          targets(b, c0 + u) = acc;
        });
      });
}

/// The pairwise ranking loss and its gradient with respect to the candidate scores.
/// \param scores [in] (B, L) MLP scores; s_a = scores(b, cand(b, a)).
/// \param cand [in] (B, k') candidate positions (slots with -1 are left out of every pair, but
///        the mean still divides by B·k'·k', as the released code's fixed shapes do).
/// \param targets [in] (B, k') a_c from ranking_targets.
/// \param loss [out] rank-0 View, overwritten with the mean BCE over B·k'·k' pairs.
/// \param ds [out] (B, k') dLoss/ds_a, overwritten: (2 / (B·k'²)) Σ_b' (σ(s_a - s_b') - t_ab').
/// Asynchronous on `space` (the loss stays on the device); O(B·k'²) time.
template <execution_space Space, class S, class Cand, class Tgt, class Loss, class DS>
  requires(view_accessible_from<S, Space> && view_accessible_from<Cand, Space> &&
           view_accessible_from<Tgt, Space> && view_accessible_from<Loss, Space> &&
           view_accessible_from<DS, Space>)
void ranking_loss(Space const& space, S const& scores, Cand const& cand, Tgt const& targets,
                  Loss const& loss, DS const& ds) {
  static_assert(S::rank() == 2 && Cand::rank() == 2 && Tgt::rank() == 2 && Loss::rank() == 0 &&
                    DS::rank() == 2,
                "hax::attn::ranking_loss: scores (B, L), cand, targets, ds (B, k'), loss rank 0");
  int const B = scores.extent_int(0), kprime = cand.extent_int(1);
  core::require(cand.extent_int(0) == B && targets.extent_int(0) == B &&
                    targets.extent_int(1) == kprime && ds.extent_int(0) == B &&
                    ds.extent_int(1) == kprime,
                "hax::attn::ranking_loss", "cand (", cand.extent(0), ", ", kprime, "), targets (",
                targets.extent(0), ", ", targets.extent(1), ") and ds (", ds.extent(0), ", ",
                ds.extent(1), ") must all be (B, k') with B = ", B, " of scores");
  using T = typename DS::non_const_value_type;
  using R = typename Loss::non_const_value_type;
  T const inv_pairs = T(1) / (T(B) * T(kprime) * T(kprime));
  Kokkos::parallel_reduce(
      "hax::attn::ranking_loss", Kokkos::RangePolicy<Space>(space, 0, B * kprime),
      KOKKOS_LAMBDA(int r, R& sum) {
        int const b = r / kprime, a = r % kprime;
        if (cand(b, a) < 0) {
          ds(b, a) = T(0);
          return;
        }
        T const sa = scores(b, cand(b, a));
        T const ta = targets(b, a);
        T row_loss = 0, grad = 0;
        for (int c = 0; c < kprime; ++c) {
          if (cand(b, c) < 0) { continue; }
          T const x = sa - scores(b, cand(b, c));
          T const tc = targets(b, c);
          T const t = ta > tc ? T(1) : (ta < tc ? T(0) : T(0.5));
          // BCE with logits, stable form: max(x, 0) - x t + log(1 + exp(-|x|)).
          row_loss += Kokkos::max(x, T(0)) - x * t + Kokkos::log1p(Kokkos::exp(-Kokkos::abs(x)));
          // Pair (a, c) adds σ(x) - t to ds_a; pair (c, a) adds -(σ(-x) - (1 - t)), the same.
          grad += T(1) / (T(1) + Kokkos::exp(-x)) - t;
        }
        ds(b, a) = T(2) * grad * inv_pairs;
        sum += static_cast<R>(row_loss * inv_pairs);
      },
      Kokkos::Sum<R, typename Loss::memory_space>(loss));
}

}  // namespace hax::attn
