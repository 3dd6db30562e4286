// RapidCheck properties of protocol v2 (PROTOCOL.md Part II):
//  - random schemas (0 to 16 fields, 0-d fields, variable extents, in-place reply fields) and
//    random messages within them round-trip exactly through a real segment, by the copying and
//    the zero-copy API, requester and responder in one process (timeout 0) and across threads
//    (R-SCHEMA-1/4/7, R-FIELD-1/4/5/6/8/11);
//  - random byte corruption of a valid v2 header (geometry, schema table) and of message tables
//    never crashes and always gives a typed error naming what Part II says, or a header / table
//    that satisfies every invariant the checks promise (R-SCHEMA-9, R-FIELD-8, R-FIELD-9).
#include <gtest/gtest.h>
#include <rapidcheck.h>

#include <cstring>
#include <sstream>
#include <thread>

#include "v2_util.hpp"

using namespace shmbridge;
using namespace shmbridge::test;

namespace {

// Runs `property` until `cases` successes (RapidCheck's own shrinking and reporting).
template <class F>
void check_property(const char* id, int cases, F&& property) {
  rc::detail::TestParams params = rc::detail::configuration().testParams;
  params.maxSuccess = std::max(params.maxSuccess, cases);
  rc::detail::TestMetadata meta;
  meta.id = id;
  meta.description = id;
  const rc::detail::TestResult result =
      rc::detail::checkTestable(std::forward<F>(property), meta, params);
  std::ostringstream msg;
  rc::detail::printResultMessage(result, msg);
  ASSERT_TRUE(result.is<rc::detail::SuccessResult>()) << msg.str();
  const int n = result.get<rc::detail::SuccessResult>().numSuccess;
  EXPECT_GE(n, cases);
  std::cout << "RapidCheck: " << id << ": " << n << " cases passed" << std::endl;
}

std::vector<Extent> random_extents(std::size_t max_ndim, std::uint64_t max_extent) {
  const auto ndim = *rc::gen::inRange<std::size_t>(0, max_ndim + 1);
  std::vector<Extent> e;
  for (std::size_t d = 0; d < ndim; ++d) {
    e.emplace_back(*rc::gen::inRange<std::uint64_t>(0, max_extent + 1),
                   *rc::gen::arbitrary<bool>());
  }
  return e;
}

DType random_dtype() { return static_cast<DType>(*rc::gen::inRange<std::uint32_t>(1, 15)); }

// A random valid schema pair: the request 0 to 16 fields (mostly few), the reply own-storage
// fields and in-place fields onto distinct request fields.
std::pair<Schema, Schema> random_schemas() {
  const bool many = *rc::gen::inRange(0, 8) == 0;
  const auto nreq = many ? 16 : *rc::gen::inRange<std::size_t>(0, 5);
  const auto nrep =
      many ? *rc::gen::inRange<std::size_t>(0, 17) : *rc::gen::inRange<std::size_t>(0, 5);
  Schema request, reply;
  for (std::size_t k = 0; k < nreq; ++k) {
    const bool deep = *rc::gen::inRange(0, 10) == 0;  // now and then 8 dims of extent 0..1
    request.field("q" + std::to_string(k), random_dtype(),
                  deep ? random_extents(8, 1) : random_extents(3, many ? 2 : 5));
  }
  std::vector<bool> targeted(nreq, false);
  for (std::size_t j = 0; j < nrep; ++j) {
    const std::string name = (*rc::gen::arbitrary<bool>() ? "q" : "p") + std::to_string(j);
    const auto t = nreq ? *rc::gen::inRange<std::size_t>(0, nreq) : 0;
    if (nreq && !targeted[t] && *rc::gen::inRange(0, 3) == 0) {
      targeted[t] = true;
      reply.inplace(name, "q" + std::to_string(t));
    } else {
      reply.field(name, random_dtype(), random_extents(3, many ? 2 : 5));
    }
  }
  return {request, reply};
}

Shape random_shape(const FieldRecord& r) {
  std::vector<std::uint64_t> dims;
  for (std::size_t d = 0; d < r.ndim; ++d) {
    dims.push_back(r.variable(d) ? *rc::gen::inRange<std::uint64_t>(0, r.max_shape[d] + 1)
                                 : r.max_shape[d]);
  }
  return Shape(dims);
}

std::vector<std::uint8_t> random_bytes(const FieldRecord& r, const Shape& s) {
  std::uint64_t n = 0;
  s.element_count(n);
  return *rc::gen::container<std::vector<std::uint8_t>>(
      static_cast<std::size_t>(n * itemsize(r.dtype_value())), rc::gen::arbitrary<std::uint8_t>());
}

struct Expected {
  Shape shape;
  std::vector<std::uint8_t> bytes;
};

void expect_fields(const FieldSet& got, const std::vector<FieldRecord>& records,
                   const std::vector<Expected>& want) {
  RC_ASSERT(got.size() == records.size());
  for (std::size_t k = 0; k < records.size(); ++k) {
    const std::string& name = records[k].name;
    RC_ASSERT(got.names()[k] == name);
    RC_ASSERT(got.shape(name) == want[k].shape);
    RC_ASSERT(got.nbytes(name) == want[k].bytes.size());
    RC_ASSERT(got.dtype(name) == records[k].dtype_value());
    if (!want[k].bytes.empty()) {  // memcmp(nullptr, ...) is undefined even for 0 bytes
      RC_ASSERT(std::memcmp(got.ref(name).data, want[k].bytes.data(), want[k].bytes.size()) == 0);
    }
  }
}

// The request side of one round: random shapes and bytes, sent by copy or through a buffer.
std::vector<Expected> send_random(MessageRequester& req) {
  const auto& recs = req.schemas().request;
  std::vector<Expected> want;
  for (const auto& r : recs) {
    const Shape s = random_shape(r);
    want.push_back({s, random_bytes(r, s)});
  }
  if (*rc::gen::arbitrary<bool>()) {
    std::vector<NamedField> fields;
    for (std::size_t k = 0; k < recs.size(); ++k) {
      fields.push_back(
          {recs[k].name, FieldRef(want[k].bytes.data(), recs[k].dtype_value(), want[k].shape)});
    }
    std::reverse(fields.begin(), fields.end());  // any order (S1/S2 take the caller's order)
    req.send(fields);
  } else {
    std::vector<NamedShape> shapes;
    for (std::size_t k = 0; k < recs.size(); ++k) {
      if (!recs[k].fixed_only() || *rc::gen::arbitrary<bool>()) {
        shapes.push_back({recs[k].name, want[k].shape});
      }
    }
    MessageBuffer buf = req.request_buffer(shapes);
    for (std::size_t k = 0; k < recs.size(); ++k) {
      const RawField f = buf.raw(recs[k].name);
      RC_ASSERT(f.shape == want[k].shape);
      if (!want[k].bytes.empty()) std::memcpy(f.data, want[k].bytes.data(), want[k].bytes.size());
    }
    req.send_in_place();
  }
  return want;
}

// The reply side: random own-storage fields; in-place fields either omitted (the target's shape
// and content as taken) or given anew; by copy, reply_field, or reply_buffer.
std::vector<Expected> reply_random(MessageRequest& r, const SchemaLayout& L,
                                   const std::vector<Expected>& taken) {
  const auto& recs = L.reply;
  std::vector<Expected> want;
  std::vector<bool> given;
  for (const auto& rec : recs) {
    const bool omit = rec.alias && *rc::gen::arbitrary<bool>();
    given.push_back(!omit);
    if (omit) {
      want.push_back(taken[rec.alias - 1]);
    } else {
      const Shape s = random_shape(rec);
      want.push_back({s, random_bytes(rec, s)});
    }
  }
  const int how = *rc::gen::inRange(0, 3);
  if (how == 0) {
    std::vector<NamedField> fields;
    for (std::size_t k = 0; k < recs.size(); ++k) {
      if (given[k]) {
        fields.push_back(
            {recs[k].name, FieldRef(want[k].bytes.data(), recs[k].dtype_value(), want[k].shape)});
      }
    }
    r.reply(fields);
  } else if (how == 1) {
    for (std::size_t k = 0; k < recs.size(); ++k) {
      if (!given[k]) continue;
      const RawField f = recs[k].fixed_only() && *rc::gen::arbitrary<bool>()
                             ? r.reply_field(recs[k].name)
                             : r.reply_field(recs[k].name, want[k].shape);
      RC_ASSERT(f.shape == want[k].shape);
      if (!want[k].bytes.empty()) std::memcpy(f.data, want[k].bytes.data(), want[k].bytes.size());
    }
    r.reply();
  } else {
    std::vector<NamedShape> shapes;
    for (std::size_t k = 0; k < recs.size(); ++k) {
      if (given[k]) shapes.push_back({recs[k].name, want[k].shape});
    }
    MessageBuffer buf = r.reply_buffer(shapes);
    for (std::size_t k = 0; k < recs.size(); ++k) {
      if (given[k] && !want[k].bytes.empty()) {
        std::memcpy(buf.raw(recs[k].name).data, want[k].bytes.data(), want[k].bytes.size());
      }
    }
    r.reply();
  }
  return want;
}

Options zero_timeout() {
  Options o = fast_options();
  o.timeout = std::chrono::nanoseconds::zero();
  o.spin = std::chrono::nanoseconds::zero();
  return o;
}

}  // namespace

