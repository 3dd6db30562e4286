#include "shmbridge/message.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "round_engine.hpp"
#include "shmbridge/layout_v2.hpp"
#include "shmbridge/message_table.hpp"
#include "shmbridge/naming.hpp"

namespace shmbridge {

using layout_v2::kEntrySize;
using layout_v2::kMaxFields;
using std::chrono::nanoseconds;

// ---- FieldRef / FieldSet
// -------------------------------------------------------------------------

std::uint64_t FieldRef::nbytes() const noexcept {
  std::uint64_t n = 0;
  if (!is_dtype_code(static_cast<std::uint32_t>(dtype)) || !shape.element_count(n)) return 0;
  return n * itemsize(dtype);
}

const std::vector<std::string>& FieldSet::names() const noexcept {
  static const std::vector<std::string> none;
  return names_ ? *names_ : none;
}

bool FieldSet::contains(std::string_view name) const noexcept {
  const auto& n = names();
  return std::find(n.begin(), n.end(), name) != n.end();
}

const detail::FieldSlot& FieldSet::slot(std::string_view name) const {
  const auto& n = names();
  for (std::size_t k = 0; k < n.size() && k < slots_.size(); ++k) {
    if (n[k] == name) return slots_[k];
  }
  std::string all;
  for (const auto& x : n) all += (all.empty() ? "'" : ", '") + x + "'";
  raise_field(ErrorCode::SCHEMA_MISMATCH, std::string(name),
              "a field of this message (" + (all.empty() ? std::string("none") : all) + ")",
              "'" + std::string(name) + "'", "use one of the schema's field names");
}

const detail::FieldSlot& FieldSet::typed_slot(std::string_view name, DType element) const {
  const detail::FieldSlot& s = slot(name);
  if (s.dtype != element) {
    raise_field(ErrorCode::DTYPE_MISMATCH, std::string(name),
                std::string("an element type of dtype ") + dtype_name(s.dtype),
                std::string("one of dtype ") + dtype_name(element),
                std::string("access the field as its dtype, ") + dtype_name(s.dtype));
  }
  return s;
}

DType FieldSet::dtype(std::string_view name) const { return slot(name).dtype; }
const Shape& FieldSet::shape(std::string_view name) const { return slot(name).shape; }
std::uint64_t FieldSet::nbytes(std::string_view name) const { return slot(name).nbytes; }
FieldRef FieldSet::ref(std::string_view name) const {
  const detail::FieldSlot& s = slot(name);
  return FieldRef(s.data, s.dtype, s.shape);
}

RawField MessageBuffer::raw(std::string_view name) const {
  const detail::FieldSlot& s = slot(name);
  return RawField{s.data, s.dtype, s.shape, s.nbytes};
}

namespace detail {

namespace {

std::shared_ptr<const std::vector<std::string>> names_of(const std::vector<FieldRecord>& records) {
  auto n = std::make_shared<std::vector<std::string>>();
  for (const FieldRecord& r : records) n->push_back(r.name);
  return n;
}

// The same error with `context` before its message (code, field and facts kept).
Error in_context(const Error& e, const std::string& context) {
  Error out(e.code(), context + ": " + (e.what() + std::string(error_name(e.code())).size() + 2));
  out.set_field(e.field());
  return out;
}

void copy_bytes(std::uint8_t* dst, const void* src, std::uint64_t n) {
  if (n && dst != src) std::memmove(dst, src, static_cast<std::size_t>(n));
}

}  // namespace

// The v2 message: two areas, each a message table followed by the storage of its fields
// (R-FIELD-1); the state of the round being prepared (shapes handed out by zero-copy calls) and
// of the request held.
class V2Format final : public MessageFormat {
 public:
  V2Format(std::uint8_t* base, SchemaLayout layout)
      : base_(base),
        layout_(std::make_shared<const SchemaLayout>(std::move(layout))),
        names_{names_of(layout_->request), names_of(layout_->reply)} {}

  // R-FIELD-10: an error reply (T3 with reply_code != 0, T8, R-CLOSE-2) writes no part of the
  // reply area.
  void before_error_reply() noexcept override {}

