// SPDX-License-Identifier: MIT
/// \file
/// The Mamba-1 selective scan (mamba_ssm's selective_scan_fn with delta_softplus=True, delta_bias
/// and D, without z): forward with chunk checkpointing, backward that recomputes inside chunks,
/// and a one-token step mode for inference. Derivations: docs/math/selective_scan.md.
///
///   dt_t   = softplus(delta_t + delta_bias)                       (B, L, D)
///   h_t    = exp(dt_t · A) ⊙ h_{t-1} + dt_t · B_t · u_t            per (b, d): an N-vector
///   y_t[d] = Σ_n C_t[n] h_t[d, n] + Dskip[d] · u_t[d]
///
/// A is taken as is (the caller computes A = -exp(A_log) and chains dA into dA_log).
/// Parallelisation: a thread per channel, with the state size N on the vector lanes of team
/// scratch (impl/scan_kernels.hpp) or in the thread's registers (impl/scan_registers.hpp; on CUDA
/// for N <= 16, impl::selective_scan_layout). The forward is chunk-parallel over L when one pass
/// would leave the device idle: B·D threads (registers) fewer than its concurrency, B·D·N lanes
/// (lanes) fewer than a quarter of it. The backward recomputes every chunk's states from its
/// checkpoint; with the register layout it is chunk-parallel (the adjoint carried into every chunk
/// by a pass over the chunks, as the forward carries states). The reductions over d (dB, dC) go
/// through per-channel-group partial sums, those over (b, t) (dA, ddelta_bias, dD) through per-row
/// partial sums, each summed in a fixed order by a final kernel. No atomics.
#pragma once

#include <Kokkos_Core.hpp>
#include <cstddef>
#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>
#include <hax/core/views.hpp>
#include <hax/ssm/impl/common.hpp>
#include <hax/ssm/impl/scan_kernels.hpp>
#include <hax/ssm/impl/scan_registers.hpp>
#include <hax/ssm/policy.hpp>
#include <type_traits>

