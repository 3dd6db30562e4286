// R-LAYOUT-1..7: the 512-byte header, against spec/layout.json and spec/vectors/headers.json.
#include <memory>
#include <set>

#include "test_util.hpp"

using namespace shmbridge;
using namespace shmbridge::layout;
using namespace shmbridge::test;
using nlohmann::json;

namespace {

Header header_from(const json& f) {
  Header h;
  static_cast<FixedHeader&>(h) = fixed_header_of(f);
  h.declared = descriptor_of(f["declared"]);
  h.message = descriptor_of(f["message"]);
  return h;
}

// Validates exactly 512 heap bytes (a read past them is a heap overflow under ASan).
ErrorCode validate_bytes(const std::vector<std::uint8_t>& bytes, std::uint64_t mapping_size) {
  auto buf = std::make_unique<std::uint8_t[]>(bytes.size());
  std::copy(bytes.begin(), bytes.end(), buf.get());
  return code_of([&] { validate_header(buf.get(), mapping_size); });
}

std::vector<std::uint8_t> fresh_bytes(DType dtype, const Shape& shape) {
  std::vector<std::uint8_t> b(kHeaderSize);
  encode_header(Header::fresh(dtype, shape), b.data());
  return b;
}

}  // namespace

// R-LAYOUT-2: offsets of the byte table (spec/layout.json when present).
TEST(Layout, R_LAYOUT_2_OffsetsMatchSpecLayoutJson) {
  const auto spec = load_spec("layout.json");
  EXPECT_EQ(spec["header_size"].get<std::size_t>(), kHeaderSize);
  EXPECT_EQ(spec["payload_offset"].get<std::size_t>(), kOffPayload);
  const std::map<std::string, std::size_t> ours = {{"magic", kOffMagic},
                                                   {"version_major", kOffVersionMajor},
                                                   {"version_minor", kOffVersionMinor},
                                                   {"header_size", kOffHeaderSize},
                                                   {"capacity", kOffCapacity},
                                                   {"segment_size", kOffSegmentSize},
                                                   {"flags", kOffFlags},
                                                   {"max_dims", kOffMaxDims},
                                                   {"declared", kOffDeclared},
                                                   {"message", kOffMessage},
                                                   {"reply_code", kOffReplyCode},
                                                   {"word", kOffWord},
                                                   {"waiters", kOffWaiters},
                                                   {"requester", kOffRequesterSlot},
                                                   {"responder", kOffResponderSlot},
                                                   {"creator", kOffCreatorSlot}};
  std::size_t matched = 0;
  for (const auto& f : spec["header"]["fields"]) {
    const std::string name = f["field"];
    auto it = ours.find(name);
    if (it == ours.end()) continue;  // reserved ranges
    EXPECT_EQ(f["offset"].get<std::size_t>(), it->second) << name;
    ++matched;
  }
  EXPECT_EQ(matched, ours.size());
}

// R-LAYOUT-8: layout.json marks atomic exactly the fields this library accesses with atomics
// (magic as one u64, word, waiters, and each slot's pid, state, start_time), each naturally
// aligned in every slot, so that a full-width atomic access is possible.
TEST(Layout, R_LAYOUT_8_AtomicFieldsAreNaturallyAligned) {
  const auto spec = load_spec("layout.json");
  std::set<std::string> atomic;
  for (const char* part : {"header", "slot"}) {
    for (const auto& f : spec[part]["fields"]) {
      if (!f.value("atomic", false)) continue;
      atomic.insert(std::string(part) + "." + f["field"].get<std::string>());
      EXPECT_EQ(f["offset"].get<std::size_t>() % f["size"].get<std::size_t>(), 0u) << f["field"];
    }
  }
  const std::set<std::string> ours = {"header.magic", "header.word", "header.waiters",
                                      "slot.pid",     "slot.state",  "slot.start_time"};
  EXPECT_EQ(atomic, ours);
  EXPECT_EQ(kOffMagic % 8, 0u);
  EXPECT_EQ(kOffWord % 4 + kOffWaiters % 4, 0u);
  for (std::size_t slot : {kOffRequesterSlot, kOffResponderSlot, kOffCreatorSlot}) {
    EXPECT_EQ((slot + kSlotPid) % 4 + (slot + kSlotState) % 4 + (slot + kSlotStartTime) % 8, 0u);
  }
}

