// SPDX-License-Identifier: MIT
/// Reading damaged checkpoints: each problem (missing file, wrong magic, newer version, truncation
/// at every section boundary and at every offset, flipped bytes anywhere, unknown dtype, duplicate
/// names, a corrupt payload behind a valid whole-file checksum, bad metadata) is a hax::io_error
/// that names the path and the problem; none crashes or hangs. Also a few safetensors fuzz rounds.
#include <hax/io/checkpoint.hpp>
#include <hax/io/safetensors.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <cstdint>
#include <random>
#include <string>

#include "unit/io/io_test_support.hpp"

namespace {

using Catch::Matchers::ContainsSubstring;
using hax::test::io::TempDir;
using hax::test::io::read_bytes;
using hax::test::io::write_bytes;
using hax::test::io::fix_checkpoint_checksum;

hax::io::HostTensor host_tensor(std::string name, hax::io::dtype type,
                                std::vector<std::uint64_t> shape, std::uint64_t seed) {
  hax::io::HostTensor t;
  t.name = std::move(name);
  t.type = type;
  t.shape = std::move(shape);
  t.bytes.resize(t.numel() * hax::io::dtype_size(type));
  std::mt19937_64 rng(seed);
  for (auto& b : t.bytes) {
    b = static_cast<std::byte>(rng());
  }
  return t;
}

/// Two tensors "a" (f32, (2, 3)) and "b" (i64, (4)) with metadata {"step":5}. Layout (see
/// docs/checkpoint_format.md): header 64 | metadata 10 bytes at 64 | table at 74: entry "a" is
/// 4+1+4+16+24 = 49 bytes (dtype byte at 79), entry "b" is 4+1+4+8+24 = 41 bytes (name at 127,
/// dtype at 128), table ends at 164 | payload: "a" at 192 (24 bytes), "b" at 256 (32 bytes) |
/// trailer at 320 | size 336.
hax::io::TensorSet sample() {
  hax::io::TensorSet set;
  set.metadata() = {{"step", 5}};
  set.add(host_tensor("a", hax::io::dtype::f32, {2, 3}, 1));
  set.add(host_tensor("b", hax::io::dtype::i64, {4}, 2));
  return set;
}

void check_read_fails(std::filesystem::path const& path, std::string const& problem) {
  INFO("expected problem: " << problem);
  CHECK_THROWS_AS(hax::io::read_checkpoint(path), hax::io_error);
  CHECK_THROWS_WITH(hax::io::read_checkpoint(path),
                    ContainsSubstring(path.string()) && ContainsSubstring(problem));
}

}  // namespace

TEST_CASE("checkpoint errors: the sample layout is the one the tests below edit", "[io]") {
  TempDir dir;
  hax::io::write_checkpoint(dir / "c.haxckpt", sample());
  auto const b = read_bytes(dir / "c.haxckpt");
  REQUIRE(b.size() == 336);
  CHECK(std::memcmp(b.data() + 64, R"({"step":5})", 10) == 0);
  CHECK(b[79] == std::byte{1});    // "a" is f32
  CHECK(b[127] == std::byte{'b'});
  CHECK(b[128] == std::byte{5});   // "b" is i64
  CHECK(hax::test::io::load_u64(b, 74 + 49 - 24) == 192);  // offset of "a"
  CHECK(hax::test::io::load_u64(b, 164 - 24) == 256);      // offset of "b"
  auto const back = hax::io::read_checkpoint(dir / "c.haxckpt");
  CHECK(back.at("a").bytes == sample().at("a").bytes);
  CHECK(back.at("b").bytes == sample().at("b").bytes);
}

TEST_CASE("checkpoint errors: missing file, wrong magic, newer version", "[io]") {
  TempDir dir;
  auto const path = dir / "c.haxckpt";
  check_read_fails(path, "no such file");
  hax::io::write_checkpoint(path, sample());
  auto const good = read_bytes(path);

  auto bad = good;
  bad[0] = std::byte{'X'};
  write_bytes(path, bad);
  check_read_fails(path, "not a hax checkpoint");

  bad = good;
  bad[8] = std::byte{hax::io::kCheckpointFormatVersion + 1};
  fix_checkpoint_checksum(bad);
  write_bytes(path, bad);
  check_read_fails(path, "format version 2 is not supported");

  bad = good;
  std::swap(bad[12], bad[15]);  // the byte-order marker as another-endian writer would store it
  fix_checkpoint_checksum(bad);
  write_bytes(path, bad);
  check_read_fails(path, "byte order");

  std::filesystem::create_directory(dir / "a_directory");
  check_read_fails(dir / "a_directory", "not a regular file");
}

