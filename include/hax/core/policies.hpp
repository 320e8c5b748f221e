// SPDX-License-Identifier: MIT
/// \file
/// Execution-policy shapes shared by hax's kernels.
#pragma once

#include <Kokkos_Core.hpp>

namespace hax::core {

/// The iteration order of multidimensional ranges over LayoutRight data: the last index varies
/// fastest. Kokkos's default on CUDA is Iterate::Left (the first index on threadIdx.x), which for
/// hax's row-major (B, L, D) Views puts neighbouring threads a whole row apart: every load
/// uncoalesced. On host backends Right is already the default, so this changes nothing there.
/// Example: Kokkos::MDRangePolicy<Space, core::rank_right<2>>(space, {0, 0}, {rows, cols}).
template <unsigned N>
using rank_right = Kokkos::Rank<N, Kokkos::Iterate::Right, Kokkos::Iterate::Right>;

}  // namespace hax::core
