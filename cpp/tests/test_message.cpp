// Protocol v2 channel, requirement by requirement (spec/PROTOCOL.md Part II): schemas
// (R-SCHEMA-*), message tables and fields (R-FIELD-*), versions (R-VER-*). The shared vectors are
// replayed by test_v2_vectors.cpp; these tests cover what the vectors cannot state (orders no
// vector fixes, ownership of the areas, views, error replies, versions across APIs).
#include <cstring>
#include <thread>

#include "v2_util.hpp"

using namespace shmbridge;
using namespace shmbridge::test;

namespace {

Schema camera_request() {
  return Schema{}.field<std::uint8_t>("image", {480, 640, 3}).field<double>("stamp", {});
}
Schema camera_reply() { return Schema{}.field<float>("boxes", {upto(100), 6}); }
Schema mixed_request() {
  return Schema::parse("state:float64:<=64;grid:uint16:<=4,5,<=6;flag:bool:");
}
Schema mixed_reply() { return Schema::parse("action:float32:<=8;grid:=grid;code:int8:"); }

// A full camera round: image filled with `v`, stamp `t`; the responder answers n boxes.
struct Camera {
  std::vector<std::uint8_t> image = std::vector<std::uint8_t>(480 * 640 * 3, 1);
  double stamp = 0.5;
  std::vector<NamedField> fields() {
    return {{"image", FieldRef(image.data(), {480, 640, 3})}, {"stamp", FieldRef(&stamp, {})}};
  }
};

template <class F>
std::string field_of(F&& f) {
  const auto e = error_of(std::forward<F>(f));
  return e ? e->field() : "<no error>";
}

}  // namespace

// ---- schemas
// -------------------------------------------------------------------------------------

// R-SCHEMA-1: a schema may have no fields (a request that only triggers, a reply that only
// acknowledges).
TEST(MessageSchema, R_SCHEMA_1_EmptySchemasRoundTrip) {
  V2Pair p(Schema{}, Schema{});
  EXPECT_EQ(p.layout().header_size, 512u);
  EXPECT_EQ(p.layout().capacity, 0u);
  const std::uint32_t seq = p.req.send({});
  MessageRequest r = p.rsp.take();
  EXPECT_EQ(r.seq(), seq);
  EXPECT_TRUE(r.request().empty());
  r.reply();
  const MessageView v = p.req.receive();
  EXPECT_EQ(v.size(), 0u);
  EXPECT_EQ(v.seq(), seq);
}

// R-SEG-1 (1.1 errata) in v2: the capacity follows from the schemas, so a stated one is
// INVALID_ARGUMENT at create, before any OS object.
TEST(MessageSchema, R_SEG_1_V2CreateRejectsAStatedCapacity) {
  UniqueName n("v2cap");
  Options opt;
  opt.capacity = 4096;
  EXPECT_CODE(MessageRequester::create(n, Schema{}, Schema{}, opt), ErrorCode::INVALID_ARGUMENT);
  opt.capacity.reset();
  EXPECT_NO_THROW(MessageRequester::create(n, Schema{}, Schema{}, opt));  // the name was free
}

// R-SCHEMA-1: 16 fields per schema, 0-d fields (one element), and a variable extent whose
// maximum is 0.
TEST(MessageSchema, R_SCHEMA_1_SixteenScalarFieldsAndAZeroMaximum) {
  Schema request, reply;
  for (int k = 0; k < 16; ++k) request.field<std::int32_t>("f" + std::to_string(k), {});
  for (int k = 0; k < 15; ++k) reply.field<double>("g" + std::to_string(k), {});
  reply.field<float>("none", {upto(0)});
  V2Pair p(request, reply);
  std::vector<std::int32_t> values(16);
  std::vector<NamedField> fields;
  std::vector<std::string> names;
  for (int k = 0; k < 16; ++k) names.push_back("f" + std::to_string(k));
  for (int k = 0; k < 16; ++k) {
    values[k] = 100 + k;
    fields.push_back({names[k], FieldRef(&values[k], {})});
  }
  p.req.send(fields);
  MessageRequest r = p.rsp.take();
  std::vector<double> out(15);
  std::vector<NamedField> reply_fields;
  std::vector<std::string> rnames;
  for (int k = 0; k < 15; ++k) rnames.push_back("g" + std::to_string(k));
  for (int k = 0; k < 15; ++k) {
    const auto f = r.request().field<std::int32_t>(names[k]);
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f.shape().ndim(), 0u);
    out[k] = f[0] * 2.0;
    reply_fields.push_back({rnames[k], FieldRef(&out[k], {})});
  }
  reply_fields.push_back({"none", FieldRef(static_cast<const float*>(nullptr), {0})});
  r.reply(reply_fields);
  const MessageView v = p.req.receive();
  for (int k = 0; k < 15; ++k) EXPECT_EQ(v.field<double>(rnames[k])[0], (100 + k) * 2.0);
  EXPECT_TRUE(v.field<float>("none").empty());
  EXPECT_CODE(p.req.send({{"f0", FieldRef(&values[0], {})}}), ErrorCode::SCHEMA_MISMATCH);
}

