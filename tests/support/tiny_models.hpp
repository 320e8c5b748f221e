// SPDX-License-Identifier: MIT
/// \file
/// Model configurations small enough for tests on every backend, shared by the train and model
/// tests.
#pragma once

#include <hax/models/config.hpp>

#include <string>
#include <utility>

namespace hax::test {

/// A two-layer Mamba2 with the HAX branch (sign_bin_lsh+key_selection) at toy sizes: d_model 8,
/// 2 heads of 8, N = 4, chunk 8, k = 4 keys, 2 hash bits.
inline hax::models::ModelConfig tiny_mamba2_hybrid(std::string semantics = "causal") {
  hax::models::ModelConfig c;
  c.base = hax::models::Base::mamba2;
  c.hidden_size = 8;
  c.intermediate_size = 16;
  c.num_heads = 2;
  c.head_dim = 8;
  c.state_size = 4;
  c.chunk_size = 8;
  c.num_hidden_layers = 2;
  c.sparse_arch = "sign_bin_lsh+key_selection";
  c.sparse_keys = 4;
  c.num_hash = 2;
  c.semantics = std::move(semantics);
  return c;
}

}  // namespace hax::test
