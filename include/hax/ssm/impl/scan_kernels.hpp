// SPDX-License-Identifier: MIT
/// \file
/// The team kernels of the Mamba-1 selective scan (hax::ssm::selective_scan_forward / _backward
/// in ssm/selective_scan.hpp; the math is docs/math/selective_scan.md). A team holds a block of
/// channels d, one thread per channel and the state size N on the vector lanes: the state h[d, n]
/// of a channel lives in team scratch (one entry per lane), the exps and state updates run on the
/// lanes and y_t[d] = Σ_n C_t[n] h_t[d, n] is a vector-lane reduction. Loads of B_t and C_t are
/// contiguous over the lanes; u, delta, dy are one broadcast load per thread and step.
///
/// The forward runs either in one pass over L per (b, channel block) (enough parallelism when
/// B·D·N fills the device) or chunk-parallel: every checkpoint chunk scanned from a zero state in
/// parallel (its own end state and Σ dt), a short pass over the chunks per (b, d, n) that turns
/// them into the chunk-start states (exp(A Σ dt) is the chunk's decay), then every chunk rescanned
/// from its start state to write y. Both give the same result to rounding.
#pragma once

#include <Kokkos_Core.hpp>
#include <cstddef>
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

/// Channels per team: 256 lanes per team on GPUs, capped so that `arrays` (Dt × N) scratch arrays
/// of T stay within 44 KiB; 16 channels per team on the host (one thread walks them in turn).
template <class Space, class T>
ScanTeamShape scan_team_shape(int N, int arrays) {
  ScanTeamShape s;
  constexpr bool host = Kokkos::SpaceAccessibility<Space, Kokkos::HostSpace>::accessible;
  if constexpr (host) {
    s.vector = 1;
    s.channels = 16;
  } else {
    int v = 1;
    while (v < N && v < 32) {
      v *= 2;
    }
    s.vector = v;
    s.channels = 256 / v;
  }
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

/// Forward scan over segments, one team per (b, segment, channel block); see ScanSegments.
/// states (B, D, n_chunks, N); sum_dt (B, D, n_chunks).
template <class Space, class In, class T, class Mem>
void scan_forward_segments(Space const& space, In const& in,
                           Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& y,
                           Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& states,
                           Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& sum_dt, int chunk,
                           ScanSegments mode) {
  using policy = Kokkos::TeamPolicy<Space>;
  using member = typename policy::member_type;
  using mat = Kokkos::View<T**, Kokkos::LayoutRight, typename Space::scratch_memory_space,
                           Kokkos::MemoryUnmanaged>;
  auto const u = in.u;
  auto const delta = in.delta;
  auto const delta_bias = in.delta_bias;
  auto const A = in.A;
  auto const Bm = in.Bm;
  auto const Cm = in.Cm;
  auto const Dskip = in.Dskip;
  int const B = u.extent_int(0), L = u.extent_int(1), D = u.extent_int(2), N = A.extent_int(1);
  int const n_chunks = ceil_div(L, chunk);
  int const n_seg = mode == ScanSegments::whole ? 1 : n_chunks;
  auto const shape = scan_team_shape<Space, T>(N, 2);
  int const Dt = shape.channels;
  int const n_blocks = ceil_div(D, Dt);
  bool const whole = mode == ScanSegments::whole;
  bool const local = mode == ScanSegments::chunk_local;
  auto pol = scan_policy(space, B * n_seg * n_blocks, shape);
  pol.set_scratch_size(0, Kokkos::PerTeam(2 * mat::shmem_size(Dt, N)));
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
        mat hs(team.team_scratch(0), Dt, N);  // (Dt, N) running states of the block
        mat As(team.team_scratch(0), Dt, N);  // (Dt, N) A of the block
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, nd), [&](int dl) {
          int const d = d0 + dl;
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, N), [&](int n) {
            As(dl, n) = A(d, n);
            hs(dl, n) = mode == ScanSegments::chunk_final ? states(b, d, seg, n) : T(0);
          });
          T const bias = delta_bias(d);
          T const skip = Dskip(d);
          T total = T(0);  // Σ dt over the segment
          for (int t = ts; t < te; ++t) {
            if (whole && t % chunk == 0) {  // checkpoint: the state before this chunk
              Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, N),
                                   [&](int n) { states(b, d, t / chunk, n) = hs(dl, n); });
            }
            T const dt = softplus(delta(b, t, d) + bias);
            T const ut = u(b, t, d);
            total += dt;
            T acc = T(0);
            Kokkos::parallel_reduce(
                Kokkos::ThreadVectorRange(team, N),
                [&](int n, T& sum) {
                  T const h = Kokkos::exp(dt * As(dl, n)) * hs(dl, n) + dt * Bm(b, t, n) * ut;
                  hs(dl, n) = h;
                  sum += Cm(b, t, n) * h;
                },
                acc);
            if (!local) {
              Kokkos::single(Kokkos::PerThread(team), [&]() { y(b, t, d) = acc + skip * ut; });
            }
          }
          if (local) {
            Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, N),
                                 [&](int n) { states(b, d, seg, n) = hs(dl, n); });
            Kokkos::single(Kokkos::PerThread(team), [&]() { sum_dt(b, d, seg) = total; });
          }
        });
      });
}

