// SPDX-License-Identifier: MIT
/// \file
/// The library version, for messages and file headers.
#pragma once

namespace hax {

inline constexpr int version_major = 0;
inline constexpr int version_minor = 1;
inline constexpr int version_patch = 0;
inline constexpr char const version_string[] = "0.1.0";

}  // namespace hax
