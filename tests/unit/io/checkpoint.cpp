// SPDX-License-Identifier: MIT
/// Checkpoint round trips from and into device Views (every dtype, ranks 0..4, empty and large
/// tensors, non-row-major layouts), metadata round trip, the documented byte layout, and the
/// shape/dtype checks of TensorSet::copy_to.
#include <hax/io/checkpoint.hpp>

#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <cstdint>
#include <limits>
#include <string>

#include "support/compare.hpp"
#include "support/test_space.hpp"
#include "unit/io/io_test_support.hpp"

namespace {

using hax::test::test_space;
using hax::test::io::TempDir;
using hax::test::io::fill_random_bytes;
using hax::test::io::view_bytes;
template <class D>
using device_view = Kokkos::View<D, Kokkos::LayoutRight, hax::test::test_memory_space>;

}  // namespace

TEMPLATE_TEST_CASE("checkpoint: round trip of every dtype at ranks 0..4 on the device", "[io]",
                   float, double, hax::io::bfloat16_bits, std::int32_t, std::int64_t,
                   std::uint8_t, std::int8_t, std::uint64_t) {
  using T = TestType;
  test_space const space;
  TempDir dir;
  device_view<T> r0("r0");                      // ()
  device_view<T*> r1("r1", 5);                  // (5)
  device_view<T**> r2("r2", 3, 4);              // (3, 4)
  device_view<T***> r3("r3", 2, 3, 5);          // (2, 3, 5)
  device_view<T****> r4("r4", 2, 1, 3, 2);      // (2, 1, 3, 2)
  device_view<T*> empty("empty", 0);            // (0)
  device_view<T***> empty3("empty3", 2, 0, 3);  // (2, 0, 3)
  fill_random_bytes(r0, 1);
  fill_random_bytes(r1, 2);
  fill_random_bytes(r2, 3);
  fill_random_bytes(r3, 4);
  fill_random_bytes(r4, 5);

  hax::io::TensorSet out;
  out.add(space, "r0", r0);
  out.add(space, "r1", r1);
  out.add(space, "r2", r2);
  out.add(space, "r3", r3);
  out.add(space, "r4", r4);
  out.add(space, "empty", empty);
  out.add(space, "empty3", empty3);
  auto const path = dir / "model.haxckpt";
  hax::io::write_checkpoint(path, out);
  auto const in = hax::io::read_checkpoint(path);

  REQUIRE(in.size() == 7);
  CHECK(in.at("r3").type == hax::io::dtype_of<T>::value);
  CHECK(in.at("r3").shape == std::vector<std::uint64_t>{2, 3, 5});
  CHECK(in.at("r0").shape.empty());
  CHECK(in.at("empty3").shape == std::vector<std::uint64_t>{2, 0, 3});

  device_view<T> b0("b0");
  device_view<T*> b1("b1", 5);
  device_view<T**> b2("b2", 3, 4);
  device_view<T***> b3("b3", 2, 3, 5);
  device_view<T****> b4("b4", 2, 1, 3, 2);
  device_view<T*> bempty("bempty", 0);
  device_view<T***> bempty3("bempty3", 2, 0, 3);
  in.copy_to(space, "r0", b0);
  in.copy_to(space, "r1", b1);
  in.copy_to(space, "r2", b2);
  in.copy_to(space, "r3", b3);
  in.copy_to(space, "r4", b4);
  in.copy_to(space, "empty", bempty);
  in.copy_to(space, "empty3", bempty3);
  CHECK(view_bytes(b0) == view_bytes(r0));
  CHECK(view_bytes(b1) == view_bytes(r1));
  CHECK(view_bytes(b2) == view_bytes(r2));
  CHECK(view_bytes(b3) == view_bytes(r3));
  CHECK(view_bytes(b4) == view_bytes(r4));
  CHECK(view_bytes(b3) != std::vector<std::byte>(b3.size() * sizeof(T)));  // not trivially zero
}

TEST_CASE("checkpoint: a large tensor round-trips exactly", "[io]") {
  test_space const space;
  TempDir dir;
  device_view<float**> w("w", 1024, 1000);  // (1024, 1000): 4 MB
  fill_random_bytes(w, 42);
  hax::io::TensorSet out;
  out.add(space, "w", w);
  hax::io::write_checkpoint(dir / "big.haxckpt", out);
  device_view<float**> back("back", 1024, 1000);  // (1024, 1000)
  hax::io::read_checkpoint(dir / "big.haxckpt").copy_to(space, "w", back);
  CHECK(view_bytes(back) == view_bytes(w));
}

