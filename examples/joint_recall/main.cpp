// SPDX-License-Identifier: MIT
/// \file
/// The `joint_recall` command (CLI11). Each subcommand lives in its own add_*_command function
/// that registers its options and callback, so later subcommands (train, table) are one more
/// function and one more line in main(). Now:
///   joint_recall                      same as `joint_recall data`: the validation split, a summary
///                                     and one decoded item (quick on a laptop)
///   joint_recall data [--split valid] [--levels 2 --n-min 5 --n-max 16 ...] [--export f.bin|f.jsonl]
///                     [--show 1]      generate a split in memory, print counts, lengths, mask
///                                     counts and decoded items, optionally export it
///   joint_recall data generate --out DIR [--format bin|jsonl] [--splits train,valid,test]
///                                     write splits to files, with a progress bar
///   joint_recall data inspect FILE [--show 3]
///                                     read a .bin or .jsonl file, check it, print statistics
///                                     and decoded items
///   joint_recall train ...            train one model (train.hpp)
///   joint_recall table --bases mamba,mamba2 --sparse all --seeds 1,2,3 --lrs 3e-3,1e-3,3e-4
///                      --steps N [--out results] [--dry-run | --report-only]
///                                     run the Table 3 grid and write table.md/.csv/.svg
///                                     (table.hpp, docs/table.md)
#include <hax/core/cli.hpp>
#include <hax/data/decode.hpp>
#include <hax/data/io.hpp>
#include <hax/data/joint_recall.hpp>
#include "table.hpp"
#include "train.hpp"

#include <CLI/CLI.hpp>
#include <Kokkos_Core.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

namespace {

using hax::data::recall_spec;
using hax::data::split;

/// Layout options shared by the data subcommands (the reference's values by default).
struct layout_options {
  int levels = 2;
  int n_min = 5;
  int n_max = 16;
  int n_values = 16;
  int vocab_size = 100;
  std::int64_t train_per = 10000;
  std::int64_t valid_per = 100;
  std::int64_t test_per = 100;
  std::uint64_t seed = 1;

  void add_to(CLI::App& app) {
    app.add_option("--levels", levels, "w: 1 associative recall, 2 joint recall, 3+ multi-level")
        ->capture_default_str();
    app.add_option("--n-min", n_min, "smallest size of every level")->capture_default_str();
    app.add_option("--n-max", n_max, "largest size of every level")->capture_default_str();
    app.add_option("--values", n_values, "number of values |V|")->capture_default_str();
    app.add_option("--vocab", vocab_size, "model vocabulary size")->capture_default_str();
    app.add_option("--train-per", train_per, "training items per size combination")->capture_default_str();
    app.add_option("--valid-per", valid_per, "validation items per size combination")->capture_default_str();
    app.add_option("--test-per", test_per, "test items per size combination")->capture_default_str();
    app.add_option("--seed", seed, "random seed")->capture_default_str();
  }

