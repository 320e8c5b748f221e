// SPDX-License-Identifier: MIT
/// \file
/// Host-side bookkeeping of a results table (the `joint_recall table` command): the cells of the
/// paper's Table 3 and its numbers (semantics.md section 7), the grid of runs (bases × cells ×
/// learning rates × seeds) and their directories, which runs are finished (resumability), the
/// seed/learning-rate aggregation the paper uses, and the outputs: table.md, table.csv and two
/// hand-written SVG charts (accuracy per cell; validation accuracy vs step). No Kokkos: every
/// function here runs on the host and is tested in tests/host/train/.
///
/// Aggregation: per (base, cell, lr) the mean and the sample standard deviation over seeds of the
/// test accuracy; the cell's learning rate is the one with the highest *mean validation*
/// accuracy (the test split is never used to choose), and the cell's value is the mean test
/// accuracy over seeds at that learning rate, as the paper reports (section 5.1).
#pragma once

#include <hax/core/error.hpp>
#include <hax/io/atomic_file.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace hax::train {

// ---------------------------------------------------------------------------------------------
// The cells of Table 3
// ---------------------------------------------------------------------------------------------

/// One column of Table 3: a sparse architecture on top of a base, or the double-size baseline.
struct TableCell {
  std::string name;         // command-line name: "none", "sliding_window+sink", "double", ...
  std::string label;        // the paper's column header: "Base (dim 64)", "+A", ...
  std::string sparse_arch;  // hax sparse_arch ("" for none and double)
  bool double_size = false; // the "Base (2×dim)" baseline: the double-size config, no branch
  double paper_mamba = 0;   // Table 3, Mamba row, test accuracy in %
  double paper_mamba2 = 0;  // Table 3, Mamba2 row, test accuracy in %
};

/// The nine columns of Table 3 in the paper's order, with its numbers (semantics.md section 7).
inline std::vector<TableCell> const& table_cells() {
  static std::vector<TableCell> const cells = {
      {"none", "Base (dim 64)", "", false, 16.3, 36.6},
      {"dilated", "+D", "dilated", false, 7.8, 19.6},
      {"sliding_window", "+SW", "sliding_window", false, 18.7, 70.6},
      {"sliding_window+dilated", "+SW+D", "sliding_window+dilated", false, 16.6, 48.6},
      {"sliding_window+sink", "+A", "sliding_window+sink", false, 16.4, 49.3},
      {"sign_bin_lsh", "+LSH", "sign_bin_lsh", false, 11.6, 13.5},
      {"key_selection", "+KS", "key_selection", false, 36.6, 60.1},
      {"sign_bin_lsh+key_selection", "+HAX", "sign_bin_lsh+key_selection", false, 38.0, 74.3},
      {"double", "Base (2×dim)", "", true, 34.5, 59.2},
  };
  return cells;
}

/// The bases Table 3 has rows for.
inline std::vector<std::string> const& table_bases() {
  static std::vector<std::string> const bases = {"mamba", "mamba2"};
  return bases;
}

/// The cell called `name`; throws hax::invalid_argument naming `option` for an unknown one.
inline TableCell const& find_cell(std::string const& name, std::string const& option = "--sparse") {
  for (auto const& c : table_cells()) {
    if (c.name == name) return c;
  }
  std::string known;
  for (auto const& c : table_cells()) known += (known.empty() ? "" : ", ") + c.name;
  throw invalid_argument(core::concat("hax::train::table: ", option, ": unknown cell \"", name,
                                      "\" (known: all, ", known, ")"));
}

/// The paper's Table 3 value (%) for base and cell; nullopt where the paper has none.
inline std::optional<double> paper_value(std::string const& base, std::string const& cell) {
  for (auto const& c : table_cells()) {
    if (c.name != cell) continue;
    if (base == "mamba") return c.paper_mamba;
    if (base == "mamba2") return c.paper_mamba2;
  }
  return std::nullopt;
}

