// Cross-process behaviour with fork(): blocking wake-ups (R-WAIT-1/3), peer death (R-LIVE-3/4,
// R-REC-1/2), typed attach errors in another process (R-SEG-4, R-LAYOUT-7, R-ERR-1).
#include <signal.h>
#include <sys/wait.h>

#include <thread>

#include "v2_util.hpp"

using namespace shmbridge;
using namespace shmbridge::test;
using Clock = std::chrono::steady_clock;

namespace {

// Runs `body` in a child process; its return value is the exit status.
template <class F>
pid_t spawn(F&& body) {
  const pid_t child = ::fork();
  if (child == 0) {
    int rc = 1;
    try {
      rc = body();
    } catch (const Error& e) {
      rc = e.exit_code();
    } catch (...) {
      rc = 1;
    }
    ::_exit(rc);
  }
  return child;
}

int exit_status(pid_t child) {
  int status = 0;
  if (::waitpid(child, &status, 0) != child) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool wait_for_phase(Handle& h, Phase p, std::chrono::milliseconds max) {
  const auto end = Clock::now() + max;
  while (Clock::now() < end) {
    if (h.phase() == p) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

}  // namespace

// R-WAIT-1, R-WAIT-3: both sides block in the OS (spin 0) and wake each other across processes.
TEST(CrossProcess, R_WAIT_1_BlockingRoundsAcrossProcesses) {
  UniqueName n("xrounds");
  Options opt = fast_options();
  opt.spin = std::chrono::nanoseconds::zero();  // force the futex path
  auto req = Requester::create(n, DType::float32, {256}, opt);
  const pid_t child = spawn([&] {
    auto rsp = Responder::attach(n.str(), DType::float32, {256}, opt);
    int served = 0;
    rsp.serve([&](Request& r) {
      for (float& x : r.as<float>()) x += 1.0f;
      ++served;
    });
    return served == 200 ? 0 : 2;
  });
  std::vector<float> in(256), out(256);
  for (int round = 0; round < 200; ++round) {
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(round * 1000 + i);
    req.call(in.data(), out.data(), {256});
    for (std::size_t i = 0; i < in.size(); ++i) ASSERT_EQ(out[i], in[i] + 1.0f) << round;
  }
  req.close();  // R-LIVE-4: ends the child's serve loop normally
  EXPECT_EQ(exit_status(child), 0);
}

// R-LIVE-3, T7: the responder is SIGKILLed while holding the request; the blocked requester gets
// PEER_GONE within 1 s and the channel is IDLE and usable again.
TEST(CrossProcess, R_LIVE_3_ResponderKilledMidRound) {
  UniqueName n("xkillrsp");
  auto req = Requester::create(n, DType::uint8, {64}, fast_options());
  const pid_t child = spawn([&] {
    auto rsp = Responder::attach(n.str(), fast_options());
    auto r = rsp.take(std::chrono::seconds(5));
    std::this_thread::sleep_for(std::chrono::seconds(30));  // never replies
    return 0;
  });
  std::vector<std::uint8_t> data(64, 7);
  req.send(data.data(), {64});
  ASSERT_TRUE(wait_for_phase(req, Phase::TAKEN, std::chrono::milliseconds(3000)));
  Clock::time_point killed;
  std::thread killer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    killed = Clock::now();
    ::kill(child, SIGKILL);
  });
  const ErrorCode c = code_of([&] { req.receive(std::chrono::seconds(5)); });
  const auto noticed = Clock::now();
  killer.join();
  EXPECT_EQ(c, ErrorCode::PEER_GONE);
  EXPECT_LT(noticed - killed, std::chrono::seconds(1));
  EXPECT_EQ(req.phase(), Phase::IDLE);  // reclaimed (T7)
  EXPECT_FALSE(req.pending());
  EXPECT_EQ(exit_status(child), 128 + SIGKILL);
  // R-REC-2 is not needed: a new responder finds IDLE and the next round works.
  auto rsp = Responder::attach(n, fast_options());
  req.send(data.data(), {64});
  auto r = rsp.take();
  r.reply();
  EXPECT_NO_THROW(req.receive());
}

// R-LIVE-3: the requester is SIGKILLed while the responder waits for a request.
TEST(CrossProcess, R_LIVE_3_RequesterKilledWhileResponderWaits) {
  UniqueName n("xkillreq");
  Options keep = fast_options();
  keep.keep_segment = true;
  auto rsp = Responder::create(n, DType::uint8, {8}, keep);
  const pid_t child = spawn([&] {
    auto req = Requester::attach(n.str(), fast_options());
    std::this_thread::sleep_for(std::chrono::seconds(30));
    return 0;
  });
  {  // wait until the child has attached (its slot is ATTACHED)
    auto seg = Segment::attach(n, std::chrono::seconds(0));
    SlotRef slot(seg.base() + layout::kOffRequesterSlot);
    const auto t0 = Clock::now();
    while (slot.state() != static_cast<std::uint32_t>(SlotState::attached) &&
           Clock::now() - t0 < std::chrono::seconds(3)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ASSERT_EQ(slot.state(), static_cast<std::uint32_t>(SlotState::attached));
  }
  Clock::time_point killed;
  std::thread killer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    killed = Clock::now();
    ::kill(child, SIGKILL);
  });
  const ErrorCode c = code_of([&] { rsp.take(std::chrono::seconds(5)); });
  const auto noticed = Clock::now();
  killer.join();
  EXPECT_EQ(c, ErrorCode::PEER_GONE);
  EXPECT_LT(noticed - killed, std::chrono::seconds(1));
  EXPECT_EQ(exit_status(child), 128 + SIGKILL);
  rsp.close();
  Segment::remove(n);
}

