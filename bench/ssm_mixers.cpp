// SPDX-License-Identifier: MIT
/// \file
/// Forward and forward+backward of the Mamba and Mamba2 mixers at the joint-recall shape:
/// B = 64, L = 1057, d_model 64 (mamba.json, mamba2.json), plus the double-size baselines, and
/// the HAX hybrids (sparse branch sign_bin_lsh+key_selection, k = 64, h = 8, in training: plans,
/// sparse attention and the ranking loss) at B = 8 and 64, with the plain mixers at B = 8 beside
/// them. Counters: tokens/s, and the bytes of the (B, L, ·) activations each pass writes and
/// reads at least once (a floor on memory traffic, not a measurement).
#include <benchmark/benchmark.h>

#include <Kokkos_Core.hpp>
#include <Kokkos_Random.hpp>
#include <hax/nn/parameters.hpp>
#include <hax/ssm/mamba2_mixer.hpp>
#include <hax/ssm/mamba_mixer.hpp>

#include <cstdint>
#include <string>

#include "support/run.hpp"

namespace {

using Counter = benchmark::Counter;

template <class Space, class Mixer, class Config>
void run_mixer(benchmark::State& state, Config const& cfg, bool with_backward,
               double act_floats_per_token) {
  int const B = static_cast<int>(state.range(0)), L = static_cast<int>(state.range(1));
  Space space;
  Mixer const mixer(cfg);
  hax::nn::ParameterStore<Space, float> store;
  mixer.register_parameters(store, "m.");
  store.finalize(space);
  store.initialize(space, 1);
  using act = Kokkos::View<float***, Kokkos::LayoutRight, typename Space::memory_space>;
  act x("x", B, L, cfg.d_model), y("y", B, L, cfg.d_model), dy("dy", B, L, cfg.d_model),
      dx("dx", B, L, cfg.d_model);
  // random inputs: constant ones would put every token in one LSH bucket and tie every score
  Kokkos::Random_XorShift64_Pool<Space> pool(7);
  Kokkos::fill_random(space, x, pool, -1.0f, 1.0f);
  Kokkos::deep_copy(space, dy, 0.25f);
  Kokkos::View<std::int8_t**, Kokkos::LayoutRight, typename Space::memory_space> mask("mask", B, L);
  Kokkos::deep_copy(space, mask, std::int8_t(1));
  Kokkos::View<float, typename Space::memory_space> gate_loss("gate_loss");
  hax::attn::StepContext ctx;  // training: the branch's ranking loss runs with key selection
  ctx.training = true;
  space.fence();
  for (auto _ : state) {
    ctx.step += 1;  // a new hash projection per step, as in training
    auto const saved = mixer.forward(space, store, "m.", x, mask, y, gate_loss, ctx);
    if (with_backward) {
      mixer.backward(space, store, "m.", saved, dy, dx, ctx);
    }
    space.fence();
  }
  double const tokens = double(B) * L;
  state.counters["tokens/s"] = Counter(tokens, Counter::kIsIterationInvariantRate);
  double const bytes = 4.0 * tokens * act_floats_per_token * (with_backward ? 3.0 : 1.0);
  state.counters["bytes"] = Counter(bytes);
  state.counters["bytes/s"] = Counter(bytes, Counter::kIsIterationInvariantRate);
}

hax::ssm::MambaConfig mamba(int d_model) {
  hax::ssm::MambaConfig c;
  c.d_model = d_model;
  c.d_inner = 2 * d_model;
  return c;
}
hax::ssm::Mamba2Config mamba2(int d_model) {
  hax::ssm::Mamba2Config c;
  c.d_model = d_model;
  c.d_inner = 2 * d_model;
  c.head_dim = c.d_inner / c.num_heads;
  return c;
}

/// The HAX branch of the paper's hybrids: sign-bit LSH (h = 8) + key selection, k = 64 (32 + 32).
hax::attn::SparseBranchConfig hax_branch(int state_size, int d_inner) {
  hax::attn::SparseBranchConfig b;
  b.arch = "sign_bin_lsh+key_selection";
  b.keys = 64;
  b.num_hash = 8;
  b.state_size = state_size;
  b.d_inner = d_inner;
  return b;
}

/// Hybrid (and, for comparison, plain) mixers at d_model 64, B = 8 and 64, forward+backward.
template <class Space>
void register_hybrid() {
  for (bool sparse : {true, false}) {
    auto mc = mamba(64);
    auto m2 = mamba2(64);
    // the branch adds per token: attn (E), xx (2N), q, k (2N), candidates (k ints), MLP (4N)
    double extra1 = 0, extra2 = 0;
    if (sparse) {
      mc.sparse = hax_branch(mc.state_size, mc.d_inner);
      m2.sparse = hax_branch(m2.state_size, m2.d_inner);
      extra1 = mc.d_inner + 8.0 * mc.state_size + 64;
      extra2 = m2.d_inner + 8.0 * m2.state_size + 64;
    }
    double const f1 = 6.0 * mc.d_inner + 2 * mc.state_size + mc.dt_rank + 64 + extra1;
    double const f2 = 5.0 * m2.d_inner + 4 * m2.state_size + m2.num_heads + 64 + extra2;
    std::string const tag = sparse ? "_hax/fwd_bwd/d64" : "/fwd_bwd/d64";
    auto* b1 =
        benchmark::RegisterBenchmark(("mamba_mixer" + tag).c_str(), [mc, f1](benchmark::State& s) {
          run_mixer<Space, hax::ssm::MambaMixer<Space, float>>(s, mc, true, f1);
        });
    auto* b2 =
        benchmark::RegisterBenchmark(("mamba2_mixer" + tag).c_str(), [m2, f2](benchmark::State& s) {
          run_mixer<Space, hax::ssm::Mamba2Mixer<Space, float>>(s, m2, true, f2);
        });
    for (auto* b : {b1, b2}) {
      b->Args({8, 1057});
      if (sparse) {
        b->Args({64, 1057});  // the plain mixers at B = 64 are registered by register_all
      }
      b->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);
    }
  }
}