// R-SCHEMA-2: 31 characters is the longest name; the same name may be used once in each schema.
TEST(MessageSchema, R_SCHEMA_2_NameLengthAndSameNameInBothSchemas) {
  const std::string n31(31, 'a'), n32(32, 'a');
  UniqueName a("nm"), b("nm");
  EXPECT_NO_THROW(MessageRequester::create(a, Schema{}.field<float>(n31, {2}),
                                           Schema{}.field<float>(n31, {2}), fast_options()));
  const auto e = error_of([&] {
    MessageRequester::create(b, Schema{}.field<float>(n32, {2}), Schema{}, fast_options());
  });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), ErrorCode::INVALID_ARGUMENT);
  EXPECT_EQ(e->field(), n32);
  EXPECT_FALSE(b.exists());
}

// R-SCHEMA-3: building a schema reports nothing; create checks the segment name first, then the
// schemas, and creates nothing for a bad declaration.
TEST(MessageSchema, R_SCHEMA_3_BuilderReportsNothingCreateChecksNameFirst) {
  Schema bad;
  EXPECT_NO_THROW({
    for (int k = 0; k < 17; ++k) bad.field<float>("9bad", {1, 1, 1, 1, 1, 1, 1, 1, 1});
    bad.inplace("x", "nowhere");
  });
  EXPECT_EQ(bad.size(), 18u);
  UniqueName n("decl");
  EXPECT_CODE(MessageRequester::create("bad name!", bad, Schema{}), ErrorCode::INVALID_NAME);
  const auto e = error_of([&] { MessageResponder::create(n, bad, Schema{}); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), ErrorCode::INVALID_ARGUMENT);  // C1 comes first
  EXPECT_EQ(e->field(), "");
  EXPECT_FALSE(n.exists());
}

// R-SCHEMA-4: a reply field in place onto a request field has no storage of its own: the
// responder writes the target's storage and the requester reads the reply there.
TEST(MessageSchema, R_SCHEMA_4_InPlaceReplyUsesItsTargetsStorage) {
  V2Pair p(Schema{}.field<float>("array", {4, 4}), Schema{}.inplace("out", "array"));
  const FieldRecord& target = p.layout().request[0];
  const FieldRecord& out = p.layout().reply[0];
  EXPECT_EQ(out.alias, 1u);
  EXPECT_EQ(out.offset, target.offset);
  EXPECT_EQ(out.dtype, target.dtype);
  EXPECT_EQ(out.max_nbytes, target.max_nbytes);
  EXPECT_EQ(p.layout().geometry.reply_area_size, 128u);  // its table only
  std::vector<float> in(16);
  for (int i = 0; i < 16; ++i) in[i] = static_cast<float>(i);
  p.req.send({{"array", FieldRef(in.data(), {4, 4})}});
  MessageRequest r = p.rsp.take();
  const auto request = r.request().field<float>("array");
  const auto reply = r.reply_field<float>("out", {4, 4});
  EXPECT_EQ(static_cast<const void*>(reply.data()), static_cast<const void*>(request.data()));
  for (float& x : reply) x += 1.0f;
  r.reply();
  const MessageView v = p.req.receive();
  const auto got = v.field<float>("out");
  for (int i = 0; i < 16; ++i) EXPECT_EQ(got[i], in[i] + 1.0f);
  // R-FIELD-11's exception: the reply view of an in-place field is its target's storage, so the
  // requester writing that request field changes what the view shows.
  MessageBuffer next = p.req.request_buffer();
  next.field<float>("array")[0] = 42.0f;
  EXPECT_EQ(got[0], 42.0f);
}

// R-SCHEMA-5, R-SCHEMA-6, R-SCHEMA-8, R-FIELD-2: a created segment holds exactly the header the
// schemas give (v1's message descriptor and every reserved byte zero), published, with both
// initial message tables in place.
TEST(MessageSchema, R_SCHEMA_6_CreatedSegmentIsTheDeclaredHeader) {
  V2Pair p(mixed_request(), mixed_reply());
  const SchemaLayout decl = declare_schemas(mixed_request(), mixed_reply());
  HeaderV2 want = HeaderV2::fresh(decl);
  const HeaderV2 got = validate_header_v2(p.raw.base(), p.raw.size());
  want.requester = got.requester;  // the slots belong to the processes (R-LIVE-1)
  want.responder = got.responder;
  want.creator = got.creator;
  EXPECT_TRUE(got == want);
  std::vector<std::uint8_t> bytes(want.header_size);
  encode_header_v2(want, bytes.data());
  EXPECT_EQ(std::memcmp(bytes.data(), p.raw.base(), want.header_size), 0);
  for (std::size_t i = 0x90; i < 0xE0; ++i) ASSERT_EQ(p.raw.base()[i], 0) << i;  // R-SCHEMA-5
  EXPECT_EQ(want.header_size, 512u + 128u * 6u);
  for (bool reply : {false, true}) {  // R-FIELD-2
    const auto& recs = decl.side(reply);
    std::vector<std::uint8_t> table(layout_v2::kEntrySize * recs.size());
    encode_table(initial_table(recs), table.data());
    EXPECT_EQ(std::memcmp(table.data(), p.area(reply), table.size()), 0) << reply;
  }
  EXPECT_EQ(p.req.capacity(), decl.capacity);
}

