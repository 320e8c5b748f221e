// SPDX-License-Identifier: MIT
/// \file
/// perturb_all: moves every parameter of a store off its initial value, for the tests that need
/// every path of a layer to carry signal.
#pragma once

#include <cstddef>
#include <cstdint>

#include "support/compare.hpp"

namespace hax::test {

/// Adds a uniform offset in [-0.2, 0.2) from `seed` to every parameter of `store` (an
/// nn::ParameterStore), so that none stays at a special initial value (E = 1, D = 1, zero biases).
template <class Store>
void perturb_all(Store& store, std::uint64_t seed = 77) {
  auto v = to_vector(store.values());
  auto const r = random_vector(v.size(), seed, -0.2, 0.2);
  for (std::size_t i = 0; i < v.size(); ++i) {
    v[i] += r[i];
  }
  from_vector(store.values(), v);
}

}  // namespace hax::test