template <class Space>
void register_all() {
  for (int d : {64, 128}) {
    for (bool bwd : {false, true}) {
      auto const mc = mamba(d);
      // activations written by the forward per token: x, z, xc, δ, s, g (E each) + 2N + R + D
      double const f1 = 6.0 * mc.d_inner + 2 * mc.state_size + mc.dt_rank + d;
      benchmark::RegisterBenchmark(
          ("mamba_mixer/" + std::string(bwd ? "fwd_bwd" : "fwd") + "/d" + std::to_string(d))
              .c_str(),
          [mc, bwd, f1](benchmark::State& s) {
            run_mixer<Space, hax::ssm::MambaMixer<Space, float>>(s, mc, bwd, f1);
          })
          ->Args({64, 1057})
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime()
          ->Iterations(2);
      auto const m2 = mamba2(d);
      // z, xBC, x, s, n (≈E each) + 2N (twice) + H + D
      double const f2 = 5.0 * m2.d_inner + 4 * m2.state_size + m2.num_heads + d;
      benchmark::RegisterBenchmark(
          ("mamba2_mixer/" + std::string(bwd ? "fwd_bwd" : "fwd") + "/d" + std::to_string(d))
              .c_str(),
          [m2, bwd, f2](benchmark::State& s) {
            run_mixer<Space, hax::ssm::Mamba2Mixer<Space, float>>(s, m2, bwd, f2);
          })
          ->Args({64, 1057})
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime()
          ->Iterations(2);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  return hax::bench::run_benchmarks(argc, argv, [] {
    register_all<Kokkos::DefaultExecutionSpace>();
    register_hybrid<Kokkos::DefaultExecutionSpace>();
    return 0;
  });
}