// R-SCHEMA-7: the camera worked example of PROTOCOL.md §II.4, and every offset a multiple of 64.
TEST(MessageSchema, R_SCHEMA_7_CameraWorkedExample) {
  const SchemaLayout s = declare_schemas(camera_request(), camera_reply());
  EXPECT_EQ(s.header_size, 896u);
  EXPECT_EQ(s.request[0].offset, 1088u);
  EXPECT_EQ(s.request[1].offset, 922688u);
  EXPECT_EQ(s.geometry.request_area_size, 921856u);
  EXPECT_EQ(s.geometry.reply_area_offset, 922752u);
  EXPECT_EQ(s.reply[0].offset, 922880u);
  EXPECT_EQ(s.geometry.reply_area_size, 2560u);
  EXPECT_EQ(s.capacity, 924416u);
  EXPECT_EQ(s.segment_size, 925312u);
  for (const auto* side : {&s.request, &s.reply}) {
    for (const auto& r : *side) EXPECT_EQ(r.offset % 64, 0u) << r.name;
  }
}

// R-SCHEMA-9, R-VER-7: a creator that finds a stale v2 object reclaims it, one whose header does
// not validate (a schema record broken) is never touched. POSIX: a Windows mapping that nobody
// holds is gone, so no stale segment persists there (R-SEG-5).
#if !defined(_WIN32)
TEST(MessageSchema, R_SCHEMA_9_CreatorNeverReclaimsACorruptV2Segment) {
  UniqueName n("corr");
  Options keep = fast_options();
  keep.keep_segment = true;
  {
    auto req = MessageRequester::create(n, camera_request(), camera_reply(), keep);
  }  // closed and kept: stale (R-STALE-1)
  {
    Segment raw = Segment::attach(n, std::chrono::seconds(1));
    layout::store_u32(raw.base() + layout_v2::kOffSchemaTable + layout_v2::kRecDType, 99);  // F3
  }
  const auto e = error_of([&] { MessageRequester::create(n, camera_request(), camera_reply()); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), ErrorCode::CORRUPT_HEADER);
  EXPECT_EQ(e->field(), "");
  EXPECT_TRUE(n.exists());
}
#endif

// R-SCHEMA-10: an attacher checks the name, then the schemas it states (C1-C8), before it
// touches any OS object: no wait for a segment that does not exist.
TEST(MessageSchema, R_SCHEMA_10_StatedSchemasCheckedBeforeAnyOSObject) {
  UniqueName missing("miss");
  Options slow = fast_options();
  slow.timeout = std::chrono::seconds(3);
  const auto t0 = std::chrono::steady_clock::now();
  const auto e = error_of([&] {
    MessageResponder::attach(missing, Schema{}.field<float>("1x", {}), std::nullopt, slow);
  });
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), ErrorCode::INVALID_ARGUMENT);
  EXPECT_EQ(e->field(), "1x");
  EXPECT_CODE(MessageResponder::attach("-bad", Schema{}.field<float>("1x", {}), std::nullopt, slow),
              ErrorCode::INVALID_NAME);
  // Stated and equal: attach works; stated and different: nothing is claimed.
  V2Pair p(camera_request(), camera_reply());
  EXPECT_EQ(p.rsp.request_schema(), camera_request());
  EXPECT_EQ(p.req.reply_schema(), camera_reply());
  p.rsp.close();
  EXPECT_CODE(MessageResponder::attach(p.name, camera_request(), camera_request(), fast_options()),
              ErrorCode::SCHEMA_MISMATCH);
  EXPECT_NO_THROW(
      MessageResponder::attach(p.name, camera_request(), camera_reply(), fast_options()));
}

// ---- message tables and fields
// -------------------------------------------------------------------