namespace hax::ssm {

/// Inputs of the selective scan (read only).
template <class T, class MemorySpace>
struct SelectiveScanInputs {
  template <class D>
  using view = Kokkos::View<D, Kokkos::LayoutRight, MemorySpace>;
  view<T const***> u;         // (B, L, D)  input
  view<T const***> delta;     // (B, L, D)  time step before softplus
  view<T const*> delta_bias;  // (D)
  view<T const**> A;          // (D, N)     state matrix (negative for a stable scan)
  view<T const***> Bm;        // (B, L, N)  input-dependent B
  view<T const***> Cm;        // (B, L, N)  input-dependent C
  view<T const*> Dskip;       // (D)        skip connection
  /// (B) optional; empty = every row has L steps. Positions t >= lengths(b) are absent: y there
  /// is 0, dy there is ignored and their gradients are 0, exactly as if row b ended there; a
  /// chunk wholly past it costs only the zeros it writes (and its step of the chunk passes). The
  /// Mamba mixer passes its rows' last real tokens (MambaConfig::skip_padding). Read on the
  /// device (values clamped to [0, L]; no host synchronisation).
  view<int const*> lengths;
};

/// Gradients of the selective scan. Input gradients are written (=); parameter gradients
/// (ddelta_bias, dA, dD) are accumulated (+=).
template <class T, class MemorySpace>
struct SelectiveScanGrads {
  template <class D>
  using view = Kokkos::View<D, Kokkos::LayoutRight, MemorySpace>;
  view<T***> du;         // (B, L, D)  =
  view<T***> ddelta;     // (B, L, D)  =  (with respect to delta before softplus)
  view<T*> ddelta_bias;  // (D)        +=
  view<T**> dA;          // (D, N)     +=
  view<T***> dB;         // (B, L, N)  =
  view<T***> dC;         // (B, L, N)  =
  view<T*> dD;           // (D)        +=
};

/// What the forward keeps for the backward: the state at the start of every chunk.
template <class T, class MemorySpace>
struct SelectiveScanSaved {
  Kokkos::View<T****, Kokkos::LayoutRight, MemorySpace> chunk_states;  // (B, D, n_chunks, N)
  int chunk = 1;                                                       // time steps per chunk
};

namespace impl {

template <class T, class Mem, class Y>
void check_selective_scan(char const* op, SelectiveScanInputs<T, Mem> const& in, Y const& y,
                          int chunk) {
  auto const B = in.u.extent(0), L = in.u.extent(1), D = in.u.extent(2), N = in.A.extent(1);
  core::require(chunk >= 1, op, "chunk must be >= 1, got ", chunk);
  core::require(N >= 1, op, "A ", shape_of(in.A), " must have a state size N >= 1");
  core::require(in.delta.extent(0) == B && in.delta.extent(1) == L && in.delta.extent(2) == D, op,
                "delta ", shape_of(in.delta), " must match u ", shape_of(in.u), " (B, L, D)");
  core::require(in.delta_bias.extent(0) == D, op, "delta_bias ", shape_of(in.delta_bias),
                " must be (D) for u ", shape_of(in.u));
  core::require(in.A.extent(0) == D, op, "A ", shape_of(in.A), " must be (D, N) for u ",
                shape_of(in.u));
  core::require(in.Bm.extent(0) == B && in.Bm.extent(1) == L && in.Bm.extent(2) == N, op, "B ",
                shape_of(in.Bm), " must be (B, L, N) for u ", shape_of(in.u), " and A ",
                shape_of(in.A));
  core::require(in.Cm.extent(0) == B && in.Cm.extent(1) == L && in.Cm.extent(2) == N, op, "C ",
                shape_of(in.Cm), " must be (B, L, N) for u ", shape_of(in.u), " and A ",
                shape_of(in.A));
  core::require(in.Dskip.extent(0) == D, op, "Dskip ", shape_of(in.Dskip), " must be (D) for u ",
                shape_of(in.u));
  core::require(y.extent(0) == B && y.extent(1) == L && y.extent(2) == D, op, "y/dy ", shape_of(y),
                " must match u ", shape_of(in.u), " (B, L, D)");
  core::require(in.lengths.extent(0) == 0 || in.lengths.extent(0) == B, op, "lengths ",
                shape_of(in.lengths), " must be empty or (B) for u ", shape_of(in.u), " (B, L, D)");
}

/// Forward into `saved` (allocated by the caller): in one pass over L per (b, channel block), or
/// chunk-parallel (every chunk from zero, the pass over chunk carries, every chunk again from its
/// start state) when `chunk_parallel`, with the states on the lanes of team scratch or in
/// registers (`layout`). The public forward picks both (selective_scan_forward); tests run every
/// combination.
template <class Space, class T, class Mem>
void selective_scan_forward_run(Space const& space, SelectiveScanInputs<T, Mem> const& in,
                                Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& y,
                                SelectiveScanSaved<T, Mem> const& saved, bool chunk_parallel,
                                impl::ScanLayout layout = impl::ScanLayout::lanes) {
  int const B = in.u.extent_int(0), L = in.u.extent_int(1), D = in.u.extent_int(2);
  int const chunk = saved.chunk;
  if (B == 0 || L == 0 || D == 0) {
    return;
  }
  using view3 = Kokkos::View<T***, Kokkos::LayoutRight, Mem>;
  auto segments = [&](view3 const& sum_dt, ScanSegments mode) {
    if (layout == ScanLayout::lanes) {
      scan_forward_segments(space, in, y, saved.chunk_states, sum_dt, chunk, mode);
      return;
    }
    dispatch_capacity(in.A.extent_int(1), "hax::ssm::selective_scan_forward", [&]<int kCap>() {
      scan_forward_registers<kCap>(space, in, y, saved.chunk_states, sum_dt, chunk, mode);
    });
  };
  if (!chunk_parallel) {
    segments(view3(), ScanSegments::whole);
    return;
  }
  // (B, D, n_chunks) Σ dt per chunk
  auto const sum_dt =
      uninitialized_view<view3>(space, "hax::ssm::scan_sum_dt", B, D, ceil_div(L, chunk));
  segments(sum_dt, ScanSegments::chunk_local);
  scan_chunk_pass(space, in, saved.chunk_states, sum_dt);
  segments(sum_dt, ScanSegments::chunk_final);
}

/// The layout the public forward and backward run on Space for state size N: registers on CUDA
/// when N fits the smallest register capacity (the Mamba default N = 16), lanes otherwise.
/// Measured (docs/perf_ssm.md): on an H100 forward + backward 3.7 ms in registers against 7.6 ms
/// on the lanes; on the 2-core OpenMP host 2.26 s against 1.92 s, so the host keeps the lanes
/// (its one thread per 16 channels needs no chunk parallelism).
template <class Space>
ScanLayout selective_scan_layout(int N) {
  constexpr bool host = Kokkos::SpaceAccessibility<Space, Kokkos::HostSpace>::accessible;
  return !host && scan_registers_backward_supported<Space> && N <= 16 ? ScanLayout::registers
                                                                      : ScanLayout::lanes;
}

/// Backward with the states on the lanes of team scratch (scan_backward_fused) or in registers
/// (the three passes of scan_registers.hpp), then the fixed-order sums of the partials: dB, dC
/// over channel groups, the parameter gradients over rows (b for lanes, (b, chunk) for
/// registers). Shapes are checked by the caller (hax::ssm::selective_scan_backward).
template <class Space, class T, class Mem>
void selective_scan_backward_run(Space const& space, SelectiveScanInputs<T, Mem> const& in,
                                 SelectiveScanSaved<T, Mem> const& saved,
                                 const_view<T const***, Mem> const& dy,
                                 SelectiveScanGrads<T, Mem> const& grads, ScanLayout layout) {
  int const B = in.u.extent_int(0), L = in.u.extent_int(1), D = in.u.extent_int(2);
  int const N = in.A.extent_int(1);
  int const chunk = saved.chunk;
  int const n_chunks = ceil_div(L, chunk);
  auto const& st = saved.chunk_states;
  core::require(st.extent_int(2) == n_chunks, "hax::ssm::selective_scan_backward",
                "saved chunk_states hold ", st.extent_int(2), " chunks, expected ceil(L / chunk) = ",
                n_chunks);
  if (B == 0 || L == 0 || D == 0) {
    return;
  }
  using view3 = Kokkos::View<T***, Kokkos::LayoutRight, Mem>;
  using view4 = Kokkos::View<T****, Kokkos::LayoutRight, Mem>;
  int n_blocks = 0;  // channel blocks of the dB, dC partials
  int rows = 0;      // rows of the parameter partials
  view4 dBp, dCp;    // (n_blocks, B, L, N), summed in block order below
  view3 part_dA;     // (rows, D, N), summed in row order in the last kernel
  view3 part_bd;     // (rows, D, 2): Σ ddelta and Σ dy u
  auto partials = [&](int blocks, int r) {
    n_blocks = blocks;
    rows = r;
    dBp = uninitialized_view<view4>(space, "hax::ssm::scan_part_dB", n_blocks, B, L, N);
    dCp = uninitialized_view<view4>(space, "hax::ssm::scan_part_dC", n_blocks, B, L, N);
    part_dA = uninitialized_view<view3>(space, "hax::ssm::scan_part_dA", rows, D, N);
    part_bd = uninitialized_view<view3>(space, "hax::ssm::scan_part_bd", rows, D, 2);
  };
  if (layout == ScanLayout::lanes) {
    auto const shape = scan_backward_shape<Space>(N);
    partials(ceil_div(D, shape.channels), B);
    scan_backward_fused(space, in, dy, grads, st, dBp, dCp, part_dA, part_bd, chunk, shape);
  } else {
    if constexpr (scan_registers_backward_supported<Space>) {
      partials(ceil_div(D, kScanGroupChannels), B * n_chunks);
      // The adjoint carried into every chunk (B, D, n_chunks, N), and every chunk's Σ dt.
      auto const adj = uninitialized_view<view4>(space, "hax::ssm::scan_adjoint_carry", B, D,
                                                 n_chunks, N);
      auto const sum_dt =
          uninitialized_view<view3>(space, "hax::ssm::scan_sum_dt", B, D, n_chunks);
      dispatch_capacity(N, "hax::ssm::selective_scan_backward", [&]<int kCap>() {
        scan_backward_chunk_adjoints<kCap>(space, in, dy, adj, sum_dt, chunk);
        scan_chunk_pass(space, in, adj, sum_dt, ChunkDirection::backward);
        scan_backward_registers<kCap>(space, in, dy, grads, st, adj, dBp, dCp, part_dA, part_bd,
                                      chunk);
      });
    } else {
      core::require(false, "hax::ssm::selective_scan_backward",
                    "the register layout needs a host space or CUDA");
    }
  }
  auto const lengths = in.lengths;
  if (lengths.extent(0) > 0) {
    // The kernels above skip the absent steps; their du and ddelta are 0.
    auto const du = grads.du;
    auto const ddelta = grads.ddelta;
    Kokkos::parallel_for(
        "hax::ssm::selective_scan_backward_absent",
        Kokkos::MDRangePolicy<Space, core::rank_right<3>>(space, {0, 0, 0}, {B, L, D}),
        KOKKOS_LAMBDA(int b, int t, int d) {
          if (t >= present_steps(lengths, b, L)) {
            du(b, t, d) = T(0);
            ddelta(b, t, d) = T(0);
          }
        });
  }
  auto const dB = grads.dB;
  auto const dC = grads.dC;
  Kokkos::parallel_for(
      "hax::ssm::selective_scan_backward_bc",
      Kokkos::MDRangePolicy<Space, core::rank_right<3>>(space, {0, 0, 0}, {B, L, N}),
      KOKKOS_LAMBDA(int b, int t, int n) {
        T db = T(0);
        T dc = T(0);
        // The partials of absent steps are never written: their dB and dC are 0.
        int const blocks = t < present_steps(lengths, b, L) ? n_blocks : 0;
        for (int blk = 0; blk < blocks; ++blk) {
          db += dBp(blk, b, t, n);
          dc += dCp(blk, b, t, n);
        }
        dB(b, t, n) = db;
        dC(b, t, n) = dc;
      });
  // Reductions over the rows of the per-(row, d) partial sums (each element written by one thread).
  auto const dA = grads.dA;
  auto const dbias = grads.ddelta_bias;
  auto const dD = grads.dD;
  Kokkos::parallel_for(
      "hax::ssm::selective_scan_backward_params",
      Kokkos::MDRangePolicy<Space, core::rank_right<2>>(space, {0, 0}, {D, N}),
      KOKKOS_LAMBDA(int d, int n) {
        T sa = T(0);
        for (int r = 0; r < rows; ++r) {
          sa += part_dA(r, d, n);
        }
        dA(d, n) += sa;
        if (n == 0) {
          T sb = T(0);
          T sd = T(0);
          for (int r = 0; r < rows; ++r) {
            sb += part_bd(r, d, 0);
            sd += part_bd(r, d, 1);
          }
          dbias(d) += sb;
          dD(d) += sd;
        }
      });
}

}  // namespace impl

/// Forward of the selective scan.
///
/// \param space [in] execution-space instance; the op is asynchronous on it.
/// \param in [in] u, delta (B, L, D); delta_bias, Dskip (D); A (D, N); Bm, Cm (B, L, N);
///        optionally lengths (B): the steps after them are absent (y = 0 there).
/// \param y [out] (B, L, D), overwritten.
/// \param checkpoint [in] chunk length between saved states (any value >= 1).
/// \return the chunk-start states (B, D, ceil(L / chunk), N) the backward needs (with `in`).
/// Throws hax::invalid_argument on mismatched shapes, chunk < 1, N < 1 or N > 256.
template <execution_space Space, class T, class Mem>
requires view_accessible_from<Kokkos::View<T*, Mem>, Space> SelectiveScanSaved<T, Mem>
selective_scan_forward(Space const& space, SelectiveScanInputs<T, Mem> const& in,
                       Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& y,
                       ChunkBoundaries checkpoint = ChunkBoundaries{}) {
  char const* op = "hax::ssm::selective_scan_forward";
  impl::check_selective_scan(op, in, y, checkpoint.chunk);
  int const B = in.u.extent_int(0), L = in.u.extent_int(1), D = in.u.extent_int(2);
  int const N = in.A.extent_int(1);
  int const n_chunks = impl::ceil_div(L, checkpoint.chunk);
  SelectiveScanSaved<T, Mem> saved{
      uninitialized_view<Kokkos::View<T****, Kokkos::LayoutRight, Mem>>(
          space, "hax::ssm::chunk_states", B, D, n_chunks, N),
      checkpoint.chunk};
  core::require(N <= impl::kMaxStateSize, op, "state size N = ", N,
                " exceeds the supported maximum ", impl::kMaxStateSize);
  // The layout of impl::selective_scan_layout (registers on CUDA for N <= 16), chunk-parallel
  // where a thread per (b, d) would leave the device idle. Measured on an H200
  // (docs/perf_ssm.md; B = 64, L = 1057, D = 128, N = 16, B·D = 8 192 threads): registers
  // chunk-parallel 1.15 ms, registers one pass 3.23 ms, lanes one pass 2.09 ms, lanes
  // chunk-parallel 3.15 ms. With lanes (N > 16) the rule is the earlier one: chunk-parallel
  // only where B·D·N lanes would fill less than a quarter of the device.
  auto const layout = impl::selective_scan_layout<Space>(N);
  std::size_t const threads = std::size_t(B) * std::size_t(D) *
                              (layout == impl::ScanLayout::registers ? 1 : std::size_t(N));
  std::size_t const device = static_cast<std::size_t>(space.concurrency());
  bool const chunk_parallel =
      n_chunks > 1 && threads < (layout == impl::ScanLayout::registers ? device : device / 4);
  impl::selective_scan_forward_run(space, in, y, saved, chunk_parallel, layout);
  return saved;
}

/// Overload on the default instance of y's execution space.
template <class T, class Mem>
SelectiveScanSaved<T, Mem> selective_scan_forward(
    SelectiveScanInputs<T, Mem> const& in, Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& y,
    ChunkBoundaries checkpoint = ChunkBoundaries{}) {
  using Space = typename Kokkos::View<T***, Kokkos::LayoutRight, Mem>::execution_space;
  return selective_scan_forward(Space{}, in, y, checkpoint);
}

/// Backward of the selective scan. Every chunk's states are recomputed from its checkpoint, so no
/// (B, L, D, N) tensor exists. For N <= 16 on CUDA it runs chunk-parallel with the
/// states in registers (impl/scan_registers.hpp: the adjoint carried into every chunk first, then
/// every chunk swept in reverse); otherwise one kernel walks the chunks in reverse with the states
/// on the lanes of team scratch. Workspaces: partial sums of dB and dC per group of channels,
/// (D / channels per group, B, L, N) each, and of the parameter gradients.
///
/// \param in [in] the forward's inputs; \param saved [in] what the forward returned.
/// \param dy [in] (B, L, D) gradient of the loss with respect to y.
/// \param grads [out] du, ddelta, dB, dC written; ddelta_bias, dA, dD accumulated (+=).
/// Asynchronous on `space`; 5 kernels (registers) or 3 (lanes), one more with lengths (the
/// zeros of du and ddelta at the absent steps).
template <execution_space Space, class T, class Mem>
requires view_accessible_from<Kokkos::View<T*, Mem>, Space>
void selective_scan_backward(Space const& space, SelectiveScanInputs<T, Mem> const& in,
                             SelectiveScanSaved<T, Mem> const& saved,
                             impl::const_view<T const***, Mem> const& dy,
                             SelectiveScanGrads<T, Mem> const& grads) {
  char const* op = "hax::ssm::selective_scan_backward";
  impl::check_selective_scan(op, in, dy, saved.chunk);
  int const B = in.u.extent_int(0), L = in.u.extent_int(1), D = in.u.extent_int(2);
  int const N = in.A.extent_int(1);
  int const chunk = saved.chunk;
  int const n_chunks = impl::ceil_div(L, chunk);
  auto const& st = saved.chunk_states;
  core::require(st.extent_int(0) == B && st.extent_int(1) == D && st.extent_int(2) == n_chunks &&
                    st.extent_int(3) == N,
                op, "saved chunk_states ", impl::shape_of(st), " do not match u ",
                impl::shape_of(in.u), ", A ", impl::shape_of(in.A), " and chunk ", chunk);
  auto same3 = [&](auto const& v, auto const& ref, char const* name) {
    core::require(v.extent(0) == ref.extent(0) && v.extent(1) == ref.extent(1) &&
                      v.extent(2) == ref.extent(2),
                  op, name, " ", impl::shape_of(v), " must match ", impl::shape_of(ref));
  };
  same3(grads.du, in.u, "du");
  same3(grads.ddelta, in.u, "ddelta");
  same3(grads.dB, in.Bm, "dB");
  same3(grads.dC, in.Cm, "dC");
  core::require(grads.ddelta_bias.extent(0) == in.delta_bias.extent(0) &&
                    grads.dD.extent(0) == in.Dskip.extent(0) &&
                    grads.dA.extent(0) == in.A.extent(0) && grads.dA.extent(1) == in.A.extent(1),
                op, "ddelta_bias ", impl::shape_of(grads.ddelta_bias), ", dA ",
                impl::shape_of(grads.dA), ", dD ", impl::shape_of(grads.dD),
                " must be (D), (D, N), (D) for A ", impl::shape_of(in.A));
  core::require(N <= impl::kMaxStateSize, op, "state size N = ", N,
                " exceeds the supported maximum ", impl::kMaxStateSize);
  impl::selective_scan_backward_run(space, in, saved, dy, grads,
                                    impl::selective_scan_layout<Space>(N));
}

/// Overload on the default instance of du's execution space.
template <class T, class Mem>
void selective_scan_backward(SelectiveScanInputs<T, Mem> const& in,
                             SelectiveScanSaved<T, Mem> const& saved,
                             impl::const_view<T const***, Mem> const& dy,
                             SelectiveScanGrads<T, Mem> const& grads) {
  using Space = typename Kokkos::View<T***, Kokkos::LayoutRight, Mem>::execution_space;
  selective_scan_backward(Space{}, in, saved, dy, grads);
}

/// One token of the selective scan (recurrent inference): state ← exp(dt A) ⊙ state + dt B u,
/// y = C · state + Dskip ⊙ u, with dt = softplus(delta + delta_bias). Gives the same y_t as the
/// parallel forward fed with the same tokens from a zero state.
///
/// \param state [in,out] (B, D, N) carried between calls (start from zeros).
/// \param u, delta [in] (B, D) this token's input and time step (before softplus).
/// \param delta_bias, Dskip [in] (D); \param A [in] (D, N); \param Bm, Cm [in] (B, N).
/// \param y [out] (B, D). Asynchronous on `space`.
template <execution_space Space, class T, class Mem>
requires view_accessible_from<Kokkos::View<T*, Mem>, Space>
void selective_scan_step(
    Space const& space, Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& state,
    impl::const_view<T const**, Mem> const& u, impl::const_view<T const**, Mem> const& delta,
    impl::const_view<T const*, Mem> const& delta_bias, impl::const_view<T const**, Mem> const& A,
    impl::const_view<T const**, Mem> const& Bm, impl::const_view<T const**, Mem> const& Cm,
    impl::const_view<T const*, Mem> const& Dskip,
    Kokkos::View<T**, Kokkos::LayoutRight, Mem> const& y) {
  char const* op = "hax::ssm::selective_scan_step";
  int const B = state.extent_int(0), D = state.extent_int(1), N = state.extent_int(2);
  core::require(u.extent_int(0) == B && u.extent_int(1) == D && delta.extent_int(0) == B &&
                    delta.extent_int(1) == D && y.extent_int(0) == B && y.extent_int(1) == D,
                op, "u ", impl::shape_of(u), ", delta ", impl::shape_of(delta), " and y ",
                impl::shape_of(y), " must be (B, D) for state ", impl::shape_of(state),
                " (B, D, N)");
  core::require(delta_bias.extent_int(0) == D && Dskip.extent_int(0) == D && A.extent_int(0) == D &&
                    A.extent_int(1) == N,
                op, "delta_bias ", impl::shape_of(delta_bias), ", Dskip ", impl::shape_of(Dskip),
                ", A ", impl::shape_of(A), " must be (D), (D), (D, N) for state ",
                impl::shape_of(state));
  core::require(Bm.extent_int(0) == B && Bm.extent_int(1) == N && Cm.extent_int(0) == B &&
                    Cm.extent_int(1) == N,
                op, "B ", impl::shape_of(Bm), " and C ", impl::shape_of(Cm),
                " must be (B, N) for state ", impl::shape_of(state));
  Kokkos::parallel_for(
      "hax::ssm::selective_scan_step",
      Kokkos::MDRangePolicy<Space, core::rank_right<2>>(space, {0, 0}, {B, D}),
      KOKKOS_LAMBDA(int b, int d) {
        T const dt = impl::softplus(delta(b, d) + delta_bias(d));
        T const ut = u(b, d);
        T acc = T(0);
        for (int n = 0; n < N; ++n) {
          T const h = Kokkos::exp(dt * A(d, n)) * state(b, d, n) + dt * Bm(b, n) * ut;
          state(b, d, n) = h;
          acc += Cm(b, n) * h;
        }
        y(b, d) = acc + Dskip(d) * ut;
      });
}

/// Overload on the default instance of y's execution space.
template <class T, class Mem>
void selective_scan_step(Kokkos::View<T***, Kokkos::LayoutRight, Mem> const& state,
                         impl::const_view<T const**, Mem> const& u,
                         impl::const_view<T const**, Mem> const& delta,
                         impl::const_view<T const*, Mem> const& delta_bias,
                         impl::const_view<T const**, Mem> const& A,
                         impl::const_view<T const**, Mem> const& Bm,
                         impl::const_view<T const**, Mem> const& Cm,
                         impl::const_view<T const*, Mem> const& Dskip,
                         Kokkos::View<T**, Kokkos::LayoutRight, Mem> const& y) {
  using Space = typename Kokkos::View<T**, Kokkos::LayoutRight, Mem>::execution_space;
  selective_scan_step(Space{}, state, u, delta, delta_bias, A, Bm, Cm, Dskip, y);
}

}  // namespace hax::ssm
