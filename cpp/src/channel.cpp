#include "shmbridge/channel.hpp"

#include <cstring>
#include <utility>

#include "round_engine.hpp"
#include "shmbridge/layout_v2.hpp"

namespace shmbridge {

using namespace layout;
using std::chrono::nanoseconds;

namespace detail {

void check_dtype(DType have, DType want) {
  if (have != want) {
    raise(ErrorCode::DTYPE_MISMATCH, std::string("dtype ") + dtype_name(have),
          std::string("element type of dtype ") + dtype_name(want),
          std::string("access the array as ") + dtype_name(have));
  }
}

namespace {

// The v1 message: one array of the declared dtype and shape in the payload, described by the
// `message` descriptor (R-MSG-1, R-MSG-4, R-STATE-9).
class V1Format final : public MessageFormat {
 public:
  explicit V1Format(std::uint8_t* base) : base_(base), payload_(base + kOffPayload) {
    const Header h = decode_header(base_);
    capacity_ = h.capacity;
    declared_ = h.declared;
    dtype_ = static_cast<DType>(declared_.dtype);
    shape_ = declared_.shape_of();
    encode_descriptor(declared_, declared_bytes_.data());
  }

  DType dtype() const noexcept { return dtype_; }
  const Shape& shape() const noexcept { return shape_; }
  std::uint64_t nbytes() const noexcept { return declared_.nbytes; }
  void* payload() const noexcept { return payload_; }

  // R-MSG-4: every error reply leaves message = declared (a rejected request's descriptor may
  // differ); a successful reply follows a take that found it equal.
  void before_error_reply() noexcept override { publish_message(); }

  // Stores only a changed descriptor: in steady state the message line then stays cached by
  // both peers instead of changing owner every round.
  void publish_message() noexcept {
    if (std::memcmp(base_ + kOffMessage, declared_bytes_.data(), kDescSize) != 0) {
      std::memcpy(base_ + kOffMessage, declared_bytes_.data(), kDescSize);
    }
  }

  // ---- R-MSG-1: the message descriptor must equal declared ----
  ErrorCode check_message(std::string* why) const {
    if (std::memcmp(base_ + kOffMessage, declared_bytes_.data(), kDescSize) == 0) {
      return ErrorCode::ok;
    }
    const Descriptor m = decode_descriptor(base_ + kOffMessage);
    try {
      validate_descriptor(m, capacity_, "message");
    } catch (const Error& e) {
      *why = e.what();
      return e.code();
    }
    if (m.dtype != declared_.dtype) {
      *why = std::string("expected dtype ") + dtype_name(dtype_) + ", found " +
             dtype_name(static_cast<DType>(m.dtype));
      return ErrorCode::DTYPE_MISMATCH;
    }
    *why = "expected shape " + shape_.to_string() + ", found " + m.shape_of().to_string();
    return ErrorCode::SHAPE_MISMATCH;
  }

  // R-STATE-9: the array against declared and capacity.
  void check_array(DType dtype, const Shape& shape) const {
    if (dtype != dtype_) {
      raise(ErrorCode::DTYPE_MISMATCH, std::string("dtype ") + dtype_name(dtype_) + " (declared)",
            dtype_name(dtype), "convert the array to the declared dtype");
    }
    if (shape != shape_) {
      raise(ErrorCode::SHAPE_MISMATCH, "shape " + shape_.to_string() + " (declared)",
            shape.to_string(), "reshape the array to the declared shape");
    }
    if (declared_.nbytes > capacity_) {
      raise(ErrorCode::CAPACITY_EXCEEDED, "at most " + std::to_string(capacity_) + " bytes",
            std::to_string(declared_.nbytes) + " bytes", "create a larger segment");
    }
  }

