// SPDX-License-Identifier: MIT
/// \file
/// RMSNorm over the last dimension, y = x / sqrt(mean(x²) + eps) ⊙ w, and the gated RMSNorm of
/// Mamba2 (RMSNormGated with norm_before_gate = False and one group): y = RMSNorm(x ⊙ SiLU(z)) ⊙ w.
/// Forward and hand-written backward over (B, L, D) LayoutRight activations; the forward saves
/// rstd (B, L) = 1 / sqrt(mean(u²) + eps) for the backward. Derivation: docs/math/rms_norm.md.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstddef>

#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>
#include <hax/nn/activation.hpp>
#include <hax/nn/impl/shape.hpp>

namespace hax::nn {

/// PyTorch's and Mamba's default epsilon of RMSNorm.
inline constexpr double kRmsNormEps = 1e-5;

namespace impl {

// Inside KOKKOS_LAMBDA the compile-time flags are tested with a plain `if`, not `if constexpr`:
// nvcc rejects an extended lambda that first captures a View inside an `if constexpr` branch.
// The flag is a constant, so the dead branch is still folded away; both branches compile for
// every instantiation.

/// Argument checks shared by the forward ops. `z` is checked only when kGated.
template <bool kGated, class X, class Z, class W, class Y, class R>
void rms_norm_check_forward(char const* op, X const& x, Z const& z, W const& w,
                            char const* y_name, Y const& y, R const& rstd, double eps) {
  if constexpr (kGated) {
    require_same_shape(op, "x", x, "z", z);
  }
  require_same_shape(op, "x", x, y_name, y);
  core::require(w.extent(0) == x.extent(2), op, "w ", shape_of(w),
                " needs one entry per channel of x ", shape_of(x));
  core::require(rstd.extent(0) == x.extent(0) && rstd.extent(1) == x.extent(1), op, "rstd ",
                shape_of(rstd), " must be (B, L) of x ", shape_of(x));
  core::require(x.extent(2) > 0, op, "x ", shape_of(x), " has no channels to normalise");
  core::require(eps > 0.0, op, "eps (", eps, ") must be positive");
}

/// One row (b, t) per thread of a core::row_teams team, the D channels on its vector lanes: a
/// lane reduction of Σ u² (u = x, or x ⊙ silu(z) when kGated), then a second sweep writes y. On
/// GPUs a row is one warp, so reads and writes are coalesced and no team barrier is needed; on
/// host backends both sweeps are plain loops over a row that stays in cache.
template <bool kGated, class Space, class X, class Z, class W, class Y, class R>
void rms_norm_forward_kernel(Space const& space, X const& x, Z const& z, W const& w, Y const& y,
                             R const& rstd, double eps) {
  using value_type = typename Y::non_const_value_type;
  using member = typename Kokkos::TeamPolicy<Space>::member_type;
  int const L = x.extent_int(1);
  int const D = x.extent_int(2);
  int const rows = x.extent_int(0) * L;
  value_type const eps_t = static_cast<value_type>(eps);
  value_type const inv_d = value_type(1) / static_cast<value_type>(D);
  int const league = (rows + core::kRowsPerTeam - 1) / core::kRowsPerTeam;
  Kokkos::parallel_for(
      kGated ? "hax::nn::gated_rms_norm_forward" : "hax::nn::rms_norm_forward",
      core::row_teams(space, league), KOKKOS_LAMBDA(member const& team) {
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, core::kRowsPerTeam), [&](int r) {
          int const row = team.league_rank() * core::kRowsPerTeam + r;
          if (row >= rows) { return; }
          int const b = row / L;
          int const t = row % L;
          auto input = [&](int d) {
            if (kGated) {
              return static_cast<value_type>(x(b, t, d) * silu(z(b, t, d)));
            } else {
              return static_cast<value_type>(x(b, t, d));
            }
          };
          value_type sum_sq = 0;
          Kokkos::parallel_reduce(
              Kokkos::ThreadVectorRange(team, D),
              [&](int d, value_type& acc) {
                value_type const u = input(d);
                acc += u * u;
              },
              sum_sq);
          value_type const rr = value_type(1) / Kokkos::sqrt(sum_sq * inv_d + eps_t);
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, D),
                               [&](int d) { y(b, t, d) = input(d) * rr * w(d); });
          Kokkos::single(Kokkos::PerThread(team), [&]() { rstd(b, t) = rr; });
        });
      });
}