// R-FIELD-1: the table entry of every field at area_offset + 80 k, its data at the field's offset.
TEST(MessageField, R_FIELD_1_EntriesAtTheAreaStartDataAtTheFieldOffset) {
  V2Pair p(mixed_request(), mixed_reply());
  std::vector<double> state = {1.5, 2.5, 3.5};
  std::vector<std::uint16_t> grid(2 * 5 * 1);
  for (std::size_t i = 0; i < grid.size(); ++i) grid[i] = static_cast<std::uint16_t>(i + 7);
  bool flag = true;
  p.req.send({{"grid", FieldRef(grid.data(), {2, 5, 1})},
              {"state", FieldRef(state.data(), {3})},
              {"flag", FieldRef(&flag, {})}});
  const auto& recs = p.layout().request;
  const Shape shapes[] = {{3}, {2, 5, 1}, {}};
  const void* data[] = {state.data(), grid.data(), &flag};
  for (std::size_t k = 0; k < 3; ++k) {
    const TableEntry e = decode_descriptor(p.area(false) + 80 * k);
    EXPECT_TRUE(e == table_entry(recs[k], shapes[k])) << k;
    EXPECT_EQ(std::memcmp(p.raw.base() + recs[k].offset, data[k], e.nbytes), 0) << k;
  }
}

// R-FIELD-3: the requester never writes the reply area, the responder never writes the request
// area (no reply field in place), so each side may read the other's last message meanwhile.
TEST(MessageField, R_FIELD_3_EachRoleWritesOnlyItsArea) {
  V2Pair p(camera_request(), camera_reply());
  Camera cam;
  p.req.send(cam.fields());
  MessageRequest r = p.rsp.take();
  std::vector<float> boxes(3 * 6, 2.0f);
  r.reply({{"boxes", FieldRef(boxes.data(), {3, 6})}});
  const auto request_area = p.snapshot(false);
  (void)p.req.receive();
  const auto reply_area = p.snapshot(true);
  cam.image.assign(cam.image.size(), 9);
  p.req.send(cam.fields());  // writes the request area only
  EXPECT_EQ(p.snapshot(true), reply_area);
  r = p.rsp.take();
  const auto req_now = p.snapshot(false);
  EXPECT_NE(req_now, request_area);
  r.reply({{"boxes", FieldRef(boxes.data(), {0, 6})}});  // writes the reply area only
  EXPECT_EQ(p.snapshot(false), req_now);
}

// R-FIELD-4: S1/S2 in one pass in the caller's order, S3 in schema order, S4 before S5 (no
// vector fixes that pair), and every field check before the word: a bad send while a request is
// outstanding fails with the field's error (vectors decision V3), a good one with OUT_OF_TURN.
TEST(MessageField, R_FIELD_4_CheckOrderAndFieldChecksBeforeTheWord) {
  V2Pair p(camera_request(), camera_reply());
  Camera cam;
  const FieldRef image(cam.image.data(), {480, 640, 3});
  const FieldRef stamp(&cam.stamp, {});
  const double x = 1.0;
  EXPECT_EQ(
      field_of([&] { p.req.send({{"x", FieldRef(&x, {})}, {"image", image}, {"image", image}}); }),
      "x");
  EXPECT_EQ(
      field_of([&] { p.req.send({{"image", image}, {"image", image}, {"x", FieldRef(&x, {})}}); }),
      "image");
  const std::vector<std::int16_t> wrong(480 * 640);
  const auto e = error_of(
      [&] { p.req.send({{"image", FieldRef(wrong.data(), {480, 640})}, {"stamp", stamp}}); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), ErrorCode::DTYPE_MISMATCH);  // S4 before S5
  EXPECT_EQ(e->field(), "image");
  p.req.send({{"image", image}, {"stamp", stamp}});
  const auto before = p.snapshot(false);
  EXPECT_CODE(p.req.send({{"image", image}}), ErrorCode::SCHEMA_MISMATCH);  // S3, not the word
  EXPECT_CODE(p.req.send({{"image", image}, {"stamp", stamp}}), ErrorCode::OUT_OF_TURN);
  EXPECT_EQ(p.snapshot(false), before);
  EXPECT_EQ(p.req.phase(), Phase::REQUESTED);
}

// R-FIELD-5: the zero-copy send: shapes for the variable fields (fixed ones optional), writable
// views of every request field, send_in_place publishes them; no view is handed out out of turn.
TEST(MessageField, R_FIELD_5_RequestBufferThenSendInPlace) {
  V2Pair p(mixed_request(), mixed_reply());
  EXPECT_CODE(p.req.send_in_place(), ErrorCode::OUT_OF_TURN);  // nothing handed out
  MessageBuffer buf = p.req.request_buffer({{"grid", {2, 5, 3}}, {"state", {4}}});
  EXPECT_EQ(buf.shape("flag"), Shape{});  // fixed: the declared shape
  auto state = buf.field<double>("state");
  ASSERT_EQ(state.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) state[i] = 10.0 + static_cast<double>(i);
  auto grid = buf.field<std::uint16_t>("grid");
  ASSERT_EQ(grid.size(), 30u);
  for (std::size_t i = 0; i < 30; ++i) grid[i] = static_cast<std::uint16_t>(i);
  buf.field<bool>("flag")[0] = true;
  const std::uint32_t seq = p.req.send_in_place();
  EXPECT_CODE(p.req.request_buffer({{"grid", {1, 5, 1}}, {"state", {1}}}), ErrorCode::OUT_OF_TURN);
  MessageRequest r = p.rsp.take();
  EXPECT_EQ(r.seq(), seq);
  const auto s = r.request().field<double>("state");
  EXPECT_EQ(s.shape(), Shape({4}));
  EXPECT_EQ(s[3], 13.0);
  EXPECT_EQ(r.request().field<std::uint16_t>("grid")[29], 29);
  EXPECT_TRUE(r.request().field<bool>("flag")[0]);
  EXPECT_EQ(field_of([&] { p.req.request_buffer({{"grid", {2, 6, 3}}, {"state", {4}}}); }),
            "grid");  // S6, before the word
}

