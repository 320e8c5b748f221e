// SPDX-License-Identifier: MIT
/// \file
/// hax::core::initialize_keeping_help: the initialiser never sees -h/--help, its own flags are
/// removed as it decides, and the help flags come back at their places in the compacted argv.
#include <hax/core/cli.hpp>

#include <catch2/catch_test_macros.hpp>

#include <cstring>
#include <string>
#include <vector>

namespace {

/// argv from strings (the storage outlives the call).
struct Args {
  explicit Args(std::vector<std::string> a) : storage(std::move(a)) {
    for (auto& s : storage) { pointers.push_back(s.data()); }
    pointers.push_back(nullptr);
    argc = static_cast<int>(storage.size());
  }
  std::vector<std::string> storage;
  std::vector<char*> pointers;
  int argc = 0;
  char** argv() { return pointers.data(); }
  std::vector<std::string> now() const {
    return std::vector<std::string>(pointers.begin(), pointers.begin() + argc);
  }
};

/// A stand-in for Kokkos::initialize: removes every "--kokkos-*" argument, records what it saw.
struct FakeInit {
  std::vector<std::string>* seen;
  void operator()(int& argc, char** argv) const {
    int out = 0;
    for (int i = 0; i < argc; ++i) {
      seen->push_back(argv[i]);
      if (std::strncmp(argv[i], "--kokkos-", 9) != 0) { argv[out++] = argv[i]; }
    }
    argc = out;
    argv[argc] = nullptr;
  }
};

}  // namespace

TEST_CASE("core: Kokkos initialisation leaves -h/--help to the program", "[core][cli]") {
  Args a({"prog", "--kokkos-num-threads=2", "train", "--help", "--kokkos-disable-warnings", "-h",
          "--steps", "5"});
  std::vector<std::string> seen;
  hax::core::initialize_keeping_help(a.argc, a.argv(), FakeInit{&seen});
  CHECK(a.now() == std::vector<std::string>{"prog", "train", "--help", "-h", "--steps", "5"});
  for (auto const& s : seen) {
    CHECK(s != "--help");
    CHECK(s != "-h");
  }
  CHECK(seen.size() == 8);  // the initialiser saw every argument, help ones under other names
  CHECK(a.argv()[a.argc] == nullptr);
}

TEST_CASE("core: arguments that merely contain 'help' are passed through unchanged", "[core][cli]") {
  Args a({"prog", "--helpful", "-hx", "--kokkos-help"});
  std::vector<std::string> seen;
  hax::core::initialize_keeping_help(a.argc, a.argv(), FakeInit{&seen});
  CHECK(seen == std::vector<std::string>{"prog", "--helpful", "-hx", "--kokkos-help"});
  CHECK(a.now() == std::vector<std::string>{"prog", "--helpful", "-hx"});
}