// R-SCHEMA-1, R-SCHEMA-4, R-SCHEMA-7, R-FIELD-4, R-FIELD-5, R-FIELD-6, R-FIELD-8: random schemas
// and messages round-trip exactly (timeout 0, one thread, three rounds per segment).
TEST(V2Property, R_FIELD_4_RandomSchemasAndMessagesRoundTrip) {
  check_property("V2Property/R_FIELD_4_RandomSchemasAndMessagesRoundTrip", 300, [] {
    const auto [request, reply] = random_schemas();
    UniqueName n("prop");
    Options create = fast_options();
    auto req = MessageRequester::create(n, request, reply, create);
    auto rsp = MessageResponder::attach(n, zero_timeout());
    RC_ASSERT(req.request_schema() == request);
    RC_ASSERT(rsp.reply_schema() == reply);
    const SchemaLayout& L = req.schemas();
    for (int round = 0; round < 3; ++round) {
      const auto sent = send_random(req);
      MessageRequest r = rsp.try_take();
      expect_fields(r.request(), L.request, sent);
      const auto replied = reply_random(r, L, sent);
      const MessageView v = req.try_receive();
      expect_fields(v, L.reply, replied);
      RC_ASSERT(req.phase() == Phase::IDLE);
    }
  });
}

// The same across two threads with blocking waits (spin 0 forces the OS wait, R-WAIT-1), by
// call() and serve().
TEST(V2Property, R_FIELD_6_RandomRoundsAcrossThreads) {
  check_property("V2Property/R_FIELD_6_RandomRoundsAcrossThreads", 60, [] {
    const auto [request, reply] = random_schemas();
    UniqueName n("propt");
    Options opt = fast_options();
    opt.spin = std::chrono::nanoseconds::zero();
    auto req = MessageRequester::create(n, request, reply, opt);
    const SchemaLayout L = req.schemas();
    // The responder publishes every own-storage reply field as zeros of its initial shape; an
    // in-place field is the request field as taken.
    std::string responder_error;
    std::thread responder([&] {
      try {
        auto rsp = MessageResponder::attach(n.str(), opt);
        rsp.serve([&](MessageRequest& r) {
          for (const FieldRecord& rec : L.reply) {
            if (rec.alias) continue;
            const RawField f = r.reply_field(rec.name, rec.initial_shape());
            if (f.nbytes) std::memset(f.data, 0, static_cast<std::size_t>(f.nbytes));
          }
        });
      } catch (const std::exception& e) {
        responder_error = e.what();
      }
    });
    struct Join {  // also when an assertion below throws
      MessageRequester& req;
      std::thread& t;
      ~Join() {
        req.close();
        t.join();
      }
    } join{req, responder};
    for (int round = 0; round < 3; ++round) {
      std::vector<Expected> sent;
      std::vector<NamedField> fields;
      for (const auto& rec : L.request) {
        const Shape s = random_shape(rec);
        sent.push_back({s, random_bytes(rec, s)});
      }
      for (std::size_t k = 0; k < L.request.size(); ++k) {
        fields.push_back({L.request[k].name, FieldRef(sent[k].bytes.data(),
                                                      L.request[k].dtype_value(), sent[k].shape)});
      }
      const Message m = req.call(fields);
      std::vector<Expected> want;
      for (const auto& rec : L.reply) {
        if (rec.alias) {
          want.push_back(sent[rec.alias - 1]);
        } else {
          std::uint64_t count = 0;
          rec.initial_shape().element_count(count);
          want.push_back({rec.initial_shape(),
                          std::vector<std::uint8_t>(count * itemsize(rec.dtype_value()), 0)});
        }
      }
      expect_fields(m, L.reply, want);
    }
    RC_ASSERT(responder_error.empty());
  });
}

