// Replays every protocol v2 vector (spec/vectors/headers_v2.json, messages_v2.json; format in
// spec/vectors/README.md "Protocol v2 vectors"): header encode/validate/decode/declare
// (R-SCHEMA-*), message tables (R-FIELD-1, 2, 8), send/reply checks (R-FIELD-4..7), attach
// expectations (R-SCHEMA-10) and declarations (R-SCHEMA-3), with the same error and the same field.
#include <iostream>
#include <memory>
#include <set>

#include "v2_util.hpp"

using namespace shmbridge;
using namespace shmbridge::test;
using nlohmann::json;

namespace {

const json& headers() {
  static const json j = load_spec("vectors/headers_v2.json");
  return j;
}
const json& messages() {
  static const json j = load_spec("vectors/messages_v2.json");
  return j;
}

HeaderV2 header_of(const json& f) {
  HeaderV2 h;
  static_cast<FixedHeader&>(h) = fixed_header_of(f);
  const json& g = f["geometry"];
  h.geometry.request_fields = g["request_fields"];
  h.geometry.reply_fields = g["reply_fields"];
  h.geometry.request_area_offset = g["request_area_offset"];
  h.geometry.request_area_size = g["request_area_size"];
  h.geometry.reply_area_offset = g["reply_area_offset"];
  h.geometry.reply_area_size = g["reply_area_size"];
  h.request = records_of(f["request_schema"]);
  h.reply = records_of(f["reply_schema"]);
  return h;
}

// Validates exactly the vector's bytes on the heap: a read beyond them (R-SCHEMA-9 forbids it,
// vectors README: "a validator MUST NOT need a byte at or beyond len(hex)") is an ASan error.
HeaderV2 validate_exact(const std::vector<std::uint8_t>& bytes, std::uint64_t mapping_size) {
  auto buf = std::make_unique<std::uint8_t[]>(bytes.size());
  std::copy(bytes.begin(), bytes.end(), buf.get());
  return validate_header_v2(buf.get(), mapping_size);
}

std::string outcome(const std::optional<Error>& e) { return e ? e->name() : "ok"; }

const json& schema_named(const std::string& id) {
  for (const auto& s : messages()["schemas"]) {
    if (s["id"] == id) return s;
  }
  throw std::runtime_error("no schema " + id);
}

V2Pair pair_for(const json& s, const std::string& tag) {
  return V2Pair(*schema_of(s["request"]), *schema_of(s["reply"]), fast_options(), tag);
}

}  // namespace

// R-SCHEMA-5, R-SCHEMA-6, R-SCHEMA-7, R-FIELD-2, R-SCHEMA-9: every valid header vector in all four
// directions (encode, validate + decode, declare, initial tables), and its peer-grammar form.
TEST(V2Vectors, R_SCHEMA_5_ValidHeadersEncodeDecodeDeclare) {
  int n = 0;
  for (const auto& v : headers()["valid"]) {
    SCOPED_TRACE(v["id"].get<std::string>());
    const HeaderV2 want = header_of(v["fields"]);
    const auto bytes = hex_bytes(v["hex"]);
    ASSERT_EQ(bytes.size(), want.header_size);
    std::vector<std::uint8_t> enc(want.header_size);
    encode_header_v2(want, enc.data());
    EXPECT_EQ(bytes_hex(enc.data(), enc.size()), v["hex"].get<std::string>());  // R-SCHEMA-6
    HeaderV2 got;
    ASSERT_NO_THROW(got = validate_exact(bytes, v["mapping_size"]));  // R-SCHEMA-9
    EXPECT_TRUE(got == want);
    const json& s = v["schemas"];
    const Schema request = *schema_of(s["request"]);
    const Schema reply = *schema_of(s["reply"]);
    const SchemaLayout decl = declare_schemas(request, reply);  // R-SCHEMA-3, R-SCHEMA-7
    EXPECT_TRUE(decl.request == want.request);
    EXPECT_TRUE(decl.reply == want.reply);
    EXPECT_TRUE(decl.geometry == want.geometry);
    EXPECT_EQ(decl.header_size, want.header_size);
    EXPECT_EQ(decl.capacity, want.capacity);
    EXPECT_EQ(decl.segment_size, want.segment_size);
    EXPECT_TRUE(HeaderV2::fresh(decl) == want || v["id"] == "H2-VALID-MINOR-3" ||
                v["id"] == "H2-VALID-ACTIVE");       // those two carry a creator's later state
    for (const char* side : {"request", "reply"}) {  // R-FIELD-2
      const json& t = v["initial_tables"][side];
      const auto& records = std::string(side) == "request" ? decl.request : decl.reply;
      const auto table = initial_table(records);
      ASSERT_EQ(table.size(), t["entries"].size());
      for (std::size_t k = 0; k < table.size(); ++k)
        EXPECT_TRUE(table[k] == entry_of(t["entries"][k]));
      std::vector<std::uint8_t> raw(layout_v2::kEntrySize * table.size());
      encode_table(table, raw.data());
      EXPECT_EQ(bytes_hex(raw.data(), raw.size()), t["hex"].get<std::string>());
    }
    // spec/PEER.md §7.2: the same pair in the peer grammar, both directions.
    EXPECT_TRUE(Schema::parse(s["spec"]["request"]) == request);
    EXPECT_TRUE(Schema::parse(s["spec"]["reply"]) == reply);
    EXPECT_EQ(request.to_string(), s["spec"]["request"].get<std::string>());
    EXPECT_EQ(reply.to_string(), s["spec"]["reply"].get<std::string>());
    ++n;
  }
  EXPECT_EQ(n, 15);
  std::cout << "[ replay  ] headers_v2.json valid: " << n << "\n";
}

