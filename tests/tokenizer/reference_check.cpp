// Compares kvlab::model::Tokenizer with the reference ids written by reference.mjs.
// Usage: tokenizer_reference_check DIR   (DIR as written by `node reference.mjs DIR`)
// For every tokenizer and text: encode ids must equal the reference exactly (the first mismatch
// is printed: tokenizer, text index and text, position, both id windows); where the reference
// round-trips, decode(encode(text)) must equal the text. Prints encode throughput per tokenizer.
// Exit status: 0 all equal, 1 mismatches, 2 bad input.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "framework/core/error.h"
#include "framework/model/tokenizer.h"

namespace {

std::string window(const std::vector<int32_t>& v, size_t pos) {
  std::ostringstream os;
  const size_t b = pos >= 3 ? pos - 3 : 0, e = std::min(v.size(), pos + 5);
  os << "[" << (b > 0 ? "... " : "");
  for (size_t i = b; i < e; ++i) os << (i == pos ? "*" : "") << v[i] << (i + 1 < e ? ", " : "");
  os << (e < v.size() ? " ..." : "") << "] (" << v.size() << " ids)";
  return os.str();
}

std::string shown(const std::string& t) {
  return nlohmann::json(t).dump().substr(0, 200);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: tokenizer_reference_check DIR\n";
    return 2;
  }
  const std::string dir = argv[1];
  nlohmann::json ref;
  {
    std::ifstream f(dir + "/reference.json");
    if (!f) {
      std::cerr << dir << "/reference.json: cannot open (run reference.mjs first)\n";
      return 2;
    }
    ref = nlohmann::json::parse(f);
  }
  const auto texts = ref.at("texts").get<std::vector<std::string>>();
  int failures = 0;
  size_t checked_ids = 0, checked_roundtrips = 0;
  for (const auto& [name, r] : ref.at("tokenizers").items()) {
    try {
      const auto tok = kvlab::model::Tokenizer::load(dir + "/" + name);
      double seconds = 0;
      size_t bytes = 0, tokens = 0;
      int tok_failures = 0;
      for (size_t i = 0; i < texts.size(); ++i) {
        const auto want = r.at("ids").at(i).get<std::vector<int32_t>>();
        const auto t0 = std::chrono::steady_clock::now();
        const auto got = tok.encode(texts[i]);
        seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        bytes += texts[i].size();
        tokens += got.size();
        if (got != want) {
          size_t pos = 0;
          while (pos < got.size() && pos < want.size() && got[pos] == want[pos]) ++pos;
          if (tok_failures++ == 0)
            std::cout << "MISMATCH " << name << " text " << i << " " << shown(texts[i])
                      << "\n  first difference at id " << pos << "\n  kvlab:     "
                      << window(got, pos) << "\n  reference: " << window(want, pos) << "\n";
          continue;
        }
        ++checked_ids;
        if (r.at("roundtrip").at(i).get<bool>()) {
          const auto back = tok.decode(got);
          if (back != texts[i]) {
            if (tok_failures++ == 0)
              std::cout << "ROUNDTRIP " << name << " text " << i << " " << shown(texts[i])
                        << "\n  decoded: " << shown(back) << "\n";
            continue;
          }
          ++checked_roundtrips;
        }
      }
      // Throughput on one long context (all texts joined, repeated to ~kLongBytes): a fresh
      // tokenizer (cold word cache), then the same again (warm).
      // The ids must equal the reference's long_ids (same construction in reference.mjs).
      const size_t long_bytes = ref.at("long_bytes").get<size_t>();
      std::string joined, all;
      for (const auto& t : texts) joined += t + "\n\n";
      while (all.size() < long_bytes) all += joined;
      const auto fresh = kvlab::model::Tokenizer::load(dir + "/" + name);
      double secs[2];
      size_t long_tokens = 0;
      std::vector<int32_t> long_ids;
      for (double& s : secs) {
        const auto t0 = std::chrono::steady_clock::now();
        long_ids = fresh.encode(all);
        s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
      long_tokens = long_ids.size();
      const auto want_long = r.at("long_ids").get<std::vector<int32_t>>();
      if (long_ids != want_long) {
        size_t pos = 0;
        while (pos < long_ids.size() && pos < want_long.size() && long_ids[pos] == want_long[pos])
          ++pos;
        if (tok_failures++ == 0)
          std::cout << "MISMATCH " << name << " long context (" << all.size()
                    << " bytes)\n  first difference at id " << pos << "\n  kvlab:     "
                    << window(long_ids, pos) << "\n  reference: " << window(want_long, pos)
                    << "\n";
      } else {
        ++checked_ids;
      }
      std::printf("%-8s %zu texts, %d failing; %zu tokens, %.1f ms; long context %.2f MB -> %zu "
                  "tokens: cold %.0f ms (%.2f MB/s), warm %.0f ms\n",
                  name.c_str(), texts.size(), tok_failures, tokens, seconds * 1e3,
                  all.size() / 1e6, long_tokens, secs[0] * 1e3, all.size() / secs[0] / 1e6,
                  secs[1] * 1e3);
      failures += tok_failures;
    } catch (const kvlab::Error& e) {
      std::cout << "ERROR " << name << ": " << e.what() << "\n";
      ++failures;
    }
  }
  std::printf("%zu id sequences equal, %zu round trips checked, %d failures\n", checked_ids,
              checked_roundtrips, failures);
  return failures == 0 ? 0 : 1;
}
