// SPDX-License-Identifier: MIT
/// \file
/// The `joint_recall table` subcommand: runs the grid of the paper's Table 3 (bases × sparse
/// cells × learning rates × seeds) through the `train` subcommand's model and protocol code,
/// one run per directory <out>/runs/<base>/<cell>/lr<lr>/seed<s>/, and aggregates it as the
/// paper does (hax::train report.hpp: seed mean at the lr with the best mean validation
/// accuracy). Writes <out>/table.md, table.csv, table.svg and curves.svg, each atomically, after
/// every finished run, so that an interrupted table still has its outputs up to date.
///
///   joint_recall table --bases mamba,mamba2 --sparse all --seeds 1,2,3 --lrs 3e-3,1e-3,3e-4
///                      --steps N [--out results] [--protocol small|reference]
///                      [--semantics causal|reference] [--dry-run | --report-only]
///
/// Resumable: a run whose result.json matches its config is skipped; any other run is started
/// with resume on, so one with a checkpoint continues from last.haxckpt (the trainer refuses a
/// checkpoint of another model, data or protocol). Raising --steps turns finished runs into
/// "stale" ones that continue from their last checkpoint. --report-only trains nothing and writes
/// the outputs from the runs that are done, e.g. after cells ran as separate processes
/// (docs/table.md).
#pragma once

#include <hax/train/report.hpp>
#include "train.hpp"

#include <CLI/CLI.hpp>
#include <Kokkos_Core.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace joint_recall_table {

struct table_options {
  std::string bases = "mamba,mamba2";
  std::string sparse = "all";
  std::string seeds = "1,2,3";
  std::string lrs = "3e-3,1e-3,3e-4";
  std::int64_t steps = 0;  // required
  std::string out = "results";
  std::string protocol = "small";
  std::string semantics = "causal";
  bool dry_run = false;
  bool report_only = false;  // write the outputs from the done runs, train nothing
  // Pass-throughs to every run (the protocol's values otherwise), e.g. for a tiny smoke table.
  std::optional<std::int64_t> warmup, eval_every, eval_items, test_items, log_every;
  std::optional<int> batch, n_min, n_max;
  std::optional<std::int64_t> train_per, valid_per, test_per;
};

/// The `train` subcommand's options for one run of the grid. The seed drives parameters and
/// hashing; the data stay those of data seed 1 (one dataset for the whole table, as the paper's).
inline joint_recall_train::train_options run_options(table_options const& t,
                                                     hax::train::RunKey const& k,
                                                     std::filesystem::path const& dir) {
  auto const& cell = hax::train::find_cell(k.cell);
  joint_recall_train::train_options o;
  o.base = k.base;
  o.sparse = cell.sparse_arch.empty() ? "none" : cell.sparse_arch;
  o.size = cell.double_size ? "double" : "base";
  o.protocol = t.protocol;
  o.semantics = t.semantics;
  o.out = dir.string();
  o.resume = true;
  o.lr = k.lr;
  o.steps = t.steps;
  o.seed = k.seed;
  o.hash_seed = k.seed;
  o.data_seed = 1;
  o.warmup = t.warmup;
  o.eval_every = t.eval_every;
  o.eval_items = t.eval_items;
  o.test_items = t.test_items;
  o.log_every = t.log_every;
  o.batch = t.batch;
  o.n_min = t.n_min;
  o.n_max = t.n_max;
  o.train_per = t.train_per;
  o.valid_per = t.valid_per;
  o.test_per = t.test_per;
  return o;
}

/// Everything that defines a run: a result.json written for another config is not "done".
inline nlohmann::json run_config(joint_recall_train::train_options const& o,
                                 hax::train::RunKey const& k) {
  hax::data::recall_spec spec;
  hax::train::TrainConfig tc;
  joint_recall_train::protocol(o, spec, tc);
  spec = hax::data::resolve(spec, "joint_recall table");
  auto const mc = joint_recall_train::model_config(o);
  return nlohmann::json{
      {"base", k.base},
      {"cell", k.cell},
      {"model", hax::models::config_to_json(mc)},
      {"data", hax::train::spec_to_json(spec)},
      {"protocol",
       {{"steps", tc.steps}, {"batch", tc.batch}, {"lr", tc.lr}, {"warmup", tc.warmup},
        {"weight_decay", tc.weight_decay}, {"eval_every", tc.eval_every},
        {"eval_items", tc.eval_items}, {"test_items", tc.test_items},
        {"gate_loss_weight", tc.gate_loss_weight}, {"seed", tc.seed},
        {"hash_seed", tc.hash_seed}}}};
}

