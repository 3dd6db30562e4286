// The 512-byte segment header (spec/PROTOCOL.md §3, R-LAYOUT-*).
//
// Fields are encoded and decoded byte by byte (little-endian, memcpy-free shifts), never through a
// packed struct laid over the mapping. The atomic fields (`word`, `waiters`, slot `pid`/`state`,
// `magic`) are accessed in place by the channel through wait.hpp; this file only describes them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "shmbridge/dtype.hpp"

namespace shmbridge {

namespace layout {
inline constexpr std::size_t kHeaderSize = 512;
inline constexpr std::uint32_t kMaxDims = 8;
inline constexpr std::uint16_t kVersionMajor = 1;
inline constexpr std::uint16_t kVersionMinor = 0;
inline constexpr std::array<std::uint8_t, 8> kMagic = {'S', 'H', 'M', 'B', 'R', 'I', 'D', 'G'};

// Header offsets.
inline constexpr std::size_t kOffMagic = 0x000;
inline constexpr std::size_t kOffVersionMajor = 0x008;
inline constexpr std::size_t kOffVersionMinor = 0x00A;
inline constexpr std::size_t kOffHeaderSize = 0x00C;
inline constexpr std::size_t kOffCapacity = 0x010;
inline constexpr std::size_t kOffSegmentSize = 0x018;
inline constexpr std::size_t kOffFlags = 0x020;
inline constexpr std::size_t kOffMaxDims = 0x024;
inline constexpr std::size_t kOffDeclared = 0x040;
inline constexpr std::size_t kOffMessage = 0x090;
inline constexpr std::size_t kOffReplyCode = 0x0E0;
inline constexpr std::size_t kOffWord = 0x100;
inline constexpr std::size_t kOffWaiters = 0x104;
inline constexpr std::size_t kOffRequesterSlot = 0x140;
inline constexpr std::size_t kOffResponderSlot = 0x160;
inline constexpr std::size_t kOffCreatorSlot = 0x180;
inline constexpr std::size_t kOffPayload = 0x200;

// Descriptor (80 bytes) offsets, relative to the descriptor.
inline constexpr std::size_t kDescSize = 80;
inline constexpr std::size_t kDescDType = 0;
inline constexpr std::size_t kDescNdim = 4;
inline constexpr std::size_t kDescShape = 8;
inline constexpr std::size_t kDescNbytes = 72;

// Liveness slot (32 bytes) offsets, relative to the slot.
inline constexpr std::size_t kSlotSize = 32;
inline constexpr std::size_t kSlotPid = 0;
inline constexpr std::size_t kSlotState = 4;
inline constexpr std::size_t kSlotStartTime = 8;
inline constexpr std::size_t kSlotIncarnation = 16;

// Little-endian field access on raw bytes (any host byte order).
std::uint16_t load_u16(const std::uint8_t* p) noexcept;
std::uint32_t load_u32(const std::uint8_t* p) noexcept;
std::uint64_t load_u64(const std::uint8_t* p) noexcept;
void store_u16(std::uint8_t* p, std::uint16_t v) noexcept;
void store_u32(std::uint8_t* p, std::uint32_t v) noexcept;
void store_u64(std::uint8_t* p, std::uint64_t v) noexcept;

// R-LAYOUT-1: the protocol is little-endian; a big-endian host refuses to create or attach.
bool host_is_little_endian() noexcept;
}  // namespace layout

// An array shape of at most 8 extents, stored inline (no allocation on the hot path).
class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<std::uint64_t> dims);
  explicit Shape(const std::vector<std::uint64_t>& dims);
  Shape(const std::uint64_t* dims, std::size_t ndim);

  std::size_t ndim() const noexcept { return ndim_; }
  std::uint64_t operator[](std::size_t i) const noexcept { return dims_[i]; }
  const std::uint64_t* begin() const noexcept { return dims_.data(); }
  const std::uint64_t* end() const noexcept { return dims_.data() + ndim_; }
  std::vector<std::uint64_t> to_vector() const { return {begin(), end()}; }
  // Number of elements; false on 64-bit overflow.
  bool element_count(std::uint64_t& out) const noexcept;
  std::string to_string() const;  // "(512, 512)"

  friend bool operator==(const Shape& a, const Shape& b) noexcept;
  friend bool operator!=(const Shape& a, const Shape& b) noexcept { return !(a == b); }

 private:
  std::array<std::uint64_t, layout::kMaxDims> dims_{};
  std::size_t ndim_ = 0;
};