// R-SCHEMA-9: random byte corruption of a valid header (mostly in the geometry and the schema
// table) never crashes or reads beyond its bytes; it gives a typed header error naming no field,
// or a header whose every field storage lies inside the mapping, aligned, as R-SCHEMA-7 places it.
TEST(V2Property, R_SCHEMA_9_CorruptHeadersGiveTypedErrors) {
  check_property("V2Property/R_SCHEMA_9_CorruptHeadersGiveTypedErrors", 3000, [] {
    const auto [request, reply] = random_schemas();
    const SchemaLayout L = declare_schemas(request, reply);
    std::vector<std::uint8_t> bytes(L.header_size);
    encode_header_v2(HeaderV2::fresh(L), bytes.data());
    const auto flips = *rc::gen::inRange(1, 5);
    for (int i = 0; i < flips; ++i) {
      const bool in_table = *rc::gen::inRange(0, 4) != 0;
      const std::size_t lo = in_table ? 0x40 : 0;
      const auto at = *rc::gen::inRange<std::size_t>(lo, bytes.size());
      bytes[at] = *rc::gen::arbitrary<std::uint8_t>();
    }
    const std::uint64_t mappings[] = {L.segment_size, L.segment_size + 4096, 512,
                                      *rc::gen::arbitrary<std::uint64_t>()};
    const std::uint64_t mapping = mappings[*rc::gen::inRange(0, 4)];
    auto exact = std::make_unique<std::uint8_t[]>(bytes.size());
    std::copy(bytes.begin(), bytes.end(), exact.get());
    try {
      const HeaderV2 h = validate_header_v2(exact.get(), mapping);
      RC_ASSERT(h.segment_size <= mapping);
      RC_ASSERT(h.request.size() <= 16u && h.reply.size() <= 16u);
      for (const auto* side : {&h.request, &h.reply}) {
        for (const auto& r : *side) {
          RC_ASSERT(r.offset % 64 == 0);
          RC_ASSERT(r.offset >= h.header_size);
          RC_ASSERT(r.max_nbytes <= h.segment_size - r.offset);  // inside the mapping
        }
      }
      const SchemaLayout again =
          declare_schemas(h.schemas().request_schema(), h.schemas().reply_schema());
      RC_ASSERT(again.request == h.request);  // what validates is what a creator would write
      RC_ASSERT(again.reply == h.reply);
    } catch (const Error& e) {
      RC_ASSERT(e.code() == ErrorCode::CORRUPT_HEADER || e.code() == ErrorCode::VERSION_MISMATCH ||
                e.code() == ErrorCode::SEGMENT_NOT_FOUND);
      RC_ASSERT(e.field().empty());
      RC_ASSERT(std::strlen(e.what()) > 0);
    }
  });
}

