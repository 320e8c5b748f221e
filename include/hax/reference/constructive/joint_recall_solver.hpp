// SPDX-License-Identifier: MIT
/// \file
/// Plain serial version of the constructive joint-recall model (hax/constructive/
/// joint_recall_solver.hpp), written to be read and used as the oracle in tests. It keeps the
/// state as symbols instead of ±1 codes, and finds each query's key by comparing symbols while
/// walking back over all earlier positions (O(L²) per sequence: tests only).
#pragma once

#include <hax/data/joint_recall.hpp>

#include <cstddef>
#include <vector>

namespace hax::reference::constructive {

/// What the overwrite layer's state says after a token, as symbols.
struct symbolic_state {
  std::vector<int> path;  ///< (w) latest symbol of every level; 0 before the first one
  int value = 0;          ///< latest value symbol; 0 before the first one
  bool is_value = false;  ///< whether the current token is a value
};

/// The state before the first token: every level and the value at symbol 0 (the device layer's
/// initial state holds their codes), not a value.
inline symbolic_state initial_state(hax::data::recall_spec const& spec) {
  symbolic_state s;
  s.path.assign(static_cast<std::size_t>(spec.levels), 0);
  return s;
}

/// The state after `token`: a level-l token replaces the level-l symbol, a value token the value;
/// every token in the vocabulary sets is_value; ids outside the vocabulary change nothing.
inline symbolic_state next_state(hax::data::recall_spec const& spec, symbolic_state s, int token) {
  if (token < 0 || token >= spec.vocab_size) return s;
  int const v = token - spec.value_bias;
  s.is_value = v >= 0 && v < spec.n_values;
  if (s.is_value) s.value = v;
  for (int l = 0; l < spec.levels; ++l) {
    int const c = token - hax::data::level_token(spec, l, 0);
    if (c >= 0 && c < spec.n_max[l]) s.path[static_cast<std::size_t>(l)] = c;
  }
  return s;
}

/// Predicted next token at every position of `tokens`: the value token stored at the most recent
/// position j <= t that is a value of the same path as position t, or −1 if there is none.
inline std::vector<int> solve(hax::data::recall_spec const& spec, std::vector<int> const& tokens) {
  std::vector<symbolic_state> states;
  states.reserve(tokens.size());
  symbolic_state s = initial_state(spec);
  for (int token : tokens) {
    s = next_state(spec, s, token);
    states.push_back(s);
  }
  std::vector<int> predictions(tokens.size(), -1);
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    for (std::size_t j = t + 1; j-- > 0;) {
      if (states[j].is_value && states[j].path == states[t].path) {
        predictions[t] = spec.value_bias + states[j].value;
        break;
      }
    }
  }
  return predictions;
}

}  // namespace hax::reference::constructive