  const SchemaLayout& layout() const noexcept { return *layout_; }
  const std::vector<FieldRecord>& records(bool reply) const noexcept {
    return layout_->side(reply);
  }
  std::uint8_t* table(bool reply) const noexcept {
    const Geometry& g = layout_->geometry;
    return base_ + (reply ? g.reply_area_offset : g.request_area_offset);
  }
  std::uint8_t* storage(const FieldRecord& r) const noexcept { return base_ + r.offset; }

  // R-FIELD-1: entry k of an area's table; stored only when it changes (the table line then
  // stays cached by both peers in steady state).
  void write_entry(bool reply, std::size_t k, const Shape& shape) {
    std::array<std::uint8_t, kEntrySize> e;
    encode_descriptor(table_entry(records(reply)[k], shape), e.data());
    std::uint8_t* at = table(reply) + kEntrySize * k;
    if (std::memcmp(at, e.data(), kEntrySize) != 0) std::memcpy(at, e.data(), kEntrySize);
  }

  // R-FIELD-8: the table of the area received, checked before any field is read.
  std::vector<TableEntry> received(bool reply) const {
    return validate_table(records(reply), table(reply));
  }

  // A FieldSet over the storage of one area's fields with `shapes` (schema order).
  template <class Set>
  Set fields(bool reply, const Shape* shapes, std::uint32_t seq,
             std::shared_ptr<const void> keep) const {
    Set set;
    const auto& recs = records(reply);
    set.names_ = names_[reply ? 1 : 0];
    set.keep_ = std::move(keep);
    set.seq_ = seq;
    set.slots_.reserve(recs.size());
    for (std::size_t k = 0; k < recs.size(); ++k) {
      const FieldRecord& r = recs[k];
      std::uint64_t n = 0;
      shapes[k].element_count(n);
      set.slots_.push_back(
          FieldSlot{r.dtype_value(), shapes[k], n * itemsize(r.dtype_value()), storage(r)});
    }
    return set;
  }

  static Message copy_of(const MessageView& view) {
    // One owned block; each field at a multiple of 64, as in the segment.
    std::uint64_t total = 0;
    for (const FieldSlot& s : view.slots_) total += (s.nbytes + 63) / 64 * 64;
    auto bytes = std::shared_ptr<std::uint8_t[]>(new std::uint8_t[total ? total : 1]);
    Message m;
    m.names_ = view.names_;
    m.seq_ = view.seq_;
    std::uint64_t at = 0;
    for (const FieldSlot& s : view.slots_) {
      copy_bytes(bytes.get() + at, s.data, s.nbytes);
      m.slots_.push_back(FieldSlot{s.dtype, s.shape, s.nbytes, bytes.get() + at});
      at += (s.nbytes + 63) / 64 * 64;
    }
    m.keep_ = std::move(bytes);
    return m;
  }

  // ---- requester ----
  // R-FIELD-4: S1-S7 on the arrays given, then send's precondition and word, then the fields and
  // their entries, then T1.
  std::uint32_t send(RoundEngine& c, const NamedField* fields, std::size_t count) {
    c.ensure_open();
    const auto& recs = records(false);
    std::vector<GivenField> given;
    given.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      given.push_back(GivenField{fields[i].name, fields[i].ref.dtype, fields[i].ref.shape});
    }
    const FieldMatch at =
        match_given(recs, given.data(), given.size(), [](std::size_t) { return false; });
    for (std::size_t k = 0; k < recs.size(); ++k) {
      const GivenField& g = given[static_cast<std::size_t>(at[k])];
      check_field_values(recs[k], g.dtype, g.shape);
      require_data(recs[k], fields[at[k]].ref);
    }
    request_prepared_ = false;
    return c.send([&] {
      for (std::size_t k = 0; k < recs.size(); ++k) {
        const FieldRef& f = fields[at[k]].ref;
        copy_bytes(storage(recs[k]), f.data, f.nbytes());
        write_entry(false, k, f.shape);
      }
    });
  }

  // R-FIELD-5: S1-S3 (fixed-only fields may be omitted), S5-S7, then the precondition and the
  // word, then the writable views.
  MessageBuffer request_buffer(RoundEngine& c, const NamedShape* shapes, std::size_t count) {
    c.ensure_open();
    const auto& recs = records(false);
    request_shapes_ = prepared_shapes(recs, shapes, count, [&](std::size_t k) -> const Shape* {
      return recs[k].fixed_only() ? &declared_shape(false, k) : nullptr;
    });
    c.require_send_allowed();
    request_prepared_ = true;
    return fields<MessageBuffer>(false, request_shapes_.data(), 0, c.mapping());
  }

