// SPDX-License-Identifier: MIT
/// \file
/// The team kernels of the Mamba-1 selective scan (hax::ssm::selective_scan_forward / _backward
/// in ssm/selective_scan.hpp; the math is docs/math/selective_scan.md). A team holds a block of
/// channels d, one thread per channel and the state size N on the vector lanes: the state h[d, n]
/// of a channel lives in team scratch (one entry per lane), the exps and state updates run on the
/// lanes and y_t[d] = Σ_n C_t[n] h_t[d, n] is a vector-lane reduction. Loads of B_t and C_t are
/// contiguous over the lanes; u, delta (and dy) are staged in team scratch a block of steps at a
/// time.
///
/// The forward runs either in one pass over L per (b, channel block) (enough parallelism when
/// B·D·N fills a quarter of the device) or chunk-parallel: every checkpoint chunk scanned from a
/// zero state in parallel (its own end state and Σ dt), a short pass over the chunks per
/// (b, d, n) that turns them into the chunk-start states (exp(A Σ dt) is the chunk's decay), then
/// every chunk rescanned from its start state to write y. Both give the same result to rounding.
#pragma once

#include <Kokkos_Core.hpp>
#include <cstddef>
#include <cstdint>
#include <hax/core/policies.hpp>
#include <hax/ssm/impl/common.hpp>

namespace hax::ssm::impl {

/// Two sums reduced together over the vector lanes (d dt and du in the backward).
template <class T>
struct ScanPair {
  T first;
  T second;
  KOKKOS_INLINE_FUNCTION ScanPair& operator+=(ScanPair const& o) {
    first += o.first;
    second += o.second;
    return *this;
  }
};

}  // namespace hax::ssm::impl

namespace Kokkos {
/// The zero of hax::ssm::impl::ScanPair, for Kokkos' nested sum reductions.
template <class T>
struct reduction_identity<hax::ssm::impl::ScanPair<T>> {
  KOKKOS_FORCEINLINE_FUNCTION static hax::ssm::impl::ScanPair<T> sum() { return {T(0), T(0)}; }
};
}  // namespace Kokkos

