// SPDX-License-Identifier: MIT
/// \file
/// The execution space a unit-test executable runs on. The same test sources are compiled once
/// per backend (Kokkos Kernels' backends/ pattern); CMake defines exactly one HAX_TEST_BACKEND_*.
#pragma once

#include <Kokkos_Core.hpp>

namespace hax::test {

#if defined(HAX_TEST_BACKEND_SERIAL)
using test_space = Kokkos::Serial;
#elif defined(HAX_TEST_BACKEND_OPENMP)
using test_space = Kokkos::OpenMP;
#elif defined(HAX_TEST_BACKEND_CUDA)
using test_space = Kokkos::Cuda;
#else
// Host-only test executables: property tests that need no device run on the default host space.
using test_space = Kokkos::DefaultHostExecutionSpace;
#endif

using test_memory_space = typename test_space::memory_space;

}  // namespace hax::test
