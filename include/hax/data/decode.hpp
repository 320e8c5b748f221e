// SPDX-License-Identifier: MIT
/// \file
/// Human-readable decoding of joint-recall items (host only): level-0 entries as capital letters
/// (A, B, ...), level-1 entries as small letters (a, b, ...), deeper levels as x0, x1, ...,
/// values as their index 0..|V|-1, `|` between top-level blocks, `<bos>`, `<sep>`, and queried
/// (mask 1) tokens in brackets: "<bos> A a 3 b 2 | B b 4 a 1 <sep> B [a] 1 [b] 4 | A ...".
#pragma once

#include <hax/data/joint_recall.hpp>

#include <cstdint>
#include <string>

namespace hax::data {

/// Name of one token id under `spec` (resolved): "<bos>", "A", "b", "x3", "7" (a value), "?42".
inline std::string token_name(recall_spec const& s, int id) {
  if (id == s.bos) return "<bos>";
  if (id == s.sep) return "<sep>";
  if (id == s.pad) return "<pad>";
  if (id >= s.value_bias && id < s.value_bias + s.n_values) return std::to_string(id - s.value_bias);
  for (int l = 0; l < s.levels; ++l) {
    int const c = id - level_token(s, l, 0);
    if (c >= 0 && c < s.level_capacity) {
      if (l == 0 && c < 26) return std::string(1, static_cast<char>('A' + c));
      if (l == 1 && c < 26) return std::string(1, static_cast<char>('a' + c));
      return "x" + std::to_string(l) + "." + std::to_string(c);
    }
  }
  return "?" + std::to_string(id);
}

/// Decodes one padded row (`length` tokens and mask entries) up to its first PAD.
inline std::string decode_item(recall_spec const& s, std::int32_t const* tokens,
                               std::int8_t const* mask, std::int64_t length) {
  std::string out;
  bool first_block = true;
  for (std::int64_t p = 0; p < length && tokens[p] != s.pad; ++p) {
    int const id = tokens[p];
    bool const top = id >= level_token(s, 0, 0) && id < level_token(s, 0, 0) + s.level_capacity;
    if (top && s.levels > 1) {
      if (!first_block) out += "| ";
      first_block = false;
    }
    if (id == s.sep) first_block = true;
    std::string name = token_name(s, id);
    if (mask[p] != 0) name = "[" + name + "]";
    out += name;
    out += ' ';
  }
  if (!out.empty()) out.pop_back();
  return out;
}

}  // namespace hax::data
