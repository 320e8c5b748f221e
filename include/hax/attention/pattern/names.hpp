// SPDX-License-Identifier: MIT
/// \file
/// Pattern names (semantics.md section 9): parse a '+'-joined name such as
/// `sliding_window+dilated` or `sign_bin_lsh+key_selection` with a budget k split evenly among
/// the parts (k = 64 -> 32 + 32), and build a RuntimePattern: a small runtime-configurable union
/// of up to four parts, each a static pattern or a candidate list filled by a plan step.
///
/// Why a runtime type: a union's compile-time type depends on the names, which a model reads from
/// its configuration. RuntimePattern switches over the part kinds inside key/allows; the
/// compile-time types (`SlidingWindow{32} | Dilated{...}`) remain usable directly and are what the
/// tests compare it with. Data-dependent parts (sign_bin_lsh, argmax_lsh, key_selection) hold a
/// CandidateList (B, L, k') that the caller attaches with set_candidates() after the plan step.
#pragma once

#include <hax/attention/pattern/candidate_list.hpp>
#include <hax/attention/pattern/concepts.hpp>
#include <hax/attention/pattern/dilated.hpp>
#include <hax/attention/pattern/full.hpp>
#include <hax/attention/pattern/sink.hpp>
#include <hax/attention/pattern/sliding_window.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>

#include <array>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace hax::attn {

/// The part kinds a name may contain.
enum class PatternKind : int { sliding_window, dilated, sink, full, sign_bin_lsh, argmax_lsh, key_selection };

/// The names accepted for the parts, in PatternKind order.
inline constexpr std::array<std::string_view, 7> pattern_part_names = {
    "sliding_window", "dilated", "sink", "full", "sign_bin_lsh", "argmax_lsh", "key_selection"};

/// True for the parts whose candidates come from a plan step (a CandidateList).
constexpr bool is_data_dependent(PatternKind kind) {
  return kind == PatternKind::sign_bin_lsh || kind == PatternKind::argmax_lsh ||
         kind == PatternKind::key_selection;
}

/// One part of a parsed name and its share k' of the budget.
struct PatternPart {
  PatternKind kind;
  int kprime;  // k / number of parts
};

/// The most parts a RuntimePattern holds.
inline constexpr int max_pattern_parts = 4;

/// Splits `name` on '+' and the budget k evenly among the parts. Throws hax::invalid_argument
/// for an unknown or empty part (listing the known names), a repeated part, more than
/// max_pattern_parts parts, k < 1, or k not divisible by the number of parts.
inline std::vector<PatternPart> parse_pattern_name(std::string_view name, int k) {
  constexpr std::string_view op = "hax::attn::parse_pattern_name";
  std::vector<std::string_view> pieces;
  for (std::size_t start = 0;;) {
    std::size_t const plus = name.find('+', start);
    pieces.push_back(name.substr(start, plus == std::string_view::npos ? plus : plus - start));
    if (plus == std::string_view::npos) { break; }
    start = plus + 1;
  }
  std::string known;
  for (auto n : pattern_part_names) { known += (known.empty() ? "" : ", ") + std::string(n); }
  std::vector<PatternPart> parts;
  for (auto piece : pieces) {
    int found = -1;
    for (int i = 0; i < static_cast<int>(pattern_part_names.size()); ++i) {
      if (pattern_part_names[i] == piece) { found = i; }
    }
    core::require(found >= 0, op, "unknown pattern part '", piece, "' in name '", name,
                  "'; known parts (join with '+'): ", known);
    for (auto const& p : parts) {
      core::require(static_cast<int>(p.kind) != found, op, "part '", piece,
                    "' appears twice in name '", name, "'");
    }
    parts.push_back(PatternPart{static_cast<PatternKind>(found), 0});
  }
  int const n = static_cast<int>(parts.size());
  core::require(n <= max_pattern_parts, op, "name '", name, "' has ", n, " parts; at most ",
                max_pattern_parts, " are supported");
  core::require(k >= 1 && k % n == 0, op, "the key budget k (", k, ") must be a positive multiple of the ",
                n, " parts of '", name, "' so that it splits evenly");
  for (auto& p : parts) { p.kprime = k / n; }
  return parts;
}

/// A union of up to max_pattern_parts parts chosen at run time; satisfies sparse_pattern.
/// Part p's candidates occupy slots [offset_p, offset_p + size_p); a candidate an earlier part
/// already allows is written as -1, so no key is visited twice (as Union).
///
/// That check costs O(k') per key when an earlier part is a list, and every kernel pass repeats it
/// (forward, backward, the gather's transposition). set_candidates(space, kind, idx) does it once
/// per plan instead: it writes -1 into the part's own list for the keys earlier parts allow, and
/// key() then skips the check for that part.
template <class MemorySpace = Kokkos::DefaultExecutionSpace::memory_space>
struct RuntimePattern {
  /// One part: its kind, the static pattern's parameters, or the index of its candidate list.
  struct Part {
    PatternKind kind = PatternKind::full;
    int a = 0;  // sliding_window: width; dilated: stride; sink: count; full: L; lists: list index
    int b = 0;  // dilated: count
  };
  int num_parts = 0;
  Part parts[max_pattern_parts] = {};           // (num_parts)
  CandidateList<MemorySpace> lists[2] = {};     // (at most two data-dependent parts)
  int list_kprime[2] = {0, 0};                  // the k' each list must have (its extent 2)
  bool disjoint[max_pattern_parts] = {};        // part p's list holds no key an earlier part allows

