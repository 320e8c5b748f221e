// SPDX-License-Identifier: MIT
/// \file
/// Host tests of hax::data's files: round trips through the binary format and JSON Lines, every
/// corrupt-file case (missing, wrong magic, newer version, truncated, checksum mismatch, malformed
/// JSON Lines), atomic writes, and determinism across backends and thread counts.
#include "support/test_space.hpp"

#include <hax/data/decode.hpp>
#include <hax/data/io.hpp>
#include <hax/reference/data/joint_recall.hpp>

#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace {

using hax::data::recall_spec;
using hax::data::split;
using Catch::Matchers::ContainsSubstring;
namespace fs = std::filesystem;

/// A fresh, empty directory under the system temporary directory.
fs::path scratch_dir(std::string const& name) {
  fs::path const dir = fs::temp_directory_path() / ("hax_data_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

recall_spec small_spec() {
  recall_spec s = hax::data::make_spec(2, 2, 5);
  s.items_per_combination[0] = 3;
  s.items_per_combination[1] = 1;
  s.items_per_combination[2] = 1;
  return hax::data::resolve(s);
}

template <class Space>
hax::data::host_split make_split(Space const& space, recall_spec const& s, split sp) {
  auto const ex = hax::data::make_exclusions(space, s);
  return hax::data::generate_split(space, s, ex, sp, 0, hax::data::split_size(s, sp), {}, 7);
}

std::vector<unsigned char> read_bytes(fs::path const& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<unsigned char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_bytes(fs::path const& p, std::vector<unsigned char> const& b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<char const*>(b.data()), static_cast<std::streamsize>(b.size()));
}

void write_text(fs::path const& p, std::string const& text) {
  std::ofstream out(p, std::ios::trunc);
  out << text;
}

}  // namespace

TEST_CASE("data io: generate_split matches the reference and reports progress", "[data]") {
  recall_spec const s = small_spec();
  auto const ex = hax::data::make_exclusions(hax::test::test_space{}, s);
  std::int64_t calls = 0;
  std::int64_t last = 0;
  auto const d = hax::data::generate_split(hax::test::test_space{}, s, ex, split::valid, 3, 10,
                                           [&](std::int64_t done, std::int64_t total) {
                                             ++calls;
                                             last = done;
                                             CHECK(total == 10);
                                           }, 4);
  CHECK(calls == 3);
  CHECK(last == 10);
  for (std::int64_t r = 0; r < 10; ++r) {
    auto ref = hax::reference::data::generate_split_item(s, split::valid, 3 + r);
    ref.tokens.resize(s.padded_length, s.pad);
    std::vector<int> row(d.tokens.begin() + r * s.padded_length, d.tokens.begin() + (r + 1) * s.padded_length);
    CHECK(row == ref.tokens);
  }
  CHECK_THROWS_WITH(hax::data::generate_split(hax::test::test_space{}, s, ex, split::valid, 0, 0),
                    ContainsSubstring("count (0)"));
}

TEST_CASE("data io: binary and JSON Lines round trips", "[data]") {
  auto const dir = scratch_dir("roundtrip");
  recall_spec const s = small_spec();
  auto const d = make_split(hax::test::test_space{}, s, split::train);
  hax::data::write_binary((dir / "train.bin").string(), d);
  auto const b = hax::data::read_binary((dir / "train.bin").string());
  CHECK(b.tokens == d.tokens);
  CHECK(b.mask == d.mask);
  CHECK(b.count == d.count);
  CHECK(b.which == split::train);
  CHECK(b.spec.padded_length == s.padded_length);
  CHECK(b.spec.n_max[1] == 5);
  CHECK(b.spec.seed == s.seed);
  CHECK(b.spec.items_per_combination[0] == 3);
  // 1-byte tokens: header + count * Lpad * (1 + 1)
  CHECK(fs::file_size(dir / "train.bin") ==
        hax::data::kBinaryHeaderBytes + static_cast<std::uintmax_t>(d.count * s.padded_length * 2));

  hax::data::write_jsonl((dir / "train.jsonl").string(), d);
  auto const j = hax::data::read_jsonl((dir / "train.jsonl").string(), s);
  CHECK(j.tokens == d.tokens);
  CHECK(j.mask == d.mask);
  CHECK(j.count == d.count);
  std::ifstream in(dir / "train.jsonl");
  std::string first;
  std::getline(in, first);
  CHECK_THAT(first, ContainsSubstring("\"inputs\":[1,"));
  CHECK_THAT(first, ContainsSubstring("\"mask\":[0,"));
  // no temporary files left behind
  int files = 0;
  for (auto const& e : fs::directory_iterator(dir)) {
    (void)e;
    ++files;
  }
  CHECK(files == 2);
  fs::remove_all(dir);
}

TEST_CASE("data io: corrupt binary files give clear errors", "[data]") {
  auto const dir = scratch_dir("corrupt");
  recall_spec const s = small_spec();
  auto const d = make_split(hax::test::test_space{}, s, split::valid);
  auto const good = dir / "good.bin";
  hax::data::write_binary(good.string(), d);
  auto const bytes = read_bytes(good);
  auto const bad = dir / "bad.bin";

  CHECK_THROWS_WITH(hax::data::read_binary((dir / "missing.bin").string()),
                    ContainsSubstring("missing.bin") && ContainsSubstring("cannot open"));
  auto b = bytes;
  b[0] = 'X';
  write_bytes(bad, b);
  CHECK_THROWS_WITH(hax::data::read_binary(bad.string()), ContainsSubstring("wrong magic"));
  b = bytes;
  b[8] = 2;  // version 2
  write_bytes(bad, b);
  CHECK_THROWS_WITH(hax::data::read_binary(bad.string()), ContainsSubstring("unsupported format version 2"));
  b = bytes;
  b.resize(b.size() - 5);
  write_bytes(bad, b);
  CHECK_THROWS_WITH(hax::data::read_binary(bad.string()), ContainsSubstring("truncated payload"));
  b = bytes;
  b.resize(100);
  write_bytes(bad, b);
  CHECK_THROWS_WITH(hax::data::read_binary(bad.string()), ContainsSubstring("truncated header"));
  b = bytes;
  b[hax::data::kBinaryHeaderBytes + 17] ^= 0x01;  // one bit of one token
  write_bytes(bad, b);
  CHECK_THROWS_WITH(hax::data::read_binary(bad.string()), ContainsSubstring("checksum mismatch"));
  b = bytes;
  b[68] ^= 0x01;  // n_values in the header is covered by the checksum too
  write_bytes(bad, b);
  CHECK_THROWS_AS(hax::data::read_binary(bad.string()), hax::io_error);
  CHECK_NOTHROW(hax::data::read_binary(good.string()));
  fs::remove_all(dir);
}

TEST_CASE("data io: malformed JSON Lines give clear errors", "[data]") {
  auto const dir = scratch_dir("jsonl");
  auto const p = dir / "x.jsonl";
  recall_spec const s = small_spec();
  auto expect = [&](std::string const& text, std::string const& message) {
    write_text(p, text);
    CHECK_THROWS_WITH(hax::data::read_jsonl(p.string(), s), ContainsSubstring(message));
  };
  expect("{\"inputs\": [1, 4, 3], \"mask\": [0, 0, 0]}\n{\"inputs\": [1, 4\n", "line 2: malformed JSON");
  expect("[1, 2]\n", "not a JSON object");
  expect("{\"inputs\": [1, 4, 3]}\n", "missing array field 'mask'");
  expect("{\"inputs\": [1, 4, 3], \"mask\": [0, 0]}\n", "'mask' has 2");
  expect("{\"inputs\": [1, 4, 300], \"mask\": [0, 0, 0]}\n", "outside the vocabulary of 100");
  expect("{\"inputs\": [1, 4, 3], \"mask\": [0, 2, 0]}\n", "is not 0 or 1");
  expect("{\"inputs\": [1, 4, \"a\"], \"mask\": [0, 0, 0]}\n", "inputs[2] is not an integer");
  expect("{\"inputs\": [1, 4, 3], \"mask\": [0, 0, 0]}\n{\"inputs\": [1, 3], \"mask\": [0, 0]}\n", "differs from the first line");
  expect("\n", "no items");
  CHECK_THROWS_AS(hax::data::read_jsonl((dir / "none.jsonl").string(), s), hax::io_error);
  fs::remove_all(dir);
}

TEST_CASE("data io: a failed write leaves no file", "[data]") {
  auto const dir = scratch_dir("atomic");
  recall_spec const s = small_spec();
  auto const d = make_split(hax::test::test_space{}, s, split::valid);
  auto const target = dir / "no_such_dir" / "x.bin";
  CHECK_THROWS_AS(hax::data::write_binary(target.string(), d), hax::io_error);
  CHECK_THROWS_AS(hax::data::write_jsonl(target.string(), d), hax::io_error);
  CHECK_FALSE(fs::exists(target));
  // an existing file is replaced whole or not at all: inconsistent data is refused before writing
  auto const p = dir / "keep.bin";
  hax::data::write_binary(p.string(), d);
  auto const before = read_bytes(p);
  auto broken = d;
  broken.mask.pop_back();
  CHECK_THROWS_AS(hax::data::write_binary(p.string(), broken), hax::invalid_argument);
  CHECK(read_bytes(p) == before);
  int files = 0;
  for (auto const& e : fs::directory_iterator(dir)) {
    (void)e;
    ++files;
  }
  CHECK(files == 1);
  fs::remove_all(dir);
}

TEST_CASE("data: identical across backends and thread counts", "[data]") {
  recall_spec const s = small_spec();
  auto const serial = make_split(Kokkos::Serial{}, s, split::train);
  auto const host = make_split(Kokkos::DefaultHostExecutionSpace{}, s, split::train);
  CHECK(serial.tokens == host.tokens);
  CHECK(serial.mask == host.mask);
#if defined(KOKKOS_ENABLE_OPENMP)
  // Half the threads (or one) on a partition of the OpenMP pool.
  auto parts = Kokkos::Experimental::partition_space(Kokkos::OpenMP{}, 1, 1);
  auto const part = make_split(parts[0], s, split::train);
  CHECK(part.tokens == host.tokens);
  CHECK(part.mask == host.mask);
#endif
}

TEST_CASE("data: decoding prints the item with queried positions marked", "[data]") {
  recall_spec s = hax::data::resolve(recall_spec{});
  // BOS, A: a -> 3, b -> 2 | B: b -> 4, SEP, inquiry of the same.
  std::vector<std::int32_t> t = {1, 42, 26, 13, 27, 12, 43, 27, 14, 4, 43, 27, 14, 42, 26, 13, 3};
  std::vector<std::int8_t> m = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0};
  CHECK(hax::data::decode_item(s, t.data(), m.data(), static_cast<std::int64_t>(t.size())) ==
        "<bos> A a 3 b 2 | B b 4 <sep> B [b] 4 | A [a] 3");
}
