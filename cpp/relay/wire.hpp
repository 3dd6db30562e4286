// The relay's wire format (spec/RELAY.md §3): the 48-byte relay header, the 80-byte descriptors
// after it in frame 0, and the checks W1-W11 every received message passes, in order, before
// anything acts on it (R-RELAY-6). No ZeroMQ here: frames are byte spans, so the decoder is
// fuzzed and vector-tested on its own (cpp/fuzz/fuzz_relay_wire.cpp, tests/test_relay_wire.cpp).
// Mirrors python/shmbridge/relay/wire.py.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "shmbridge/errors.hpp"

namespace shmbridge::relay {

inline constexpr std::size_t kHeaderSize = 48;
inline constexpr std::size_t kDescSize = 80;
inline constexpr std::size_t kMaxFields = 16;  // W7 (v1: 1)
inline constexpr std::uint8_t kWireVersion = 1;
inline constexpr std::size_t kMaxFrame0 = kHeaderSize + kDescSize * kMaxFields;

enum class Kind : std::uint8_t { HELLO = 1, REQ = 2, REP = 3, HB = 4 };
const char* kind_name(Kind kind) noexcept;

// round_state of the far end's HB answer (R-RELAY-13, R-RELAY-15).
enum class RoundState : std::uint8_t { NONE = 0, UNKNOWN = 1, EXECUTING = 2, DONE = 3 };

// A PROTOCOL.md §3.1 descriptor carried on the wire (a v1 `message` or a v2 table entry).
struct Desc {
  std::uint32_t dtype = 0;
  std::uint32_t ndim = 0;
  std::array<std::uint64_t, 8> shape{};  // entries >= ndim are 0
  std::uint64_t nbytes = 0;
  bool operator==(const Desc& o) const noexcept {
    return dtype == o.dtype && ndim == o.ndim && shape == o.shape && nbytes == o.nbytes;
  }
};

// The header fields (§3.1) of a message to send or of one that passed W1-W8.
struct Head {
  Kind kind = Kind::HB;
  std::uint8_t protocol = 0;
  std::uint8_t round_state = 0;
  std::uint64_t session = 0;
  std::uint64_t epoch = 0;
  std::uint64_t relay_seq = 0;
  std::uint32_t local_seq = 0;
  std::uint32_t reply_code = 0;
  std::uint16_t nfields = 0;
};

// The bytes of one frame (not owned).
struct Bytes {
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;
};

// A message that passed W1-W11: the header, its descriptors and its payload frames (views of
// the frames it was decoded from: nothing is copied). Fixed size: decoding allocates nothing.
struct Message {
  Head head;
  std::array<Desc, kMaxFields> descs{};
  std::array<Bytes, kMaxFields + 1> frames{};  // payload frames (HELLO: the declaration)
  std::size_t nframes = 0;
};

// Raised by W1-W11 (R-RELAY-6): a shmbridge::Error of the table's code (CORRUPT_HEADER or
// VERSION_MISMATCH) with the check's label; head() is the decoded header when W1-W8 passed (a
// check of W9-W11 failed), so that the receiver can answer that round.
class WireError : public Error {
 public:
  WireError(ErrorCode code, const char* check, const std::string& message)
      : Error(code, message), check_(check) {}
  const char* check() const noexcept { return check_; }
  const std::optional<Head>& head() const noexcept { return head_; }
  void set_head(const Head& head) { head_ = head; }

 private:
  const char* check_;
  std::optional<Head> head_;
};

// itemsize x product(shape) of a descriptor, nullopt when it exceeds 2^64 - 1 (E4).
std::optional<std::uint64_t> desc_nbytes(std::uint32_t dtype, std::uint32_t ndim,
                                         const std::array<std::uint64_t, 8>& shape) noexcept;

// A well-formed descriptor of dtype and extents (ndim = extents.size() <= 8, checked by the
// caller); nbytes is computed.
Desc make_desc(std::uint32_t dtype, const std::uint64_t* extents, std::uint32_t ndim) noexcept;

// Frame 0 of a message: the header then one descriptor per field (§3.1). Writes
// 48 + 80 x ndescs bytes to out (at least kMaxFrame0 bytes) and returns that size; head.nfields
// is taken from ndescs.
std::size_t encode_frame0(const Head& head, const Desc* descs, std::size_t ndescs,
                          std::uint8_t* out) noexcept;

// W1-W8 on frame 0 then W9-W11 (R-RELAY-6); the first failing check throws its WireError.
// Any bytes, any number of frames: nothing else is thrown and nothing is read out of bounds.
void decode(const Bytes* frames, std::size_t nframes, Message& out);

}  // namespace shmbridge::relay
