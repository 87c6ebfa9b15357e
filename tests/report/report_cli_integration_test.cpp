// `kvlab table` and `kvlab plot` through the binary: output files, printed chart paths, the
// missing-point listing on stderr, trace plots from HDF5, and errors with a non-zero exit.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <sstream>
#include <vector>

#include "framework/io/h5_file.h"
#include "framework/report/sweep.h"
#include "framework/report/table.h"
#include "tests/report/fixtures.h"
#include "tests/support/temp_dir.h"

namespace kvlab::report {
namespace {
namespace fs = std::filesystem;
using namespace kvlab::report::fixtures;

struct Run {
  int rc;
  std::string out, err;
};

// Runs kvlab with `args`; stdout and stderr captured through files in `tmp`.
Run kvlab(const fs::path& tmp, const std::string& args) {
  const std::string bin = std::string(KVLAB_BINARY_DIR) + "/kvlab";
  const fs::path o = tmp / "stdout.txt", e = tmp / "stderr.txt";
  const int st = std::system((bin + " " + args + " >" + o.string() + " 2>" + e.string()).c_str());
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, read(o), read(e)};
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> v;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) v.push_back(l);
  return v;
}

TEST(ReportCli, TableFormatsAndMissingOnStderr) {
  testing::TempDir t;
  const fs::path sweep = t.path() / "ppl";
  ppl_fixture(sweep);
  const Pivot pv = pivot(load_sweep(sweep.string()));
  auto r = kvlab(t.path(), "table " + sweep.string());
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, format_table(pv, TableFormat::kMarkdown));
  r = kvlab(t.path(),
            "table " + sweep.string() + " --format csv --out " + (t.path() / "t.csv").string());
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(read(t.path() / "t.csv"), format_table(pv, TableFormat::kCsv));
  EXPECT_NE(r.err.find("3 incomplete point(s)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("p17: ojakv rank=32 | text=kjv:Gen1 | seed=1"), std::string::npos) << r.err;
  r = kvlab(t.path(), "table " + sweep.string() + " --format latex --digits 1");
  EXPECT_EQ(r.out, format_table(pv, TableFormat::kLatex, 1));
  r = kvlab(t.path(), "table " + sweep.string() + " --format html");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("not one of md, csv, latex"), std::string::npos) << r.err;
  r = kvlab(t.path(), "table " + (t.path() / "nowhere").string());
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("is not a folder"), std::string::npos) << r.err;
}

TEST(ReportCli, PlotSweepAndTraces) {
  testing::TempDir t;
  const fs::path sweep = t.path() / "needle";
  needle_fixture(sweep);
  // A trace per point: /samples/0/nll [300] and a 2-D /steps/kv [300, 2].
  for (const auto& p : load_sweep(sweep.string())) {
    std::vector<float> nll(300), kv(600);
    for (int i = 0; i < 300; ++i)
      nll[i] = 3.0f + 0.001f * i + (i % 7) * 0.05f, kv[2 * i] = i, kv[2 * i + 1] = 2 * i;
    io::H5Writer w((fs::path(p.dir) / "trace.h5").string());
    w.write_f32("/samples/0/nll", nll.data(), {300});
    w.write_f32("/steps/kv", kv.data(), {300, 2});
    w.close();
  }
  auto r = kvlab(t.path(), "plot " + sweep.string());
  ASSERT_EQ(r.rc, 0) << r.err;
  const auto files = lines(r.out);
  ASSERT_EQ(files.size(), 5u) << r.out;  // 4 heatmaps + compression
  for (const auto& f : files) {
    EXPECT_EQ(fs::path(f).parent_path(), sweep / "plots");
    EXPECT_EQ(xml_root(read(f)), "svg") << f;
  }
  r = kvlab(t.path(), "plot " + sweep.string() + " --series /samples/0/nll --smooth 10 --out-dir " +
                          (t.path() / "s").string());
  ASSERT_EQ(r.rc, 0) << r.err;
  ASSERT_EQ(lines(r.out),
            std::vector<std::string>{(t.path() / "s" / "series_samples_0_nll.svg").string()});
  const std::string series = read(t.path() / "s" / "series_samples_0_nll.svg");
  EXPECT_EQ(xml_root(series), "svg");
  EXPECT_EQ(count(series, "class=\"series\""), 4);  // one line per row
  const std::string h5 = (sweep / "n2" / "trace.h5").string();
  r = kvlab(t.path(), "plot " + h5 + " --series /samples/0/nll --smooth 16");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(lines(r.out),
            std::vector<std::string>{(sweep / "n2" / "trace_samples_0_nll.svg").string()});
  r = kvlab(t.path(),
            "plot " + h5 + " --series /steps/kv --column 1 --out-dir " + (t.path() / "k").string());
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(xml_root(read(t.path() / "k" / "trace_steps_kv.svg")), "svg");
  r = kvlab(t.path(), "plot " + h5 + " --series /steps/kv");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--column 0..1"), std::string::npos) << r.err;
  r = kvlab(t.path(), "plot " + h5);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("--series"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kvlab::report
