// SPDX-License-Identifier: MIT
/// safetensors export/import: round trips of every dtype from and into device Views, a byte-exact
/// tiny file written out by hand, the name-mapping hook, and validation of malformed files.
#include <hax/io/safetensors.hpp>

#include <catch2/catch_template_test_macros.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <cstdint>
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

/// A safetensors file made of a header text and `buffer_size` zero bytes.
std::vector<std::byte> make_safetensors(std::string const& header, std::size_t buffer_size) {
  std::vector<std::byte> out;
  hax::test::io::append_u64(out, header.size());
  auto const text = hax::test::io::to_bytes(header);
  out.insert(out.end(), text.begin(), text.end());
  out.resize(out.size() + buffer_size);
  return out;
}

}  // namespace

TEMPLATE_TEST_CASE("safetensors: round trip of every dtype at ranks 0..4 on the device", "[io]",
                   float, double, hax::io::bfloat16_bits, std::int32_t, std::int64_t,
                   std::uint8_t, std::int8_t, std::uint64_t) {
  using T = TestType;
  test_space const space;
  TempDir dir;
  device_view<T> r0("r0");                  // ()
  device_view<T*> r1("r1", 7);              // (7)
  device_view<T**> r2("r2", 3, 4);          // (3, 4)
  device_view<T***> r3("r3", 2, 3, 5);      // (2, 3, 5)
  device_view<T****> r4("r4", 2, 2, 3, 2);  // (2, 2, 3, 2)
  device_view<T*> empty("empty", 0);        // (0)
  fill_random_bytes(r0, 11);
  fill_random_bytes(r1, 12);
  fill_random_bytes(r2, 13);
  fill_random_bytes(r3, 14);
  fill_random_bytes(r4, 15);
  device_view<std::uint8_t*> bytes("bytes", 3);  // (3): a 1-byte tensor beside wider ones
  fill_random_bytes(bytes, 16);

  hax::io::TensorSet out;
  out.metadata() = {{"format", "pt"}, {"producer", "hax"}};
  out.add(space, "bytes", bytes);
  out.add(space, "r0", r0);
  out.add(space, "r1", r1);
  out.add(space, "r2", r2);
  out.add(space, "r3", r3);
  out.add(space, "r4", r4);
  out.add(space, "empty", empty);
  hax::io::write_safetensors(dir / "m.safetensors", out);
  auto const in = hax::io::read_safetensors(dir / "m.safetensors");
  REQUIRE(in.size() == 7);
  CHECK(in.metadata() == out.metadata());
  for (auto const& t : out.tensors()) {
    INFO(t.name);
    CHECK(in.at(t.name).type == t.type);
    CHECK(in.at(t.name).shape == t.shape);
    CHECK(in.at(t.name).bytes == t.bytes);
  }
  device_view<T***> b3("b3", 2, 3, 5);  // (2, 3, 5)
  device_view<T> b0("b0");              // ()
  in.copy_to(space, "r3", b3);
  in.copy_to(space, "r0", b0);
  CHECK(view_bytes(b3) == view_bytes(r3));
  CHECK(view_bytes(b0) == view_bytes(r0));
}

TEST_CASE("safetensors: a tiny file matches bytes written out by hand", "[io]") {
  test_space const space;
  TempDir dir;
  device_view<float*> weight("weight", 2);  // (2)
  hax::test::from_vector(weight, {1.0, -2.0});
  device_view<std::uint8_t*> ids("ids", 3);  // (3)
  hax::test::from_vector(ids, {1, 2, 3});
  hax::io::TensorSet set;
  set.metadata() = {{"format", "pt"}};
  set.add(space, "ids", ids);
  set.add(space, "weight", weight);
  hax::io::write_safetensors(dir / "tiny.safetensors", set);

  // Header: keys sorted, compact JSON, 145 bytes padded with 7 spaces to 152 = 0x98. The f32
  // tensor comes first in the buffer (wider elements first), then the u8 tensor.
  std::string const header =
      R"({"__metadata__":{"format":"pt"},"ids":{"data_offsets":[8,11],"dtype":"U8","shape":[3]},)"
      R"("weight":{"data_offsets":[0,8],"dtype":"F32","shape":[2]}})"
      "       ";
  std::vector<unsigned char> expected = {0x98, 0, 0, 0, 0, 0, 0, 0};
  expected.insert(expected.end(), header.begin(), header.end());
  for (unsigned char const b : {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, 0x01, 0x02, 0x03}) {
    expected.push_back(b);
  }
  auto const actual = hax::test::io::read_bytes(dir / "tiny.safetensors");
  REQUIRE(actual.size() == expected.size());
  CHECK(std::memcmp(actual.data(), expected.data(), expected.size()) == 0);

  // ... and the hand-written bytes read back.
  std::vector<std::byte> as_bytes(expected.size());
  std::memcpy(as_bytes.data(), expected.data(), expected.size());
  hax::test::io::write_bytes(dir / "hand.safetensors", as_bytes);
  auto const in = hax::io::read_safetensors(dir / "hand.safetensors");
  device_view<float*> w("w", 2);  // (2)
  in.copy_to(space, "weight", w);
  CHECK(hax::test::to_vector(w) == std::vector<double>{1.0, -2.0});
  CHECK(in.tensors().front().name == "weight");  // buffer order
  CHECK(in.metadata() == nlohmann::json{{"format", "pt"}});
}