// R-REC-2: a responder attaching over a round its dead predecessor left TAKEN completes it with
// PEER_GONE; the requester gets PEER_GONE instead of hanging.
TEST(CrossProcess, R_REC_2_RestartedResponderCompletesRound) {
  UniqueName n("xrecrsp");
  auto req = Requester::create(n, DType::uint8, {8}, fast_options());
  const pid_t child = spawn([&] {
    auto rsp = Responder::attach(n.str(), fast_options());
    auto r = rsp.take(std::chrono::seconds(5));
    ::raise(SIGKILL);
    return 0;
  });
  std::uint8_t data[8] = {};
  req.send(data, {8});
  EXPECT_EQ(exit_status(child), 128 + SIGKILL);
  ASSERT_EQ(req.phase(), Phase::TAKEN);
  auto rsp = Responder::attach(n, fast_options());  // recovers: T8 with reply_code PEER_GONE
  EXPECT_EQ(req.phase(), Phase::REPLIED);
  EXPECT_CODE(req.receive(), ErrorCode::PEER_GONE);
  EXPECT_EQ(req.phase(), Phase::IDLE);
  req.send(data, {8});
  rsp.take().reply();
  EXPECT_NO_THROW(req.receive());
}

// R-REC-1: a requester attaching after its predecessor died with a request outstanding brings the
// channel back to IDLE (REQUESTED → T5; REPLIED → T6).
TEST(CrossProcess, R_REC_1_RestartedRequesterRecovers) {
  UniqueName n("xrecreq");
  Options keep = fast_options();
  keep.keep_segment = true;
  auto rsp = Responder::create(n, DType::uint8, {8}, keep);
  for (bool replied : {false, true}) {
    const pid_t child = spawn([&] {
      auto req = Requester::attach(n.str(), fast_options());
      std::uint8_t data[8] = {};
      req.send(data, {8});
      ::raise(SIGKILL);
      return 0;
    });
    EXPECT_EQ(exit_status(child), 128 + SIGKILL);
    ASSERT_EQ(rsp.phase(), Phase::REQUESTED);
    if (replied) rsp.take().reply();
    auto req = Requester::attach(n, fast_options());
    EXPECT_EQ(req.phase(), Phase::IDLE) << "replied=" << replied;
    std::uint8_t data[8] = {1};
    req.send(data, {8});
    rsp.take().reply();
    EXPECT_NO_THROW(req.receive());
  }
  rsp.close();
  Segment::remove(n);
}