// R-FIELD-6: every reply call checks its precondition first; a rejected call prepares nothing.
TEST(MessageField, R_FIELD_6_ReplyPreconditionFirstAndPreparedShapes) {
  V2Pair p(mixed_request(), mixed_reply());
  std::vector<double> state = {1.0, 2.0};
  std::vector<std::uint16_t> grid(1 * 5 * 2, 3);
  bool flag = false;
  p.req.send({{"state", FieldRef(state.data(), {2})},
              {"grid", FieldRef(grid.data(), {1, 5, 2})},
              {"flag", FieldRef(&flag, {})}});
  MessageRequest r = p.rsp.take();
  EXPECT_CODE(r.reply_field<float>("action", {9}), ErrorCode::CAPACITY_EXCEEDED);  // S7
  EXPECT_CODE(r.reply(), ErrorCode::SCHEMA_MISMATCH);  // 'action' not prepared: S3
  auto action = r.reply_field<float>("action", {2});
  action[0] = 0.25f;
  action[1] = 0.75f;
  r.reply_field<std::int8_t>("code")[0] = 7;  // fixed: no shape needed
  r.reply();  // grid (in place) defaults to its target's shape as taken
  EXPECT_CODE(r.reply({{"nope", FieldRef(&flag, {})}}), ErrorCode::OUT_OF_TURN);  // precondition
  EXPECT_CODE(r.reply_field<float>("action", {1}), ErrorCode::OUT_OF_TURN);
  EXPECT_CODE(r.fail(ErrorCode::INVALID_ARGUMENT), ErrorCode::OUT_OF_TURN);
  const MessageView v = p.req.receive();
  EXPECT_EQ(v.shape("grid"), Shape({1, 5, 2}));
  EXPECT_EQ(v.field<std::uint16_t>("grid")[0], 3);
  EXPECT_EQ(v.field<float>("action")[1], 0.75f);
  EXPECT_EQ(v.field<std::int8_t>("code")[0], 7);
  // reply_buffer: views of every reply field; in-place and fixed fields may be omitted.
  p.req.send({{"state", FieldRef(state.data(), {2})},
              {"grid", FieldRef(grid.data(), {1, 5, 2})},
              {"flag", FieldRef(&flag, {})}});
  r = p.rsp.take();
  MessageBuffer b = r.reply_buffer({{"action", {0}}});
  EXPECT_EQ(b.shape("grid"), Shape({1, 5, 2}));
  EXPECT_EQ(b.raw("grid").data, r.request().ref("grid").data);  // in place: the target's storage
  r.reply();
  EXPECT_EQ(p.req.receive().shape("action"), Shape({0}));
}

// R-FIELD-7: the errors of field checks name the field (attribute and message); header errors
// and errors raised from a reply_code name none.
TEST(MessageField, R_FIELD_7_ErrorsNameTheirField) {
  V2Pair p(camera_request(), camera_reply());
  Camera cam;
  const std::vector<float> too_many(101 * 6);
  p.req.send(cam.fields());
  MessageRequest r = p.rsp.take();
  const auto e = error_of([&] { r.reply({{"boxes", FieldRef(too_many.data(), {101, 6})}}); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), ErrorCode::CAPACITY_EXCEEDED);
  EXPECT_EQ(e->field(), "boxes");
  EXPECT_NE(std::string(e->what()).find("field 'boxes'"), std::string::npos) << e->what();
  r.fail(ErrorCode::CAPACITY_EXCEEDED);
  const auto got = error_of([&] { p.req.receive(); });
  ASSERT_TRUE(got);
  EXPECT_EQ(got->code(), ErrorCode::CAPACITY_EXCEEDED);
  EXPECT_EQ(got->field(), "");  // the code carries no field across processes
  std::vector<std::uint8_t> header(512, 0);
  const auto h = error_of([&] { validate_header_v2(header.data(), 512); });
  ASSERT_TRUE(h);
  EXPECT_EQ(h->field(), "");
}

