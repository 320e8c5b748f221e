// SPDX-License-Identifier: MIT
/// \file
/// The constructive proof of Propositions 3.2 and C.1 as code (semantics.md section 8,
/// docs/math/constructive.md): a 2-layer model with hand-set weights that solves multi-query
/// associative recall (w = 1), joint recall (w = 2) and multi-level joint recall (w >= 3) exactly,
/// with an O(log n) state and O(n log² n) time.
///
///  1. Embedding + overwrite SSM (hax/constructive/overwrite_scan.hpp). Every token id has a write
///     mask and a write value over the state slots [c_0 | ... | c_{w-1} | v | is_value]: a level-l
///     token writes the ±1 binary code of its symbol into slot group l, a value token writes its
///     code into v, and every token writes is_value (+1 for a value token, −1 otherwise). The state
///     therefore holds the latest symbol of every level (the path of the current leaf), the latest
///     value, and whether the current token is a value.
///  2. LSH attention with hand-set projections of the state: key [c_0..c_{w-1}, is_value], query
///     [c_0..c_{w-1}, +1], value [v, +1] (the paper's [c, k, 0, is_value], [c, k, 0, 1] and
///     [0, 0, v, 1] without the zero slots, which contribute nothing). Sign-bit hashing
///     (hax::attn::SignBitHash) over the identity projection reads the bucket straight off the
///     signs of the ±1 entries, so two rows share a bucket exactly when their codes are equal:
///     the hashing is exact, not probabilistic. Each query keeps the most recent earlier key of
///     its bucket (hax::attn::lsh_bucketing with k' = 1): the value position of the same path.
///     The softmax over one candidate has weight exactly 1, so the attention output is [v, 1] of
///     that position, and the read-out decodes v from the signs (−1 when the row is empty).
///
/// Every step is a Kokkos kernel on the caller's execution space (any backend); nothing is
/// stored per pair of positions.
#pragma once

#include <Kokkos_Core.hpp>

#include <hax/attention/hash/sign_bit_hash.hpp>
#include <hax/attention/lsh/bucketing.hpp>
#include <hax/attention/pattern/candidate_list.hpp>
#include <hax/attention/sparse_attention.hpp>
#include <hax/constructive/overwrite_scan.hpp>
#include <hax/core/concepts.hpp>
#include <hax/core/error.hpp>
#include <hax/core/policies.hpp>
#include <hax/core/views.hpp>
#include <hax/data/joint_recall.hpp>
#include <hax/nn/linear.hpp>

#include <cstdint>
#include <type_traits>