TEST_CASE("checkpoint errors: truncation at every section boundary", "[io]") {
  TempDir dir;
  auto const path = dir / "c.haxckpt";
  hax::io::write_checkpoint(dir / "good.haxckpt", sample());
  auto const good = read_bytes(dir / "good.haxckpt");
  // empty, inside the header, end of header, inside metadata, end of metadata, end of entry "a",
  // end of table, start of payload "a", inside it, start of "b", end of "b", start of the
  // trailer, just before the checksum, one byte short.
  for (std::size_t const cut : {0, 7, 63, 64, 70, 74, 123, 164, 192, 200, 256, 288, 320, 328, 335}) {
    INFO("truncated at " << cut);
    write_bytes(path, std::vector<std::byte>(good.begin(), good.begin() + cut));
    check_read_fails(path, "truncated");
  }
  auto longer = good;
  longer.push_back(std::byte{0});
  write_bytes(path, longer);
  check_read_fails(path, "trailing bytes");
}

TEST_CASE("checkpoint errors: every truncation and every flipped byte throws io_error", "[io]") {
  TempDir dir;
  auto const path = dir / "c.haxckpt";
  hax::io::write_checkpoint(dir / "good.haxckpt", sample());
  auto const good = read_bytes(dir / "good.haxckpt");
  std::size_t failures = 0;
  auto expect_io_error = [&](std::vector<std::byte> const& bytes) {
    write_bytes(path, bytes);
    try {
      hax::io::read_checkpoint(path);
      ++failures;  // accepted a damaged file
    } catch (hax::io_error const&) {
    }
  };
  for (std::size_t cut = 0; cut < good.size(); ++cut) {
    expect_io_error(std::vector<std::byte>(good.begin(), good.begin() + cut));
  }
  for (std::size_t i = 0; i < good.size(); ++i) {
    for (unsigned const mask : {0x01u, 0x80u, 0xffu}) {
      auto bad = good;
      bad[i] ^= static_cast<std::byte>(mask);
      expect_io_error(bad);
    }
  }
  CHECK(failures == 0);
}

TEST_CASE("checkpoint errors: damage behind a valid whole-file checksum is still caught", "[io]") {
  TempDir dir;
  auto const path = dir / "c.haxckpt";
  hax::io::write_checkpoint(dir / "good.haxckpt", sample());
  auto const good = read_bytes(dir / "good.haxckpt");
  auto const edit = [&](auto&& change, std::string const& problem) {
    auto bad = good;
    change(bad);
    fix_checkpoint_checksum(bad);
    write_bytes(path, bad);
    check_read_fails(path, problem);
  };
  edit([](auto& b) { b[79] = std::byte{42}; }, "unknown dtype code 42");
  edit([](auto& b) { b[127] = std::byte{'a'}; }, "duplicate tensor name \"a\"");
  edit([](auto& b) { b[260] ^= std::byte{0x10}; }, "tensor \"b\": checksum mismatch");
  edit([](auto& b) { b[64] = std::byte{'x'}; }, "not valid JSON");
  edit([](auto& b) { b[128] = std::byte{1}; }, "do not match dtype f32");  // i64 bytes as f32
  edit([](auto& b) { b[80] = std::byte{5}; }, "rank 5");
  edit([](auto& b) { b[140] = std::byte{0xc8}, b[141] = std::byte{0}; }, "misaligned");  // at 200
  edit([](auto& b) { b[140] = std::byte{0x80}, b[141] = std::byte{0}; }, "overlaps");    // at 128
  edit([](auto& b) { b[81] = std::byte{1}; }, "reserved");
  edit([](auto& b) { b[48] = std::byte{3}; }, "tensor");               // count 3 of a 2-entry table
  // Random garbage with a valid-looking header must fail cleanly too.
  std::mt19937_64 rng(99);
  for (int round = 0; round < 200; ++round) {
    auto bad = good;
    for (std::size_t i = 64; i < 164; ++i) {
      if (rng() % 8 == 0) {
        bad[i] = static_cast<std::byte>(rng());
      }
    }
    fix_checkpoint_checksum(bad);
    write_bytes(path, bad);
    CHECK_THROWS_AS(hax::io::read_checkpoint(path), hax::io_error);
  }
}

TEST_CASE("safetensors errors: truncations throw, flipped bytes never crash", "[io]") {
  TempDir dir;
  auto const path = dir / "s.safetensors";
  auto set = sample();
  set.metadata() = {{"step", "5"}};
  hax::io::write_safetensors(dir / "good.safetensors", set);
  auto const good = read_bytes(dir / "good.safetensors");
  std::size_t accepted_truncations = 0;
  for (std::size_t cut = 0; cut < good.size(); ++cut) {
    write_bytes(path, std::vector<std::byte>(good.begin(), good.begin() + cut));
    try {
      hax::io::read_safetensors(path);
      ++accepted_truncations;
    } catch (hax::io_error const&) {
    }
  }
  CHECK(accepted_truncations == 0);
  // safetensors has no checksum: a flipped payload byte is legitimately accepted; the requirement
  // is that every outcome is either a valid TensorSet or a hax::io_error (anything else escapes
  // and fails the test).
  std::size_t rejected = 0;
  for (std::size_t i = 0; i < good.size(); ++i) {
    auto bad = good;
    bad[i] ^= std::byte{0x5a};
    write_bytes(path, bad);
    try {
      hax::io::read_safetensors(path);
    } catch (hax::io_error const&) {
      ++rejected;
    }
  }
  CHECK(rejected > 0);
}