// R-SCHEMA-9, R-VER-2, R-FIELD-7: every invalid header fails with its error at its check, naming
// no field, reading only the bytes given.
TEST(V2Vectors, R_SCHEMA_9_InvalidHeadersFailWithTheirError) {
  int n = 0;
  for (const auto& v : headers()["invalid"]) {
    SCOPED_TRACE(v["id"].get<std::string>() + " (" + v["check"].get<std::string>() + ")");
    const auto e = error_of([&] { validate_exact(hex_bytes(v["hex"]), v["mapping_size"]); });
    EXPECT_EQ(outcome(e), v["error"].get<std::string>());
    if (e) {
      EXPECT_EQ(e->field(), "");  // header errors name no field (R-SCHEMA-9)
      if (v["error"] == "CORRUPT_HEADER") {
        EXPECT_NE(std::string(e->what()).find("(" + v["check"].get<std::string>() + ")"),
                  std::string::npos)
            << e->what();  // our messages name the check: the same check failed, not another
      }
    }
    ++n;
  }
  EXPECT_EQ(n, 70);
  std::cout << "[ replay  ] headers_v2.json invalid: " << n << "\n";
}

// R-SCHEMA-5: reserved bytes are ignored on read (decode-only vectors).
TEST(V2Vectors, R_SCHEMA_5_ReservedBytesIgnoredOnRead) {
  int n = 0;
  for (const auto& v : headers()["decode_only"]) {
    SCOPED_TRACE(v["id"].get<std::string>());
    HeaderV2 got;
    ASSERT_NO_THROW(got = validate_exact(hex_bytes(v["hex"]), v["mapping_size"]));
    EXPECT_TRUE(got == header_of(v["fields"]));
    ++n;
  }
  EXPECT_EQ(n, 2);
}

// R-SCHEMA-6, R-SCHEMA-7: the records of every vector schema pair, and its peer-grammar form.
TEST(V2Vectors, R_SCHEMA_7_MessageSchemasDeclare) {
  int n = 0;
  for (const auto& s : messages()["schemas"]) {
    SCOPED_TRACE(s["id"].get<std::string>());
    const Schema request = *schema_of(s["request"]);
    const Schema reply = *schema_of(s["reply"]);
    const SchemaLayout decl = declare_schemas(request, reply);
    EXPECT_TRUE(decl.request == records_of(s["request_schema"]));
    EXPECT_TRUE(decl.reply == records_of(s["reply_schema"]));
    EXPECT_TRUE(Schema::parse(s["spec"]["request"]) == request);
    EXPECT_TRUE(Schema::parse(s["spec"]["reply"]) == reply);
    ++n;
  }
  EXPECT_EQ(n, 5);
}