/// The recurrence over chunks, in place, one thread per (b, d, n): on entry states(c) is chunk
/// c's own end state from zero, on exit the state at its start,
/// S_start(c + 1) = exp(A Σ_{t in c} dt_t) S_start(c) + own(c).
template <class Space, class In, class T, class Mem>
void scan_chunk_pass(Space const& space, In const& in,
                     Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& states,
                     Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& sum_dt) {
  auto const A = in.A;
  int const B = states.extent_int(0), D = states.extent_int(1), n_chunks = states.extent_int(2);
  int const N = states.extent_int(3);
  Kokkos::parallel_for(
      "hax::ssm::selective_scan_chunk_pass", Kokkos::RangePolicy<Space>(space, 0, B * D * N),
      KOKKOS_LAMBDA(int i) {
        int const n = i % N;
        int const d = (i / N) % D;
        int const b = i / (N * D);
        T const an = A(d, n);
        T carry = T(0);
        for (int c = 0; c < n_chunks; ++c) {
          T const own = states(b, d, c, n);
          states(b, d, c, n) = carry;
          carry = Kokkos::exp(an * sum_dt(b, d, c)) * carry + own;
        }
      });
}

/// Backward, chunk c, one team per (b, channel block), a thread per channel and N on the lanes:
/// recompute the chunk's states from its checkpoint into hs, then run the adjoint recurrence
/// g_{t-1} = exp(dt_t A) g_t + dy_{t-1} C_{t-1} backwards through the chunk. Writes du, ddelta,
/// the adjoints gs and dt u (for dB and dC); accumulates the per-(b, d) partial parameter
/// gradients; carries g across chunk boundaries in `carry` (B, D, N).
template <class Space, class In, class G, class T, class Mem>
void scan_backward_chunk(Space const& space, In const& in,
                         Kokkos::View<T const***, Kokkos::LayoutRight, Mem> const& dy,
                         G const& grads,
                         Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& states,
                         Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& hs,
                         Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& gs,
                         Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& dtu,
                         Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& carry,
                         Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& part_dA,
                         Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& part_bd, int chunk,
                         int c) {
  using policy = Kokkos::TeamPolicy<Space>;
  using member = typename policy::member_type;
  using mat = Kokkos::View<T**, Kokkos::LayoutRight, typename Space::scratch_memory_space,
                           Kokkos::MemoryUnmanaged>;
  auto const u = in.u;
  auto const delta = in.delta;
  auto const delta_bias = in.delta_bias;
  auto const A = in.A;
  auto const Bm = in.Bm;
  auto const Cm = in.Cm;
  auto const Dskip = in.Dskip;
  auto const du = grads.du;
  auto const ddelta = grads.ddelta;
  int const B = u.extent_int(0), L = u.extent_int(1), D = u.extent_int(2), N = A.extent_int(1);
  int const cs = c * chunk;
  int const len = Kokkos::min(chunk, L - cs);
  auto const shape = scan_team_shape<Space, T>(N, 4);
  int const Dt = shape.channels;
  int const n_blocks = ceil_div(D, Dt);
  auto pol = scan_policy(space, B * n_blocks, shape);
  pol.set_scratch_size(0, Kokkos::PerTeam(4 * mat::shmem_size(Dt, N)));
  Kokkos::parallel_for(
      "hax::ssm::selective_scan_backward", pol, KOKKOS_LAMBDA(member const& team) {
        int const blk = team.league_rank() % n_blocks;
        int const b = team.league_rank() / n_blocks;
        int const d0 = blk * Dt;
        int const nd = Kokkos::min(Dt, D - d0);
        mat h(team.team_scratch(0), Dt, N);    // (Dt, N) state, recomputed from the checkpoint
        mat g(team.team_scratch(0), Dt, N);    // (Dt, N) adjoint dLoss/dh_t carried backwards
        mat As(team.team_scratch(0), Dt, N);   // (Dt, N) A
        mat dAl(team.team_scratch(0), Dt, N);  // (Dt, N) this chunk's share of dA
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, nd), [&](int dl) {
          int const d = d0 + dl;
          T const bias = delta_bias(d);
          T const skip = Dskip(d);
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, N), [&](int n) {
            As(dl, n) = A(d, n);
            h(dl, n) = states(b, d, c, n);
            g(dl, n) = carry(b, d, n);
            dAl(dl, n) = T(0);
          });
          for (int k = 0; k < len; ++k) {
            int const t = cs + k;
            T const dt = softplus(delta(b, t, d) + bias);
            T const ut = u(b, t, d);
            Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, N), [&](int n) {
              T const hn = Kokkos::exp(dt * As(dl, n)) * h(dl, n) + dt * Bm(b, t, n) * ut;
              h(dl, n) = hn;
              hs(b, k, d, n) = hn;
            });
          }
          T dbias = T(0);
          T dskip = T(0);
          for (int k = len - 1; k >= 0; --k) {
            int const t = cs + k;
            T const xb = delta(b, t, d) + bias;
            T const dt = softplus(xb);
            T const ut = u(b, t, d);
            T const dyt = dy(b, t, d);
            ScanPair<T> acc{T(0), T(0)};  // (dLoss/d dt_t, dLoss/du_t through the state)
            Kokkos::parallel_reduce(
                Kokkos::ThreadVectorRange(team, N),
                [&](int n, ScanPair<T>& sum) {
                  T const hprev = k > 0 ? hs(b, k - 1, d, n) : states(b, d, c, n);
                  T const an = As(dl, n);
                  T const a = Kokkos::exp(dt * an);
                  T const bn = Bm(b, t, n);
                  T const gn = g(dl, n) + dyt * Cm(b, t, n);     // total dLoss/dh_t
                  sum.first += gn * (hprev * a * an + bn * ut);  // dh_t/d dt = A a h_{t-1} + B u
                  sum.second += gn * dt * bn;
                  dAl(dl, n) += gn * hprev * a * dt;  // dh_t/dA = dt a h_{t-1}
                  gs(b, k, d, n) = gn;
                  g(dl, n) = gn * a;  // h_{t-1} reaches h_t through a
                },
                acc);
            T const dd = acc.first * sigmoid(xb);  // softplus' = sigmoid
            Kokkos::single(Kokkos::PerThread(team), [&]() {
              dtu(b, k, d) = dt * ut;
              du(b, t, d) = acc.second + skip * dyt;
              ddelta(b, t, d) = dd;
            });
            dbias += dd;
            dskip += dyt * ut;
          }
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, N), [&](int n) {
            carry(b, d, n) = g(dl, n);
            part_dA(b, d, n) += dAl(dl, n);
          });
          Kokkos::single(Kokkos::PerThread(team), [&]() {
            part_bd(b, d, 0) += dbias;
            part_bd(b, d, 1) += dskip;
          });
        });
      });
}

}  // namespace hax::ssm::impl