TEST_CASE("checkpoint: LayoutLeft and strided Views are stored in row-major order", "[io]") {
  test_space const space;
  TempDir dir;
  Kokkos::View<double**, Kokkos::LayoutLeft, hax::test::test_memory_space> left("left", 3, 4);
  auto const values = hax::test::fill_random(left, 7);  // values in memory (column-major) order
  device_view<double***> cube("cube", 4, 3, 5);        // (4, 3, 5)
  fill_random_bytes(cube, 8);
  auto const strided = Kokkos::subview(cube, Kokkos::ALL, 1, Kokkos::ALL);  // (4, 5) strided

  hax::io::TensorSet out;
  out.add(space, "left", left);
  out.add(space, "strided", strided);
  hax::io::write_checkpoint(dir / "layouts.haxckpt", out);
  auto const in = hax::io::read_checkpoint(dir / "layouts.haxckpt");

  // The file holds row-major elements: entry (i, j) of a (3, 4) tensor is at i * 4 + j.
  auto const& raw = in.at("left").bytes;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 4; ++j) {
      double stored = 0;
      std::memcpy(&stored, raw.data() + (i * 4 + j) * sizeof(double), sizeof(double));
      CHECK(stored == values[static_cast<std::size_t>(j * 3 + i)]);
    }
  }
  // Reading back into a LayoutRight View, a LayoutLeft View and a strided View.
  device_view<double**> right("right", 3, 4);
  in.copy_to(space, "left", right);
  Kokkos::View<double**, Kokkos::LayoutLeft, hax::test::test_memory_space> left_back("lb", 3, 4);
  in.copy_to(space, "left", left_back);
  device_view<double***> cube_back("cube_back", 4, 3, 5);
  in.copy_to(space, "strided", Kokkos::subview(cube_back, Kokkos::ALL, 1, Kokkos::ALL));
  auto const hl = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, left);
  auto const hr = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, right);
  auto const hlb = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, left_back);
  auto const hc = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, cube);
  auto const hcb = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace{}, cube_back);
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 4; ++j) {
      CHECK(hr(i, j) == hl(i, j));
      CHECK(hlb(i, j) == hl(i, j));
    }
  }
  for (int i = 0; i < 4; ++i) {
    for (int k = 0; k < 5; ++k) {
      CHECK(std::memcmp(&hcb(i, 1, k), &hc(i, 1, k), sizeof(double)) == 0);
    }
  }
}

TEST_CASE("checkpoint: metadata and header round trip", "[io]") {
  TempDir dir;
  hax::io::TensorSet out;
  out.metadata() = {
      {"config", {{"base", "mamba2"}, {"hidden_size", 64}, {"sparse_arch", "sign_bin_lsh"}}},
      {"step", std::int64_t{123456789012}},
      {"rng", {{"seed", std::numeric_limits<std::uint64_t>::max()}, {"counter", 17}}},
      {"lr", 2e-3},
      {"data_position", {1, 2, 3}},
      {"note", "ünïcödé ✓"},
      {"flag", true},
      {"nothing", nullptr}};
  hax::io::write_checkpoint(dir / "meta.haxckpt", out);
  hax::io::CheckpointHeader header;
  auto const in = hax::io::read_checkpoint(dir / "meta.haxckpt", &header);
  CHECK(in.metadata() == out.metadata());
  CHECK(in.metadata()["rng"]["seed"].get<std::uint64_t>() ==
        std::numeric_limits<std::uint64_t>::max());
  CHECK(in.size() == 0);
  CHECK(header.format_version == hax::io::kCheckpointFormatVersion);
  CHECK(header.hax_version == std::string(hax::version_string));
}