  std::uint32_t send_in_place(RoundEngine& c) {
    c.ensure_open();
    if (!request_prepared_) {
      raise(ErrorCode::OUT_OF_TURN, "request_buffer() before send_in_place()",
            "no request buffer handed out since the last send",
            "call request_buffer() and fill it first");
    }
    const auto& recs = records(false);
    const std::uint32_t seq = c.send([&] {
      for (std::size_t k = 0; k < recs.size(); ++k) write_entry(false, k, request_shapes_[k]);
    });
    request_prepared_ = false;
    return seq;
  }

  // T4, then R-FIELD-8 on the reply table (R-MSG-5 (2)); R-FIELD-9: an invalid one is raised
  // after T4 with reply_code 0, and no view is handed out.
  MessageView receive(RoundEngine& c, nanoseconds timeout) {
    const std::uint32_t seq = c.receive(timeout);
    std::vector<TableEntry> entries;
    try {
      entries = received(true);
    } catch (const Error& e) {
      throw in_context(e, "reply #" + std::to_string(seq)).set_reply_code(0);
    }
    std::array<Shape, kMaxFields> shapes;
    for (std::size_t k = 0; k < entries.size(); ++k) shapes[k] = entries[k].shape_of();
    return fields<MessageView>(true, shapes.data(), seq, c.mapping());
  }

  // ---- responder ----
  // T2, then R-FIELD-8 on the request table; R-FIELD-9: an invalid one is answered with an error
  // reply of its error, which is then raised.
  MessageView take(RoundEngine& c, nanoseconds timeout) {
    const std::uint32_t seq = c.take(timeout);
    for (auto& p : reply_shapes_) p.reset();
    std::vector<TableEntry> entries;
    try {
      entries = received(false);
    } catch (const Error& e) {
      c.reject(in_context(e, "request #" + std::to_string(seq) + " rejected"));
    }
    for (std::size_t k = 0; k < entries.size(); ++k) taken_[k] = entries[k].shape_of();
    return fields<MessageView>(false, taken_.data(), seq, c.mapping());
  }

  // reply_field (R-FIELD-6, R-FIELD-12): S1, the shape (omitted: fixed-only fields only, else
  // S3), the element type, S5-S7.
  RawField prepare_field(RoundEngine& c, std::string_view name, const Shape* shape,
                         std::optional<DType> element) {
    c.require_reply_allowed();
    const auto& recs = records(true);
    std::size_t k = 0;
    while (k < recs.size() && recs[k].name != name) ++k;
    if (k == recs.size()) unknown_field(name, recs);  // S1
    const FieldRecord& r = recs[k];
    if (!shape) {
      if (!r.fixed_only()) field_missing(r);  // S3: a variable extent needs a shape
      shape = &declared_shape(true, k);
    }
    if (element && *element != r.dtype_value()) {
      raise_field(ErrorCode::DTYPE_MISMATCH, r.name,
                  std::string("an element type of dtype ") + dtype_name(r.dtype_value()),
                  std::string("one of dtype ") + dtype_name(*element),
                  std::string("access the field as its dtype, ") + dtype_name(r.dtype_value()));
    }
    check_field_values(r, std::nullopt, *shape);  // S5-S7
    reply_shapes_[k] = *shape;
    std::uint64_t n = 0;
    shape->element_count(n);
    return RawField{storage(r), r.dtype_value(), *shape, n * itemsize(r.dtype_value())};
  }

  // reply_buffer (R-FIELD-6): S1-S3 (fixed-only and in-place fields may be omitted), S5-S7.
  MessageBuffer reply_buffer(RoundEngine& c, const NamedShape* shapes, std::size_t count) {
    c.require_reply_allowed();
    const auto& recs = records(true);
    const auto got = prepared_shapes(recs, shapes, count, [&](std::size_t k) -> const Shape* {
      if (recs[k].alias) return &taken_[recs[k].alias - 1];
      return recs[k].fixed_only() ? &declared_shape(true, k) : nullptr;
    });
    for (std::size_t k = 0; k < recs.size(); ++k) reply_shapes_[k] = got[k];
    return fields<MessageBuffer>(true, got.data(), c.held().value_or(0), c.mapping());
  }