// R-SEG-4, R-LAYOUT-7, R-ERR-1: typed errors in another process, as exit codes.
TEST(CrossProcess, R_LAYOUT_7_TypedAttachErrorsInChild) {
  UniqueName n("xtyped");
  UniqueName missing("xmissing");
  auto req = Requester::create(n, DType::float32, {512, 512});
  auto attach_with = [&](const std::string& name, DType d, Shape s) {
    return spawn([&, name, d, s] {
      Responder::attach(name, d, s, fast_options());
      return 0;
    });
  };
  EXPECT_EQ(exit_status(attach_with(missing.str(), DType::float32, {512, 512})),
            exit_code(ErrorCode::SEGMENT_NOT_FOUND));
  EXPECT_EQ(exit_status(attach_with(n.str(), DType::float32, {512, 511})),
            exit_code(ErrorCode::SHAPE_MISMATCH));
  EXPECT_EQ(exit_status(attach_with(n.str(), DType::float64, {512, 512})),
            exit_code(ErrorCode::DTYPE_MISMATCH));
  EXPECT_EQ(exit_status(attach_with(n.str(), DType::float32, {512, 512})), 0);
}

// ---- protocol v2 across processes (the same round engine, R-VER-1)
// ---------------------------------

namespace {

Schema camera_request() {
  return Schema{}.field<std::uint8_t>("image", {48, 64, 3}).field<double>("stamp", {});
}
Schema camera_reply() { return Schema{}.field<float>("boxes", {upto(100), 6}); }

// The responder of these tests: stamp s asks for s boxes whose values are image bytes + row.
void detect(MessageRequest& r) {
  const auto image = r.request().field<std::uint8_t>("image");
  const auto n = static_cast<std::uint64_t>(r.request().field<double>("stamp")[0]);
  auto boxes = r.reply_field<float>("boxes", {n, 6});
  for (std::size_t i = 0; i < boxes.size(); ++i) boxes[i] = image[i] + static_cast<float>(i / 6);
}

}  // namespace

// R-VER-1, R-WAIT-1, R-FIELD-4..8: v2 rounds between two processes, both blocking in the OS.
TEST(CrossProcess, R_VER_1_V2BlockingRoundsAcrossProcesses) {
  UniqueName n("x2rounds");
  Options opt = fast_options();
  opt.spin = std::chrono::nanoseconds::zero();  // force the futex path
  auto req = MessageRequester::create(n, camera_request(), camera_reply(), opt);
  const pid_t child = spawn([&] {
    auto rsp = MessageResponder::attach(n.str(), camera_request(), camera_reply(), opt);
    int served = 0;
    rsp.serve([&](MessageRequest& r) {
      detect(r);
      ++served;
    });
    return served == 150 ? 0 : 2;
  });
  std::vector<std::uint8_t> image(48 * 64 * 3);
  for (int round = 0; round < 150; ++round) {
    for (std::size_t i = 0; i < image.size(); ++i) image[i] = static_cast<std::uint8_t>(round + i);
    const double stamp = round % 101;
    const Message m =
        req.call({{"image", FieldRef(image.data(), {48, 64, 3})}, {"stamp", FieldRef(&stamp, {})}});
    const auto boxes = m.field<float>("boxes");
    ASSERT_EQ(boxes.shape(), Shape({static_cast<std::uint64_t>(stamp), 6})) << round;
    for (std::size_t i = 0; i < boxes.size(); ++i) {
      ASSERT_EQ(boxes[i], image[i] + static_cast<float>(i / 6)) << round;
    }
  }
  req.close();  // R-LIVE-4: ends the child's serve loop normally
  EXPECT_EQ(exit_status(child), 0);
}

// R-LIVE-3, T7 on a v2 segment: the responder is SIGKILLed while holding the request.
TEST(CrossProcess, R_LIVE_3_V2ResponderKilledMidRound) {
  UniqueName n("x2kill");
  auto req = MessageRequester::create(n, camera_request(), camera_reply(), fast_options());
  const pid_t child = spawn([&] {
    auto rsp = MessageResponder::attach(n.str(), fast_options());
    auto r = rsp.take(std::chrono::seconds(5));
    ::raise(SIGKILL);  // dies holding it
    return 0;
  });
  std::vector<std::uint8_t> image(48 * 64 * 3, 1);
  const double stamp = 2;
  const std::vector<NamedField> fields = {{"image", FieldRef(image.data(), {48, 64, 3})},
                                          {"stamp", FieldRef(&stamp, {})}};
  req.send(fields);
  const auto e = error_of([&] { req.receive(std::chrono::seconds(5)); });
  ASSERT_TRUE(e);
  EXPECT_EQ(e->code(), ErrorCode::PEER_GONE);
  EXPECT_EQ(e->peer_gone_reason(), PeerGoneReason::died);
  EXPECT_EQ(req.phase(), Phase::IDLE);  // reclaimed (T7) or withdrawn (T5)
  EXPECT_EQ(exit_status(child), 128 + SIGKILL);
  auto rsp = MessageResponder::attach(n, fast_options());
  req.send(fields);
  MessageRequest r = rsp.take();
  detect(r);
  r.reply();
  EXPECT_EQ(req.receive().shape("boxes"), Shape({2, 6}));
}

