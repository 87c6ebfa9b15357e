// configs/ablations/ojakv_*.yaml and configs/paper/ojakv_*.yaml expand and validate through the
// same path as `kvlab run CONFIG --list`, and every OjaKV / StaticPCA point's parameters pass
// OjaKvParams' cross-key checks (the bases file itself is only opened when a point runs).
// ojakv_compose also runs SnapKV alone, and its composed points must really evict.
#include <gtest/gtest.h>

#include <filesystem>

#include "framework/cli/commands.h"
#include "framework/harness/sweep.h"
#include "methods/ojakv/ojakv.h"

namespace kvlab {
namespace {

namespace fs = std::filesystem;

TEST(OjaKvConfigs, AblationAndPaperConfigsValidate) {
  int files = 0;
  for (const char* sub : {"configs/ablations", "configs/paper"}) {
    for (const auto& e : fs::directory_iterator(fs::path(KVLAB_SOURCE_DIR) / sub)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("ojakv_", 0) != 0 || e.path().extension() != ".yaml") continue;
      ++files;
      harness::Sweep s;
      ASSERT_NO_THROW(s = cli::load_cli_sweep(e.path().string(), {})) << name;
      ASSERT_GE(s.points.size(), 2u) << name;
      for (const auto& p : s.points) {
        const std::string& m = p.config.method;
        EXPECT_TRUE(m == "ojakv" || m == "static_pca" || m == "static_pca_h" || m == "full_cache" ||
                    m == "snapkv")
            << name << ": " << m;
        if (m == "ojakv") {
          EXPECT_NO_THROW(methods::OjaKvParams::from_values(p.config.method_params)) << name;
          EXPECT_FALSE(p.config.method_params.get_string("bases").empty()) << name;
          if (p.config.method_params.get_string("compose_with") != "none")
            EXPECT_GT(p.config.method_params.get_float("evict_ratio"), 0.0) << name;
        }
      }
    }
  }
  EXPECT_EQ(files, 8);  // rank, anchors, period, eta, compose; two RULER tables and LongBench
}

}  // namespace
}  // namespace kvlab
