// SPDX-License-Identifier: MIT
/// \file
/// The kernels behind hax/attention/sparse_attention.hpp: input checks, the pad-mask adaptor and
/// the forward (online softmax per query row) and backward (recompute P from the saved
/// log-sum-exp; dq per row, dk and dv scattered with atomics) launches; the atomic-free
/// backward is in sparse_attention_transpose.hpp. docs/math/sparse_attention.md.
#pragma once

#include <hax/attention/pattern/concepts.hpp>
#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>

#include <Kokkos_Core.hpp>

#include <type_traits>

#include <string_view>

namespace hax::attn {

/// How the backward forms dk and dv (the queries of a key are spread over the candidate lists).
enum class BackwardAlgorithm {
  automatic,       ///< the faster of the two on the backend (default_backward_algorithm)
  gather,          ///< transpose the lists (count, scan, fill), then gather dk, dv per key: no float atomics
  atomic_scatter,  ///< scatter dk, dv from each query row with atomic adds
};

/// Settings of the sparse attention kernels.
struct AttentionOptions {
  double scale = 1.0;                                        ///< multiplies q·k (the models pre-scale K, so 1)
  Semantics semantics = Semantics::causal;                   ///< what empty rows and pad keys do
  BackwardAlgorithm backward = BackwardAlgorithm::automatic; ///< dk/dv algorithm of the backward
};

/// The backward algorithm `automatic` picks on `Space`. On host backends the gather: on 2-core
/// OpenMP it is 1.5-3x faster than the atomic scatter (docs/perf_attention.md). On GPUs the
/// atomic scatter: in the H100 training step (mamba2 + HAX, B = 64, L = 1057) the gather's dk/dv
/// pass took 42 ms per step against about 8 ms for the whole atomic backward
/// (docs/perf_training_step.md), because a key's query list is walked by one thread.
template <class Space>
constexpr BackwardAlgorithm default_backward_algorithm() {
#ifdef KOKKOS_ENABLE_CUDA
  if constexpr (std::is_same_v<Space, Kokkos::Cuda>) { return BackwardAlgorithm::atomic_scatter; }
#endif
  return BackwardAlgorithm::gather;
}

namespace impl {

/// "No pad mask": every position is a real token.
struct NoPadMask {
  KOKKOS_FUNCTION bool operator()(int, int) const { return true; }
};

/// Wraps a (B, L) View whose non-zero entries mark real tokens (0 = pad).
template <class M>
struct PadMask {
  M valid;  // (B, L)
  KOKKOS_FUNCTION bool operator()(int b, int i) const { return valid(b, i) != 0; }
};

template <class P>
void check_pattern_data(P const& pattern, int B, int L) {
  if constexpr (requires { pattern.check(B, L); }) { pattern.check(B, L); }
}

template <class Q, class K, class V, class O, class LSE>
void check_forward_shapes(std::string_view op, Q const& q, K const& k, V const& v, O const& o,
                          LSE const& lse) {
  static_assert(Q::rank == 3 && K::rank == 3 && V::rank == 3 && O::rank == 3 && LSE::rank == 2,
                "hax::attn::sparse_attention: q, k, v, o must be rank 3 and lse rank 2");
  int const B = q.extent_int(0), L = q.extent_int(1), N = q.extent_int(2), Dv = v.extent_int(2);
  core::require(k.extent_int(0) == B && k.extent_int(1) == L && k.extent_int(2) == N, op, "k (",
                k.extent(0), ", ", k.extent(1), ", ", k.extent(2), ") must match q (", B, ", ", L,
                ", ", N, ")");
  core::require(v.extent_int(0) == B && v.extent_int(1) == L, op, "v (", v.extent(0), ", ",
                v.extent(1), ", ", v.extent(2), ") must be (B, L, Dv) with (B, L) = (", B, ", ", L, ")");
  core::require(o.extent_int(0) == B && o.extent_int(1) == L && o.extent_int(2) == Dv, op, "o (",
                o.extent(0), ", ", o.extent(1), ", ", o.extent(2), ") must be (B, L, Dv) = (", B,
                ", ", L, ", ", Dv, ")");
  core::require(lse.extent_int(0) == B && lse.extent_int(1) == L, op, "lse (", lse.extent(0), ", ",
                lse.extent(1), ") must be (B, L) = (", B, ", ", L, ")");
  core::require(N >= 1 && Dv >= 1, op, "q width N (", N, ") and v width Dv (", Dv, ") must be >= 1");
}

template <class M>
void check_mask_shape(std::string_view op, M const& mask, int B, int L) {
  static_assert(M::rank == 2, "hax::attn::sparse_attention: the pad mask must be rank 2 (B, L)");
  core::require(mask.extent_int(0) == B && mask.extent_int(1) == L, op, "pad_mask (",
                mask.extent(0), ", ", mask.extent(1), ") must be (B, L) = (", B, ", ", L, ")");
}

/// Sum reducer over a Kokkos::Array<T, kN>: kN dot products reduced across vector lanes at once.
template <class T, int kN>
struct SumArray {
  using reducer = SumArray;
  using value_type = Kokkos::Array<T, kN>;
  using result_view_type = Kokkos::View<value_type, Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  value_type& value;
  KOKKOS_INLINE_FUNCTION explicit SumArray(value_type& v) : value(v) {}
  KOKKOS_INLINE_FUNCTION void join(value_type& dest, value_type const& src) const {
    for (int u = 0; u < kN; ++u) { dest[u] += src[u]; }
  }
  KOKKOS_INLINE_FUNCTION void init(value_type& v) const {
    for (int u = 0; u < kN; ++u) { v[u] = T(0); }
  }
  KOKKOS_INLINE_FUNCTION value_type& reference() const { return value; }
  KOKKOS_INLINE_FUNCTION result_view_type view() const { return result_view_type(&value, 1); }
};

/// Candidates j0 .. j0 + kN - 1 of query row (b, i): kk[u] is the key, or -1 where the list has
/// none or (causal) the key is padding. Returns how many are usable.
template <int kN, class P, class Mask>
KOKKOS_INLINE_FUNCTION int gather_key_chunk(P const& pattern, Mask const& valid, bool causal,
                                            int b, int i, int j0, int kmax, int (&kk)[kN]) {
  int usable = 0;
  HAX_UNROLL
  for (int u = 0; u < kN; ++u) {
    int key = j0 + u < kmax ? pattern.key(b, i, j0 + u) : -1;
    if (key >= 0 && causal && !valid(b, key)) { key = -1; }
    kk[u] = key;
    usable += key >= 0 ? 1 : 0;
  }
  return usable;
}

/// The kN dot products q(b, i, :)·k(b, kk[u], :) (0 where kk[u] < 0), reduced across the vector
/// lanes in one pass.
template <int kN, class T, class Member, class Q, class K>
KOKKOS_INLINE_FUNCTION Kokkos::Array<T, kN> chunk_logits(Member const& team, Q const& q, K const& k,
                                                         int b, int i, int N,
                                                         int const (&kk)[kN]) {
  Kokkos::Array<T, kN> s;
  Kokkos::parallel_reduce(
      Kokkos::ThreadVectorRange(team, N),
      [&](int n, Kokkos::Array<T, kN>& acc) {
        T const qn = q(b, i, n);
        HAX_UNROLL
        for (int u = 0; u < kN; ++u) {
          if (kk[u] >= 0) { acc[u] += qn * k(b, kk[u], n); }
        }
      },
      SumArray<T, kN>(s));
  return s;
}

/// Candidates the forward takes per step of its loop: their k and v rows are loaded together
/// (memory-level parallelism), and the online softmax and the output rescale once per chunk.
inline constexpr int kForwardKeysPerStep = 4;

/// Forward: one query row per thread of a team (core::kRowsPerTeam rows), vector lanes over N
/// for the logits and over Dv for the output; the candidates in chunks of kForwardKeysPerStep.
template <class Space, class P, class Q, class K, class V, class Mask, class O, class LSE>
void forward(Space const& space, P const& pattern, Q const& q, K const& k, V const& v,
             Mask const& valid, O const& o, LSE const& lse, AttentionOptions const& opts) {
  using T = typename O::non_const_value_type;
  using team_policy = Kokkos::TeamPolicy<Space>;
  using member = typename team_policy::member_type;
  int const B = q.extent_int(0), L = q.extent_int(1), N = q.extent_int(2), Dv = v.extent_int(2);
  int const rows = B * L;
  int const kmax = static_cast<int>(pattern.max_keys_per_query());
  bool const causal = opts.semantics == Semantics::causal;
  T const scale = static_cast<T>(opts.scale);
  int const league = (rows + core::kRowsPerTeam - 1) / core::kRowsPerTeam;
  Kokkos::parallel_for(
      "hax::attn::sparse_attention_forward", core::row_teams(space, league),
      KOKKOS_LAMBDA(member const& team) {
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, core::kRowsPerTeam), [&](int r) {
          int const row = team.league_rank() * core::kRowsPerTeam + r;
          if (row >= rows) { return; }
          int const b = row / L, i = row % L;
          T const neg_inf = -Kokkos::Experimental::infinity_v<T>;
          auto o_row = Kokkos::subview(o, b, i, Kokkos::ALL);  // (Dv)
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, Dv), [&](int d) { o_row(d) = T(0); });
          if (causal && !valid(b, i)) {  // pad query in causal semantics: zero output
            Kokkos::single(Kokkos::PerThread(team), [&]() { lse(b, i) = neg_inf; });
            return;
          }
          T m = neg_inf;  // running max of the logits
          T l = T(0);     // running sum of exp(logit - m)
          constexpr int kChunk = kForwardKeysPerStep;
          for (int j0 = 0; j0 < kmax; j0 += kChunk) {
            int kk[kChunk];  // the chunk's usable keys, -1 where none
            if (gather_key_chunk(pattern, valid, causal, b, i, j0, kmax, kk) == 0) { continue; }
            auto const s = chunk_logits<kChunk, T>(team, q, k, b, i, N, kk);
            // Rescale the accumulator once per chunk, by how much the max grew; each key gets
            // weight exp(s - m_new).
            T m_new = m;
            HAX_UNROLL
            for (int u = 0; u < kChunk; ++u) {
              if (kk[u] >= 0) { m_new = Kokkos::max(m_new, s[u] * scale); }
            }
            T const c = Kokkos::exp(m - m_new);  // 0 for the first keys (m = -inf)
            T p[kChunk];
            HAX_UNROLL
            for (int u = 0; u < kChunk; ++u) {
              p[u] = kk[u] >= 0 ? Kokkos::exp(s[u] * scale - m_new) : T(0);
              l = (u == 0 ? l * c : l) + p[u];
            }
            m = m_new;
            Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, Dv), [&](int d) {
              T acc = o_row(d) * c;
              HAX_UNROLL
              for (int u = 0; u < kChunk; ++u) {
                if (kk[u] >= 0) { acc += p[u] * v(b, kk[u], d); }
              }
              o_row(d) = acc;
            });
          }
          if (l > T(0)) {
            T const inv = T(1) / l;
            Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, Dv), [&](int d) { o_row(d) *= inv; });
            Kokkos::single(Kokkos::PerThread(team), [&]() { lse(b, i) = m + Kokkos::log(l); });
          } else {
            // Empty row: causal keeps o = 0; reference attends uniformly over all L positions.
            if (!causal) {
              Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, Dv), [&](int d) {
                T sum = T(0);
                for (int t = 0; t < L; ++t) { sum += v(b, t, d); }
                o_row(d) = sum / T(L);
              });
            }
            Kokkos::single(Kokkos::PerThread(team), [&]() { lse(b, i) = neg_inf; });
          }
        });
      });
}

