// SPDX-License-Identifier: MIT
/// hax::train report (the `joint_recall table` bookkeeping): grid parsing and its errors, run
/// directories and which runs are done (on a temporary directory), validation curves from
/// metrics.jsonl, the seed/lr aggregation on synthetic results, and the contents of table.md,
/// table.csv and the two SVG charts (parsed back with a small XML checker).
#include <hax/train/report.hpp>

#include <catch2/catch_approx.hpp>
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

namespace {

using Catch::Matchers::ContainsSubstring;
namespace fs = std::filesystem;
using hax::train::RunKey;
using hax::train::RunResult;
using hax::train::RunState;

/// A fresh temporary directory, removed on scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() /
           ("hax_report_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

/// Checks that `doc` is well-formed XML in the subset the SVG writer emits (declaration, elements
/// with quoted attributes, text, self-closing tags) and counts each element name and each
/// `class` attribute value. Fails the test on the first problem.
struct XmlSummary {
  std::map<std::string, int> elements;
  std::map<std::string, int> classes;
  std::string root;
};

XmlSummary parse_xml(std::string const& doc) {
  XmlSummary out;
  std::vector<std::string> stack;
  std::size_t i = 0;
  if (doc.rfind("<?xml", 0) == 0) {
    i = doc.find("?>");
    REQUIRE(i != std::string::npos);
    i += 2;
  }
  while (i < doc.size()) {
    if (doc[i] != '<') {
      // Text: must not contain a raw '<' or '&' that is not an entity.
      std::size_t const next = doc.find('<', i);
      std::string const text = doc.substr(i, next == std::string::npos ? std::string::npos : next - i);
      for (std::size_t a = text.find('&'); a != std::string::npos; a = text.find('&', a + 1)) {
        REQUIRE(text.find(';', a) != std::string::npos);
      }
      if (next == std::string::npos) break;
      i = next;
      continue;
    }
    std::size_t const close = doc.find('>', i);
    REQUIRE(close != std::string::npos);
    std::string tag = doc.substr(i + 1, close - i - 1);
    i = close + 1;
    if (!tag.empty() && tag[0] == '/') {
      REQUIRE(!stack.empty());
      CHECK(stack.back() == tag.substr(1));
      stack.pop_back();
      continue;
    }
    bool const self_closing = !tag.empty() && tag.back() == '/';
    if (self_closing) tag.pop_back();
    std::size_t const sp = tag.find(' ');
    std::string const name = tag.substr(0, sp);
    REQUIRE(!name.empty());
    if (stack.empty()) {
      CHECK(out.root.empty());  // a single root element
      out.root = name;
    }
    ++out.elements[name];
    // Attributes: name="value" pairs, values without '<' or an unescaped '"'.
    std::size_t a = sp;
    while (a != std::string::npos && a < tag.size()) {
      while (a < tag.size() && tag[a] == ' ') ++a;
      if (a >= tag.size()) break;
      std::size_t const eq = tag.find('=', a);
      REQUIRE(eq != std::string::npos);
      REQUIRE(eq + 1 < tag.size());
      REQUIRE(tag[eq + 1] == '"');
      std::size_t const end = tag.find('"', eq + 2);
      REQUIRE(end != std::string::npos);
      std::string const key = tag.substr(a, eq - a);
      std::string const value = tag.substr(eq + 2, end - eq - 2);
      CHECK(value.find('<') == std::string::npos);
      if (key == "class") ++out.classes[value];
      a = end + 1;
    }
    if (!self_closing) stack.push_back(name);
  }
  CHECK(stack.empty());
  return out;
}

RunResult result(std::string base, std::string cell, double lr, std::uint64_t seed, double valid,
                 double test) {
  RunResult r;
  r.key = RunKey{std::move(base), std::move(cell), lr, seed};
  r.best_valid_accuracy = valid;
  r.test_accuracy = test;
  r.best_step = 100;
  r.wall_seconds = 1.0;
  return r;
}

}  // namespace

TEST_CASE("report: parse_grid expands all, keeps the paper's order, and builds run directories",
          "[train][report]") {
  auto const g = hax::train::parse_grid("mamba,mamba2", "all", "3e-3,1e-3,3e-4", "1,2,3", 100);
  REQUIRE(g.cells.size() == 9);
  CHECK(g.cells.front() == "none");
  CHECK(g.cells[7] == "sign_bin_lsh+key_selection");
  CHECK(g.cells.back() == "double");
  CHECK(g.lrs == std::vector<double>{3e-3, 1e-3, 3e-4});
  CHECK(hax::train::grid_runs(g).size() == 2u * 9u * 3u * 3u);

  // A comma list is put in the columns' order.
  auto const h = hax::train::parse_grid("mamba2", "double,none,sliding_window", "1e-3", "7", 5);
  CHECK(h.cells == std::vector<std::string>{"none", "sliding_window", "double"});
  auto const runs = hax::train::grid_runs(h);
  REQUIRE(runs.size() == 3);
  CHECK(hax::train::run_directory("out", runs[1]) ==
        fs::path("out/runs/mamba2/sliding_window/lr0.001/seed7"));
  CHECK(hax::train::find_cell("sliding_window+sink").label == "+A");
  CHECK(*hax::train::paper_value("mamba2", "sign_bin_lsh+key_selection") == 74.3);
  CHECK(*hax::train::paper_value("mamba", "double") == 34.5);
}

TEST_CASE("report: bad grids are refused with errors naming the option", "[train][report]") {
  using hax::train::parse_grid;
  CHECK_THROWS_WITH(parse_grid("mamba3", "all", "1e-3", "1", 10),
                    ContainsSubstring("--bases") && ContainsSubstring("mamba3"));
  CHECK_THROWS_WITH(parse_grid("mamba", "none,lsh", "1e-3", "1", 10),
                    ContainsSubstring("--sparse") && ContainsSubstring("\"lsh\""));
  CHECK_THROWS_WITH(parse_grid("mamba", "all", "1e-3", "", 10),
                    ContainsSubstring("--seeds is empty"));
  CHECK_THROWS_WITH(parse_grid("mamba", "all", "1e-3", "1,x", 10),
                    ContainsSubstring("--seeds") && ContainsSubstring("\"x\""));
  CHECK_THROWS_WITH(parse_grid("mamba", "all", "1e-3,0", "1", 10),
                    ContainsSubstring("--lrs") && ContainsSubstring("> 0"));
  CHECK_THROWS_WITH(parse_grid("mamba", "all", "-1e-3", "1", 10), ContainsSubstring("--lrs"));
  CHECK_THROWS_WITH(parse_grid("mamba", "all", "fast", "1", 10),
                    ContainsSubstring("--lrs") && ContainsSubstring("not a number"));
  CHECK_THROWS_WITH(parse_grid("mamba", "all", "", "1", 10), ContainsSubstring("--lrs is empty"));
  CHECK_THROWS_WITH(parse_grid("mamba", "all", "1e-3", "1", 0),
                    ContainsSubstring("--steps must be >= 1, got 0"));
  CHECK_THROWS_WITH(parse_grid("", "all", "1e-3", "1", 10), ContainsSubstring("--bases is empty"));
  CHECK_THROWS_WITH(parse_grid("mamba", "none,,dilated", "1e-3", "1", 10),
                    ContainsSubstring("--sparse") && ContainsSubstring("empty entry"));
  CHECK_THROWS_WITH(parse_grid("mamba", "all", "1e-3", "1,1", 10),
                    ContainsSubstring("--seeds lists a seed twice"));
  CHECK_THROWS_WITH(parse_grid("mamba", "all", "1e-3", "1", 10, "huge"),
                    ContainsSubstring("--protocol"));
  CHECK_THROWS_AS(parse_grid("mamba", "all", "1e-3", "1", 10, "small", "acausal"),
                  hax::invalid_argument);
}

TEST_CASE("report: aggregation takes the seed mean at the lr with the best mean validation",
          "[train][report]") {
  auto const g = hax::train::parse_grid("mamba,mamba2", "none,key_selection", "3e-3,1e-3", "1,2,3",
                                        10);
  std::vector<RunResult> rs;
  // mamba2/none: lr 3e-3 has the better validation (0.5 vs 0.4) although 1e-3 tests higher:
  // the test split must not choose.
  rs.push_back(result("mamba2", "none", 3e-3, 1, 0.50, 0.30));
  rs.push_back(result("mamba2", "none", 3e-3, 2, 0.52, 0.36));
  rs.push_back(result("mamba2", "none", 3e-3, 3, 0.48, 0.33));
  rs.push_back(result("mamba2", "none", 1e-3, 1, 0.40, 0.90));
  rs.push_back(result("mamba2", "none", 1e-3, 2, 0.40, 0.90));
  rs.push_back(result("mamba2", "none", 1e-3, 3, 0.40, 0.90));
  // mamba/key_selection: one seed at 1e-3 only (an unfinished grid).
  rs.push_back(result("mamba", "key_selection", 1e-3, 2, 0.2, 0.25));
  // Outside the grid: ignored.
  rs.push_back(result("mamba2", "none", 3e-4, 1, 0.99, 0.99));
  rs.push_back(result("mamba2", "none", 3e-3, 9, 0.99, 0.99));

  auto const cells = hax::train::aggregate(g, rs);
  REQUIRE(cells.size() == 4);
  CHECK(cells[0].base == "mamba");
  CHECK(cells[0].cell == "none");
  CHECK_FALSE(cells[0].has_result());
  CHECK(*cells[0].paper == 16.3);

  auto const& ks = cells[1];
  REQUIRE(ks.has_result());
  CHECK(ks.per_lr.size() == 1);
  CHECK(ks.best_lr().lr == 1e-3);
  CHECK(ks.best_lr().n_seeds == 1);
  CHECK(ks.best_lr().test_mean == Catch::Approx(0.25));
  CHECK(ks.best_lr().test_std == 0.0);

  auto const& none2 = cells[2];
  REQUIRE(none2.has_result());
  REQUIRE(none2.per_lr.size() == 2);
  CHECK(none2.best_lr().lr == 3e-3);
  CHECK(none2.best_lr().n_seeds == 3);
  CHECK(none2.best_lr().valid_mean == Catch::Approx(0.50));
  CHECK(none2.best_lr().test_mean == Catch::Approx(0.33));
  // Sample standard deviation of {0.30, 0.36, 0.33}: deviations ±0.03, 0 -> sqrt(0.0018 / 2).
  CHECK(none2.best_lr().test_std == Catch::Approx(0.03).epsilon(1e-9));
  CHECK(none2.per_lr[1].test_mean == Catch::Approx(0.90));
  CHECK(none2.per_lr[1].test_std == Catch::Approx(0.0).margin(1e-12));

  // Equal validation means: the first lr of the grid wins.
  std::vector<RunResult> tie = {result("mamba", "none", 3e-3, 1, 0.5, 0.1),
                                result("mamba", "none", 1e-3, 1, 0.5, 0.2)};
  auto const t = hax::train::aggregate(g, tie);
  CHECK(t[0].best_lr().lr == 3e-3);
}

TEST_CASE("report: table.md and table.csv hold hax beside the paper, the best lr and the budget",
          "[train][report]") {
  auto const g = hax::train::parse_grid("mamba,mamba2", "none,sign_bin_lsh+key_selection,double",
                                        "3e-3,1e-3", "1,2", 1234, "small", "causal");
  std::vector<RunResult> rs = {result("mamba2", "sign_bin_lsh+key_selection", 1e-3, 1, 0.6, 0.70),
                               result("mamba2", "sign_bin_lsh+key_selection", 1e-3, 2, 0.6, 0.74),
                               result("mamba2", "none", 3e-3, 1, 0.3, 0.25)};
  auto const cells = hax::train::aggregate(g, rs);
  auto const md = hax::train::table_markdown(g, cells);
  CHECK_THAT(md, ContainsSubstring("| | Base (dim 64) | +HAX | Base (2×dim) |"));
  // mean 72.0, sample std of {70, 74} = 2.83; paper 74.3.
  CHECK_THAT(md, ContainsSubstring("| Mamba2 | 25.0 ± 0.0 (36.6) | 72.0 ± 2.8 (74.3) | — (59.2) |"));
  CHECK_THAT(md, ContainsSubstring("| Mamba | — (16.3) | — (38.0) | — (34.5) |"));
  CHECK_THAT(md, ContainsSubstring("1234 steps per run, protocol small, semantics causal, seeds "
                                   "{1, 2}, learning rates {0.003, 0.001}"));
  CHECK_THAT(md, ContainsSubstring("| Mamba2 | 0.003 (1/2) | 0.001 (2/2) | — |"));
  CHECK_THAT(md, ContainsSubstring("best mean validation"));

  auto const csv = hax::train::table_csv(cells);
  std::vector<std::string> lines;
  std::istringstream in(csv);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  REQUIRE(lines.size() == 1 + 6);
  CHECK(lines[0] ==
        "base,cell,label,mean_test_accuracy_pct,std_test_accuracy_pct,best_lr,"
        "mean_valid_accuracy_pct,n_seeds,paper_test_accuracy_pct");
  CHECK(lines[1] == "mamba,none,\"Base (dim 64)\",,,,,0,16.3");
  CHECK(lines[5] == "mamba2,sign_bin_lsh+key_selection,\"+HAX\",72.0,2.8,0.001,60.0,2,74.3");
  CHECK(lines[6] == "mamba2,double,\"Base (2×dim)\",,,,,0,59.2");
}

TEST_CASE("report: the SVG charts are well-formed, with one bar per result and one line per curve",
          "[train][report]") {
  auto const g = hax::train::parse_grid("mamba,mamba2", "none,sliding_window", "1e-3", "1,2", 50);
  std::vector<RunResult> rs = {result("mamba2", "none", 1e-3, 1, 0.3, 0.2),
                               result("mamba2", "none", 1e-3, 2, 0.3, 0.4),
                               result("mamba", "sliding_window", 1e-3, 1, 0.1, 0.1)};
  auto const cells = hax::train::aggregate(g, rs);
  auto const bars = parse_xml(hax::train::table_svg(g, cells));
  CHECK(bars.root == "svg");
  CHECK(bars.classes.at("bar-hax") == 2);    // two (base, cell) with results
  CHECK(bars.classes.at("bar-paper") == 4);  // every (base, cell) has a paper value
  CHECK(bars.classes.at("whisker") == 1);    // std > 0 only for mamba2/none
  CHECK(bars.elements.at("text") >= 4);

  std::vector<hax::train::Curve> curves = {
      {"mamba2", "none", 1e-3, 1, {{25, 0.1}, {50, 0.2}}},
      {"mamba2", "none", 1e-3, 2, {{25, 0.15}, {50, 0.4}}},
      {"mamba", "sliding_window", 1e-3, 1, {{50, 0.1}}},
  };
  auto const lines = parse_xml(hax::train::curves_svg(g, curves));
  CHECK(lines.root == "svg");
  CHECK(lines.classes.at("curve") == 3);
  CHECK(lines.elements.at("polyline") == 3);

  // Text is escaped.
  hax::train::SvgWriter w(10, 10);
  w.text(0, 0, "a<b & \"c\"");
  auto const s = parse_xml(w.str());
  CHECK_THAT(w.str(), ContainsSubstring("a&lt;b &amp; &quot;c&quot;"));
  CHECK(s.elements.at("text") == 1);
}

TEST_CASE("report: run states on disk: pending, partial, stale, done", "[train][report]") {
  TempDir tmp;
  RunKey const key{"mamba2", "none", 3e-3, 1};
  auto const dir = hax::train::run_directory(tmp.path, key);
  nlohmann::json const config{{"steps", 50}, {"lr", 3e-3}};
  nlohmann::json const longer{{"steps", 100}, {"lr", 3e-3}};

  CHECK(hax::train::run_state(dir, config) == RunState::pending);
  fs::create_directories(dir);
  std::ofstream(dir / "last.haxckpt") << "checkpoint";
  CHECK(hax::train::run_state(dir, config) == RunState::partial);

  RunResult r = result("mamba2", "none", 3e-3, 1, 0.4, 0.35);
  hax::train::write_run_result(dir, config, r);
  CHECK(hax::train::run_state(dir, config) == RunState::done);
  CHECK(hax::train::run_state(dir, longer) == RunState::stale);  // more steps: resume, not skip
  auto const back = hax::train::read_run_result(dir, &config);
  REQUIRE(back);
  CHECK(back->key.cell == "none");
  CHECK(back->key.lr == 3e-3);
  CHECK(back->test_accuracy == 0.35);
  CHECK(back->best_valid_accuracy == 0.4);
  CHECK_FALSE(hax::train::read_run_result(dir, &longer));
  // No temporary left beside the result.
  int files = 0;
  for (auto const& e : fs::directory_iterator(dir)) files += e.path().filename().string()[0] == '.';
  CHECK(files == 0);

  // A truncated result is not "done".
  std::ofstream(dir / "result.json") << "{\"config\": {\"steps\": 50";
  CHECK(hax::train::run_state(dir, config) == RunState::stale);
  CHECK_FALSE(hax::train::read_run_result(dir));
}

TEST_CASE("report: validation curves from metrics.jsonl (resumed runs, cut lines)",
          "[train][report]") {
  TempDir tmp;
  auto const path = tmp.path / "metrics.jsonl";
  {
    std::ofstream out(path);
    out << R"({"split":"train","step":25,"loss":2.0,"accuracy":0.1})" << "\n"
        << R"({"split":"valid","step":50,"accuracy":0.2,"loss":1.9})" << "\n"
        << R"({"split":"valid","step":100,"accuracy":0.3,"loss":1.8})" << "\n"
        << R"({"event":"resume","step":50})" << "\n"
        << R"({"split":"valid","step":100,"accuracy":0.35,"loss":1.7})" << "\n"
        << R"({"split":"test","step":150,"accuracy":0.9})" << "\n"
        << R"({"split":"valid","step":150,"acc)";
  }
  auto const curve = hax::train::read_valid_curve(path);
  REQUIRE(curve.size() == 2);
  CHECK(curve[0] == std::pair<std::int64_t, double>{50, 0.2});
  CHECK(curve[1] == std::pair<std::int64_t, double>{100, 0.35});
  CHECK(hax::train::read_valid_curve(tmp.path / "missing.jsonl").empty());
}
