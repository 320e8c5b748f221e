// SPDX-License-Identifier: MIT
/// \file
/// The key-scoring MLP of key selection: s_j = W3·ReLU(W2·ReLU(W1·T_j + b1) + b2) + b3 with
/// T_j (D = 2N), hidden width H (= 2N in the released models) and one output. Forward scores all
/// B·L rows; backward runs only through the rows the ranking loss sampled, and accumulates the
/// parameter gradients (+=). There is no input gradient: the MLP inputs are detached.
/// The forward is one fused kernel (impl::score_mlp_rows): a team stages the parameters and its
/// rows' inputs in scratch and each thread runs one row through all three layers, so the hidden
/// activations never leave the chip unless a caller asks for them (Saved). It replaced three GEMMs
/// with bias and two ReLU passes over (B·L, H) (eight kernels and 4·B·L·H floats of traffic) at
/// D = H = 32, where a row costs only ~4 kFLOP. The backward touches only the B·k' sampled rows:
/// teams of rows form per-team partial parameter gradients in scratch, then one thread per entry
/// adds them in order (impl::score_mlp_backward; deterministic, no atomics).
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>
#include <hax/core/views.hpp>
#include <hax/nn/linear.hpp>

#include <string>
#include <type_traits>

namespace hax::attn {

namespace impl {

/// Sampled rows per team of score_mlp_backward: 16 keeps the team's scratch in shared memory at
/// D = H = 64 (the Mamba2 configs), where 32 rows needed 59 KiB, fell back to global scratch and
/// took 0.32 ms per call on an H100; with 16 rows both kernels together take 0.116 ms
/// (docs/perf_training_step.md).
inline constexpr int kScoreMlpBackwardRows = 16;
/// Threads per team of score_mlp_backward on GPUs: the per-row work is split over (row, unit)
/// pairs and the gradient entries over all threads, so the team is wider than its rows.
inline constexpr int kScoreMlpBackwardThreads = 64;

/// The backward of the scoring MLP through the sampled rows, in two kernels. First, one team per
/// kScoreMlpBackwardRows consecutive (b, a) pairs stages w2, w3 and its rows' inputs and
/// activations in scratch, forms the pre-ReLU gradients g2 = [h2 > 0] ⊙ ds·w3 and
/// g1 = [h1 > 0] ⊙ w2ᵀ g2 per row, and writes its partial sum of every parameter gradient into
/// partial(team, ·) (entries laid out w1, b1, w2, b2, w3, b3). Then one thread per parameter entry
/// adds the teams' partials in team order: deterministic, no atomics. Rows with rows(b, a) = -1
/// contribute nothing. It replaced a thread per row with its g1/g2 in global memory plus one team
/// per gradient entry re-reading all B·R rows (per call at B·k' = 4 096 on an H100, Kokkos Tools
/// at commit 546e388: 0.19 ms for the rows kernel, 0.09 ms each for the w1 and w2 kernels).
template <class Space, class W2, class F, class HS, class Rows, class DS, class G2, class G1>
void score_mlp_backward(Space const& space, W2 const& w2, W2 const& w3, F const& feat, HS const& h1, HS const& h2,
                        Rows const& rows, DS const& ds, G2 const& dw1, G1 const& db1, G2 const& dw2, G1 const& db2,
                        G2 const& dw3, G1 const& db3) {
  using T = typename G1::non_const_value_type;
  using member = typename Kokkos::TeamPolicy<Space>::member_type;
  using scratch_2d = Kokkos::View<T**, Kokkos::LayoutRight, typename Space::scratch_memory_space,
                                  Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  using scratch_1d = Kokkos::View<T*, typename Space::scratch_memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  constexpr int kRows = kScoreMlpBackwardRows;
  constexpr int kStride = kRows + 1;  // padded columns: conflict-free in shared memory
  int const B = rows.extent_int(0), R = rows.extent_int(1), D = feat.extent_int(2), H = w2.extent_int(0);
  int const total = B * R;
  if (total == 0) { return; }
  int const teams = (total + kRows - 1) / kRows;
  // Entry offsets of the parameter gradients in a partial row.
  int const o_b1 = H * D, o_w2 = o_b1 + H, o_b2 = o_w2 + H * H, o_w3 = o_b2 + H, o_b3 = o_w3 + H;
  int const entries = o_b3 + 1;
  auto const partial = uninitialized_view<Kokkos::View<T**, Kokkos::LayoutRight, typename Space::memory_space>>(
      space, "hax::attn::score_mlp::partial_grads", teams, entries);
  std::size_t const bytes = scratch_2d::shmem_size(H, H) + scratch_1d::shmem_size(H) +
                            scratch_1d::shmem_size(kRows) + scratch_2d::shmem_size(D, kStride) +
                            4 * scratch_2d::shmem_size(H, kStride);
  int const level = core::scratch_level(bytes);
  auto policy = core::gpu_wide_teams(space, teams, kScoreMlpBackwardThreads);
  Kokkos::parallel_for(
      "hax::attn::ScoreMlp::backward::rows", policy.set_scratch_size(level, Kokkos::PerTeam(bytes)),
      KOKKOS_LAMBDA(member const& team) {
        auto const& mem = team.team_scratch(level);
        scratch_2d sw2(mem, H, H);
        scratch_1d sw3(mem, H), sds(mem, kRows);
        scratch_2d xs(mem, D, kStride), h1s(mem, H, kStride), h2s(mem, H, kStride), g1s(mem, H, kStride),
            g2s(mem, H, kStride);
        int const t = team.league_rank();
        int const first = t * kRows;
        int const n = total - first < kRows ? total - first : kRows;
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, H * H), [&](int e) { sw2(e / H, e % H) = w2(e / H, e % H); });
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, H), [&](int o) { sw3(o) = w3(0, o); });
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kRows), [&](int r) {
          int const j = r < n ? rows((first + r) / R, (first + r) % R) : -1;
          sds(r) = j >= 0 ? ds((first + r) / R, (first + r) % R) : T(0);
        });
        // Inputs and activations, row-major reads; a row without a sample reads as zeros.
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kRows * D), [&](int e) {
          int const r = e / D, c = e % D;
          int const j = r < n ? rows((first + r) / R, (first + r) % R) : -1;
          xs(c, r) = j >= 0 ? feat((first + r) / R, j, c) : T(0);
        });
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kRows * H), [&](int e) {
          int const r = e / H, c = e % H;
          int const j = r < n ? rows((first + r) / R, (first + r) % R) : -1;
          h1s(c, r) = j >= 0 ? h1((first + r) / R, j, c) : T(0);
          h2s(c, r) = j >= 0 ? h2((first + r) / R, j, c) : T(0);
        });
        team.team_barrier();
        // ReLU passes the gradient where its output is positive.
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kRows * H), [&](int e) {
          int const r = e % kRows, o = e / kRows;
          g2s(o, r) = h2s(o, r) > T(0) ? sds(r) * sw3(o) : T(0);
        });
        team.team_barrier();
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kRows * H), [&](int e) {
          int const r = e % kRows, i = e / kRows;
          T acc = 0;
          for (int o = 0; o < H; ++o) { acc += g2s(o, r) * sw2(o, i); }
          g1s(i, r) = h1s(i, r) > T(0) ? acc : T(0);
        });
        team.team_barrier();
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, entries), [&](int e) {
          T acc = 0;
          if (e < o_b1) {
            int const o = e / D, c = e % D;
            for (int r = 0; r < kRows; ++r) { acc += g1s(o, r) * xs(c, r); }
          } else if (e < o_w2) {
            for (int r = 0; r < kRows; ++r) { acc += g1s(e - o_b1, r); }
          } else if (e < o_b2) {
            int const o = (e - o_w2) / H, i = (e - o_w2) % H;
            for (int r = 0; r < kRows; ++r) { acc += g2s(o, r) * h1s(i, r); }
          } else if (e < o_w3) {
            for (int r = 0; r < kRows; ++r) { acc += g2s(e - o_b2, r); }
          } else if (e < o_b3) {
            for (int r = 0; r < kRows; ++r) { acc += sds(r) * h2s(e - o_w3, r); }
          } else {
            for (int r = 0; r < kRows; ++r) { acc += sds(r); }
          }
          partial(t, e) = acc;
        });
      });
  Kokkos::parallel_for(
      "hax::attn::ScoreMlp::backward::sum", Kokkos::RangePolicy<Space>(space, 0, entries), KOKKOS_LAMBDA(int e) {
        T acc = 0;
        for (int t = 0; t < teams; ++t) { acc += partial(t, e); }
        if (e < o_b1) {
          dw1(e / D, e % D) += acc;
        } else if (e < o_w2) {
          db1(e - o_b1) += acc;
        } else if (e < o_b2) {
          dw2((e - o_w2) / H, (e - o_w2) % H) += acc;
        } else if (e < o_w3) {
          db2(e - o_b2) += acc;
        } else if (e < o_b3) {
          dw3(0, e - o_w3) += acc;
        } else {
          db3(0) += acc;
        }
      });
}

