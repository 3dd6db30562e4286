// Protocol v2: typed multi-field messages (spec/PROTOCOL.md Part II, spec/API.md "Protocol v2").
//
// The roles MessageRequester and MessageResponder run the same rounds as the v1 roles (one round
// engine, R-VER-1); a message is a set of named fields, each an n-d array with its own dtype and
// shape, checked against the segment's request and reply schemas.
//
//   auto req = shmbridge::MessageRequester::create("Camera", request, reply, opt);
//   req.send({{"image", shmbridge::FieldRef(frame.data(), {480, 640, 3})},
//             {"stamp", shmbridge::FieldRef(&t, {})}});
//   shmbridge::MessageView msg = req.receive();
//   auto boxes = msg.field<float>("boxes");  // FieldSpan<const float>: data(), size(), shape()
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "shmbridge/channel.hpp"
#include "shmbridge/schema.hpp"

namespace shmbridge {

// A typed view of one field (R-FIELD-12): its elements in C order, and its shape. `T` is const
// for received fields.
template <class T>
class FieldSpan {
 public:
  FieldSpan() = default;
  FieldSpan(T* data, std::size_t size, const Shape& shape) noexcept
      : data_(data), size_(size), shape_(shape) {}
  T* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }  // number of elements
  bool empty() const noexcept { return size_ == 0; }
  const Shape& shape() const noexcept { return shape_; }
  std::size_t ndim() const noexcept { return shape_.ndim(); }
  std::uint64_t nbytes() const noexcept { return size_ * sizeof(T); }
  T& operator[](std::size_t i) const noexcept { return data_[i]; }
  T* begin() const noexcept { return data_; }
  T* end() const noexcept { return data_ + size_; }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
  Shape shape_;
};

// A field to send by copy: its data (C-contiguous, little-endian), dtype and shape. No dtype is
// converted (check S4).
struct FieldRef {
  const void* data = nullptr;
  DType dtype = DType::uint8;
  Shape shape;

  FieldRef() = default;
  FieldRef(const void* d, DType dt, Shape s) noexcept : data(d), dtype(dt), shape(std::move(s)) {}
  // Typed: the dtype of T (dtype.hpp's dtype_of).
  template <class T, class = decltype(dtype_of<T>::value)>
  FieldRef(const T* d, Shape s) noexcept : FieldRef(d, dtype_of_v<T>, std::move(s)) {}
  // A field of a received message or a buffer, sent as it is.
  template <class T>
  FieldRef(const FieldSpan<T>& span) noexcept  // NOLINT(runtime/explicit)
      : FieldRef(span.data(), dtype_of_v<std::remove_const_t<T>>, span.shape()) {}
  // itemsize x number of elements (0 for an unsupported dtype or an overflowing shape).
  std::uint64_t nbytes() const noexcept;
};

// An untyped writable view of one field, for code generic over dtypes.
struct RawField {
  void* data = nullptr;
  DType dtype = DType::uint8;
  Shape shape;
  std::uint64_t nbytes = 0;
};

// A field given to send / call / reply, by name; and a shape for a zero-copy buffer.
struct NamedField {
  std::string_view name;
  FieldRef ref;
};
struct NamedShape {
  std::string_view name;
  Shape shape;
};

namespace detail {
class RoundEngine;
class V2Format;
struct FieldSlot {
  DType dtype = DType::uint8;
  Shape shape;
  std::uint64_t nbytes = 0;
  std::uint8_t* data = nullptr;
};
}  // namespace detail

// The fields of one message in schema order: names, dtypes, shapes and where their data are.
// Unknown names fail with SCHEMA_MISMATCH naming them (R-FIELD-12).
class FieldSet {
 public:
  std::size_t size() const noexcept { return slots_.size(); }
  bool empty() const noexcept { return slots_.empty(); }
  const std::vector<std::string>& names() const noexcept;  // schema order
  bool contains(std::string_view name) const noexcept;
  DType dtype(std::string_view name) const;
  const Shape& shape(std::string_view name) const;
  std::uint64_t nbytes(std::string_view name) const;
  // Untyped read-only access (also what a copying send takes).
  FieldRef ref(std::string_view name) const;
  // The seq of the request this message belongs to.
  std::uint32_t seq() const noexcept { return seq_; }

