// SPDX-License-Identifier: MIT
/// \file
/// Run-time flag to compile-time constant, without macros (cf. BOOL_SWITCH in mamba's csrc).
#pragma once

#include <utility>

namespace hax::core {

/// Calls f.template operator()<flag>() with `flag` as a compile-time constant.
/// Usage: dispatch_bool(has_bias, [&]<bool kHasBias>() { launch<kHasBias>(...); });
template <class F>
decltype(auto) dispatch_bool(bool flag, F&& f) {
  if (flag) {
    return std::forward<F>(f).template operator()<true>();
  }
  return std::forward<F>(f).template operator()<false>();
}

}  // namespace hax::core
