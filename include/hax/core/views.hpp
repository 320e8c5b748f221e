// SPDX-License-Identifier: MIT
/// \file
/// View aliases used throughout hax. Activations are LayoutRight (B, L, D); every View a public op
/// takes may be any Kokkos::View the op's execution space can access, these are only defaults.
///
/// uninitialized_view and zeroed_view are the one way ops allocate their temporaries and saved
/// activations: inside an active hax::core::ScratchScope for the View's memory space they carve
/// the View from the scope's arena (valid until the arena's next reset, i.e. the next step: see
/// core/scratch.hpp), otherwise they allocate it. Persistent state (parameters, optimiser moments,
/// workspaces made once) must not use them; it allocates with Kokkos::view_alloc directly.
#pragma once

#include <Kokkos_Core.hpp>
#include <hax/core/scratch.hpp>

#include <cstddef>
#include <string>
#include <type_traits>

namespace hax {

/// A LayoutRight View in the memory space of execution space `Space`.
/// Example: view<float***, Kokkos::OpenMP> x("x", B, L, D);   // (B, L, D)
template <class DataType, class Space>
using view = Kokkos::View<DataType, Kokkos::LayoutRight, typename Space::memory_space>;

namespace impl {
/// The View type the helpers return: view<DataType, Space>, or DataType itself when it is already
/// a Kokkos::View type (another layout or memory space).
template <class DataType, class Space, bool = Kokkos::is_view_v<DataType>>
struct helper_view {
  using type = view<DataType, Space>;
};
template <class ViewType, class Space>
struct helper_view<ViewType, Space, true> {
  using type = ViewType;
};

/// A View of type V with `extents`, from the active arena of V's memory space if any (then
/// unmanaged, of the same type), else a managed allocation; `zero` fills it with zeros on `space`
/// (asynchronously in both cases).
template <class V, bool kZero, class Space, class... Extents>
V helper_allocate(Space const& space, std::string const& label, Extents... extents) {
  static_assert(!std::is_const_v<typename V::value_type>,
                "hax::uninitialized_view/zeroed_view: allocate a non-const View");
  static_assert(V::traits::array_layout::is_extent_constructible,
                "hax::uninitialized_view/zeroed_view: the layout must be built from extents "
                "(LayoutRight or LayoutLeft)");
  if (auto* arena = core::active_arena<typename V::memory_space>()) {
    std::size_t const bytes = V::required_allocation_size(static_cast<std::size_t>(extents)...);
    V v(static_cast<typename V::pointer_type>(arena->take(bytes)), extents...);
    // The arena's memory holds the previous step's values: zero it explicitly.
    if constexpr (kZero) Kokkos::deep_copy(space, v, typename V::value_type{});
    return v;
  }
  if constexpr (kZero) {
    return V(Kokkos::view_alloc(space, label), extents...);
  } else {
    return V(Kokkos::view_alloc(space, Kokkos::WithoutInitializing, label), extents...);
  }
}
}  // namespace impl

/// Allocation helper: a labelled View on `space` without zero-initialisation (from the active
/// scratch arena if any). `DataType` is a data type (float**: a LayoutRight view on Space's memory
/// space) or a whole Kokkos::View type with an extent-built layout.
template <class DataType, class Space, class... Extents>
typename impl::helper_view<DataType, Space>::type uninitialized_view(Space const& space,
                                                                    std::string const& label,
                                                                    Extents... extents) {
  return impl::helper_allocate<typename impl::helper_view<DataType, Space>::type, false>(
      space, label, extents...);
}

/// Allocation helper: a labelled, zero-initialised View on `space` (from the active scratch arena
/// if any, then zero-filled asynchronously on `space`). `DataType` as for uninitialized_view.
template <class DataType, class Space, class... Extents>
typename impl::helper_view<DataType, Space>::type zeroed_view(Space const& space,
                                                             std::string const& label,
                                                             Extents... extents) {
  return impl::helper_allocate<typename impl::helper_view<DataType, Space>::type, true>(
      space, label, extents...);
}

}  // namespace hax