// R-FIELD-8, R-FIELD-7: random corruption of a valid message table gives a typed error naming a
// field of the schema, or entries within the field's maxima.
TEST(V2Property, R_FIELD_8_CorruptTablesGiveTypedErrorsNamingAField) {
  check_property("V2Property/R_FIELD_8_CorruptTablesGiveTypedErrorsNamingAField", 3000, [] {
    const auto [request, reply] = random_schemas();
    const SchemaLayout L = declare_schemas(request, reply);
    const bool reply_side = *rc::gen::arbitrary<bool>();
    const auto& recs = L.side(reply_side);
    RC_PRE(!recs.empty());
    std::vector<TableEntry> entries;
    for (const auto& r : recs) entries.push_back(table_entry(r, random_shape(r)));
    std::vector<std::uint8_t> bytes(80 * recs.size());
    encode_table(entries, bytes.data());
    const auto flips = *rc::gen::inRange(1, 4);
    for (int i = 0; i < flips; ++i) {
      bytes[*rc::gen::inRange<std::size_t>(0, bytes.size())] = *rc::gen::arbitrary<std::uint8_t>();
    }
    auto exact = std::make_unique<std::uint8_t[]>(bytes.size());
    std::copy(bytes.begin(), bytes.end(), exact.get());
    try {
      const auto got = validate_table(recs, exact.get());
      for (std::size_t k = 0; k < recs.size(); ++k) {
        RC_ASSERT(got[k].dtype == recs[k].dtype && got[k].ndim == recs[k].ndim);
        RC_ASSERT(got[k].nbytes <= recs[k].max_nbytes);  // never beyond the field's storage
      }
    } catch (const Error& e) {
      RC_ASSERT(e.code() == ErrorCode::CORRUPT_HEADER || e.code() == ErrorCode::DTYPE_MISMATCH ||
                e.code() == ErrorCode::SHAPE_MISMATCH);
      bool named = false;
      for (const auto& r : recs) named = named || r.name == e.field();
      RC_ASSERT(named);
    }
  });
}

