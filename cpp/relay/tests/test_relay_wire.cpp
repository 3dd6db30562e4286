// The shared relay wire vectors (spec/vectors/relay_wire.json, format in spec/vectors/README.md)
// through the C++ codec: R-RELAY-6 (W1-W11 in order, typed errors with the check label, the
// header kept for W9-W11) and R-RELAY-4 (one payload frame per descriptor, not copied). The
// Python relay decodes the same file (python/tests/test_relay_vectors.py).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "wire.hpp"

namespace sr = shmbridge::relay;
using nlohmann::json;

namespace {

const json& vectors() {
  static const json j = [] {
    std::ifstream in(std::string(SHMBRIDGE_SPEC_DIR) + "/vectors/relay_wire.json");
    if (!in) throw std::runtime_error("cannot open spec/vectors/relay_wire.json");
    return json::parse(in);
  }();
  return j;
}

std::vector<std::uint8_t> unhex(const std::string& h) {
  std::vector<std::uint8_t> out(h.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<std::uint8_t>(std::stoul(h.substr(2 * i, 2), nullptr, 16));
  }
  return out;
}

struct Frames {
  std::vector<std::vector<std::uint8_t>> owned;
  std::vector<sr::Bytes> views;
  explicit Frames(const json& hexes) {
    for (const auto& h : hexes) owned.push_back(unhex(h.get<std::string>()));
    for (const auto& f : owned) views.push_back({f.data(), f.size()});
  }
};

sr::Kind kind_of(const std::string& name) {
  for (auto k : {sr::Kind::HELLO, sr::Kind::REQ, sr::Kind::REP, sr::Kind::HB}) {
    if (name == sr::kind_name(k)) return k;
  }
  throw std::runtime_error("unknown kind " + name);
}

sr::Desc desc_of(const json& d) {
  std::vector<std::uint64_t> shape = d["shape"].get<std::vector<std::uint64_t>>();
  return sr::make_desc(d["dtype"].get<std::uint32_t>(), shape.data(),
                       static_cast<std::uint32_t>(shape.size()));
}

}  // namespace

TEST(RelayWire, R_RELAY_6_ValidVectorsDecodeToTheirFields) {
  ASSERT_GE(vectors()["valid"].size(), 10u);
  for (const auto& v : vectors()["valid"]) {
    SCOPED_TRACE(v["id"].get<std::string>());
    Frames fr(v["frames"]);
    sr::Message m;
    ASSERT_NO_THROW(sr::decode(fr.views.data(), fr.views.size(), m));
    const json& f = v["fields"];
    EXPECT_EQ(m.head.kind, kind_of(f["kind"]));
    EXPECT_EQ(m.head.protocol, f["protocol"].get<int>());
    EXPECT_EQ(m.head.round_state, f["round_state"].get<int>());
    EXPECT_EQ(m.head.session, f["session"].get<std::uint64_t>());
    EXPECT_EQ(m.head.epoch, f["epoch"].get<std::uint64_t>());
    EXPECT_EQ(m.head.relay_seq, f["relay_seq"].get<std::uint64_t>());
    EXPECT_EQ(m.head.local_seq, f["local_seq"].get<std::uint32_t>());
    EXPECT_EQ(m.head.reply_code, f["reply_code"].get<std::uint32_t>());
    ASSERT_EQ(m.head.nfields, f["nfields"].get<std::size_t>());
    for (std::size_t i = 0; i < m.head.nfields; ++i) {
      EXPECT_EQ(m.descs[i], desc_of(f["descs"][i])) << "descriptor " << i;
      EXPECT_EQ(m.descs[i].nbytes, f["descs"][i]["nbytes"].get<std::uint64_t>());
    }
    // R-RELAY-4: the payload frames are the received frames themselves (no copy).
    ASSERT_EQ(m.nframes, fr.views.size() - 1);
    for (std::size_t i = 0; i < m.nframes; ++i) {
      EXPECT_EQ(m.frames[i].data, fr.views[i + 1].data);
      EXPECT_EQ(m.frames[i].size, fr.views[i + 1].size);
    }
  }
}

