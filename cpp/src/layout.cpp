#include "shmbridge/layout.hpp"

#include <algorithm>
#include <cstring>
#include <sstream>

#include "exact_math.hpp"
#include "shmbridge/errors.hpp"

namespace shmbridge {
namespace layout {

std::uint16_t load_u16(const std::uint8_t* p) noexcept {
  return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}
std::uint32_t load_u32(const std::uint8_t* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}
std::uint64_t load_u64(const std::uint8_t* p) noexcept {
  return static_cast<std::uint64_t>(load_u32(p)) |
         (static_cast<std::uint64_t>(load_u32(p + 4)) << 32);
}
void store_u16(std::uint8_t* p, std::uint16_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v);
  p[1] = static_cast<std::uint8_t>(v >> 8);
}
void store_u32(std::uint8_t* p, std::uint32_t v) noexcept {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
void store_u64(std::uint8_t* p, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

bool host_is_little_endian() noexcept {
  const std::uint32_t one = 1;
  std::uint8_t first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

}  // namespace layout

using namespace layout;
using detail::add_overflow;
using detail::mul_overflow;

// ---- Shape ----------------------------------------------------------------------------------

Shape::Shape(std::initializer_list<std::uint64_t> dims) : Shape(dims.begin(), dims.size()) {}
Shape::Shape(const std::vector<std::uint64_t>& dims) : Shape(dims.data(), dims.size()) {}
Shape::Shape(const std::uint64_t* dims, std::size_t ndim) {
  if (ndim > kMaxDims) {
    raise(ErrorCode::SHAPE_MISMATCH, "at most 8 dimensions", std::to_string(ndim) + " dimensions",
          "reshape the array to 8 or fewer dimensions");
  }
  std::copy(dims, dims + ndim, dims_.begin());
  ndim_ = ndim;
}

bool Shape::element_count(std::uint64_t& out) const noexcept {
  // The exact product (R-LAYOUT-5): an extent of 0 makes it 0 even when a prefix of the other
  // extents would overflow 64 bits, e.g. (2^32, 2^32, 0).
  if (std::find(dims_.begin(), dims_.begin() + ndim_, 0) != dims_.begin() + ndim_) {
    out = 0;
    return true;
  }
  std::uint64_t n = 1;
  for (std::size_t i = 0; i < ndim_; ++i) {
    if (mul_overflow(n, dims_[i], &n)) return false;
  }
  out = n;
  return true;
}

std::string Shape::to_string() const {
  std::ostringstream s;
  s << '(';
  for (std::size_t i = 0; i < ndim_; ++i) s << (i ? ", " : "") << dims_[i];
  if (ndim_ == 1) s << ',';
  s << ')';
  return s.str();
}

bool operator==(const Shape& a, const Shape& b) noexcept {
  return a.ndim_ == b.ndim_ && std::equal(a.begin(), a.end(), b.begin());
}

// ---- Descriptor / Slot / Header ---------------------------------------------------------------

Descriptor Descriptor::make(DType dtype, const Shape& shape) {
  const auto code = static_cast<std::uint32_t>(dtype);
  if (!is_dtype_code(code)) {
    raise(ErrorCode::DTYPE_MISMATCH, "a dtype code 1..14", "code " + std::to_string(code),
          "use one of the dtypes of spec/dtypes.json");
  }
  Descriptor d;
  d.dtype = code;
  d.ndim = static_cast<std::uint32_t>(shape.ndim());
  std::copy(shape.begin(), shape.end(), d.shape.begin());
  std::uint64_t n = 0;
  if (!shape.element_count(n) || mul_overflow(n, itemsize(dtype), &d.nbytes)) {
    raise(ErrorCode::CAPACITY_EXCEEDED, "a byte size below 2^64",
          "shape " + shape.to_string() + " of " + dtype_name(dtype), "use a smaller array");
  }
  return d;
}

Shape Descriptor::shape_of() const {
  return Shape(shape.data(), std::min<std::size_t>(ndim, kMaxDims));
}

bool operator==(const Descriptor& a, const Descriptor& b) noexcept {
  return a.dtype == b.dtype && a.ndim == b.ndim && a.shape == b.shape && a.nbytes == b.nbytes;
}

bool operator==(const Slot& a, const Slot& b) noexcept {
  return a.pid == b.pid && a.state == b.state && a.start_time == b.start_time &&
         a.incarnation == b.incarnation;
}

Header Header::fresh(DType dtype, const Shape& shape, std::optional<std::uint64_t> capacity) {
  Header h;
  h.declared = Descriptor::make(dtype, shape);
  h.message = h.declared;
  h.capacity = capacity.value_or(h.declared.nbytes);  // R-SEG-1: nbytes exactly unless stated
  if (h.capacity < h.declared.nbytes) {
    raise(ErrorCode::CAPACITY_EXCEEDED,
          "a capacity of at least " + std::to_string(h.declared.nbytes) + " bytes (the declared " +
              h.declared.shape_of().to_string() + " array)",
          "capacity " + std::to_string(h.capacity), "state a larger capacity, or none");
  }
  if (add_overflow(h.capacity, std::uint64_t{kHeaderSize}, &h.segment_size)) {
    raise(ErrorCode::CAPACITY_EXCEEDED, "a segment size below 2^64",
          std::to_string(h.capacity) + " payload bytes", "use a smaller array");
  }
  return h;
}

bool operator==(const FixedHeader& a, const FixedHeader& b) noexcept {
  return a.magic == b.magic && a.version_major == b.version_major &&
         a.version_minor == b.version_minor && a.header_size == b.header_size &&
         a.capacity == b.capacity && a.segment_size == b.segment_size && a.flags == b.flags &&
         a.max_dims == b.max_dims && a.reply_code == b.reply_code && a.word == b.word &&
         a.waiters == b.waiters && a.requester == b.requester && a.responder == b.responder &&
         a.creator == b.creator;
}

bool operator==(const Header& a, const Header& b) noexcept {
  return static_cast<const FixedHeader&>(a) == static_cast<const FixedHeader&>(b) &&
         a.declared == b.declared && a.message == b.message;
}

void encode_descriptor(const Descriptor& d, std::uint8_t* out) {
  std::memset(out, 0, kDescSize);
  store_u32(out + kDescDType, d.dtype);
  store_u32(out + kDescNdim, d.ndim);
  for (std::size_t i = 0; i < kMaxDims; ++i) store_u64(out + kDescShape + 8 * i, d.shape[i]);
  store_u64(out + kDescNbytes, d.nbytes);
}

Descriptor decode_descriptor(const std::uint8_t* in) {
  Descriptor d;
  d.dtype = load_u32(in + kDescDType);
  d.ndim = load_u32(in + kDescNdim);
  for (std::size_t i = 0; i < kMaxDims; ++i) d.shape[i] = load_u64(in + kDescShape + 8 * i);
  d.nbytes = load_u64(in + kDescNbytes);
  return d;
}

void encode_slot(const Slot& s, std::uint8_t* out) {
  std::memset(out, 0, kSlotSize);
  store_u32(out + kSlotPid, s.pid);
  store_u32(out + kSlotState, s.state);
  store_u64(out + kSlotStartTime, s.start_time);
  store_u64(out + kSlotIncarnation, s.incarnation);
}

Slot decode_slot(const std::uint8_t* in) {
  Slot s;
  s.pid = load_u32(in + kSlotPid);
  s.state = load_u32(in + kSlotState);
  s.start_time = load_u64(in + kSlotStartTime);
  s.incarnation = load_u64(in + kSlotIncarnation);
  return s;
}

void encode_fixed_header(const FixedHeader& h, std::uint8_t* out) {
  std::memcpy(out + kOffMagic, h.magic.data(), 8);
  store_u16(out + kOffVersionMajor, h.version_major);
  store_u16(out + kOffVersionMinor, h.version_minor);
  store_u32(out + kOffHeaderSize, h.header_size);
  store_u64(out + kOffCapacity, h.capacity);
  store_u64(out + kOffSegmentSize, h.segment_size);
  store_u32(out + kOffFlags, h.flags);
  store_u32(out + kOffMaxDims, h.max_dims);
  store_u32(out + kOffReplyCode, h.reply_code);
  store_u32(out + kOffWord, h.word);
  store_u32(out + kOffWaiters, h.waiters);
  encode_slot(h.requester, out + kOffRequesterSlot);
  encode_slot(h.responder, out + kOffResponderSlot);
  encode_slot(h.creator, out + kOffCreatorSlot);
}

FixedHeader decode_fixed_header(const std::uint8_t* in) {
  FixedHeader h;
  std::memcpy(h.magic.data(), in + kOffMagic, 8);
  h.version_major = load_u16(in + kOffVersionMajor);
  h.version_minor = load_u16(in + kOffVersionMinor);
  h.header_size = load_u32(in + kOffHeaderSize);
  h.capacity = load_u64(in + kOffCapacity);
  h.segment_size = load_u64(in + kOffSegmentSize);
  h.flags = load_u32(in + kOffFlags);
  h.max_dims = load_u32(in + kOffMaxDims);
  h.reply_code = load_u32(in + kOffReplyCode);
  h.word = load_u32(in + kOffWord);
  h.waiters = load_u32(in + kOffWaiters);
  h.requester = decode_slot(in + kOffRequesterSlot);
  h.responder = decode_slot(in + kOffResponderSlot);
  h.creator = decode_slot(in + kOffCreatorSlot);
  return h;
}

void encode_header(const Header& h, std::uint8_t* out) {
  std::memset(out, 0, kHeaderSize);
  encode_fixed_header(h, out);
  encode_descriptor(h.declared, out + kOffDeclared);
  encode_descriptor(h.message, out + kOffMessage);
}

Header decode_header(const std::uint8_t* in) {
  Header h;
  static_cast<FixedHeader&>(h) = decode_fixed_header(in);
  h.declared = decode_descriptor(in + kOffDeclared);
  h.message = decode_descriptor(in + kOffMessage);
  return h;
}

// ---- validation -------------------------------------------------------------------------------

namespace {
[[noreturn]] void corrupt(const std::string& expected, const std::string& found) {
  raise(ErrorCode::CORRUPT_HEADER, expected, found,
        "the segment was not written by a shmbridge v1 peer or is damaged; remove it and restart "
        "the creator");
}
}  // namespace

void validate_descriptor(const Descriptor& d, std::uint64_t capacity, const char* which) {
  const std::string w = std::string(which) + " descriptor ";
  if (!is_dtype_code(d.dtype)) corrupt(w + "dtype code 1..14", "code " + std::to_string(d.dtype));
  if (d.ndim > kMaxDims) corrupt(w + "ndim <= 8", "ndim " + std::to_string(d.ndim));
  for (std::size_t i = d.ndim; i < kMaxDims; ++i) {
    if (d.shape[i] != 0) {
      corrupt(w + "shape[" + std::to_string(i) + "] = 0 (unused)", std::to_string(d.shape[i]));
    }
  }
  std::uint64_t n = 0;
  if (!d.shape_of().element_count(n)) corrupt(w + "a shape product below 2^64", "overflow");
  std::uint64_t bytes = 0;
  if (mul_overflow(n, itemsize(static_cast<DType>(d.dtype)), &bytes)) {
    corrupt(w + "a byte size below 2^64", "overflow");
  }
  if (bytes != d.nbytes) {
    corrupt(w + "nbytes = " + std::to_string(bytes), "nbytes = " + std::to_string(d.nbytes));
  }
  if (d.nbytes > capacity) {
    corrupt(w + "nbytes <= capacity " + std::to_string(capacity), std::to_string(d.nbytes));
  }
}

void validate_header(const std::uint8_t* data, std::uint64_t mapping_size) {
  if (mapping_size < kHeaderSize) {
    corrupt("a mapping of at least 512 bytes", std::to_string(mapping_size) + " bytes");
  }
  static const std::array<std::uint8_t, 8> zero{};
  if (std::memcmp(data + kOffMagic, zero.data(), 8) == 0) {
    raise(ErrorCode::SEGMENT_NOT_FOUND, "magic SHMBRIDG", "all-zero magic (still initialising)",
          "start the creator, or wait until it has finished creating the segment");
  }
  if (std::memcmp(data + kOffMagic, kMagic.data(), 8) != 0) {
    corrupt("magic SHMBRIDG", "other bytes at offset 0");
  }
  const auto major = load_u16(data + kOffVersionMajor);
  if (major != kVersionMajor) {
    raise(ErrorCode::VERSION_MISMATCH, "protocol version_major 1",
          "version_major " + std::to_string(major),
          "use peers built for the same protocol major version");
  }
  if (!host_is_little_endian()) {
    raise(ErrorCode::VERSION_MISMATCH, "a little-endian host", "a big-endian host",
          "shmbridge v1 runs on little-endian hosts only");
  }
  const auto header_size = load_u32(data + kOffHeaderSize);
  if (header_size != kHeaderSize) corrupt("header_size 512", std::to_string(header_size));
  const auto max_dims = load_u32(data + kOffMaxDims);
  if (max_dims != kMaxDims) corrupt("max_dims 8", std::to_string(max_dims));
  const auto flags = load_u32(data + kOffFlags);
  if (flags != 0) corrupt("flags 0", std::to_string(flags));
  const auto capacity = load_u64(data + kOffCapacity);
  const auto segment_size = load_u64(data + kOffSegmentSize);
  std::uint64_t expected_size = 0;
  if (add_overflow(capacity, std::uint64_t{kHeaderSize}, &expected_size) ||
      segment_size != expected_size) {
    corrupt("segment_size = 512 + capacity " + std::to_string(capacity),
            std::to_string(segment_size));
  }
  if (mapping_size < segment_size) {
    corrupt("an OS object of at least segment_size " + std::to_string(segment_size) + " bytes",
            std::to_string(mapping_size) + " bytes");
  }
  validate_descriptor(decode_descriptor(data + kOffDeclared), capacity, "declared");
  validate_descriptor(decode_descriptor(data + kOffMessage), capacity, "message");
}

}  // namespace shmbridge
