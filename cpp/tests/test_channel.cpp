// The channel API in one process: rounds, zero-copy, R-STATE-9/10, R-TIME-*, R-MSG-2, R-CLOSE-*.
#if !defined(_WIN32)
#include <sys/wait.h>
#endif

#include <cstring>
#include <optional>
#include <thread>

#include "test_util.hpp"

using namespace shmbridge;
using namespace shmbridge::test;
using Clock = std::chrono::steady_clock;

namespace {
// Runs `f` and returns the Error it throws (code ok if none), with its reason and reply_code.
template <class F>
Error error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  return Error(ErrorCode::ok, "no error");
}
}  // namespace

// R-STATE-1..3: one round with copy in/out; status 0,1,0,2,0.
TEST(Channel, R_STATE_1_RoundTripCopy) {
  UniqueName n("round");
  auto req = Requester::create(n, DType::float32, {2, 3});
  auto rsp = Responder::attach(n, DType::float32, {2, 3});
  std::vector<std::uint32_t> status = {status_of(req.word())};
  const float in[6] = {1, 2, 3, 4, 5, 6};
  req.send(in, {2, 3});
  status.push_back(status_of(req.word()));
  EXPECT_EQ(req.pending(), 1u);
  auto r = rsp.take();
  status.push_back(status_of(req.word()));
  EXPECT_EQ(rsp.held(), 1u);
  for (float& x : r.as<float>()) x *= 10;
  r.reply();
  status.push_back(status_of(req.word()));
  float out[6];
  req.receive(out, {2, 3});
  status.push_back(status_of(req.word()));
  EXPECT_EQ(status, (std::vector<std::uint32_t>{0, 1, 0, 2, 0}));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(out[i], in[i] * 10);
  EXPECT_EQ(req.seq(), 1u);
}

// Zero-copy on both sides: request_buffer + send_in_place, receive() view, reply(ptr).
TEST(Channel, R_STATE_3_ZeroCopyPaths) {
  UniqueName n("zc");
  auto req = Requester::create(n, DType::int32, {4});
  auto rsp = Responder::attach(n);
  auto buf = req.request_buffer<std::int32_t>();
  ASSERT_EQ(buf.size(), 4u);
  for (std::size_t i = 0; i < 4; ++i) buf[i] = static_cast<std::int32_t>(i);
  req.send_in_place();
  EXPECT_CODE(req.request_buffer<std::int32_t>(), ErrorCode::OUT_OF_TURN);  // R-STATE-3
  auto r = rsp.take();
  EXPECT_EQ(r.data<std::int32_t>()[3], 3);
  EXPECT_CODE(r.data<float>(), ErrorCode::DTYPE_MISMATCH);
  const std::int32_t reply[4] = {9, 8, 7, 6};
  r.reply(reply);
  EXPECT_TRUE(r.answered());
  EXPECT_CODE(r.reply(), ErrorCode::OUT_OF_TURN);
  ArrayView v = req.receive();
  EXPECT_EQ(v.shape(), Shape({4}));
  EXPECT_EQ(v.dtype(), DType::int32);
  EXPECT_EQ(v.data<std::int32_t>()[0], 9);
  EXPECT_EQ(v.seq(), 1u);
}

// R-STATE-9: dtype, shape checked before anything; a rejected send leaves payload and word.
TEST(Channel, R_STATE_9_SendChecksArrayFirst) {
  UniqueName n("check");
  auto req = Requester::create(n, DType::float32, {4});
  const float a[4] = {1, 1, 1, 1};
  const double d[4] = {};
  const float big[5] = {};
  EXPECT_CODE(req.send(d, {4}), ErrorCode::DTYPE_MISMATCH);
  EXPECT_CODE(req.send(big, {5}), ErrorCode::SHAPE_MISMATCH);
  EXPECT_EQ(req.word(), 0u);
  req.send(a, {4});
  const float b[4] = {2, 2, 2, 2};
  EXPECT_CODE(req.send(b, {4}), ErrorCode::OUT_OF_TURN);  // R-STATE-7: second send
  // 1.1 errata: the array checks come first, also while a request is pending.
  const std::uint32_t pending_word = req.word();
  EXPECT_CODE(req.send(d, {4}), ErrorCode::DTYPE_MISMATCH);
  EXPECT_CODE(req.send(big, {5}), ErrorCode::SHAPE_MISMATCH);
  EXPECT_EQ(req.word(), pending_word);
  EXPECT_EQ(req.pending(), 1u);
  auto rsp = Responder::attach(n);
  EXPECT_EQ(rsp.take().data<float>()[0], 1.0f);  // payload untouched by the rejected send
}

