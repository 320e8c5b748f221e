// SPDX-License-Identifier: MIT
/// \file
/// The team kernels of the SSD (Mamba-2) forward and backward (hax::ssm::ssd_forward /
/// ssd_backward in ssm/ssd.hpp; the math is docs/math/ssd.md). Work is split into tiles of at most
/// a few dozen time steps *inside* the checkpoint chunks: one team per (b, tile) holds the tile's
/// B and C (Q×N), C·Bᵀ (Q×Q, shared by the heads: one group), and per head x, dt·x, the decays and
/// the decay-masked C·Bᵀ in team scratch, so the quadratic intra-tile forms are small matrix
/// products in scratch with one exp per (t, s) pair and per head. A tile never straddles a chunk
/// boundary, so the chunk-start states the forward saves are tile-start states; the tile size
/// only changes rounding (the within-tile cumsums), never the result.
///
/// Kernels: forward = tiles (intra output + each tile's own end state), a pass over tiles per
/// (b, h, p, n) (the recurrence; writes the saved chunk states), inter-tile output; backward =
/// tiles (own states and own adjoints), both passes, the per-token gradients, the parameter sums.
/// All reductions are per team or per thread; no atomics, no host synchronisation.
/// Scratch row strides are padded to odd lengths so that column walks do not hit one bank.
#pragma once

#include <Kokkos_Core.hpp>
#include <cstddef>
#include <hax/core/error.hpp>
#include <hax/ssm/impl/common.hpp>

namespace hax::ssm::impl {

/// Largest SSD tile (time steps per team); more only adds O(Q) intra work per token.
inline constexpr int kSsdMaxTile = 64;
/// Team scratch budget per SSD kernel (below the 48 KiB a GPU block gets without opt-in).
inline constexpr std::size_t kSsdScratchBudget = 44 * 1024;

/// An odd row stride >= n (so that walking a column of a row-major scratch matrix spreads over
/// the banks of GPU shared memory).
KOKKOS_INLINE_FUNCTION int ssd_pad(int n) { return n % 2 == 0 ? n + 1 : n; }

/// How a sequence of length L with checkpoint chunks of `chunk` steps is cut into tiles: every
/// chunk into `per_chunk` tiles of `tile` steps (the last tile of a chunk possibly shorter, and
/// some tiles of the last chunk possibly empty).
struct SsdTiles {
  int L = 0;          // sequence length
  int chunk = 1;      // checkpoint chunk (as the caller gave it)
  int tile = 1;       // Q: time steps per tile
  int per_chunk = 1;  // tiles per chunk
  int n_tiles = 0;    // ceil(L / chunk) · per_chunk

  /// First step and length of tile k (length 0 for an empty tile).
  KOKKOS_INLINE_FUNCTION void range(int k, int& start, int& len) const {
    int const c = k / per_chunk;
    int const chunk_end = Kokkos::min(c * chunk + chunk, L);
    start = c * chunk + (k % per_chunk) * tile;
    len = Kokkos::max(Kokkos::min(start + tile, chunk_end) - start, 0);
  }

  /// Tile k of a row whose steps from `present` on are absent (SsdInputs::lengths): `len` is the
  /// tile's present part (0 when the tile starts past it) and `full` its whole length, so the
  /// absent steps of the tile are start + len .. start + full - 1.
  KOKKOS_INLINE_FUNCTION void range(int k, int present, int& start, int& len, int& full) const {
    range(k, start, full);
    len = Kokkos::max(Kokkos::min(full, present - start), 0);
  }
};

/// Zeroes steps [from, to) of row b of a (B, L, W) or (B, L, H, P) View with the threads of a
/// team.
template <class Member, class V>
KOKKOS_INLINE_FUNCTION void ssd_zero_steps(Member const& team, V const& v, int b, int from,
                                           int to) {
  using value_type = typename V::non_const_value_type;
  int const W = v.extent_int(2);
  if constexpr (V::rank() == 3) {
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, (to - from) * W),
                         [&](int i) { v(b, from + i / W, i % W) = value_type(0); });
  } else {
    static_assert(V::rank() == 4, "ssd_zero_steps: a (B, L, W) or (B, L, H, P) View");
    int const P = v.extent_int(3);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, (to - from) * W * P), [&](int i) {
      v(b, from + i / (W * P), (i / P) % W, i % P) = value_type(0);
    });
  }
}

