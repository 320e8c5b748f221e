// SPDX-License-Identifier: MIT
/// \file
/// The register layout of the Mamba-1 selective scan (hax::ssm::selective_scan_forward_run and
/// _backward_run with ScanLayout::registers; the math is docs/math/selective_scan.md): a thread
/// per channel holds the channel's N states in registers, so a time step costs one softplus per
/// channel and a few instructions per state, where the lanes layout (scan_kernels.hpp) spends a
/// softplus, scratch traffic and a lane reduction per state. kCap >= N is the compile-time
/// register capacity (impl::dispatch_capacity).
///
/// The backward is chunk-parallel, a thread per (b, chunk, channel):
///   1. scan_backward_chunk_adjoints: every chunk's own adjoint at its start from a zero carry,
///      and its Σ dt (the chunk's decay is exp(A Σ dt));
///   2. scan_chunk_pass(ChunkDirection::backward): the adjoint carried into every chunk;
///   3. scan_backward_registers: every chunk recomputed from its checkpoint and swept in reverse
///      from its carry, a sub-chunk of states at a time in team scratch. The sums over channels
///      (dB, dC) are warp reduce-scatters on GPUs, one partial sum per group of 32 channels.
#pragma once

#include <Kokkos_Core.hpp>
#include <cstddef>
#include <cstdint>
#include <hax/core/error.hpp>
#include <limits>
#include <hax/core/policies.hpp>
#include <hax/ssm/impl/common.hpp>
#include <hax/ssm/impl/scan_kernels.hpp>
#include <type_traits>