  /// Host check before a launch: every data-dependent part has a list of shape (B, L, k').
  void check(int B, int L) const {
    for (int p = 0; p < num_parts; ++p) {
      if (!is_data_dependent(parts[p].kind)) { continue; }
      auto const& list = lists[parts[p].a];
      core::require(list.idx.extent_int(2) == list_kprime[parts[p].a] && list.idx.size() > 0,
                    "hax::attn::RuntimePattern", "part '", pattern_part_names[int(parts[p].kind)],
                    "' needs a candidate list of k' = ", list_kprime[parts[p].a],
                    " (set_candidates after its plan step); it has extent 2 = ", list.idx.extent(2));
      list.check(B, L);
    }
  }
  /// Attaches the plan step's candidates idx (B, L, k') to the part of kind `kind`.
  template <class Idx>
  void set_candidates(PatternKind kind, Idx const& idx) {
    for (int p = 0; p < num_parts; ++p) {
      if (parts[p].kind == kind && is_data_dependent(kind)) {
        core::require(idx.extent_int(2) == list_kprime[parts[p].a], "hax::attn::RuntimePattern::set_candidates",
                      "idx extent 2 (", idx.extent(2), ") must equal the part's k' = ",
                      list_kprime[parts[p].a]);
        lists[parts[p].a] = CandidateList<MemorySpace>(idx);
        disjoint[p] = false;
        return;
      }
    }
    core::require(false, "hax::attn::RuntimePattern::set_candidates", "the pattern has no part '",
                  pattern_part_names[int(kind)], "' that takes candidates");
  }
  /// Attaches idx (B, L, k') as set_candidates(kind, idx) does, after writing -1 into idx, on
  /// `space`, for each key that an earlier part already allows: the union's rows are unchanged,
  /// and the kernels no longer check this part's keys against the earlier parts (O(k') per key
  /// when an earlier part is a list). The earlier data-dependent parts must be attached first.
  /// Modifies idx; asynchronous on `space`. O(B·L·k'·(earlier parts' allows)) once per plan.
  template <class ExecSpace, class Idx>
    requires(bool(Kokkos::SpaceAccessibility<ExecSpace, MemorySpace>::accessible))
  void set_candidates(ExecSpace const& space, PatternKind kind, Idx const& idx) {
    static_assert(Idx::rank() == 3 && std::is_same_v<typename Idx::non_const_value_type, int>,
                  "hax::attn::RuntimePattern::set_candidates: idx must be a rank-3 View of int");
    set_candidates(kind, idx);
    int part = 0;
    while (parts[part].kind != kind) { ++part; }
    for (int e = 0; e < part; ++e) {
      core::require(!is_data_dependent(parts[e].kind) || lists[parts[e].a].idx.size() > 0,
                    "hax::attn::RuntimePattern::set_candidates", "part '", pattern_part_names[int(kind)],
                    "' is deduplicated against the earlier part '", pattern_part_names[int(parts[e].kind)],
                    "', whose candidates are not attached yet");
      core::require(!is_data_dependent(parts[e].kind) || lists[parts[e].a].idx.data() != idx.data(),
                    "hax::attn::RuntimePattern::set_candidates", "part '", pattern_part_names[int(kind)],
                    "' is given the View already attached to the earlier part '",
                    pattern_part_names[int(parts[e].kind)], "', against which it would be deduplicated");
    }
    if (part > 0 && idx.size() > 0) {
      int const L = idx.extent_int(1), kp = idx.extent_int(2);
      RuntimePattern const earlier = *this;  // by value into the kernel: only parts [0, part) are read
      // One query row per thread, its k' candidates on the vector lanes (core::row_teams): each
      // lane checks one candidate against the earlier parts, whose row all lanes read together.
      // (So `idx` must not be a View attached to an earlier part: refused above.)
      int const rows = idx.extent_int(0) * L;
      int const league = (rows + core::kRowsPerTeam - 1) / core::kRowsPerTeam;
      using member = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
      Kokkos::parallel_for(
          "hax::attn::RuntimePattern::drop_repeated_candidates", core::row_teams(space, league),
          KOKKOS_LAMBDA(member const& team) {
            Kokkos::parallel_for(Kokkos::TeamThreadRange(team, core::kRowsPerTeam), [&](int r) {
              int const row = team.league_rank() * core::kRowsPerTeam + r;
              if (row >= rows) { return; }
              int const b = row / L, q = row % L;
              Kokkos::parallel_for(Kokkos::ThreadVectorRange(team, kp), [&](int j) {
                int const k = idx(b, q, j);
                if (k < 0) { return; }
                for (int e = 0; e < part; ++e) {
                  if (earlier.part_allows(e, b, q, k)) {
                    idx(b, q, j) = -1;
                    return;
                  }
                }
              });
            });
          });
    }
    disjoint[part] = true;
  }

