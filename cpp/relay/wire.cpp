// W1-W11 of spec/RELAY.md §3.3 in order, and the §3.1 encoder. Little-endian fields are read and
// written byte by byte, so the code is independent of the host's byte order and alignment.
#include "wire.hpp"

#include <cstring>

#include "shmbridge/dtype.hpp"
#include "shmbridge/layout.hpp"

namespace shmbridge::relay {
namespace {

constexpr std::uint8_t kMagic[4] = {'S', 'B', 'R', 'L'};

template <class T>
T load(const std::uint8_t* p) noexcept {
  T v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) v = static_cast<T>(v | (T(p[i]) << (8 * i)));
  return v;
}

template <class T>
void store(std::uint8_t* p, T v) noexcept {
  for (std::size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}

[[noreturn]] void corrupt(const char* check, const std::string& what) {
  throw WireError(ErrorCode::CORRUPT_HEADER, check,
                  "CORRUPT_HEADER: relay message: " + what + " (check " + check +
                      " of spec/RELAY.md); the sender is not a shmbridge relay of wire version 1 "
                      "or is broken: check the address and the peer's version");
}

bool carries_no_fields(Kind k, std::uint32_t reply_code) noexcept {
  return k == Kind::HELLO || k == Kind::HB || (k == Kind::REP && reply_code != 0);
}

// W1-W8 on frame 0.
Head decode_head(const Bytes* frames, std::size_t nframes) {
  if (nframes == 0) corrupt("W1", "no frame");
  const Bytes& f0 = frames[0];
  if (f0.size < kHeaderSize || f0.data == nullptr) {
    corrupt("W1", "frame 0 has " + std::to_string(f0.size) + " bytes, expected at least 48");
  }
  const std::uint8_t* p = f0.data;
  if (std::memcmp(p, kMagic, 4) != 0) corrupt("W2", "magic is not SBRL");
  if (p[4] != kWireVersion) {
    throw WireError(ErrorCode::VERSION_MISMATCH, "W3",
                    "VERSION_MISMATCH: relay message: wire version " + std::to_string(p[4]) +
                        ", this relay speaks 1 (check W3 of spec/RELAY.md); run the same "
                        "shmbridge release at both ends");
  }
  const std::uint8_t kind = p[5];
  if (kind < 1 || kind > 4) corrupt("W4", "kind " + std::to_string(kind) + ", expected 1 to 4");
  Head h;
  h.kind = static_cast<Kind>(kind);
  h.protocol = p[6];
  h.round_state = p[7];
  h.session = load<std::uint64_t>(p + 8);
  h.epoch = load<std::uint64_t>(p + 16);
  h.relay_seq = load<std::uint64_t>(p + 24);
  h.local_seq = load<std::uint32_t>(p + 32);
  h.reply_code = load<std::uint32_t>(p + 36);
  h.nfields = load<std::uint16_t>(p + 40);
  if (load<std::uint16_t>(p + 42) != 0 || load<std::uint32_t>(p + 44) != 0) {
    corrupt("W5", "reserved fields are not zero");
  }
  const char* kn = kind_name(h.kind);
  // HELLO: 0 is a near end that has no segment yet (it creates it from the far end's HELLO).
  const bool protocol_ok = h.kind == Kind::HB      ? h.protocol == 0
                           : h.kind == Kind::HELLO ? h.protocol <= 2
                                                   : (h.protocol == 1 || h.protocol == 2);
  if (!protocol_ok) corrupt("W6", "protocol " + std::to_string(h.protocol) + " in a " + kn);
  if (h.round_state > 3 || (h.round_state != 0 && h.kind != Kind::HB)) {
    corrupt("W6", "round_state " + std::to_string(h.round_state) + " in a " + kn);
  }
  const std::size_t limit = h.protocol == 1 ? 1 : kMaxFields;
  if (h.nfields > limit) {
    corrupt("W7", std::to_string(h.nfields) + " descriptors, at most " + std::to_string(limit) +
                      " in protocol " + std::to_string(h.protocol));
  }
  if (f0.size != kHeaderSize + kDescSize * h.nfields) {
    corrupt("W7", "frame 0 has " + std::to_string(f0.size) + " bytes, 48 + 80 x " +
                      std::to_string(h.nfields) + " expected");
  }
  if (h.nfields != 0 && carries_no_fields(h.kind, h.reply_code)) {
    corrupt("W7", std::to_string(h.nfields) + " descriptors in a " + kn + " that carries none");
  }
  if (h.reply_code != 0 && (h.kind != Kind::REP || !is_error_code(h.reply_code))) {
    corrupt("W8", "reply_code " + std::to_string(h.reply_code) + " in a " + kn);
  }
  if (h.relay_seq == 0 && (h.kind == Kind::REQ || h.kind == Kind::REP)) {
    corrupt("W8", std::string("relay_seq 0 in a ") + kn);
  }
  return h;
}

// W10 on descriptor k (E1-E4 of PROTOCOL.md §II.8).
Desc decode_desc(const std::uint8_t* p, std::size_t k) {
  Desc d;
  d.dtype = load<std::uint32_t>(p);
  d.ndim = load<std::uint32_t>(p + 4);
  for (std::size_t i = 0; i < 8; ++i) d.shape[i] = load<std::uint64_t>(p + 8 + 8 * i);
  d.nbytes = load<std::uint64_t>(p + 72);
  const std::string which = "descriptor " + std::to_string(k);
  if (!is_dtype_code(d.dtype)) {
    corrupt("W10", which + " has the unknown dtype code " + std::to_string(d.dtype));
  }
  if (d.ndim > 8) corrupt("W10", which + " has ndim " + std::to_string(d.ndim) + ", above 8");
  for (std::size_t i = d.ndim; i < 8; ++i) {
    if (d.shape[i] != 0) corrupt("W10", which + " has non-zero extents beyond its ndim");
  }
  const auto n = desc_nbytes(d.dtype, d.ndim, d.shape);
  if (!n || *n != d.nbytes) {
    corrupt("W10", which + " says nbytes " + std::to_string(d.nbytes) + ", itemsize x product " +
                       (n ? "is " + std::to_string(*n) : std::string("exceeds 2^64 - 1")));
  }
  return d;
}

// W9-W11.
void decode_rest(const Bytes* frames, std::size_t nframes, Message& out) {
  const Head& h = out.head;
  const std::size_t want = h.kind == Kind::HELLO ? 2 : 1 + std::size_t(h.nfields);
  if (nframes != want) {
    corrupt("W9", std::to_string(nframes) + " frames, expected " + std::to_string(want) +
                      " for a " + kind_name(h.kind));
  }
  for (std::size_t i = 0; i < h.nfields; ++i) {
    out.descs[i] = decode_desc(frames[0].data + kHeaderSize + kDescSize * i, i);
  }
  for (std::size_t i = 0; i < h.nfields; ++i) {
    if (frames[1 + i].size != out.descs[i].nbytes) {
      corrupt("W11", "payload frame " + std::to_string(i + 1) + " has " +
                         std::to_string(frames[1 + i].size) + " bytes, its descriptor " +
                         std::to_string(out.descs[i].nbytes));
    }
  }
  out.nframes = nframes - 1;
  for (std::size_t i = 0; i < out.nframes; ++i) out.frames[i] = frames[1 + i];
}

}  // namespace

const char* kind_name(Kind kind) noexcept {
  switch (kind) {
    case Kind::HELLO:
      return "HELLO";
    case Kind::REQ:
      return "REQ";
    case Kind::REP:
      return "REP";
    case Kind::HB:
      return "HB";
  }
  return "?";
}

std::optional<std::uint64_t> desc_nbytes(std::uint32_t dtype, std::uint32_t ndim,
                                         const std::array<std::uint64_t, 8>& shape) noexcept {
  if (!is_dtype_code(dtype) || ndim > 8) return std::nullopt;
  // the library's exact product (an empty extent makes it 0 whatever the others are)
  std::uint64_t count = 0;
  if (!Shape(shape.data(), ndim).element_count(count)) return std::nullopt;
  const std::uint64_t size = itemsize(static_cast<DType>(dtype));
  if (count > UINT64_MAX / size) return std::nullopt;
  return count * size;
}

Desc make_desc(std::uint32_t dtype, const std::uint64_t* extents, std::uint32_t ndim) noexcept {
  Desc d;
  d.dtype = dtype;
  d.ndim = ndim;
  for (std::uint32_t i = 0; i < ndim && i < 8; ++i) d.shape[i] = extents[i];
  d.nbytes = desc_nbytes(dtype, ndim, d.shape).value_or(0);
  return d;
}

std::size_t encode_frame0(const Head& head, const Desc* descs, std::size_t ndescs,
                          std::uint8_t* out) noexcept {
  std::memcpy(out, kMagic, 4);
  out[4] = kWireVersion;
  out[5] = static_cast<std::uint8_t>(head.kind);
  out[6] = head.protocol;
  out[7] = head.round_state;
  store(out + 8, head.session);
  store(out + 16, head.epoch);
  store(out + 24, head.relay_seq);
  store(out + 32, head.local_seq);
  store(out + 36, head.reply_code);
  store(out + 40, static_cast<std::uint16_t>(ndescs));
  store(out + 42, std::uint16_t{0});
  store(out + 44, std::uint32_t{0});
  for (std::size_t i = 0; i < ndescs; ++i) {
    std::uint8_t* p = out + kHeaderSize + kDescSize * i;
    store(p, descs[i].dtype);
    store(p + 4, descs[i].ndim);
    for (std::size_t j = 0; j < 8; ++j) store(p + 8 + 8 * j, descs[i].shape[j]);
    store(p + 72, descs[i].nbytes);
  }
  return kHeaderSize + kDescSize * ndescs;
}

void decode(const Bytes* frames, std::size_t nframes, Message& out) {
  out.head = decode_head(frames, nframes);
  try {
    decode_rest(frames, nframes, out);
  } catch (WireError& e) {
    e.set_head(out.head);
    throw;
  }
}

}  // namespace shmbridge::relay