/// Rows of the backward per team: enough that dw's partial sums reach dw with few atomics
/// (one per channel and team), few enough that B·L = 67 648 rows still give about 1 000 teams.
inline constexpr int kNormBackwardRowsPerTeam = 64;

/// Bytes of dw partials (kRowsPerTeam rows of D values, alignment slack not counted) above which
/// the backward moves them to level-1 (global) scratch: up to D = 1 024 in float (512 in double)
/// they stay in GPU shared memory.
inline constexpr std::size_t kNormScratchLevel0Bytes = 32 * 1024;

/// One chunk of kNormBackwardRowsPerTeam rows per core::row_teams team; its threads take every
/// kRowsPerTeam-th row of the chunk and the D channels go on the vector lanes. Per row: g = dy ⊙ w,
/// û = u·r, c = mean(g ⊙ û) by a lane reduction, then du = r (g − û c). Each thread keeps the
/// partial sums Σ dy ⊙ û of its rows in its own row of team scratch (no conflicts); after a
/// barrier the team adds them up per channel and reaches dw with one atomic per channel.
template <bool kGated, class Space, class DY, class X, class Z, class W, class R, class DX,
          class DZ, class DW>
void rms_norm_backward_kernel(Space const& space, DY const& dy, X const& x, Z const& z,
                              W const& w, R const& rstd, DX const& dx, DZ const& dz,
                              DW const& dw) {
  using value_type = typename DX::non_const_value_type;
  using member = typename Kokkos::TeamPolicy<Space>::member_type;
  using scratch_view = Kokkos::View<value_type**, Kokkos::LayoutRight, typename Space::scratch_memory_space,
                                    Kokkos::MemoryTraits<Kokkos::Unmanaged>>;  // (kRowsPerTeam, D)
  constexpr int kRows = core::kRowsPerTeam;
  constexpr int kChunk = kNormBackwardRowsPerTeam;
  int const L = x.extent_int(1);
  int const D = x.extent_int(2);
  int const rows = x.extent_int(0) * L;
  int const league = (rows + kChunk - 1) / kChunk;
  value_type const inv_d = value_type(1) / static_cast<value_type>(D);
  std::size_t const scratch_bytes = scratch_view::shmem_size(kRows, D);
  int const level =
      static_cast<std::size_t>(kRows) * D * sizeof(value_type) <= kNormScratchLevel0Bytes ? 0 : 1;
  Kokkos::parallel_for(
      kGated ? "hax::nn::gated_rms_norm_backward" : "hax::nn::rms_norm_backward",
      core::row_teams(space, league).set_scratch_size(level, Kokkos::PerTeam(scratch_bytes)),
      KOKKOS_LAMBDA(member const& team) {
        scratch_view dw_part(team.team_scratch(level), kRows, D);
        int const first = team.league_rank() * kChunk;
        int const last = first + kChunk < rows ? first + kChunk : rows;
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, kRows), [&](int r) {
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, D), [&](int d) { dw_part(r, d) = 0; });
          for (int row = first + r; row < last; row += kRows) {
            int const b = row / L;
            int const t = row % L;
            value_type const rr = rstd(b, t);
            auto input = [&](int d) {
              if (kGated) {
                return static_cast<value_type>(x(b, t, d) * silu(z(b, t, d)));
              } else {
                return static_cast<value_type>(x(b, t, d));
              }
            };
            value_type dot = 0;  // Σ_d g ⊙ û
            Kokkos::parallel_reduce(
                Kokkos::ThreadVectorRange(team, D),
                [&](int d, value_type& acc) { acc += dy(b, t, d) * w(d) * input(d) * rr; }, dot);
            value_type const mean_dot = dot * inv_d;
            Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, D), [&](int d) {
              value_type const g = dy(b, t, d) * w(d);
              value_type const u_hat = input(d) * rr;
              value_type const du = rr * (g - u_hat * mean_dot);
              dw_part(r, d) += dy(b, t, d) * u_hat;
              if (kGated) {
                // u = x ⊙ silu(z): du/dx = silu(z), du/dz = x ⊙ silu'(z).
                value_type const zz = z(b, t, d);
                value_type const xx = x(b, t, d);
                dx(b, t, d) = du * silu(zz);
                dz(b, t, d) = du * xx * silu_derivative(zz);
              } else {
                dx(b, t, d) = du;
              }
            });
          }
        });
        team.team_barrier();
        Kokkos::parallel_for(Kokkos::TeamVectorRange(team, D), [&](int d) {
          value_type sum = 0;
          for (int r = 0; r < kRows; ++r) { sum += dw_part(r, d); }
          Kokkos::atomic_add(&dw(d), sum);
        });
      });
}

}  // namespace impl