/// The display name of a base ("Mamba", "Mamba2").
inline std::string base_label(std::string const& base) {
  if (base == "mamba") return "Mamba";
  if (base == "mamba2") return "Mamba2";
  return base;
}

// ---------------------------------------------------------------------------------------------
// Parsing the grid
// ---------------------------------------------------------------------------------------------

/// Splits "a,b,c" at commas (empty pieces kept, so that "a,,b" can be refused).
inline std::vector<std::string> split_list(std::string const& s) {
  std::vector<std::string> out;
  if (s.empty()) return out;
  std::stringstream in(s);
  std::string piece;
  while (std::getline(in, piece, ',')) out.push_back(piece);
  if (s.back() == ',') out.emplace_back();
  return out;
}

/// The grid of a table: every base × cell × lr × seed is one training run of `steps` updates.
struct TableGrid {
  std::vector<std::string> bases;    // "mamba", "mamba2"
  std::vector<std::string> cells;    // TableCell::name, in the paper's order
  std::vector<double> lrs;           // peak learning rates, each > 0
  std::vector<std::uint64_t> seeds;  // parameter (and hashing) seeds
  std::int64_t steps = 0;            // updates per run
  std::string protocol = "small";    // small | reference (the train subcommand's)
  std::string semantics = "causal";  // causal | reference

  /// Throws hax::invalid_argument naming the option for an empty list, an unknown base or cell,
  /// a duplicate, lr <= 0 or steps < 1.
  void validate() const {
    constexpr char const* op = "hax::train::table";
    core::require(!bases.empty(), op, "--bases is empty");
    core::require(!cells.empty(), op, "--sparse is empty");
    core::require(!lrs.empty(), op, "--lrs is empty");
    core::require(!seeds.empty(), op, "--seeds is empty");
    core::require(steps >= 1, op, "--steps must be >= 1, got ", steps);
    for (auto const& b : bases) {
      bool known = false;
      for (auto const& k : table_bases()) known = known || k == b;
      core::require(known, op, "--bases: unknown base \"", b, "\" (known: mamba, mamba2)");
    }
    for (auto const& c : cells) find_cell(c);
    for (double lr : lrs) {
      core::require(lr > 0.0 && std::isfinite(lr), op, "--lrs: every learning rate must be > 0, got ",
                    lr);
    }
    auto unique = [](auto v) {
      std::sort(v.begin(), v.end());
      return std::adjacent_find(v.begin(), v.end()) == v.end();
    };
    core::require(unique(bases), op, "--bases lists a base twice");
    core::require(unique(cells), op, "--sparse lists a cell twice");
    core::require(unique(lrs), op, "--lrs lists a learning rate twice");
    core::require(unique(seeds), op, "--seeds lists a seed twice");
    core::require(protocol == "small" || protocol == "reference", op,
                  "--protocol must be small or reference, got \"", protocol, "\"");
    core::require(semantics == "causal" || semantics == "reference", op,
                  "--semantics must be causal or reference, got \"", semantics, "\"");
  }
};

