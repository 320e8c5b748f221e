// SPDX-License-Identifier: MIT
/// \file
/// What the nn ops' argument checks and column sums share: the shape helpers of core/shape.hpp,
/// and the row chunk of the parameter-gradient column sums.
#pragma once

#include <hax/core/shape.hpp>

namespace hax::nn::impl {

using core::require_same_shape;
using core::same_shape;
using core::shape_of;

/// Rows per work item of the column sums of parameter gradients (de of the scaled gate,
/// nn/elementwise.hpp): enough rows to amortise one atomic per column and chunk, few enough that B·L = 67 648
/// rows still give every thread (and every GPU warp) work.
inline constexpr int kRowsPerChunk = 128;

}  // namespace hax::nn::impl
