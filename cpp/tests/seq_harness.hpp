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

class Harness {
 public:
  Harness(DType dtype, const Shape& shape, std::uint32_t initial_seq = 0)
      : name_("seq"), dtype_(dtype), shape_(shape) {
    opt_.timeout = std::chrono::nanoseconds::zero();
    opt_.spin = std::chrono::nanoseconds::zero();
    opt_.keep_segment = true;
    Options create_opt = opt_;
    create_opt.timeout = std::chrono::seconds(1);
    req_.emplace(Requester::create(name_.str(), dtype, shape, create_opt));
    raw_ = Segment::attach(name_.str(), std::chrono::seconds(1));  // for poke_word and reads
    if (initial_seq != 0) {
      // D11: the requester must observe the pre-set seq; re-attach it after poking.
      poke_word(make_word(Phase::IDLE, initial_seq));
      req_->close();
      req_.emplace(Requester::attach(name_.str(), opt_));
    }
    rsp_.emplace(Responder::attach(name_.str(), opt_));
    buffer_.resize(static_cast<std::size_t>(req_->capacity()));
  }
  ~Harness() {
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
    const ErrorCode c = code_of([&] { req_->send(buffer_.data(), dtype_, shape_); });
    if (c == ErrorCode::ok) sent_ = value;
    return c;
  }
  ErrorCode take() {
    const ErrorCode c = code_of([&] { rsp_->try_take(); });
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
    ArrayView v;
    const ErrorCode c = code_of([&] { v = req_->try_receive(); });
    if (c == ErrorCode::ok) {
      if (v.nbytes() != nbytes() || !all_equal(dtype_, v.data(), v.nbytes(), sent_ + 1)) {
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
        auto h = Requester::attach(name_.str(), opt_);
        req_.emplace(std::move(h));
      } else {
        auto h = Responder::attach(name_.str(), opt_);
        rsp_.emplace(std::move(h));
      }
    });
  }

  Requester& requester() { return *req_; }
  Responder& responder() { return *rsp_; }
  std::vector<std::string>& problems() { return problems_; }

 private:
  void* payload() const { return raw_.base() + layout::kOffPayload; }

  UniqueName name_;
  DType dtype_;
  Shape shape_;
  Options opt_;
  std::optional<Requester> req_;
  std::optional<Responder> rsp_;
  Segment raw_;
  std::vector<std::uint8_t> buffer_;
  double sent_ = 0;
  std::optional<std::uint32_t> computed_for_;
  std::vector<std::string> problems_;
};

}  // namespace shmbridge::test