// R-FIELD-8, R-FIELD-10: the reply table is checked only when reply_code is 0: an error reply
// over a broken reply table raises the reply's code, and leaves the reply area as it was.
TEST(MessageField, R_FIELD_10_ErrorReplyWritesNoReplyAreaAndIsNotValidated) {
  V2Pair p(camera_request(), camera_reply());
  Camera cam;
  p.req.send(cam.fields());
  MessageRequest r = p.rsp.take();
  layout::store_u32(p.area(true), 99);  // a rogue breaks the reply table (E1)
  const auto reply_area = p.snapshot(true);
  r.fail(ErrorCode::HANDLER_FAILED);
  EXPECT_EQ(p.snapshot(true), reply_area);
  EXPECT_CODE(p.req.receive(), ErrorCode::HANDLER_FAILED);
  // R-CLOSE-2: a responder closing while it holds a request: reply_code only.
  p.req.send(cam.fields());
  (void)p.rsp.take();
  p.rsp.close();
  EXPECT_EQ(p.snapshot(true), reply_area);
  const auto gone = error_of([&] { p.req.receive(); });
  ASSERT_TRUE(gone);
  EXPECT_EQ(gone->code(), ErrorCode::PEER_GONE);
  EXPECT_EQ(gone->peer_gone_reason(), PeerGoneReason::closed);
}

// R-FIELD-10, R-REC-2: T8 (a new responder completing a dead predecessor's round) writes
// reply_code only.
TEST(MessageField, R_FIELD_10_RecoveryWritesReplyCodeOnly) {
  V2Pair p(camera_request(), camera_reply());
  p.rsp.close();
  Camera cam;
  const std::uint32_t seq = p.req.send(cam.fields());
  // A responder took it and died: the word is TAKEN and its slot names a pid that does not exist.
  std::uint8_t* slot = p.raw.base() + layout::kOffResponderSlot;
  atomic_u32(p.raw.base() + layout::kOffWord).store(make_word(Phase::TAKEN, seq));
  atomic_u32(slot + layout::kSlotPid).store(0x3FFFFFF0u);
  atomic_u32(slot + layout::kSlotState).store(static_cast<std::uint32_t>(SlotState::attached));
  const auto reply_area = p.snapshot(true);
  auto rsp = MessageResponder::attach(p.name, fast_options());  // T8
  EXPECT_EQ(p.snapshot(true), reply_area);
  EXPECT_EQ(p.req.phase(), Phase::REPLIED);
  const auto e = error_of([&] { p.req.receive(); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), ErrorCode::PEER_GONE);
  EXPECT_EQ(e->peer_gone_reason(), PeerGoneReason::died);
  EXPECT_EQ(e->reply_code(), std::optional<std::uint32_t>(7));
}

// R-FIELD-10, R-STATE-10: a late reply that send consumes and drops is neither read nor validated.
TEST(MessageField, R_FIELD_10_DroppedLateReplyIsNotValidated) {
  V2Pair p(camera_request(), camera_reply());
  Camera cam;
  p.req.send(cam.fields());
  MessageRequest r = p.rsp.take();
  EXPECT_CODE(p.req.receive(std::chrono::nanoseconds::zero()), ErrorCode::TIMEOUT);  // TAKEN: kept
  std::vector<float> boxes(6, 1.0f);
  r.reply({{"boxes", FieldRef(boxes.data(), {1, 6})}});
  layout::store_u32(p.area(true), 0);  // a broken reply table (E1): never looked at
  EXPECT_NO_THROW(p.req.send(cam.fields()));
  EXPECT_EQ(p.req.phase(), Phase::REQUESTED);
}

// R-FIELD-11, R-CLOSE-3: a reply view stays valid while the requester fills a request buffer
// (separate areas), and after both handles closed (the mapping lives with the view).
TEST(MessageField, R_FIELD_11_ReplyViewOutlivesRequestBufferAndClose) {
  MessageView v;
  {
    V2Pair p(camera_request(), camera_reply());
    Camera cam;
    p.req.send(cam.fields());
    MessageRequest r = p.rsp.take();
    std::vector<float> boxes(4 * 6);
    for (std::size_t i = 0; i < boxes.size(); ++i) boxes[i] = static_cast<float>(i);
    r.reply({{"boxes", FieldRef(boxes.data(), {4, 6})}});
    v = p.req.receive();
    MessageBuffer b = p.req.request_buffer();
    auto image = b.field<std::uint8_t>("image");
    std::fill(image.begin(), image.end(), 0xAB);
    EXPECT_EQ(v.field<float>("boxes")[23], 23.0f);
    p.req.close();
    p.rsp.close();
  }
  const auto boxes = v.field<float>("boxes");  // the segment is unlinked, the mapping is not
  ASSERT_EQ(boxes.size(), 24u);
  EXPECT_EQ(boxes[5], 5.0f);
}