/// Candidates the atomic backward takes per step: as in the forward, their rows are loaded
/// together and their logits and dp = dout·v reduced across the lanes in one pass each.
inline constexpr int kBackwardKeysPerStep = 4;

/// Backward: per query row, recompute p = exp(scale q·k - lse) for its candidates, in chunks of
/// kBackwardKeysPerStep; dq is the row's own (written), dk and dv are scattered to the candidate
/// keys with atomics (zeroed first).
template <class Space, class P, class Q, class K, class V, class Mask, class O, class LSE,
          class DO, class DQ, class DK, class DV>
void backward_atomic(Space const& space, P const& pattern, Q const& q, K const& k, V const& v,
              Mask const& valid, O const& o, LSE const& lse, DO const& dout, DQ const& dq,
              DK const& dk, DV const& dv, AttentionOptions const& opts) {
  using T = typename DQ::non_const_value_type;
  using team_policy = Kokkos::TeamPolicy<Space>;
  using member = typename team_policy::member_type;
  int const B = q.extent_int(0), L = q.extent_int(1), N = q.extent_int(2), Dv = v.extent_int(2);
  int const rows = B * L;
  int const kmax = static_cast<int>(pattern.max_keys_per_query());
  bool const causal = opts.semantics == Semantics::causal;
  T const scale = static_cast<T>(opts.scale);
  Kokkos::deep_copy(space, dk, T(0));
  Kokkos::deep_copy(space, dv, T(0));
  int const league = (rows + core::kRowsPerTeam - 1) / core::kRowsPerTeam;
  Kokkos::parallel_for(
      "hax::attn::sparse_attention_backward_atomic", core::row_teams(space, league),
      KOKKOS_LAMBDA(member const& team) {
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, core::kRowsPerTeam), [&](int r) {
          int const row = team.league_rank() * core::kRowsPerTeam + r;
          if (row >= rows) { return; }
          int const b = row / L, i = row % L;
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, N), [&](int n) { dq(b, i, n) = T(0); });
          if (causal && !valid(b, i)) { return; }
          T Di = T(0);  // Σ_d do·o: the row's Σ_j p_j dp_j
          Kokkos::parallel_reduce(
              Kokkos::ThreadVectorRange(team, Dv), [&](int d, T& acc) { acc += dout(b, i, d) * o(b, i, d); }, Di);
          T const row_lse = lse(b, i);
          int count = 0;
          constexpr int kChunk = kBackwardKeysPerStep;
          for (int j0 = 0; j0 < kmax; j0 += kChunk) {
            int kk[kChunk];  // the chunk's usable keys, -1 where none
            int const usable = gather_key_chunk(pattern, valid, causal, b, i, j0, kmax, kk);
            if (usable == 0) { continue; }
            count += usable;
            auto const s = chunk_logits<kChunk, T>(team, q, k, b, i, N, kk);
            Kokkos::Array<T, kChunk> dp;
            Kokkos::parallel_reduce(
                Kokkos::ThreadVectorRange(team, Dv),
                [&](int d, Kokkos::Array<T, kChunk>& acc) {
                  T const dod = dout(b, i, d);
                  HAX_UNROLL
                  for (int u = 0; u < kChunk; ++u) {
                    if (kk[u] >= 0) { acc[u] += dod * v(b, kk[u], d); }
                  }
                },
                SumArray<T, kChunk>(dp));
            T p[kChunk];
            T ds[kChunk];
            HAX_UNROLL
            for (int u = 0; u < kChunk; ++u) {
              p[u] = kk[u] >= 0 ? Kokkos::exp(s[u] * scale - row_lse) : T(0);
              ds[u] = p[u] * (dp[u] - Di) * scale;
            }
            Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, N), [&](int n) {
              T const qn = q(b, i, n);
              T acc = dq(b, i, n);
              HAX_UNROLL
              for (int u = 0; u < kChunk; ++u) {
                if (kk[u] >= 0) {
                  acc += ds[u] * k(b, kk[u], n);
                  Kokkos::atomic_add(&dk(b, kk[u], n), ds[u] * qn);
                }
              }
              dq(b, i, n) = acc;
            });
            Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, Dv), [&](int d) {
              T const dod = dout(b, i, d);
              HAX_UNROLL
              for (int u = 0; u < kChunk; ++u) {
                if (kk[u] >= 0) { Kokkos::atomic_add(&dv(b, kk[u], d), p[u] * dod); }
              }
            });
          }
          if (count == 0 && !causal) {
            // Reference semantics, empty row: o = mean of v over all L; no gradient to q or k.
            T const w = T(1) / T(L);
            for (int t = 0; t < L; ++t) {
              Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, Dv),
                                   [&](int d) { Kokkos::atomic_add(&dv(b, t, d), w * dout(b, i, d)); });
            }
          }
        });
      });
}

}  // namespace impl
}  // namespace hax::attn