// Array descriptor (§3.1). Raw fields, so that an invalid descriptor read from a header can be
// represented and reported.
struct Descriptor {
  std::uint32_t dtype = 0;
  std::uint32_t ndim = 0;
  std::array<std::uint64_t, layout::kMaxDims> shape{};
  std::uint64_t nbytes = 0;

  // A valid descriptor for dtype/shape; throws DTYPE_MISMATCH, SHAPE_MISMATCH (ndim > 8) or
  // CAPACITY_EXCEEDED (byte size overflows 64 bits).
  static Descriptor make(DType dtype, const Shape& shape);
  Shape shape_of() const;  // requires ndim <= 8
  friend bool operator==(const Descriptor& a, const Descriptor& b) noexcept;
  friend bool operator!=(const Descriptor& a, const Descriptor& b) noexcept { return !(a == b); }
};

struct Slot {
  std::uint32_t pid = 0;
  std::uint32_t state = 0;  // SlotState
  std::uint64_t start_time = 0;
  std::uint64_t incarnation = 0;
  friend bool operator==(const Slot& a, const Slot& b) noexcept;
};

enum class SlotState : std::uint32_t { empty = 0, attached = 1, closed = 2 };

// The fields every protocol version has at the same offsets (§3; Part II R-SCHEMA-5, R-VER-6):
// the v1 Header and the v2 HeaderV2 (layout_v2.hpp) add their own between them.
struct FixedHeader {
  std::array<std::uint8_t, 8> magic = layout::kMagic;
  std::uint16_t version_major = layout::kVersionMajor;
  std::uint16_t version_minor = layout::kVersionMinor;
  std::uint32_t header_size = layout::kHeaderSize;
  std::uint64_t capacity = 0;
  std::uint64_t segment_size = layout::kHeaderSize;
  std::uint32_t flags = 0;
  std::uint32_t max_dims = layout::kMaxDims;
  std::uint32_t reply_code = 0;
  std::uint32_t word = 0;
  std::uint32_t waiters = 0;
  Slot requester;
  Slot responder;
  Slot creator;
  friend bool operator==(const FixedHeader& a, const FixedHeader& b) noexcept;
};

// Writes / reads the FixedHeader fields at their offsets (nothing else).
void encode_fixed_header(const FixedHeader& h, std::uint8_t* out);
FixedHeader decode_fixed_header(const std::uint8_t* in);

struct Header : FixedHeader {
  Descriptor declared;
  Descriptor message;

  // The header of a fresh segment for dtype/shape, capacity = nbytes (message = declared).
  static Header fresh(DType dtype, const Shape& shape,
                      std::optional<std::uint64_t> capacity = std::nullopt);
  friend bool operator==(const Header& a, const Header& b) noexcept;
};

// Writes all 512 bytes (reserved bytes zero).
void encode_header(const Header& h, std::uint8_t* out);
// Reads the 512 bytes at `in` (no validation).
Header decode_header(const std::uint8_t* in);
Descriptor decode_descriptor(const std::uint8_t* in);
void encode_descriptor(const Descriptor& d, std::uint8_t* out);
Slot decode_slot(const std::uint8_t* in);
void encode_slot(const Slot& s, std::uint8_t* out);  // all 32 bytes (reserved bytes zero)

// R-LAYOUT-5: throws CORRUPT_HEADER naming `which` ("declared", "message") if invalid.
void validate_descriptor(const Descriptor& d, std::uint64_t capacity, const char* which);
// R-LAYOUT-2..6 (and R-SEG-6: all-zero magic is SEGMENT_NOT_FOUND, "still initialising").
// Reads at most min(512, mapping_size) bytes of `data`. Throws Error on failure.
void validate_header(const std::uint8_t* data, std::uint64_t mapping_size);

}  // namespace shmbridge