// R-REC-2 on a v2 segment: a restarted responder completes the dead one's round (T8, reply_code
// only, R-FIELD-10); R-REC-1: a restarted requester brings the channel back to IDLE.
TEST(CrossProcess, R_REC_2_V2RestartsRecover) {
  UniqueName n("x2rec");
  Options keep = fast_options();
  keep.keep_segment = true;
  auto req = MessageRequester::create(n, camera_request(), camera_reply(), keep);
  std::vector<std::uint8_t> image(48 * 64 * 3, 3);
  const double stamp = 1;
  const std::vector<NamedField> fields = {{"image", FieldRef(image.data(), {48, 64, 3})},
                                          {"stamp", FieldRef(&stamp, {})}};
  req.send(fields);
  const pid_t child = spawn([&] {
    auto rsp = MessageResponder::attach(n.str(), fast_options());
    auto r = rsp.take(std::chrono::seconds(5));
    ::raise(SIGKILL);
    return 0;
  });
  EXPECT_EQ(exit_status(child), 128 + SIGKILL);
  ASSERT_EQ(req.phase(), Phase::TAKEN);
  auto rsp = MessageResponder::attach(n, fast_options());  // T8
  EXPECT_EQ(req.phase(), Phase::REPLIED);
  EXPECT_CODE(req.receive(), ErrorCode::PEER_GONE);
  // The requester dies with a request outstanding; a new one recovers on attach (T5).
  req.close();
  const pid_t sender = spawn([&] {
    auto r2 = MessageRequester::attach(n.str(), fast_options());
    r2.send(fields);
    ::raise(SIGKILL);
    return 0;
  });
  EXPECT_EQ(exit_status(sender), 128 + SIGKILL);
  ASSERT_EQ(rsp.phase(), Phase::REQUESTED);
  auto req2 = MessageRequester::attach(n, fast_options());
  EXPECT_EQ(req2.phase(), Phase::IDLE);
  req2.send(fields);
  MessageRequest r = rsp.take();
  detect(r);
  r.reply();
  EXPECT_EQ(req2.receive().shape("boxes"), Shape({1, 6}));
  rsp.close();
  req2.close();
  Segment::remove(n);
}

// R-VER-3, R-VER-4, R-SCHEMA-10, R-ERR-1: typed cross-version and schema errors in another
// process, as exit codes.
TEST(CrossProcess, R_VER_3_CrossVersionAttachInChild) {
  UniqueName v1("x2v1"), v2("x2v2");
  auto a = Requester::create(v1, DType::float32, {8}, fast_options());
  auto b = MessageRequester::create(v2, camera_request(), camera_reply(), fast_options());
  auto run = [](auto body) { return exit_status(spawn(body)); };
  EXPECT_EQ(run([&] {
              MessageResponder::attach(v1.str(), fast_options());
              return 0;
            }),
            exit_code(ErrorCode::VERSION_MISMATCH));
  EXPECT_EQ(run([&] {
              Responder::attach(v2.str(), fast_options());
              return 0;
            }),
            exit_code(ErrorCode::VERSION_MISMATCH));
  EXPECT_EQ(run([&] {
              MessageResponder::attach(v2.str(), camera_reply(), std::nullopt, fast_options());
              return 0;
            }),
            exit_code(ErrorCode::SCHEMA_MISMATCH));
  EXPECT_EQ(run([&] {
              MessageResponder::attach(v2.str(), camera_request(), camera_reply(), fast_options());
              return 0;
            }),
            0);
}