namespace hax::ssm::impl {

/// Team shape of the scan kernels for state size N on Space: vector lanes (a power of two up to
/// 32 on GPUs, 1 on the host), threads (channels) per team, and the team scratch per channel.
struct ScanTeamShape {
  int vector = 1;    // lanes per channel
  int channels = 1;  // channels (threads) per team
};

/// Vector lanes per channel for state size N on Space: the power of two >= N up to 32 on GPUs, 1
/// on the host.
template <class Space>
int scan_vector_lanes(int N) {
  constexpr bool host = Kokkos::SpaceAccessibility<Space, Kokkos::HostSpace>::accessible;
  if constexpr (host) {
    return 1;
  } else {
    int v = 1;
    while (v < N && v < 32) {
      v *= 2;
    }
    return v;
  }
}

/// Channels per team: 256 lanes per team on GPUs, capped so that `arrays` (Dt × N) scratch arrays
/// of T stay within 44 KiB; 16 channels per team on the host (one thread walks them in turn).
template <class Space, class T>
ScanTeamShape scan_team_shape(int N, int arrays) {
  constexpr bool host = Kokkos::SpaceAccessibility<Space, Kokkos::HostSpace>::accessible;
  ScanTeamShape s;
  s.vector = scan_vector_lanes<Space>(N);
  s.channels = host ? 16 : 256 / s.vector;
  std::size_t const per_channel = std::size_t(arrays) * std::size_t(Kokkos::max(N, 1)) * sizeof(T);
  int const fit = static_cast<int>((44 * 1024) / per_channel);
  s.channels = Kokkos::max(1, Kokkos::min(s.channels, fit));
  return s;
}

/// A TeamPolicy with the given shape (team size AUTO on the host, where it is one thread).
template <class Space>
Kokkos::TeamPolicy<Space> scan_policy(Space const& space, int league, ScanTeamShape const& s) {
  constexpr bool host = Kokkos::SpaceAccessibility<Space, Kokkos::HostSpace>::accessible;
  if constexpr (host) {
    return Kokkos::TeamPolicy<Space>(space, league, Kokkos::AUTO);
  } else {
    return Kokkos::TeamPolicy<Space>(space, league, s.channels, s.vector);
  }
}

/// What one forward scan over segments does.
enum class ScanSegments {
  whole,        // one segment [0, L) from zero: y and the chunk-start states
  chunk_local,  // every chunk from zero: its own end state (into states) and Σ dt (into sum_dt)
  chunk_final,  // every chunk from its start state (states): y
};

/// Time steps a forward team stages into scratch at once (delta, u of its channels; B, C).
inline constexpr int kScanStageSteps = 32;

/// Forward scan over segments, one team per (b, segment, channel block); see ScanSegments.
/// states (B, D, n_chunks, N); sum_dt (B, D, n_chunks). The team stages kScanStageSteps steps of
/// its inputs into scratch with coalesced loads, then every channel walks them in order: the
/// sequential loop reads scratch instead of waiting on a global load per step.
template <class Space, class In, class T, class Mem>
void scan_forward_segments(Space const& space, In const& in,
                           Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& y,
                           Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& states,
                           Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& sum_dt, int chunk,
                           ScanSegments mode) {
  using policy = Kokkos::TeamPolicy<Space>;
  using member = typename policy::member_type;
  using scratch = typename Space::scratch_memory_space;
  using mat = Kokkos::View<T**, Kokkos::LayoutRight, scratch, Kokkos::MemoryUnmanaged>;
  using mat3 = Kokkos::View<T***, Kokkos::LayoutRight, scratch, Kokkos::MemoryUnmanaged>;
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
  auto const shape = scan_team_shape<Space, T>(N, 2);
  int const Dt = shape.channels;
  int const n_blocks = ceil_div(D, Dt);
  int const S = kScanStageSteps;
  bool const whole = mode == ScanSegments::whole;
  bool const local = mode == ScanSegments::chunk_local;
  std::size_t const bytes = 2 * mat::shmem_size(Dt, N) + mat::shmem_size(Dt, 1) +
                            mat3::shmem_size(S, Dt, 2) + mat3::shmem_size(S, 2, N);
  int const level = core::scratch_level(bytes);
  auto pol = scan_policy(space, B * n_seg * n_blocks, shape);
  pol.set_scratch_size(level, Kokkos::PerTeam(bytes));
  Kokkos::parallel_for(
      local ? "hax::ssm::selective_scan_forward_chunks" : "hax::ssm::selective_scan_forward", pol,
      KOKKOS_LAMBDA(member const& team) {
        int const blk = team.league_rank() % n_blocks;
        int const seg = (team.league_rank() / n_blocks) % n_seg;
        int const b = team.league_rank() / (n_blocks * n_seg);
        int const d0 = blk * Dt;
        int const nd = Kokkos::min(Dt, D - d0);
        int const ts = whole ? 0 : seg * chunk;
        int const te = whole ? L : Kokkos::min(ts + chunk, L);
        int const tp = Kokkos::max(ts, Kokkos::min(te, present_steps(lengths, b, L)));  // present
        mat hs(team.team_scratch(level), Dt, N);        // running states of the block
        mat As(team.team_scratch(level), Dt, N);        // A of the block
        mat total(team.team_scratch(level), Dt, 1);     // Σ dt over the segment
        mat3 xs(team.team_scratch(level), S, Dt, 2);    // staged delta, u
        mat3 bcs(team.team_scratch(level), S, 2, N);    // staged B, C
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, nd), [&](int dl) {
          int const d = d0 + dl;
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, N), [&](int n) {
            As(dl, n) = A(d, n);
            hs(dl, n) = mode == ScanSegments::chunk_final ? states(b, d, seg, n) : T(0);
          });
          Kokkos::single(Kokkos::PerThread(team), [&]() { total(dl, 0) = T(0); });
        });
        for (int t0 = ts; t0 < tp; t0 += S) {
          int const len = Kokkos::min(S, tp - t0);
          team.team_barrier();  // the previous block's steps have read the staged inputs
          Kokkos::parallel_for(Kokkos::TeamVectorRange(team, len * nd), [&](int i) {
            int const k = i / nd;
            int const dl = i % nd;
            xs(k, dl, 0) = delta(b, t0 + k, d0 + dl);
            xs(k, dl, 1) = u(b, t0 + k, d0 + dl);
          });
          Kokkos::parallel_for(Kokkos::TeamVectorRange(team, len * N), [&](int i) {
            int const k = i / N;
            int const n = i % N;
            bcs(k, 0, n) = Bm(b, t0 + k, n);
            bcs(k, 1, n) = Cm(b, t0 + k, n);
          });
          team.team_barrier();
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, nd), [&](int dl) {
            int const d = d0 + dl;
            T const bias = delta_bias(d);
            T const skip = Dskip(d);
            T sum_dt_block = T(0);
            for (int k = 0; k < len; ++k) {
              int const t = t0 + k;
              if (whole && t % chunk == 0) {  // checkpoint: the state before this chunk
                Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, N),
                                     [&](int n) { states(b, d, t / chunk, n) = hs(dl, n); });
              }
              T const dt = softplus(xs(k, dl, 0) + bias);
              T const ut = xs(k, dl, 1);
              sum_dt_block += dt;
              T acc = T(0);
              Kokkos::parallel_reduce(
                  Kokkos::ThreadVectorRange(team, N),
                  [&](int n, T& sum) {
                    T const h = Kokkos::exp(dt * As(dl, n)) * hs(dl, n) + dt * bcs(k, 0, n) * ut;
                    hs(dl, n) = h;
                    sum += bcs(k, 1, n) * h;
                  },
                  acc);
              if (!local) {
                Kokkos::single(Kokkos::PerThread(team), [&]() { y(b, t, d) = acc + skip * ut; });
              }
            }
            Kokkos::single(Kokkos::PerThread(team), [&]() { total(dl, 0) += sum_dt_block; });
          });
        }
        // Absent steps: y = 0; the state passes them unchanged (the checkpoints of the chunks
        // wholly past the row's end hold it, so that every saved state is defined).
        if (!local) {
          Kokkos::parallel_for(Kokkos::TeamVectorRange(team, (te - tp) * nd), [&](int i) {
            y(b, tp + i / nd, d0 + i % nd) = T(0);
          });
        }
        if (whole) {
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, nd), [&](int dl) {
            for (int c = ceil_div(tp, chunk); c < n_chunks; ++c) {
              Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, N),
                                   [&](int n) { states(b, d0 + dl, c, n) = hs(dl, n); });
            }
          });
        }
        if (local) {
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, nd), [&](int dl) {
            int const d = d0 + dl;
            Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, N),
                                 [&](int n) { states(b, d, seg, n) = hs(dl, n); });
            Kokkos::single(Kokkos::PerThread(team), [&]() { sum_dt(b, d, seg) = total(dl, 0); });
          });
        }
      });
}

