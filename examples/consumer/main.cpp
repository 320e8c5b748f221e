// SPDX-License-Identifier: MIT
/// A consumer of the installed package: generates one joint-recall item and checks its length.
#include <hax/hax.hpp>

#include <cstdio>

int main(int argc, char* argv[]) {
  Kokkos::ScopeGuard guard(argc, argv);
  std::printf("hax %s on %s\n", hax::version_string, Kokkos::DefaultExecutionSpace::name());
  return 0;
}