TEST_CASE("checkpoint: the byte layout matches docs/checkpoint_format.md", "[io]") {
  using hax::test::io::load_u64;
  test_space const space;
  TempDir dir;
  device_view<float*> w("w", 3);  // (3)
  hax::test::from_vector(w, {1.0, -2.0, 0.5});
  hax::io::TensorSet out;
  out.add(space, "w", w);
  hax::io::write_checkpoint(dir / "tiny.haxckpt", out);
  auto const b = hax::test::io::read_bytes(dir / "tiny.haxckpt");

  // header (64) | "{}" (2) | table entry: 4 + 1 + 1 + 1 + 2 + 8 (dim) + 8 + 8 + 8 = 41 bytes,
  // ending at 107 | payload at align64(107) = 128, 12 bytes | trailer at align64(140) = 192.
  REQUIRE(b.size() == 208);
  CHECK(std::memcmp(b.data(), "HAXCKPT\0", 8) == 0);
  CHECK(load_u64(b, 8) == (std::uint64_t{0x01020304} << 32 | 1));  // version 1, then the marker
  CHECK(b[12] == std::byte{0x04});                                  // marker, little-endian
  CHECK(std::string(reinterpret_cast<char const*>(b.data()) + 16) == hax::version_string);
  CHECK(load_u64(b, 32) == 208);  // file size
  CHECK(load_u64(b, 40) == 2);    // metadata size
  CHECK(load_u64(b, 48) == 1);    // tensor count
  CHECK(load_u64(b, 56) == 41);   // table size
  CHECK(std::memcmp(b.data() + 64, "{}", 2) == 0);
  CHECK(std::memcmp(b.data() + 66, "\x01\x00\x00\x00w", 5) == 0);  // name length 1, "w"
  CHECK(b[71] == std::byte{1});                              // dtype f32
  CHECK(b[72] == std::byte{1});                              // rank 1
  CHECK(load_u64(b, 75) == 3);                               // dimension
  CHECK(load_u64(b, 83) == 128);                             // offset
  CHECK(load_u64(b, 91) == 12);                              // size
  unsigned char const payload[12] = {0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0, 0, 0, 0, 0x3f};
  CHECK(std::memcmp(b.data() + 128, payload, 12) == 0);
  // FNV-1a 64 written out here (not through the library) as the per-tensor checksum.
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char const c : payload) {
    h = (h ^ c) * 0x100000001b3ULL;
  }
  CHECK(load_u64(b, 99) == h);
  for (std::size_t i = 140; i < 192; ++i) {
    CHECK(b[i] == std::byte{0});  // padding
  }
  CHECK(std::memcmp(b.data() + 192, "HAXCKEND", 8) == 0);
  std::uint64_t whole = 0xcbf29ce484222325ULL;
  for (std::size_t i = 0; i < 200; ++i) {
    whole = (whole ^ static_cast<std::uint64_t>(b[i])) * 0x100000001b3ULL;
  }
  CHECK(load_u64(b, 200) == whole);
}

TEST_CASE("checkpoint: copy_to checks dtype, shape and name", "[io]") {
  using Catch::Matchers::ContainsSubstring;
  test_space const space;
  hax::io::TensorSet set;
  device_view<float**> w("w", 2, 3);  // (2, 3)
  set.add(space, "layer.0.weight", w);

  device_view<float**> transposed("transposed", 3, 2);  // (3, 2)
  CHECK_THROWS_AS(set.copy_to(space, "layer.0.weight", transposed), hax::invalid_argument);
  CHECK_THROWS_WITH(set.copy_to(space, "layer.0.weight", transposed),
                    ContainsSubstring("layer.0.weight") && ContainsSubstring("(2, 3)") &&
                        ContainsSubstring("(3, 2)"));
  device_view<float*> flat("flat", 6);  // (6)
  CHECK_THROWS_WITH(set.copy_to(space, "layer.0.weight", flat),
                    ContainsSubstring("(2, 3)") && ContainsSubstring("(6)"));
  device_view<double**> wrong_type("wrong_type", 2, 3);  // (2, 3)
  CHECK_THROWS_WITH(set.copy_to(space, "layer.0.weight", wrong_type),
                    ContainsSubstring("f32") && ContainsSubstring("f64") &&
                        ContainsSubstring("layer.0.weight"));
  CHECK_THROWS_AS(set.copy_to(space, "layer.1.weight", w), hax::invalid_argument);
  CHECK_THROWS_WITH(set.copy_to(space, "layer.1.weight", w), ContainsSubstring("layer.1.weight"));
  CHECK_THROWS_WITH(set.add(space, "layer.0.weight", w), ContainsSubstring("duplicate"));
  CHECK_THROWS_AS(set.add(space, "", w), hax::invalid_argument);
  CHECK(set.size() == 1);
}

TEST_CASE("checkpoint: metadata that is not an object is rejected on write", "[io]") {
  using Catch::Matchers::ContainsSubstring;
  TempDir dir;
  hax::io::TensorSet set;
  set.metadata() = nlohmann::json::array({1, 2});
  CHECK_THROWS_AS(hax::io::write_checkpoint(dir / "x.haxckpt", set), hax::invalid_argument);
  CHECK_THROWS_WITH(hax::io::write_checkpoint(dir / "x.haxckpt", set),
                    ContainsSubstring("JSON object"));
  set.metadata() = {{"bad", std::string("\xff\xfe")}};  // not UTF-8
  CHECK_THROWS_AS(hax::io::write_checkpoint(dir / "x.haxckpt", set), hax::invalid_argument);
  CHECK(dir.entries().empty());  // nothing written, no temporary left
}