namespace hax::constructive {

/// Width of a binary code for n distinct symbols: ceil(log2 n), at least 1.
constexpr int code_bits(int n) {
  int bits = 1;
  while ((1LL << bits) < n) ++bits;
  return bits;
}

/// Entry `bit` of the ±1 code of `symbol`: +1 where the binary digit is 1, −1 where it is 0.
/// Sign-bit hashing (x > 0) recovers the digit exactly.
KOKKOS_INLINE_FUNCTION int code_entry(int symbol, int bit) { return ((symbol >> bit) & 1) ? 1 : -1; }

/// Where everything sits in the state and in the attention rows; a plain aggregate of ints.
/// State slots (D = state_width): level l at [level_offset[l], level_offset[l] + level_bits[l]),
/// the value code at [value_offset, value_offset + value_bits), is_value at is_value_slot.
/// Query/key rows (N = key_width): the level codes in the same order, then the is_value entry.
/// Value rows (Dv = value_width): the value code, then a constant 1 (marks a non-empty row).
struct solver_layout {
  int levels = 0;                       ///< w
  int level_bits[data::kMaxLevels]{};   ///< ceil(log2 n_max[l])
  int level_offset[data::kMaxLevels]{}; ///< first state slot of level l
  int value_bits = 0;                   ///< ceil(log2 |V|)
  int value_offset = 0;                 ///< first state slot of the value code
  int is_value_slot = 0;                ///< the state slot of is_value
  int state_width = 0;                  ///< D = Σ_l level_bits + value_bits + 1
  int key_width = 0;                    ///< N = Σ_l level_bits + 1 (also the hash bits h)
  int value_width = 0;                  ///< Dv = value_bits + 1
};

/// The layout for a resolved recall_spec. Throws hax::invalid_argument if the spec is not
/// resolved or the key code needs more than kMaxHashBits sign bits.
inline solver_layout make_layout(data::recall_spec const& spec) {
  constexpr char const* op = "hax::constructive::make_layout";
  core::require(spec.level_capacity > 0 && spec.padded_length > 0, op,
                "the spec is not resolved (call hax::data::resolve first)");
  solver_layout lay;
  lay.levels = spec.levels;
  int slot = 0;
  for (int l = 0; l < spec.levels; ++l) {
    lay.level_bits[l] = code_bits(spec.n_max[l]);
    lay.level_offset[l] = slot;
    slot += lay.level_bits[l];
  }
  int const path_bits = slot;
  lay.value_bits = code_bits(spec.n_values);
  lay.value_offset = slot;
  slot += lay.value_bits;
  lay.is_value_slot = slot++;
  lay.state_width = slot;
  lay.key_width = path_bits + 1;
  lay.value_width = lay.value_bits + 1;
  core::require(lay.key_width <= attn::kMaxHashBits, op, "the key code of levels = ", spec.levels,
                " with n_max = (", spec.n_max[0], spec.levels > 1 ? ", ..." : "",
                ") needs ", lay.key_width, " sign bits, more than the ", attn::kMaxHashBits,
                " a bucket index holds");
  return lay;
}

namespace impl {

/// predictions (B, L) = the value token decoded from the attention output o (B, L, Dv): the
/// signs of the value code when the marker entry is set, −1 for an empty row.
template <class Space, class O, class Pred>
void decode_values(Space const& space, O const& o, int value_bias, Pred const& predictions) {
  using T = typename O::non_const_value_type;
  int const B = o.extent_int(0), L = o.extent_int(1), Dv = o.extent_int(2);
  Kokkos::parallel_for(
      "hax::constructive::decode", Kokkos::MDRangePolicy<Space, core::rank_right<2>>(space, {0, 0}, {B, L}),
      KOKKOS_LAMBDA(int b, int i) {
        if (!(o(b, i, Dv - 1) > T(0.5))) {
          predictions(b, i) = -1;
          return;
        }
        int v = 0;
        for (int t = 0; t < Dv - 1; ++t) { v |= static_cast<int>(o(b, i, t) > T(0)) << t; }
        predictions(b, i) = value_bias + v;
      });
}

}  // namespace impl

/// The hand-set 2-layer model (see the file comment). Construct it once per recall_spec; it
/// holds its weights in Space's memory and is cheap to copy (Views).
/// \tparam Space the execution space the kernels run on
/// \tparam T     the scalar type of the state and attention rows (every value is 0 or ±1, so
///               float is already exact)
/// \tparam Bucketing how the LSH plan groups keys by bucket: attn::BucketSort (a per-sequence
///               sort, O(L log² L)) or attn::BucketCount (per-sequence counting over the 2^h = O(n)
///               buckets, O(L log L + n)); both give the same candidates.
template <execution_space Space, class T = float, attn::bucketing_algorithm Bucketing = attn::BucketSort>
class JointRecallSolver {
 public:
  using memory_space = typename Space::memory_space;
  template <class DataType>
  using view_t = view<DataType, Space>;

  /// The hand-set weights.
  struct Weights {
    view_t<T**> write_value;   // (V, D)  e(x): what token x writes
    view_t<T**> write_mask;    // (V, D)  m(x): 1 on the slots token x overwrites
    view_t<T*> initial;        // (D)     h_{-1}: the codes of symbol 0, value 0, is_value −1
    view_t<T**> qkv_weight;    // (2N + Dv, D) rows [query | key | value], PyTorch's (out, in)
    view_t<T*> qkv_bias;       // (2N + Dv)    +1 on the query's last entry and the value marker
    view_t<T**> hash_projection;  // (N, N) identity: sign-bit hashing reads the signs directly
  };