// R-FIELD-1, R-FIELD-8: valid message tables validate to their entries and encode to their bytes.
TEST(V2Vectors, R_FIELD_8_ValidTables) {
  int n = 0;
  for (const auto& v : messages()["tables"]["valid"]) {
    SCOPED_TRACE(v["id"].get<std::string>());
    const json& s = schema_named(v["schema"]);
    const auto records = records_of(s[v["side"].get<std::string>() + "_schema"]);
    auto raw = hex_bytes(v["hex"]);
    raw.reserve(1);
    const auto entries = validate_table(records, raw.data());
    ASSERT_EQ(entries.size(), v["entries"].size());
    std::vector<TableEntry> want;
    for (const auto& e : v["entries"]) want.push_back(entry_of(e));
    for (std::size_t k = 0; k < want.size(); ++k) EXPECT_TRUE(entries[k] == want[k]) << k;
    std::vector<std::uint8_t> enc(raw.size());
    encode_table(want, enc.data());
    EXPECT_EQ(enc, raw);
    ++n;
  }
  EXPECT_EQ(n, 10);
}

// R-FIELD-8, R-FIELD-7: every invalid table fails with its error naming its field (E1-E8 in order).
TEST(V2Vectors, R_FIELD_8_InvalidTablesNameTheirField) {
  int n = 0;
  for (const auto& v : messages()["tables"]["invalid"]) {
    SCOPED_TRACE(v["id"].get<std::string>() + " (" + v["check"].get<std::string>() + ")");
    const json& s = schema_named(v["schema"]);
    const auto records = records_of(s[v["side"].get<std::string>() + "_schema"]);
    const auto raw = hex_bytes(v["hex"]);
    auto exact = std::make_unique<std::uint8_t[]>(raw.size());
    std::copy(raw.begin(), raw.end(), exact.get());
    const auto e = error_of([&] { validate_table(records, exact.get()); });
    EXPECT_EQ(outcome(e), v["error"].get<std::string>());
    if (e) {
      EXPECT_EQ(e->field(), vector_field(v));
    }
    ++n;
  }
  EXPECT_EQ(n, 23);
}

// R-FIELD-9, R-FIELD-8: the same invalid tables written into a real segment after T1 (T3): the
// responder's take answers with an error reply of that code and raises it naming the field; the
// requester's receive raises it after T4 with reply_code 0 (a reply table) or the code (a request
// table, from the error reply), and the channel is IDLE again.
TEST(V2Vectors, R_FIELD_9_InvalidTablesInASegment) {
  int n = 0;
  for (const auto& v : messages()["tables"]["invalid"]) {
    SCOPED_TRACE(v["id"].get<std::string>());
    const json& s = schema_named(v["schema"]);
    V2Pair p = pair_for(s, "tbl");
    const bool reply_side = v["side"] == "reply";
    const auto raw = hex_bytes(v["hex"]);
    const std::string error = v["error"];
    ZeroFields request(p.layout().request, initial_shapes(p.layout().request));
    p.req.send(request.fields);
    if (!reply_side) {
      std::copy(raw.begin(), raw.end(), p.area(false));  // a rogue rewrites the request table
      const auto e = error_of([&] { p.rsp.take(); });
      ASSERT_TRUE(e);
      EXPECT_EQ(e->name(), error);
      EXPECT_EQ(e->field(), vector_field(v));
      EXPECT_FALSE(p.rsp.held());  // the round is complete (error reply)
      const auto r = error_of([&] { p.req.receive(); });
      ASSERT_TRUE(r);
      EXPECT_EQ(r->name(), error);
      EXPECT_EQ(r->field(), "");  // from a reply_code: no field (R-FIELD-7)
      EXPECT_EQ(r->reply_code(),
                std::optional<std::uint32_t>(static_cast<std::uint32_t>(r->code())));
    } else {
      MessageRequest r = p.rsp.take();
      ZeroFields reply(p.layout().reply, initial_shapes(p.layout().reply));
      std::vector<NamedField> own;
      for (std::size_t k = 0; k < p.layout().reply.size(); ++k) {
        if (!p.layout().reply[k].alias) own.push_back(reply.fields[k]);
      }
      r.reply(own);
      std::copy(raw.begin(), raw.end(), p.area(true));
      const auto e = error_of([&] { p.req.receive(); });
      ASSERT_TRUE(e);
      EXPECT_EQ(e->name(), error);
      EXPECT_EQ(e->field(), vector_field(v));
      EXPECT_EQ(e->reply_code(), std::optional<std::uint32_t>(0));
    }
    EXPECT_EQ(p.req.phase(), Phase::IDLE);
    p.req.send(request.fields);  // and the channel goes on
    ++n;
  }
  EXPECT_EQ(n, 23);
}