/// The tiling of (L, chunk) with the largest tile (<= kSsdMaxTile) whose team scratch
/// bytes_of(tile) fits kSsdScratchBudget, evened out over each chunk (so a chunk of 64 with a
/// largest fitting tile of 56 becomes two tiles of 32, not 56 + 8). Throws when not even a tile
/// of one step fits (huge P or N).
template <class BytesOf>
SsdTiles ssd_make_tiles(char const* op, int L, int chunk, BytesOf const& bytes_of) {
  SsdTiles tl;
  tl.L = L;
  tl.chunk = chunk;
  int const span = Kokkos::max(Kokkos::min(chunk, L), 1);  // chunk boundaries past L do not exist
  int fit = Kokkos::min(span, kSsdMaxTile);
  while (fit > 1 && bytes_of(fit) > kSsdScratchBudget) {
    --fit;
  }
  core::require(bytes_of(fit) <= kSsdScratchBudget, op, "the head dim P and state size N need ",
                bytes_of(fit), " bytes of team scratch per time step, more than the ",
                kSsdScratchBudget, " available");
  tl.per_chunk = ceil_div(span, fit);
  tl.tile = ceil_div(span, tl.per_chunk);
  tl.n_tiles = ceil_div(L, chunk) * tl.per_chunk;
  return tl;
}

template <class Space, class T>
struct SsdScratch {
  using space = typename Space::scratch_memory_space;
  using vec = Kokkos::View<T*, space, Kokkos::MemoryUnmanaged>;                        // (n)
  using mat = Kokkos::View<T**, Kokkos::LayoutRight, space, Kokkos::MemoryUnmanaged>;  // (r, pad)
  static std::size_t vec_bytes(int n) { return vec::shmem_size(n); }
  static std::size_t mat_bytes(int rows, int cols) { return mat::shmem_size(rows, ssd_pad(cols)); }
};

/// Whether the kernels stage a head's (P × N) state in team scratch: when two of them take at
/// most a quarter of the budget (P · N up to about 1 400 in float, 700 in double, rows padded to an
/// odd N; e.g. the reference's P = 16, N = 32), so that large heads (P = 64, N = 128) do not give
/// up tile length for them and read the state from global memory instead. (The Q-sized
/// accumulators of the state terms are allocated either way: for P = 64, N = 128 in float the
/// backward's tile is 13 steps, where it was 20 before they existed; not measured on a GPU.)
template <class Space, class T>
bool ssd_stage_states(int P, int N) {
  return 2 * SsdScratch<Space, T>::mat_bytes(P, N) <= kSsdScratchBudget / 4;
}

/// Team scratch of ssd_backward_main for tile Q (the binding one of the backward's tiling).
template <class Space, class T>
std::size_t ssd_backward_main_bytes(int Q, int P, int N) {
  using S = SsdScratch<Space, T>;
  // Unstaged, the two (0 × N) views still take their alignment slack.
  std::size_t const states = 2 * S::mat_bytes(ssd_stage_states<Space, T>(P, N) ? P : 0, N);
  return 4 * S::mat_bytes(Q, N) + 4 * S::mat_bytes(Q, Q) + 4 * S::mat_bytes(Q, P) + states +
         7 * S::vec_bytes(Q);
}

/// Team scratch of ssd_forward_tiles for tile Q.
template <class Space, class T>
std::size_t ssd_forward_tiles_bytes(int Q, int P, int N) {
  using S = SsdScratch<Space, T>;
  return 2 * S::mat_bytes(Q, N) + 2 * S::mat_bytes(Q, Q) + S::mat_bytes(Q, P) + 3 * S::vec_bytes(Q);
}

