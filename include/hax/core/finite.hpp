// SPDX-License-Identifier: MIT
/// \file
/// Cheap detection of non-finite values (NaN, ±inf) in losses and gradients: one device reduction
/// into a device View, so a training step never waits for the host. A separate host helper
/// (`require_finite`) fences, reads the count and throws hax::numerical_error naming the op, the
/// tensor and the step, for the places that choose to synchronise (e.g. every N steps).
///
/// The same pass can also return the sum of squares (for the global gradient L2 norm), so norm
/// and check together cost one read of the buffer.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>

#include <cstdint>
#include <string_view>

namespace hax::core {

/// Result of `sum_squares_and_count_nonfinite`: Σ x² over all elements (accumulated in double;
/// non-finite if any element is) and the number of non-finite elements.
struct FiniteStats {
  double sum_squares;     // Σ x²
  std::int64_t nonfinite;  // #{x : x is NaN or ±inf}
};

namespace impl {

/// Kokkos custom reducer for FiniteStats (both fields are sums).
template <class MemorySpace>
class FiniteStatsSum {
 public:
  using reducer = FiniteStatsSum;
  using value_type = FiniteStats;
  using result_view_type = Kokkos::View<value_type, MemorySpace>;  // rank 0

  KOKKOS_INLINE_FUNCTION explicit FiniteStatsSum(result_view_type const& value) : value_(value) {}

  KOKKOS_INLINE_FUNCTION void join(value_type& dest, value_type const& src) const {
    dest.sum_squares += src.sum_squares;
    dest.nonfinite += src.nonfinite;
  }
  KOKKOS_INLINE_FUNCTION void init(value_type& val) const {
    val.sum_squares = 0.0;
    val.nonfinite = 0;
  }
  KOKKOS_INLINE_FUNCTION value_type& reference() const { return *value_.data(); }
  KOKKOS_INLINE_FUNCTION result_view_type view() const { return value_; }
  KOKKOS_INLINE_FUNCTION bool references_scalar() const { return false; }