/// Which rows m = b·L + j of a flattened (B·L) row range are computed: all, or with extents (B)
/// allocated those with j < extents(b). The others get the score -inf (never preferred by the
/// top-k′, and never a key of a real query under causal semantics).
template <class E>
struct PresentRows {
  E extents;  // (B) or empty
  int L = 1;
  bool all = true;
  KOKKOS_INLINE_FUNCTION bool operator()(int m) const {
    if (all) { return true; }
    int const b = m / L;
    return m - b * L < extents(b);
  }
};

/// True when none of a team's rows [first, first + rows) is present: then it writes their -inf
/// scores and the team skips staging the parameters. The same answer for every thread.
template <class Member, class P, class Out>
KOKKOS_INLINE_FUNCTION bool score_mlp_absent_team(Member const& team, P const& present, int first, int rows,
                                                  Out const& out) {
  if (present.all) { return false; }
  int count = 0;
  Kokkos::parallel_reduce(
      Kokkos::TeamThreadRange(team, rows), [&](int r, int& c) { c += present(first + r) ? 1 : 0; }, count);
  if (count > 0) { return false; }
  using T = typename Out::non_const_value_type;
  Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows),
                       [&](int r) { out(first + r) = -Kokkos::Experimental::infinity_v<T>; });
  return true;
}