TEST(RelayWire, R_RELAY_6_ValidVectorsEncodeToTheirFrame0) {
  for (const auto& v : vectors()["valid"]) {
    SCOPED_TRACE(v["id"].get<std::string>());
    const json& f = v["fields"];
    sr::Head h;
    h.kind = kind_of(f["kind"]);
    h.protocol = f["protocol"].get<std::uint8_t>();
    h.round_state = f["round_state"].get<std::uint8_t>();
    h.session = f["session"].get<std::uint64_t>();
    h.epoch = f["epoch"].get<std::uint64_t>();
    h.relay_seq = f["relay_seq"].get<std::uint64_t>();
    h.local_seq = f["local_seq"].get<std::uint32_t>();
    h.reply_code = f["reply_code"].get<std::uint32_t>();
    std::vector<sr::Desc> descs;
    for (const auto& d : f["descs"]) descs.push_back(desc_of(d));
    std::uint8_t out[sr::kMaxFrame0];
    const std::size_t n = sr::encode_frame0(h, descs.data(), descs.size(), out);
    EXPECT_EQ(std::vector<std::uint8_t>(out, out + n), unhex(v["frames"][0].get<std::string>()));
  }
}

TEST(RelayWire, R_RELAY_6_InvalidVectorsFailTheirCheck) {
  std::set<std::string> checks;
  for (const auto& v : vectors()["invalid"]) {
    const std::string id = v["id"].get<std::string>();
    SCOPED_TRACE(id);
    Frames fr(v["frames"]);
    sr::Message m;
    try {
      sr::decode(fr.views.data(), fr.views.size(), m);
      ADD_FAILURE() << id << " decoded without error";
    } catch (const sr::WireError& e) {
      EXPECT_STREQ(e.check(), v["check"].get<std::string>().c_str());
      EXPECT_STREQ(e.name(), v["error"].get<std::string>().c_str());
      EXPECT_NE(std::string(e.what()).find(e.check()), std::string::npos) << e.what();
      checks.insert(e.check());
      if (v.contains("head")) {
        ASSERT_TRUE(e.head().has_value());
        EXPECT_EQ(static_cast<int>(e.head()->kind), v["head"]["kind"].get<int>());
        EXPECT_EQ(e.head()->session, v["head"]["session"].get<std::uint64_t>());
        EXPECT_EQ(e.head()->relay_seq, v["head"]["relay_seq"].get<std::uint64_t>());
      } else {
        EXPECT_FALSE(e.head().has_value());
      }
    }
  }
  EXPECT_EQ(checks.size(), 11u);  // every check W1-W11 has a vector
}

// R-RELAY-6: no byte string makes the decoder throw anything but a WireError (the fuzz target
// cpp/fuzz/fuzz_relay_wire.cpp runs the same loop under ASan/UBSan for longer).
TEST(RelayWire, R_RELAY_6_MutatedVectorsThrowOnlyWireErrors) {
  std::mt19937_64 rng(15);
  std::size_t ok = 0, bad = 0;
  for (int round = 0; round < 4000; ++round) {
    const auto& all = vectors()["valid"];
    Frames fr(all[rng() % all.size()]["frames"]);
    auto& f0 = fr.owned[0];
    const int flips = 1 + int(rng() % 3);
    for (int i = 0; i < flips && !f0.empty(); ++i) f0[rng() % f0.size()] ^= std::uint8_t(rng());
    if (rng() % 8 == 0 && !f0.empty()) f0.resize(rng() % (f0.size() + 1));
    if (rng() % 8 == 0 && fr.owned.size() > 1) fr.owned.pop_back();
    fr.views.clear();
    for (const auto& f : fr.owned) fr.views.push_back({f.data(), f.size()});
    sr::Message m;
    try {
      sr::decode(fr.views.data(), fr.views.size(), m);
      ++ok;
    } catch (const sr::WireError&) {
      ++bad;
    }
  }
  EXPECT_GT(bad, 0u);
  EXPECT_EQ(ok + bad, 4000u);
}