// R-TIME-2: a timed-out receive withdraws a REQUESTED request (T5) and the next send works.
TEST(Channel, R_TIME_2_TimeoutWithdrawsRequest) {
  UniqueName n("tcancel");
  auto req = Requester::create(n, DType::uint8, {4});
  const std::uint8_t a[4] = {};
  req.send(a, {4});
  const auto t0 = Clock::now();
  EXPECT_CODE(req.receive(ms(50)), ErrorCode::TIMEOUT);
  const auto took = Clock::now() - t0;
  EXPECT_GE(took, ms(50));            // R-WAIT-2: not before the deadline
  EXPECT_LT(took, ms(50) + ms(200));  // ... and not much after
  EXPECT_EQ(req.phase(), Phase::IDLE);
  EXPECT_FALSE(req.pending());
  EXPECT_NO_THROW(req.send(a, {4}));
  EXPECT_EQ(req.seq(), 2u);
}

// R-TIME-2, R-STATE-10: TAKEN at timeout keeps the request; send is OUT_OF_TURN until the late
// reply arrives, then consumes it and sends.
TEST(Channel, R_STATE_10_LateReplyConsumedBySend) {
  UniqueName n("late");
  auto req = Requester::create(n, DType::uint8, {4});
  auto rsp = Responder::attach(n);
  const std::uint8_t a[4] = {1, 2, 3, 4};
  req.send(a, {4});
  auto r = rsp.take();
  EXPECT_CODE(req.try_receive(), ErrorCode::TIMEOUT);
  EXPECT_EQ(req.pending(), 1u);
  EXPECT_CODE(req.send(a, {4}), ErrorCode::OUT_OF_TURN);
  r.reply();
  // R-STATE-9 (1.1 errata): a wrong array is rejected before the late reply is consumed.
  const std::uint16_t wrong[4] = {};
  EXPECT_CODE(req.send(wrong, {4}), ErrorCode::DTYPE_MISMATCH);
  EXPECT_EQ(req.phase(), Phase::REPLIED);
  EXPECT_EQ(req.pending(), 1u);
  EXPECT_NO_THROW(req.send(a, {4}));
  EXPECT_EQ(req.pending(), 2u);
  EXPECT_EQ(req.phase(), Phase::REQUESTED);
}

// R-TIME-3: a responder timing out leaves the word unchanged.
TEST(Channel, R_TIME_3_TakeTimeoutLeavesWord) {
  UniqueName n("ttake");
  auto req = Requester::create(n, DType::uint8, {4});
  auto rsp = Responder::attach(n);
  const auto t0 = Clock::now();
  EXPECT_CODE(rsp.take(ms(30)), ErrorCode::TIMEOUT);
  EXPECT_GE(Clock::now() - t0, ms(30));
  EXPECT_EQ(req.word(), 0u);
  EXPECT_CODE(rsp.take(std::chrono::nanoseconds(-1)), ErrorCode::INVALID_ARGUMENT);
}

// R-WAIT-1: a blocked receive is woken by a reply from another thread well before its deadline.
TEST(Channel, R_WAIT_1_BlockedReceiveWokenByReply) {
  UniqueName n("wake");
  Options opt;
  opt.spin = std::chrono::nanoseconds::zero();
  auto req = Requester::create(n, DType::uint8, {4}, opt);
  auto rsp = Responder::attach(n, opt);
  std::thread t([&] {
    auto r = rsp.take(std::chrono::seconds(5));
    std::this_thread::sleep_for(ms(20));
    r.reply();
  });
  const std::uint8_t a[4] = {};
  req.send(a, {4});
  const auto t0 = Clock::now();
  EXPECT_NO_THROW(req.receive(std::chrono::seconds(5)));
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(1));
  t.join();
}

// R-WAIT-1: the spin budget counts from the start of the blocking operation; a change it does
// not wait for (REQUESTED -> TAKEN while receiving) does not end the spin. With a budget longer
// than the round the requester never blocks in the OS: the responder, about to reply 50 ms after
// taking, finds nobody counted in `waiters` (the Python mirror: test_channel.py).
TEST(Channel, R_WAIT_1_SpinBudgetSpansTheWholeOperation) {
  UniqueName n("spinop");
  Options opt;
  opt.spin = std::chrono::seconds(2);
  auto req = Requester::create(n, DType::uint8, {4}, opt);
  auto rsp = Responder::attach(n, opt);
  auto seg = Segment::attach(n, ms(100));
  std::uint32_t waiters_at_reply = 99;
  std::thread t([&] {
    auto r = rsp.take(std::chrono::seconds(5));
    std::this_thread::sleep_for(ms(50));  // the requester has seen TAKEN and goes on waiting
    waiters_at_reply = atomic_u32(seg.base() + layout::kOffWaiters).load();
    r.reply();
  });
  const std::uint8_t a[4] = {};
  req.send(a, {4});
  EXPECT_NO_THROW(req.receive(std::chrono::seconds(5)));
  t.join();
  EXPECT_EQ(waiters_at_reply, 0u);
}