/// Forward tiles. Per (b, tile) team: C·Bᵀ once; per head the within-tile cumsum of the log decays
/// a_t (written to acs (B, L, H)), y_t = Σ_{s<=t} (C_t·B_s) e^{a_t - a_s} dt_s x_s + Dskip x_t
/// (written to y), the tile's own end state Σ_s e^{a_last - a_s} dt_s x_s ⊗ B_s (written to own
/// (B, H, n_tiles, P, N)) and its total decay e^{a_last} (decay (B, H, n_tiles)).
/// `In` is hax::ssm::SsdInputs.
template <class Space, class In, class T, class Mem>
void ssd_forward_tiles(Space const& space, In const& in, SsdTiles const& tl,
                       Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& y,
                       Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& acs_g,
                       Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& decay,
                       Kokkos::View<T*****, Kokkos::LayoutRight, Mem> const& own) {
  using policy = Kokkos::TeamPolicy<Space>;
  using member = typename policy::member_type;
  using S = SsdScratch<Space, T>;
  using vec = typename S::vec;
  using mat = typename S::mat;
  auto const x = in.x;
  auto const dt = in.dt;
  auto const dt_bias = in.dt_bias;
  auto const A = in.A;
  auto const Bm = in.Bm;
  auto const Cm = in.Cm;
  auto const Dskip = in.Dskip;
  auto const lengths = in.lengths;
  int const B = x.extent_int(0), L = x.extent_int(1), H = x.extent_int(2), P = x.extent_int(3);
  int const N = Bm.extent_int(2);
  int const Q = tl.tile;
  std::size_t const bytes = ssd_forward_tiles_bytes<Space, T>(Q, P, N);
  int const n_tiles = tl.n_tiles;
  policy pol(space, B * n_tiles, Kokkos::AUTO);
  pol.set_scratch_size(0, Kokkos::PerTeam(bytes));
  Kokkos::parallel_for(
      "hax::ssm::ssd_forward_tiles", pol, KOKKOS_LAMBDA(member const& team) {
        int const b = team.league_rank() / n_tiles;
        int const k = team.league_rank() % n_tiles;
        int ts = 0, len = 0, full = 0;
        tl.range(k, present_steps(lengths, b, L), ts, len, full);
        ssd_zero_steps(team, y, b, ts + len, ts + full);  // absent steps: y = 0
        if (len == 0) {  // an empty or absent tile: no own state, no decay
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, H * P * N),
                               [&](int i) { own(b, i / (P * N), k, (i / N) % P, i % N) = T(0); });
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, H),
                               [&](int h) { decay(b, h, k) = T(1); });
          return;
        }
        mat Bs(team.team_scratch(0), Q, ssd_pad(N));  // (Q, N) B of the tile
        mat Cs(team.team_scratch(0), Q, ssd_pad(N));  // (Q, N) C of the tile
        mat CB(team.team_scratch(0), Q, ssd_pad(Q));  // (Q, Q) C_t·B_s, s <= t
        mat M(team.team_scratch(0), Q, ssd_pad(Q));   // (Q, Q) CB ⊙ e^{a_t - a_s}, this head
        mat u(team.team_scratch(0), Q, ssd_pad(P));   // (Q, P) dt_s x_s, this head
        vec dtv(team.team_scratch(0), Q);             // (Q) softplus(dt + dt_bias)
        vec acs(team.team_scratch(0), Q);             // (Q) a_t, inclusive cumsum of dt A
        vec w(team.team_scratch(0), Q);               // (Q) e^{a_last - a_s}
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len * N), [&](int i) {
          Bs(i / N, i % N) = Bm(b, ts + i / N, i % N);
          Cs(i / N, i % N) = Cm(b, ts + i / N, i % N);
        });
        team.team_barrier();
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len * len), [&](int i) {
          int const t = i / len, s = i % len;
          T v = T(0);
          if (s <= t) {
            for (int n = 0; n < N; ++n) {
              v += Cs(t, n) * Bs(s, n);
            }
          }
          CB(t, s) = v;
        });
        for (int h = 0; h < H; ++h) {
          T const Ah = A(h);
          T const bias = dt_bias(h);
          Kokkos::parallel_scan(Kokkos::TeamThreadRange(team, len),
                                [&](int t, T& run, bool const final) {
                                  T const v = softplus(dt(b, ts + t, h) + bias);
                                  run += v * Ah;
                                  if (final) {
                                    dtv(t) = v;
                                    acs(t) = run;
                                    acs_g(b, ts + t, h) = run;
                                  }
                                });
          team.team_barrier();
          T const a_last = acs(len - 1);
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len * P), [&](int i) {
            u(i / P, i % P) = dtv(i / P) * x(b, ts + i / P, h, i % P);
          });
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len),
                               [&](int s) { w(s) = Kokkos::exp(a_last - acs(s)); });
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len * len), [&](int i) {
            int const t = i / len, s = i % len;
            M(t, s) = s <= t ? CB(t, s) * Kokkos::exp(acs(t) - acs(s)) : T(0);
          });
          team.team_barrier();
          T const skip = Dskip(h);
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len * P), [&](int i) {
            int const t = i / P, p = i % P;
            T v = skip * x(b, ts + t, h, p);
            for (int s = 0; s <= t; ++s) {
              v += M(t, s) * u(s, p);
            }
            y(b, ts + t, h, p) = v;
          });
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, P * N), [&](int i) {
            int const p = i / N, n = i % N;
            T v = T(0);
            for (int s = 0; s < len; ++s) {
              v += w(s) * u(s, p) * Bs(s, n);
            }
            own(b, h, k, p, n) = v;
          });
          Kokkos::single(Kokkos::PerTeam(team), [&]() { decay(b, h, k) = Kokkos::exp(a_last); });
          team.team_barrier();  // the next head overwrites dtv, acs, w, u, M
        }
      });
}