  KOKKOS_FUNCTION int part_size(int p) const {
    switch (parts[p].kind) {
      case PatternKind::sliding_window: return parts[p].a;
      case PatternKind::dilated: return parts[p].b;
      case PatternKind::sink: return parts[p].a;
      case PatternKind::full: return parts[p].a;
      default: return lists[parts[p].a].max_keys_per_query();
    }
  }
  KOKKOS_FUNCTION bool part_allows(int p, int b, int q, int k) const {
    switch (parts[p].kind) {
      case PatternKind::sliding_window: return SlidingWindow{parts[p].a}.allows(b, q, k);
      case PatternKind::dilated: return Dilated{parts[p].a, parts[p].b}.allows(b, q, k);
      case PatternKind::sink: return Sink{parts[p].a}.allows(b, q, k);
      case PatternKind::full: return Full{parts[p].a}.allows(b, q, k);
      default: return lists[parts[p].a].allows(b, q, k);
    }
  }
  KOKKOS_FUNCTION int part_key(int p, int b, int q, int j) const {
    switch (parts[p].kind) {
      case PatternKind::sliding_window: return SlidingWindow{parts[p].a}.key(b, q, j);
      case PatternKind::dilated: return Dilated{parts[p].a, parts[p].b}.key(b, q, j);
      case PatternKind::sink: return Sink{parts[p].a}.key(b, q, j);
      case PatternKind::full: return Full{parts[p].a}.key(b, q, j);
      default: return lists[parts[p].a].key(b, q, j);
    }
  }

  KOKKOS_FUNCTION bool allows(int b, int q, int k) const {
    for (int p = 0; p < num_parts; ++p) {
      if (part_allows(p, b, q, k)) { return true; }
    }
    return false;
  }
  KOKKOS_FUNCTION int max_keys_per_query() const {
    int total = 0;
    for (int p = 0; p < num_parts; ++p) { total += part_size(p); }
    return total;
  }
  KOKKOS_FUNCTION int key(int b, int q, int j) const {
    int offset = 0;
    for (int p = 0; p < num_parts; ++p) {
      int const size = part_size(p);
      if (j < offset + size) {
        int const k = part_key(p, b, q, j - offset);
        if (k < 0 || disjoint[p]) { return k; }
        for (int e = 0; e < p; ++e) {
          if (part_allows(e, b, q, k)) { return -1; }
        }
        return k;
      }
      offset += size;
    }
    return -1;
  }
};

/// Builds the pattern named `name` (parts joined by '+') with key budget k for sequences of
/// length L: sliding_window -> window k', sink -> k' sinks, dilated -> Dilated::from_budget(k',
/// max_length), full -> Full{L}, data-dependent parts -> an empty slot for set_candidates().
/// Throws hax::invalid_argument as parse_pattern_name does, and when k' > L.
template <class MemorySpace = Kokkos::DefaultExecutionSpace::memory_space>
RuntimePattern<MemorySpace> make_pattern(std::string_view name, int k, int L, int max_length = 2048) {
  auto const parsed = parse_pattern_name(name, k);
  int const kprime = parsed.front().kprime;
  core::require(kprime <= L, "hax::attn::make_pattern", "k' = ", kprime, " (k = ", k, " over ",
                parsed.size(), " parts of '", name, "') is larger than the sequence length L = ", L);
  RuntimePattern<MemorySpace> out;
  int lists = 0;
  for (auto const& part : parsed) {
    typename RuntimePattern<MemorySpace>::Part p;
    p.kind = part.kind;
    switch (part.kind) {
      case PatternKind::sliding_window: p.a = kprime; break;
      case PatternKind::sink: p.a = kprime; break;
      case PatternKind::full: p.a = L; break;
      case PatternKind::dilated: {
        auto const d = Dilated::from_budget(kprime, max_length);
        p.a = d.stride;
        p.b = d.count;
        break;
      }
      default:
        core::require(lists < 2, "hax::attn::make_pattern", "name '", name,
                      "' has more than two data-dependent parts");
        out.list_kprime[lists] = kprime;
        p.a = lists++;
    }
    out.parts[out.num_parts++] = p;
  }
  return out;
}

static_assert(sparse_pattern<RuntimePattern<Kokkos::HostSpace>>);

}  // namespace hax::attn