// R-LAYOUT-2: the control word is alone on its cache line and the payload is 64-byte aligned.
TEST(Layout, R_LAYOUT_2_WordCacheLineAndPayloadAlignment) {
  EXPECT_EQ(kOffWord % 64, 0u);
  EXPECT_EQ(kOffPayload % 64, 0u);
  EXPECT_EQ(kOffRequesterSlot - kOffWord, 64u);
}

// R-LAYOUT-1: little-endian encoding regardless of the host.
TEST(Layout, R_LAYOUT_1_LittleEndianFields) {
  std::uint8_t b[8];
  store_u32(b, 0x11223344u);
  EXPECT_EQ(b[0], 0x44);
  EXPECT_EQ(b[3], 0x11);
  store_u64(b, 0x0102030405060708ull);
  EXPECT_EQ(b[0], 0x08);
  EXPECT_EQ(load_u64(b), 0x0102030405060708ull);
  store_u16(b, 0xABCD);
  EXPECT_EQ(load_u16(b), 0xABCD);
  EXPECT_TRUE(host_is_little_endian());
}

// R-LAYOUT-2/3/5: a fresh header round-trips and validates; reserved bytes are zero.
TEST(Layout, R_LAYOUT_2_FreshHeaderRoundTrips) {
  const Header h = Header::fresh(DType::float32, {512, 512});
  std::vector<std::uint8_t> b(kHeaderSize, 0xEE);
  encode_header(h, b.data());
  EXPECT_EQ(decode_header(b.data()), h);
  EXPECT_EQ(std::string(b.begin(), b.begin() + 8), "SHMBRIDG");
  for (std::size_t i = 0x28; i < 0x40; ++i) EXPECT_EQ(b[i], 0) << i;
  for (std::size_t i = 0x108; i < 0x140; ++i) EXPECT_EQ(b[i], 0) << i;
  EXPECT_EQ(validate_bytes(b, h.segment_size), ErrorCode::ok);
  EXPECT_EQ(h.capacity, 512u * 512u * 4u);
  EXPECT_EQ(h.segment_size, h.capacity + 512);
}

// R-LAYOUT-2: reserved bytes are ignored on read.
TEST(Layout, R_LAYOUT_2_ReservedBytesIgnored) {
  auto b = fresh_bytes(DType::int16, {3, 5});
  for (std::size_t i = 0x1A0; i < 0x200; ++i) b[i] = 0x5A;
  b[0x30] = 1;
  EXPECT_EQ(validate_bytes(b, kHeaderSize + 30), ErrorCode::ok);
}

// R-LAYOUT-3, R-SEG-6
TEST(Layout, R_LAYOUT_3_BadMagicIsCorruptHeader) {
  auto b = fresh_bytes(DType::uint8, {4});
  b[7] = 'X';
  EXPECT_EQ(validate_bytes(b, kHeaderSize + 4), ErrorCode::CORRUPT_HEADER);
  for (int i = 0; i < 8; ++i) b[i] = 0;
  EXPECT_EQ(validate_bytes(b, kHeaderSize + 4),
            ErrorCode::SEGMENT_NOT_FOUND);  // still initialising
}

// R-LAYOUT-4: major must be 1, any minor accepted; checked before the layout fields.
TEST(Layout, R_LAYOUT_4_VersionMajor) {
  auto b = fresh_bytes(DType::uint8, {4});
  store_u16(b.data() + kOffVersionMinor, 9);
  EXPECT_EQ(validate_bytes(b, kHeaderSize + 4), ErrorCode::ok);
  store_u16(b.data() + kOffVersionMajor, 2);
  store_u32(b.data() + kOffHeaderSize, 1024);
  try {
    validate_header(b.data(), kHeaderSize + 4);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::VERSION_MISMATCH);
    EXPECT_NE(std::string(e.what()).find("version_major 2"), std::string::npos) << e.what();
  }
}