 protected:
  const detail::FieldSlot& slot(std::string_view name) const;
  // R-FIELD-12: DTYPE_MISMATCH naming the field if `element` is not its dtype.
  const detail::FieldSlot& typed_slot(std::string_view name, DType element) const;
  template <class T>
  FieldSpan<T> span(std::string_view name) const {
    const detail::FieldSlot& s = typed_slot(name, dtype_of_v<std::remove_const_t<T>>);
    return FieldSpan<T>(reinterpret_cast<T*>(s.data),
                        static_cast<std::size_t>(s.nbytes / sizeof(T)), s.shape);
  }

 private:
  friend class detail::V2Format;
  std::shared_ptr<const std::vector<std::string>> names_;
  std::vector<detail::FieldSlot> slots_;
  std::shared_ptr<const void> keep_;  // the mapping (views, R-CLOSE-3) or the owned bytes
  std::uint32_t seq_ = 0;
};

// A received message, zero-copy and read-only: the reply on the requester (valid until its next
// send, R-FIELD-11), the request on the responder (valid until its reply). It keeps the mapping
// alive, so it never dangles, even after close (R-CLOSE-3).
class MessageView : public FieldSet {
 public:
  template <class T>
  FieldSpan<const T> field(std::string_view name) const {
    return span<const T>(name);
  }
};

// An owning copy of a message (receive_copy, call).
class Message : public FieldSet {
 public:
  template <class T>
  FieldSpan<const T> field(std::string_view name) const {
    return span<const T>(name);
  }
};

// Writable zero-copy views of the fields of a message being prepared (request_buffer,
// reply_buffer), with the shapes the peer will see.
class MessageBuffer : public FieldSet {
 public:
  template <class T>
  FieldSpan<T> field(std::string_view name) const {
    return span<T>(name);
  }
  RawField raw(std::string_view name) const;
};

// A request taken by a MessageResponder: read-only views of its fields, and the calls that answer
// it (R-FIELD-6): reply_field / reply_buffer (zero-copy), then reply(); reply(fields) (copies);
// fail(code) (an error reply, R-MSG-2). Every call fails with OUT_OF_TURN once it is answered.
class MessageRequest {
 public:
  MessageRequest() = default;
  const MessageView& request() const noexcept { return request_; }
  std::uint32_t seq() const noexcept { return seq_; }
  bool answered() const noexcept { return answered_; }

  // A writable view of one reply field with `shape` (S1, S5-S7; R-FIELD-12 for T); the shape of a
  // field with only fixed extents may be omitted. reply() then publishes it with that shape.
  template <class T>
  FieldSpan<T> reply_field(std::string_view name, const Shape& shape) {
    return typed<T>(prepare_field(name, &shape, dtype_of_v<T>));
  }
  template <class T>
  FieldSpan<T> reply_field(std::string_view name) {
    return typed<T>(prepare_field(name, nullptr, dtype_of_v<T>));
  }
  RawField reply_field(std::string_view name, const Shape& shape);
  RawField reply_field(std::string_view name);
  // Writable views of every reply field (S1-S3, S5-S7): fields with only fixed extents and
  // in-place fields may be omitted (declared shape; the target's shape as taken).
  MessageBuffer reply_buffer(std::initializer_list<NamedShape> shapes = {});
  MessageBuffer reply_buffer(const std::vector<NamedShape>& shapes);
  // T3: copies the given fields in (S1-S7) and publishes every reply field; in-place fields and
  // fields prepared by reply_field / reply_buffer may be omitted.
  void reply(std::initializer_list<NamedField> fields = {});
  void reply(const std::vector<NamedField>& fields);
  // An error reply with `code` (R-MSG-2); it writes no part of the reply area (R-FIELD-10).
  void fail(ErrorCode code);