template <class Mixer>
hax::train::RunResult train_with(hax::models::ModelConfig const& mc,
                                 hax::data::recall_spec const& spec,
                                 hax::train::TrainConfig const& tc) {
  hax::train::Trainer<Kokkos::DefaultExecutionSpace, float, Mixer> trainer(mc, spec, tc);
  auto const t0 = std::chrono::steady_clock::now();
  auto const r = trainer.run();
  hax::train::RunResult out;
  out.best_valid_accuracy = r["best_valid_accuracy"].template get<double>();
  out.test_accuracy = r["accuracy"].template get<double>();
  out.best_step = r["best_step"].template get<std::int64_t>();
  out.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

/// Trains one run to completion (resuming from its checkpoint if any) and returns its result.
inline hax::train::RunResult train_one(joint_recall_train::train_options const& o) {
  hax::data::recall_spec spec;
  hax::train::TrainConfig tc;
  joint_recall_train::protocol(o, spec, tc);
  auto const mc = joint_recall_train::model_config(o);
  using hax::models::Base;
  if (mc.base == Base::mamba) {
#if HAX_MODELS_HAS_MAMBA && HAX_MODELS_HAS_SPARSE_BRANCH
    return train_with<hax::ssm::MambaMixer<Kokkos::DefaultExecutionSpace, float>>(mc, spec, tc);
#else
    throw hax::invalid_argument("joint_recall table: --bases mamba is not available in this build");
#endif
  }
#if HAX_MODELS_HAS_MAMBA2 && HAX_MODELS_HAS_SPARSE_BRANCH
  return train_with<hax::ssm::Mamba2Mixer<Kokkos::DefaultExecutionSpace, float>>(mc, spec, tc);
#else
  throw hax::invalid_argument("joint_recall table: --bases mamba2 is not available in this build");
#endif
}

/// Reads every finished run of the grid, aggregates, and writes the four outputs atomically.
inline void write_outputs(table_options const& t, hax::train::TableGrid const& g,
                          std::vector<hax::train::RunKey> const& runs,
                          std::vector<nlohmann::json> const& configs) {
  namespace fs = std::filesystem;
  fs::path const out = t.out;
  std::vector<hax::train::RunResult> results;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    if (auto r = hax::train::read_run_result(hax::train::run_directory(out, runs[i]), &configs[i])) {
      results.push_back(*r);
    }
  }
  auto const cells = hax::train::aggregate(g, results);
  std::vector<hax::train::Curve> curves;
  for (auto const& c : cells) {
    if (!c.has_result()) continue;
    for (auto const& r : results) {
      if (r.key.base != c.base || r.key.cell != c.cell || r.key.lr != c.best_lr().lr) continue;
      auto const dir = hax::train::run_directory(out, r.key);
      curves.push_back(hax::train::Curve{r.key.base, r.key.cell, r.key.lr, r.key.seed,
                                         hax::train::read_valid_curve(dir / "metrics.jsonl")});
    }
  }
  fs::create_directories(out);
  hax::train::write_text_atomically(out / "table.md", hax::train::table_markdown(g, cells));
  hax::train::write_text_atomically(out / "table.csv", hax::train::table_csv(cells));
  hax::train::write_text_atomically(out / "table.svg", hax::train::table_svg(g, cells));
  hax::train::write_text_atomically(out / "curves.svg", hax::train::curves_svg(g, curves));
}