// R-LAYOUT-6: header_size, max_dims, flags, segment_size, mapping size.
TEST(Layout, R_LAYOUT_6_HeaderFieldChecks) {
  const auto good = fresh_bytes(DType::float64, {2, 3});
  const std::uint64_t size = kHeaderSize + 48;
  auto b = good;
  store_u32(b.data() + kOffHeaderSize, 256);
  EXPECT_EQ(validate_bytes(b, size), ErrorCode::CORRUPT_HEADER);
  b = good;
  store_u32(b.data() + kOffMaxDims, 4);
  EXPECT_EQ(validate_bytes(b, size), ErrorCode::CORRUPT_HEADER);
  b = good;
  store_u32(b.data() + kOffFlags, 0x80000000u);
  EXPECT_EQ(validate_bytes(b, size), ErrorCode::CORRUPT_HEADER);
  b = good;
  store_u64(b.data() + kOffSegmentSize, size + 1);
  EXPECT_EQ(validate_bytes(b, size + 1), ErrorCode::CORRUPT_HEADER);
  b = good;  // capacity so large that 512 + capacity wraps to segment_size
  store_u64(b.data() + kOffCapacity, ~std::uint64_t{0} - 100);
  store_u64(b.data() + kOffSegmentSize, 411);
  EXPECT_EQ(validate_bytes(b, size), ErrorCode::CORRUPT_HEADER);
  EXPECT_EQ(validate_bytes(good, size - 1), ErrorCode::CORRUPT_HEADER);  // truncated mapping
  EXPECT_EQ(validate_bytes(good, 100), ErrorCode::CORRUPT_HEADER);       // not even a header
  EXPECT_EQ(validate_bytes(good, size), ErrorCode::ok);
}

// R-LAYOUT-5: descriptor validation with overflow checks.
TEST(Layout, R_LAYOUT_5_DescriptorChecks) {
  const Descriptor good = Descriptor::make(DType::uint32, {4, 5});
  EXPECT_EQ(code_of([&] { validate_descriptor(good, 80, "declared"); }), ErrorCode::ok);
  EXPECT_EQ(code_of([&] { validate_descriptor(good, 79, "declared"); }), ErrorCode::CORRUPT_HEADER);
  auto bad = good;
  bad.dtype = 0;
  EXPECT_EQ(code_of([&] { validate_descriptor(bad, 80, "x"); }), ErrorCode::CORRUPT_HEADER);
  bad = good;
  bad.dtype = 15;
  EXPECT_EQ(code_of([&] { validate_descriptor(bad, 80, "x"); }), ErrorCode::CORRUPT_HEADER);
  bad = good;
  bad.ndim = 9;
  EXPECT_EQ(code_of([&] { validate_descriptor(bad, 80, "x"); }), ErrorCode::CORRUPT_HEADER);
  bad = good;
  bad.shape[2] = 1;  // unused entry not zero
  EXPECT_EQ(code_of([&] { validate_descriptor(bad, 80, "x"); }), ErrorCode::CORRUPT_HEADER);
  bad = good;
  bad.nbytes = 20;  // itemsize forgotten
  EXPECT_EQ(code_of([&] { validate_descriptor(bad, 80, "x"); }), ErrorCode::CORRUPT_HEADER);
  bad = good;  // 2^32 * 2^32 wraps to 0 elements
  bad.shape[0] = 1ull << 32;
  bad.shape[1] = 1ull << 32;
  bad.nbytes = 0;
  EXPECT_EQ(code_of([&] { validate_descriptor(bad, 80, "x"); }), ErrorCode::CORRUPT_HEADER);
  bad = good;  // 2^62 elements * 4 bytes wraps to 0
  bad.ndim = 1;
  bad.shape = {};
  bad.shape[0] = 1ull << 62;
  bad.nbytes = 0;
  EXPECT_EQ(code_of([&] { validate_descriptor(bad, 80, "x"); }), ErrorCode::CORRUPT_HEADER);
  // Extents of 0 and scalars are valid.
  EXPECT_EQ(code_of([&] { validate_descriptor(Descriptor::make(DType::int32, {0, 3}), 0, "x"); }),
            ErrorCode::ok);
  const Descriptor scalar = Descriptor::make(DType::float64, Shape{});
  EXPECT_EQ(scalar.nbytes, 8u);
  EXPECT_EQ(code_of([&] { validate_descriptor(scalar, 8, "x"); }), ErrorCode::ok);
}

