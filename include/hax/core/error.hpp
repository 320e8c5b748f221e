// SPDX-License-Identifier: MIT
/// \file
/// Errors hax raises for bad input: every message names the operation and the offending input.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace hax {

/// Thrown for invalid arguments: wrong shapes, out-of-range settings, unknown names, bad files.
/// The message always starts with the operation, e.g. "hax::data::generate_split: n_min (7) > n_max (5)".
class invalid_argument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// Thrown when a file cannot be read or written, or its content is corrupt.
class io_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Thrown when a numerical check fails at run time (e.g. a non-finite loss).
class numerical_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace core {

/// Concatenates the pieces with operator<< into one string.
template <class... Pieces>
std::string concat(Pieces const&... pieces) {
  std::ostringstream out;
  (out << ... << pieces);
  return out.str();
}

/// Throws hax::invalid_argument("<op>: <pieces...>") unless `condition` holds.
template <class... Pieces>
void require(bool condition, std::string_view op, Pieces const&... pieces) {
  if (!condition) {
    throw invalid_argument(concat(op, ": ", pieces...));
  }
}

}  // namespace core
}  // namespace hax
