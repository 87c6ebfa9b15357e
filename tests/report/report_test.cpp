// kvlab table / plot / Progress on fixture sweeps made here: a ppl sweep (methods x parameters x
// seeds x texts, with incomplete points) and a needle sweep (grid results and KV bytes).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "framework/core/error.h"
#include "framework/core/progress.h"
#include "framework/report/plots.h"
#include "framework/report/svg.h"
#include "framework/report/sweep.h"
#include "framework/report/table.h"
#include "tests/report/fixtures.h"
#include "tests/support/temp_dir.h"

namespace kvlab::report {
namespace {
namespace fs = std::filesystem;
using namespace kvlab::report::fixtures;

TEST(ReportTable, PivotMeanStdAndMissing) {
  testing::TempDir t;
  ppl_fixture(t.path());
  const auto points = load_sweep(t.path().string());
  ASSERT_EQ(points.size(), 16u);
  const Pivot pv = pivot(points);
  EXPECT_EQ(pv.metric, "perplexity");
  ASSERT_EQ(pv.param_columns, std::vector<std::string>{"rank"});
  ASSERT_EQ(pv.columns, (std::vector<std::string>{"text=kjv:Gen1", "text=pg19:book1"}));
  ASSERT_EQ(pv.rows.size(), 4u);
  EXPECT_EQ(row_label(pv.rows[0]), "full_cache");
  EXPECT_EQ(row_label(pv.rows[1]), "ojakv rank=16");  // numeric order
  EXPECT_EQ(row_label(pv.rows[2]), "ojakv rank=32");
  EXPECT_EQ(row_label(pv.rows[3]), "snapkv");  // budget does not vary: no column
  EXPECT_DOUBLE_EQ(pv.cells[0][1].mean(), 11.0);
  EXPECT_DOUBLE_EQ(pv.cells[0][1].stddev(), std::sqrt(2.0));  // sample std of {10, 12}
  EXPECT_EQ(pv.cells[2][0].values.size(), 1u);
  EXPECT_EQ(pv.cells[2][0].incomplete, 1);
  EXPECT_EQ(pv.cells[3][0].incomplete, 2);
  EXPECT_FALSE(pv.row_average(3).has_value());
  EXPECT_DOUBLE_EQ(*pv.row_average(1), (25.0 + 14.5) / 2);
  EXPECT_EQ(pv.missing.size(), 3u);
}

TEST(ReportTable, ExactMarkdownCsvLatex) {
  testing::TempDir t;
  ppl_fixture(t.path());
  const Pivot pv = pivot(load_sweep(t.path().string()));
  EXPECT_EQ(format_table(pv, TableFormat::kMarkdown),
            "**perplexity**, mean ± std over 1-2 seeds\n"
            "\n"
            "| Method | rank | text=kjv:Gen1 | text=pg19:book1 | Average |\n"
            "|---|---|--:|--:|--:|\n"
            "| full_cache |  | 20.00 ± 0.00 | 11.00 ± 1.41 | 15.50 |\n"
            "| ojakv | 16 | 25.00 ± 1.41 | 14.50 ± 0.71 | 19.75 |\n"
            "| ojakv | 32 | 21.00† | 12.00 ± 1.41 | 16.50 |\n"
            "| snapkv |  | missing | 16.50 ± 0.00 | — |\n"
            "\n"
            "† some seeds of this cell are incomplete; the value uses the finished ones.\n"
            "\n"
            "Missing (3 incomplete points, no COMPLETE marker):\n"
            "- p17: ojakv rank=32 \\| text=kjv:Gen1 \\| seed=1\n"
            "- p24: snapkv \\| text=kjv:Gen1 \\| seed=0\n"
            "- p25: snapkv \\| text=kjv:Gen1 \\| seed=1\n");
  EXPECT_EQ(format_table(pv, TableFormat::kCsv),
            "method,rank,text=kjv:Gen1 mean,text=kjv:Gen1 std,text=kjv:Gen1 n,text=pg19:book1 mean,"
            "text=pg19:book1 std,text=pg19:book1 n,average\n"
            "full_cache,,20,0,2,11,1.414213562,2,15.5\n"
            "ojakv,16,25,1.414213562,2,14.5,0.7071067812,2,19.75\n"
            "ojakv,32,21,0,1,12,1.414213562,2,16.5\n"
            "snapkv,,,,0,16.5,0,2,\n");
  EXPECT_EQ(format_table(pv, TableFormat::kLatex, 1),
            "% kvlab table: perplexity, mean +/- std over 1-2 seeds\n"
            "\\begin{tabular}{llrrr}\n"
            "\\toprule\n"
            "Method & rank & text=kjv:Gen1 & text=pg19:book1 & Average \\\\\n"
            "\\midrule\n"
            "full\\_cache &  & $20.0 \\pm 0.0$ & $11.0 \\pm 1.4$ & 15.5 \\\\\n"
            "ojakv & 16 & $25.0 \\pm 1.4$ & $14.5 \\pm 0.7$ & 19.8 \\\\\n"
            "ojakv & 32 & $21.0$$^\\dagger$ & $12.0 \\pm 1.4$ & 16.5 \\\\\n"
            "snapkv &  & missing & $16.5 \\pm 0.0$ & -- \\\\\n"
            "\\bottomrule\n"
            "\\end{tabular}\n"
            "% $^\\dagger$: some seeds of this cell are incomplete\n"
            "% missing (incomplete): p17: ojakv rank=32 | text=kjv:Gen1 | seed=1\n"
            "% missing (incomplete): p24: snapkv | text=kjv:Gen1 | seed=0\n"
            "% missing (incomplete): p25: snapkv | text=kjv:Gen1 | seed=1\n");
}

TEST(ReportTable, MetricPathAndErrors) {
  testing::TempDir t;
  ppl_fixture(t.path());
  const Pivot pv = pivot(load_sweep(t.path().string()), "kv_memory.device_bytes");
  EXPECT_DOUBLE_EQ(pv.cells[0][0].mean(), 100.0);
  EXPECT_THROW(pivot(load_sweep(t.path().string()), "no_such_metric"), Error);
  EXPECT_THROW(load_sweep((t.path() / "models").string()), Error);  // no points
  EXPECT_THROW(load_sweep((t.path() / "absent").string()), Error);
  EXPECT_THROW(parse_table_format("html"), Error);
}

// ---- SVG ----

TEST(ReportPlot, NeedleHeatmapsAndCompressionChart) {
  testing::TempDir t;
  needle_fixture(t.path() / "sweep");
  const auto points = load_sweep((t.path() / "sweep").string());
  EXPECT_EQ(pivot(points).metric, "score");  // mean grid score
  const auto res = plot_sweep(points, (t.path() / "plots").string());
  ASSERT_EQ(res.files.size(), 5u) << (res.notes.empty() ? "" : res.notes[0]);
  const std::regex fill_re(
      "<rect [^>]*fill=\"#([0-9a-f]{6})\" class=\"cell\"[^>]*data-score=\"([0-9.]+)\"");
  for (const auto& f : res.files) {
    const std::string svg = read(f);
    EXPECT_EQ(xml_root(svg), "svg") << f;
    EXPECT_NE(svg.find("xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
    if (fs::path(f).filename().string().rfind("needle_", 0) != 0) continue;
    EXPECT_EQ(count(svg, "class=\"cell\""), 12) << f;  // 3 lengths x 4 depths
    EXPECT_EQ(count(svg, "class=\"legend\""), 1) << f;
  }
  EXPECT_TRUE(fs::exists(t.path() / "plots" / "needle_ojakv_rank-16.svg"));
  const std::string cmp = read(t.path() / "plots" / "compression_score.svg");
  EXPECT_NE(cmp.find(">full_cache</text>"), std::string::npos);
  EXPECT_NE(cmp.find(">ojakv</text>"), std::string::npos);
  EXPECT_EQ(count(cmp, "<circle"), 3 + 2);  // ojakv 2 + snapkv 1 points, and 2 legend markers
  // Colours monotone in score: green rises, red falls.
  const std::string heat = read(t.path() / "plots" / "needle_ojakv_rank-16.svg");
  std::vector<std::pair<double, std::string>> cells;
  for (std::sregex_iterator it(heat.begin(), heat.end(), fill_re), end; it != end; ++it)
    cells.emplace_back(std::stod((*it)[2]), (*it)[1]);
  ASSERT_EQ(cells.size(), 12u);
  std::sort(cells.begin(), cells.end());
  for (size_t i = 1; i < cells.size(); ++i) {
    const auto rgb = [](const std::string& h, int k) {
      return std::stoi(h.substr(2 * k, 2), nullptr, 16);
    };
    EXPECT_GE(rgb(cells[i].second, 1), rgb(cells[i - 1].second, 1));
    EXPECT_LE(rgb(cells[i].second, 0), rgb(cells[i - 1].second, 0));
  }
}

TEST(ReportPlot, NllByPositionWithUnigramBaseline) {
  testing::TempDir t;
  const auto d = t.path() / "sweep";
  const std::string task = "  max_tokens: 512\n  unigram: train\n";
  auto res_json = [](double a, double b) {
    return "{\"perplexity\": 9, \"kv_memory\": {\"device_bytes\": 100}, \"unigram\": "
           "{\"source\": \"corpus:train\", \"perplexity\": 60}, \"nll_by_position\": ["
           "{\"start\": 1, \"end\": 256, \"count\": 256, \"nll_mean\": " + std::to_string(a) +
           ", \"unigram_nll_mean\": 4.1}, {\"start\": 257, \"end\": 512, \"count\": 256, "
           "\"nll_mean\": " + std::to_string(b) + ", \"unigram_nll_mean\": 4.2}]}";
  };
  point(d, "p1", "pg19", "full_cache", "", task, 0, res_json(2.5, 2.0));
  point(d, "p2", "pg19", "h2o", "budget: 64", task, 0, res_json(2.7, 2.6));
  const auto points = load_sweep(d.string());
  EXPECT_EQ(pivot(points).metric, "perplexity");
  const auto res = plot_sweep(points, (t.path() / "plots").string());
  const fs::path f = t.path() / "plots" / "nll_by_position.svg";
  ASSERT_TRUE(fs::exists(f)) << (res.notes.empty() ? "" : res.notes[0]);
  const std::string svg = read(f);
  EXPECT_NE(svg.find("unigram baseline (corpus:train)"), std::string::npos);
  EXPECT_NE(svg.find(">full_cache</text>"), std::string::npos);
  EXPECT_NE(svg.find(">h2o</text>"), std::string::npos);
}

TEST(ReportPlot, BadGridNamesTheFile) {
  testing::TempDir t;
  point(t.path(), "b1", "needle", "full_cache", "", "  haystack: pg\n", 0,
        "{\"grid\": [{\"depth\": 0.5, \"score\": 1}]}");
  try {
    plot_sweep(load_sweep(t.path().string()), (t.path() / "plots").string());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("b1/results.json"), std::string::npos) << e.what();
  }
}

TEST(ReportPlot, ScoreColorEndsAndTicks) {
  EXPECT_EQ(score_color(0), "#f0496e");
  EXPECT_EQ(score_color(0.5), "#ebb839");
  EXPECT_EQ(score_color(1), "#0cd79f");
  EXPECT_EQ(score_color(7), "#0cd79f");
  for (int i = 1; i <= 100; ++i) {
    const auto g = [](double s) { return std::stoi(score_color(s).substr(3, 2), nullptr, 16); };
    EXPECT_GE(g(i / 100.0), g((i - 1) / 100.0));
  }
  EXPECT_EQ(nice_ticks(0, 1, 6), (std::vector<double>{0, 0.2, 0.4, 0.6, 0.8, 1.0}));
  EXPECT_EQ(nice_ticks(3, 97, 6), (std::vector<double>{20, 40, 60, 80}));
  EXPECT_EQ(tick_label(4096), "4096");
  EXPECT_EQ(tick_label(32000), "32k");
  EXPECT_EQ(moving_average({1, 2, 3, 4}, 2), (std::vector<double>{1, 1.5, 2.5, 3.5}));
  EXPECT_EQ(file_stem("ojakv rank=16 window=64"), "ojakv_rank-16_window-64");
  EXPECT_EQ(xml_escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
}

// ---- Progress ----

TEST(Progress, LogLinesWhenNotATerminal) {
  std::string out;
  double now = 0;
  ProgressOptions o;
  o.terminal = 0;
  o.log_every_s = 10;
  o.write = [&](const std::string& s) { out += s; };
  o.clock = [&] { return now; };
  {
    Progress p("prefill", 4000, "tok", o);
    now = 5, p.advance(500);    // too soon: nothing
    now = 10, p.advance(500);   // 1000 tok in 10 s
    now = 15, p.advance(1000);  // too soon
    now = 20, p.advance(1000);  // 3000 in 20 s
    now = 24, p.advance(1000);
  }  // destructor: final line
  EXPECT_EQ(out,
            "prefill: 1000/4000 tok (25%), 100 tok/s, ETA 30s\n"
            "prefill: 3000/4000 tok (75%), 150 tok/s, ETA 6.7s\n"
            "prefill: done, 4000/4000 tok in 24s (167 tok/s)\n");
}

TEST(Progress, UnknownTotalLogsCountAndRate) {
  std::string out;
  double now = 0;
  ProgressOptions o;
  o.terminal = 0;
  o.log_every_s = 30;
  o.write = [&](const std::string& s) { out += s; };
  o.clock = [&] { return now; };
  Progress p("train", 0, "step", o);
  for (int i = 1; i <= 100; ++i) now = i, p.advance();
  p.finish();
  p.advance(5);  // after finish: ignored
  EXPECT_EQ(p.done(), 100);
  EXPECT_EQ(out,
            "train: 30 step, 1 step/s\n"
            "train: 60 step, 1 step/s\n"
            "train: 90 step, 1 step/s\n"
            "train: done, 100 step in 1m40s (1 step/s)\n");
}

TEST(Progress, TerminalRedrawIsThrottled) {
  std::vector<std::string> writes;
  double now = 0;
  ProgressOptions o;
  o.terminal = 1;
  o.write = [&](const std::string& s) { writes.push_back(s); };
  o.clock = [&] { return now; };
  Progress p("decode", 0, "tok", o);                            // unknown total
  for (int i = 1; i <= 100; ++i) now = i * 0.01, p.advance(1);  // 1 s at 100 calls/s
  EXPECT_GE(writes.size(), 9u);
  EXPECT_LE(writes.size(), 12u);
  for (const auto& w : writes) EXPECT_EQ(w[0], '\r');
  p.finish();
  EXPECT_EQ(writes.back(), "\rdecode: done, 100 tok in 1.0s (100 tok/s)\x1b[K\n");
  EXPECT_EQ(Progress::human(2310), "2.31k");
  EXPECT_EQ(Progress::duration(3723, true), "1:02:03");
}

}  // namespace
}  // namespace kvlab::report
