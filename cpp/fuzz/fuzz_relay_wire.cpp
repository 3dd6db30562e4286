// libFuzzer target: the relay wire decoder (cpp/relay/wire.cpp, spec/RELAY.md §3.3, R-RELAY-6).
// Input: frames as (u16 LE length, bytes) pairs, the last one cut to what is left, at most 20.
// Invariants: decode throws nothing but relay::WireError (a typed error with a check label W1-W11
// and, for W9-W11, the header); a message that decodes re-encodes to its frame 0 byte for byte
// and its payload frames are the input frames themselves. Seeds: every vector of
// spec/vectors/relay_wire.json (cpp/fuzz/make_seeds.py relay_wire).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "../relay/wire.hpp"
#include "fuzz_check.hpp"

namespace sr = shmbridge::relay;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  sr::Bytes frames[20];
  std::size_t n = 0;
  while (size >= 2 && n < 20) {
    std::size_t len = std::size_t(data[0]) | (std::size_t(data[1]) << 8);
    data += 2;
    size -= 2;
    if (len > size) len = size;
    frames[n++] = {data, len};
    data += len;
    size -= len;
  }
  sr::Message m;
  try {
    sr::decode(frames, n, m);
  } catch (const sr::WireError& e) {
    const std::string check = e.check();
    CHECK(check.size() >= 2 && check[0] == 'W');
    const int w = std::stoi(check.substr(1));
    CHECK(w >= 1 && w <= 11);
    CHECK(e.head().has_value() == (w >= 9));  // the header is kept exactly when W1-W8 passed
    return 0;
  }
  std::uint8_t out[sr::kMaxFrame0];
  const std::size_t len = sr::encode_frame0(m.head, m.descs.data(), m.head.nfields, out);
  CHECK(len == frames[0].size && std::memcmp(out, frames[0].data, len) == 0);
  CHECK(m.nframes + 1 == n);
  for (std::size_t i = 0; i < m.nframes; ++i) CHECK(m.frames[i].data == frames[i + 1].data);
  return 0;
}
