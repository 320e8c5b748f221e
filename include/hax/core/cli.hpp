// SPDX-License-Identifier: MIT
/// \file
/// Kokkos initialisation for command-line programs that print their own help.
///
/// Kokkos::initialize(argc, argv) consumes its `--kokkos-*` flags, but it also answers `--help`
/// by printing Kokkos' own page of options, which then precedes the program's help. KokkosScope
/// hides `-h`/`--help` from Kokkos during initialisation and puts them back in their place, so the
/// program's parser sees them; `--kokkos-help` still shows Kokkos' page.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstring>

namespace hax::core {

namespace impl {

inline char kHiddenShortHelp[] = "--hax-hidden-short-help";
inline char kHiddenLongHelp[] = "--hax-hidden-long-help";

}  // namespace impl

/// Runs init(argc, argv) (an initialiser that may remove its own arguments from argv, compacting
/// it and updating argc, as Kokkos::initialize does) with every "-h" and "--help" hidden from it,
/// then restores them at their (possibly shifted) positions.
template <class Init>
void initialize_keeping_help(int& argc, char** argv, Init&& init) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "-h") == 0) {
      argv[i] = impl::kHiddenShortHelp;
    } else if (std::strcmp(argv[i], "--help") == 0) {
      argv[i] = impl::kHiddenLongHelp;
    }
  }
  init(argc, argv);
  for (int i = 1; i < argc; ++i) {
    if (argv[i] == impl::kHiddenShortHelp) {
      argv[i] = const_cast<char*>("-h");
    } else if (argv[i] == impl::kHiddenLongHelp) {
      argv[i] = const_cast<char*>("--help");
    }
  }
}

/// Kokkos::ScopeGuard that leaves -h/--help to the program (see the file comment).
/// Example: int main(int argc, char** argv) { hax::core::KokkosScope kokkos(argc, argv); ... }
class KokkosScope {
 public:
  KokkosScope(int& argc, char** argv) {
    initialize_keeping_help(argc, argv, [](int& n, char** args) { Kokkos::initialize(n, args); });
  }
  ~KokkosScope() { Kokkos::finalize(); }
  KokkosScope(KokkosScope const&) = delete;
  KokkosScope& operator=(KokkosScope const&) = delete;
};

}  // namespace hax::core
