#include "framework/model/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "framework/core/error.h"
#include "tests/support/temp_dir.h"

namespace kvlab::model {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

using kvlab::testing::TempDir;

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}

// A file with a hand-written header (no padding) and `data_bytes` zero bytes of data.
std::string raw_file(const std::string& header, size_t data_bytes) {
  return le64(header.size()) + header + std::string(data_bytes, '\0');
}

std::string parse_error(const std::string& bytes, const std::string& name = "bad.safetensors") {
  try {
    parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), name);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(SafeTensors, RoundTripF32Bf16F16AndIntegers) {
  TempDir tmp;
  const std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, -7.0f};  // [2, 3]
  std::vector<uint16_t> b(4), h(5);
  const float bsrc[4] = {1.0f, -0.5f, 3.0f, 100.0f};
  const float hsrc[5] = {0.25f, -1.0f, 65504.0f, 2.0f, -0.125f};
  from_f32(DType::kBF16, bsrc, b.data(), 4);
  from_f32(DType::kF16, hsrc, h.data(), 5);
  const std::vector<int32_t> ints = {7, -8, 9};
  const std::vector<int64_t> longs = {1ll << 40};
  const std::vector<uint8_t> bytes = {1, 2, 3};  // odd size: later tensors end up unaligned
  const std::string path = tmp.sub("x.safetensors");
  write_safetensors(path,
                    {{"a", DType::kF32, {2, 3}, a.data()},
                     {"u8", DType::kU8, {3}, bytes.data()},
                     {"b", DType::kBF16, {2, 2}, b.data()},
                     {"h", DType::kF16, {5}, h.data()},
                     {"i", DType::kI32, {3}, ints.data()},
                     {"l", DType::kI64, {1}, longs.data()},
                     {"empty", DType::kF32, {0, 4}, nullptr},
                     {"scalar", DType::kF32, {}, a.data()}},
                    {{"format", "pt"}});
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  // Header is padded to 8-byte alignment of the data buffer.
  std::ifstream f(path, std::ios::binary);
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  EXPECT_EQ((8 + n) % 8, 0u);

  const SafeTensors st = SafeTensors::open(path);
  EXPECT_EQ(st.tensors().size(), 8u);
  // The odd-sized u8 tensor is laid out last, so every tensor is aligned to its element size.
  for (const auto& [name, t] : st.tensors())
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % dtype_size(t.dtype), 0u) << name;
  const MatRef ma = st.matrix("a", 2, 3);
  EXPECT_EQ(ma.dtype, DType::kF32);
  EXPECT_EQ(ma.rows, 2);
  EXPECT_EQ(ma.cols, 3);
  EXPECT_EQ(ma.ld, 3);
  EXPECT_EQ(std::memcmp(ma.data, a.data(), 24), 0);
  const MatRef mb = st.matrix("b");
  EXPECT_EQ(mb.dtype, DType::kBF16);
  float back[5];
  to_f32(DType::kBF16, mb.data, back, 4);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(back[i], bsrc[i]);
  const VecRef vh = st.vector("h", 5);
  EXPECT_EQ(vh.dtype, DType::kF16);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(vh.at(i), hsrc[i]);
  EXPECT_EQ(std::memcmp(st.get("i").data, ints.data(), 12), 0);
  EXPECT_EQ(st.get("i").dtype, DType::kI32);
  EXPECT_EQ(std::memcmp(st.get("l").data, longs.data(), 8), 0);
  EXPECT_EQ(st.get("u8").nbytes, 3u);
  EXPECT_EQ(st.get("empty").shape, (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(st.get("empty").nbytes, 0u);
  EXPECT_TRUE(st.get("scalar").shape.empty());
  EXPECT_EQ(st.get("scalar").nbytes, 4u);
  EXPECT_EQ(st.get("a").file, path);

  // The in-memory writer produces the same bytes as the file writer.
  std::ifstream whole(path, std::ios::binary);
  const std::string on_disk((std::istreambuf_iterator<char>(whole)), {});
  EXPECT_EQ(safetensors_bytes({{"a", DType::kF32, {2, 3}, a.data()},
                               {"u8", DType::kU8, {3}, bytes.data()},
                               {"b", DType::kBF16, {2, 2}, b.data()},
                               {"h", DType::kF16, {5}, h.data()},
                               {"i", DType::kI32, {3}, ints.data()},
                               {"l", DType::kI64, {1}, longs.data()},
                               {"empty", DType::kF32, {0, 4}, nullptr},
                               {"scalar", DType::kF32, {}, a.data()}},
                              {{"format", "pt"}}),
            on_disk);
}

TEST(SafeTensors, ShapeAndLookupErrorsNameTensorAndFile) {
  TempDir tmp;
  const float w[6] = {};
  const int32_t ids[2] = {};
  const std::string path = tmp.sub("m.safetensors");
  write_safetensors(path, {{"w", DType::kF32, {2, 3}, w},
                           {"ids", DType::kI32, {2}, ids},
                           {"ids2", DType::kI32, {1, 2}, ids}});
  const SafeTensors st = SafeTensors::open(path);
  EXPECT_FALSE(st.has("missing"));
  EXPECT_THAT([&] { st.get("missing"); },
              ::testing::ThrowsMessage<Error>(AllOf(HasSubstr("'missing'"), HasSubstr(path))));
  EXPECT_THAT([&] { st.matrix("w", 3, 2); },
              ::testing::ThrowsMessage<Error>(AllOf(HasSubstr("'w'"), HasSubstr("[2, 3]"))));
  EXPECT_THAT([&] { st.matrix("w", -1, 2); },
              ::testing::ThrowsMessage<Error>(HasSubstr("expected [?, 2]")));
  EXPECT_EQ(st.matrix("w", -1, 3).rows, 2);
  EXPECT_THAT([&] { st.vector("w"); }, ::testing::ThrowsMessage<Error>(HasSubstr("'w'")));
  EXPECT_THAT([&] { st.matrix("ids"); }, ::testing::ThrowsMessage<Error>(HasSubstr("[2]")));
  EXPECT_THAT([&] { st.matrix("ids2"); }, ::testing::ThrowsMessage<Error>(HasSubstr("i32")));
  EXPECT_THAT([&] { st.vector("ids", 2); }, ::testing::ThrowsMessage<Error>(HasSubstr("i32")));
  EXPECT_THAT([&] { SafeTensors::open(tmp.sub("nope.safetensors")); },
              ::testing::ThrowsMessage<Error>(HasSubstr("nope.safetensors")));
}

TEST(SafeTensors, WriterRejectsBadInput) {
  TempDir tmp;
  const float w[2] = {};
  const std::string path = tmp.sub("w.safetensors");
  EXPECT_THROW(write_safetensors(path, {{"a", DType::kF32, {2}, w}, {"a", DType::kF32, {2}, w}}),
               Error);
  EXPECT_THROW(write_safetensors(path, {{"a", DType::kF32, {-1}, w}}), Error);
  EXPECT_THROW(write_safetensors(path, {{"__metadata__", DType::kF32, {2}, w}}), Error);
  EXPECT_THROW(write_safetensors(path, {{"a", DType::kF32, {2}, nullptr}}), Error);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_THAT([&] { write_safetensors(tmp.sub("no/such/dir/x.safetensors"), {}); },
              ::testing::ThrowsMessage<Error>(HasSubstr("x.safetensors")));
}

TEST(SafeTensors, EveryCorruptionIsAnErrorNamingTheFile) {
  const float w[4] = {1, 2, 3, 4};
  const std::string good = safetensors_bytes({{"w", DType::kF32, {2, 2}, w}});
  ASSERT_EQ(parse_error(good), "");

  struct Case {
    const char* label;
    std::string bytes;
    const char* expect;
  };
  std::string past_eof = good;
  past_eof.replace(0, 8, le64(good.size()));
  std::string huge = good;
  huge.replace(0, 8, le64(200ull << 20));
  const std::vector<Case> cases = {
      {"empty file", "", "truncated"},
      {"short header length", std::string(5, '\0'), "truncated"},
      {"truncated data", good.substr(0, good.size() - 1), "'w'"},
      {"header length past EOF", past_eof, "runs past the end"},
      {"header length over 100 MB", huge, "100 MB"},
      {"bad JSON", raw_file("{\"w\": {\"dtype\": ", 0), "not valid JSON"},
      {"not an object", raw_file("[1, 2]", 0), "must be a JSON object"},
      {"offsets past end", raw_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4),
       "run past"},
      {"begin > end", raw_file(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8),
       "begin > end"},
      {"wrong size for dtype",
       raw_file(R"({"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,16]}})", 16), "need 8"},
      {"overlap",
       raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                12),
       "overlap"},
      {"contained overlap",
       raw_file(R"({"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]},)"
                R"("b":{"dtype":"U8","shape":[1],"data_offsets":[4,5]},)"
                R"("c":{"dtype":"U8","shape":[2],"data_offsets":[8,10]}})",
                16),
       "overlap"},
      {"unsupported dtype",
       raw_file(R"({"d":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", 8),
       "tensor 'd': unsupported dtype 'F64'"},
      {"lowercase dtype", raw_file(R"({"d":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}})", 4),
       "unsupported dtype 'f32'"},
      {"negative dim", raw_file(R"({"d":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", 0),
       "shape[0]"},
      {"float dim", raw_file(R"({"d":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4),
       "shape[0]"},
      {"shape overflow",
       raw_file(R"({"d":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0),
       "overflow"},
      {"missing dtype", raw_file(R"({"d":{"shape":[1],"data_offsets":[0,4]}})", 4), "'dtype'"},
      {"missing offsets", raw_file(R"({"d":{"dtype":"F32","shape":[1]}})", 4), "data_offsets"},
      {"three offsets", raw_file(R"({"d":{"dtype":"F32","shape":[1],"data_offsets":[0,4,4]}})", 4),
       "data_offsets"},
      {"negative offset", raw_file(R"({"d":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 4),
       "data_offsets"},
      {"entry not object", raw_file(R"({"d":3})", 0), "'d'"},
      {"metadata not strings", raw_file(R"({"__metadata__":{"k":1}})", 0), "__metadata__"},
      {"metadata not object", raw_file(R"({"__metadata__":"x"})", 0), "__metadata__"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    const std::string msg = parse_error(c.bytes);
    EXPECT_THAT(msg, HasSubstr("bad.safetensors")) << msg;
    EXPECT_THAT(msg, HasSubstr(c.expect)) << msg;
  }
}

TEST(SafeTensors, CorruptFileOnDiskNamesTheFile) {
  TempDir tmp;
  const float w[4] = {1, 2, 3, 4};
  const std::string good = safetensors_bytes({{"w", DType::kF32, {2, 2}, w}});
  const std::string path = tmp.sub("cut.safetensors");
  write_bytes(path, good.substr(0, good.size() - 3));
  EXPECT_THAT([&] { SafeTensors::open(path); },
              ::testing::ThrowsMessage<Error>(AllOf(HasSubstr(path), HasSubstr("'w'"))));
  write_bytes(path, "");
  EXPECT_THAT([&] { SafeTensors::open(path); }, ::testing::ThrowsMessage<Error>(HasSubstr(path)));
}

TEST(SafeTensors, ShardedIndexWithTwoShards) {
  TempDir tmp;
  const float a[4] = {1, 2, 3, 4};
  const float b[3] = {5, 6, 7};
  const float c[2] = {8, 9};
  write_safetensors(tmp.sub("model-00001-of-00002.safetensors"),
                    {{"a", DType::kF32, {2, 2}, a}, {"b", DType::kF32, {3}, b}});
  write_safetensors(tmp.sub("model-00002-of-00002.safetensors"), {{"c", DType::kF32, {2}, c}});
  nlohmann::json index = {{"metadata", {{"total_size", 36}}},
                          {"weight_map",
                           {{"a", "model-00001-of-00002.safetensors"},
                            {"b", "model-00001-of-00002.safetensors"},
                            {"c", "model-00002-of-00002.safetensors"}}}};
  write_bytes(tmp.sub("model.safetensors.index.json"), index.dump());

  for (const std::string& p : {tmp.sub("model.safetensors.index.json"), tmp.sub("")}) {
    SCOPED_TRACE(p);
    const SafeTensors st = SafeTensors::open(p);
    EXPECT_EQ(st.tensors().size(), 3u);
    EXPECT_EQ(st.vector("b", 3).at(2), 7.0f);
    EXPECT_EQ(st.vector("c", 2).at(1), 9.0f);
    EXPECT_EQ(st.matrix("a", 2, 2).dtype, DType::kF32);
    EXPECT_THAT(st.get("c").file, HasSubstr("model-00002-of-00002.safetensors"));
    EXPECT_THAT([&] { st.get("zzz"); },
                ::testing::ThrowsMessage<Error>(
                    AllOf(HasSubstr("'zzz'"), HasSubstr("model-00001-of-00002.safetensors"),
                          HasSubstr("model-00002-of-00002.safetensors"))));
  }

  // A tensor listed in the index but absent from its shard.
  index["weight_map"]["d"] = "model-00002-of-00002.safetensors";
  write_bytes(tmp.sub("model.safetensors.index.json"), index.dump());
  EXPECT_THAT([&] { SafeTensors::open(tmp.sub("model.safetensors.index.json")); },
              ::testing::ThrowsMessage<Error>(AllOf(HasSubstr("'d'"),
                                                    HasSubstr("model-00002-of-00002.safetensors"),
                                                    HasSubstr("model.safetensors.index.json"))));
  // A missing shard file.
  index["weight_map"]["d"] = "model-00003-of-00002.safetensors";
  write_bytes(tmp.sub("model.safetensors.index.json"), index.dump());
  EXPECT_THAT([&] { SafeTensors::open(tmp.sub("")); },
              ::testing::ThrowsMessage<Error>(HasSubstr("model-00003-of-00002.safetensors")));
  // A broken index.
  write_bytes(tmp.sub("model.safetensors.index.json"), "{\"weight_map\": 3}");
  EXPECT_THAT([&] { SafeTensors::open(tmp.sub("")); },
              ::testing::ThrowsMessage<Error>(HasSubstr("weight_map")));
}

TEST(SafeTensors, DirectoryPrefersIndexThenSingleFile) {
  TempDir tmp;
  EXPECT_THAT([&] { SafeTensors::open(tmp.sub("")); },
              ::testing::ThrowsMessage<Error>(HasSubstr("model.safetensors")));
  const float a[2] = {1, 2};
  write_safetensors(tmp.sub("model.safetensors"), {{"single", DType::kF32, {2}, a}});
  EXPECT_TRUE(SafeTensors::open(tmp.sub("")).has("single"));
  write_safetensors(tmp.sub("shard.safetensors"), {{"sharded", DType::kF32, {2}, a}});
  write_bytes(tmp.sub("model.safetensors.index.json"),
              R"({"weight_map": {"sharded": "shard.safetensors"}})");
  const SafeTensors st = SafeTensors::open(tmp.sub(""));
  EXPECT_TRUE(st.has("sharded"));
  EXPECT_FALSE(st.has("single"));
}

TEST(SafeTensors, MappedDataOutlivesCopiesOfTheObject) {
  TempDir tmp;
  const float a[3] = {4, 5, 6};
  write_safetensors(tmp.sub("m.safetensors"), {{"v", DType::kF32, {3}, a}});
  SafeTensors copy;
  {
    const SafeTensors st = SafeTensors::open(tmp.sub("m.safetensors"));
    copy = st;
  }
  EXPECT_EQ(copy.vector("v", 3).at(1), 5.0f);
}

}  // namespace
}  // namespace kvlab::model
