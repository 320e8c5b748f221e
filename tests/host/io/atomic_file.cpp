// SPDX-License-Identifier: MIT
/// Atomic writes: success leaves exactly the destination; failures (a missing directory, a write
/// that hits a file-size limit, an abandoned writer) throw hax::io_error naming the path and the
/// reason, remove the temporary and leave the previous file intact.
///
/// A full disk cannot be simulated portably as root (root ignores permissions, and /dev/full
/// cannot hold a temporary beside it), so the short-write path is driven by RLIMIT_FSIZE in a
/// forked child: writes past the limit fail with EFBIG exactly as they fail with ENOSPC on a full
/// disk (a short write, then -1), through the same code.
#include <hax/io/atomic_file.hpp>
#include <hax/io/checkpoint.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <csignal>
#include <cstdint>
#include <string>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit/io/io_test_support.hpp"

namespace {

using Catch::Matchers::ContainsSubstring;
using hax::test::io::TempDir;

hax::io::TensorSet checkpoint_with(std::size_t n, std::uint8_t value) {
  hax::io::TensorSet set;
  hax::io::HostTensor t;
  t.name = "payload";
  t.type = hax::io::dtype::u8;
  t.shape = {n};
  t.bytes.assign(n, std::byte{value});
  set.add(std::move(t));
  set.metadata() = {{"value", value}};
  return set;
}

}  // namespace

TEST_CASE("atomic file: a successful write leaves only the destination", "[io]") {
  TempDir dir;
  auto const path = dir / "out.bin";
  auto const first = hax::test::io::to_bytes("first version");
  hax::io::write_file_atomically(path, first);
  CHECK(hax::test::io::read_bytes(path) == first);
  auto const second = hax::test::io::to_bytes("second");
  hax::io::write_file_atomically(path, second);  // replaces an existing file
  CHECK(hax::test::io::read_bytes(path) == second);
  CHECK(dir.entries() == std::vector<std::string>{"out.bin"});
}

TEST_CASE("atomic file: a missing directory is an io_error naming the path", "[io]") {
  TempDir dir;
  auto const path = dir / "no_such_dir" / "model.haxckpt";
  CHECK_THROWS_AS(hax::io::write_checkpoint(path, checkpoint_with(10, 1)), hax::io_error);
  CHECK_THROWS_WITH(hax::io::write_checkpoint(path, checkpoint_with(10, 1)),
                    ContainsSubstring(path.string()) &&
                        ContainsSubstring("No such file or directory"));
  CHECK(dir.entries().empty());
}

TEST_CASE("atomic file: an abandoned writer removes its temporary, the old file survives", "[io]") {
  TempDir dir;
  auto const path = dir / "out.bin";
  auto const old_bytes = hax::test::io::to_bytes("old");
  hax::io::write_file_atomically(path, old_bytes);
  std::filesystem::path temporary;
  {
    hax::io::AtomicFileWriter writer(path);
    temporary = writer.temporary_path();
    CHECK(std::filesystem::exists(temporary));
    CHECK(temporary.parent_path() == path.parent_path());  // same filesystem: rename is atomic
    writer.write(hax::test::io::to_bytes("new but never committed"));
  }  // e.g. an exception while serialising
  CHECK_FALSE(std::filesystem::exists(temporary));
  CHECK(hax::test::io::read_bytes(path) == old_bytes);
  CHECK(dir.entries() == std::vector<std::string>{"out.bin"});
}

TEST_CASE("atomic file: a write past a file-size limit (short write, EFBIG) keeps the old file",
          "[io]") {
  TempDir dir;
  auto const path = dir / "model.haxckpt";
  hax::io::write_checkpoint(path, checkpoint_with(1000, 7));
  auto const before = hax::test::io::read_bytes(path);

  // The child gets a 64 KiB file-size limit and writes a 1 MiB checkpoint over `path`. It touches
  // no Kokkos state (the TensorSet is plain host data), and reports through its exit status.
  auto const big = checkpoint_with(std::size_t{1} << 20, 9);
  pid_t const pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::signal(SIGXFSZ, SIG_IGN);  // otherwise the kernel kills the process instead of EFBIG
    rlimit const limit{65536, 65536};
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) {
      ::_exit(10);
    }
    try {
      hax::io::write_checkpoint(path, big);
      ::_exit(11);  // should have failed
    } catch (hax::io_error const& e) {
      std::string const what = e.what();
      bool const names_path = what.find(path.string()) != std::string::npos;
      bool const names_reason = what.find("File too large") != std::string::npos;
      ::_exit(names_path && names_reason ? 0 : 12);
    } catch (...) {
      ::_exit(13);
    }
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(hax::test::io::read_bytes(path) == before);
  CHECK(dir.entries() == std::vector<std::string>{"model.haxckpt"});  // no temporary left
  auto const back = hax::io::read_checkpoint(path);
  CHECK(back.metadata()["value"] == 7);
}