// R-LAYOUT-5: Descriptor::make rejects what cannot be described.
TEST(Layout, R_LAYOUT_5_MakeRejectsInvalid) {
  EXPECT_CODE(Descriptor::make(static_cast<DType>(0), {1}), ErrorCode::DTYPE_MISMATCH);
  EXPECT_CODE(Descriptor::make(DType::uint8, Shape(std::vector<std::uint64_t>(9, 1))),
              ErrorCode::SHAPE_MISMATCH);
  EXPECT_CODE(Descriptor::make(DType::float64, {1ull << 62}), ErrorCode::CAPACITY_EXCEEDED);
}

// R-LAYOUT-*: every valid vector encodes to its hex and decodes/validates back to its fields.
TEST(Layout, R_LAYOUT_2_ValidHeaderVectors) {
  const auto vectors = load_spec("vectors/headers.json");
  ASSERT_FALSE(vectors["valid"].empty());
  for (const auto& v : vectors["valid"]) {
    SCOPED_TRACE(v["id"].get<std::string>());
    const Header h = header_from(v["fields"]);
    const auto expected = hex_bytes(v["hex"]);
    ASSERT_EQ(expected.size(), kHeaderSize);
    std::vector<std::uint8_t> encoded(kHeaderSize);
    encode_header(h, encoded.data());
    EXPECT_EQ(encoded, expected);
    EXPECT_EQ(decode_header(expected.data()), h);
    EXPECT_EQ(validate_bytes(expected, v["mapping_size"].get<std::uint64_t>()), ErrorCode::ok);
  }
}

// R-LAYOUT-*, R-DTYPE-1, R-SEG-6: every invalid vector fails with its error.
TEST(Layout, R_LAYOUT_3_InvalidHeaderVectors) {
  const auto vectors = load_spec("vectors/headers.json");
  ASSERT_FALSE(vectors["invalid"].empty());
  for (const auto& v : vectors["invalid"]) {
    SCOPED_TRACE(v["id"].get<std::string>());
    ErrorCode want;
    ASSERT_TRUE(error_from_name(v["error"], want));
    EXPECT_EQ(validate_bytes(hex_bytes(v["hex"]), v["mapping_size"].get<std::uint64_t>()), want);
  }
}

// R-LAYOUT-5: the product of the extents is exact. An extent of 0 makes it 0 even when the
// extents before it would overflow 64 bits (found by the differential check of ci/fuzz.sh: C++
// rejected a descriptor that Python and the reference decoder accept).
TEST(Layout, R_LAYOUT_5_ZeroExtentAfterOverflowingPrefixIsValid) {
  const Descriptor d = Descriptor::make(DType::uint8, {1ull << 32, 1ull << 32, 0});
  EXPECT_EQ(d.nbytes, 0u);
  EXPECT_EQ(code_of([&] { validate_descriptor(d, 0, "declared"); }), ErrorCode::ok);
  std::uint64_t n = 1;
  EXPECT_TRUE(Shape({1ull << 40, 1ull << 40, 0, 7}).element_count(n));
  EXPECT_EQ(n, 0u);
  EXPECT_FALSE(Shape({1ull << 40, 1ull << 40, 7}).element_count(n));
}