/// Rows per team of score_mlp_rows: one row per thread on GPUs.
inline constexpr int kScoreMlpRowsPerTeam = 64;

/// Rows per team of score_mlp_rows_fixed (one row per thread on GPUs) for calls over many rows.
inline constexpr int kScoreMlpFixedRowsPerTeam = 64;
/// Rows per team of score_mlp_rows_fixed on GPUs for calls over fewer than
/// kScoreMlpFixedManyRows rows: the ranking loss's B·k′ = 2 048 rows then spread over 128 teams
/// instead of 32 (each team re-reads the parameters, 33 KiB from L2 at D = H = 64).
inline constexpr int kScoreMlpFixedFewRowsPerTeam = 16;
/// Calls over at least this many rows use kScoreMlpFixedRowsPerTeam (≥ 512 teams).
inline constexpr int kScoreMlpFixedManyRows = 512 * kScoreMlpFixedRowsPerTeam;

/// Four consecutive scalars that move as one aligned vector: a thread reads four weights with one
/// shared-memory load (LDS.128 for float on NVIDIA GPUs) instead of four.
template <class T>
struct alignas(4 * sizeof(T)) Quad {
  T v[4];
};

/// score_mlp_rows for compile-time widths D = kD, H = kH (the released configs: 2N = 32 and 64).
/// The team keeps only the parameters in scratch, as quads of four hidden units: w1 transposed
/// (quad (d, q) = w1(4q..4q+3, d)) and w2 as is (quad (o, q) = w2(o, 4q..4q+3)), so every
/// multiply-add of a thread's sweep costs a quarter of a shared-memory load. Each thread keeps its
/// row's first hidden layer in registers, accumulated over the inputs (read straight from the row),
/// then forms the second layer one unit at a time in four partial sums (a quarter of the dependent
/// chain). At D = H = 64 the parameters take 33 KiB, so unlike the general kernel the team needs
/// no room for its rows' activations. One row per thread with scalar loads took 123 µs per call
/// over the present rows of B·L = 67 648 and 86 µs over 2 048 rows (32 teams) on an H100
/// (docs/perf_training_step.md).
template <int kD, int kH, bool kSave, class Space, class W2, class W1, class X, class Out, class HR, class P>
void score_mlp_rows_fixed(Space const& space, W2 const& w1, W1 const& b1, W2 const& w2, W1 const& b2,
                          W2 const& w3, W1 const& b3, X const& x, Out const& out, HR const& h1, HR const& h2,
                          P const& present) {
  static_assert(kD % 4 == 0 && kH % 4 == 0, "score_mlp_rows_fixed: widths must be multiples of 4");
  using T = typename Out::non_const_value_type;
  using Q = Quad<T>;
  using member = typename Kokkos::TeamPolicy<Space>::member_type;
  using scratch_q = Kokkos::View<Q*, typename Space::scratch_memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  using scratch_1d = Kokkos::View<T*, typename Space::scratch_memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  constexpr int kQ = kH / 4;  // quads per row of parameters
  constexpr bool kHost = Kokkos::SpaceAccessibility<Space, Kokkos::HostSpace>::accessible;
  int const M = x.extent_int(0);
  if (M == 0) { return; }
  int const rows_per_team =
      kHost || M >= kScoreMlpFixedManyRows ? kScoreMlpFixedRowsPerTeam : kScoreMlpFixedFewRowsPerTeam;
  std::size_t const bytes = scratch_q::shmem_size(kD * kQ) + scratch_q::shmem_size(kH * kQ) +
                            4 * scratch_1d::shmem_size(kH);
  int const level = core::scratch_level(bytes);
  int const league = (M + rows_per_team - 1) / rows_per_team;
  auto policy = core::gpu_wide_teams(space, league, rows_per_team);
  Kokkos::parallel_for(
      kSave ? "hax::attn::ScoreMlp::forward_saving" : "hax::attn::ScoreMlp::forward",
      policy.set_scratch_size(level, Kokkos::PerTeam(bytes)), KOKKOS_LAMBDA(member const& team) {
        auto const& mem = team.team_scratch(level);
        scratch_q sw1t(mem, kD * kQ), sw2(mem, kH * kQ);
        scratch_1d sb1(mem, kH), sb2(mem, kH), sw3(mem, kH), sb3(mem, kH);
        int const first = team.league_rank() * rows_per_team;
        int const rows = M - first < rows_per_team ? M - first : rows_per_team;
        if (score_mlp_absent_team(team, present, first, rows, out)) { return; }
        // Consecutive threads read consecutive inputs d of w1 (coalesced) and w2's rows in order.
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kD * kQ), [&](int e) {
          int const q = e / kD, d = e % kD;
          Q w;
HAX_UNROLL
          for (int j = 0; j < 4; ++j) { w.v[j] = w1(4 * q + j, d); }
          sw1t(d * kQ + q) = w;
        });
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kH * kQ), [&](int e) {
          int const o = e / kQ, q = e % kQ;
          Q w;
HAX_UNROLL
          for (int j = 0; j < 4; ++j) { w.v[j] = w2(o, 4 * q + j); }
          sw2(e) = w;
        });
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kH), [&](int o) {
          sb1(o) = b1(o);
          sb2(o) = b2(o);
          sw3(o) = w3(0, o);
          sb3(o) = b3(0);
        });
        team.team_barrier();
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows), [&](int r) {
          int const m = first + r;
          if (!present(m)) {
            out(m) = -Kokkos::Experimental::infinity_v<T>;
            return;
          }
          T h[kH];
HAX_UNROLL
          for (int o = 0; o < kH; ++o) { h[o] = sb1(o); }
          for (int d = 0; d < kD; ++d) {
            T const xd = x(m, d);
HAX_UNROLL
            for (int q = 0; q < kQ; ++q) {
              Q const w = sw1t(d * kQ + q);
HAX_UNROLL
              for (int j = 0; j < 4; ++j) { h[4 * q + j] += w.v[j] * xd; }
            }
          }
HAX_UNROLL
          for (int o = 0; o < kH; ++o) {
            h[o] = h[o] > T(0) ? h[o] : T(0);
            if (kSave) { h1(m, o) = h[o]; }  // plain if: nvcc lambdas cannot first-capture in if constexpr
          }
          T score = sb3(0);
          for (int o = 0; o < kH; ++o) {
            T part[4] = {T(0), T(0), T(0), T(0)};
HAX_UNROLL
            for (int q = 0; q < kQ; ++q) {
              Q const w = sw2(o * kQ + q);
HAX_UNROLL
              for (int j = 0; j < 4; ++j) { part[j] += w.v[j] * h[4 * q + j]; }
            }
            T const acc = sb2(o) + ((part[0] + part[1]) + (part[2] + part[3]));
            T const v = acc > T(0) ? acc : T(0);
            if (kSave) { h2(m, o) = v; }
            score += sw3(o) * v;
          }
          out(m) = score;
        });
      });
}