// R-MSG-2: an error reply is raised with the responder's code after consuming it.
TEST(Channel, R_MSG_2_ErrorReplyRaised) {
  UniqueName n("fail");
  auto req = Requester::create(n, DType::uint8, {4});
  auto rsp = Responder::attach(n);
  const std::uint8_t a[4] = {};
  req.send(a, {4});
  rsp.take().fail(ErrorCode::INVALID_ARGUMENT);
  try {
    req.receive();
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find("rejected request #1"), std::string::npos) << e.what();
  }
  EXPECT_EQ(req.phase(), Phase::IDLE);
  EXPECT_NO_THROW(req.send(a, {4}));
}

// R-MSG-1/2: a request whose message descriptor differs is rejected by take with an error reply.
TEST(Channel, R_MSG_1_BadMessageDescriptorRejected) {
  UniqueName n("msg");
  auto req = Requester::create(n, DType::uint8, {4});
  auto rsp = Responder::attach(n);
  const std::uint8_t a[4] = {};
  req.send(a, {4});
  auto seg = Segment::attach(n, ms(100));
  layout::store_u64(seg.base() + layout::kOffMessage + layout::kDescShape, 2);  // shape (2,)
  layout::store_u64(seg.base() + layout::kOffMessage + layout::kDescNbytes, 2);
  EXPECT_CODE(rsp.take(), ErrorCode::SHAPE_MISMATCH);
  EXPECT_EQ(req.phase(), Phase::REPLIED);
  EXPECT_CODE(req.receive(), ErrorCode::SHAPE_MISMATCH);
}

// R-LIVE-4, serve(): the loop ends normally when the requester closes.
TEST(Channel, R_LIVE_4_ServeEndsWhenRequesterCloses) {
  UniqueName n("serve");
  auto req = Requester::create(n, DType::float64, {3});
  auto rsp = Responder::attach(n, DType::float64, {3});
  std::thread server([&] { rsp.serve([](Request& r) { r.data<double>()[0] += 1; }); });
  double v[3] = {1, 2, 3}, out[3];
  for (int i = 0; i < 10; ++i) {
    req.call(v, out, {3});
    EXPECT_EQ(out[0], v[0] + 1);
    v[0] = out[0];
  }
  req.close();
  server.join();  // returns: PEER_GONE from a CLOSED requester is a normal end
}

// R-CLOSE-2: a responder closing while holding completes the round with PEER_GONE. R-LIVE-5,
// R-CLOSE-1: it stored CLOSED before that reply, so the requester's PEER_GONE has reason CLOSED.
TEST(Channel, R_CLOSE_2_ResponderCloseWhileHolding) {
  UniqueName n("closeh");
  auto req = Requester::create(n, DType::uint8, {4});
  auto rsp = Responder::attach(n);
  const std::uint8_t a[4] = {};
  req.send(a, {4});
  auto r = rsp.take();
  rsp.close();
  EXPECT_EQ(req.phase(), Phase::REPLIED);
  const Error e = error_of([&] { req.receive(); });
  EXPECT_EQ(e.code(), ErrorCode::PEER_GONE);
  EXPECT_EQ(e.peer_gone_reason(), PeerGoneReason::closed) << e.what();
  EXPECT_EQ(e.reply_code(), std::optional<std::uint32_t>(7u));
  EXPECT_NE(std::string(e.what()).find("closed"), std::string::npos) << e.what();
  EXPECT_CODE(r.reply(), ErrorCode::OUT_OF_TURN);
}

// R-CLOSE-1, R-CLOSE-3: close is idempotent, and a view outliving the channel stays readable.
TEST(Channel, R_CLOSE_3_ViewOutlivesClose) {
  UniqueName n("view");
  ArrayView v;
  {
    auto req = Requester::create(n, DType::uint8, {4096});
    auto rsp = Responder::attach(n);
    std::vector<std::uint8_t> a(4096, 42);
    req.send(a.data(), {4096});
    rsp.take().reply();
    v = req.receive();
    req.close();
    req.close();  // idempotent
    rsp.close();
  }
#if defined(_WIN32)
  EXPECT_TRUE(n.exists());  // R-SEG-5: no unlink; the view keeps the mapping and its name ...
#else
  EXPECT_FALSE(n.exists());  // unlinked by the creator ...
#endif
  std::size_t sum = 0;
  for (auto x : v.as<std::uint8_t>()) sum += x;  // ... but the mapping lives with the view
  EXPECT_EQ(sum, 4096u * 42u);
}

// Operations on a closed handle fail; a moved-from handle fails too.
TEST(Channel, R_CLOSE_1_ClosedHandleRejectsOperations) {
  UniqueName n("closed");
  auto req = Requester::create(n, DType::uint8, {4});
  Requester moved = std::move(req);
  EXPECT_CODE(req.word(), ErrorCode::OUT_OF_TURN);
  moved.close();
  const std::uint8_t a[4] = {};
  EXPECT_CODE(moved.send(a, {4}), ErrorCode::OUT_OF_TURN);
  EXPECT_FALSE(moved.is_open());
}

