// SPDX-License-Identifier: MIT
/// Catch2 entry point shared by every test executable: Kokkos lives for the whole session.
#include <catch2/catch_session.hpp>

#include <Kokkos_Core.hpp>

int main(int argc, char* argv[]) {
  // Kokkos consumes its own --kokkos-* arguments; Catch2 sees the rest.
  Kokkos::ScopeGuard guard(argc, argv);
  return Catch::Session().run(argc, argv);
}
