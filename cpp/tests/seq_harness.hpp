// The harness of spec/vectors/README.md "sequences.json": one fresh segment created by a
// requester handle (keep_segment, D9), one responder handle attached, every op with timeout 0.
// Used by test_sequences.cpp (vector replay) and test_stateful.cpp (RapidCheck SUT).
#pragma once

#include <cmath>
#include <cstring>
#include <optional>
#include <vector>

#include "test_util.hpp"

namespace shmbridge::test {

inline void fill(DType dtype, void* data, std::size_t nbytes, double value) {
  const std::size_t n = itemsize(dtype) ? nbytes / itemsize(dtype) : 0;
  switch (dtype) {
    case DType::float32:
      for (std::size_t i = 0; i < n; ++i) static_cast<float*>(data)[i] = static_cast<float>(value);
      break;
    case DType::float64:
      for (std::size_t i = 0; i < n; ++i) static_cast<double*>(data)[i] = value;
      break;
    case DType::int32:
      for (std::size_t i = 0; i < n; ++i)
        static_cast<std::int32_t*>(data)[i] = static_cast<std::int32_t>(value);
      break;
    case DType::uint8:
      for (std::size_t i = 0; i < n; ++i)
        static_cast<std::uint8_t*>(data)[i] = static_cast<std::uint8_t>(value);
      break;
    default:
      throw std::runtime_error("harness: unsupported dtype");
  }
}

inline double element(DType dtype, const void* data, std::size_t i) {
  switch (dtype) {
    case DType::float32:
      return static_cast<const float*>(data)[i];
    case DType::float64:
      return static_cast<const double*>(data)[i];
    case DType::int32:
      return static_cast<const std::int32_t*>(data)[i];
    case DType::uint8:
      return static_cast<const std::uint8_t*>(data)[i];
    default:
      throw std::runtime_error("harness: unsupported dtype");
  }
}

// True if every element equals `value`.
inline bool all_equal(DType dtype, const void* data, std::size_t nbytes, double value) {
  const std::size_t n = nbytes / itemsize(dtype);
  for (std::size_t i = 0; i < n; ++i) {
    if (element(dtype, data, i) != value) return false;
  }
  return true;
}

inline void add_one(DType dtype, void* data, std::size_t nbytes) {
  const std::size_t n = nbytes / itemsize(dtype);
  std::vector<std::uint8_t> tmp(itemsize(dtype));
  for (std::size_t i = 0; i < n; ++i) {
    fill(dtype, tmp.data(), tmp.size(), element(dtype, data, i) + 1);
    std::memcpy(static_cast<std::uint8_t*>(data) + i * tmp.size(), tmp.data(), tmp.size());
  }
}

// The handles of one protocol version, as the harness uses them. v2 runs the same sequences with
// a v1-like schema pair ({array: dtype shape} -> {array: in place onto 'array'}), so one state
// machine answers both (R-VER-1).
struct V1Proto {
  using Requester = shmbridge::Requester;
  using Responder = shmbridge::Responder;
  static Requester create(const std::string& n, DType d, const Shape& s, const Options& o) {
    return Requester::create(n, d, s, o);
  }
  static Requester attach_requester(const std::string& n, const Options& o) {
    return Requester::attach(n, o);
  }
  static Responder attach_responder(const std::string& n, const Options& o) {
    return Responder::attach(n, o);
  }
  static void send(Requester& r, const void* data, DType d, const Shape& s) { r.send(data, d, s); }
  static void take(Responder& r) { r.try_take(); }
  // The reply's bytes (a view valid until the next send).
  static std::pair<const void*, std::uint64_t> receive(Requester& r) {
    const ArrayView v = r.try_receive();
    return {v.data(), v.nbytes()};
  }
  static std::uint8_t* payload(const Segment& raw) { return raw.base() + layout::kOffPayload; }
};

struct V2Proto {
  using Requester = MessageRequester;
  using Responder = MessageResponder;
  static Requester create(const std::string& n, DType d, const Shape& s, const Options& o) {
    std::vector<Extent> extents(s.begin(), s.end());
    return Requester::create(n, Schema{}.field("array", d, extents),
                             Schema{}.inplace("array", "array"), o);
  }
  static Requester attach_requester(const std::string& n, const Options& o) {
    return Requester::attach(n, o);
  }
  static Responder attach_responder(const std::string& n, const Options& o) {
    return Responder::attach(n, o);
  }
  static void send(Requester& r, const void* data, DType d, const Shape& s) {
    r.send({{"array", FieldRef(data, d, s)}});
  }
  static void take(Responder& r) { r.try_take(); }
  static std::pair<const void*, std::uint64_t> receive(Requester& r) {
    const MessageView v = r.try_receive();  // the mapping outlives the view (R-CLOSE-3)
    return {v.ref("array").data, v.nbytes("array")};
  }
  static std::uint8_t* payload(const Segment& raw) {
    return raw.base() + validate_header_v2(raw.base(), raw.size()).request.at(0).offset;
  }
};

template <class Proto>
class BasicHarness {
 public:
  BasicHarness(DType dtype, const Shape& shape, std::uint32_t initial_seq = 0)
      : name_("seq"), dtype_(dtype), shape_(shape) {
    opt_.timeout = std::chrono::nanoseconds::zero();
    opt_.spin = std::chrono::nanoseconds::zero();
    opt_.keep_segment = true;
    Options create_opt = opt_;
    create_opt.timeout = std::chrono::seconds(1);
    req_.emplace(Proto::create(name_.str(), dtype, shape, create_opt));
    raw_ = Segment::attach(name_.str(), std::chrono::seconds(1));  // for poke_word and reads
    payload_ = Proto::payload(raw_);
    if (initial_seq != 0) {
      // D11: the requester must observe the pre-set seq; re-attach it after poking.
      poke_word(make_word(Phase::IDLE, initial_seq));
      req_->close();
      req_.emplace(Proto::attach_requester(name_.str(), opt_));
    }
    rsp_.emplace(Proto::attach_responder(name_.str(), opt_));
    std::uint64_t n = 0;
    shape.element_count(n);
    buffer_.resize(static_cast<std::size_t>(n * itemsize(dtype)));
  }
  ~BasicHarness() {
    req_.reset();
    rsp_.reset();
    raw_.reset();
  }

