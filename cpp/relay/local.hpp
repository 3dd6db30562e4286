// The relay's local roles on ordinary segments (spec/RELAY.md R-RELAY-1), through the public C++
// API of either protocol version: the far end is the requester of its segment (FarLocal), the
// near end its responder (NearLocal). Also the HELLO declaration (R-RELAY-5) and the receipt
// checks of R-RELAY-7. Mirrors python/shmbridge/relay/local.py.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "shmbridge/channel.hpp"
#include "shmbridge/layout_v2.hpp"
#include "shmbridge/message.hpp"
#include "wire.hpp"

namespace shmbridge::relay {

// The header a segment declares, as a HELLO carries it (R-RELAY-5): the creator's header with
// word, waiters, reply_code and the three liveness slots zero (v1: message = declared).
struct Declaration {
  int protocol = 0;
  std::vector<std::uint8_t> raw;
  std::optional<Header> v1;
  std::optional<HeaderV2> v2;

  static Declaration of_segment(const ChannelHandle& h);
  // R-RELAY-5 on a received declaration frame: exactly the header, then the local validator.
  static Declaration decode(const Bytes& frame);
  // R-RELAY-2: the near segment (this) declares what the far one does; throws the first
  // failing check's error (VERSION_MISMATCH, DTYPE_MISMATCH, SHAPE_MISMATCH, SCHEMA_MISMATCH).
  void check_same(const Declaration& far, const std::string& near_name) const;
};

// R-RELAY-7 on received descriptors against a segment's declaration: v1 R-MSG-1 (dtype, then
// shape), v2 E5-E8 per field in schema order. `side` is "request" or "reply".
void check_descs(const Declaration& decl, const Desc* descs, std::size_t n, bool reply_side);

Shape shape_of(const Desc& d);
Desc desc_of(DType dtype, const Shape& shape);

// The field names of each side of a v2 declaration, in schema order (both empty in v1).
void field_names(const Declaration& d, std::vector<std::string>& request,
                 std::vector<std::string>& reply);

// Attaches with the API of `protocol` (R-VER-3): 2 the v2 API; 1 the v1 API; 0 the v1 API, or
// the v2 API when the segment says it is a v2 segment. No wait: the caller retries (R-RELAY-19).
template <class V1, class V2>
void attach_either(const std::string& name, int protocol, Options o, std::optional<V1>& v1,
                   std::optional<V2>& v2) {
  o.timeout = std::chrono::nanoseconds::zero();
  if (protocol == 2) {
    v2.emplace(V2::attach(name, o));
    return;
  }
  try {
    v1.emplace(V1::attach(name, o));
  } catch (const Error& e) {
    if (e.code() != ErrorCode::VERSION_MISMATCH || protocol == 1) throw;
    v2.emplace(V2::attach(name, o));
  }
}

// The declaration of whichever handle is open.
template <class V1, class V2>
Declaration declaration_of(const std::optional<V1>& v1, const std::optional<V2>& v2) {
  return Declaration::of_segment(v1 ? static_cast<const ChannelHandle&>(*v1)
                                    : static_cast<const ChannelHandle&>(*v2));
}

// The result of a far-side round (R-RELAY-12): reply_code 0 with the reply's fields, or an
// error code.
struct Outcome {
  std::uint32_t reply_code = 0;
  std::uint32_t local_seq = 0;
  std::vector<Desc> descs;
  std::vector<zmq::message_t> payload;  // one per descriptor
  std::string message;
};

class FarLocal {
 public:
  FarLocal(std::string name, Options opts) : name_(std::move(name)), opts_(opts) {}
  bool open() const noexcept { return v1_.has_value() || v2_.has_value(); }
  bool created() const noexcept { return created_; }
  const std::optional<Declaration>& decl() const noexcept { return decl_; }

  void create_v1(DType dtype, const Shape& shape);
  void create_v2(const Schema& request, const Schema& reply);
  void attach(int protocol);  // 0: whichever the segment is (R-VER-3)
  // R-RELAY-7 on a REQ's descriptors.
  void check(const Desc* descs, std::size_t n) const { check_descs(*decl_, descs, n, false); }
  // T1 of a new round with the REQ's fields (copied into the segment).
  void start(const Desc* descs, const zmq::message_t* frames, std::size_t n);
  // Waits up to `timeout` for the reply: true with `out` filled, false while still waiting.
  // A reply field of at least kZeroCopyMin bytes is not copied: its message refers to the
  // reply area of the segment, the reply's until the next T1 (R-RELAY-4).
  bool step(std::chrono::milliseconds timeout, Outcome& out);
  // Waits up to `max` until ZeroMQ released every such message: true when none is held. The
  // caller needs true before the next T1 (`start`) and before `close` unmaps the segment.
  bool wait_released(std::chrono::milliseconds max) const;
  void close();

 private:
  void send();
  void opened(bool created);
  void add_payload(Outcome& out, const void* data, std::size_t size);
  std::string name_;
  Options opts_;
  std::optional<Requester> v1_;
  std::optional<MessageRequester> v2_;
  std::optional<Declaration> decl_;
  bool created_ = false;
  std::vector<std::string> request_names_, reply_names_;
  // the round's request fields (views of the REQ's frames, kept by the caller)
  std::vector<Desc> args_;
  std::vector<const void*> arg_data_;
  std::uint32_t local_seq_ = 0;
  // zero-copy reply messages ZeroMQ still holds (its free function decrements the count on its
  // I/O thread); on the heap so that the address the messages keep never moves
  std::unique_ptr<std::atomic<int>> held_ = std::make_unique<std::atomic<int>>(0);
};

}  // namespace shmbridge::relay