  // reply(fields) (R-FIELD-6): S1-S7, where in-place and prepared fields may be omitted; then
  // the given arrays, every reply table entry, and T3 with reply_code 0.
  void reply(RoundEngine& c, const NamedField* fields, std::size_t count) {
    c.require_reply_allowed();
    const auto& recs = records(true);
    std::vector<GivenField> given;
    given.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      given.push_back(GivenField{fields[i].name, fields[i].ref.dtype, fields[i].ref.shape});
    }
    const FieldMatch at = match_given(recs, given.data(), given.size(), [&](std::size_t k) {
      return recs[k].alias != 0 || reply_shapes_[k].has_value();
    });
    for (std::size_t k = 0; k < recs.size(); ++k) {
      if (at[k] < 0) continue;
      check_field_values(recs[k], given[at[k]].dtype, given[at[k]].shape);
      require_data(recs[k], fields[at[k]].ref);
    }
    for (std::size_t k = 0; k < recs.size(); ++k) {
      if (at[k] >= 0) {  // a copied array wins over a prepared view
        const FieldRef& f = fields[at[k]].ref;
        copy_bytes(storage(recs[k]), f.data, f.nbytes());
        write_entry(true, k, f.shape);
      } else {
        write_entry(true, k, reply_shapes_[k] ? *reply_shapes_[k] : taken_[recs[k].alias - 1]);
      }
    }
    c.answer(0);
  }

 private:
  const Shape& declared_shape(bool reply, std::size_t k) {
    declared_[reply ? 1 : 0][k] = records(reply)[k].max_shape_of();
    return declared_[reply ? 1 : 0][k];
  }

  // S1-S3 and S5-S7 on the shapes given to a zero-copy call; `fallback(k)` is the shape of an
  // omitted field, or nullptr if it may not be omitted (S3).
  template <class Fallback>
  std::array<Shape, kMaxFields> prepared_shapes(const std::vector<FieldRecord>& recs,
                                                const NamedShape* shapes, std::size_t count,
                                                Fallback&& fallback) {
    std::vector<GivenField> given;
    given.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      given.push_back(GivenField{shapes[i].name, std::nullopt, shapes[i].shape});
    }
    const FieldMatch at = match_given(recs, given.data(), given.size(),
                                      [&](std::size_t k) { return fallback(k) != nullptr; });
    std::array<Shape, kMaxFields> out;
    for (std::size_t k = 0; k < recs.size(); ++k) {
      if (at[k] >= 0) {
        check_field_values(recs[k], std::nullopt, given[at[k]].shape);  // S5-S7 (no S4)
        out[k] = given[at[k]].shape;
      } else {
        out[k] = *fallback(k);
      }
    }
    return out;
  }

  static void require_data(const FieldRecord& r, const FieldRef& f) {
    if (!f.data && f.nbytes() != 0) {
      raise_field(ErrorCode::INVALID_ARGUMENT, r.name, "a data pointer", "nullptr",
                  "pass the array's data");
    }
  }

  std::uint8_t* base_;
  std::shared_ptr<const SchemaLayout> layout_;
  std::array<std::shared_ptr<const std::vector<std::string>>, 2> names_;
  std::array<std::array<Shape, kMaxFields>, 2> declared_;
  // requester: the shapes of the request buffer handed out, until it is sent
  std::array<Shape, kMaxFields> request_shapes_;
  bool request_prepared_ = false;
  // responder: the request held (shapes as taken) and the reply fields prepared for it
  std::array<Shape, kMaxFields> taken_;
  std::array<std::optional<Shape>, kMaxFields> reply_shapes_;
};