/// out(m) = w3·relu(w2·relu(w1·x(m) + b1) + b2) + b3 for every row m of x (M, D); when
/// kSave, also h1(m, ·) and h2(m, ·) (the post-ReLU activations, (M, H) each). Widths 16, 32
/// and 64 (D = H) go to score_mlp_rows_fixed; any other runs this general kernel. Each team copies
/// the parameters and the inputs of its kScoreMlpRowsPerTeam rows into scratch (the inputs
/// transposed, with a padded stride so that neither the coalesced copy nor the per-row reads
/// conflict in shared memory) and keeps the first hidden layer there; host backends run one
/// thread per team, its rows in order.
template <bool kSave, class Space, class W2, class W1, class X, class Out, class HR, class P>
void score_mlp_rows(Space const& space, W2 const& w1, W1 const& b1, W2 const& w2, W1 const& b2,
                    W2 const& w3, W1 const& b3, X const& x, Out const& out, HR const& h1, HR const& h2,
                    P const& present) {
  using T = typename Out::non_const_value_type;
  using member = typename Kokkos::TeamPolicy<Space>::member_type;
  using scratch_2d = Kokkos::View<T**, Kokkos::LayoutRight, typename Space::scratch_memory_space,
                                  Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  using scratch_1d = Kokkos::View<T*, typename Space::scratch_memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  constexpr int kRows = kScoreMlpRowsPerTeam;
  constexpr int kStride = kRows + 1;  // padded: row r of column d sits in bank (d + r) mod 32
  int const M = x.extent_int(0), D = x.extent_int(1), H = w1.extent_int(0);
  if (M == 0) { return; }
  if (D == H && (D == 16 || D == 32 || D == 64)) {
    auto const fixed = [&]<int kW>() {
      score_mlp_rows_fixed<kW, kW, kSave>(space, w1, b1, w2, b2, w3, b3, x, out, h1, h2, present);
    };
    if (D == 16) {
      fixed.template operator()<16>();
    } else if (D == 32) {
      fixed.template operator()<32>();
    } else {
      fixed.template operator()<64>();
    }
    return;
  }
  std::size_t const bytes = scratch_2d::shmem_size(H, D) + scratch_2d::shmem_size(H, H) +
                            4 * scratch_1d::shmem_size(H) + scratch_2d::shmem_size(D, kStride) +
                            scratch_2d::shmem_size(H, kStride);
  int const level = core::scratch_level(bytes);
  int const league = (M + kRows - 1) / kRows;
  auto policy = core::gpu_wide_teams(space, league, kRows);
  Kokkos::parallel_for(
      kSave ? "hax::attn::ScoreMlp::forward_saving" : "hax::attn::ScoreMlp::forward",
      policy.set_scratch_size(level, Kokkos::PerTeam(bytes)), KOKKOS_LAMBDA(member const& team) {
        auto const& mem = team.team_scratch(level);
        scratch_2d sw1(mem, H, D), sw2(mem, H, H);
        scratch_1d sb1(mem, H), sb2(mem, H), sw3(mem, H), sb3(mem, H);
        scratch_2d xs(mem, D, kStride), hs(mem, H, kStride);
        int const first = team.league_rank() * kRows;
        int const rows = M - first < kRows ? M - first : kRows;
        if (score_mlp_absent_team(team, present, first, rows, out)) { return; }
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, H * D), [&](int e) { sw1(e / D, e % D) = w1(e / D, e % D); });
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, H * H), [&](int e) { sw2(e / H, e % H) = w2(e / H, e % H); });
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, H), [&](int o) {
          sb1(o) = b1(o);
          sb2(o) = b2(o);
          sw3(o) = w3(0, o);
          sb3(o) = b3(0);
        });
        // Absent rows are not read (their inputs may never have been written); they stage zeros.
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows * D), [&](int e) {
          xs(e % D, e / D) = present(first + e / D) ? x(first + e / D, e % D) : T(0);
        });
        team.team_barrier();
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, rows), [&](int r) {
          int const m = first + r;
          if (!present(m)) {
            out(m) = -Kokkos::Experimental::infinity_v<T>;
            return;
          }
          for (int o = 0; o < H; ++o) {
            T acc = sb1(o);
            for (int d = 0; d < D; ++d) { acc += sw1(o, d) * xs(d, r); }
            T const v = acc > T(0) ? acc : T(0);
            hs(o, r) = v;
            if (kSave) { h1(m, o) = v; }  // plain if: nvcc lambdas cannot first-capture in if constexpr
          }
          T score = sb3(0);
          for (int o = 0; o < H; ++o) {
            T acc = sb2(o);
            for (int i = 0; i < H; ++i) { acc += sw2(o, i) * hs(i, r); }
            T const v = acc > T(0) ? acc : T(0);
            if (kSave) { h2(m, o) = v; }
            score += sw3(o) * v;
          }
          out(m) = score;
        });
      });
}

}  // namespace impl