  /// Every intermediate of one forward pass, allocated once by allocate() and reused.
  struct Activations {
    view_t<T***> state;     // (B, L, D)  overwrite-SSM state h_t
    view_t<T***> qkv;       // (B, L, 2N + Dv) [q | k | v] of every position
    view_t<T***> o;         // (B, L, Dv) attention output
    view_t<T**> lse;        // (B, L)     log-sum-exp of the attention rows
    view_t<int**> bucket_q; // (B, L)
    view_t<int**> bucket_k; // (B, L)
    view_t<int***> idx;     // (B, L, 1)  the kept key of every query, −1 if none
  };

  /// Builds the weights for a resolved spec (host work and one copy to Space's memory).
  explicit JointRecallSolver(data::recall_spec const& spec)
      : spec_(spec), layout_(make_layout(spec)) {
    int const V = spec.vocab_size, D = layout_.state_width, N = layout_.key_width,
              Dv = layout_.value_width;
    using host_matrix = Kokkos::View<T**, Kokkos::LayoutRight, Kokkos::HostSpace>;
    using host_vector = Kokkos::View<T*, Kokkos::LayoutRight, Kokkos::HostSpace>;
    host_matrix wv("hax::constructive::write_value", V, D);  // (V, D), zero-initialised
    host_matrix wm("hax::constructive::write_mask", V, D);   // (V, D)
    host_vector h0("hax::constructive::initial", D);         // (D)
    host_matrix qkv("hax::constructive::qkv_weight", 2 * N + Dv, D);  // (2N + Dv, D)
    host_vector qkvb("hax::constructive::qkv_bias", 2 * N + Dv);      // (2N + Dv)
    host_matrix hp("hax::constructive::hash_projection", N, N);  // (N, N)
    auto write_code = [&](int id, int offset, int bits, int symbol) {
      for (int t = 0; t < bits; ++t) {
        wm(id, offset + t) = T(1);
        wv(id, offset + t) = T(code_entry(symbol, t));
      }
    };
    for (int id = 0; id < V; ++id) {
      // Every token overwrites is_value: only value tokens set it.
      bool const is_value = id >= spec.value_bias && id < spec.value_bias + spec.n_values;
      wm(id, layout_.is_value_slot) = T(1);
      wv(id, layout_.is_value_slot) = T(is_value ? 1 : -1);
      if (is_value) write_code(id, layout_.value_offset, layout_.value_bits, id - spec.value_bias);
      for (int l = 0; l < spec.levels; ++l) {
        int const c = id - data::level_token(spec, l, 0);
        if (c >= 0 && c < spec.n_max[l]) write_code(id, layout_.level_offset[l], layout_.level_bits[l], c);
      }
    }
    for (int l = 0; l < spec.levels; ++l) {
      for (int t = 0; t < layout_.level_bits[l]; ++t) h0(layout_.level_offset[l] + t) = T(code_entry(0, t));
    }
    for (int t = 0; t < layout_.value_bits; ++t) h0(layout_.value_offset + t) = T(code_entry(0, t));
    h0(layout_.is_value_slot) = T(-1);
    // Query and key copy the path codes (state slots 0..N-2); the key's last entry is is_value,
    // the query's a constant +1; the value copies the value code and ends with a constant 1.
    int const path_bits = N - 1;
    for (int n = 0; n < path_bits; ++n) {
      qkv(n, n) = T(1);
      qkv(N + n, n) = T(1);
    }
    qkvb(N - 1) = T(1);
    qkv(2 * N - 1, layout_.is_value_slot) = T(1);
    for (int t = 0; t < layout_.value_bits; ++t) qkv(2 * N + t, layout_.value_offset + t) = T(1);
    qkvb(2 * N + Dv - 1) = T(1);
    for (int n = 0; n < N; ++n) hp(n, n) = T(1);
    auto to_device = [](auto const& host) {
      return Kokkos::create_mirror_view_and_copy(memory_space{}, host);
    };
    w_.write_value = to_device(wv);
    w_.write_mask = to_device(wm);
    w_.initial = to_device(h0);
    w_.qkv_weight = to_device(qkv);
    w_.qkv_bias = to_device(qkvb);
    w_.hash_projection = to_device(hp);
  }