 private:
  result_view_type value_;
};

/// A contiguous View of any rank seen as a flat rank-1 unmanaged View (same memory).
template <class V>
auto flat_view(V const& v, std::string_view op) {
  require(v.span_is_contiguous(), op, "the View \"", v.label(),
          "\" must be contiguous (not a strided subview); its span is ", v.span(), " for ",
          v.size(), " elements");
  using value_type = typename V::value_type;
  return Kokkos::View<value_type*, typename V::device_type, Kokkos::MemoryTraits<Kokkos::Unmanaged>>(
      v.data(), v.span());
}

}  // namespace impl

/// Counts the non-finite elements (NaN, +inf, -inf) of a contiguous View of any rank into the
/// rank-0 device View `count`, overwriting it.
///
/// \param space [in] execution-space instance; asynchronous on it (no fence, no host read).
/// \param x [in] contiguous View of any rank and floating-point value type.
/// \param count [out] rank-0 View of std::int64_t in memory `space` can access.
/// Throws hax::invalid_argument if x is not contiguous.
template <execution_space Space, class X, class Count>
  requires(view_accessible_from<X, Space> && view_accessible_from<Count, Space>)
void count_nonfinite(Space const& space, X const& x, Count const& count) {
  static_assert(Count::rank() == 0 &&
                    std::is_same_v<typename Count::non_const_value_type, std::int64_t>,
                "hax::core::count_nonfinite: count must be a rank-0 View of std::int64_t");
  auto const flat = impl::flat_view(x, "hax::core::count_nonfinite");
  Kokkos::parallel_reduce(
      "hax::core::count_nonfinite",
      Kokkos::RangePolicy<Space, Kokkos::IndexType<std::int64_t>>(
          space, 0, static_cast<std::int64_t>(flat.extent(0))),
      KOKKOS_LAMBDA(std::int64_t i, std::int64_t& bad) {
        if (!Kokkos::isfinite(flat(i))) {
          ++bad;
        }
      },
      Kokkos::Sum<std::int64_t, typename Count::memory_space>(count));
}

/// Overload on the default instance of `count`'s execution space.
template <class X, class Count>
void count_nonfinite(X const& x, Count const& count) {
  count_nonfinite(typename Count::execution_space{}, x, count);
}

/// One pass over a contiguous View: Σ x² (in double) and the count of non-finite elements, into
/// the rank-0 device View `stats` (overwritten). The global L2 norm is sqrt(stats().sum_squares);
/// it is not finite exactly when stats().nonfinite > 0 (or when Σ x² overflows a double).
///
/// \param space [in] execution-space instance; asynchronous on it.
/// \param x [in] contiguous View of any rank.
/// \param stats [out] rank-0 View<FiniteStats> in memory `space` can access.
template <execution_space Space, class X, class Stats>
  requires(view_accessible_from<X, Space> && view_accessible_from<Stats, Space>)
void sum_squares_and_count_nonfinite(Space const& space, X const& x, Stats const& stats) {
  static_assert(Stats::rank() == 0 &&
                    std::is_same_v<typename Stats::non_const_value_type, FiniteStats>,
                "hax::core::sum_squares_and_count_nonfinite: stats must be a rank-0 "
                "View<FiniteStats>");
  auto const flat = impl::flat_view(x, "hax::core::sum_squares_and_count_nonfinite");
  using memory_space = typename Stats::memory_space;
  Kokkos::View<FiniteStats, memory_space> out = stats;
  Kokkos::parallel_reduce(
      "hax::core::sum_squares_and_count_nonfinite",
      Kokkos::RangePolicy<Space, Kokkos::IndexType<std::int64_t>>(
          space, 0, static_cast<std::int64_t>(flat.extent(0))),
      KOKKOS_LAMBDA(std::int64_t i, FiniteStats& acc) {
        double const xi = static_cast<double>(flat(i));
        acc.sum_squares += xi * xi;
        if (!Kokkos::isfinite(xi)) {
          ++acc.nonfinite;
        }
      },
      impl::FiniteStatsSum<memory_space>(out));
}

/// Overload on the default instance of `stats`' execution space.
template <class X, class Stats>
void sum_squares_and_count_nonfinite(X const& x, Stats const& stats) {
  sum_squares_and_count_nonfinite(typename Stats::execution_space{}, x, stats);
}

/// Host check: fences `space`, reads the count written by count_nonfinite and throws
/// hax::numerical_error("<op>: <tensor> has <n> non-finite values at step <step>") if it is
/// nonzero. This synchronises with the host: call it outside the hot loop or every N steps.
template <execution_space Space, class Count>
void require_finite(Space const& space, Count const& count, std::string_view op,
                    std::string_view tensor, std::int64_t step) {
  static_assert(Count::rank() == 0, "hax::core::require_finite: count must be a rank-0 View");
  space.fence("hax::core::require_finite");
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, count);
  std::int64_t n = 0;
  if constexpr (std::is_same_v<typename Count::non_const_value_type, FiniteStats>) {
    n = host().nonfinite;
  } else {
    n = static_cast<std::int64_t>(host());
  }
  if (n != 0) {
    throw numerical_error(
        concat(op, ": ", tensor, " has ", n, " non-finite value(s) at step ", step));
  }
}

/// Host convenience: count_nonfinite + require_finite in one call (fences).
template <execution_space Space, class X>
  requires(view_accessible_from<X, Space>)
void check_finite(Space const& space, X const& x, std::string_view op, std::string_view tensor,
                  std::int64_t step) {
  Kokkos::View<std::int64_t, typename Space::memory_space> count(
      Kokkos::view_alloc(space, Kokkos::WithoutInitializing, "hax::core::nonfinite_count"));
  count_nonfinite(space, x, count);
  require_finite(space, count, op, tensor, step);
}

}  // namespace hax::core
