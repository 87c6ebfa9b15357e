#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sstream>

#include "framework/core/error.h"
#include "framework/io/h5_file.h"
#include "framework/io/trace_h5.h"
#include "tests/support/temp_dir.h"

namespace kvlab::io {
namespace {

using kvlab::testing::TempDir;

TEST(TraceH5, SeriesRowsAttributesRoundTrip) {
  TempDir tmp;
  const std::string f = tmp.sub("trace.h5");
  {
    H5TraceSink s(f);
    for (int i = 0; i < 10000; ++i) s.append_scalar("steps/layer_03/kv_bytes", i * 2.0, "bytes");
    const float row[3] = {1.f, 2.f, 3.f};
    for (int i = 0; i < 5; ++i) s.append_row("steps/attn", row, "probability");
    s.set_attribute("/", "config", "name: x");
    s.set_attribute("steps/attn", "note", "rows of 3");
    EXPECT_THROW(s.append_row("steps/attn", std::span<const float>(row, 2), "x"), Error);
  }
  std::vector<int64_t> dims;
  const auto kv = read_f32(f, "/steps/layer_03/kv_bytes", &dims);
  ASSERT_EQ(dims, (std::vector<int64_t>{10000}));
  for (int i = 0; i < 10000; ++i) ASSERT_EQ(kv[i], i * 2.0f);
  const auto attn = read_f32(f, "/steps/attn", &dims);
  ASSERT_EQ(dims, (std::vector<int64_t>{5, 3}));
  EXPECT_EQ(attn[14], 3.f);
  std::ostringstream os;
  inspect_h5(f, os);
  const std::string out = os.str();
  EXPECT_NE(out.find("/steps/layer_03/kv_bytes  f64 [10000]  min 0 max 19998 mean 9999"), std::string::npos) << out;
  EXPECT_NE(out.find("@unit = bytes"), std::string::npos) << out;
  EXPECT_NE(out.find("@note = rows of 3"), std::string::npos) << out;
  EXPECT_NE(out.find("@config = name: x"), std::string::npos) << out;
  std::ostringstream csv;
  export_csv(f, "/steps/attn", csv);
  EXPECT_EQ(csv.str().substr(0, 12), "0,1,2,3\n1,1,");
  EXPECT_THROW(export_csv(f, "/nope", csv), Error);
  EXPECT_THROW(inspect_h5(tmp.sub("missing.h5"), os), Error);
}

// A process that dies after flush() (no close, no destructors) leaves a readable file holding
// everything flushed.
TEST(TraceH5, FlushedDataSurvivesACrash) {
  TempDir tmp;
  const std::string f = tmp.sub("crash.h5");
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto* s = new H5TraceSink(f);
    for (int i = 0; i < 300; ++i) s->append_scalar("steps/nll", i, "nats");
    s->flush();
    for (int i = 0; i < 50; ++i) s->append_scalar("steps/nll", -1, "nats");  // never flushed
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  std::vector<int64_t> dims;
  const auto v = read_f32(f, "/steps/nll", &dims);
  ASSERT_EQ(dims, (std::vector<int64_t>{300}));
  EXPECT_EQ(v[299], 299.f);
}

}  // namespace
}  // namespace kvlab::io
