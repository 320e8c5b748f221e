// SPDX-License-Identifier: MIT
/// \file
/// hax::models::StepContext: what a mixer needs to know about the step it runs in (seed, update
/// number, layer, training or evaluation, gate-loss weight). It is hax::attn::StepContext once the
/// sparse branch header exists; until then a local struct with the same fields stands in, so the
/// model and the trainer build either way.
#pragma once

#include <cstdint>

#if __has_include(<hax/attention/sparse_branch.hpp>)
#include <hax/attention/sparse_branch.hpp>
namespace hax::models {
using StepContext = attn::StepContext;
}
#define HAX_MODELS_HAS_SPARSE_BRANCH 1
#else
namespace hax::models {
/// Same fields as hax::attn::StepContext (include/hax/attention/sparse_branch.hpp).
struct StepContext {
  std::uint64_t seed = 1;
  std::uint64_t step = 0;
  int layer = 0;
  bool training = true;
  double gate_loss_weight = 0.1;
};
}  // namespace hax::models
#define HAX_MODELS_HAS_SPARSE_BRANCH 0
#endif
