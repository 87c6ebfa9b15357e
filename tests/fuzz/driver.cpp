// Bounded mutation-fuzz driver for targets written against libFuzzer's entry point.
// Usage: NAME [--iterations N] [--seed S] [files...]. Seeds come from the target's
// kvlab_fuzz_seeds() plus any files given; each iteration applies 1-8 random byte-level
// mutations (flip, insert, delete, splice, overwrite with an interesting value) to a seed.
// A crash or sanitizer report fails the test; a kvlab::Error is the expected outcome for bad input.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "framework/core/rng.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
std::vector<std::string> kvlab_fuzz_seeds();

int main(int argc, char** argv) {
  int64_t iterations = 10000;
  uint64_t seed = 1;
  std::vector<std::string> seeds = kvlab_fuzz_seeds();
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--iterations" && i + 1 < argc) {
      iterations = std::stoll(argv[++i]);
    } else if (a == "--seed" && i + 1 < argc) {
      seed = std::stoull(argv[++i]);
    } else {
      std::ifstream f(a, std::ios::binary);
      std::stringstream ss;
      ss << f.rdbuf();
      seeds.push_back(ss.str());
    }
  }
  if (seeds.empty()) seeds.push_back("");
  kvlab::Rng rng(seed);
  static const uint8_t kInteresting[] = {0, 1, 0x7f, 0x80, 0xff, '"', '{', '}', '[', ']', ',', ':',
                                         '0', '9', '-', 'e', '\\', 'u', '\n'};
  for (const auto& s : seeds) LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  for (int64_t it = 0; it < iterations; ++it) {
    std::string in = seeds[rng.below(seeds.size())];
    const int muts = 1 + static_cast<int>(rng.below(8));
    for (int m = 0; m < muts; ++m) {
      const size_t pos = in.empty() ? 0 : rng.below(in.size());
      switch (rng.below(6)) {
        case 0: if (!in.empty()) in[pos] ^= static_cast<char>(1u << rng.below(8)); break;
        case 1: in.insert(pos, 1, static_cast<char>(rng.below(256))); break;
        case 2: if (!in.empty()) in.erase(pos, 1 + rng.below(std::min<size_t>(16, in.size() - pos))); break;
        case 3: if (!in.empty()) in[pos] = static_cast<char>(kInteresting[rng.below(sizeof(kInteresting))]); break;
        case 4: in.resize(rng.below(in.size() + 1)); break;  // truncate
        case 5: {  // splice with another seed
          const auto& o = seeds[rng.below(seeds.size())];
          if (!o.empty()) in.insert(pos, o.substr(rng.below(o.size()), 1 + rng.below(32)));
          break;
        }
      }
    }
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(in.data()), in.size());
  }
  std::printf("fuzz: %lld iterations over %zu seeds, no crash\n",
              static_cast<long long>(iterations), seeds.size());
  return 0;
}