/// The scoring MLP (D -> H -> H -> 1, ReLU). Stateless; see the file comment.
template <execution_space Space, class T = float>
class ScoreMlp {
 public:
  template <class D>
  using view = hax::view<D, Space>;

  /// Every row present (impl::PresentRows without extents).
  static impl::PresentRows<Kokkos::View<int const*, typename Space::memory_space>> all_rows() { return {}; }

  struct Params {
    view<T**> w1;  // (H, D)
    view<T*> b1;   // (H)
    view<T**> w2;  // (H, H)
    view<T*> b2;   // (H)
    view<T**> w3;  // (1, H)
    view<T*> b3;   // (1)
  };
  using Grads = Params;  // same shapes; accumulated with +=

  struct Saved {
    view<T***> h1;  // (B, L, H) post-ReLU first hidden layer
    view<T***> h2;  // (B, L, H) post-ReLU second hidden layer
  };

  /// Zero-initialised parameters (H, D) etc.; callers initialise them (e.g. N(0, 0.1) weights).
  /// Persistent: allocated directly, never from a scratch arena (zeroed_view would take them from
  /// one when called inside a step).
  static Params allocate(Space const& space, int D, int H, char const* label = "hax::attn::score_mlp") {
    std::string const l(label);
    auto matrix = [&](char const* name, int rows, int cols) {
      return view<T**>(Kokkos::view_alloc(space, l + name), rows, cols);
    };
    auto vector = [&](char const* name, int n) {
      return view<T*>(Kokkos::view_alloc(space, l + name), n);
    };
    return Params{matrix("::w1", H, D), vector("::b1", H),    matrix("::w2", H, H),
                  vector("::b2", H),    matrix("::w3", 1, H), vector("::b3", 1)};
  }