/// The recurrence over tiles, in place on buf (B, H, n_tiles, P, N), one thread per (b, h, p, n):
///  - forward (reverse = false): on entry buf(k) is tile k's own end-state contribution, on exit
///    the state at tile k's start, S_start(k + 1) = decay(k) S_start(k) + own(k). At every chunk
///    start the state is written to `saved` (write_saved) or restarted from it (the backward,
///    which recomputes from the checkpoints).
///  - reverse: on entry buf(k) is tile k's own adjoint Σ_i e^{a_i} dy_i ⊗ C_i, on exit
///    G(k) = dLoss/dS_end(k), G(k - 1) = decay(k) G(k) + own(k).
template <class Space, class T, class Mem>
void ssd_tile_pass(Space const& space, SsdTiles const& tl,
                   Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& decay,
                   Kokkos::View<T*****, Kokkos::LayoutRight, Mem> const& buf,
                   Kokkos::View<T*****, Kokkos::LayoutRight, Mem> const& saved, bool reverse,
                   bool write_saved) {
  int const B = buf.extent_int(0), H = buf.extent_int(1), P = buf.extent_int(3);
  int const N = buf.extent_int(4);
  int const n_tiles = tl.n_tiles;
  int const per_chunk = tl.per_chunk;
  Kokkos::parallel_for(
      reverse ? "hax::ssm::ssd_tile_pass_reverse" : "hax::ssm::ssd_tile_pass",
      Kokkos::RangePolicy<Space>(space, 0, B * H * P * N), KOKKOS_LAMBDA(int i) {
        int const n = i % N;  // n fastest: neighbouring threads, neighbouring addresses
        int const p = (i / N) % P;
        int const h = (i / (N * P)) % H;
        int const b = i / (N * P * H);
        T carry = T(0);
        // The next tile's own state and decay are loaded before this tile's store, so the loads
        // overlap the recurrence instead of waiting behind the store to the same View.
        int const k0 = reverse ? n_tiles - 1 : 0;
        T own_next = n_tiles > 0 ? buf(b, h, k0, p, n) : T(0);
        T decay_next = n_tiles > 0 ? decay(b, h, k0) : T(0);
        for (int kk = 0; kk < n_tiles; ++kk) {
          int const k = reverse ? n_tiles - 1 - kk : kk;
          T const own = own_next;
          T const dk = decay_next;
          if (kk + 1 < n_tiles) {
            int const k1 = reverse ? k - 1 : k + 1;
            own_next = buf(b, h, k1, p, n);
            decay_next = decay(b, h, k1);
          }
          if (!reverse && k % per_chunk == 0) {
            if (write_saved) {
              saved(b, h, k / per_chunk, p, n) = carry;
            } else {
              carry = saved(b, h, k / per_chunk, p, n);
            }
          }
          buf(b, h, k, p, n) = carry;
          carry = dk * carry + own;
        }
      });
}

/// Forward, inter-tile part: y_t += e^{a_t} S_start C_t for every tile but the first. Per head the
/// start state (P × N) is staged in team scratch beside the tile's C when small (ssd_stage_states),
/// so the (Q × P) product reads scratch only.
template <class Space, class In, class T, class Mem>
void ssd_forward_inter(Space const& space, In const& in, SsdTiles const& tl,
                       Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& acs_g,
                       Kokkos::View<T*****, Kokkos::LayoutRight, Mem> const& starts,
                       Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& y) {
  using policy = Kokkos::TeamPolicy<Space>;
  using member = typename policy::member_type;
  using S = SsdScratch<Space, T>;
  using vec = typename S::vec;
  using mat = typename S::mat;
  auto const Cm = in.Cm;
  auto const lengths = in.lengths;
  int const B = y.extent_int(0), L = y.extent_int(1), H = y.extent_int(2), P = y.extent_int(3);
  int const N = Cm.extent_int(2);
  int const Q = tl.tile;
  int const n_tiles = tl.n_tiles;
  bool const stage = ssd_stage_states<Space, T>(P, N);
  std::size_t const bytes = S::mat_bytes(Q, N) + S::mat_bytes(stage ? P : 0, N) + S::vec_bytes(Q);
  policy pol(space, B * n_tiles, Kokkos::AUTO);
  pol.set_scratch_size(0, Kokkos::PerTeam(bytes));
  Kokkos::parallel_for(
      "hax::ssm::ssd_forward_inter", pol, KOKKOS_LAMBDA(member const& team) {
        int const b = team.league_rank() / n_tiles;
        int const k = team.league_rank() % n_tiles;
        int ts = 0, len = 0, full = 0;
        tl.range(k, present_steps(lengths, b, L), ts, len, full);
        if (len == 0 || k == 0) {  // nothing, or the zero state at the sequence start
          return;
        }
        mat Cs(team.team_scratch(0), Q, ssd_pad(N));  // (Q, N)
        mat S0(team.team_scratch(0), stage ? P : 0, ssd_pad(N));  // (P, N) this head's start state
        vec e(team.team_scratch(0), Q);                           // (Q) e^{a_t}
        auto state = [&](int h, int p, int n) { return stage ? S0(p, n) : starts(b, h, k, p, n); };
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len * N),
                             [&](int i) { Cs(i / N, i % N) = Cm(b, ts + i / N, i % N); });
        for (int h = 0; h < H; ++h) {
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len),
                               [&](int t) { e(t) = Kokkos::exp(acs_g(b, ts + t, h)); });
          if (stage) {
            Kokkos::parallel_for(Kokkos::TeamThreadRange(team, P * N),
                                 [&](int i) { S0(i / N, i % N) = starts(b, h, k, i / N, i % N); });
          }
          team.team_barrier();
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len * P), [&](int i) {
            int const t = i / P, p = i % P;
            T v = T(0);
            for (int n = 0; n < N; ++n) {
              v += state(h, p, n) * Cs(t, n);
            }
            y(b, ts + t, h, p) += e(t) * v;
          });
          team.team_barrier();
        }
      });
}