/// Which way scan_chunk_pass runs over the chunks.
enum class ChunkDirection {
  forward,   ///< states: chunk c's start state from the chunks before it
  backward,  ///< adjoints: the adjoint carried into chunk c from the chunks after it
};

/// The recurrence over chunks, in place, one thread per (b, d, n). Forward: on entry states(c) is
/// chunk c's own end state from zero, on exit the state at its start,
/// S_start(c + 1) = exp(A Σ_{t in c} dt_t) S_start(c) + own(c). Backward: on entry chunk c's own
/// adjoint at its start from a zero carry, on exit the carry that enters it from the later chunks,
/// X(c - 1) = exp(A Σ_{t in c} dt_t) X(c) + own(c). The decay of a chunk is the same both ways.
template <class Space, class In, class T, class Mem>
void scan_chunk_pass(Space const& space, In const& in,
                     Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& states,
                     Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& sum_dt,
                     ChunkDirection direction = ChunkDirection::forward) {
  auto const A = in.A;
  int const B = states.extent_int(0), D = states.extent_int(1), n_chunks = states.extent_int(2);
  int const N = states.extent_int(3);
  bool const reverse = direction == ChunkDirection::backward;
  Kokkos::parallel_for(
      reverse ? "hax::ssm::selective_scan_adjoint_chunk_pass" : "hax::ssm::selective_scan_chunk_pass",
      Kokkos::RangePolicy<Space, Kokkos::IndexType<std::int64_t>>(
          space, 0, std::int64_t(B) * D * N),
      KOKKOS_LAMBDA(std::int64_t i) {
        auto const [b, d, n] = split_index3(i, D, N);
        T const an = A(d, n);
        T carry = T(0);
        int const first = reverse ? n_chunks - 1 : 0;
        int const step = reverse ? -1 : 1;
        T own = states(b, d, first, n);
        for (int j = 0; j < n_chunks; ++j) {
          int const c = first + step * j;
          // Load the next chunk's entry before storing this one: a load issued after a store to
          // the same cache line waits for that store (the same fix as the SSD tile passes).
          T const next = j + 1 < n_chunks ? states(b, d, c + step, n) : T(0);
          T const decay = Kokkos::exp(an * sum_dt(b, d, c));
          states(b, d, c, n) = carry;
          carry = decay * carry + own;
          own = next;
        }
      });
}

