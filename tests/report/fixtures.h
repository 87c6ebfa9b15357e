// Fixture sweeps for the report tests: point folders written here, as `kvlab run` would.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace kvlab::report::fixtures {
namespace fs = std::filesystem;

inline void write(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << s;
}

inline std::string read(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// One point folder. `method_params` are YAML lines under method: (e.g. "rank: 16"); results empty
// -> incomplete (no results.json, no COMPLETE).
inline void point(const fs::path& sweep, const std::string& id, const std::string& experiment,
                  const std::string& method, const std::string& method_params,
                  const std::string& task_yaml, int seed, const std::string& results) {
  std::string y = "experiment: " + experiment + "\nmethod:\n  name: " + method + "\n";
  if (!method_params.empty()) y += "  " + method_params + "\n";
  y += "model:\n  preset: small\nname: fx\noutput: results\nseed: " + std::to_string(seed) +
       "\ntask:\n" + task_yaml + "threads: 1\n";
  write(sweep / id / "config.resolved.yaml", y);
  if (!results.empty()) {
    write(sweep / id / "results.json", results);
    write(sweep / id / "COMPLETE", "2026-01-01T00:00:00Z\n");
  }
}

inline std::string ppl(double v) {
  return "{\"perplexity\": " + std::to_string(v) + ", \"kv_memory\": {\"device_bytes\": 100}}";
}

// 4 rows (full_cache, ojakv rank 16 / 32, snapkv) x 2 texts x 2 seeds; ojakv-32 on kjv seed 1 is
// unfinished, snapkv on kjv has no finished seed; a cached-model folder must be ignored.
inline void ppl_fixture(const fs::path& d) {
  const std::string pg = "  max_tokens: 256\n  text: pg19:book1\n",
                    kjv = "  max_tokens: 256\n  text: kjv:Gen1\n";
  int n = 0;
  auto id = [&] { return "p" + std::to_string(10 + n++); };
  point(d, id(), "ppl", "full_cache", "", pg, 0, ppl(10));
  point(d, id(), "ppl", "full_cache", "", pg, 1, ppl(12));
  point(d, id(), "ppl", "full_cache", "", kjv, 0, ppl(20));
  point(d, id(), "ppl", "full_cache", "", kjv, 1, ppl(20));
  point(d, id(), "ppl", "ojakv", "rank: 32", pg, 0, ppl(11));
  point(d, id(), "ppl", "ojakv", "rank: 32", pg, 1, ppl(13));
  point(d, id(), "ppl", "ojakv", "rank: 32", kjv, 0, ppl(21));
  point(d, id(), "ppl", "ojakv", "rank: 32", kjv, 1, "");
  point(d, id(), "ppl", "ojakv", "rank: 16", pg, 0, ppl(14));
  point(d, id(), "ppl", "ojakv", "rank: 16", pg, 1, ppl(15));
  point(d, id(), "ppl", "ojakv", "rank: 16", kjv, 0, ppl(24));
  point(d, id(), "ppl", "ojakv", "rank: 16", kjv, 1, ppl(26));
  point(d, id(), "ppl", "snapkv", "budget: 0.5", pg, 0, ppl(16.5));
  point(d, id(), "ppl", "snapkv", "budget: 0.5", pg, 1, ppl(16.5));
  point(d, id(), "ppl", "snapkv", "budget: 0.5", kjv, 0, "");
  point(d, id(), "ppl", "snapkv", "budget: 0.5", kjv, 1, "");
  fs::create_directories(d / "models" / "e0ec6dce710a");
}

// Minimal XML well-formedness: balanced tags, quoted attributes; returns the root element name.
inline std::string xml_root(const std::string& s) {
  std::vector<std::string> stack;
  std::string root;
  size_t i = 0;
  while ((i = s.find('<', i)) != std::string::npos) {
    if (s.compare(i, 2, "<?") == 0) {
      i = s.find("?>", i);
      EXPECT_NE(i, std::string::npos);
      continue;
    }
    const size_t e = s.find('>', i);
    if (e == std::string::npos) return "unterminated tag";
    std::string tag = s.substr(i + 1, e - i - 1);
    if (std::count(tag.begin(), tag.end(), '"') % 2) return "odd quotes in <" + tag + ">";
    if (tag[0] == '/') {
      if (stack.empty() || stack.back() != tag.substr(1))
        return "mismatched </" + tag.substr(1) + ">";
      stack.pop_back();
    } else {
      const std::string name = tag.substr(0, tag.find_first_of(" \n/"));
      if (stack.empty()) {
        if (!root.empty()) return "two roots";
        root = name;
      }
      if (tag.back() != '/') stack.push_back(name);
    }
    i = e + 1;
  }
  return stack.empty() ? root : "unclosed <" + stack.back() + ">";
}

inline int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t i = 0; (i = s.find(what, i)) != std::string::npos; ++i) ++n;
  return n;
}

// 3 context lengths x 4 depths; full_cache scores 1, ojakv rank 16 / 32 degrade with depth.
inline void needle_fixture(const fs::path& d) {
  const std::string task = "  context_lengths: [1024, 2048, 4096]\n  depths: [0, 0.33, 0.66, 1]\n";
  auto grid = [](double drop, double bytes) {
    std::string g = "{\"grid\": [";
    bool first = true;
    for (int l : {1024, 2048, 4096})
      for (double dep : {0.0, 0.33, 0.66, 1.0}) {
        const double s = std::max(0.0, 1.0 - drop * dep * l / 4096.0);
        g += std::string(first ? "" : ", ") + "{\"context_length\": " + std::to_string(l) +
             ", \"depth\": " + std::to_string(dep) + ", \"score\": " + std::to_string(s) + "}";
        first = false;
      }
    return g + "], \"kv_memory\": {\"device_bytes\": " + std::to_string(bytes) +
           ", \"host_bytes\": 0}}";
  };
  point(d, "n1", "needle", "full_cache", "", task, 0, grid(0, 1000));
  point(d, "n2", "needle", "ojakv", "rank: 16", task, 0, grid(1.0, 250));
  point(d, "n3", "needle", "ojakv", "rank: 32", task, 0, grid(0.5, 500));
  point(d, "n4", "needle", "snapkv", "budget: 0.3", task, 0, grid(0.8, 300));
}

}  // namespace kvlab::report::fixtures