TEST_CASE("safetensors: the name map renames on export and import", "[io]") {
  using Catch::Matchers::ContainsSubstring;
  test_space const space;
  TempDir dir;
  device_view<float**> w("w", 2, 2);  // (2, 2)
  fill_random_bytes(w, 3);
  hax::io::TensorSet set;
  set.add(space, "blocks.0.mixer.in_proj", w);
  set.add(space, "embedding", w);
  auto const to_reference = [](std::string const& name) {
    if (name == "embedding") return std::string("backbone.embeddings.weight");
    return std::string("backbone.layers.0.mixer.in_proj.weight");
  };
  hax::io::write_safetensors(dir / "ref.safetensors", set, to_reference);
  auto const raw = hax::io::read_safetensors(dir / "ref.safetensors");
  CHECK(raw.contains("backbone.embeddings.weight"));
  CHECK(raw.contains("backbone.layers.0.mixer.in_proj.weight"));
  CHECK_FALSE(raw.contains("embedding"));

  auto const from_reference = [](std::string const& name) {
    return name == "backbone.embeddings.weight" ? std::string("embedding")
                                                 : std::string("blocks.0.mixer.in_proj");
  };
  auto const back = hax::io::read_safetensors(dir / "ref.safetensors", from_reference);
  CHECK(back.at("embedding").bytes == set.at("embedding").bytes);
  CHECK(back.at("blocks.0.mixer.in_proj").bytes == set.at("blocks.0.mixer.in_proj").bytes);

  auto const collide = [](std::string const&) { return std::string("same"); };
  CHECK_THROWS_AS(hax::io::write_safetensors(dir / "bad.safetensors", set, collide),
                  hax::invalid_argument);
  CHECK_THROWS_WITH(hax::io::write_safetensors(dir / "bad.safetensors", set, collide),
                    ContainsSubstring("same"));
  CHECK_THROWS_AS(hax::io::read_safetensors(dir / "ref.safetensors", collide), hax::io_error);
  CHECK_FALSE(std::filesystem::exists(dir / "bad.safetensors"));
}

TEST_CASE("safetensors: metadata must be an object of strings", "[io]") {
  using Catch::Matchers::ContainsSubstring;
  TempDir dir;
  hax::io::TensorSet set;
  set.metadata() = {{"step", 3}};
  CHECK_THROWS_AS(hax::io::write_safetensors(dir / "m.safetensors", set), hax::invalid_argument);
  CHECK_THROWS_WITH(hax::io::write_safetensors(dir / "m.safetensors", set),
                    ContainsSubstring("step") && ContainsSubstring("strings"));
  CHECK(dir.entries().empty());
}

TEST_CASE("safetensors: malformed files are rejected with the path and the problem", "[io]") {
  using Catch::Matchers::ContainsSubstring;
  TempDir dir;
  auto const path = dir / "bad.safetensors";
  auto const expect_error = [&](std::vector<std::byte> const& bytes, std::string const& problem) {
    hax::test::io::write_bytes(path, bytes);
    INFO(problem);
    CHECK_THROWS_AS(hax::io::read_safetensors(path), hax::io_error);
    CHECK_THROWS_WITH(hax::io::read_safetensors(path),
                      ContainsSubstring(path.string()) && ContainsSubstring(problem));
  };
  std::string const ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  hax::test::io::write_bytes(path, make_safetensors(ok, 8));
  CHECK(hax::io::read_safetensors(path).at("a").shape == std::vector<std::uint64_t>{2});

  expect_error({std::byte{1}, std::byte{0}}, "truncated");
  auto too_long = make_safetensors(ok, 8);
  too_long[0] = std::byte{0xff};
  expect_error(too_long, "header length");
  expect_error(make_safetensors(ok, 7), "outside");  // buffer truncated
  expect_error(make_safetensors("{\"a\":", 0), "not valid JSON");
  expect_error(make_safetensors("[1, 2]", 0), "not an object");
  expect_error(make_safetensors(R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", 4),
               "unsupported dtype");
  expect_error(make_safetensors(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
               "do not match");
  expect_error(make_safetensors(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
               "shape");
  expect_error(make_safetensors(R"({"a":{"dtype":"F32","shape":[1,1,1,1,2],)"
                                R"("data_offsets":[0,8]}})",
                                8),
               "shape");
  expect_error(make_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8),
               "outside");
  expect_error(make_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                12),
               "overlap");
  expect_error(make_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                                16),
               "duplicate tensor name \"a\"");
  expect_error(make_safetensors(R"({"__metadata__":{"step":3}})", 0), "not a string");
  expect_error(make_safetensors(R"({"a":{"dtype":"F32","shape":[2]}})", 8), "exactly");
  CHECK_THROWS_WITH(hax::io::read_safetensors(dir / "missing.safetensors"),
                    ContainsSubstring("missing.safetensors") && ContainsSubstring("no such file"));
}