// R-TIME-*: negative option values are INVALID_ARGUMENT.
TEST(Channel, R_ERR_1_NegativeTimeoutIsInvalidArgument) {
  UniqueName n("neg");
  Options opt;
  opt.timeout = std::chrono::seconds(-1);
  EXPECT_CODE(Requester::create(n, DType::uint8, {4}, opt), ErrorCode::INVALID_ARGUMENT);
  EXPECT_FALSE(n.exists());
}

// R-STATE-3: reply_code is the responder's field; send never writes it (the SPIN-found T7/T8 race),
// and every successful reply (T3) writes 0.
TEST(Channel, R_STATE_3_ReplyCodeIsResponderOnly) {
  UniqueName n("rcode");
  auto req = Requester::create(n, DType::uint8, {4});
  auto rsp = Responder::attach(n);
  auto seg = Segment::attach(n, ms(100));
  const std::uint8_t a[4] = {1, 2, 3, 4};
  const std::uint32_t marker = 0xDEADBEEF;
  std::memcpy(seg.base() + layout::kOffReplyCode, &marker, 4);
  req.send(a, {4});
  std::uint32_t found = 0;
  std::memcpy(&found, seg.base() + layout::kOffReplyCode, 4);
  EXPECT_EQ(found, marker) << "send wrote reply_code";
  rsp.take().reply();
  std::memcpy(&found, seg.base() + layout::kOffReplyCode, 4);
  EXPECT_EQ(found, 0u) << "a successful reply must write reply_code = 0";
  EXPECT_NO_THROW(req.receive());
}

// R-MSG-3: a handler that throws a non-shmbridge exception fails the round with HANDLER_FAILED;
// the exception propagates out of serve() and the requester gets the error, channel IDLE again.
TEST(Channel, R_MSG_3_HandlerFailureRepliesHandlerFailed) {
  UniqueName n("hfail");
  auto req = Requester::create(n, DType::int32, {2});
  auto rsp = Responder::attach(n);
  std::thread server([&] {
    EXPECT_THROW(rsp.serve([](Request&) { throw std::runtime_error("handler bug"); }),
                 std::runtime_error);
  });
  const std::int32_t a[2] = {1, 2};
  req.send(a, {2});
  EXPECT_CODE(req.receive(), ErrorCode::HANDLER_FAILED);
  server.join();
  EXPECT_EQ(req.phase(), Phase::IDLE);
}

// R-LAYOUT-5: an empty array (an extent of 0) round-trips through the copying overloads with null
// data pointers (a std::vector<float>{}.data()). Found by UBSan in the conformance run of
// ci/sanitizers.sh: memcpy(nullptr, payload, 0) in Requester::receive.
TEST(Channel, R_LAYOUT_5_EmptyArrayCopiesWithNullPointers) {
  UniqueName n("empty");
  auto req = Requester::create(n, DType::float32, {0, 4});
  auto rsp = Responder::attach(n, DType::float32, {0, 4});
  req.send(static_cast<const float*>(nullptr), {0, 4});
  auto r = rsp.take();
  r.reply(static_cast<const void*>(nullptr));
  EXPECT_NO_THROW(req.receive(static_cast<float*>(nullptr), {0, 4}));
  EXPECT_EQ(req.phase(), Phase::IDLE);
}

namespace {
// A rogue/naive writer: a plain store to the control word (what R-STATE-8 guards against).
void rogue_store(const Segment& raw, std::uint32_t word) {
  atomic_u32(raw.base() + layout::kOffWord).store(word, std::memory_order_seq_cst);
}
std::uint32_t raw_word(const Segment& raw) {
  return atomic_u32(raw.base() + layout::kOffWord).load(std::memory_order_seq_cst);
}
}  // namespace

// R-STATE-8 (spec/vectors D15) on real handles: a requester with nothing pending that finds its
// IDLE word changed to another phase, a requester with a request pending that finds IDLE, a
// responder holding nothing whose take finds TAKEN, a reply whose seq changed: each is
// PROTOCOL_VIOLATION and leaves the word and the handle's state unchanged.
TEST(Channel, R_STATE_8_RogueWordsAreProtocolViolations) {
  UniqueName n("rogue8");
  auto req = Requester::create(n, DType::uint8, {4});
  auto rsp = Responder::attach(n);
  Segment raw = Segment::attach(n, std::chrono::seconds(1));
  std::uint8_t in[4] = {1, 2, 3, 4}, out[4] = {};
  for (Phase p : {Phase::REQUESTED, Phase::TAKEN, Phase::REPLIED}) {
    SCOPED_TRACE(phase_name(static_cast<std::uint32_t>(p)));
    rogue_store(raw, make_word(p, 0));
    EXPECT_CODE(req.send(in, {4}), ErrorCode::PROTOCOL_VIOLATION);
    EXPECT_EQ(raw_word(raw), make_word(p, 0));
    EXPECT_FALSE(req.pending());
  }
  rogue_store(raw, make_word(Phase::IDLE, 0));
  req.send(in, {4});
  rogue_store(raw, make_word(Phase::IDLE, 1));
  EXPECT_CODE(req.try_receive(), ErrorCode::PROTOCOL_VIOLATION);
  EXPECT_EQ(raw_word(raw), make_word(Phase::IDLE, 1));
  EXPECT_EQ(req.pending(), 1u);
  rogue_store(raw, make_word(Phase::TAKEN, 1));
  EXPECT_CODE(rsp.try_take(), ErrorCode::PROTOCOL_VIOLATION);
  EXPECT_EQ(raw_word(raw), make_word(Phase::TAKEN, 1));
  EXPECT_FALSE(rsp.held());
  rogue_store(raw, make_word(Phase::REQUESTED, 1));
  auto r = rsp.try_take();
  rogue_store(raw, make_word(Phase::TAKEN, 2));
  EXPECT_CODE(r.reply(), ErrorCode::PROTOCOL_VIOLATION);
  EXPECT_EQ(rsp.held(), 1u);
  rogue_store(raw, make_word(Phase::TAKEN, 1));
  r.reply();
  req.receive(out, {4});
  EXPECT_EQ(std::memcmp(in, out, 4), 0);
}