/// Parses the command line's lists into a validated grid. `sparse` is "all" or a comma list of
/// cell names (kept in the paper's column order); `lrs` and `seeds` are comma lists.
inline TableGrid parse_grid(std::string const& bases, std::string const& sparse,
                            std::string const& lrs, std::string const& seeds, std::int64_t steps,
                            std::string const& protocol = "small",
                            std::string const& semantics = "causal") {
  constexpr char const* op = "hax::train::table";
  TableGrid g;
  g.steps = steps;
  g.protocol = protocol;
  g.semantics = semantics;
  for (auto const& b : split_list(bases)) {
    core::require(!b.empty(), op, "--bases \"", bases, "\" has an empty entry");
    g.bases.push_back(b);
  }
  if (sparse == "all") {
    for (auto const& c : table_cells()) g.cells.push_back(c.name);
  } else {
    std::vector<std::string> asked;
    for (auto const& c : split_list(sparse)) {
      core::require(!c.empty(), op, "--sparse \"", sparse, "\" has an empty entry");
      find_cell(c);
      asked.push_back(c);
    }
    for (auto const& c : table_cells()) {  // the paper's order, whatever the command's
      auto const n = std::count(asked.begin(), asked.end(), c.name);
      for (std::ptrdiff_t i = 0; i < n; ++i) g.cells.push_back(c.name);
    }
  }
  for (auto const& s : split_list(lrs)) {
    char* end = nullptr;
    double const v = std::strtod(s.c_str(), &end);
    core::require(!s.empty() && end && *end == '\0', op, "--lrs: \"", s, "\" is not a number");
    g.lrs.push_back(v);
  }
  for (auto const& s : split_list(seeds)) {
    core::require(!s.empty() && s.find_first_not_of("0123456789") == std::string::npos, op,
                  "--seeds: \"", s, "\" is not a non-negative integer");
    g.seeds.push_back(std::stoull(s));
  }
  g.validate();
  return g;
}

/// A learning rate as a directory-name-safe string: "0.003", "0.0003", "1e-05".
inline std::string format_lr(double lr) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", lr);
  return buf;
}

/// One run of the grid.
struct RunKey {
  std::string base;
  std::string cell;
  double lr = 0;
  std::uint64_t seed = 0;
};

/// Every run of the grid, in order base, cell, lr, seed.
inline std::vector<RunKey> grid_runs(TableGrid const& g) {
  std::vector<RunKey> runs;
  for (auto const& b : g.bases)
    for (auto const& c : g.cells)
      for (double lr : g.lrs)
        for (auto s : g.seeds) runs.push_back(RunKey{b, c, lr, s});
  return runs;
}

/// <out>/runs/<base>/<cell>/lr<lr>/seed<s>
inline std::filesystem::path run_directory(std::filesystem::path const& out, RunKey const& k) {
  return out / "runs" / k.base / k.cell / ("lr" + format_lr(k.lr)) /
         ("seed" + std::to_string(k.seed));
}

// ---------------------------------------------------------------------------------------------
// Run results and resumability
// ---------------------------------------------------------------------------------------------

/// The final record of one finished run (<run dir>/result.json).
struct RunResult {
  RunKey key;
  double best_valid_accuracy = 0;  // fraction in [0, 1]
  double test_accuracy = 0;        // fraction, on the best-validation checkpoint
  std::int64_t best_step = -1;
  double wall_seconds = 0;         // of the invocation that finished the run
};

inline constexpr char const* kResultFile = "result.json";
inline constexpr char const* kLastCheckpoint = "last.haxckpt";

/// Writes <dir>/result.json atomically: `config` (everything that defines the run) and the result.
inline void write_run_result(std::filesystem::path const& dir, nlohmann::json const& config,
                             RunResult const& r) {
  nlohmann::json j{{"config", config},
                   {"base", r.key.base},
                   {"cell", r.key.cell},
                   {"lr", r.key.lr},
                   {"seed", r.key.seed},
                   {"best_valid_accuracy", r.best_valid_accuracy},
                   {"test_accuracy", r.test_accuracy},
                   {"best_step", r.best_step},
                   {"wall_seconds", r.wall_seconds}};
  std::string const text = j.dump(2) + "\n";
  std::filesystem::create_directories(dir);
  io::write_file_atomically(dir / kResultFile,
                            std::as_bytes(std::span<char const>(text.data(), text.size())));
}

/// Reads <dir>/result.json; nullopt when it is missing or unreadable, or when `config` is given
/// and differs from the one the file was written for.
inline std::optional<RunResult> read_run_result(std::filesystem::path const& dir,
                                                nlohmann::json const* config = nullptr) {
  std::ifstream in(dir / kResultFile);
  if (!in) return std::nullopt;
  auto const j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  if (config && j.value("config", nlohmann::json()) != *config) return std::nullopt;
  try {
    RunResult r;
    r.key = RunKey{j.at("base").get<std::string>(), j.at("cell").get<std::string>(),
                   j.at("lr").get<double>(), j.at("seed").get<std::uint64_t>()};
    r.best_valid_accuracy = j.at("best_valid_accuracy").get<double>();
    r.test_accuracy = j.at("test_accuracy").get<double>();
    r.best_step = j.at("best_step").get<std::int64_t>();
    r.wall_seconds = j.value("wall_seconds", 0.0);
    return r;
  } catch (nlohmann::json::exception const&) {
    return std::nullopt;
  }
}

