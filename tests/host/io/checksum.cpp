// SPDX-License-Identifier: MIT
/// FNV-1a 64 against published test vectors, and incremental = one-shot.
#include <hax/io/checksum.hpp>

#include <catch2/catch_test_macros.hpp>

#include <cstddef>
#include <string>
#include <vector>

TEST_CASE("checksum: FNV-1a 64 matches the reference test vectors", "[io]") {
  // From the FNV reference implementation's test suite (test_fnv.c, fnv1a_64).
  CHECK(hax::io::fnv1a64(std::string_view{""}) == 0xcbf29ce484222325ULL);
  CHECK(hax::io::fnv1a64(std::string_view{"a"}) == 0xaf63dc4c8601ec8cULL);
  CHECK(hax::io::fnv1a64(std::string_view{"foobar"}) == 0x85944171f73967e8ULL);
}

TEST_CASE("checksum: incremental updates equal the one-shot checksum", "[io]") {
  std::vector<std::byte> data(1000);
  for (std::size_t i = 0; i < data.size(); ++i) {
    data[i] = static_cast<std::byte>(i * 37 + 11);
  }
  hax::io::Fnv1a64 h;
  h.update(std::span<std::byte const>(data).first(1));
  h.update(std::span<std::byte const>(data).subspan(1, 500));
  h.update(std::span<std::byte const>(data).subspan(501));
  CHECK(h.digest() == hax::io::fnv1a64(data));
  auto flipped = data;
  flipped[600] ^= std::byte{0x01};
  CHECK(hax::io::fnv1a64(flipped) != hax::io::fnv1a64(data));
}
