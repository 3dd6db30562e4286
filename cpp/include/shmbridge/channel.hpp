// The two roles of a shmbridge channel (spec/API.md "Roles", spec/PROTOCOL.md §4-§7).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shmbridge/dtype.hpp"
#include "shmbridge/errors.hpp"
#include "shmbridge/layout.hpp"
#include "shmbridge/protocol.hpp"
#include "shmbridge/segment.hpp"

namespace shmbridge {

struct Options {
  // Deadline of every blocking operation and of attach (R-WAIT-2, R-TIME-*); 0 = try once.
  std::chrono::nanoseconds timeout = std::chrono::seconds(5);
  // Spin budget before blocking in the OS (R-WAIT-1); 0 allowed.
  std::chrono::nanoseconds spin = std::chrono::microseconds(100);  // bench: sweep_20261126-0540
  // Longest single OS wait, and how often the peer's liveness is re-checked (R-WAIT-4, R-LIVE-3).
  std::chrono::nanoseconds liveness_interval = std::chrono::milliseconds(50);
  // A creator that finds a stale segment reclaims it (R-STALE-2).
  bool reclaim_stale = true;
  // The creator does not unlink the segment on close (R-SEG-3).
  bool keep_segment = false;
  // v1 create only: the payload capacity in bytes (R-SEG-1); unset = the declared array's
  // nbytes. Below nbytes is CAPACITY_EXCEEDED; attach and the v2 API reject it (INVALID_ARGUMENT:
  // the creator alone sizes the segment, and a v2 capacity follows from the schemas).
  std::optional<std::uint64_t> capacity;
};

// A contiguous typed range (C++17 has no std::span).
template <class T>
class Span {
 public:
  Span(T* data, std::size_t size) noexcept : data_(data), size_(size) {}
  T* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  T& operator[](std::size_t i) const noexcept { return data_[i]; }
  T* begin() const noexcept { return data_; }
  T* end() const noexcept { return data_ + size_; }

 private:
  T* data_;
  std::size_t size_;
};

namespace detail {
class RoundEngine;
void check_dtype(DType have, DType want);
}  // namespace detail

// A zero-copy read-only view of a reply in the payload. Valid (R-CLOSE-3) until the requester's
// next send; it keeps the mapping alive, so it never dangles even after close.
class ArrayView {
 public:
  ArrayView() = default;
  const void* data() const noexcept { return data_; }
  template <class T>
  const T* data() const {
    detail::check_dtype(dtype_, dtype_of_v<T>);
    return static_cast<const T*>(data_);
  }
  template <class T>
  Span<const T> as() const {
    return Span<const T>(data<T>(), static_cast<std::size_t>(nbytes_ / sizeof(T)));
  }
  DType dtype() const noexcept { return dtype_; }
  const Shape& shape() const noexcept { return shape_; }
  std::uint64_t nbytes() const noexcept { return nbytes_; }
  std::uint32_t seq() const noexcept { return seq_; }

 private:
  friend class Requester;
  const void* data_ = nullptr;
  DType dtype_ = DType::uint8;
  Shape shape_;
  std::uint64_t nbytes_ = 0;
  std::uint32_t seq_ = 0;
  std::shared_ptr<Mapping> keep_;
};

// A request taken by a responder: a zero-copy mutable view of the payload, valid until it is
// answered with reply()/reply(ptr)/fail(code).
class Request {
 public:
  void* data() const noexcept { return data_; }
  template <class T>
  T* data() const {
    detail::check_dtype(dtype_, dtype_of_v<T>);
    return static_cast<T*>(data_);
  }
  template <class T>
  Span<T> as() const {
    return Span<T>(data<T>(), static_cast<std::size_t>(nbytes_ / sizeof(T)));
  }
  DType dtype() const noexcept { return dtype_; }
  const Shape& shape() const noexcept { return shape_; }
  std::uint64_t nbytes() const noexcept { return nbytes_; }
  std::uint32_t seq() const noexcept { return seq_; }
  bool answered() const noexcept { return answered_; }

  // T3: publish the payload as computed in place.
  void reply();
  // T3 after copying nbytes() bytes from `src` (the declared dtype and shape).
  void reply(const void* src);
  template <class T>
  void reply(const T* src) {
    detail::check_dtype(dtype_, dtype_of_v<T>);
    reply(static_cast<const void*>(src));
  }
  // R-MSG-2: an error reply with `code` (the requester raises it).
  void fail(ErrorCode code);