// R-STATE-11: attach does not judge the control word: a requester and a responder attach over a
// phase outside the table; the first operation that reads it reports PROTOCOL_VIOLATION.
TEST(Channel, R_STATE_11_AttachOverInvalidPhase) {
  UniqueName n("badphase");
  Options keep;
  keep.keep_segment = true;
  std::optional<Requester> creator = Requester::create(n, DType::uint8, {4}, keep);
  Segment raw = Segment::attach(n, std::chrono::seconds(1));
  creator.reset();  // `raw` holds it: on Windows a mapping dies with its last handle (R-SEG-5)
  rogue_store(raw, 0x13);  // phase 3, seq 1
  std::optional<Requester> req;
  std::optional<Responder> rsp;
  ASSERT_CODE(req.emplace(Requester::attach(n)), ErrorCode::ok);
  ASSERT_CODE(rsp.emplace(Responder::attach(n)), ErrorCode::ok);
  EXPECT_EQ(raw_word(raw), 0x13u);  // attach left it alone
  std::uint8_t in[4] = {5, 6, 7, 8}, out[4] = {};
  EXPECT_CODE(req->send(in, {4}), ErrorCode::PROTOCOL_VIOLATION);
  EXPECT_CODE(rsp->try_take(), ErrorCode::PROTOCOL_VIOLATION);
  EXPECT_EQ(raw_word(raw), 0x13u);
  rogue_store(raw, make_word(Phase::IDLE, 1));
  req->send(in, {4});
  rsp->try_take().reply();
  req->receive(out, {4});
  EXPECT_EQ(std::memcmp(in, out, 4), 0);
}

// R-MSG-3, R-ERR-1: HANDLER_FAILED (18) reaches the requester as an Error whose exit code is 27,
// the value the command-line peers exit with through their generic error-to-exit mapping.
TEST(Channel, R_MSG_3_HandlerFailedExitCode27) {
  EXPECT_EQ(exit_code(ErrorCode::HANDLER_FAILED), 27);
  UniqueName n("hf27");
  auto req = Requester::create(n, DType::uint8, {2});
  auto rsp = Responder::attach(n);
  const std::uint8_t a[2] = {1, 2};
  req.send(a, {2});
  rsp.try_take().fail(ErrorCode::HANDLER_FAILED);
  try {
    req.try_receive();
    FAIL() << "expected HANDLER_FAILED";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::HANDLER_FAILED);
    EXPECT_EQ(e.exit_code(), 27);
    EXPECT_NE(std::string(e.what()).find("HANDLER_FAILED"), std::string::npos) << e.what();
  }
}

// R-TIME-1: a timed-out wait leaves a word in the table and a state from which the protocol
// continues (receive in REQUESTED withdraws, in TAKEN keeps the request; take changes nothing).
TEST(Channel, R_TIME_1_TimeoutsLeaveAContinuableState) {
  UniqueName n("time1");
  auto req = Requester::create(n, DType::uint8, {4});
  auto rsp = Responder::attach(n);
  const std::uint8_t in[4] = {1, 2, 3, 4};
  std::uint8_t out[4] = {};
  EXPECT_CODE(rsp.take(ms(5)), ErrorCode::TIMEOUT);
  EXPECT_EQ(req.word(), make_word(Phase::IDLE, 0));
  req.send(in, {4});
  EXPECT_CODE(req.receive(ms(5)), ErrorCode::TIMEOUT);
  EXPECT_EQ(req.word(), make_word(Phase::IDLE, 1));  // withdrawn (T5), in the table
  EXPECT_FALSE(req.pending());
  req.send(in, {4});
  auto r = rsp.try_take();
  EXPECT_CODE(req.receive(ms(5)), ErrorCode::TIMEOUT);
  EXPECT_EQ(req.word(), make_word(Phase::TAKEN, 2));  // kept outstanding
  r.reply();
  req.receive(out, {4});
  EXPECT_EQ(std::memcmp(in, out, 4), 0);
  EXPECT_TRUE(is_valid_phase(phase_bits(req.word())));
}

