// SPDX-License-Identifier: MIT
/// \file
/// Concepts shared by every area: execution spaces and view accessibility.
#pragma once

#include <Kokkos_Core.hpp>

#include <concepts>

namespace hax {

/// A Kokkos execution space type (Kokkos::Serial, Kokkos::OpenMP, Kokkos::Cuda, ...).
template <class S>
concept execution_space = Kokkos::is_execution_space_v<S>;

/// A Kokkos::View whose memory `Space` can read and write.
/// (SpaceAccessibility<...>::accessible is an unnamed enum, hence the bool(...).)
template <class V, class Space>
concept view_accessible_from =
    Kokkos::is_view_v<V> &&
    bool(Kokkos::SpaceAccessibility<Space, typename V::memory_space>::accessible);

/// A floating-point scalar hax computes in (float by default, double for gradient checks).
template <class T>
concept scalar = std::floating_point<T>;

}  // namespace hax