// R-FIELD-4, R-FIELD-5, R-FIELD-6, R-FIELD-7: every send/reply case on a fresh segment: the same
// error naming the same field, or the shapes published; a failing call leaves both areas as they
// were and the handle able to go on.
TEST(V2Vectors, R_FIELD_4_SendAndReplyCases) {
  int n = 0, ok = 0;
  for (const auto& v : messages()["send"]) {
    const std::string id = v["id"];
    SCOPED_TRACE(id);
    const json& s = schema_named(v["schema"]);
    V2Pair p = pair_for(s, "snd");
    const auto& L = p.layout();
    const std::string api = v["api"];
    const bool reply_side = v["side"] == "reply";
    // The arrays (copy) or shapes (buffer, field) given, in the caller's order.
    std::vector<std::vector<std::uint8_t>> data;
    std::vector<NamedField> given;
    std::vector<NamedShape> shapes;
    std::vector<std::string> names;
    for (const auto& g : v["given"]) names.push_back(g["name"]);
    data.reserve(v["given"].size());
    for (std::size_t i = 0; i < v["given"].size(); ++i) {
      const json& g = v["given"][i];
      if (api == "copy") {
        const DType d = dtype_named(g["dtype"]);
        const Shape sh = shape_of(g["shape"]);
        data.push_back(zeros_for(d, sh));
        given.push_back({names[i], FieldRef(data.back().data(), d, sh)});
      } else if (!g["shape"].is_null()) {
        shapes.push_back({names[i], shape_of(g["shape"])});
      }
    }
    std::vector<std::pair<std::string, Shape>> published;  // the shapes the call publishes
    std::optional<Error> e;
    std::optional<MessageRequest> r;
    std::vector<std::uint8_t> before_req, before_rep;
    if (!reply_side) {
      before_req = p.snapshot(false);
      before_rep = p.snapshot(true);
      e = error_of([&] {
        if (api == "copy") {
          p.req.send(given);
        } else {
          p.req.request_buffer(shapes);
          p.req.send_in_place();
        }
      });
      if (!e) {
        MessageRequest t = p.rsp.take();
        for (const auto& name : t.request().names()) {
          published.emplace_back(name, t.request().shape(name));
        }
        t.fail(ErrorCode::INVALID_ARGUMENT);
      }
    } else {
      std::vector<Shape> taken;
      for (std::size_t k = 0; k < L.request.size(); ++k)
        taken.push_back(shape_of(v["taken"][k]["shape"]));
      ZeroFields request(L.request, taken);
      p.req.send(request.fields);
      r = p.rsp.take();
      for (const auto& pr : v.value("prepared", json::array())) {
        r->reply_field(pr["name"].get<std::string>(), shape_of(pr["shape"]));
      }
      before_req = p.snapshot(false);
      before_rep = p.snapshot(true);
      e = error_of([&] {
        if (api == "copy") {
          r->reply(given);
        } else if (api == "buffer") {
          r->reply_buffer(shapes);
          r->reply();
        } else {  // "field": the one call reply_field(name, shape) (README: its outcome is the
                  // case's)
          const RawField f =
              shapes.empty() ? r->reply_field(names[0]) : r->reply_field(names[0], shapes[0].shape);
          published.emplace_back(names[0], f.shape);
        }
      });
      if (!e && api != "field") {
        MessageView m = p.req.receive();
        for (const auto& name : m.names()) published.emplace_back(name, m.shape(name));
      }
    }
    EXPECT_EQ(outcome(e), v["error"].get<std::string>());
    if (e) {
      EXPECT_EQ(e->field(), vector_field(v));
      EXPECT_EQ(p.snapshot(false), before_req) << "a failing call changed the request area";
      EXPECT_EQ(p.snapshot(true), before_rep) << "a failing call changed the reply area";
      if (reply_side) {  // the responder still holds the request and may call again (R-FIELD-6)
        EXPECT_EQ(p.rsp.held(), std::optional<std::uint32_t>(r->seq()));
        EXPECT_FALSE(r->answered());
        r->fail(ErrorCode::INVALID_ARGUMENT);
        EXPECT_CODE(p.req.receive(), ErrorCode::INVALID_ARGUMENT);
      } else {
        EXPECT_EQ(p.req.phase(), Phase::IDLE);
        EXPECT_FALSE(p.req.pending());
      }
    } else {
      ASSERT_EQ(published.size(), v["shapes"].size());
      for (std::size_t k = 0; k < published.size(); ++k) {
        EXPECT_EQ(published[k].first, v["shapes"][k][0].get<std::string>());
        EXPECT_EQ(published[k].second, shape_of(v["shapes"][k][1]))
            << published[k].first << " " << published[k].second.to_string();
      }
      if (reply_side && api == "field") r->fail(ErrorCode::INVALID_ARGUMENT);
      ++ok;
    }
    // The handle goes on: a full round (every path above ended a taken request with this code).
    if (p.req.pending()) {
      EXPECT_CODE(p.req.receive(), ErrorCode::INVALID_ARGUMENT);
    }
    ZeroFields again(L.request, initial_shapes(L.request));
    p.req.send(again.fields);
    MessageRequest t = p.rsp.take();
    t.fail(ErrorCode::INVALID_ARGUMENT);
    EXPECT_CODE(p.req.receive(), ErrorCode::INVALID_ARGUMENT);
    ++n;
  }
  EXPECT_EQ(n, 46);
  EXPECT_EQ(ok, 18);
  std::cout << "[ replay  ] messages_v2.json send: " << n << " (" << ok << " succeed)\n";
}