/// RMSNorm forward: y(b,t,d) = x(b,t,d) · rstd(b,t) · w(d), rstd = 1 / sqrt(mean_d x² + eps).
/// \param space [in] execution-space instance; asynchronous on it.
/// \param x [in] (B, L, D). \param w [in] (D) weight.
/// \param y [out] (B, L, D), overwritten; must not alias x.
/// \param rstd [out] (B, L), saved for the backward.
/// \param eps [in] added to the mean square (default 1e-5).
template <execution_space Space, class X, class W, class Y, class R>
  requires(view_accessible_from<X, Space> && view_accessible_from<W, Space> &&
           view_accessible_from<Y, Space> && view_accessible_from<R, Space>)
void rms_norm_forward(Space const& space, X const& x, W const& w, Y const& y, R const& rstd,
                      double eps = kRmsNormEps) {
  static_assert(X::rank() == 3 && Y::rank() == 3,
                "hax::nn::rms_norm_forward: x and y must be rank 3 (B, L, D)");
  static_assert(W::rank() == 1 && R::rank() == 2,
                "hax::nn::rms_norm_forward: w must be rank 1 (D) and rstd rank 2 (B, L)");
  impl::rms_norm_check_forward<false>("hax::nn::rms_norm_forward", x, x, w, "y", y, rstd, eps);
  impl::rms_norm_forward_kernel<false>(space, x, x, w, y, rstd, eps);
}

/// Overload on the default instance of y's execution space.
template <class X, class W, class Y, class R>
void rms_norm_forward(X const& x, W const& w, Y const& y, R const& rstd,
                      double eps = kRmsNormEps) {
  rms_norm_forward(typename Y::execution_space{}, x, w, y, rstd, eps);
}

/// RMSNorm backward: dx written, dw accumulated (+=; one atomic per channel and chunk of
/// positions, so dw's float sum order is unspecified).
/// \param dy, x [in] (B, L, D). \param w [in] (D). \param rstd [in] (B, L) from the forward.
/// \param dx [out] (B, L, D); must not alias x (may alias dy). \param dw [in,out] (D).
template <execution_space Space, class DY, class X, class W, class R, class DX, class DW>
  requires(view_accessible_from<DY, Space> && view_accessible_from<X, Space> &&
           view_accessible_from<W, Space> && view_accessible_from<R, Space> &&
           view_accessible_from<DX, Space> && view_accessible_from<DW, Space>)
void rms_norm_backward(Space const& space, DY const& dy, X const& x, W const& w, R const& rstd,
                       DX const& dx, DW const& dw) {
  static_assert(DY::rank() == 3 && X::rank() == 3 && DX::rank() == 3,
                "hax::nn::rms_norm_backward: dy, x and dx must be rank 3 (B, L, D)");
  static_assert(W::rank() == 1 && DW::rank() == 1 && R::rank() == 2,
                "hax::nn::rms_norm_backward: w, dw must be rank 1 (D) and rstd rank 2 (B, L)");
  constexpr char const* op = "hax::nn::rms_norm_backward";
  impl::rms_norm_check_forward<false>(op, x, x, w, "dy", dy, rstd, 1.0);
  impl::require_same_shape(op, "x", x, "dx", dx);
  core::require(dw.extent(0) == w.extent(0), op, "dw ", impl::shape_of(dw), " vs w ",
                impl::shape_of(w), ": shapes differ");
  impl::rms_norm_backward_kernel<false>(space, dy, x, x, w, rstd, dx, dx, dw);
}

/// Overload on the default instance of dx's execution space.
template <class DY, class X, class W, class R, class DX, class DW>
void rms_norm_backward(DY const& dy, X const& x, W const& w, R const& rstd, DX const& dx,
                       DW const& dw) {
  rms_norm_backward(typename DX::execution_space{}, dy, x, w, rstd, dx, dw);
}

