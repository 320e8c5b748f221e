// SPDX-License-Identifier: MIT
/// \file
/// Checks shared by the Mamba and Mamba-2 mixer tests: the pad-mask builder and the test that a
/// mixer's skip_padding (the scan stops after each row's last real token) changes no output and
/// no gradient.
#pragma once

#include <catch2/catch_test_macros.hpp>
#include <cstddef>
#include <cstdint>
#include <hax/attention/sparse_branch.hpp>
#include <hax/nn/parameters.hpp>
#include <string>
#include <vector>

#include "support/compare.hpp"
#include "support/perturb.hpp"
#include "support/test_space.hpp"

namespace hax::test {

/// A (B, L) pad mask with right padding: row b has lengths[b] real tokens (1), then pads (0).
inline std::vector<double> right_pad_mask(std::size_t B, std::size_t L,
                                          std::vector<std::size_t> const& lengths) {
  std::vector<double> m(B * L, 0.0);
  for (std::size_t b = 0; b < B; ++b) {
    for (std::size_t t = 0; t < lengths[b]; ++t) {
      m[b * L + t] = 1.0;
    }
  }
  return m;
}

/// With skip_padding the mixer's scan stops after each row's last real token. The mixer zeroes the
/// scan's inputs at pads, so the full scan's output there is exactly 0 too and no dy there reaches
/// anything: every output, the input gradient and every parameter gradient must equal those of
/// the full scan (in double, config's widths with d_model 6), for a dy that is nonzero
/// everywhere, with the HAX branch `branch` (empty: none) under `semantics`. Rows: all real, 5
/// real, no real token, real tokens around a hole. Mixer: hax::ssm::MambaMixer or Mamba2Mixer
/// on test_space with T = double; Config its config type.
template <class Mixer, class Config>
void check_skip_padding_is_exact(Config config, std::string const& prefix,
                                 std::string const& branch, attn::Semantics semantics) {
  using T = double;
  using act = Kokkos::View<T***, Kokkos::LayoutRight, test_memory_space>;             // (B, L, D)
  using mask_view = Kokkos::View<std::int8_t**, Kokkos::LayoutRight, test_memory_space>;  // (B, L)
  using loss_view = Kokkos::View<T, test_memory_space>;                               // 0-d
  std::size_t const B = 4, L = 13, D = static_cast<std::size_t>(config.d_model);
  if (!branch.empty()) {
    attn::SparseBranchConfig b;
    b.arch = branch;
    b.keys = 4;
    b.num_hash = 2;
    b.semantics = semantics;
    b.max_length = 8;
    b.state_size = 0;  // 0: the mixer's own N and d_inner
    b.d_inner = 0;
    config.sparse = b;
  }
  config.skip_padding = false;
  Mixer const full(config);
  config.skip_padding = true;
  Mixer const skipping(config);
  nn::ParameterStore<test_space, T> store;
  full.register_parameters(store, prefix);
  test_space space;
  store.finalize(space);
  store.initialize(space, 41);
  perturb_all(store);
  attn::StepContext ctx;
  ctx.step = 3;  // training: the ranking loss runs with the branch
  auto hmask = right_pad_mask(B, L, {L, 5, 0, 9});
  for (std::size_t t = 4; t < 7; ++t) hmask[3 * L + t] = 0.0;  // the hole
  std::vector<std::size_t> const extent = {L, 5, 0, 9};      // 1 + the last real position
  mask_view mask("mask", B, L);
  from_vector(mask, hmask);
  act x("x", B, L, D), dy("dy", B, L, D);
  fill_random(x, 42, -2.0, 2.0);
  fill_random(dy, 43);  // nonzero at the pads too
  auto run = [&](Mixer const& mixer, act const& y, act const& dx, loss_view const& gate_loss) {
    from_vector(store.grads(), std::vector<double>(store.grads().span(), 0.0));
    auto const saved = mixer.forward(space, store, prefix, x, mask, y, gate_loss, ctx);
    mixer.backward(space, store, prefix, saved, dy, dx, ctx);
    space.fence();
    if (&mixer == &skipping) {  // the scan really stops after each row's last real token
      REQUIRE(saved.lengths.extent(0) == B);
      CHECK(to_vector(saved.lengths) == std::vector<double>(extent.begin(), extent.end()));
    } else {
      CHECK(saved.lengths.extent(0) == 0);
    }
    return to_vector(store.grads());
  };
  act y_full("y_full", B, L, D), dx_full("dx_full", B, L, D);
  act y_skip("y_skip", B, L, D), dx_skip("dx_skip", B, L, D);
  loss_view loss_full("loss_full"), loss_skip("loss_skip");
  auto const g_full = run(full, y_full, dx_full, loss_full);
  auto const g_skip = run(skipping, y_skip, dx_skip, loss_skip);
  auto const yf = to_vector(y_full);
  REQUIRE(max_abs(yf) > 0.1);
  REQUIRE(max_abs(g_full) > 0.1);
  check_close(to_vector(y_skip), yf, 1e-12, 1e-13, "y");
  check_close(g_skip, g_full, 1e-10, 1e-12, "parameter gradients");
  check_close(to_vector(dx_skip), to_vector(dx_full), 1e-10, 1e-12, "dx");
  CHECK(to_vector(loss_skip) == to_vector(loss_full));  // the ranking loss reads x only
}

}  // namespace hax::test
