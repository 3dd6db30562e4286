// libFuzzer target: header validation (R-LAYOUT-1..6, R-SEG-6, R-DTYPE-1) of arbitrary bytes with
// an arbitrary mapping size. Input: 8 bytes little-endian mapping size, then up to 512 header bytes
// (zero-padded). The header lives in a heap block of exactly 512 bytes, so ASan reports any read
// beyond it. Checks: only shmbridge::Error with a header error code escapes; a header that
// validates satisfies every R-LAYOUT-5/6 invariant, and encode(decode(x)) reproduces x up to the
// reserved bytes.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "fuzz_check.hpp"
#include "shmbridge/errors.hpp"
#include "shmbridge/layout.hpp"

using namespace shmbridge;
using namespace shmbridge::layout;

namespace {

bool reserved(std::size_t i) {
  return (i >= 0x28 && i < 0x40) || (i >= 0xE4 && i < 0x100) || (i >= 0x108 && i < 0x140) ||
         (i >= 0x158 && i < 0x160) || (i >= 0x178 && i < 0x180) || (i >= 0x198 && i < 0x200);
}

void check_valid(const std::uint8_t* h, std::uint64_t mapping) {
  const Header d = decode_header(h);
  CHECK(std::memcmp(d.magic.data(), kMagic.data(), 8) == 0);
  CHECK(d.version_major == kVersionMajor);
  CHECK(d.header_size == kHeaderSize && d.max_dims == kMaxDims && d.flags == 0);
  CHECK(d.capacity <= UINT64_MAX - kHeaderSize);
  CHECK(d.segment_size == d.capacity + kHeaderSize);
  CHECK(mapping >= d.segment_size);
  for (const Descriptor* desc : {&d.declared, &d.message}) {
    CHECK(is_dtype_code(desc->dtype));
    CHECK(desc->ndim <= kMaxDims);
    const Shape s = desc->shape_of();
    std::uint64_t n = 0;
    CHECK(s.element_count(n));
    std::uint64_t bytes = 0;
    CHECK(!__builtin_mul_overflow(n, itemsize(static_cast<DType>(desc->dtype)), &bytes));
    CHECK(bytes == desc->nbytes);
    CHECK(desc->nbytes <= d.capacity);
    // A valid descriptor is what Descriptor::make builds for its dtype/shape.
    CHECK(Descriptor::make(static_cast<DType>(desc->dtype), s) == *desc);
    (void)s.to_string();
  }
  std::uint8_t again[kHeaderSize];
  encode_header(d, again);
  for (std::size_t i = 0; i < kHeaderSize; ++i) {
    CHECK(reserved(i) ? again[i] == 0 : again[i] == h[i]);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::uint64_t mapping = 0;
  for (std::size_t i = 0; i < 8 && i < size; ++i) mapping |= std::uint64_t{data[i]} << (8 * i);
  const std::uint8_t* body = size > 8 ? data + 8 : data;
  const std::size_t body_size = size > 8 ? size - 8 : 0;
  // Exactly 512 bytes on the heap: ASan flags any access past the header.
  std::unique_ptr<std::uint8_t[]> h(new std::uint8_t[kHeaderSize]);
  std::memset(h.get(), 0, kHeaderSize);
  std::memcpy(h.get(), body, body_size < kHeaderSize ? body_size : kHeaderSize);
  try {
    validate_header(h.get(), mapping);
  } catch (const Error& e) {
    const ErrorCode c = e.code();
    CHECK(c == ErrorCode::CORRUPT_HEADER || c == ErrorCode::VERSION_MISMATCH ||
          c == ErrorCode::SEGMENT_NOT_FOUND);
    CHECK(std::strlen(e.what()) > 0);
    // Each descriptor on its own: only CORRUPT_HEADER.
    const Header d = decode_header(h.get());
    for (const Descriptor* desc : {&d.declared, &d.message}) {
      try {
        validate_descriptor(*desc, d.capacity, "fuzz");
      } catch (const Error& e2) {
        CHECK(e2.code() == ErrorCode::CORRUPT_HEADER);
      }
    }
    return 0;
  }
  check_valid(h.get(), mapping);
  return 0;
}
