#include "local.hpp"

#include <cstring>
#include <thread>

#include "link.hpp"

#include "shmbridge/layout.hpp"
#include "shmbridge/message_table.hpp"

namespace shmbridge::relay {
namespace {

std::string describe(std::uint32_t dtype, const Shape& shape) {
  return std::string(is_dtype_code(dtype) ? dtype_name(static_cast<DType>(dtype)) : "?") + " " +
         shape.to_string();
}

[[noreturn]] void fail(ErrorCode code, const std::string& what) {
  throw Error(code, std::string(error_name(code)) + ": " + what);
}

}  // namespace

Shape shape_of(const Desc& d) { return Shape(d.shape.data(), d.ndim); }

Desc desc_of(DType dtype, const Shape& shape) {
  return make_desc(static_cast<std::uint32_t>(dtype), shape.begin(),
                   static_cast<std::uint32_t>(shape.ndim()));
}

void field_names(const Declaration& d, std::vector<std::string>& request,
                 std::vector<std::string>& reply) {
  request.clear();
  reply.clear();
  if (!d.v2) return;
  for (const auto& r : d.v2->request) request.push_back(r.name);
  for (const auto& r : d.v2->reply) reply.push_back(r.name);
}

// ---------------------------------------------------------------------------- declarations

Declaration Declaration::of_segment(const ChannelHandle& h) {
  Declaration d;
  const std::vector<std::uint8_t> head = h.segment_bytes(0, layout::kHeaderSize);
  const std::uint16_t major = layout::load_u16(head.data() + 8);
  if (major == 1) {
    Header hd = decode_header(head.data());
    hd.word = hd.waiters = hd.reply_code = 0;
    hd.requester = hd.responder = hd.creator = Slot{};
    hd.message = hd.declared;
    d.protocol = 1;
    d.raw.resize(layout::kHeaderSize);
    encode_header(hd, d.raw.data());
    d.v1 = hd;
  } else {
    const std::uint32_t hsize = layout::load_u32(head.data() + 12);
    const std::vector<std::uint8_t> all = h.segment_bytes(0, hsize);
    const HeaderV2 got = validate_header_v2(all.data(), h.segment_size());
    HeaderV2 clean = HeaderV2::fresh(got.schemas());
    d.protocol = 2;
    d.raw.resize(clean.header_size);
    encode_header_v2(clean, d.raw.data());
    d.v2 = clean;
  }
  return d;
}

Declaration Declaration::decode(const Bytes& frame) {
  if (frame.size < layout::kHeaderSize) {
    fail(ErrorCode::CORRUPT_HEADER, "HELLO declaration: " + std::to_string(frame.size) +
                                        " bytes, expected a segment header (>= 512 bytes)");
  }
  const std::uint32_t hsize = layout::load_u32(frame.data + 12);
  const std::uint64_t seg = layout::load_u64(frame.data + 24);
  if (hsize != frame.size) {
    fail(ErrorCode::CORRUPT_HEADER, "HELLO declaration: " + std::to_string(frame.size) +
                                        " bytes, its header_size says " + std::to_string(hsize));
  }
  // The validators read nothing beyond header_size; the frame's segment_size is the mapping size.
  const std::uint64_t mapping = seg > frame.size ? seg : frame.size;
  Declaration d;
  d.raw.assign(frame.data, frame.data + frame.size);
  if (layout::load_u16(frame.data + 8) == 2) {
    d.protocol = 2;
    d.v2 = validate_header_v2(frame.data, mapping);
  } else {
    validate_header(frame.data, mapping);
    d.protocol = 1;
    d.v1 = decode_header(frame.data);
  }
  return d;
}

void Declaration::check_same(const Declaration& far, const std::string& near_name) const {
  if (protocol != far.protocol) {
    fail(ErrorCode::VERSION_MISMATCH,
         "segment '" + near_name + "' uses protocol v" + std::to_string(protocol) +
             ", the far segment v" + std::to_string(far.protocol) +
             "; both ends of a relay must use the same protocol version");
  }
  if (v1) {
    const Descriptor &a = v1->declared, &b = far.v1->declared;
    const std::string both = "segment '" + near_name + "' declares " +
                             describe(a.dtype, a.shape_of()) + ", the far segment " +
                             describe(b.dtype, b.shape_of());
    if (a.dtype != b.dtype) fail(ErrorCode::DTYPE_MISMATCH, both + "; declare the same dtype");
    if (a.shape_of() != b.shape_of()) {
      fail(ErrorCode::SHAPE_MISMATCH, both + "; declare the same shape at both ends");
    }
    return;
  }
  const SchemaLayout mine = v2->schemas(), theirs = far.v2->schemas();
  // X1-X6 of R-SCHEMA-10 with the far segment's schemas as the expectation.
  const Schema req = theirs.request_schema(), rep = theirs.reply_schema();
  check_expectations(mine, &req, &rep);
}

void check_descs(const Declaration& decl, const Desc* descs, std::size_t n, bool reply_side) {
  const char* side = reply_side ? "reply" : "request";
  if (decl.v1) {
    if (n != 1) {
      fail(ErrorCode::SHAPE_MISMATCH, std::string(side) + ": " + std::to_string(n) +
                                          " descriptors, protocol v1 carries exactly 1");
    }
    const Descriptor& want = decl.v1->declared;
    const Desc& d = descs[0];
    const Shape got = shape_of(d);
    if (d.dtype == want.dtype && got == want.shape_of()) return;
    const std::string text = std::string(side) + ": message is " + describe(d.dtype, got) +
                             ", expected " + describe(want.dtype, want.shape_of());
    fail(d.dtype != want.dtype ? ErrorCode::DTYPE_MISMATCH : ErrorCode::SHAPE_MISMATCH, text);
  }
  const std::vector<FieldRecord>& records = reply_side ? decl.v2->reply : decl.v2->request;
  if (n != records.size()) {
    fail(ErrorCode::SCHEMA_MISMATCH, std::string(side) + ": " + std::to_string(n) +
                                         " fields on the wire, the schema has " +
                                         std::to_string(records.size()));
  }
  std::uint8_t table[kDescSize * kMaxFields];
  for (std::size_t i = 0; i < n; ++i) {
    Descriptor e;
    e.dtype = descs[i].dtype;
    e.ndim = descs[i].ndim;
    e.shape = descs[i].shape;
    e.nbytes = descs[i].nbytes;
    encode_descriptor(e, table + kDescSize * i);
  }
  (void)validate_table(records, table);  // E1-E8 per field in schema order (E1-E4 passed W10)
}

// ---------------------------------------------------------------------------- far end

void FarLocal::opened(bool created) {
  created_ = created;
  decl_ = declaration_of(v1_, v2_);
  field_names(*decl_, request_names_, reply_names_);
}

void FarLocal::create_v1(DType dtype, const Shape& shape) {
  v1_.emplace(Requester::create(name_, dtype, shape, opts_));
  opened(true);
}

void FarLocal::create_v2(const Schema& request, const Schema& reply) {
  v2_.emplace(MessageRequester::create(name_, request, reply, opts_));
  opened(true);
}

void FarLocal::attach(int protocol) {
  attach_either(name_, protocol, opts_, v1_, v2_);
  opened(false);
}

void FarLocal::start(const Desc* descs, const zmq::message_t* frames, std::size_t n) {
  args_.assign(descs, descs + n);
  arg_data_.clear();
  for (std::size_t i = 0; i < n; ++i) arg_data_.push_back(frames[i].data());
  send();
}

void FarLocal::send() {
  if (v1_) {
    v1_->send(arg_data_[0], static_cast<DType>(args_[0].dtype), shape_of(args_[0]));
    local_seq_ = v1_->pending().value_or(0);
    return;
  }
  std::vector<NamedField> fields;
  fields.reserve(args_.size());
  for (std::size_t i = 0; i < args_.size(); ++i) {
    fields.push_back({request_names_[i], FieldRef(arg_data_[i], static_cast<DType>(args_[i].dtype),
                                                  shape_of(args_[i]))});
  }
  local_seq_ = v2_->send(fields);
}

namespace {

// ZeroMQ's free function of a zero-copy reply frame: it released the frame (R-RELAY-4).
void reply_released(void*, void* hint) { static_cast<std::atomic<int>*>(hint)->fetch_sub(1); }

}  // namespace

void FarLocal::add_payload(Outcome& out, const void* data, std::size_t size) {
  if (size < kZeroCopyMin) {
    out.payload.emplace_back(data, size);  // copied: nothing held
    return;
  }
  held_->fetch_add(1);
  out.payload.emplace_back(const_cast<void*>(data), size, &reply_released, held_.get());
}

bool FarLocal::wait_released(std::chrono::milliseconds max) const {
  const auto until = std::chrono::steady_clock::now() + max;
  while (held_->load() > 0) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

bool FarLocal::step(std::chrono::milliseconds timeout, Outcome& out) {
  out = Outcome{};
  out.local_seq = local_seq_;
  try {
    if (v1_) {
      const ArrayView v = v1_->receive(timeout);
      out.descs.push_back(desc_of(v.dtype(), v.shape()));
      add_payload(out, v.data(), static_cast<std::size_t>(v.nbytes()));
    } else {
      const MessageView v = v2_->receive(timeout);
      for (const auto& name : reply_names_) {
        const FieldRef f = v.ref(name);
        out.descs.push_back(desc_of(f.dtype, f.shape));
        add_payload(out, f.data, static_cast<std::size_t>(v.nbytes(name)));
      }
    }
  } catch (const Error& e) {
    if (e.code() == ErrorCode::TIMEOUT && !e.reply_code()) {
      // a local wait that timed out: withdrawn while REQUESTED (T5) means not taken, send again
      const bool pending = v1_ ? v1_->pending().has_value() : v2_->pending().has_value();
      if (!pending) send();
      return false;
    }
    out.reply_code = static_cast<std::uint32_t>(e.code());
    out.descs.clear();
    out.payload.clear();
    out.message = e.what();
  }
  return true;
}

void FarLocal::close() {
  if (v1_) v1_->close();
  if (v2_) v2_->close();
  v1_.reset();
  v2_.reset();
}

}  // namespace shmbridge::relay