  std::uint32_t word() const { return atomic_u32(raw_.base() + layout::kOffWord).load(); }
  void poke_word(std::uint32_t value) {
    atomic_u32(raw_.base() + layout::kOffWord).store(value, std::memory_order_seq_cst);
  }

  std::size_t nbytes() const { return buffer_.size(); }

  // Each op returns ok or the error code; payload checks go to `problems`.
  ErrorCode send(double value) {
    fill(dtype_, buffer_.data(), buffer_.size(), value);
    const ErrorCode c = code_of([&] { Proto::send(*req_, buffer_.data(), dtype_, shape_); });
    if (c == ErrorCode::ok) sent_ = value;
    return c;
  }
  ErrorCode take() {
    const ErrorCode c = code_of([&] { Proto::take(*rsp_); });
    if (c == ErrorCode::ok) computed_for_.reset();
    if (c == ErrorCode::ok && !all_equal(dtype_, payload(), nbytes(), sent_)) {
      problems_.push_back("take: payload differs from the value sent");
    }
    return c;
  }
  ErrorCode reply() {
    // Compute the reply once per held request, even if a rejected reply is retried.
    if (rsp_->is_open() && rsp_->held() && computed_for_ != rsp_->held()) {
      add_one(dtype_, payload(), nbytes());
      computed_for_ = rsp_->held();
    }
    return code_of([&] { rsp_->reply(); });
  }
  ErrorCode reply_error(ErrorCode code) {
    return code_of([&] { rsp_->fail(code); });
  }
  ErrorCode receive() {
    std::pair<const void*, std::uint64_t> v{nullptr, 0};
    const ErrorCode c = code_of([&] { v = Proto::receive(*req_); });
    if (c == ErrorCode::ok) {
      if (v.second != nbytes() || !all_equal(dtype_, v.first, v.second, sent_ + 1)) {
        problems_.push_back("receive: reply differs from the value sent + 1");
      }
    }
    return c;
  }
  ErrorCode close(Actor a) {
    return code_of([&] {
      if (a == Actor::requester) {
        req_->close();
      } else {
        rsp_->close();
      }
    });
  }
  // D10: on failure the existing handle stays.
  ErrorCode attach(Actor a) {
    return code_of([&] {
      if (a == Actor::requester) {
        auto h = Proto::attach_requester(name_.str(), opt_);
        req_.emplace(std::move(h));
      } else {
        auto h = Proto::attach_responder(name_.str(), opt_);
        rsp_.emplace(std::move(h));
      }
    });
  }

  typename Proto::Requester& requester() { return *req_; }
  typename Proto::Responder& responder() { return *rsp_; }
  std::vector<std::string>& problems() { return problems_; }

 private:
  void* payload() const { return payload_; }

  UniqueName name_;
  DType dtype_;
  Shape shape_;
  Options opt_;
  std::optional<typename Proto::Requester> req_;
  std::optional<typename Proto::Responder> rsp_;
  Segment raw_;
  std::uint8_t* payload_ = nullptr;
  std::vector<std::uint8_t> buffer_;
  double sent_ = 0;
  std::optional<std::uint32_t> computed_for_;
  std::vector<std::string> problems_;
};

using Harness = BasicHarness<V1Proto>;
using HarnessV2 = BasicHarness<V2Proto>;

}  // namespace shmbridge::test