/// Backward tiles, first pass. Per (b, tile) team and head: dt (softplus) and a_t written to dtv
/// and acs (B, L, H); the tile's own end-state contribution (as the forward) into own_s and its
/// own adjoint Σ_i e^{a_i} dy_i ⊗ C_i into own_g (B, H, n_tiles, P, N); e^{a_last} into decay.
template <class Space, class In, class T, class Mem>
void ssd_backward_tiles(Space const& space, In const& in,
                        Kokkos::View<T const****, Kokkos::LayoutRight, Mem> const& dy,
                        SsdTiles const& tl,
                        Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& dtv_g,
                        Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& acs_g,
                        Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& decay,
                        Kokkos::View<T*****, Kokkos::LayoutRight, Mem> const& own_s,
                        Kokkos::View<T*****, Kokkos::LayoutRight, Mem> const& own_g) {
  using policy = Kokkos::TeamPolicy<Space>;
  using member = typename policy::member_type;
  using S = SsdScratch<Space, T>;
  using vec = typename S::vec;
  using mat = typename S::mat;
  auto const x = in.x;
  auto const dt = in.dt;
  auto const dt_bias = in.dt_bias;
  auto const A = in.A;
  auto const Bm = in.Bm;
  auto const Cm = in.Cm;
  auto const lengths = in.lengths;
  int const B = x.extent_int(0), L = x.extent_int(1), H = x.extent_int(2), P = x.extent_int(3);
  int const N = Bm.extent_int(2);
  int const Q = tl.tile;
  int const n_tiles = tl.n_tiles;
  std::size_t const bytes = 2 * S::mat_bytes(Q, N) + 2 * S::mat_bytes(Q, P) + 3 * S::vec_bytes(Q);
  policy pol(space, B * n_tiles, Kokkos::AUTO);
  pol.set_scratch_size(0, Kokkos::PerTeam(bytes));
  Kokkos::parallel_for(
      "hax::ssm::ssd_backward_tiles", pol, KOKKOS_LAMBDA(member const& team) {
        int const b = team.league_rank() / n_tiles;
        int const k = team.league_rank() % n_tiles;
        int ts = 0, len = 0, full = 0;
        tl.range(k, present_steps(lengths, b, L), ts, len, full);
        if (len == 0) {
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, H * P * N), [&](int i) {
            own_s(b, i / (P * N), k, (i / N) % P, i % N) = T(0);
            own_g(b, i / (P * N), k, (i / N) % P, i % N) = T(0);
          });
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, H),
                               [&](int h) { decay(b, h, k) = T(1); });
          return;
        }
        mat Bs(team.team_scratch(0), Q, ssd_pad(N));  // (Q, N)
        mat Cs(team.team_scratch(0), Q, ssd_pad(N));  // (Q, N)
        mat u(team.team_scratch(0), Q, ssd_pad(P));   // (Q, P) e^{a_last - a_s} dt_s x_s
        mat ey(team.team_scratch(0), Q, ssd_pad(P));  // (Q, P) e^{a_i} dy_i
        vec dtv(team.team_scratch(0), Q);             // (Q)
        vec acs(team.team_scratch(0), Q);             // (Q)
        vec e(team.team_scratch(0), Q);               // (Q) e^{a_t}
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len * N), [&](int i) {
          Bs(i / N, i % N) = Bm(b, ts + i / N, i % N);
          Cs(i / N, i % N) = Cm(b, ts + i / N, i % N);
        });
        for (int h = 0; h < H; ++h) {
          T const Ah = A(h);
          T const bias = dt_bias(h);
          Kokkos::parallel_scan(Kokkos::TeamThreadRange(team, len),
                                [&](int t, T& run, bool const final) {
                                  T const v = softplus(dt(b, ts + t, h) + bias);
                                  run += v * Ah;
                                  if (final) {
                                    dtv(t) = v;
                                    acs(t) = run;
                                    e(t) = Kokkos::exp(run);
                                    dtv_g(b, ts + t, h) = v;
                                    acs_g(b, ts + t, h) = run;
                                  }
                                });
          team.team_barrier();
          T const a_last = acs(len - 1);
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len * P), [&](int i) {
            int const s = i / P, p = i % P;
            u(s, p) = Kokkos::exp(a_last - acs(s)) * dtv(s) * x(b, ts + s, h, p);
            ey(s, p) = e(s) * dy(b, ts + s, h, p);
          });
          team.team_barrier();
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, P * N), [&](int i) {
            int const p = i / N, n = i % N;
            T vs = T(0);
            T vg = T(0);
            for (int s = 0; s < len; ++s) {
              vs += u(s, p) * Bs(s, n);
              vg += ey(s, p) * Cs(s, n);
            }
            own_s(b, h, k, p, n) = vs;
            own_g(b, h, k, p, n) = vg;
          });
          Kokkos::single(Kokkos::PerTeam(team), [&]() { decay(b, h, k) = Kokkos::exp(a_last); });
          team.team_barrier();
        }
      });
}