namespace hax::ssm::impl {

/// Where the scan keeps a channel's N states (selective_scan_forward_run, _backward_run).
enum class ScanLayout {
  lanes,      ///< scan_kernels.hpp: a thread per channel, N on the vector lanes, team scratch
  registers,  ///< this file: a thread per channel, its N states in registers
};

/// Forward scan over segments with a thread per (b, segment, channel) that holds the channel's N
/// states (and its row of A) in registers: no lane reduction, and softplus once per step instead
/// of once per lane. Consecutive threads take consecutive channels, so the loads of u and delta
/// and the stores of y are coalesced and B_t, C_t are one broadcast per warp. kCap >= N is the
/// compile-time register capacity (impl::dispatch_capacity). Same modes and outputs as
/// scan_forward_segments.
template <int kCap, class Space, class In, class T, class Mem>
void scan_forward_registers(Space const& space, In const& in,
                            Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& y,
                            Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& states,
                            Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& sum_dt, int chunk,
                            ScanSegments mode) {
  auto const u = in.u;
  auto const delta = in.delta;
  auto const delta_bias = in.delta_bias;
  auto const A = in.A;
  auto const Bm = in.Bm;
  auto const Cm = in.Cm;
  auto const Dskip = in.Dskip;
  auto const lengths = in.lengths;
  int const B = u.extent_int(0), L = u.extent_int(1), D = u.extent_int(2), N = A.extent_int(1);
  int const n_chunks = ceil_div(L, chunk);
  int const n_seg = mode == ScanSegments::whole ? 1 : n_chunks;
  bool const whole = mode == ScanSegments::whole;
  bool const local = mode == ScanSegments::chunk_local;
  Kokkos::parallel_for(
      local ? "hax::ssm::selective_scan_forward_chunks" : "hax::ssm::selective_scan_forward",
      // 64-bit thread indices: with chunk 1 (every state saved), B·L·D can pass 2^31.
      Kokkos::RangePolicy<Space, Kokkos::IndexType<std::int64_t>>(
          space, 0, std::int64_t(B) * n_seg * D),
      KOKKOS_LAMBDA(std::int64_t i) {
        auto const [b, seg, d] = split_index3(i, n_seg, D);
        int const ts = whole ? 0 : seg * chunk;
        int const te = whole ? L : Kokkos::min(ts + chunk, L);
        int const tp = Kokkos::max(ts, Kokkos::min(te, present_steps(lengths, b, L)));  // present
        T h[kCap];
        T a[kCap];
        HAX_UNROLL
        for (int n = 0; n < kCap; ++n) {
          a[n] = n < N ? A(d, n) : T(0);
          h[n] = n < N && mode == ScanSegments::chunk_final ? states(b, d, seg, n) : T(0);
        }
        T const bias = delta_bias(d);
        T const skip = Dskip(d);
        T total = T(0);
        for (int t = ts; t < tp; ++t) {
          if (whole && t % chunk == 0) {  // checkpoint: the state before this chunk
            HAX_UNROLL
            for (int n = 0; n < kCap; ++n) {
              if (n < N) { states(b, d, t / chunk, n) = h[n]; }
            }
          }
          T const dt = softplus(delta(b, t, d) + bias);
          T const ut = u(b, t, d);
          T const dtu = dt * ut;
          total += dt;
          T acc = T(0);
          HAX_UNROLL
          for (int n = 0; n < kCap; ++n) {
            if (n < N) {
              h[n] = Kokkos::exp(dt * a[n]) * h[n] + dtu * Bm(b, t, n);
              acc += Cm(b, t, n) * h[n];
            }
          }
          if (!local) { y(b, t, d) = acc + skip * ut; }
        }
        // Absent steps: y = 0; the state passes them unchanged (the checkpoints of the chunks
        // wholly past the row's end hold it, so that every saved state is defined).
        if (!local) {
          for (int t = tp; t < te; ++t) { y(b, t, d) = T(0); }
        }
        if (whole) {
          for (int c = ceil_div(tp, chunk); c < n_chunks; ++c) {
            HAX_UNROLL
            for (int n = 0; n < kCap; ++n) {
              if (n < N) { states(b, d, c, n) = h[n]; }
            }
          }
        }
        if (local) {
          HAX_UNROLL
          for (int n = 0; n < kCap; ++n) {
            if (n < N) { states(b, d, seg, n) = h[n]; }
          }
          sum_dt(b, d, seg) = total;
        }
      });
}

/// Whether the register-layout backward runs on Space: host spaces (a thread walks a group's
/// channels in turn) and CUDA (a warp per group, sums over channels by warp shuffles).
template <class Space>
inline constexpr bool scan_registers_backward_supported =
    Kokkos::SpaceAccessibility<Space, Kokkos::HostSpace>::accessible
#if defined(KOKKOS_ENABLE_CUDA)
    || std::is_same_v<Space, Kokkos::Cuda>
#endif
    ;

/// Channels of a backward group: one warp on GPUs.
inline constexpr int kScanGroupChannels = 32;

/// Steps of a backward sub-chunk for register capacity kCap and chunk length K (= min(chunk, L)).
/// On GPUs the sub-chunk's states, S × N per channel of a warp, take 16 KiB of team scratch in
/// float at N = kCap = 16 or 64 (32 KiB at 256, twice as much in double). On the host a thread holds one channel's states at a time, so the sub-chunk is the
/// whole chunk and nothing is recomputed twice.
template <class Space, int kCap>
int scan_subchunk_steps(int K) {
  if constexpr (Kokkos::SpaceAccessibility<Space, Kokkos::HostSpace>::accessible) {
    return K;
  } else {
    return kCap <= 16 ? 8 : (kCap <= 64 ? 2 : 1);
  }
}

/// x from the lane `lane ^ mask` of the warp (CUDA device code only; the host never calls it).
template <class T>
KOKKOS_INLINE_FUNCTION T shuffle_xor(T x, int mask) {
#if defined(KOKKOS_ENABLE_CUDA) && defined(__CUDA_ARCH__)
  return __shfl_xor_sync(0xffffffffu, x, mask);
#else
  (void)mask;
  return x;
#endif
}

/// Recursive-halving reduce-scatter of 32 values over the 32 lanes of a warp: afterwards v[0] of
/// lane l is the sum over the warp of value l. 31 shuffles where 32 full reductions take 160.
template <int kOff, class T>
KOKKOS_INLINE_FUNCTION void warp_reduce_scatter(T* v, int lane) {
  bool const upper = (lane & kOff) != 0;  // keeps values [kOff, 2 kOff), sends [0, kOff)
  HAX_UNROLL
  for (int i = 0; i < kOff; ++i) {
    T const send = upper ? v[i] : v[i + kOff];
    T const keep = upper ? v[i + kOff] : v[i];
    v[i] = keep + shuffle_xor(send, kOff);
  }
  if constexpr (kOff > 1) {
    warp_reduce_scatter<kOff / 2>(v, lane);
  }
}

/// Backward pass 1, a thread per (b, chunk, channel): the chunk's own adjoint at its start from a
/// zero carry, g ← (g + dy_t C_t) exp(dt_t A) for t from the chunk's end to its start, into adj
/// (B, D, n_chunks, N), and its Σ dt into sum_dt (B, D, n_chunks).
template <int kCap, class Space, class In, class T, class Mem>
void scan_backward_chunk_adjoints(Space const& space, In const& in,
                                  Kokkos::View<T const***, Kokkos::LayoutRight, Mem> const& dy,
                                  Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& adj,
                                  Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& sum_dt,
                                  int chunk) {
  auto const delta = in.delta;
  auto const delta_bias = in.delta_bias;
  auto const A = in.A;
  auto const Cm = in.Cm;
  auto const lengths = in.lengths;
  int const B = delta.extent_int(0), L = delta.extent_int(1), D = delta.extent_int(2);
  int const N = A.extent_int(1);
  int const n_chunks = adj.extent_int(2);
  Kokkos::parallel_for(
      "hax::ssm::selective_scan_backward_chunk_adjoints",
      Kokkos::RangePolicy<Space, Kokkos::IndexType<std::int64_t>>(
          space, 0, std::int64_t(B) * n_chunks * D),
      KOKKOS_LAMBDA(std::int64_t i) {
        auto const [b, c, d] = split_index3(i, n_chunks, D);
        int const ts = c * chunk;
        // Present steps only: an absent chunk has a zero adjoint and Σ dt = 0 (decay 1).
        int const te = Kokkos::max(ts, Kokkos::min(ts + chunk, present_steps(lengths, b, L)));
        T g[kCap];
        T a[kCap];
        HAX_UNROLL
        for (int n = 0; n < kCap; ++n) {
          a[n] = n < N ? A(d, n) : T(0);
          g[n] = T(0);
        }
        T const bias = delta_bias(d);
        T total = T(0);
        for (int t = te - 1; t >= ts; --t) {
          T const dt = softplus(delta(b, t, d) + bias);
          T const dyt = dy(b, t, d);
          total += dt;
          HAX_UNROLL
          for (int n = 0; n < kCap; ++n) {
            if (n < N) {
              g[n] = (g[n] + dyt * Cm(b, t, n)) * Kokkos::exp(dt * a[n]);
            }
          }
        }
        HAX_UNROLL
        for (int n = 0; n < kCap; ++n) {
          if (n < N) { adj(b, d, c, n) = g[n]; }
        }
        sum_dt(b, d, c) = total;
      });
}

/// Team-scratch bytes of scan_backward_registers: the sub-chunk states (S, N, 32) on GPUs; on the
/// host (one thread per group) the states of one channel, the carried adjoints and dA sums and
/// the d sums of every channel, and the group's dB/dC sums of a sub-chunk.
template <class T, class ScratchSpace>
std::size_t scan_backward_registers_scratch_bytes(bool host, int S, int N) {
  using mat3 = Kokkos::View<T***, Kokkos::LayoutRight, ScratchSpace, Kokkos::MemoryUnmanaged>;
  using mat2 = Kokkos::View<T**, Kokkos::LayoutRight, ScratchSpace, Kokkos::MemoryUnmanaged>;
  int const G = kScanGroupChannels;
  if (!host) {
    return mat3::shmem_size(S, N, G);
  }
  return mat3::shmem_size(S, N, 1) + 2 * mat2::shmem_size(G, N) + mat2::shmem_size(G, 2) +
         mat3::shmem_size(S, 2, N);
}

/// Backward pass 3, one team per (b, chunk, group of 32 channels): a warp on GPUs, a thread
/// per channel; one thread walking the channels in turn on the host. For every sub-chunk of
/// S = scan_subchunk_steps steps (the whole chunk on the host), from the last, a channel
///   1. recomputes its states from the chunk's checkpoint (states) to the sub-chunk's end,
///      keeping the sub-chunk's h_{t-1} in scratch (S J (J + 1) / 2 steps for a chunk of J
///      sub-chunks: (J + 1) / 2 recomputes of it, where a second level of checkpoints would cost
///      scratch; none on the host, where S is the whole chunk),
///   2. sweeps the sub-chunk in reverse from its adjoint g (the carry adj(b, d, c) at the chunk's
///      end): G_t = g + dy_t C_t, g ← exp(dt_t A) G_t; writes du, ddelta and sums dA, Σ ddelta,
///      Σ dy u in registers,
///   3. sums dB_t[n] = Σ_d G_t[d, n] dt_t u_t[d] and dC_t[n] = Σ_d dy_t[d] h_t[d, n] over the
///      group into dBp, dCp (n_groups, B, L, N).
/// The parameter partials go to part_dA (B n_chunks, D, N) and part_bd (B n_chunks, D, 2) (=).
template <int kCap, class Space, class In, class G, class T, class Mem>
void scan_backward_registers(Space const& space, In const& in,
                             Kokkos::View<T const***, Kokkos::LayoutRight, Mem> const& dy,
                             G const& grads,
                             Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& states,
                             Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& adj,
                             Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& dBp,
                             Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& dCp,
                             Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& part_dA,
                             Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& part_bd,
                             int chunk) {
  static_assert(scan_registers_backward_supported<Space>,
                "the register-layout backward needs a host space or CUDA (warp shuffles)");
  using policy = Kokkos::TeamPolicy<Space>;
  using member = typename policy::member_type;
  using scratch = typename Space::scratch_memory_space;
  using mat3 = Kokkos::View<T***, Kokkos::LayoutRight, scratch, Kokkos::MemoryUnmanaged>;
  using mat2 = Kokkos::View<T**, Kokkos::LayoutRight, scratch, Kokkos::MemoryUnmanaged>;
  constexpr bool host = Kokkos::SpaceAccessibility<Space, Kokkos::HostSpace>::accessible;
  constexpr int kGroup = kScanGroupChannels;
  static_assert(2 * kCap % kGroup == 0, "dB and dC of a step fill whole warps");
  auto const u = in.u;
  auto const delta = in.delta;
  auto const delta_bias = in.delta_bias;
  auto const A = in.A;
  auto const Bm = in.Bm;
  auto const Cm = in.Cm;
  auto const Dskip = in.Dskip;
  auto const du = grads.du;
  auto const ddelta = grads.ddelta;
  auto const lengths = in.lengths;
  int const B = u.extent_int(0), L = u.extent_int(1), D = u.extent_int(2), N = A.extent_int(1);
  int const n_chunks = states.extent_int(2);
  int const n_groups = ceil_div(D, kGroup);
  core::require(std::int64_t(B) * n_chunks * n_groups <= std::numeric_limits<int>::max(),
                "hax::ssm::selective_scan_backward", "B (", B, ") × chunks (", n_chunks,
                ") × groups of 32 channels (", n_groups,
                ") exceeds the largest league of teams; use a longer checkpoint chunk");
  int const S = scan_subchunk_steps<Space, kCap>(Kokkos::min(chunk, L));
  std::size_t const bytes = scan_backward_registers_scratch_bytes<T, scratch>(host, S, N);
  int const level = core::scratch_level(bytes);
  policy pol = host ? policy(space, B * n_chunks * n_groups, 1)
                    : policy(space, B * n_chunks * n_groups, kGroup, 1);
  pol.set_scratch_size(level, Kokkos::PerTeam(bytes));
  Kokkos::parallel_for(
      "hax::ssm::selective_scan_backward_registers", pol, KOKKOS_LAMBDA(member const& team) {
        int const grp = team.league_rank() % n_groups;
        int const c = (team.league_rank() / n_groups) % n_chunks;
        int const b = team.league_rank() / (n_groups * n_chunks);
        int const row = b * n_chunks + c;
        int const ts = c * chunk;
        // Present steps only (their absent steps' gradients are zeroed by the caller): a chunk
        // wholly past the row's end has no sub-chunk and writes zero parameter partials.
        int const te = Kokkos::max(ts, Kokkos::min(ts + chunk, present_steps(lengths, b, L)));
        mat3 hbuf(team.team_scratch(level), S, N, host ? 1 : kGroup);  // h_{t-1} of a sub-chunk

        // One channel over the sub-chunk [s0, s1): recompute, then the reverse sweep. Lanes past
        // D (GPU) take part with zero adjoints and dy, so that every lane reaches the shuffles.
        auto sweep = [&](int lane, int slot, int s0, int s1, T(&g)[kCap], T(&dA)[kCap], T& sum_dd,
                         T& sum_dyu, auto&& emit) {
          int const d = grp * kGroup + lane;
          bool const valid = d < D;
          int const dv = valid ? d : 0;  // a channel to read for lanes past D
          T a[kCap];
          T h[kCap];
          HAX_UNROLL
          for (int n = 0; n < kCap; ++n) {
            a[n] = n < N ? A(dv, n) : T(0);
            h[n] = n < N ? states(b, dv, c, n) : T(0);
          }
          T const bias = delta_bias(dv);
          T const skip = Dskip(dv);
          for (int t = ts; t < s1; ++t) {
            if (t >= s0) {
              HAX_UNROLL
              for (int n = 0; n < kCap; ++n) {
                if (n < N) { hbuf(t - s0, n, slot) = h[n]; }
              }
            }
            T const dt = softplus(delta(b, t, dv) + bias);
            T const dtu = dt * u(b, t, dv);
            HAX_UNROLL
            for (int n = 0; n < kCap; ++n) {
              if (n < N) { h[n] = Kokkos::exp(dt * a[n]) * h[n] + dtu * Bm(b, t, n); }
            }
          }
          for (int t = s1 - 1; t >= s0; --t) {
            T const xb = delta(b, t, dv) + bias;
            T const dt = softplus(xb);
            T const ut = u(b, t, dv);
            T const dyt = valid ? dy(b, t, dv) : T(0);
            T vb[kCap];  // G_t dt u: this channel's share of dB_t
            T vc[kCap];  // dy h_t: this channel's share of dC_t
            T d_dt = T(0);  // dLoss/d dt_t through the state
            T d_u = T(0);   // dLoss/du_t through the state
            HAX_UNROLL
            for (int n = 0; n < kCap; ++n) {
              vb[n] = T(0);
              vc[n] = T(0);
              if (n < N) {
                T const hp = hbuf(t - s0, n, slot);
                T const e = Kokkos::exp(dt * a[n]);
                T const bn = Bm(b, t, n);
                auto const st = state_adjoint(g[n], hp, a[n], e, bn, Cm(b, t, n), dt, ut, dyt);
                d_dt += st.d_dt;
                d_u += st.d_u;
                dA[n] += st.d_A;
                vb[n] = st.total * dt * ut;
                vc[n] = dyt * (e * hp + dt * bn * ut);  // dy_t h_t
                g[n] = st.carry;
              }
            }
            T const dd = d_dt * sigmoid(xb);  // softplus' = sigmoid
            if (valid) {
              du(b, t, d) = d_u + skip * dyt;
              ddelta(b, t, d) = dd;
            }
            sum_dd += dd;
            sum_dyu += dyt * ut;
            emit(t, vb, vc);
          }
        };

        int const n_sub = (te - ts + S - 1) / S;  // sub-chunks of the chunk
        // A plain `if` on the constant: nvcc's extended lambdas cannot capture a variable first
        // inside `if constexpr`.
        if (!host) {
          int const lane = team.team_rank();
          int const d = grp * kGroup + lane;
          bool const valid = d < D;
          T g[kCap];
          T dA[kCap];
          HAX_UNROLL
          for (int n = 0; n < kCap; ++n) {
            g[n] = valid && n < N ? adj(b, d, c, n) : T(0);
            dA[n] = T(0);
          }
          T sum_dd = T(0);
          T sum_dyu = T(0);
          for (int j = n_sub - 1; j >= 0; --j) {
            int const s0 = ts + j * S;
            int const s1 = Kokkos::min(s0 + S, te);
            sweep(lane, lane, s0, s1, g, dA, sum_dd, sum_dyu,
                  [&](int t, T(&vb)[kCap], T(&vc)[kCap]) {
                    // Values q·32 .. q·32 + 31 of (vb, vc) summed over the warp; lane l keeps
                    // value q·32 + l.
                    HAX_UNROLL
                    for (int q = 0; q < 2 * kCap / kGroup; ++q) {
                      T v[kGroup];
                      HAX_UNROLL
                      for (int i = 0; i < kGroup; ++i) {
                        int const idx = q * kGroup + i;
                        v[i] = idx < kCap ? vb[idx] : vc[idx - kCap];
                      }
                      warp_reduce_scatter<kGroup / 2>(v, lane);
                      int const idx = q * kGroup + lane;
                      int const n = idx < kCap ? idx : idx - kCap;
                      if (idx < kCap && n < N) {
                        dBp(grp, b, t, n) = v[0];
                      } else if (idx >= kCap && n < N) {
                        dCp(grp, b, t, n) = v[0];
                      }
                    }
                  });
          }
          if (valid) {
            HAX_UNROLL
            for (int n = 0; n < kCap; ++n) {
              if (n < N) { part_dA(row, d, n) = dA[n]; }
            }
            part_bd(row, d, 0) = sum_dd;
            part_bd(row, d, 1) = sum_dyu;
          }
        } else {
          int const nd = Kokkos::min(kGroup, D - grp * kGroup);
          mat2 gs(team.team_scratch(level), kGroup, N);      // adjoint carried per channel
          mat2 dAs(team.team_scratch(level), kGroup, N);     // Σ dh/dA terms per channel
          mat2 sums(team.team_scratch(level), kGroup, 2);    // Σ ddelta, Σ dy u per channel
          mat3 acc(team.team_scratch(level), S, 2, N);       // the group's dB, dC of a sub-chunk
          for (int lane = 0; lane < nd; ++lane) {
            for (int n = 0; n < N; ++n) {
              gs(lane, n) = adj(b, grp * kGroup + lane, c, n);
              dAs(lane, n) = T(0);
            }
            sums(lane, 0) = T(0);
            sums(lane, 1) = T(0);
          }
          for (int j = n_sub - 1; j >= 0; --j) {
            int const s0 = ts + j * S;
            int const s1 = Kokkos::min(s0 + S, te);
            for (int k = 0; k < s1 - s0; ++k) {
              for (int n = 0; n < N; ++n) {
                acc(k, 0, n) = T(0);
                acc(k, 1, n) = T(0);
              }
            }
            for (int lane = 0; lane < nd; ++lane) {
              T g[kCap];
              T dA[kCap];
              for (int n = 0; n < kCap; ++n) {
                g[n] = n < N ? gs(lane, n) : T(0);
                dA[n] = n < N ? dAs(lane, n) : T(0);
              }
              sweep(lane, 0, s0, s1, g, dA, sums(lane, 0), sums(lane, 1),
                    [&](int t, T(&vb)[kCap], T(&vc)[kCap]) {
                      for (int n = 0; n < N; ++n) {
                        acc(t - s0, 0, n) += vb[n];
                        acc(t - s0, 1, n) += vc[n];
                      }
                    });
              for (int n = 0; n < N; ++n) {
                gs(lane, n) = g[n];
                dAs(lane, n) = dA[n];
              }
            }
            for (int k = 0; k < s1 - s0; ++k) {
              for (int n = 0; n < N; ++n) {
                dBp(grp, b, s0 + k, n) = acc(k, 0, n);
                dCp(grp, b, s0 + k, n) = acc(k, 1, n);
              }
            }
          }
          for (int lane = 0; lane < nd; ++lane) {
            int const d = grp * kGroup + lane;
            for (int n = 0; n < N; ++n) {
              part_dA(row, d, n) = dAs(lane, n);
            }
            part_bd(row, d, 0) = sums(lane, 0);
            part_bd(row, d, 1) = sums(lane, 1);
          }
        }
      });
}

}  // namespace hax::ssm::impl