// R-FIELD-9: the same corruption of the request table in a real segment: the responder's take
// either returns the request or answers it with an error reply of the error it raises; the
// requester's receive then gets that code, and the channel goes on.
TEST(V2Property, R_FIELD_9_CorruptRequestTableInASegment) {
  check_property("V2Property/R_FIELD_9_CorruptRequestTableInASegment", 200, [] {
    const auto [request, reply] = random_schemas();
    RC_PRE(request.size() > 0);
    V2Pair p(request, reply, fast_options(), "propc");
    send_random(p.req);
    std::uint8_t* table = p.area(false);
    const auto flips = *rc::gen::inRange(1, 4);
    for (int i = 0; i < flips; ++i) {
      table[*rc::gen::inRange<std::size_t>(0, 80 * request.size())] =
          *rc::gen::arbitrary<std::uint8_t>();
    }
    std::optional<Error> taken;
    try {
      MessageRequest r = p.rsp.try_take();
      r.fail(ErrorCode::INVALID_ARGUMENT);
    } catch (const Error& e) {
      taken = e;
    }
    RC_ASSERT(!p.rsp.held());
    try {
      p.req.try_receive();
      RC_FAIL("receive returned a reply although every round here ends with an error reply");
    } catch (const Error& e) {
      const ErrorCode want = taken ? taken->code() : ErrorCode::INVALID_ARGUMENT;
      RC_ASSERT(e.code() == want);
      RC_ASSERT(e.reply_code() == std::optional<std::uint32_t>(static_cast<std::uint32_t>(want)));
    }
    RC_ASSERT(p.req.phase() == Phase::IDLE);
    send_random(p.req);  // the channel goes on
  });
}