  data::recall_spec const& spec() const { return spec_; }
  solver_layout const& layout() const { return layout_; }
  Weights const& weights() const { return w_; }
  /// D: the width of the recurrent state, Σ_l ceil(log2 n_l) + ceil(log2 |V|) + 1 = O(log n).
  int state_width() const { return layout_.state_width; }

  /// The activations of a (B, L) batch, allocated on `space` (uninitialised).
  Activations allocate(Space const& space, int B, int L) const {
    int const D = layout_.state_width, N = layout_.key_width, Dv = layout_.value_width;
    Activations a;
    a.state = uninitialized_view<T***>(space, "hax::constructive::state", B, L, D);
    a.qkv = uninitialized_view<T***>(space, "hax::constructive::qkv", B, L, 2 * N + Dv);
    a.o = uninitialized_view<T***>(space, "hax::constructive::o", B, L, Dv);
    a.lse = uninitialized_view<T**>(space, "hax::constructive::lse", B, L);
    a.bucket_q = uninitialized_view<int**>(space, "hax::constructive::bucket_q", B, L);
    a.bucket_k = uninitialized_view<int**>(space, "hax::constructive::bucket_k", B, L);
    a.idx = uninitialized_view<int***>(space, "hax::constructive::idx", B, L, 1);
    return a;
  }

  /// The forward pass: predictions(b, t) is the model's guess of tokens(b, t + 1): a value token
  /// id, or −1 when the query at t finds no earlier value of its path. At the loss positions of a
  /// joint-recall item (mask = 1) it equals the queried value (Propositions 3.2 / C.1).
  /// \param[in]  tokens       (B, L) integral ids (any layout); ids outside [0, vocab_size) leave
  ///                          the state unchanged.
  /// \param[in]  act          activations from allocate(space, B, L), overwritten.
  /// \param[out] predictions  (B, L) int, written.
  /// Asynchronous on `space`. Throws hax::invalid_argument on mismatched shapes.
  template <class Tokens, class Pred>
    requires(view_accessible_from<Tokens, Space> && view_accessible_from<Pred, Space>)
  void forward(Space const& space, Tokens const& tokens, Activations const& act,
               Pred const& predictions) const {
    static_assert(Tokens::rank() == 2 && Pred::rank() == 2,
                  "hax::constructive::JointRecallSolver::forward: tokens and predictions must be (B, L)");
    static_assert(std::is_integral_v<typename Pred::non_const_value_type>,
                  "hax::constructive::JointRecallSolver::forward: predictions must hold an integral type");
    constexpr char const* op = "hax::constructive::JointRecallSolver::forward";
    int const B = tokens.extent_int(0), L = tokens.extent_int(1);
    core::require(predictions.extent_int(0) == B && predictions.extent_int(1) == L, op,
                  "predictions (", predictions.extent(0), ", ", predictions.extent(1),
                  ") must be (B, L) = (", B, ", ", L, ") of tokens");
    core::require(act.state.extent_int(0) == B && act.state.extent_int(1) == L, op,
                  "activations were allocated for (", act.state.extent(0), ", ", act.state.extent(1),
                  "), tokens are (", B, ", ", L, ")");
    core::require(L >= 1, op, "tokens (", B, ", ", L, ") must have at least one position");
    Kokkos::Profiling::pushRegion("hax::constructive::JointRecallSolver::forward");
    // Layer 1: the overwrite SSM.
    overwrite_scan(space, tokens, w_.write_value, w_.write_mask, w_.initial, act.state);
    // Layer 2: hand-set projections, exact sign-bit buckets, most recent same-bucket key.
    // One GEMM (hax::nn::linear_forward, Kokkos Kernels) with the hand-set 0/1 weights: exact in
    // floating point, since every sum is a small integer.
    nn::linear_forward(space, nn::as_rows(act.state), w_.qkv_weight, w_.qkv_bias, nn::as_rows(act.qkv));
    int const N = layout_.key_width, Dv = layout_.value_width;
    using cols = Kokkos::pair<int, int>;
    auto const q = Kokkos::subview(act.qkv, Kokkos::ALL, Kokkos::ALL, cols(0, N));           // (B, L, N)
    auto const k = Kokkos::subview(act.qkv, Kokkos::ALL, Kokkos::ALL, cols(N, 2 * N));       // (B, L, N)
    auto const v = Kokkos::subview(act.qkv, Kokkos::ALL, Kokkos::ALL, cols(2 * N, 2 * N + Dv));  // (B, L, Dv)
    auto const hash = attn::make_sign_bit_hash(w_.hash_projection);
    attn::lsh_hash_rows(space, hash, q, act.bucket_q);
    attn::lsh_hash_rows(space, hash, k, act.bucket_k);
    attn::lsh_bucketing(space, Bucketing{}, act.bucket_q, act.bucket_k, hash.num_buckets(), act.idx);
    attn::sparse_attention_forward(space, attn::CandidateList(act.idx), q, k, v, act.o, act.lse);
    impl::decode_values(space, act.o, spec_.value_bias, predictions);
    Kokkos::Profiling::popRegion();
  }