// R-WAIT-4: blocking is sliced by the liveness interval, so a peer that dies without waking
// anybody (its slot stays ATTACHED with a dead pid) ends a long wait with PEER_GONE promptly.
// (POSIX: a dead pid from fork(); on Windows test_win32 kills real peer processes.)
#if !defined(_WIN32)
TEST(Channel, R_WAIT_4_SlicedWaitNoticesSilentPeerDeath) {
  UniqueName n("wait4");
  Options o;
  o.liveness_interval = std::chrono::milliseconds(20);
  auto req = Requester::create(n, DType::uint8, {4}, o);
  Segment raw = Segment::attach(n, std::chrono::seconds(1));
  std::uint8_t* slot = raw.base() + layout::kOffResponderSlot;
  atomic_u64(slot + layout::kSlotStartTime).store(0);
  atomic_u32(slot + layout::kSlotPid).store(current_pid());
  atomic_u32(slot + layout::kSlotState).store(static_cast<std::uint32_t>(SlotState::attached));
  const std::uint8_t in[4] = {1, 2, 3, 4};
  req.send(in, {4});
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  std::thread killer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    atomic_u32(slot + layout::kSlotPid).store(static_cast<std::uint32_t>(child));  // no wake
  });
  const auto t0 = Clock::now();
  EXPECT_CODE(req.receive(std::chrono::seconds(10)), ErrorCode::PEER_GONE);
  killer.join();
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(3));
  EXPECT_EQ(req.word(), make_word(Phase::IDLE, 1));  // withdrawn before PEER_GONE (R-LIVE-3)
}
#endif

// R-ERR-3: an error loses nothing: a rejected send leaves payload and word, a violation leaves
// the rogue word, a failed attach unlinks nothing.
TEST(Channel, R_ERR_3_ErrorsLoseNothing) {
  UniqueName n("err3");
  auto req = Requester::create(n, DType::uint8, {4});
  auto rsp = Responder::attach(n);
  Segment raw = Segment::attach(n, std::chrono::seconds(1));
  const std::uint8_t in[4] = {9, 9, 9, 9}, other[8] = {};
  req.send(in, {4});
  rsp.try_take().reply();
  std::uint8_t out[4] = {};
  req.receive(out, {4});
  std::vector<std::uint8_t> before(raw.base(), raw.base() + layout::kHeaderSize + 4);
  EXPECT_CODE(req.send(other, {8}), ErrorCode::SHAPE_MISMATCH);
  EXPECT_CODE(rsp.try_take(), ErrorCode::TIMEOUT);
  EXPECT_CODE(Requester::attach(n), ErrorCode::ROLE_TAKEN);
  EXPECT_CODE(Responder::attach(n, DType::float32, {4}), ErrorCode::DTYPE_MISMATCH);
  EXPECT_EQ(std::memcmp(before.data(), raw.base(), before.size()), 0);  // header and payload
  EXPECT_TRUE(n.exists());
  atomic_u32(raw.base() + layout::kOffWord).store(0x17);  // phase 7: a rogue word
  EXPECT_CODE(req.send(in, {4}), ErrorCode::PROTOCOL_VIOLATION);
  EXPECT_EQ(atomic_u32(raw.base() + layout::kOffWord).load(), 0x17u);
}

// ---- PROTOCOL.md 1.1 ---------------------------------------------------------------------------

namespace {
bool message_is_declared(const std::uint8_t* base) {
  return std::memcmp(base + layout::kOffMessage, base + layout::kOffDeclared, layout::kDescSize) ==
         0;
}
std::uint32_t reply_code_in(const std::uint8_t* base) {
  return layout::load_u32(base + layout::kOffReplyCode);
}
}  // namespace

// R-MSG-4, R-MSG-5: a request rejected at take (its descriptor has another shape, then another
// dtype) is answered with message = declared and reply_code = the error; the requester consumes
// it (T4) and raises that error carrying reply_code. (1.0 C++ left the wrong descriptor.)
TEST(Channel, R_MSG_4_RejectedRequestLeavesDeclaredDescriptor) {
  UniqueName n("msg4");
  auto req = Requester::create(n, DType::uint8, {4});
  auto rsp = Responder::attach(n);
  auto seg = Segment::attach(n, ms(100));
  const std::uint8_t a[4] = {};
  struct Bad {
    std::size_t off;
    std::uint64_t value;
    std::size_t size;
    ErrorCode code;
  };
  for (const Bad& bad :
       {Bad{layout::kOffMessage + layout::kDescShape, 2, 8, ErrorCode::SHAPE_MISMATCH},
        Bad{layout::kOffMessage, 6, 4, ErrorCode::DTYPE_MISMATCH}}) {
    req.send(a, {4});
    if (bad.size == 8) {
      layout::store_u64(seg.base() + bad.off, bad.value);
      layout::store_u64(seg.base() + layout::kOffMessage + layout::kDescNbytes, 2);  // valid
    } else {  // int32 (1,): a valid descriptor (4 bytes fit) whose dtype differs
      layout::store_u32(seg.base() + bad.off, static_cast<std::uint32_t>(bad.value));
      layout::store_u64(seg.base() + layout::kOffMessage + layout::kDescShape, 1);
      layout::store_u64(seg.base() + layout::kOffMessage + layout::kDescNbytes, 4);
    }
    EXPECT_CODE(rsp.take(), bad.code);
    ASSERT_EQ(req.phase(), Phase::REPLIED);
    EXPECT_TRUE(message_is_declared(seg.base()));  // what the reply leaves (R-MSG-4)
    EXPECT_EQ(reply_code_in(seg.base()), static_cast<std::uint32_t>(bad.code));
    const Error e = error_of([&] { req.receive(); });
    EXPECT_EQ(e.code(), bad.code);
    EXPECT_EQ(e.reply_code(), std::optional<std::uint32_t>(static_cast<std::uint32_t>(bad.code)));
    EXPECT_EQ(req.phase(), Phase::IDLE);  // consumed before raising (R-MSG-2)
  }
}