  /// scores (B, L) = MLP(feat (B, L, D)); returns the hidden activations backward needs, (B, L, H)
  /// each, taken with hax::uninitialized_view (from the current scratch arena inside a step).
  /// feat and scores must be LayoutRight and contiguous. Asynchronous on `space`.
  /// O(B·L·H·(D + H)) time.
  template <class F, class S>
    requires(view_accessible_from<F, Space> && view_accessible_from<S, Space>)
  Saved forward(Space const& space, Params const& p, F const& feat, S const& scores) const {
    int const B = feat.extent_int(0), L = feat.extent_int(1), H = p.w1.extent_int(0);
    Saved s{uninitialized_view<T***>(space, "hax::attn::score_mlp::h1", B, L, H),
            uninitialized_view<T***>(space, "hax::attn::score_mlp::h2", B, L, H)};
    forward(space, p, feat, scores, s);
    return s;
  }

  /// As above, writing the hidden activations into `saved` (two (B, L, H) Views the caller owns).
  template <class F, class S>
    requires(view_accessible_from<F, Space> && view_accessible_from<S, Space>)
  void forward(Space const& space, Params const& p, F const& feat, S const& scores, Saved const& saved) const {
    constexpr char const* op = "hax::attn::ScoreMlp::forward";
    check_rows(p, feat, scores, op);
    int const B = feat.extent_int(0), L = feat.extent_int(1), H = p.w1.extent_int(0);
    auto const check_saved = [&](auto const& h) {
      core::require(h.extent_int(0) == B && h.extent_int(1) == L && h.extent_int(2) == H && h.span_is_contiguous(),
                    op, "saved activations (", h.extent(0), ", ", h.extent(1), ", ", h.extent(2),
                    ") must be contiguous (B, L, H) = (", B, ", ", L, ", ", H, ")");
    };
    check_saved(saved.h1);
    check_saved(saved.h2);
    impl::score_mlp_rows<true>(space, p.w1, p.b1, p.w2, p.b2, p.w3, p.b3, nn::as_rows(feat),
                               flat(scores), nn::as_rows(saved.h1), nn::as_rows(saved.h2), all_rows());
  }