/// Where a run stands.
enum class RunState {
  pending,  // nothing yet: trains from scratch
  partial,  // a checkpoint and no matching result: resumes from last.haxckpt
  stale,    // a result for another config (e.g. fewer steps): resumes from its checkpoint
  done      // result.json matches the config: skipped
};

inline char const* state_name(RunState s) {
  switch (s) {
    case RunState::pending: return "pending";
    case RunState::partial: return "partial";
    case RunState::stale: return "stale";
    case RunState::done: return "done";
  }
  return "?";
}

/// The state of the run in `dir` for `config`.
inline RunState run_state(std::filesystem::path const& dir, nlohmann::json const& config) {
  namespace fs = std::filesystem;
  if (read_run_result(dir, &config)) return RunState::done;
  if (fs::exists(dir / kResultFile)) return RunState::stale;
  if (fs::exists(dir / kLastCheckpoint)) return RunState::partial;
  return RunState::pending;
}

/// Validation accuracy vs step from a run's metrics.jsonl (lines with "split": "valid"). A
/// resumed run logs the steps after its checkpoint again: the last record of a step wins.
/// Unparsable lines (a line cut by a crash) are skipped. Sorted by step; empty if no file.
inline std::vector<std::pair<std::int64_t, double>> read_valid_curve(
    std::filesystem::path const& metrics_jsonl) {
  std::map<std::int64_t, double> by_step;
  std::ifstream in(metrics_jsonl);
  std::string line;
  while (std::getline(in, line)) {
    auto const j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object() || j.value("split", std::string()) != "valid") continue;
    if (!j.contains("step") || !j.contains("accuracy")) continue;
    by_step[j["step"].get<std::int64_t>()] = j["accuracy"].get<double>();
  }
  return {by_step.begin(), by_step.end()};
}

// ---------------------------------------------------------------------------------------------
// Aggregation
// ---------------------------------------------------------------------------------------------

/// Mean and sample standard deviation (n - 1 in the denominator; 0 for one value).
inline std::pair<double, double> mean_std(std::vector<double> const& v) {
  if (v.empty()) return {0.0, 0.0};
  double m = 0;
  for (double x : v) m += x;
  m /= static_cast<double>(v.size());
  if (v.size() < 2) return {m, 0.0};
  double ss = 0;
  for (double x : v) ss += (x - m) * (x - m);
  return {m, std::sqrt(ss / static_cast<double>(v.size() - 1))};
}

/// The seeds of one (base, cell, lr).
struct LrSummary {
  double lr = 0;
  int n_seeds = 0;
  double valid_mean = 0;  // mean over seeds of the best validation accuracy (fraction)
  double test_mean = 0;   // mean over seeds of the test accuracy (fraction)
  double test_std = 0;    // sample standard deviation over seeds
};

/// One (base, cell) of the table.
struct CellSummary {
  std::string base;
  std::string cell;
  std::vector<LrSummary> per_lr;  // in the grid's lr order; only lrs with >= 1 finished seed
  int best = -1;                  // index into per_lr (highest valid_mean), -1 if no results
  std::optional<double> paper;    // Table 3 (%)

  bool has_result() const { return best >= 0; }
  LrSummary const& best_lr() const { return per_lr.at(static_cast<std::size_t>(best)); }
};