// R-SCHEMA-10, R-FIELD-7: attaching with stated schemas gives the case's error naming its field,
// and a failed attach leaves the role's slot unclaimed.
TEST(V2Vectors, R_SCHEMA_10_AttachExpectations) {
  int n = 0, ok = 0;
  for (const auto& v : messages()["expect"]) {
    SCOPED_TRACE(v["id"].get<std::string>());
    const json& s = schema_named(v["schema"]);
    UniqueName name("exp");
    auto req = MessageRequester::create(name, *schema_of(s["request"]), *schema_of(s["reply"]),
                                        fast_options());
    const json& x = v["expected"];
    std::optional<Schema> request, reply;
    if (!x["request"].is_null()) request = *schema_of(x["request"]);
    if (!x["reply"].is_null()) reply = *schema_of(x["reply"]);
    std::optional<MessageResponder> rsp;
    const auto e = error_of(
        [&] { rsp.emplace(MessageResponder::attach(name, request, reply, fast_options())); });
    EXPECT_EQ(outcome(e), v["error"].get<std::string>());
    Segment raw = Segment::attach(name, std::chrono::seconds(1));
    const SlotRef slot(raw.base() + layout::kOffResponderSlot);
    if (e) {
      EXPECT_EQ(e->field(), vector_field(v));
      EXPECT_EQ(slot.pid(), 0u);  // nothing in the segment changed (R-SCHEMA-10)
      EXPECT_EQ(slot.state(), static_cast<std::uint32_t>(SlotState::empty));
    } else {
      EXPECT_EQ(slot.pid(), current_pid());
      ++ok;
    }
    ++n;
  }
  EXPECT_EQ(n, 25);
  EXPECT_EQ(ok, 5);
}

// R-SCHEMA-3, R-SCHEMA-1, R-SCHEMA-2, R-SCHEMA-4, R-FIELD-7: every bad declaration fails at create
// with its error naming its field (C1, C9: none), and no OS object exists afterwards. Cases C++
// cannot express (an extent below 0 or above 2^64 - 1) are listed, never counted as passed.
TEST(V2Vectors, R_SCHEMA_3_Declarations) {
  int n = 0;
  std::set<std::string> not_applicable;
  for (const auto& v : messages()["declare"]) {
    const std::string id = v["id"];
    SCOPED_TRACE(id);
    const auto request = schema_of(v["request"]);
    const auto reply = schema_of(v["reply"]);
    if (!request || !reply) {
      not_applicable.insert(id);
      continue;
    }
    UniqueName name("decl");
    const auto e =
        error_of([&] { MessageRequester::create(name, *request, *reply, fast_options()); });
    EXPECT_EQ(outcome(e), v["error"].get<std::string>());
    if (e) {
      EXPECT_EQ(e->field(), vector_field(v));
    }
    EXPECT_FALSE(name.exists());
    // Building the schema reported nothing (R-SCHEMA-3): it happened above without an error.
    ++n;
  }
  const std::set<std::string> expected_na = {"C-NEGATIVE", "C-NEGATIVE-MAXIMUM", "C-EXTENT-2^64"};
  EXPECT_EQ(not_applicable, expected_na);
  EXPECT_EQ(n + static_cast<int>(not_applicable.size()), 20);
  std::cout << "[ replay  ] messages_v2.json declare: " << n << " replayed, "
            << not_applicable.size() << " not applicable in C++ (unsigned extents)\n";
}