inline void run(table_options const& t) {
  auto const g = hax::train::parse_grid(t.bases, t.sparse, t.lrs, t.seeds, t.steps, t.protocol,
                                        t.semantics);
  auto const runs = hax::train::grid_runs(g);
  std::vector<nlohmann::json> configs;
  std::vector<hax::train::RunState> states;
  int counts[4] = {0, 0, 0, 0};
  for (auto const& k : runs) {
    auto const dir = hax::train::run_directory(t.out, k);
    configs.push_back(run_config(run_options(t, k, dir), k));  // also validates the options
    states.push_back(hax::train::run_state(dir, configs.back()));
    ++counts[static_cast<int>(states.back())];
  }
  std::printf("table: %zu bases x %zu cells x %zu lrs x %zu seeds = %zu runs (%s)\n",
              g.bases.size(), g.cells.size(), g.lrs.size(), g.seeds.size(), runs.size(),
              hax::train::budget_text(g).c_str());
  std::printf("  done %d, partial %d (resume), stale %d (resume: another config), pending %d\n",
              counts[3], counts[1], counts[2], counts[0]);
  if (t.dry_run) {
    std::string cells;
    for (auto const& c : g.cells) cells += (cells.empty() ? "" : ", ") + c;
    std::printf("cells: %s\n", cells.c_str());
    for (std::size_t i = 0; i < runs.size(); ++i) {
      std::printf("  %-8s %s\n", hax::train::state_name(states[i]),
                  hax::train::run_directory(t.out, runs[i]).string().c_str());
    }
    return;
  }
  if (t.report_only) {
    write_outputs(t, g, runs, configs);
    std::printf("wrote %s/{table.md, table.csv, table.svg, curves.svg} from the %d of %zu runs "
                "that are done; trained nothing (cells with no done run show \"—\")\n",
                t.out.c_str(), counts[3], runs.size());
    return;
  }
  int failed = 0;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    if (states[i] == hax::train::RunState::done) continue;
    auto const& k = runs[i];
    auto const dir = hax::train::run_directory(t.out, k);
    std::printf("\n[%zu/%zu] %s %s lr %s seed %llu (%s) -> %s\n", i + 1, runs.size(),
                k.base.c_str(), k.cell.c_str(), hax::train::format_lr(k.lr).c_str(),
                static_cast<unsigned long long>(k.seed), hax::train::state_name(states[i]),
                dir.string().c_str());
    std::fflush(stdout);
    try {
      auto r = train_one(run_options(t, k, dir));
      r.key = k;
      hax::train::write_run_result(dir, configs[i], r);
      std::printf("\n  test %.4f, best validation %.4f at step %lld, %.1f s\n", r.test_accuracy,
                  r.best_valid_accuracy, static_cast<long long>(r.best_step), r.wall_seconds);
    } catch (hax::numerical_error const& e) {
      // A diverging lr is part of a sweep: report it and go on; the table shows what finished.
      ++failed;
      std::fprintf(stderr, "\n  run failed: %s\n", e.what());
    }
    write_outputs(t, g, runs, configs);
  }
  write_outputs(t, g, runs, configs);
  std::printf("wrote %s/{table.md, table.csv, table.svg, curves.svg}\n", t.out.c_str());
  if (failed > 0) {
    throw hax::numerical_error(hax::core::concat("joint_recall table: ", failed,
                                                 " run(s) stopped on a non-finite loss (see "
                                                 "above); the table holds the others"));
  }
}

}  // namespace joint_recall_table

/// Registers `joint_recall table` on `app`; sets `ran` when it runs.
inline void add_table_command(CLI::App& app, bool& ran) {
  auto opts = std::make_shared<joint_recall_table::table_options>();
  auto& o = *opts;
  auto* cmd = app.add_subcommand("table", "run the Table 3 grid and write results/table.md");
  cmd->add_option("--bases", o.bases, "comma list of mamba, mamba2")->capture_default_str();
  cmd->add_option("--sparse", o.sparse,
                  "all, or a comma list of none, dilated, sliding_window, sliding_window+dilated, "
                  "sliding_window+sink, sign_bin_lsh, key_selection, sign_bin_lsh+key_selection, "
                  "double")
      ->capture_default_str();
  cmd->add_option("--seeds", o.seeds, "comma list of seeds")->capture_default_str();
  cmd->add_option("--lrs", o.lrs, "comma list of peak learning rates")->capture_default_str();
  cmd->add_option("--steps", o.steps, "updates per run")->required();
  cmd->add_option("--out", o.out, "output directory")->capture_default_str();
  cmd->add_option("--protocol", o.protocol, "small | reference")->capture_default_str();
  cmd->add_option("--semantics", o.semantics, "causal | reference")->capture_default_str();
  auto* dry = cmd->add_flag("--dry-run", o.dry_run,
                            "print the plan (cells, runs, which are done) and stop");
  cmd->add_flag("--report-only", o.report_only,
                "train nothing: write the table from the runs that are done (the others show "
                "as \"—\")")
      ->excludes(dry);
  cmd->add_option("--warmup", o.warmup, "warm-up updates of every run");
  cmd->add_option("--batch", o.batch, "batch size of every run");
  cmd->add_option("--eval-every", o.eval_every, "validate every N updates");
  cmd->add_option("--eval-items", o.eval_items, "validation items (0: whole split)");
  cmd->add_option("--test-items", o.test_items, "test items (0: whole split)");
  cmd->add_option("--log-every", o.log_every, "metrics every N updates");
  cmd->add_option("--n-min", o.n_min, "smallest level size");
  cmd->add_option("--n-max", o.n_max, "largest level size");
  cmd->add_option("--train-per", o.train_per, "training items per size combination");
  cmd->add_option("--valid-per", o.valid_per, "validation items per size combination");
  cmd->add_option("--test-per", o.test_per, "test items per size combination");
  cmd->callback([opts, &ran] {
    ran = true;
    joint_recall_table::run(*opts);
  });
}
