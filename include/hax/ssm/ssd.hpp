// SPDX-License-Identifier: MIT
/// \file
/// The Mamba-2 state-space-dual (SSD) core, as mamba_chunk_scan_combined with D, dt_bias,
/// dt_softplus=True, one group of B/C shared by all heads and z=None: the chunked algorithm
/// (quadratic causal form inside chunks of Q steps, a recurrence over chunk states across them),
/// its backward, and a one-token step mode. Derivations: docs/math/ssd.md.
///
///   dt_t  = softplus(dt_t + dt_bias)                         (B, L, H)
///   S_t   = exp(dt_t A_h) S_{t-1} + dt_t x_t ⊗ B_t            per (b, h): a (P, N) state
///   y_t   = S_t C_t + Dskip_h x_t                             (P)
///
/// Inside a chunk with log-decay cumsum a_t = Σ_{s<=t in chunk} dt_s A_h:
///   y_t = Σ_{s<=t} (C_t·B_s) exp(a_t - a_s) dt_s x_s  +  exp(a_t) S_start C_t  +  Dskip x_t
/// and S_end = exp(a_last) S_start + Σ_s exp(a_last - a_s) dt_s x_s ⊗ B_s.
/// Saved: S_start of every chunk, (B, H, ceil(L / Q), P, N).
///
/// Kernels (impl/ssd_kernels.hpp): the chunk Q is the checkpoint granularity; inside each chunk
/// the kernels work on tiles of at most 64 steps (as many as fit 44 KiB of team scratch, evened out
/// over the chunk), one team per (b, tile) with C·Bᵀ shared by the heads, so any Q gives the same
/// result to rounding and costs about the same. Workspaces: (B, L, H) for the decays and
/// (B, H, n_tiles, P, N) for the tile states (two in the backward); nothing of size L² or L·P·N.
#pragma once

#include <Kokkos_Core.hpp>
#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>
#include <hax/core/scratch.hpp>
#include <hax/core/views.hpp>
#include <hax/ssm/impl/common.hpp>
#include <hax/ssm/impl/ssd_kernels.hpp>
#include <hax/ssm/policy.hpp>
#include <string>