namespace {

V2Format& v2(const RoundEngine& c) { return c.format<V2Format>(); }

// R-SCHEMA-8: the header, the geometry, the schema table and both initial message tables
// (R-FIELD-2), all before magic; the slots are claimed by create_engine.
std::shared_ptr<RoundEngine> create_v2(Actor role, std::string_view name, const Schema& request,
                                       const Schema& reply, const Options& opt) {
  check_options(opt);
  normalize_name(name);  // R-SCHEMA-3: the segment name first, then the schemas
  const SchemaLayout layout = declare_schemas(request, reply);
  HeaderV2 h = HeaderV2::fresh(layout);
  h.magic = {};  // published last (R-SEG-6)
  auto write = [&](std::uint8_t* base) {
    encode_header_v2(h, base);
    encode_table(initial_table(layout.request), base + layout.geometry.request_area_offset);
    encode_table(initial_table(layout.reply), base + layout.geometry.reply_area_offset);
  };
  auto make = [&](const Segment& seg) { return std::make_unique<V2Format>(seg.base(), layout); };
  return create_engine(role, name, layout.segment_size, write, make, opt);
}

std::shared_ptr<RoundEngine> attach_v2(Actor role, std::string_view name, const Schema* request,
                                       const Schema* reply, const Options& opt) {
  check_options(opt);
  normalize_name(name);                    // R-SCHEMA-10: the name first,
  check_expected_schemas(request, reply);  // then C1-C8 on what is stated,
  auto check = [](const std::uint8_t* data, std::uint64_t size, const std::string& canonical) {
    validate_header_for_api(data, size, 2, canonical);  // then the header (R-VER-4),
  };
  auto make = [](const Segment& seg) {
    return std::make_unique<V2Format>(seg.base(),
                                      validate_header_v2(seg.base(), seg.size()).schemas());
  };
  auto expect = [&](MessageFormat& f) {  // then X1-X6, before the slot is claimed
    check_expectations(static_cast<V2Format&>(f).layout(), request, reply);
  };
  return attach_engine(role, name, check, make, expect, opt);
}

const Schema* opt_ptr(const std::optional<Schema>& s) { return s ? &*s : nullptr; }

}  // namespace
}  // namespace detail

// ---- MessageRequester
// ----------------------------------------------------------------------------

MessageRequester MessageRequester::create(std::string_view name, const Schema& request,
                                          const Schema& reply, const Options& opt) {
  return MessageRequester(detail::create_v2(Actor::requester, name, request, reply, opt));
}
MessageRequester MessageRequester::attach(std::string_view name, const Options& opt) {
  return MessageRequester(detail::attach_v2(Actor::requester, name, nullptr, nullptr, opt));
}
MessageRequester MessageRequester::attach(std::string_view name,
                                          const std::optional<Schema>& request,
                                          const std::optional<Schema>& reply, const Options& opt) {
  return MessageRequester(detail::attach_v2(Actor::requester, name, detail::opt_ptr(request),
                                            detail::opt_ptr(reply), opt));
}

std::uint32_t MessageRequester::send(std::initializer_list<NamedField> fields) {
  return send_fields(fields.begin(), fields.size());
}
std::uint32_t MessageRequester::send(const std::vector<NamedField>& fields) {
  return send_fields(fields.data(), fields.size());
}
std::uint32_t MessageRequester::send_fields(const NamedField* fields, std::size_t count) {
  auto& c = core();
  return detail::v2(c).send(c, fields, count);
}

MessageBuffer MessageRequester::request_buffer(std::initializer_list<NamedShape> shapes) {
  return buffer(shapes.begin(), shapes.size());
}
MessageBuffer MessageRequester::request_buffer(const std::vector<NamedShape>& shapes) {
  return buffer(shapes.data(), shapes.size());
}
MessageBuffer MessageRequester::buffer(const NamedShape* shapes, std::size_t count) {
  auto& c = core();
  return detail::v2(c).request_buffer(c, shapes, count);
}
std::uint32_t MessageRequester::send_in_place() {
  auto& c = core();
  return detail::v2(c).send_in_place(c);
}

MessageView MessageRequester::receive() { return receive(core().options().timeout); }
MessageView MessageRequester::receive(nanoseconds timeout) {
  auto& c = core();
  return detail::v2(c).receive(c, timeout);
}
Message MessageRequester::receive_copy() { return receive_copy(core().options().timeout); }
Message MessageRequester::receive_copy(nanoseconds timeout) {
  const MessageView v = receive(timeout);
  return detail::V2Format::copy_of(v);
}
Message MessageRequester::call(std::initializer_list<NamedField> fields) {
  send_fields(fields.begin(), fields.size());
  return receive_copy();
}
Message MessageRequester::call(const std::vector<NamedField>& fields) {
  send_fields(fields.data(), fields.size());
  return receive_copy();
}