/// Backward tiles, main pass (docs/math/ssd.md): per (b, tile) team, with S0 the state at the
/// tile start and G the adjoint of its end state, per head
///   du_s = Σ_{t>=s} M(t, s) dy_t + e^{a_last - a_s} G B_s,   dx_s = dt_s du_s + Dskip dy_s,
///   d a_t = Σ_{s<=t} M(t, s) (dy_t·u_s) + e^{a_t} dy_t·(S0 C_t) + [t last] <G, S_end>
///           - dt_t (x_t·du_t),
/// then the reverse cumsum of d a over the tile gives d dt (through softplus) and the per-team
/// sums of ddt_bias, dA, dD (part (B, n_tiles, H, 3)); after the heads, with
/// W(t, s) = Σ_h e^{a_t - a_s} dt_s (dy_t·x_s),
///   dC_t = Σ_{s<=t} W(t, s) B_s + Σ_h e^{a_t} S0ᵀ dy_t,
///   dB_s = Σ_{t>=s} W(t, s) C_t + Σ_h e^{a_last - a_s} dt_s Gᵀ x_s.
/// Each head's S0 and G (P × N) are staged in team scratch when small (ssd_stage_states), and the
/// state terms are small matrix products: S0·C_t (Q × P) for d a, and the heads' shares of the
/// second terms of dC and dB, accumulated over the heads in (Q × N) scratch. No thread walks P·N
/// values alone.
template <class Space, class In, class G, class T, class Mem>
void ssd_backward_main(Space const& space, In const& in,
                       Kokkos::View<T const****, Kokkos::LayoutRight, Mem> const& dy,
                       SsdTiles const& tl,
                       Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& dtv_g,
                       Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& acs_g,
                       Kokkos::View<T*****, Kokkos::LayoutRight, Mem> const& starts,
                       Kokkos::View<T*****, Kokkos::LayoutRight, Mem> const& adj, G const& grads,
                       Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& part) {
  using policy = Kokkos::TeamPolicy<Space>;
  using member = typename policy::member_type;
  using S = SsdScratch<Space, T>;
  using vec = typename S::vec;
  using mat = typename S::mat;
  auto const x = in.x;
  auto const dt = in.dt;
  auto const dt_bias = in.dt_bias;
  auto const A = in.A;
  auto const Bm = in.Bm;
  auto const Cm = in.Cm;
  auto const Dskip = in.Dskip;
  auto const dx = grads.dx;
  auto const ddt = grads.ddt;
  auto const dB = grads.dB;
  auto const dC = grads.dC;
  auto const lengths = in.lengths;
  int const B = x.extent_int(0), L = x.extent_int(1), H = x.extent_int(2), P = x.extent_int(3);
  int const N = Bm.extent_int(2);
  int const Q = tl.tile;
  int const n_tiles = tl.n_tiles;
  std::size_t const bytes = ssd_backward_main_bytes<Space, T>(Q, P, N);
  bool const stage = ssd_stage_states<Space, T>(P, N);
  policy pol(space, B * n_tiles, Kokkos::AUTO);
  pol.set_scratch_size(0, Kokkos::PerTeam(bytes));
  Kokkos::parallel_for(
      "hax::ssm::ssd_backward_main", pol, KOKKOS_LAMBDA(member const& team) {
        int const b = team.league_rank() / n_tiles;
        int const k = team.league_rank() % n_tiles;
        int ts = 0, len = 0, full = 0;
        tl.range(k, present_steps(lengths, b, L), ts, len, full);
        // absent steps: zero gradients
        ssd_zero_steps(team, dx, b, ts + len, ts + full);
        ssd_zero_steps(team, ddt, b, ts + len, ts + full);
        ssd_zero_steps(team, dB, b, ts + len, ts + full);
        ssd_zero_steps(team, dC, b, ts + len, ts + full);
        if (len == 0) {
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, H * 3),
                               [&](int i) { part(b, k, i / 3, i % 3) = T(0); });
          return;
        }
        bool const has_next = k + 1 < n_tiles;
        mat Bs(team.team_scratch(0), Q, ssd_pad(N));   // (Q, N)
        mat Cs(team.team_scratch(0), Q, ssd_pad(N));   // (Q, N)
        mat CB(team.team_scratch(0), Q, ssd_pad(Q));   // (Q, Q) C_t·B_s, s <= t
        mat W(team.team_scratch(0), Q, ssd_pad(Q));    // (Q, Q) Σ_h e^{a_t-a_s} dt_s dy_t·x_s
        mat M(team.team_scratch(0), Q, ssd_pad(Q));    // (Q, Q) CB ⊙ e^{a_t - a_s}, this head
        mat R(team.team_scratch(0), Q, ssd_pad(Q));    // (Q, Q) M ⊙ (dy_t·u_s), this head
        mat xs(team.team_scratch(0), Q, ssd_pad(P));   // (Q, P) x, this head
        mat dys(team.team_scratch(0), Q, ssd_pad(P));  // (Q, P) dy, this head
        mat du(team.team_scratch(0), Q, ssd_pad(P));   // (Q, P) dLoss/d(dt x), this head
        mat s0c(team.team_scratch(0), Q, ssd_pad(P));  // (Q, P) S0 C_t, this head
        mat dCi(team.team_scratch(0), Q, ssd_pad(N));  // (Q, N) Σ_h e^{a_t} S0ᵀ dy_t
        mat dBi(team.team_scratch(0), Q, ssd_pad(N));  // (Q, N) Σ_h e^{a_last-a_t} dt_t Gᵀ x_t
        // This head's state at the tile start and adjoint of its end state, (P, N) each, staged
        // when they fit (ssd_stage_states); else read where they are.
        mat S0(team.team_scratch(0), stage ? P : 0, ssd_pad(N));
        mat Gs(team.team_scratch(0), stage ? P : 0, ssd_pad(N));
        vec dtv(team.team_scratch(0), Q);              // (Q)
        vec acs(team.team_scratch(0), Q);              // (Q)
        vec da(team.team_scratch(0), Q);               // (Q) dLoss/d a_t
        vec xg(team.team_scratch(0), Q);               // (Q) x_t·du_t: the direct part of d dt
        vec dd(team.team_scratch(0), Q);               // (Q) dy_t·x_t, for dD
        vec g(team.team_scratch(0), Q);                // (Q) d dt (before softplus)
        vec ra(team.team_scratch(0), Q);               // (Q) (Σ_{i>=t} d a_i) dt_t, for dA
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len * N), [&](int i) {
          Bs(i / N, i % N) = Bm(b, ts + i / N, i % N);
          Cs(i / N, i % N) = Cm(b, ts + i / N, i % N);
          dCi(i / N, i % N) = T(0);
          dBi(i / N, i % N) = T(0);
        });
        team.team_barrier();
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len * len), [&](int i) {
          int const t = i / len, s = i % len;
          T v = T(0);
          if (s <= t) {
            for (int n = 0; n < N; ++n) {
              v += Cs(t, n) * Bs(s, n);
            }
          }
          CB(t, s) = v;
          W(t, s) = T(0);
        });
        for (int h = 0; h < H; ++h) {
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len), [&](int t) {
            dtv(t) = dtv_g(b, ts + t, h);
            acs(t) = acs_g(b, ts + t, h);
          });
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len * P), [&](int i) {
            xs(i / P, i % P) = x(b, ts + i / P, h, i % P);
            dys(i / P, i % P) = dy(b, ts + i / P, h, i % P);
          });
          if (stage) {
            Kokkos::parallel_for(Kokkos::TeamThreadRange(team, P * N), [&](int i) {
              S0(i / N, i % N) = starts(b, h, k, i / N, i % N);
              Gs(i / N, i % N) = adj(b, h, k, i / N, i % N);
            });
          }
          auto state = [&](int p, int n) { return stage ? S0(p, n) : starts(b, h, k, p, n); };
          auto adjoint = [&](int p, int n) { return stage ? Gs(p, n) : adj(b, h, k, p, n); };
          T ge = T(0);  // <G, S_end>, S_end = S_start of the next tile (G = 0 for the last)
          if (has_next) {
            Kokkos::parallel_reduce(
                Kokkos::TeamThreadRange(team, P * N),
                [&](int i, T& acc) {
                  acc += adj(b, h, k, i / N, i % N) * starts(b, h, k + 1, i / N, i % N);
                },
                ge);
          }
          team.team_barrier();
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len * len), [&](int i) {
            int const t = i / len, s = i % len;
            if (s <= t) {
              T const e = Kokkos::exp(acs(t) - acs(s));
              T dot = T(0);
              for (int p = 0; p < P; ++p) {
                dot += dys(t, p) * xs(s, p);
              }
              T const wh = e * dtv(s) * dot;
              W(t, s) += wh;
              M(t, s) = CB(t, s) * e;
              R(t, s) = CB(t, s) * wh;
            } else {
              M(t, s) = T(0);
              R(t, s) = T(0);
            }
          });
          team.team_barrier();
          T const a_last = acs(len - 1);
          T const skip = Dskip(h);
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len * P), [&](int i) {
            int const s = i / P, p = i % P;
            T v = T(0);
            for (int t = s; t < len; ++t) {
              v += M(t, s) * dys(t, p);
            }
            T gb = T(0);
            T c0 = T(0);
            for (int n = 0; n < N; ++n) {
              gb += adjoint(p, n) * Bs(s, n);
              c0 += state(p, n) * Cs(s, n);
            }
            v += Kokkos::exp(a_last - acs(s)) * gb;
            du(s, p) = v;
            s0c(s, p) = c0;
            dx(b, ts + s, h, p) = dtv(s) * v + skip * dys(s, p);
          });
          // This head's shares of the state terms of dC and dB (independent of the pass above).
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len * N), [&](int i) {
            int const t = i / N, n = i % N;
            T ic = T(0);
            T ib = T(0);
            for (int p = 0; p < P; ++p) {
              ic += dys(t, p) * state(p, n);
              ib += xs(t, p) * adjoint(p, n);
            }
            dCi(t, n) += Kokkos::exp(acs(t)) * ic;
            dBi(t, n) += dtv(t) * Kokkos::exp(a_last - acs(t)) * ib;
          });
          team.team_barrier();
          Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len), [&](int t) {
            T m = T(0);
            for (int s = 0; s <= t; ++s) {
              m += R(t, s);
            }
            T inter = T(0);
            T direct = T(0);
            T skipdot = T(0);
            for (int p = 0; p < P; ++p) {
              inter += dys(t, p) * s0c(t, p);
              direct += xs(t, p) * du(t, p);
              skipdot += dys(t, p) * xs(t, p);
            }
            m += Kokkos::exp(acs(t)) * inter;
            if (t == len - 1) {
              m += ge;
            }
            da(t) = m - dtv(t) * direct;
            xg(t) = direct;
            dd(t) = skipdot;
          });
          team.team_barrier();
          T const Ah = A(h);
          T const bias = dt_bias(h);
          // d a_t reaches dt_j for every j <= t in the tile: a reverse cumsum
          Kokkos::parallel_scan(
              Kokkos::TeamThreadRange(team, len), [&](int i, T& run, bool const final) {
                int const t = len - 1 - i;
                run += da(t);
                if (final) {
                  T const gv = (xg(t) + run * Ah) * sigmoid(dt(b, ts + t, h) + bias);
                  g(t) = gv;
                  ra(t) = run * dtv(t);
                  ddt(b, ts + t, h) = gv;
                }
              });
          team.team_barrier();
          T s_bias = T(0);
          T s_a = T(0);
          T s_d = T(0);
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(team, len), [&](int t, T& acc) { acc += g(t); }, s_bias);
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(team, len), [&](int t, T& acc) { acc += ra(t); }, s_a);
          Kokkos::parallel_reduce(
              Kokkos::TeamThreadRange(team, len), [&](int t, T& acc) { acc += dd(t); }, s_d);
          Kokkos::single(Kokkos::PerTeam(team), [&]() {
            part(b, k, h, 0) = s_bias;
            part(b, k, h, 1) = s_a;
            part(b, k, h, 2) = s_d;
          });
          team.team_barrier();  // the next head overwrites the per-head scratch
        }
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, len * N), [&](int i) {
          int const t = i / N, n = i % N;
          T sc = T(0);
          for (int s = 0; s <= t; ++s) {
            sc += W(t, s) * Bs(s, n);
          }
          T sb = T(0);
          for (int r = t; r < len; ++r) {
            sb += W(r, t) * Cs(r, n);
          }
          dC(b, ts + t, n) = sc + dCi(t, n);
          dB(b, ts + t, n) = sb + dBi(t, n);
        });
      });
}

