// Cross-process behaviour with fork(): blocking wake-ups (R-WAIT-1/3), peer death (R-LIVE-3/4,
// R-REC-1/2), typed attach errors in another process (R-SEG-4, R-LAYOUT-7, R-ERR-1).
#include <signal.h>
#include <sys/wait.h>

#include <thread>

#include "test_util.hpp"

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