 private:
  friend class Responder;
  std::shared_ptr<detail::RoundEngine> core_;
  void* data_ = nullptr;
  DType dtype_ = DType::uint8;
  Shape shape_;
  std::uint64_t nbytes_ = 0;
  std::uint32_t seq_ = 0;
  bool answered_ = false;
};

// What every channel handle has, whatever its role and protocol version: the control word,
// the segment, and close (R-CLOSE-*). v1 handles (Requester, Responder) and v2 handles
// (MessageRequester, MessageResponder, message.hpp) share it and the round engine behind it.
class ChannelHandle {
 public:
  std::uint32_t word() const;  // the control word (acquire load)
  std::uint32_t phase_bits() const { return shmbridge::phase_bits(word()); }
  Phase phase() const { return static_cast<Phase>(phase_bits()); }
  std::uint32_t seq() const { return seq_of(word()); }
  std::uint64_t capacity() const;
  const std::string& name() const;
  bool is_creator() const;
  bool is_open() const noexcept;
  // R-SEG-9 (creator, POSIX): the segment's name was removed by another process while the
  // channel is mapped (e.g. a Python < 3.13 script that attached with
  // multiprocessing.shared_memory, whose resource tracker unlinks at exit). Not an error: the
  // channel keeps working for the peers already attached, but no new peer can attach by name.
  // Checked now and with each liveness probe while waiting; stays true once seen.
  bool name_removed() const;
  // Diagnostics (spec/API.md): the mapping's size, and a copy of `n` of its bytes at `offset`
  // (plain reads; e.g. the conformance peer's header fields, spec/PEER.md §2). Reads this handle's
  // own mapping, so it works after the name was removed (R-SEG-9). INVALID_ARGUMENT outside the
  // mapping; a closed handle is OUT_OF_TURN, as every other call.
  std::uint64_t segment_size() const;
  std::vector<std::uint8_t> segment_bytes(std::uint64_t offset, std::uint64_t n) const;
  // R-CLOSE-*: idempotent; also run by the destructor.
  void close();

  ChannelHandle(ChannelHandle&&) noexcept;
  ChannelHandle& operator=(ChannelHandle&&) noexcept;
  ~ChannelHandle();

 protected:
  ChannelHandle() = default;
  explicit ChannelHandle(std::shared_ptr<detail::RoundEngine> core) noexcept;
  detail::RoundEngine& core() const;
  std::shared_ptr<detail::RoundEngine> core_;
};

// Common read-only accessors of both v1 roles.
class Handle : public ChannelHandle {
 public:
  DType dtype() const;
  const Shape& shape() const;

 protected:
  using ChannelHandle::ChannelHandle;
};

class Requester : public Handle {
 public:
  static Requester create(std::string_view name, DType dtype, const Shape& shape,
                          const Options& opt = {});
  static Requester attach(std::string_view name, const Options& opt = {});
  static Requester attach(std::string_view name, DType dtype, const Shape& shape,
                          const Options& opt = {});

  // T1 (R-STATE-9, R-STATE-10): copies the array in and publishes the request.
  void send(const void* data, DType dtype, const Shape& shape);
  template <class T>
  void send(const T* data, const Shape& shape) {
    send(static_cast<const void*>(data), dtype_of_v<T>, shape);
  }
  // Zero-copy: the payload to fill before send_in_place() (OUT_OF_TURN unless the requester owns
  // the payload).
  void* request_buffer(DType dtype);
  template <class T>
  Span<T> request_buffer() {
    return Span<T>(static_cast<T*>(request_buffer(dtype_of_v<T>)),
                   static_cast<std::size_t>(capacity() / sizeof(T)));
  }
  void send_in_place();

  // T4: waits for the reply to the outstanding request (R-TIME-2, R-LIVE-3, R-MSG-2).
  ArrayView receive();
  ArrayView receive(std::chrono::nanoseconds timeout);
  ArrayView try_receive() { return receive(std::chrono::nanoseconds::zero()); }
  void receive(void* out, DType dtype, const Shape& shape);
  template <class T>
  void receive(T* out, const Shape& shape) {
    receive(static_cast<void*>(out), dtype_of_v<T>, shape);
  }
  template <class T>
  void call(const T* in, T* out, const Shape& shape) {
    send(in, shape);
    receive(out, shape);
  }
  std::optional<std::uint32_t> pending() const;

 private:
  using Handle::Handle;
};

class Responder : public Handle {
 public:
  static Responder create(std::string_view name, DType dtype, const Shape& shape,
                          const Options& opt = {});
  static Responder attach(std::string_view name, const Options& opt = {});
  static Responder attach(std::string_view name, DType dtype, const Shape& shape,
                          const Options& opt = {});

  // T2: waits for a request (R-TIME-3, R-LIVE-4, R-MSG-1).
  Request take();
  Request take(std::chrono::nanoseconds timeout);
  Request try_take() { return take(std::chrono::nanoseconds::zero()); }
  // Takes and answers requests until the requester closes (PEER_GONE from a CLOSED requester
  // ends the loop normally). A request the handler leaves unanswered is replied in place; a
  // handler that throws answers with an error reply (its shmbridge code, else INVALID_ARGUMENT)
  // and the exception propagates.
  void serve(const std::function<void(Request&)>& handler);
  // Low level (stateful tests): answer the held request.
  void reply();
  void fail(ErrorCode code);
  std::optional<std::uint32_t> held() const;

 private:
  using Handle::Handle;
};

}  // namespace shmbridge