std::optional<std::uint32_t> MessageRequester::pending() const { return core().pending(); }
Schema MessageRequester::request_schema() const { return schemas().request_schema(); }
Schema MessageRequester::reply_schema() const { return schemas().reply_schema(); }
const SchemaLayout& MessageRequester::schemas() const { return detail::v2(core()).layout(); }

// ---- MessageResponder / MessageRequest
// -----------------------------------------------------------

MessageResponder MessageResponder::create(std::string_view name, const Schema& request,
                                          const Schema& reply, const Options& opt) {
  return MessageResponder(detail::create_v2(Actor::responder, name, request, reply, opt));
}
MessageResponder MessageResponder::attach(std::string_view name, const Options& opt) {
  return MessageResponder(detail::attach_v2(Actor::responder, name, nullptr, nullptr, opt));
}
MessageResponder MessageResponder::attach(std::string_view name,
                                          const std::optional<Schema>& request,
                                          const std::optional<Schema>& reply, const Options& opt) {
  return MessageResponder(detail::attach_v2(Actor::responder, name, detail::opt_ptr(request),
                                            detail::opt_ptr(reply), opt));
}

MessageRequest MessageResponder::take() { return take(core().options().timeout); }
MessageRequest MessageResponder::take(nanoseconds timeout) {
  auto& c = core();
  MessageRequest r;
  r.request_ = detail::v2(c).take(c, timeout);
  r.seq_ = r.request_.seq();
  r.core_ = core_;
  return r;
}

void MessageResponder::serve(const std::function<void(MessageRequest&)>& handler) {
  detail::serve_loop<MessageRequest>([this] { return take(); }, handler);
}

void MessageResponder::reply() {
  auto& c = core();
  detail::v2(c).reply(c, nullptr, 0);
}
void MessageResponder::fail(ErrorCode code) { core().answer(static_cast<std::uint32_t>(code)); }
std::optional<std::uint32_t> MessageResponder::held() const { return core().held(); }
Schema MessageResponder::request_schema() const { return schemas().request_schema(); }
Schema MessageResponder::reply_schema() const { return schemas().reply_schema(); }
const SchemaLayout& MessageResponder::schemas() const { return detail::v2(core()).layout(); }

// R-FIELD-6: every reply call first checks that the responder holds this request.
void MessageRequest::check_held() const {
  detail::RoundEngine::require_held(core_.get(), answered_, seq_, "MessageRequest");
}

RawField MessageRequest::prepare_field(std::string_view name, const Shape* shape,
                                       std::optional<DType> element) {
  check_held();
  return detail::v2(*core_).prepare_field(*core_, name, shape, element);
}
RawField MessageRequest::reply_field(std::string_view name, const Shape& shape) {
  return prepare_field(name, &shape, std::nullopt);
}
RawField MessageRequest::reply_field(std::string_view name) {
  return prepare_field(name, nullptr, std::nullopt);
}

MessageBuffer MessageRequest::reply_buffer(std::initializer_list<NamedShape> shapes) {
  return buffer(shapes.begin(), shapes.size());
}
MessageBuffer MessageRequest::reply_buffer(const std::vector<NamedShape>& shapes) {
  return buffer(shapes.data(), shapes.size());
}
MessageBuffer MessageRequest::buffer(const NamedShape* shapes, std::size_t count) {
  check_held();
  return detail::v2(*core_).reply_buffer(*core_, shapes, count);
}

void MessageRequest::reply(std::initializer_list<NamedField> fields) {
  reply_fields(fields.begin(), fields.size());
}
void MessageRequest::reply(const std::vector<NamedField>& fields) {
  reply_fields(fields.data(), fields.size());
}
void MessageRequest::reply_fields(const NamedField* fields, std::size_t count) {
  check_held();
  detail::v2(*core_).reply(*core_, fields, count);
  answered_ = true;
}

void MessageRequest::fail(ErrorCode code) {
  check_held();
  core_->answer_error(code);
  answered_ = true;
}

}  // namespace shmbridge