  recall_spec spec() const {
    recall_spec s = hax::data::make_spec(levels, n_min, n_max);
    s.n_values = n_values;
    s.vocab_size = vocab_size;
    s.items_per_combination[0] = train_per;
    s.items_per_combination[1] = valid_per;
    s.items_per_combination[2] = test_per;
    s.seed = seed;
    return hax::data::resolve(s, "joint_recall data");
  }
};

/// A one-line progress bar on stderr.
void progress_bar(std::string const& what, std::int64_t done, std::int64_t total) {
  int const width = 40;
  int const filled = static_cast<int>(width * done / std::max<std::int64_t>(total, 1));
  std::fprintf(stderr, "\r%-6s [%s%s] %lld/%lld", what.c_str(), std::string(filled, '#').c_str(),
               std::string(width - filled, '.').c_str(), static_cast<long long>(done),
               static_cast<long long>(total));
  if (done == total) std::fprintf(stderr, "\n");
}

/// Counts, lengths, mask counts and `show` decoded items of a host split.
void print_summary(hax::data::host_split const& d, int show) {
  recall_spec const& s = d.spec;
  std::int64_t const lp = s.padded_length;
  std::int64_t min_len = lp, max_len = 0, sum_len = 0, min_mask = lp, max_mask = 0, sum_mask = 0;
  for (std::int64_t r = 0; r < d.count; ++r) {
    std::int64_t len = lp;
    std::int64_t masks = 0;
    for (std::int64_t p = 0; p < lp; ++p) {
      if (d.tokens[r * lp + p] == s.pad && len == lp) len = p;
      masks += d.mask[r * lp + p];
    }
    min_len = std::min(min_len, len);
    max_len = std::max(max_len, len);
    sum_len += len;
    min_mask = std::min(min_mask, masks);
    max_mask = std::max(max_mask, masks);
    sum_mask += masks;
  }
  double const n = static_cast<double>(d.count);
  std::printf("split %s: %lld items (from item %lld), padded length %lld, levels %d, vocab %d\n",
              hax::data::split_name(d.which), static_cast<long long>(d.count),
              static_cast<long long>(d.first_item), static_cast<long long>(lp), s.levels, s.vocab_size);
  std::printf("  length: min %lld, mean %.2f, max %lld\n", static_cast<long long>(min_len),
              static_cast<double>(sum_len) / n, static_cast<long long>(max_len));
  std::printf("  queried positions (mask = 1): min %lld, mean %.2f, max %lld, total %lld\n",
              static_cast<long long>(min_mask), static_cast<double>(sum_mask) / n,
              static_cast<long long>(max_mask), static_cast<long long>(sum_mask));
  for (int i = 0; i < show && i < d.count; ++i) {
    std::printf("item %lld:\n  %s\n", static_cast<long long>(d.first_item + i),
                hax::data::decode_item(s, d.tokens.data() + i * lp, d.mask.data() + i * lp, lp).c_str());
  }
}

bool ends_with(std::string const& s, std::string const& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void export_split(std::string const& path, hax::data::host_split const& d) {
  if (ends_with(path, ".jsonl")) {
    hax::data::write_jsonl(path, d);
  } else if (ends_with(path, ".bin")) {
    hax::data::write_binary(path, d);
  } else {
    throw hax::invalid_argument("joint_recall data: --export '" + path + "' must end in .bin or .jsonl");
  }
  std::printf("wrote %s\n", path.c_str());
}

/// `data` and its `generate` / `inspect` subcommands.
void add_data_command(CLI::App& app, bool& ran) {
  auto* data = app.add_subcommand("data", "generate and inspect joint-recall data (default)");
  static layout_options layout;
  static std::string split_arg = "valid";
  static std::string export_path;
  static int show = 1;
  static std::int64_t count = 0;
  layout.add_to(*data);
  data->add_option("--split", split_arg, "train, valid or test")->capture_default_str();
  data->add_option("--count", count, "generate only the first COUNT items (0 = the whole split)");
  data->add_option("--export", export_path, "write the split to FILE.bin or FILE.jsonl");
  data->add_option("--show", show, "decoded items to print")->capture_default_str();
  data->callback([data, &ran] {
    if (!data->get_subcommands().empty()) return;
    ran = true;
    recall_spec const s = layout.spec();
    split const sp = hax::data::parse_split(split_arg);
    std::int64_t const size = hax::data::split_size(s, sp);
    std::int64_t const n = count > 0 ? std::min(count, size) : size;
    auto const t0 = std::chrono::steady_clock::now();
    Kokkos::DefaultExecutionSpace space;
    auto const ex = hax::data::make_exclusions(space, s);
    auto const d = hax::data::generate_split(space, s, ex, sp, 0, n);
    double const secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("generated %lld of %lld items in %.3f s (%d combinations, %lld items each)\n",
                static_cast<long long>(n), static_cast<long long>(size), secs,
                static_cast<int>(hax::data::n_combinations(s)),
                static_cast<long long>(s.items_per_combination[static_cast<int>(sp)]));
    print_summary(d, show);
    if (!export_path.empty()) export_split(export_path, d);
  });

  auto* gen = data->add_subcommand("generate", "write splits to files (with a progress bar)");
  static std::string out_dir = ".";
  static std::string format = "bin";
  static std::vector<std::string> splits = {"train", "valid", "test"};
  layout.add_to(*gen);
  gen->add_option("--out", out_dir, "output directory")->capture_default_str();
  gen->add_option("--format", format, "bin or jsonl")->check(CLI::IsMember({"bin", "jsonl"}))->capture_default_str();
  gen->add_option("--splits", splits, "splits to write")->delimiter(',')->capture_default_str();
  gen->callback([&ran] {
    ran = true;
    recall_spec const s = layout.spec();
    Kokkos::DefaultExecutionSpace space;
    auto const ex = hax::data::make_exclusions(space, s);
    for (auto const& name : splits) {
      split const sp = hax::data::parse_split(name);
      std::int64_t const size = hax::data::split_size(s, sp);
      auto const d = hax::data::generate_split(space, s, ex, sp, 0, size,
                                               [&](std::int64_t done, std::int64_t total) {
                                                 progress_bar(name, done, total);
                                               });
      auto const path = (std::filesystem::path(out_dir) / (name + "." + format)).string();
      export_split(path, d);
    }
  });

  auto* inspect = data->add_subcommand("inspect", "read a .bin or .jsonl file and print it");
  static std::string file;
  static int inspect_show = 3;
  inspect->add_option("file", file, "FILE.bin or FILE.jsonl")->required();
  inspect->add_option("--show", inspect_show, "decoded items to print")->capture_default_str();
  // JSON Lines carry no layout parameters: the layout options say how to decode them.
  static std::string inspect_split = "train";
  layout.add_to(*inspect);
  inspect->add_option("--split", inspect_split, "split a .jsonl file holds (for the summary)");
  inspect->callback([&ran] {
    ran = true;
    hax::data::host_split d;
    if (ends_with(file, ".jsonl")) {
      d = hax::data::read_jsonl(file, layout.spec());
      d.which = hax::data::parse_split(inspect_split);
    } else {
      d = hax::data::read_binary(file);
    }
    std::printf("%s: ok\n", file.c_str());
    print_summary(d, inspect_show);
  });
}

}  // namespace

int main(int argc, char** argv) {
  hax::core::KokkosScope kokkos(argc, argv);  // leaves -h/--help to CLI11
  CLI::App app{"joint_recall: multi-query joint-recall data (hax)"};
  bool ran = false;
  add_data_command(app, ran);
  add_train_command(app, ran);
  add_table_command(app, ran);
  try {
    app.parse(argc, argv);
    if (!ran) {  // no subcommand: the quick default, `joint_recall data`
      char const* args[] = {argv[0], "data"};
      app.parse(2, const_cast<char**>(args));
    }
  } catch (CLI::ParseError const& e) {
    return app.exit(e);
  } catch (std::exception const& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
