// SPDX-License-Identifier: MIT
/// \file
/// Serial references of the LSH plan (docs/math/lsh.md), as plain loops over row-major
/// std::vectors, written to be read: the pre-hash transform in both semantics, the projection
/// matrix drawn from (seed, layer, step), both binning rules, and the candidate lists by a
/// direct O(L²) scan. The oracle of hax::attn's hashing and bucketing in the tests.
#pragma once

#include <hax/core/random.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace hax::reference::attn {

/// x (B, L, N) -> the pre-hash transform. causal: each row centred on its feature mean and
/// divided by max(its L2 norm, 1e-12). reference: each (b, feature) column centred on its mean
/// over the L positions and divided by max(its L2 norm over the L positions, 1e-12).
template <class T>
std::vector<T> lsh_prehash_transform(std::vector<T> const& x, int B, int L, int N, bool causal) {
  std::vector<T> out(x.size());
  auto at = [&](int b, int i, int n) { return static_cast<std::size_t>((b * L + i) * N + n); };
  for (int b = 0; b < B; ++b) {
    if (causal) {
      for (int i = 0; i < L; ++i) {
        T mean = 0;
        for (int n = 0; n < N; ++n) { mean += x[at(b, i, n)]; }
        mean /= T(N);
        T sq = 0;
        for (int n = 0; n < N; ++n) { sq += (x[at(b, i, n)] - mean) * (x[at(b, i, n)] - mean); }
        T const norm = std::max(std::sqrt(sq), T(1e-12));
        for (int n = 0; n < N; ++n) { out[at(b, i, n)] = (x[at(b, i, n)] - mean) / norm; }
      }
    } else {
      for (int n = 0; n < N; ++n) {
        T mean = 0;
        for (int i = 0; i < L; ++i) { mean += x[at(b, i, n)]; }
        mean /= T(L);
        T sq = 0;
        for (int i = 0; i < L; ++i) { sq += (x[at(b, i, n)] - mean) * (x[at(b, i, n)] - mean); }
        T const norm = std::max(std::sqrt(sq), T(1e-12));
        for (int i = 0; i < L; ++i) { out[at(b, i, n)] = (x[at(b, i, n)] - mean) / norm; }
      }
    }
  }
  return out;
}

/// W (N, h), row-major: entry (n, b) is the standard normal at draw pair n*h + b of the stream
/// stream_key(seed, layer, step) (the same definition as hax::attn::draw_random_projection).
inline std::vector<double> projection_matrix(std::uint64_t seed, std::uint64_t layer,
                                             std::uint64_t step, int N, int h) {
  std::vector<double> w(static_cast<std::size_t>(N) * h);
  std::uint64_t const key = core::stream_key(seed, layer, step);
  for (int n = 0; n < N; ++n) {
    for (int b = 0; b < h; ++b) {
      core::RngStream stream(key, 2 * (static_cast<std::uint64_t>(n) * h + b));
      w[static_cast<std::size_t>(n) * h + b] = stream.normal();
    }
  }
  return w;
}

/// The h projections x · w_b of one row x (N) with W (N, h).
template <class T>
std::vector<T> project(T const* x, std::vector<T> const& w, int N, int h) {
  std::vector<T> p(h, T(0));
  for (int b = 0; b < h; ++b) {
    for (int n = 0; n < N; ++n) { p[b] += x[n] * w[static_cast<std::size_t>(n) * h + b]; }
  }
  return p;
}

/// Sign-bit bucket Σ_b [x·w_b > 0] 2^b.
template <class T>
int sign_bit_bucket(T const* x, std::vector<T> const& w, int N, int h) {
  auto const p = project(x, w, N, h);
  int code = 0;
  for (int b = 0; b < h; ++b) {
    if (p[b] > T(0)) { code += 1 << b; }
  }
  return code;
}

/// Argmax bucket over [x·W, -x·W] (first index wins ties).
template <class T>
int argmax_bucket(T const* x, std::vector<T> const& w, int N, int h) {
  auto const p = project(x, w, N, h);
  int best = 0;
  T best_value = p[0];
  for (int c = 1; c < 2 * h; ++c) {
    T const v = c < h ? p[c] : -p[c - h];
    if (v > best_value) {
      best_value = v;
      best = c;
    }
  }
  return best;
}

/// Buckets (B, L) of rows x (B, L, N) already transformed.
template <class T>
std::vector<int> hash_rows(std::vector<T> const& x, std::vector<T> const& w, int B, int L, int N,
                           int h, bool sign_bit) {
  std::vector<int> out(static_cast<std::size_t>(B) * L);
  for (int r = 0; r < B * L; ++r) {
    T const* row = x.data() + static_cast<std::size_t>(r) * N;
    out[r] = sign_bit ? sign_bit_bucket(row, w, N, h) : argmax_bucket(row, w, N, h);
  }
  return out;
}

/// idx (B, L, k'): for query i, the keys j = i, i-1, ..., 0 with bk[j] == bq[i], most recent first,
/// at most k' of them, then -1. A direct O(L²) scan.
inline std::vector<int> lsh_candidates(std::vector<int> const& bq, std::vector<int> const& bk,
                                       int B, int L, int kprime) {
  std::vector<int> idx(static_cast<std::size_t>(B) * L * kprime, -1);
  for (int b = 0; b < B; ++b) {
    for (int i = 0; i < L; ++i) {
      int slot = 0;
      for (int j = i; j >= 0 && slot < kprime; --j) {
        if (bk[b * L + j] == bq[b * L + i]) {
          idx[(static_cast<std::size_t>(b) * L + i) * kprime + slot++] = j;
        }
      }
    }
  }
  return idx;
}

}  // namespace hax::reference::attn