// R-FIELD-12: typed access by an unknown name is SCHEMA_MISMATCH naming it; by the wrong element
// type DTYPE_MISMATCH naming the field; neither changes anything.
TEST(MessageField, R_FIELD_12_TypedAccessChecksNameAndElementType) {
  V2Pair p(camera_request(), camera_reply());
  Camera cam;
  p.req.send(cam.fields());
  MessageRequest r = p.rsp.take();
  auto e = error_of([&] { r.request().field<std::uint8_t>("frame"); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), ErrorCode::SCHEMA_MISMATCH);
  EXPECT_EQ(e->field(), "frame");
  e = error_of([&] { r.request().field<float>("image"); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), ErrorCode::DTYPE_MISMATCH);
  EXPECT_EQ(e->field(), "image");
  e = error_of([&] { r.reply_field<double>("boxes", {1, 6}); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), ErrorCode::DTYPE_MISMATCH);
  EXPECT_EQ(e->field(), "boxes");
  EXPECT_CODE(r.reply(), ErrorCode::SCHEMA_MISMATCH);  // the failed call prepared nothing
  const auto image = r.request().field<std::uint8_t>("image");
  EXPECT_EQ(image.size(), 480u * 640u * 3u);
  EXPECT_EQ(image.shape(), Shape({480, 640, 3}));
  EXPECT_EQ(r.request().field<double>("stamp")[0], 0.5);
  r.reply({{"boxes", FieldRef(static_cast<const float*>(nullptr), {0, 6})}});
  const Message m = p.req.receive_copy();
  EXPECT_EQ(m.shape("boxes"), Shape({0, 6}));
  EXPECT_CODE(m.field<int>("boxes"), ErrorCode::DTYPE_MISMATCH);
}

// R-LIVE-4, R-MSG-3, R-FIELD-6: serve replies after the handler with what it prepared; a handler
// that fails is answered with an error reply (HANDLER_FAILED, or the shmbridge error of the
// library's own reply) and the failure is raised in the responder; serve returns when the
// requester closes.
TEST(MessageField, R_LIVE_4_ServeLoopAcrossThreads) {
  UniqueName n("serve");
  auto req = MessageRequester::create(n, camera_request(), camera_reply(), fast_options());
  std::vector<std::string> raised;
  std::thread responder([&] {
    auto rsp = MessageResponder::attach(n.str(), fast_options());
    auto handler = [&](MessageRequest& r) {
      const double stamp = r.request().field<double>("stamp")[0];
      if (stamp < 0) throw std::runtime_error("negative stamp");
      if (stamp > 100) return;  // prepares nothing: the library's reply fails S3
      const auto n_boxes = static_cast<std::uint64_t>(stamp);
      auto boxes = r.reply_field<float>("boxes", {n_boxes, 6});
      for (std::size_t i = 0; i < boxes.size(); ++i) boxes[i] = static_cast<float>(i);
    };
    for (;;) {
      try {
        rsp.serve(handler);
        return;  // the requester closed
      } catch (const Error& e) {
        raised.push_back(e.name());
      } catch (const std::runtime_error& e) {
        raised.push_back(e.what());
      }
    }
  });
  Camera cam;
  for (double s : {3.0, 0.0}) {
    cam.stamp = s;
    const Message m = req.call(cam.fields());
    EXPECT_EQ(m.shape("boxes"), Shape({static_cast<std::uint64_t>(s), 6}));
    EXPECT_EQ(m.field<float>("boxes").size(), static_cast<std::size_t>(s) * 6);
  }
  cam.stamp = -1;
  EXPECT_CODE(req.call(cam.fields()), ErrorCode::HANDLER_FAILED);
  cam.stamp = 1000;
  EXPECT_CODE(req.call(cam.fields()), ErrorCode::SCHEMA_MISMATCH);
  req.close();
  responder.join();
  EXPECT_EQ(raised, (std::vector<std::string>{"negative stamp", "SCHEMA_MISMATCH"}));
}

// ---- versions
// ------------------------------------------------------------------------------------

// R-VER-2: a v2 reader accepts any version_minor.
TEST(MessageVersion, R_VER_2_AnyMinorVersionAccepted) {
  V2Pair p(camera_request(), camera_reply());
  layout::store_u16(p.raw.base() + layout::kOffVersionMinor, 9);
  p.rsp.close();
  EXPECT_NO_THROW(MessageResponder::attach(p.name, fast_options()));
}

// R-VER-3: the v1 API on a v2 segment: VERSION_MISMATCH with the spec's message, no slot claimed.
TEST(MessageVersion, R_VER_3_V1ApiOnAV2Segment) {
  UniqueName n("v1on2");
  auto req = MessageRequester::create(n, camera_request(), camera_reply(), fast_options());
  const auto e = error_of([&] { Responder::attach(n, fast_options()); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), ErrorCode::VERSION_MISMATCH);
  EXPECT_EQ(
      std::string(e->what()),
      "VERSION_MISMATCH: segment '" + n.str() +
          "' uses protocol v2 (typed messages): attach with MessageRequester/MessageResponder");
  EXPECT_CODE(Requester::attach(n, DType::uint8, {1}, fast_options()), ErrorCode::VERSION_MISMATCH);
  Segment raw = Segment::attach(n, std::chrono::seconds(1));
  EXPECT_EQ(SlotRef(raw.base() + layout::kOffResponderSlot).pid(), 0u);
}