 private:
  data::recall_spec spec_;
  solver_layout layout_;
  Weights w_;
};

/// Per-item counts of correct predictions at the loss positions: for every t < L − 1 with
/// mask(b, t) != 0, total(b) += 1 and correct(b) += [predictions(b, t) == tokens(b, t + 1)].
/// \param[in]  predictions (B, L), tokens (B, L), mask (B, L)
/// \param[out] correct (B), total (B): written.
/// Asynchronous on `space` (device Views, no host reduction). Throws on mismatched shapes.
template <execution_space Space, class Pred, class Tokens, class Mask, class Count>
  requires(view_accessible_from<Pred, Space> && view_accessible_from<Tokens, Space> &&
           view_accessible_from<Mask, Space> && view_accessible_from<Count, Space>)
void score_items(Space const& space, Pred const& predictions, Tokens const& tokens, Mask const& mask,
                 Count const& correct, Count const& total) {
  static_assert(Pred::rank() == 2 && Tokens::rank() == 2 && Mask::rank() == 2 && Count::rank() == 1,
                "hax::constructive::score_items: predictions, tokens, mask (B, L); correct, total (B)");
  constexpr char const* op = "hax::constructive::score_items";
  int const B = tokens.extent_int(0), L = tokens.extent_int(1);
  auto same = [&](auto const& x) { return x.extent_int(0) == B && x.extent_int(1) == L; };
  core::require(same(predictions) && same(mask), op, "predictions (", predictions.extent(0), ", ",
                predictions.extent(1), ") and mask (", mask.extent(0), ", ", mask.extent(1),
                ") must match tokens (", B, ", ", L, ")");
  core::require(correct.extent_int(0) == B && total.extent_int(0) == B, op, "correct (",
                correct.extent(0), ") and total (", total.extent(0), ") must have B = ", B, " entries");
  using count_t = typename Count::non_const_value_type;
  using team_policy = Kokkos::TeamPolicy<Space>;
  Kokkos::parallel_for(
      "hax::constructive::score_items", team_policy(space, B, Kokkos::AUTO),
      KOKKOS_LAMBDA(typename team_policy::member_type const& team) {
        int const b = team.league_rank();
        count_t c = 0, n = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, L - 1),
            [&](int t, count_t& acc) {
              acc += (mask(b, t) != 0 && predictions(b, t) == tokens(b, t + 1)) ? 1 : 0;
            },
            c);
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, L - 1),
            [&](int t, count_t& acc) { acc += mask(b, t) != 0 ? 1 : 0; }, n);
        Kokkos::single(Kokkos::PerTeam(team), [&]() {
          correct(b) = c;
          total(b) = n;
        });
      });
}

/// Overload on the default instance of correct's execution space.
template <class Pred, class Tokens, class Mask, class Count>
  requires Kokkos::is_view_v<Count>
void score_items(Pred const& predictions, Tokens const& tokens, Mask const& mask,
                 Count const& correct, Count const& total) {
  score_items(typename Count::execution_space{}, predictions, tokens, mask, correct, total);
}

}  // namespace hax::constructive
