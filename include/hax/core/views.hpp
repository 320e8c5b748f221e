// SPDX-License-Identifier: MIT
/// \file
/// View aliases used throughout hax. Activations are LayoutRight (B, L, D); every View a public op
/// takes may be any Kokkos::View the op's execution space can access, these are only defaults.
#pragma once

#include <Kokkos_Core.hpp>

namespace hax {

/// A LayoutRight View in the memory space of execution space `Space`.
/// Example: view<float***, Kokkos::OpenMP> x("x", B, L, D);   // (B, L, D)
template <class DataType, class Space>
using view = Kokkos::View<DataType, Kokkos::LayoutRight, typename Space::memory_space>;

/// Allocation helper: a labelled View on `space` without zero-initialisation.
template <class DataType, class Space, class... Extents>
view<DataType, Space> uninitialized_view(Space const& space, std::string const& label,
                                         Extents... extents) {
  return view<DataType, Space>(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, label),
                               extents...);
}

/// Allocation helper: a labelled, zero-initialised View on `space`.
template <class DataType, class Space, class... Extents>
view<DataType, Space> zeroed_view(Space const& space, std::string const& label, Extents... extents) {
  return view<DataType, Space>(Kokkos::view_alloc(space, label), extents...);
}

}  // namespace hax