/// Team shape of the backward: 128 lanes per team on GPUs (the scratch per channel holds a whole
/// chunk of states and adjoints, so teams are half the forward's), 16 channels on the host.
template <class Space>
ScanTeamShape scan_backward_shape(int N) {
  constexpr bool host = Kokkos::SpaceAccessibility<Space, Kokkos::HostSpace>::accessible;
  ScanTeamShape s;
  s.vector = scan_vector_lanes<Space>(N);
  s.channels = host ? 16 : Kokkos::max(1, 128 / s.vector);
  return s;
}

/// Team-scratch bytes of scan_backward_fused for chunk length K (= min(chunk, L)).
template <class T, class ScratchSpace>
std::size_t scan_backward_scratch_bytes(int K, int Dt, int N) {
  using mat3 = Kokkos::View<T***, Kokkos::LayoutRight, ScratchSpace, Kokkos::MemoryUnmanaged>;
  using mat2 = Kokkos::View<T**, Kokkos::LayoutRight, ScratchSpace, Kokkos::MemoryUnmanaged>;
  return 2 * mat3::shmem_size(K, Dt, N) + mat3::shmem_size(K, Dt, 4) +
         3 * mat2::shmem_size(Dt, N) + mat2::shmem_size(Dt, 2);
}

/// The whole backward in one kernel, one team per (b, channel block), a thread per channel and N
/// on the lanes. The chunks are walked in reverse; for each chunk the team
///   1. stages delta, u and dy of its channels (coalesced loads, once per chunk),
///   2. recomputes the chunk's states h_t from the checkpoint into scratch,
///   3. runs the adjoint recurrence g_{t-1} = exp(dt_t A) g_t + dy_{t-1} C_{t-1} backwards,
///      writing du and ddelta and keeping the adjoints in scratch,
///   4. sums dB_t[n] = Σ_d g_t[d, n] dt_t u_t[d] and dC_t[n] = Σ_d dy_t[d] h_t[d, n] over its
///      channels into the block's partial sums dBp, dCp (n_blocks, B, L, N).
/// The adjoint carry and the parameter-gradient partials stay in scratch across chunks and are
/// written once at the end: part_dA (B, D, N), part_bd (B, D, 2) (=). Replaces 2 launches and two
/// (B, chunk, D, N) round trips through global memory per chunk.
template <class Space, class In, class G, class T, class Mem>
void scan_backward_fused(Space const& space, In const& in,
                         Kokkos::View<T const***, Kokkos::LayoutRight, Mem> const& dy,
                         G const& grads,
                         Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& states,
                         Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& dBp,
                         Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& dCp,
                         Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& part_dA,
                         Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& part_bd, int chunk,
                         ScanTeamShape const& shape) {
  using policy = Kokkos::TeamPolicy<Space>;
  using member = typename policy::member_type;
  using scratch = typename Space::scratch_memory_space;
  using mat3 = Kokkos::View<T***, Kokkos::LayoutRight, scratch, Kokkos::MemoryUnmanaged>;
  using mat = Kokkos::View<T**, Kokkos::LayoutRight, scratch, Kokkos::MemoryUnmanaged>;
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
  int const n_chunks = ceil_div(L, chunk);
  int const K = Kokkos::min(chunk, L);
  int const Dt = shape.channels;
  int const n_blocks = ceil_div(D, Dt);
  std::size_t const bytes = scan_backward_scratch_bytes<T, scratch>(K, Dt, N);
  int const level = core::scratch_level(bytes);
  auto pol = scan_policy(space, B * n_blocks, shape);
  pol.set_scratch_size(level, Kokkos::PerTeam(bytes));
  Kokkos::parallel_for(
      "hax::ssm::selective_scan_backward", pol, KOKKOS_LAMBDA(member const& team) {
        int const blk = team.league_rank() % n_blocks;
        int const b = team.league_rank() / n_blocks;
        int const d0 = blk * Dt;
        int const nd = Kokkos::min(Dt, D - d0);
        mat3 hh(team.team_scratch(level), K, Dt, N);  // states h_t of the chunk
        mat3 gg(team.team_scratch(level), K, Dt, N);  // adjoints dLoss/dh_t of the chunk
        mat3 xs(team.team_scratch(level), K, Dt, 4);  // delta, u, dy, dt u of the chunk
        mat As(team.team_scratch(level), Dt, N);      // A of the block
        mat g(team.team_scratch(level), Dt, N);       // adjoint carried backwards
        mat dAl(team.team_scratch(level), Dt, N);     // Σ over the sequence of dh_t/dA terms
        mat bd(team.team_scratch(level), Dt, 2);      // Σ ddelta_bias and Σ dD terms
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, nd), [&](int dl) {
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, N), [&](int n) {
            As(dl, n) = A(d0 + dl, n);
            g(dl, n) = T(0);
            dAl(dl, n) = T(0);
          });
          Kokkos::single(Kokkos::PerThread(team), [&]() {
            bd(dl, 0) = T(0);
            bd(dl, 1) = T(0);
          });
        });
        int const present = present_steps(lengths, b, L);
        // Present steps only (the caller zeroes the absent steps' gradients); the chunks wholly
        // past the row's end are skipped, the adjoint entering the last present one is zero.
        for (int c = ceil_div(present, chunk) - 1; c >= 0; --c) {
          int const cs = c * chunk;
          int const len = Kokkos::min(chunk, present - cs);
          team.team_barrier();  // the previous chunk's partial sums have read hh, gg and xs
          Kokkos::parallel_for(Kokkos::TeamVectorRange(team, len * nd), [&](int i) {
            int const k = i / nd;
            int const dl = i % nd;
            xs(k, dl, 0) = delta(b, cs + k, d0 + dl);
            xs(k, dl, 1) = u(b, cs + k, d0 + dl);
            xs(k, dl, 2) = dy(b, cs + k, d0 + dl);
          });
          team.team_barrier();
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, nd), [&](int dl) {
            int const d = d0 + dl;
            T const bias = delta_bias(d);
            T const skip = Dskip(d);
            for (int k = 0; k < len; ++k) {
              int const t = cs + k;
              T const dt = softplus(xs(k, dl, 0) + bias);
              T const ut = xs(k, dl, 1);
              Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, N), [&](int n) {
                T const hprev = k > 0 ? hh(k - 1, dl, n) : states(b, d, c, n);
                hh(k, dl, n) = Kokkos::exp(dt * As(dl, n)) * hprev + dt * Bm(b, t, n) * ut;
              });
            }
            for (int k = len - 1; k >= 0; --k) {
              int const t = cs + k;
              T const xb = xs(k, dl, 0) + bias;
              T const dt = softplus(xb);
              T const ut = xs(k, dl, 1);
              T const dyt = xs(k, dl, 2);
              ScanPair<T> acc{T(0), T(0)};  // (dLoss/d dt_t, dLoss/du_t through the state)
              Kokkos::parallel_reduce(
                  Kokkos::ThreadVectorRange(team, N),
                  [&](int n, ScanPair<T>& sum) {
                    T const hprev = k > 0 ? hh(k - 1, dl, n) : states(b, d, c, n);
                    T const an = As(dl, n);
                    auto const st = state_adjoint(g(dl, n), hprev, an, Kokkos::exp(dt * an),
                                                 Bm(b, t, n), Cm(b, t, n), dt, ut, dyt);
                    sum.first += st.d_dt;
                    sum.second += st.d_u;
                    dAl(dl, n) += st.d_A;
                    gg(k, dl, n) = st.total;
                    g(dl, n) = st.carry;
                  },
                  acc);
              T const dd = acc.first * sigmoid(xb);  // softplus' = sigmoid
              Kokkos::single(Kokkos::PerThread(team), [&]() {
                du(b, t, d) = acc.second + skip * dyt;
                ddelta(b, t, d) = dd;
                xs(k, dl, 3) = dt * ut;  // for dB below
                bd(dl, 0) += dd;
                bd(dl, 1) += dyt * ut;
              });
            }
          });
          team.team_barrier();
          Kokkos::parallel_for(Kokkos::TeamVectorRange(team, len * N), [&](int i) {
            int const k = i / N;
            int const n = i % N;
            T db = T(0);
            T dc = T(0);
            for (int dl = 0; dl < nd; ++dl) {
              db += gg(k, dl, n) * xs(k, dl, 3);
              dc += xs(k, dl, 2) * hh(k, dl, n);
            }
            dBp(blk, b, cs + k, n) = db;
            dCp(blk, b, cs + k, n) = dc;
          });
        }
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, nd), [&](int dl) {
          int const d = d0 + dl;
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, N),
                               [&](int n) { part_dA(b, d, n) = dAl(dl, n); });
          Kokkos::single(Kokkos::PerThread(team), [&]() {
            part_bd(b, d, 0) = bd(dl, 0);
            part_bd(b, d, 1) = bd(dl, 1);
          });
        });
      });
}

}  // namespace hax::ssm::impl