  /// scores (B, L) = MLP(feat (B, L, D)) without keeping the hidden activations (inference, and
  /// the plan step, whose backward only needs the sampled rows).
  /// \param extents (B), optional: row b is scored up to extents(b) (core::real_extent of the pad
  ///        mask); its later rows get -inf without reading feat there. Rows before it are exactly
  ///        those of the call without extents.
  template <class F, class S>
    requires(view_accessible_from<F, Space> && view_accessible_from<S, Space>)
  void score(Space const& space, Params const& p, F const& feat, S const& scores,
             Kokkos::View<int const*, typename Space::memory_space> const& extents = {}) const {
    constexpr char const* op = "hax::attn::ScoreMlp::score";
    check_rows(p, feat, scores, op);
    int const B = feat.extent_int(0), L = feat.extent_int(1);
    core::require(!extents.is_allocated() || extents.extent_int(0) == B, op, "extents (", extents.extent(0),
                  ") must be empty or (B) = (", B, ")");
    using rows_t = Kokkos::View<T**, Kokkos::LayoutRight, typename Space::memory_space,
                                Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
    impl::PresentRows<Kokkos::View<int const*, typename Space::memory_space>> const present{
        extents, L > 0 ? L : 1, !extents.is_allocated()};
    impl::score_mlp_rows<false>(space, p.w1, p.b1, p.w2, p.b2, p.w3, p.b3, nn::as_rows(feat), flat(scores),
                                rows_t(), rows_t(), present);
  }