 private:
  std::uint8_t* base_;
  std::uint8_t* payload_;
  std::uint64_t capacity_ = 0;
  Descriptor declared_;
  std::array<std::uint8_t, kDescSize> declared_bytes_{};
  DType dtype_ = DType::uint8;
  Shape shape_;
};

V1Format& v1(const RoundEngine& c) { return c.format<V1Format>(); }

std::unique_ptr<MessageFormat> make_v1(const Segment& seg) {
  return std::make_unique<V1Format>(seg.base());
}

// T1 with the v1 message (R-STATE-9: checked by the caller before).
void send_v1(RoundEngine& c, const void* src) {
  V1Format& f = v1(c);
  c.send([&] {
    if (src) std::memcpy(f.payload(), src, static_cast<std::size_t>(f.nbytes()));
    f.publish_message();
  });
}

// T4, then R-MSG-5 (2): a successful reply's descriptor must equal declared.
std::uint32_t receive_v1(RoundEngine& c, nanoseconds timeout) {
  const std::uint32_t seq = c.receive(timeout);
  std::string why;
  const ErrorCode m = v1(c).check_message(&why);
  if (m != ErrorCode::ok) {
    throw Error(m, "reply #" + std::to_string(seq) + ": " + why + "; restart both peers")
        .set_reply_code(0);
  }
  return seq;
}

// T2, then R-MSG-1: a request whose descriptor is invalid or differs is answered with an error
// reply (R-MSG-2) and raised.
std::uint32_t take_v1(RoundEngine& c, nanoseconds timeout) {
  const std::uint32_t seq = c.take(timeout);
  std::string why;
  const ErrorCode m = v1(c).check_message(&why);
  if (m != ErrorCode::ok) {
    c.reject(Error(m, "request #" + std::to_string(seq) + " rejected: " + why +
                          "; the requester must send the declared dtype and shape"));
  }
  return seq;
}

std::shared_ptr<RoundEngine> create_core(Actor role, std::string_view name, DType dtype,
                                         const Shape& shape, const Options& opt) {
  check_options(opt, /*capacity_allowed=*/true);
  Header h = Header::fresh(dtype, shape, opt.capacity);
  h.magic = {};  // published last (R-SEG-6)
  return create_engine(
      role, name, h.segment_size, [&h](std::uint8_t* base) { encode_header(h, base); }, make_v1,
      opt);
}

std::shared_ptr<RoundEngine> attach_core(Actor role, std::string_view name, const DType* dtype,
                                         const Shape* shape, const Options& opt) {
  check_options(opt);
  if (dtype && !is_dtype_code(static_cast<std::uint32_t>(*dtype))) {
    raise(ErrorCode::DTYPE_MISMATCH, "a dtype code 1..14",
          "code " + std::to_string(static_cast<std::uint32_t>(*dtype)),
          "use one of the dtypes of spec/dtypes.json");
  }
  // R-VER-3: the v1 API attaches to v1 segments only.
  auto check = [](const std::uint8_t* data, std::uint64_t size, const std::string& canonical) {
    validate_header_for_api(data, size, 1, canonical);
  };
  // R-LAYOUT-7: compare with declared before touching the segment.
  auto expect = [&](MessageFormat& f) {
    const V1Format& fmt = static_cast<V1Format&>(f);
    if (dtype && *dtype != fmt.dtype()) {
      raise(ErrorCode::DTYPE_MISMATCH, std::string("dtype ") + dtype_name(*dtype),
            std::string("dtype ") + dtype_name(fmt.dtype()) + " declared by the segment",
            "attach with the creator's dtype");
    }
    if (shape && *shape != fmt.shape()) {
      raise(ErrorCode::SHAPE_MISMATCH, "shape " + shape->to_string(),
            "shape " + fmt.shape().to_string() + " declared by the segment",
            "attach with the creator's shape");
    }
  };
  return attach_engine(role, name, check, make_v1, expect, opt);
}

}  // namespace
}  // namespace detail

// ---- ChannelHandle / Handle -------------------------------------------------------------------

ChannelHandle::ChannelHandle(std::shared_ptr<detail::RoundEngine> core) noexcept
    : core_(std::move(core)) {}
ChannelHandle::ChannelHandle(ChannelHandle&&) noexcept = default;
ChannelHandle& ChannelHandle::operator=(ChannelHandle&& other) noexcept {
  if (this != &other) {
    if (core_) core_->close_noexcept();
    core_ = std::move(other.core_);
  }
  return *this;
}
ChannelHandle::~ChannelHandle() {
  if (core_) core_->close_noexcept();
}

detail::RoundEngine& ChannelHandle::core() const {
  if (!core_) {
    raise(ErrorCode::OUT_OF_TURN, "a handle", "a moved-from handle",
          "use the handle it was moved to");
  }
  return *core_;
}

std::uint32_t ChannelHandle::word() const { return core().load(); }
std::uint64_t ChannelHandle::capacity() const { return core().capacity(); }
const std::string& ChannelHandle::name() const { return core().segment().name(); }
bool ChannelHandle::is_creator() const { return core().segment().is_creator(); }
bool ChannelHandle::name_removed() const { return core().name_removed(); }
bool ChannelHandle::is_open() const noexcept { return core_ && core_->open(); }
std::uint64_t ChannelHandle::segment_size() const {
  core().ensure_open();
  return core().segment().size();
}
std::vector<std::uint8_t> ChannelHandle::segment_bytes(std::uint64_t offset,
                                                       std::uint64_t n) const {
  const std::uint64_t size = segment_size();
  if (offset > size || n > size - offset) {
    raise(ErrorCode::INVALID_ARGUMENT,
          "segment_bytes within the mapping of " + std::to_string(size) + " bytes",
          std::to_string(n) + " bytes at offset " + std::to_string(offset),
          "read inside [0, segment_size())");
  }
  const std::uint8_t* p = core().base() + offset;
  return std::vector<std::uint8_t>(p, p + n);
}
void ChannelHandle::close() {
  if (core_) core_->close();
}

DType Handle::dtype() const { return detail::v1(core()).dtype(); }
const Shape& Handle::shape() const { return detail::v1(core()).shape(); }

// ---- Requester -----------------------------------------------------------------------------

Requester Requester::create(std::string_view name, DType dtype, const Shape& shape,
                            const Options& opt) {
  return Requester(detail::create_core(Actor::requester, name, dtype, shape, opt));
}
Requester Requester::attach(std::string_view name, const Options& opt) {
  return Requester(detail::attach_core(Actor::requester, name, nullptr, nullptr, opt));
}
Requester Requester::attach(std::string_view name, DType dtype, const Shape& shape,
                            const Options& opt) {
  return Requester(detail::attach_core(Actor::requester, name, &dtype, &shape, opt));
}

void Requester::send(const void* data, DType dtype, const Shape& shape) {
  auto& c = core();
  c.ensure_open();
  const auto& f = detail::v1(c);
  f.check_array(dtype, shape);  // R-STATE-9 first
  if (!data && f.nbytes() != 0) {
    raise(ErrorCode::INVALID_ARGUMENT, "a data pointer", "nullptr", "pass the array's data");
  }
  detail::send_v1(c, data ? data : f.payload());
}

void* Requester::request_buffer(DType dtype) {
  auto& c = core();
  c.ensure_open();
  detail::check_dtype(detail::v1(c).dtype(), dtype);
  c.require_send_allowed();
  return detail::v1(c).payload();
}

void Requester::send_in_place() { detail::send_v1(core(), nullptr); }

ArrayView Requester::receive() { return receive(core().options().timeout); }

ArrayView Requester::receive(std::chrono::nanoseconds timeout) {
  auto& c = core();
  ArrayView v;
  v.seq_ = detail::receive_v1(c, timeout);
  const auto& f = detail::v1(c);
  v.data_ = f.payload();
  v.dtype_ = f.dtype();
  v.shape_ = f.shape();
  v.nbytes_ = f.nbytes();
  v.keep_ = c.mapping();
  return v;
}

void Requester::receive(void* out, DType dtype, const Shape& shape) {
  auto& c = core();
  c.ensure_open();
  const auto& f = detail::v1(c);
  f.check_array(dtype, shape);
  detail::receive_v1(c, c.options().timeout);
  // An empty array may come with out == nullptr: memcpy(nullptr, p, 0) is undefined (UBSan).
  if (f.nbytes()) std::memcpy(out, f.payload(), static_cast<std::size_t>(f.nbytes()));
}

std::optional<std::uint32_t> Requester::pending() const { return core().pending(); }

// ---- Responder / Request -------------------------------------------------------------------

Responder Responder::create(std::string_view name, DType dtype, const Shape& shape,
                            const Options& opt) {
  return Responder(detail::create_core(Actor::responder, name, dtype, shape, opt));
}
Responder Responder::attach(std::string_view name, const Options& opt) {
  return Responder(detail::attach_core(Actor::responder, name, nullptr, nullptr, opt));
}
Responder Responder::attach(std::string_view name, DType dtype, const Shape& shape,
                            const Options& opt) {
  return Responder(detail::attach_core(Actor::responder, name, &dtype, &shape, opt));
}

Request Responder::take() { return take(core().options().timeout); }

Request Responder::take(std::chrono::nanoseconds timeout) {
  auto& c = core();
  Request r;
  r.seq_ = detail::take_v1(c, timeout);
  r.core_ = core_;
  const auto& f = detail::v1(c);
  r.data_ = f.payload();
  r.dtype_ = f.dtype();
  r.shape_ = f.shape();
  r.nbytes_ = f.nbytes();
  return r;
}

void Responder::reply() { core().answer(0); }
void Responder::fail(ErrorCode code) { core().answer(static_cast<std::uint32_t>(code)); }
std::optional<std::uint32_t> Responder::held() const { return core().held(); }

void Responder::serve(const std::function<void(Request&)>& handler) {
  detail::serve_loop<Request>([this] { return take(); }, handler);
}

namespace {
void check_request(const std::shared_ptr<detail::RoundEngine>& core, bool answered,
                   std::uint32_t seq) {
  detail::RoundEngine::require_held(core.get(), answered, seq, "Request");
}
}  // namespace

void Request::reply() {
  check_request(core_, answered_, seq_);
  core_->answer(0);
  answered_ = true;
}

void Request::reply(const void* src) {
  check_request(core_, answered_, seq_);
  core_->ensure_open();
  if (src != data_ && nbytes_) std::memcpy(data_, src, static_cast<std::size_t>(nbytes_));
  reply();
}

void Request::fail(ErrorCode code) {
  check_request(core_, answered_, seq_);
  core_->answer_error(code);
  answered_ = true;
}

}  // namespace shmbridge