/// ddt_bias, dA, dD (H) += the sums of the per-(b, tile) parts (B, n_tiles, H, 3): one team per
/// (h, which), a team reduction each; no atomics.
template <class Space, class T, class Mem>
void ssd_backward_params(Space const& space,
                         Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& part,
                         Kokkos::View<T*, Kokkos::LayoutRight, Mem> const& dbias,
                         Kokkos::View<T*, Kokkos::LayoutRight, Mem> const& dA,
                         Kokkos::View<T*, Kokkos::LayoutRight, Mem> const& dD) {
  using policy = Kokkos::TeamPolicy<Space>;
  using member = typename policy::member_type;
  int const B = part.extent_int(0), n_tiles = part.extent_int(1), H = part.extent_int(2);
  Kokkos::parallel_for(
      "hax::ssm::ssd_backward_params", policy(space, 3 * H, Kokkos::AUTO),
      KOKKOS_LAMBDA(member const& team) {
        int const h = team.league_rank() / 3;
        int const which = team.league_rank() % 3;
        T sum = T(0);
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, B * n_tiles),
            [&](int i, T& acc) { acc += part(i / n_tiles, i % n_tiles, h, which); }, sum);
        Kokkos::single(Kokkos::PerTeam(team), [&]() {
          if (which == 0) {
            dbias(h) += sum;
          } else if (which == 1) {
            dA(h) += sum;
          } else {
            dD(h) += sum;
          }
        });
      });
}

}  // namespace hax::ssm::impl