// R-MSG-4, R-REC-2, R-LIVE-5: T8 (a new responder completing a dead predecessor's round) leaves
// message = declared with reply_code PEER_GONE; the requester reads the reason DIED.
TEST(Channel, R_MSG_4_RecoveredRoundLeavesDeclaredDescriptor) {
  UniqueName n("msg4t8");
  auto req = Requester::create(n, DType::uint8, {4});
  auto seg = Segment::attach(n, ms(100));
  const std::uint8_t a[4] = {};
  req.send(a, {4});
  {
    auto dying = Responder::attach(n);
    auto r = dying.take();
    // The request carried another shape and its responder dies holding it (a reaped child's pid
    // in its slot, no close).
    layout::store_u64(seg.base() + layout::kOffMessage + layout::kDescShape, 2);
    layout::store_u64(seg.base() + layout::kOffMessage + layout::kDescNbytes, 2);
#if !defined(_WIN32)
    const pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    ::waitpid(child, nullptr, 0);
    atomic_u32(seg.base() + layout::kOffResponderSlot + layout::kSlotPid)
        .store(static_cast<std::uint32_t>(child));
#else
    // No fork(): a pid no process has (Windows pids are multiples of 4, far below this one), so
    // OpenProcess fails and the slot reads as dead.
    atomic_u32(seg.base() + layout::kOffResponderSlot + layout::kSlotPid).store(0x7FFFFFF1u);
#endif
    auto fresh = Responder::attach(n);  // R-REC-2: T8
    EXPECT_EQ(req.phase(), Phase::REPLIED);
    EXPECT_TRUE(message_is_declared(seg.base()));
    EXPECT_EQ(reply_code_in(seg.base()), static_cast<std::uint32_t>(ErrorCode::PEER_GONE));
    const Error e = error_of([&] { req.receive(); });
    EXPECT_EQ(e.code(), ErrorCode::PEER_GONE);
    EXPECT_EQ(e.peer_gone_reason(), PeerGoneReason::died) << e.what();
    EXPECT_EQ(e.reply_code(), std::optional<std::uint32_t>(7u));
  }
}

// R-MSG-5: an unknown reply_code is PROTOCOL_VIOLATION naming the code, after T4; a successful
// reply whose descriptor a rogue changed raises the descriptor error with reply_code 0.
TEST(Channel, R_MSG_5_ReplyCodeFirstThenDescriptor) {
  UniqueName n("msg5");
  auto req = Requester::create(n, DType::uint8, {4});
  auto rsp = Responder::attach(n);
  auto seg = Segment::attach(n, ms(100));
  const std::uint8_t a[4] = {};
  req.send(a, {4});
  rsp.take();
  rsp.fail(static_cast<ErrorCode>(99));
  Error e = error_of([&] { req.receive(); });
  EXPECT_EQ(e.code(), ErrorCode::PROTOCOL_VIOLATION);
  EXPECT_NE(std::string(e.what()).find("99"), std::string::npos) << e.what();
  EXPECT_EQ(e.reply_code(), std::optional<std::uint32_t>(99u));
  EXPECT_EQ(req.phase(), Phase::IDLE);
  req.send(a, {4});
  rsp.take().reply();
  layout::store_u64(seg.base() + layout::kOffMessage + layout::kDescShape, 2);  // rogue
  layout::store_u64(seg.base() + layout::kOffMessage + layout::kDescNbytes, 2);
  e = error_of([&] { req.receive(); });
  EXPECT_EQ(e.code(), ErrorCode::SHAPE_MISMATCH);
  EXPECT_EQ(e.reply_code(), std::optional<std::uint32_t>(0u));
  EXPECT_EQ(req.phase(), Phase::IDLE);
  // Errors that did not come from a reply carry no reply_code.
  e = error_of([&] { req.try_receive(); });
  EXPECT_EQ(e.code(), ErrorCode::OUT_OF_TURN);
  EXPECT_FALSE(e.reply_code().has_value());
}