/// Aggregates finished runs over the grid's (base, cell) pairs: per lr the mean/std over seeds,
/// the best lr by mean validation accuracy (ties: the first in the grid's order), its test mean.
/// Results outside the grid are ignored. Order: base, then cell, as in the grid.
inline std::vector<CellSummary> aggregate(TableGrid const& g, std::vector<RunResult> const& results) {
  std::vector<CellSummary> out;
  for (auto const& b : g.bases) {
    for (auto const& c : g.cells) {
      CellSummary s;
      s.base = b;
      s.cell = c;
      s.paper = paper_value(b, c);
      for (double lr : g.lrs) {
        std::vector<double> valid, test;
        for (auto const& r : results) {
          if (r.key.base != b || r.key.cell != c || r.key.lr != lr) continue;
          if (std::find(g.seeds.begin(), g.seeds.end(), r.key.seed) == g.seeds.end()) continue;
          valid.push_back(r.best_valid_accuracy);
          test.push_back(r.test_accuracy);
        }
        if (valid.empty()) continue;
        LrSummary l;
        l.lr = lr;
        l.n_seeds = static_cast<int>(valid.size());
        l.valid_mean = mean_std(valid).first;
        std::tie(l.test_mean, l.test_std) = mean_std(test);
        s.per_lr.push_back(l);
        if (s.best < 0 || l.valid_mean > s.per_lr[static_cast<std::size_t>(s.best)].valid_mean) {
          s.best = static_cast<int>(s.per_lr.size()) - 1;
        }
      }
      out.push_back(std::move(s));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------

/// Writes `text` to `path` atomically (temporary + rename).
inline void write_text_atomically(std::filesystem::path const& path, std::string const& text) {
  io::write_file_atomically(path, std::as_bytes(std::span<char const>(text.data(), text.size())));
}

/// "%.1f" of a fraction as a percentage.
inline std::string percent(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", 100.0 * fraction);
  return buf;
}

/// The budget line shared by table.md and the charts.
inline std::string budget_text(TableGrid const& g) {
  std::string lrs, seeds;
  for (double lr : g.lrs) lrs += (lrs.empty() ? "" : ", ") + format_lr(lr);
  for (auto s : g.seeds) seeds += (seeds.empty() ? "" : ", ") + std::to_string(s);
  return core::concat(g.steps, " steps per run, protocol ", g.protocol, ", semantics ",
                      g.semantics, ", seeds {", seeds, "}, learning rates {", lrs, "}");
}

/// table.md: rows = bases, columns = cells; each entry "hax mean ± std (paper)" in %, then the
/// best learning rate and seed count per entry, and the budget.
inline std::string table_markdown(TableGrid const& g, std::vector<CellSummary> const& cells) {
  auto find = [&](std::string const& b, std::string const& c) -> CellSummary const* {
    for (auto const& s : cells)
      if (s.base == b && s.cell == c) return &s;
    return nullptr;
  };
  std::ostringstream md;
  md << "# Multi-query joint recall: test accuracy (%)\n\n";
  md << "Budget: " << budget_text(g) << ".\n\n";
  md << "Each entry: hax mean ± std over seeds at the learning rate with the best mean validation "
        "accuracy, then (in parentheses) the paper's Table 3 value (400 000 steps, 3 seeds, lrs "
        "3e-3, 1e-3, 3e-4). \"—\": no finished run.\n\n";
  md << "| |";
  for (auto const& c : g.cells) md << " " << find_cell(c).label << " |";
  md << "\n|---|";
  for (std::size_t i = 0; i < g.cells.size(); ++i) md << "---|";
  md << "\n";
  for (auto const& b : g.bases) {
    md << "| " << base_label(b) << " |";
    for (auto const& c : g.cells) {
      auto const* s = find(b, c);
      std::string entry = "—";
      if (s && s->has_result()) {
        entry = percent(s->best_lr().test_mean) + " ± " + percent(s->best_lr().test_std);
      }
      if (s && s->paper) {
        char buf[32];
        std::snprintf(buf, sizeof buf, " (%.1f)", *s->paper);
        entry += buf;
      }
      md << " " << entry << " |";
    }
    md << "\n";
  }
  md << "\nBest learning rate (seeds finished) per entry:\n\n| |";
  for (auto const& c : g.cells) md << " " << find_cell(c).label << " |";
  md << "\n|---|";
  for (std::size_t i = 0; i < g.cells.size(); ++i) md << "---|";
  md << "\n";
  for (auto const& b : g.bases) {
    md << "| " << base_label(b) << " |";
    for (auto const& c : g.cells) {
      auto const* s = find(b, c);
      if (s && s->has_result()) {
        md << " " << format_lr(s->best_lr().lr) << " (" << s->best_lr().n_seeds << "/"
           << g.seeds.size() << ") |";
      } else {
        md << " — |";
      }
    }
    md << "\n";
  }
  return md.str();
}

/// table.csv: one row per (base, cell); accuracies in %, empty fields where there is no value.
inline std::string table_csv(std::vector<CellSummary> const& cells) {
  std::ostringstream csv;
  csv << "base,cell,label,mean_test_accuracy_pct,std_test_accuracy_pct,best_lr,"
         "mean_valid_accuracy_pct,n_seeds,paper_test_accuracy_pct\n";
  for (auto const& s : cells) {
    csv << s.base << "," << s.cell << ",\"" << find_cell(s.cell).label << "\",";
    if (s.has_result()) {
      auto const& l = s.best_lr();
      csv << percent(l.test_mean) << "," << percent(l.test_std) << "," << format_lr(l.lr) << ","
          << percent(l.valid_mean) << "," << l.n_seeds << ",";
    } else {
      csv << ",,,,0,";
    }
    if (s.paper) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.1f", *s.paper);
      csv << buf;
    }
    csv << "\n";
  }
  return csv.str();
}

/// A minimal SVG writer: shapes appended in order, text escaped, numbers with two decimals.
class SvgWriter {
 public:
  SvgWriter(double width, double height) : width_(width), height_(height) {}

  void rect(double x, double y, double w, double h, std::string const& fill,
            std::string const& cls = "", double opacity = 1.0) {
    body_ << "  <rect" << cls_attr(cls) << " x=\"" << num(x) << "\" y=\"" << num(y)
          << "\" width=\"" << num(w) << "\" height=\"" << num(h) << "\" fill=\"" << fill << "\"";
    if (opacity < 1.0) body_ << " fill-opacity=\"" << num(opacity) << "\"";
    body_ << "/>\n";
  }
  void line(double x1, double y1, double x2, double y2, std::string const& stroke,
            double width = 1.0, std::string const& cls = "") {
    body_ << "  <line" << cls_attr(cls) << " x1=\"" << num(x1) << "\" y1=\"" << num(y1)
          << "\" x2=\"" << num(x2) << "\" y2=\"" << num(y2) << "\" stroke=\"" << stroke
          << "\" stroke-width=\"" << num(width) << "\"/>\n";
  }
  void polyline(std::vector<std::pair<double, double>> const& points, std::string const& stroke,
                double width = 1.5, std::string const& cls = "") {
    body_ << "  <polyline" << cls_attr(cls) << " fill=\"none\" stroke=\"" << stroke
          << "\" stroke-width=\"" << num(width) << "\" points=\"";
    for (std::size_t i = 0; i < points.size(); ++i) {
      body_ << (i ? " " : "") << num(points[i].first) << "," << num(points[i].second);
    }
    body_ << "\"/>\n";
  }
  /// `anchor`: start | middle | end.
  void text(double x, double y, std::string const& s, double size = 12,
            std::string const& anchor = "start", std::string const& cls = "") {
    body_ << "  <text" << cls_attr(cls) << " x=\"" << num(x) << "\" y=\"" << num(y)
          << "\" font-size=\"" << num(size) << "\" text-anchor=\"" << anchor << "\">"
          << escape(s) << "</text>\n";
  }
  /// The document.
  std::string str() const {
    std::ostringstream out;
    out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << num(width_) << "\" height=\""
        << num(height_) << "\" viewBox=\"0 0 " << num(width_) << " " << num(height_)
        << "\" font-family=\"sans-serif\">\n"
        << "  <rect x=\"0\" y=\"0\" width=\"" << num(width_) << "\" height=\"" << num(height_)
        << "\" fill=\"white\"/>\n"
        << body_.str() << "</svg>\n";
    return out.str();
  }

  static std::string escape(std::string const& s) {
    std::string out;
    for (char ch : s) {
      switch (ch) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        default: out += ch;
      }
    }
    return out;
  }

 private:
  static std::string num(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f", v);
    return buf;
  }
  static std::string cls_attr(std::string const& cls) {
    return cls.empty() ? std::string() : " class=\"" + cls + "\"";
  }
  double width_, height_;
  std::ostringstream body_;
};

/// A colour per base (hax bars/lines); the paper's bars use the same colour, lighter.
inline std::string base_colour(std::size_t i) {
  static char const* const colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd"};
  return colours[i % 4];
}

/// table.svg: per cell a group of bars, per base one hax bar (mean, with a ±std whisker) and one
/// paper bar (lighter), on a 0–100 % axis.
inline std::string table_svg(TableGrid const& g, std::vector<CellSummary> const& cells) {
  double const left = 60, top = 50, plot_h = 300, bar_w = 14, gap = 24;
  double const group_w = static_cast<double>(g.bases.size()) * 2 * bar_w;
  double const plot_w = static_cast<double>(g.cells.size()) * (group_w + gap) + gap;
  double const width = left + plot_w + 20, height = top + plot_h + 110;
  SvgWriter svg(width, height);
  svg.text(left, 22, "Multi-query joint recall: test accuracy (%), hax vs paper (lighter)", 15);
  svg.text(left, 40, budget_text(g), 10);
  auto y_of = [&](double pct) { return top + plot_h * (1.0 - pct / 100.0); };
  for (int t = 0; t <= 100; t += 20) {
    svg.line(left, y_of(t), left + plot_w, y_of(t), "#dddddd", 1, "grid");
    svg.text(left - 6, y_of(t) + 4, std::to_string(t), 10, "end");
  }
  svg.line(left, top, left, top + plot_h, "black", 1, "axis");
  svg.line(left, top + plot_h, left + plot_w, top + plot_h, "black", 1, "axis");
  for (std::size_t ci = 0; ci < g.cells.size(); ++ci) {
    double const x0 = left + gap + static_cast<double>(ci) * (group_w + gap);
    for (std::size_t bi = 0; bi < g.bases.size(); ++bi) {
      double const x = x0 + static_cast<double>(bi) * 2 * bar_w;
      std::string const colour = base_colour(bi);
      for (auto const& s : cells) {
        if (s.base != g.bases[bi] || s.cell != g.cells[ci]) continue;
        if (s.has_result()) {
          double const m = 100.0 * s.best_lr().test_mean, sd = 100.0 * s.best_lr().test_std;
          svg.rect(x, y_of(m), bar_w, y_of(0) - y_of(m), colour, "bar-hax");
          if (sd > 0) {
            svg.line(x + bar_w / 2, y_of(std::min(100.0, m + sd)), x + bar_w / 2,
                     y_of(std::max(0.0, m - sd)), "black", 1, "whisker");
          }
        }
        if (s.paper) {
          svg.rect(x + bar_w, y_of(*s.paper), bar_w, y_of(0) - y_of(*s.paper), colour,
                   "bar-paper", 0.35);
        }
      }
    }
    svg.text(x0 + group_w / 2, top + plot_h + 16, find_cell(g.cells[ci]).label, 10, "middle");
  }
  double ly = top + plot_h + 45;
  for (std::size_t bi = 0; bi < g.bases.size(); ++bi) {
    double const lx = left + static_cast<double>(bi) * 220;
    svg.rect(lx, ly - 10, 12, 12, base_colour(bi), "legend");
    svg.text(lx + 16, ly, base_label(g.bases[bi]) + " (hax)", 11);
    svg.rect(lx + 110, ly - 10, 12, 12, base_colour(bi), "legend", 0.35);
    svg.text(lx + 126, ly, "paper", 11);
  }
  svg.text(left, ly + 25, "Whiskers: ± std over seeds at the best learning rate (by validation).",
           10);
  return svg.str();
}

/// One validation curve: a run's (step, accuracy) points.
struct Curve {
  std::string base;
  std::string cell;
  double lr = 0;
  std::uint64_t seed = 0;
  std::vector<std::pair<std::int64_t, double>> points;  // (step, accuracy fraction)
};

/// curves.svg: one panel per cell (validation accuracy % vs step), one line per curve coloured
/// by base. The caller chooses the curves (the table command: every seed at the best lr).
inline std::string curves_svg(TableGrid const& g, std::vector<Curve> const& curves) {
  std::size_t const cols = std::min<std::size_t>(3, std::max<std::size_t>(1, g.cells.size()));
  std::size_t const rows = (g.cells.size() + cols - 1) / cols;
  double const pw = 260, ph = 170, mx = 60, my = 50, top = 60;
  double const width = static_cast<double>(cols) * (pw + mx) + 20;
  double const height = top + static_cast<double>(rows) * (ph + my) + 40;
  SvgWriter svg(width, height);
  svg.text(20, 22, "Validation accuracy (%) vs step, every seed at the best learning rate", 15);
  svg.text(20, 40, budget_text(g), 10);
  std::int64_t max_step = 1;
  for (auto const& c : curves)
    for (auto const& p : c.points) max_step = std::max(max_step, p.first);
  for (std::size_t ci = 0; ci < g.cells.size(); ++ci) {
    double const x0 = mx + static_cast<double>(ci % cols) * (pw + mx);
    double const y0 = top + static_cast<double>(ci / cols) * (ph + my);
    auto px = [&](double step) { return x0 + pw * step / static_cast<double>(max_step); };
    auto py = [&](double frac) { return y0 + ph * (1.0 - frac); };
    svg.text(x0 + pw / 2, y0 - 6, find_cell(g.cells[ci]).label, 12, "middle");
    for (int t = 0; t <= 100; t += 25) {
      svg.line(x0, py(t / 100.0), x0 + pw, py(t / 100.0), "#dddddd", 1, "grid");
      svg.text(x0 - 4, py(t / 100.0) + 4, std::to_string(t), 9, "end");
    }
    svg.line(x0, y0, x0, y0 + ph, "black", 1, "axis");
    svg.line(x0, y0 + ph, x0 + pw, y0 + ph, "black", 1, "axis");
    svg.text(x0 + pw, y0 + ph + 14, std::to_string(max_step), 9, "end");
    svg.text(x0, y0 + ph + 14, "0", 9, "start");
    for (auto const& c : curves) {
      if (c.cell != g.cells[ci] || c.points.empty()) continue;
      auto const bi = static_cast<std::size_t>(
          std::find(g.bases.begin(), g.bases.end(), c.base) - g.bases.begin());
      std::vector<std::pair<double, double>> pts;
      for (auto const& p : c.points) pts.emplace_back(px(static_cast<double>(p.first)), py(p.second));
      if (pts.size() == 1) pts.emplace_back(pts[0].first + 2, pts[0].second);  // visible dot
      svg.polyline(pts, base_colour(bi), 1.5, "curve");
    }
  }
  double const ly = height - 15;
  for (std::size_t bi = 0; bi < g.bases.size(); ++bi) {
    double const lx = 20 + static_cast<double>(bi) * 160;
    svg.line(lx, ly - 4, lx + 20, ly - 4, base_colour(bi), 2, "legend");
    svg.text(lx + 26, ly, base_label(g.bases[bi]), 11);
  }
  return svg.str();
}

}  // namespace hax::train