namespace hax::ssm {

/// Inputs of SSD (read only).
template <class T, class MemorySpace>
struct SsdInputs {
  template <class D>
  using view = Kokkos::View<D, Kokkos::LayoutRight, MemorySpace>;
  view<T const****> x;     // (B, L, H, P)
  view<T const***> dt;     // (B, L, H)  before softplus
  view<T const*> dt_bias;  // (H)
  view<T const*> A;        // (H)        one (negative) scalar per head
  view<T const***> Bm;     // (B, L, N)  one group shared by the heads
  view<T const***> Cm;     // (B, L, N)
  view<T const*> Dskip;    // (H)
  /// (B) optional; empty = every row has L steps. Positions t >= lengths(b) are absent: y there
  /// is 0, dy there is ignored and their gradients are 0, exactly as if row b ended there; a tile
  /// wholly past it costs only the zeros it writes (and its step of the tile passes). The Mamba-2
  /// mixer passes its rows' last real tokens (Mamba2Config::skip_padding). Read on the device
  /// (values clamped to [0, L]; no host synchronisation).
  view<int const*> lengths;
};

/// Gradients of SSD: input gradients written (=), parameter gradients (ddt_bias, dA, dD)
/// accumulated (+=).
template <class T, class MemorySpace>
struct SsdGrads {
  template <class D>
  using view = Kokkos::View<D, Kokkos::LayoutRight, MemorySpace>;
  view<T****> dx;     // (B, L, H, P) =
  view<T***> ddt;     // (B, L, H)    =  (with respect to dt before softplus)
  view<T*> ddt_bias;  // (H)          +=
  view<T*> dA;        // (H)          +=
  view<T***> dB;      // (B, L, N)    =
  view<T***> dC;      // (B, L, N)    =
  view<T*> dD;        // (H)          +=
};

/// What the SSD forward keeps for the backward: the state at the start of every chunk.
template <class T, class MemorySpace>
struct SsdSaved {
  Kokkos::View<T*****, Kokkos::LayoutRight, MemorySpace> chunk_states;  // (B, H, n_chunks, P, N)
  int chunk = 1;                                                        // Q
};

namespace impl {

template <class T, class Mem, class Y>
void check_ssd(char const* op, SsdInputs<T, Mem> const& in, Y const& y, int chunk) {
  auto const& x = in.x;
  auto const B = x.extent(0), L = x.extent(1), H = x.extent(2), P = x.extent(3);
  auto const N = in.Bm.extent(2);
  core::require(chunk >= 1, op, "chunk must be >= 1, got ", chunk);
  core::require(in.dt.extent(0) == B && in.dt.extent(1) == L && in.dt.extent(2) == H, op, "dt ",
                shape_of(in.dt), " must be (B, L, H) for x ", shape_of(x), " (B, L, H, P)");
  core::require(in.dt_bias.extent(0) == H && in.A.extent(0) == H && in.Dskip.extent(0) == H, op,
                "dt_bias ", shape_of(in.dt_bias), ", A ", shape_of(in.A), " and Dskip ",
                shape_of(in.Dskip), " must be (H) for x ", shape_of(x), " (B, L, H, P)");
  core::require(in.Bm.extent(0) == B && in.Bm.extent(1) == L, op, "B ", shape_of(in.Bm),
                " must be (B, L, N) for x ", shape_of(x), " (B, L, H, P)");
  core::require(in.Cm.extent(0) == B && in.Cm.extent(1) == L && in.Cm.extent(2) == N, op, "C ",
                shape_of(in.Cm), " must match B ", shape_of(in.Bm), " (B, L, N)");
  core::require(y.extent(0) == B && y.extent(1) == L && y.extent(2) == H && y.extent(3) == P, op,
                "y/dy ", shape_of(y), " must match x ", shape_of(x), " (B, L, H, P)");
  core::require(in.lengths.extent(0) == 0 || in.lengths.extent(0) == B, op, "lengths ",
                shape_of(in.lengths), " must be empty or (B) for x ", shape_of(x), " (B, L, H, P)");
}

}  // namespace impl

/// Forward of SSD by the chunked state-space-dual algorithm.
///
/// \param space [in] execution-space instance; the op is asynchronous on it.
/// \param in [in] x (B, L, H, P); dt (B, L, H); dt_bias, A, Dskip (H); Bm, Cm (B, L, N).
/// \param y [out] (B, L, H, P), overwritten.
/// \param checkpoint [in] the chunk size Q (any value >= 1; the reference uses 256).
/// \return the chunk-start states (B, H, ceil(L / Q), P, N) for the backward.
/// Throws hax::invalid_argument on mismatched shapes or chunk < 1.
template <execution_space Space, class T, class Mem>
requires view_accessible_from<Kokkos::View<T*, Mem>, Space> SsdSaved<T, Mem> ssd_forward(
    Space const& space, SsdInputs<T, Mem> const& in,
    Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& y,
    ChunkBoundaries checkpoint = ChunkBoundaries{256}) {
  impl::check_ssd("hax::ssm::ssd_forward", in, y, checkpoint.chunk);
  int const chunk = checkpoint.chunk;
  auto const& x = in.x;
  int const B = x.extent_int(0), L = x.extent_int(1), H = x.extent_int(2), P = x.extent_int(3);
  int const N = in.Bm.extent_int(2);
  int const n_chunks = impl::ceil_div(L, chunk);
  using view3 = Kokkos::View<T***, Kokkos::LayoutRight, Mem>;
  using view5 = Kokkos::View<T*****, Kokkos::LayoutRight, Mem>;
  SsdSaved<T, Mem> saved{
      uninitialized_view<view5>(space, "hax::ssm::ssd_chunk_states", B, H, n_chunks, P, N), chunk};
  if (B == 0 || L == 0 || H == 0) {
    return saved;
  }
  auto const tl = impl::ssd_make_tiles("hax::ssm::ssd_forward", L, chunk, [&](int q) {
    return impl::ssd_forward_tiles_bytes<Space, T>(q, P, N);
  });
  // acs (B, L, H) within-tile cumsum; decay (B, H, n_tiles) e^{a_last}; tstates (B,H,nt,P,N):
  // temporaries of this call (the backward recomputes its own), freed with the frame.
  core::ScratchFrame<Mem> frame;
  auto const acs = uninitialized_view<view3>(space, "hax::ssm::ssd_acs", B, L, H);
  auto const decay = uninitialized_view<view3>(space, "hax::ssm::ssd_decay", B, H, tl.n_tiles);
  auto const tstates =
      uninitialized_view<view5>(space, "hax::ssm::ssd_tile_states", B, H, tl.n_tiles, P, N);
  // Intra-tile output and each tile's own end state, the recurrence over tiles (which also
  // writes the chunk checkpoints), then the inter-tile output.
  impl::ssd_forward_tiles(space, in, tl, y, acs, decay, tstates);
  impl::ssd_tile_pass(space, tl, decay, tstates, saved.chunk_states, false, true);
  impl::ssd_forward_inter(space, in, tl, acs, tstates, y);
  return saved;
}

/// Overload on the default instance of y's execution space.
template <class T, class Mem>
SsdSaved<T, Mem> ssd_forward(SsdInputs<T, Mem> const& in,
                             Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& y,
                             ChunkBoundaries checkpoint = ChunkBoundaries{256}) {
  using Space = typename Kokkos::View<T****, Kokkos::LayoutRight, Mem>::execution_space;
  return ssd_forward(Space{}, in, y, checkpoint);
}

/// Backward of SSD (derivation in docs/math/ssd.md): recomputes the decays, C·Bᵀ and the tile
/// states from the saved chunk checkpoints, forms the adjoints G of the tile-end states by a
/// reverse recurrence over tiles, then every gradient from tile-local quadratic forms in team
/// scratch. Workspaces (B, L, H) ×2, (B, H, n_tiles, P, N) ×2, (B, n_tiles, H, 3).
///
/// \param in [in] the forward's inputs; \param saved [in] what ssd_forward returned.
/// \param dy [in] (B, L, H, P).
/// \param grads [out] dx, ddt, dB, dC written; ddt_bias, dA, dD accumulated (+=).
/// Asynchronous on `space`; 6 kernels whatever L is.
template <execution_space Space, class T, class Mem>
requires view_accessible_from<Kokkos::View<T*, Mem>, Space>
void ssd_backward(Space const& space, SsdInputs<T, Mem> const& in, SsdSaved<T, Mem> const& saved,
                  impl::const_view<T const****, Mem> const& dy, SsdGrads<T, Mem> const& grads) {
  char const* op = "hax::ssm::ssd_backward";
  int const chunk = saved.chunk;
  impl::check_ssd(op, in, dy, chunk);
  auto const& x = in.x;
  auto const& Bm = in.Bm;
  int const B = x.extent_int(0), L = x.extent_int(1), H = x.extent_int(2), P = x.extent_int(3);
  int const N = Bm.extent_int(2);
  int const n_chunks = impl::ceil_div(L, chunk);
  auto const states = saved.chunk_states;
  core::require(states.extent_int(0) == B && states.extent_int(1) == H &&
                    states.extent_int(2) == n_chunks && states.extent_int(3) == P &&
                    states.extent_int(4) == N,
                op, "saved chunk_states ", impl::shape_of(states), " do not match x ",
                impl::shape_of(x), ", B ", impl::shape_of(Bm), " and chunk ", chunk);
  core::require(grads.dx.extent(0) == x.extent(0) && grads.dx.extent(1) == x.extent(1) &&
                    grads.dx.extent(2) == x.extent(2) && grads.dx.extent(3) == x.extent(3) &&
                    grads.ddt.extent(0) == in.dt.extent(0) &&
                    grads.ddt.extent(1) == in.dt.extent(1) &&
                    grads.ddt.extent(2) == in.dt.extent(2),
                op, "dx ", impl::shape_of(grads.dx), " and ddt ", impl::shape_of(grads.ddt),
                " must match x ", impl::shape_of(x), " and dt ", impl::shape_of(in.dt));
  core::require(grads.dB.extent(0) == Bm.extent(0) && grads.dB.extent(1) == Bm.extent(1) &&
                    grads.dB.extent(2) == Bm.extent(2) && grads.dC.extent(0) == Bm.extent(0) &&
                    grads.dC.extent(1) == Bm.extent(1) && grads.dC.extent(2) == Bm.extent(2),
                op, "dB ", impl::shape_of(grads.dB), " and dC ", impl::shape_of(grads.dC),
                " must match B ", impl::shape_of(Bm));
  core::require(grads.ddt_bias.extent_int(0) == H && grads.dA.extent_int(0) == H &&
                    grads.dD.extent_int(0) == H,
                op, "ddt_bias ", impl::shape_of(grads.ddt_bias), ", dA ", impl::shape_of(grads.dA),
                ", dD ", impl::shape_of(grads.dD), " must be (H) for x ", impl::shape_of(x));
  if (B == 0 || L == 0 || H == 0) {
    return;
  }
  using view3 = Kokkos::View<T***, Kokkos::LayoutRight, Mem>;
  using view4 = Kokkos::View<T****, Kokkos::LayoutRight, Mem>;
  using view5 = Kokkos::View<T*****, Kokkos::LayoutRight, Mem>;
  auto const tl = impl::ssd_make_tiles(
      op, L, chunk, [&](int q) { return impl::ssd_backward_main_bytes<Space, T>(q, P, N); });
  int const nt = tl.n_tiles;
  // dtv (B, L, H) softplus(dt + dt_bias); acs (B, L, H) within-tile cumsum; decay (B, H, nt)
  // e^{a_last}; starts, adj (B, H, nt, P, N); part (B, nt, H, 3)
  auto const dtv = uninitialized_view<view3>(space, "hax::ssm::ssd_dt", B, L, H);
  auto const acs = uninitialized_view<view3>(space, "hax::ssm::ssd_acs", B, L, H);
  auto const decay = uninitialized_view<view3>(space, "hax::ssm::ssd_decay", B, H, nt);
  auto const starts = uninitialized_view<view5>(space, "hax::ssm::ssd_tile_states", B, H, nt, P, N);
  auto const adj = uninitialized_view<view5>(space, "hax::ssm::ssd_tile_adjoints", B, H, nt, P, N);
  auto const part = uninitialized_view<view4>(space, "hax::ssm::ssd_part", B, nt, H, 3);
  // Own states and adjoints per tile; the states from the saved chunk checkpoints forwards, the
  // adjoints of the tile-end states backwards; then every gradient per tile.
  impl::ssd_backward_tiles(space, in, dy, tl, dtv, acs, decay, starts, adj);
  impl::ssd_tile_pass(space, tl, decay, starts, states, false, false);
  impl::ssd_tile_pass(space, tl, decay, adj, states, true, false);
  impl::ssd_backward_main(space, in, dy, tl, dtv, acs, starts, adj, grads, part);
  impl::ssd_backward_params(space, part, grads.ddt_bias, grads.dA, grads.dD);
}

/// Overload on the default instance of dx's execution space.
template <class T, class Mem>
void ssd_backward(SsdInputs<T, Mem> const& in, SsdSaved<T, Mem> const& saved,
                  impl::const_view<T const****, Mem> const& dy, SsdGrads<T, Mem> const& grads) {
  using Space = typename Kokkos::View<T****, Kokkos::LayoutRight, Mem>::execution_space;
  ssd_backward(Space{}, in, saved, dy, grads);
}

/// One token of SSD (recurrent inference): S ← exp(dt A_h) S + dt x ⊗ B, y = S C + Dskip_h x with
/// dt = softplus(dt + dt_bias). Gives the same y_t as ssd_forward from a zero state.
///
/// \param state [in,out] (B, H, P, N) carried between calls (start from zeros).
/// \param x [in] (B, H, P); \param dt [in] (B, H) before softplus; \param dt_bias, A, Dskip [in]
/// (H); \param Bm, Cm [in] (B, N); \param y [out] (B, H, P). Asynchronous on `space`.
template <execution_space Space, class T, class Mem>
requires view_accessible_from<Kokkos::View<T*, Mem>, Space>
void ssd_step(Space const& space, Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& state,
              impl::const_view<T const***, Mem> const& x,
              impl::const_view<T const**, Mem> const& dt,
              impl::const_view<T const*, Mem> const& dt_bias,
              impl::const_view<T const*, Mem> const& A, impl::const_view<T const**, Mem> const& Bm,
              impl::const_view<T const**, Mem> const& Cm,
              impl::const_view<T const*, Mem> const& Dskip,
              Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& y) {
  char const* op = "hax::ssm::ssd_step";
  int const B = state.extent_int(0), H = state.extent_int(1), P = state.extent_int(2);
  int const N = state.extent_int(3);
  core::require(x.extent_int(0) == B && x.extent_int(1) == H && x.extent_int(2) == P &&
                    y.extent_int(0) == B && y.extent_int(1) == H && y.extent_int(2) == P &&
                    dt.extent_int(0) == B && dt.extent_int(1) == H,
                op, "x ", impl::shape_of(x), ", y ", impl::shape_of(y), " (B, H, P) and dt ",
                impl::shape_of(dt), " (B, H) must match state ", impl::shape_of(state),
                " (B, H, P, N)");
  core::require(dt_bias.extent_int(0) == H && A.extent_int(0) == H && Dskip.extent_int(0) == H &&
                    Bm.extent_int(0) == B && Bm.extent_int(1) == N && Cm.extent_int(0) == B &&
                    Cm.extent_int(1) == N,
                op, "dt_bias ", impl::shape_of(dt_bias), ", A ", impl::shape_of(A), ", Dskip ",
                impl::shape_of(Dskip), " (H) and B ", impl::shape_of(Bm), ", C ",
                impl::shape_of(Cm), " (B, N) must match state ", impl::shape_of(state));
  Kokkos::parallel_for(
      "hax::ssm::ssd_step",
      Kokkos::MDRangePolicy<Space, core::rank_right<3>>(space, {0, 0, 0}, {B, H, P}),
      KOKKOS_LAMBDA(int b, int h, int p) {
        T const v = impl::softplus(dt(b, h) + dt_bias(h));
        T const decay = Kokkos::exp(v * A(h));
        T const xv = x(b, h, p);
        T acc = T(0);
        for (int n = 0; n < N; ++n) {
          T const s = decay * state(b, h, p, n) + v * xv * Bm(b, n);
          state(b, h, p, n) = s;
          acc += s * Cm(b, n);
        }
        y(b, h, p) = acc + Dskip(h) * xv;
      });
}

/// Overload on the default instance of y's execution space.
template <class T, class Mem>
void ssd_step(Kokkos::View<T****, Kokkos::LayoutRight, Mem> const& state,
              impl::const_view<T const***, Mem> const& x,
              impl::const_view<T const**, Mem> const& dt,
              impl::const_view<T const*, Mem> const& dt_bias,
              impl::const_view<T const*, Mem> const& A, impl::const_view<T const**, Mem> const& Bm,
              impl::const_view<T const**, Mem> const& Cm,
              impl::const_view<T const*, Mem> const& Dskip,
              Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& y) {
  using Space = typename Kokkos::View<T***, Kokkos::LayoutRight, Mem>::execution_space;
  ssd_step(Space{}, state, x, dt, dt_bias, A, Bm, Cm, Dskip, y);
}

}  // namespace hax::ssm