// R-LIVE-5: a requester waiting on a responder that closed (slot CLOSED, pid 0): reason CLOSED,
// and the withdrawn request (T5) carries no reply_code.
TEST(Channel, R_LIVE_5_WaitingOnAClosedResponderIsClosed) {
  UniqueName n("closed5");
  auto req = Requester::create(n, DType::uint8, {4});
  Responder::attach(n).close();
  const std::uint8_t a[4] = {};
  req.send(a, {4});
  const Error w = error_of([&] { req.receive(ms(500)); });
  EXPECT_EQ(w.code(), ErrorCode::PEER_GONE);
  EXPECT_EQ(w.peer_gone_reason(), PeerGoneReason::closed);
  EXPECT_FALSE(w.reply_code().has_value());  // withdrawn (T5), not a reply
  EXPECT_EQ(std::string(peer_gone_reason_name(w.peer_gone_reason())), "CLOSED");
}

#if !defined(_WIN32)
// R-LIVE-5, R-LIVE-4: a requester that died (a reaped child's pid in its ATTACHED slot) is
// PEER_GONE with reason DIED: take() says so, and serve() raises it instead of ending normally.
TEST(Channel, R_LIVE_5_DeadRequesterIsDiedAndServeRaises) {
  UniqueName n("died5");
  Options o = fast_options();
  auto rsp = Responder::create(n, DType::uint8, {4}, o);
  auto seg = Segment::attach(n, ms(100));
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  std::uint8_t* slot = seg.base() + layout::kOffRequesterSlot;
  atomic_u32(slot + layout::kSlotPid).store(static_cast<std::uint32_t>(child));
  atomic_u32(slot + layout::kSlotState).store(static_cast<std::uint32_t>(SlotState::attached));
  Error e = error_of([&] { rsp.take(ms(500)); });
  EXPECT_EQ(e.code(), ErrorCode::PEER_GONE);
  EXPECT_EQ(e.peer_gone_reason(), PeerGoneReason::died) << e.what();
  EXPECT_NE(std::string(e.what()).find("died"), std::string::npos) << e.what();
  e = error_of([&] { rsp.serve([](Request&) {}); });
  EXPECT_EQ(e.code(), ErrorCode::PEER_GONE);
  EXPECT_EQ(e.peer_gone_reason(), PeerGoneReason::died);
  EXPECT_EQ(Error(ErrorCode::TIMEOUT, "x").peer_gone_reason(), PeerGoneReason::none);
}
#endif

// R-WAIT-6: an over-counted waiters (processes killed while blocked) costs wake calls only: rounds
// with blocking waits still complete, and nobody repairs or resets the count.
TEST(Channel, R_WAIT_6_WaitersOverCountIsHarmless) {
  UniqueName n("waiters6");
  Options o;
  o.spin = std::chrono::nanoseconds::zero();  // every wait blocks in the OS
  auto req = Requester::create(n, DType::uint32, {1}, o);
  auto rsp = Responder::attach(n, o);
  auto seg = Segment::attach(n, ms(100));
  auto& waiters = atomic_u32(seg.base() + layout::kOffWaiters);
  waiters.store(3);  // three dead waiters
  std::thread server([&] {
    for (int i = 0; i < 20; ++i) {
      auto r = rsp.take();
      r.data<std::uint32_t>()[0] += 1;
      r.reply();
    }
  });
  std::uint32_t v = 0;
  for (int i = 0; i < 20; ++i) {
    std::uint32_t out = 0;
    req.call(&v, &out, {1});
    EXPECT_EQ(out, v + 1);
    v = out;
  }
  server.join();
  EXPECT_EQ(waiters.load(), 3u);
}

// R-LAYOUT-7, R-STATE-9, R-MSG-1: when dtype and shape both differ, DTYPE_MISMATCH everywhere.
TEST(Channel, R_LAYOUT_7_DtypeIsComparedBeforeShape) {
  UniqueName n("both7");
  auto req = Requester::create(n, DType::uint8, {4});
  EXPECT_CODE(Responder::attach(n, DType::int32, {5}), ErrorCode::DTYPE_MISMATCH);
  auto rsp = Responder::attach(n);
  const std::int32_t wrong[5] = {};
  EXPECT_CODE(req.send(wrong, {5}), ErrorCode::DTYPE_MISMATCH);
  const std::uint8_t a[4] = {};
  req.send(a, {4});
  auto seg = Segment::attach(n, ms(100));
  layout::store_u32(seg.base() + layout::kOffMessage, 6);  // int32 (1,): valid, both differ
  layout::store_u64(seg.base() + layout::kOffMessage + layout::kDescShape, 1);
  layout::store_u64(seg.base() + layout::kOffMessage + layout::kDescNbytes, 4);
  EXPECT_CODE(rsp.take(), ErrorCode::DTYPE_MISMATCH);
  EXPECT_CODE(req.receive(), ErrorCode::DTYPE_MISMATCH);
}