  /// Accumulates (+=) the parameter gradients of Σ_{b,a} ds(b, a) · s(b, rows(b, a)), i.e. the
  /// backward through the rows the ranking loss used. rows (B, R) int positions along dimension 1
  /// of feat and of the saved activations (R = k'; -1 is skipped), ds (B, R). feat and s may hold
  /// every row (B, L, ·), as forward returned them, or only the used ones (B, R, ·) with rows(b, a)
  /// = a, as SparseBranch keeps them. Asynchronous on `space`. O(B·R·H·(D + H)) time, O(B·R·H)
  /// temporaries.
  template <class F, class Rows, class DS>
    requires(view_accessible_from<F, Space> && view_accessible_from<Rows, Space> &&
             view_accessible_from<DS, Space>)
  void backward(Space const& space, Params const& p, F const& feat, Saved const& s,
                Rows const& rows, DS const& ds, Grads const& g) const {
    static_assert(F::rank() == 3 && Rows::rank() == 2 && DS::rank() == 2,
                  "hax::attn::ScoreMlp::backward: feat (B, L, D), rows (B, R), ds (B, R)");
    int const B = feat.extent_int(0), D = feat.extent_int(2);
    int const R = rows.extent_int(1), H = p.w1.extent_int(0);
    check_params(p, D, "hax::attn::ScoreMlp::backward");
    check_params(g, D, "hax::attn::ScoreMlp::backward (grads)");
    core::require(rows.extent_int(0) == B && ds.extent_int(0) == B && ds.extent_int(1) == R,
                  "hax::attn::ScoreMlp::backward", "rows (", rows.extent(0), ", ", R, ") and ds (",
                  ds.extent(0), ", ", ds.extent(1), ") must both be (B, R) with B = ", B);
    core::require(s.h1.extent_int(0) == B && s.h1.extent_int(1) == feat.extent_int(1) && s.h1.extent_int(2) == H &&
                      s.h2.extent_int(0) == B && s.h2.extent_int(1) == feat.extent_int(1) && s.h2.extent_int(2) == H,
                  "hax::attn::ScoreMlp::backward", "saved activations (", s.h1.extent(0), ", ", s.h1.extent(1),
                  ", ", s.h1.extent(2), ") must be (B, rows of feat, H) = (", B, ", ", feat.extent(1), ", ", H, ")");
    impl::score_mlp_backward(space, p.w2, p.w3, feat, s.h1, s.h2, rows, ds, g.w1, g.b1, g.w2, g.b2, g.w3, g.b3);
  }

 private:
  /// scores (B, L) as one (B·L) View on the same data.
  template <class S>
  static auto flat(S const& scores) {
    using flat_t =
        Kokkos::View<typename S::value_type*, typename S::device_type, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
    return flat_t(scores.data(), scores.size());
  }

  template <class F, class S>
  static void check_rows(Params const& p, F const& feat, S const& scores, char const* op) {
    static_assert(F::rank() == 3 && S::rank() == 2, "hax::attn::ScoreMlp: feat must be (B, L, D) and scores (B, L)");
    static_assert(std::is_same_v<typename S::array_layout, Kokkos::LayoutRight>,
                  "hax::attn::ScoreMlp: scores must be LayoutRight (B, L)");
    int const B = feat.extent_int(0), L = feat.extent_int(1), D = feat.extent_int(2);
    check_params(p, D, op);
    core::require(scores.extent_int(0) == B && scores.extent_int(1) == L, op, "scores (", scores.extent(0), ", ",
                  scores.extent(1), ") must be (B, L) = (", B, ", ", L, ") of feat");
    core::require(scores.span_is_contiguous(), op, "scores must be contiguous (B, L), not a strided subview");
  }

  static void check_params(Params const& p, int D, char const* op) {
    int const H = p.w1.extent_int(0);
    core::require(p.w1.extent_int(1) == D && p.b1.extent_int(0) == H && p.w2.extent_int(0) == H &&
                      p.w2.extent_int(1) == H && p.b2.extent_int(0) == H &&
                      p.w3.extent_int(0) == 1 && p.w3.extent_int(1) == H && p.b3.extent_int(0) == 1,
                  op, "parameters must be w1 (H, D), b1 (H), w2 (H, H), b2 (H), w3 (1, H), b3 (1) "
                      "with D = ", D, " (feat extent 2); got w1 (", p.w1.extent(0), ", ",
                  p.w1.extent(1), "), w2 (", p.w2.extent(0), ", ", p.w2.extent(1), "), w3 (",
                  p.w3.extent(0), ", ", p.w3.extent(1), ")");
  }
};

}  // namespace hax::attn