 private:
  friend class MessageResponder;
  RawField prepare_field(std::string_view name, const Shape* shape, std::optional<DType> element);
  void reply_fields(const NamedField* fields, std::size_t count);
  MessageBuffer buffer(const NamedShape* shapes, std::size_t count);
  template <class T>
  static FieldSpan<T> typed(const RawField& f) {
    return FieldSpan<T>(static_cast<T*>(f.data), static_cast<std::size_t>(f.nbytes / sizeof(T)),
                        f.shape);
  }
  void check_held() const;

  std::shared_ptr<detail::RoundEngine> core_;
  MessageView request_;
  std::uint32_t seq_ = 0;
  bool answered_ = false;
};

// The requester role of a v2 segment.
class MessageRequester : public ChannelHandle {
 public:
  // R-SCHEMA-3, R-SCHEMA-8: checks the name, then the schemas (C1-C9), then creates.
  static MessageRequester create(std::string_view name, const Schema& request, const Schema& reply,
                                 const Options& opt = {});
  // R-SCHEMA-10: attach, optionally stating the request and/or reply schema expected.
  static MessageRequester attach(std::string_view name, const Options& opt = {});
  static MessageRequester attach(std::string_view name, const std::optional<Schema>& request,
                                 const std::optional<Schema>& reply, const Options& opt = {});

  // T1 (R-FIELD-4): copies every request field in and publishes the request; returns its seq.
  std::uint32_t send(std::initializer_list<NamedField> fields);
  std::uint32_t send(const std::vector<NamedField>& fields);
  // Zero-copy (R-FIELD-5): writable views of every request field with these shapes (fields with
  // only fixed extents may be omitted), then send_in_place() publishes them.
  MessageBuffer request_buffer(std::initializer_list<NamedShape> shapes = {});
  MessageBuffer request_buffer(const std::vector<NamedShape>& shapes);
  std::uint32_t send_in_place();

  // T4 (R-FIELD-8, R-FIELD-9): the reply, zero-copy and read-only, valid until the next send.
  MessageView receive();
  MessageView receive(std::chrono::nanoseconds timeout);
  MessageView try_receive() { return receive(std::chrono::nanoseconds::zero()); }
  Message receive_copy();
  Message receive_copy(std::chrono::nanoseconds timeout);
  // send + receive_copy.
  Message call(std::initializer_list<NamedField> fields);
  Message call(const std::vector<NamedField>& fields);

  std::optional<std::uint32_t> pending() const;
  Schema request_schema() const;  // the segment's schemas
  Schema reply_schema() const;
  const SchemaLayout& schemas() const;  // ... as records, with offsets (R-SCHEMA-7)

 private:
  using ChannelHandle::ChannelHandle;
  std::uint32_t send_fields(const NamedField* fields, std::size_t count);
  MessageBuffer buffer(const NamedShape* shapes, std::size_t count);
};

// The responder role of a v2 segment.
class MessageResponder : public ChannelHandle {
 public:
  static MessageResponder create(std::string_view name, const Schema& request, const Schema& reply,
                                 const Options& opt = {});
  static MessageResponder attach(std::string_view name, const Options& opt = {});
  static MessageResponder attach(std::string_view name, const std::optional<Schema>& request,
                                 const std::optional<Schema>& reply, const Options& opt = {});

  // T2: waits for a request and validates its table (R-FIELD-8); an invalid one is answered with
  // an error reply of its error and raised (R-FIELD-9).
  MessageRequest take();
  MessageRequest take(std::chrono::nanoseconds timeout);
  MessageRequest try_take() { return take(std::chrono::nanoseconds::zero()); }
  // Takes and answers requests until the requester closes (R-LIVE-4). The library replies after
  // the handler (reply() with what it prepared); a handler that throws answers with an error
  // reply (its shmbridge code, else HANDLER_FAILED, R-MSG-3) and the exception propagates.
  void serve(const std::function<void(MessageRequest&)>& handler);
  // Low level (stateful tests): answer the held request.
  void reply();
  void fail(ErrorCode code);
  std::optional<std::uint32_t> held() const;

  Schema request_schema() const;
  Schema reply_schema() const;
  const SchemaLayout& schemas() const;

 private:
  using ChannelHandle::ChannelHandle;
};

}  // namespace shmbridge