// R-VER-4: the v2 API on a v1 segment, and on an unknown version.
TEST(MessageVersion, R_VER_4_V2ApiOnAV1Segment) {
  UniqueName n("v2on1");
  auto req = Requester::create(n, DType::float32, {512, 512}, fast_options());
  const auto e = error_of([&] { MessageResponder::attach(n, fast_options()); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), ErrorCode::VERSION_MISMATCH);
  EXPECT_EQ(std::string(e->what()), "VERSION_MISMATCH: segment '" + n.str() +
                                        "' uses protocol v1 (one array): attach with "
                                        "Requester/Responder");
  Segment raw = Segment::attach(n, std::chrono::seconds(1));
  EXPECT_EQ(SlotRef(raw.base() + layout::kOffResponderSlot).pid(), 0u);
  layout::store_u16(raw.base() + layout::kOffVersionMajor, 3);
  const auto e3 = error_of([&] { MessageResponder::attach(n, fast_options()); });
  ASSERT_TRUE(e3);
  EXPECT_EQ(e3->code(), ErrorCode::VERSION_MISMATCH);
  EXPECT_NE(std::string(e3->what()).find("version_major 3"), std::string::npos) << e3->what();
  EXPECT_NE(std::string(e3->what()).find("1 or 2"), std::string::npos) << e3->what();
}

// R-VER-5, R-VER-6: each API creates its own version; magic and version_major keep their offsets,
// so a v1-only reader fails on a v2 segment with VERSION_MISMATCH naming version 2.
TEST(MessageVersion, R_VER_6_MagicAndVersionKeepTheirPlace) {
  UniqueName a("ver1"), b("ver2");
  auto v1 = Requester::create(a, DType::uint8, {4}, fast_options());
  auto v2 = MessageRequester::create(b, camera_request(), camera_reply(), fast_options());
  Segment r1 = Segment::attach(a, std::chrono::seconds(1));
  Segment r2 = Segment::attach(b, std::chrono::seconds(1));
  EXPECT_EQ(layout::load_u16(r1.base() + layout::kOffVersionMajor), 1);
  EXPECT_EQ(layout::load_u16(r2.base() + layout::kOffVersionMajor), 2);
  EXPECT_EQ(std::memcmp(r2.base(), layout::kMagic.data(), 8), 0);
  const auto e = error_of([&] { validate_header(r2.base(), r2.size()); });  // v1's own validator
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), ErrorCode::VERSION_MISMATCH);
  EXPECT_NE(std::string(e->what()).find("version_major 2"), std::string::npos);
}

// R-VER-7: a stale segment of either version is reclaimed by a creator of either API; a live
// creator of the other version is ALREADY_EXISTS. POSIX (R-SEG-5: on Windows a closed, kept
// segment is gone, and R-SEG-7's stale mappings are covered by test_win32).
#if !defined(_WIN32)
TEST(MessageVersion, R_VER_7_ReclaimAcrossVersions) {
  UniqueName n("recl");
  Options keep = fast_options();
  keep.keep_segment = true;
  {
    auto v1 = Requester::create(n, DType::uint8, {4}, keep);
  }  // stale v1
  {
    auto v2 = MessageRequester::create(n, camera_request(), camera_reply(), keep);  // reclaims
    EXPECT_CODE(Requester::create(n, DType::uint8, {4}, fast_options()), ErrorCode::ALREADY_EXISTS);
  }  // stale v2
  auto v1 = Requester::create(n, DType::uint8, {4}, fast_options());  // reclaims
  EXPECT_CODE(MessageResponder::create(n, camera_request(), camera_reply(), fast_options()),
              ErrorCode::ALREADY_EXISTS);
  Options no_reclaim = fast_options();
  no_reclaim.reclaim_stale = false;
  v1.close();
  UniqueName m("recl2");
  {
    auto v2 = MessageRequester::create(m, Schema{}, Schema{}, keep);
  }
  EXPECT_CODE(Requester::create(m, DType::uint8, {4}, no_reclaim), ErrorCode::STALE_SEGMENT);
}
#endif

// R-VER-7 on any OS: a live creator of the other version is ALREADY_EXISTS.
TEST(MessageVersion, R_VER_7_LiveCreatorOfTheOtherVersion) {
  UniqueName n("live");
  {  // destroyed, not only closed: on Windows a closed handle still holds the mapping (R-SEG-7)
    auto v2 = MessageRequester::create(n, camera_request(), camera_reply(), fast_options());
    EXPECT_CODE(Requester::create(n, DType::uint8, {4}, fast_options()), ErrorCode::ALREADY_EXISTS);
  }
  auto v1 = Requester::create(n, DType::uint8, {4}, fast_options());
  EXPECT_CODE(MessageResponder::create(n, camera_request(), camera_reply(), fast_options()),
              ErrorCode::ALREADY_EXISTS);
}