/// Gated RMSNorm forward (Mamba2, norm_before_gate = False, one group over all D channels):
/// u = x ⊙ silu(z), y = u · rstd · w with rstd = 1 / sqrt(mean_d u² + eps).
/// \param x, z [in] (B, L, D). \param w [in] (D). \param y [out] (B, L, D), must not alias x, z.
/// \param rstd [out] (B, L), saved for the backward (u is recomputed there, not saved).
template <execution_space Space, class X, class Z, class W, class Y, class R>
  requires(view_accessible_from<X, Space> && view_accessible_from<Z, Space> &&
           view_accessible_from<W, Space> && view_accessible_from<Y, Space> &&
           view_accessible_from<R, Space>)
void gated_rms_norm_forward(Space const& space, X const& x, Z const& z, W const& w, Y const& y,
                            R const& rstd, double eps = kRmsNormEps) {
  static_assert(X::rank() == 3 && Z::rank() == 3 && Y::rank() == 3,
                "hax::nn::gated_rms_norm_forward: x, z and y must be rank 3 (B, L, D)");
  static_assert(W::rank() == 1 && R::rank() == 2,
                "hax::nn::gated_rms_norm_forward: w must be rank 1 (D) and rstd rank 2 (B, L)");
  impl::rms_norm_check_forward<true>("hax::nn::gated_rms_norm_forward", x, z, w, "y", y, rstd, eps);
  impl::rms_norm_forward_kernel<true>(space, x, z, w, y, rstd, eps);
}

/// Overload on the default instance of y's execution space.
template <class X, class Z, class W, class Y, class R>
void gated_rms_norm_forward(X const& x, Z const& z, W const& w, Y const& y, R const& rstd,
                            double eps = kRmsNormEps) {
  gated_rms_norm_forward(typename Y::execution_space{}, x, z, w, y, rstd, eps);
}

/// Gated RMSNorm backward: dx, dz written, dw accumulated (+=, unspecified float sum order).
/// \param dy, x, z [in] (B, L, D). \param w [in] (D). \param rstd [in] (B, L) from the forward.
/// \param dx, dz [out] (B, L, D), must not alias x, z or each other. \param dw [in,out] (D).
template <execution_space Space, class DY, class X, class Z, class W, class R, class DX,
          class DZ, class DW>
  requires(view_accessible_from<DY, Space> && view_accessible_from<X, Space> &&
           view_accessible_from<Z, Space> && view_accessible_from<W, Space> &&
           view_accessible_from<R, Space> && view_accessible_from<DX, Space> &&
           view_accessible_from<DZ, Space> && view_accessible_from<DW, Space>)
void gated_rms_norm_backward(Space const& space, DY const& dy, X const& x, Z const& z, W const& w,
                             R const& rstd, DX const& dx, DZ const& dz, DW const& dw) {
  static_assert(DY::rank() == 3 && X::rank() == 3 && Z::rank() == 3 && DX::rank() == 3 &&
                    DZ::rank() == 3,
                "hax::nn::gated_rms_norm_backward: dy, x, z, dx and dz must be rank 3 (B, L, D)");
  static_assert(W::rank() == 1 && DW::rank() == 1 && R::rank() == 2,
                "hax::nn::gated_rms_norm_backward: w, dw must be rank 1 (D) and rstd rank 2");
  constexpr char const* op = "hax::nn::gated_rms_norm_backward";
  impl::rms_norm_check_forward<true>(op, x, z, w, "dy", dy, rstd, 1.0);
  impl::require_same_shape(op, "x", x, "dx", dx);
  impl::require_same_shape(op, "x", x, "dz", dz);
  core::require(dw.extent(0) == w.extent(0), op, "dw ", impl::shape_of(dw), " vs w ",
                impl::shape_of(w), ": shapes differ");
  impl::rms_norm_backward_kernel<true>(space, dy, x, z, w, rstd, dx, dz, dw);
}

/// Overload on the default instance of dx's execution space.
template <class DY, class X, class Z, class W, class R, class DX, class DZ, class DW>
void gated_rms_norm_backward(DY const& dy, X const& x, Z const& z, W const& w, R const& rstd,
                             DX const& dx, DZ const& dz, DW const& dw) {
  gated_rms_norm_backward(typename DX::execution_space{}, dy, x, z, w, rstd, dx, dz, dw);
}

}  // namespace hax::nn
