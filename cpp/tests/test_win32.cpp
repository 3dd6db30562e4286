// Windows only (run under wine by ci/test-windows.sh, natively by the GitHub windows job): the
// named file mapping Local\N and the named events Local\N.req / Local\N.rsp (R-NAME-2), no unlink
// and what "stale" means there (R-SEG-5, R-SEG-7), page-rounded sizes on attach (R-SEG-8,
// R-LAYOUT-6), blocking through named events across two processes (R-WAIT-1, R-WAIT-3), liveness
// by creation FILETIME (R-LIVE-2) and peer death (R-LIVE-3, R-LIVE-4). fork() does not exist
// here: a second process is this executable started again with CreateProcessW in a child mode
// (`test_win32.exe --child MODE NAME ...`), or one of the examples / the conformance peer.
#ifndef NOMINMAX
#define NOMINMAX
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

using namespace shmbridge;
using namespace shmbridge::test;
using Clock = std::chrono::steady_clock;

namespace {

// Exit codes of the child modes.
constexpr int kChildOk = 0;
constexpr int kChildBadData = 3;
constexpr UINT kKilled = 137;  // TerminateProcess code: "killed", as 128 + SIGKILL on POSIX

std::wstring widen(const std::string& s) { return std::wstring(s.begin(), s.end()); }

// CMake hands us POSIX paths when the build runs on Linux and the tests under wine; wine maps the
// host file system to drive Z:.
std::wstring native_path(const std::string& p) {
  std::string out = p;
  if (!out.empty() && out[0] == '/') out = "Z:" + out;
  for (char& c : out) {
    if (c == '/') c = '\\';
  }
  return widen(out);
}

std::wstring self_path() {
  std::vector<wchar_t> buf(32768);
  const DWORD n = GetModuleFileNameW(nullptr, buf.data(), static_cast<DWORD>(buf.size()));
  return std::wstring(buf.data(), n);
}

// A child process; killed and reaped by the destructor if still running.
class Child {
 public:
  Child(const std::wstring& exe, const std::vector<std::string>& args) {
    std::wstring cmd = L"\"" + exe + L"\"";
    for (const auto& a : args) cmd += L" \"" + widen(a) + L"\"";
    STARTUPINFOW si{};
    si.cb = sizeof si;
    if (!CreateProcessW(exe.c_str(), cmd.data(), nullptr, nullptr, FALSE, 0, nullptr, nullptr, &si,
                        &pi_)) {
      ADD_FAILURE() << "CreateProcessW failed: " << GetLastError();
      pi_ = {};
    }
  }
  ~Child() {
    if (!pi_.hProcess) return;
    if (WaitForSingleObject(pi_.hProcess, 0) == WAIT_TIMEOUT) kill();
    CloseHandle(pi_.hThread);
    CloseHandle(pi_.hProcess);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  bool started() const { return pi_.hProcess != nullptr; }
  std::uint32_t pid() const { return pi_.dwProcessId; }
  // The exit code, or -1 if the child is still running after `timeout`.
  long wait(std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    if (!pi_.hProcess) return -2;
    if (WaitForSingleObject(pi_.hProcess, static_cast<DWORD>(timeout.count())) != WAIT_OBJECT_0) {
      return -1;
    }
    DWORD code = 0;
    GetExitCodeProcess(pi_.hProcess, &code);
    return static_cast<long>(code);
  }
  void kill() {
    TerminateProcess(pi_.hProcess, kKilled);
    WaitForSingleObject(pi_.hProcess, 10000);
  }

 private:
  PROCESS_INFORMATION pi_{};
};

Child spawn_self(const std::vector<std::string>& args) {
  std::vector<std::string> all = {"--child"};
  all.insert(all.end(), args.begin(), args.end());
  return Child(self_path(), all);
}

// A named event "Local\<name>.ready" the child sets when it has attached (not one of the
// protocol's names: those end in .req / .rsp).
std::string ready_event(const std::string& name) { return "Local\\" + name + ".ready"; }

class ReadyEvent {
 public:
  explicit ReadyEvent(const std::string& name)
      : h_(CreateEventW(nullptr, TRUE, FALSE, widen(ready_event(name)).c_str())) {}
  ~ReadyEvent() {
    if (h_) CloseHandle(h_);
  }
  bool wait(std::chrono::milliseconds t = std::chrono::seconds(20)) const {
    return h_ && WaitForSingleObject(h_, static_cast<DWORD>(t.count())) == WAIT_OBJECT_0;
  }
  void reset() const { ResetEvent(h_); }

 private:
  HANDLE h_;
};

void signal_ready(const std::string& name) {
  HANDLE h = CreateEventW(nullptr, TRUE, FALSE, widen(ready_event(name)).c_str());
  if (h) {
    SetEvent(h);
    CloseHandle(h);
  }
}

bool mapping_exists(const std::string& name) {
  HANDLE h = OpenFileMappingW(FILE_MAP_READ, FALSE, widen("Local\\" + name).c_str());
  if (!h) return false;
  CloseHandle(h);
  return true;
}

bool event_exists(const std::string& os_name) {
  HANDLE h = OpenEventW(SYNCHRONIZE, FALSE, widen(os_name).c_str());
  if (!h) return false;
  CloseHandle(h);
  return true;
}

Options child_options() {
  Options o;
  o.timeout = std::chrono::seconds(10);
  o.spin = std::chrono::nanoseconds::zero();  // every wait blocks on the named event
  o.liveness_interval = std::chrono::milliseconds(20);
  return o;
}

// ---- child modes ------------------------------------------------------------------------------
//   responder NAME N       attach as responder, serve N requests (+1.0f each), close
//   responder-die NAME     attach as responder, take one request, die holding it
//   requester-die NAME     attach as requester, signal ready, die
//   hold NAME              attach as responder, signal ready, sleep until killed
int child_main(int argc, char** argv) {
  if (argc < 4) return 2;
  const std::string mode = argv[2];
  const std::string name = argv[3];
  try {
    if (mode == "responder") {
      const long n = argc > 4 ? std::atol(argv[4]) : 1;
      auto rsp = Responder::attach(name, DType::float32, {64}, child_options());
      signal_ready(name);
      for (long i = 0; i < n; ++i) {
        auto r = rsp.take();
        for (float& x : r.as<float>()) x += 1.0f;
        r.reply();
      }
      rsp.close();
      return kChildOk;
    }
    if (mode == "responder-die") {
      auto rsp = Responder::attach(name, DType::float32, {64}, child_options());
      signal_ready(name);
      auto r = rsp.take();
      if (r.as<float>()[0] != 7.0f) return kChildBadData;
      TerminateProcess(GetCurrentProcess(), kKilled);  // no close, no reply
    }
    if (mode == "requester-die") {
      auto req = Requester::attach(name, child_options());
      signal_ready(name);
      TerminateProcess(GetCurrentProcess(), kKilled);
    }
    if (mode == "hold") {
      auto rsp = Responder::attach(name, child_options());
      signal_ready(name);
      Sleep(60000);
      return kChildOk;
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "child %s: %s\n", mode.c_str(), e.what());
    return e.exit_code();
  }
  return 2;
}

std::vector<float> filled(float v) { return std::vector<float>(64, v); }

}  // namespace

// R-NAME-2: the mapping is Local\N, the events Local\N.req and Local\N.rsp. R-SEG-5: no unlink;
// the mapping disappears when its last handle is closed.
TEST(Win32, R_NAME_2_LocalMappingAndEventNames) {
  UniqueName n("names");
  {
    auto req = Requester::create(n, DType::float32, {64});
    EXPECT_TRUE(mapping_exists(n.str()));
    EXPECT_TRUE(event_exists("Local\\" + n.str() + ".req"));
    EXPECT_TRUE(event_exists("Local\\" + n.str() + ".rsp"));
    EXPECT_FALSE(mapping_exists("/" + n.str()));
  }
  EXPECT_FALSE(mapping_exists(n.str()));
  EXPECT_FALSE(event_exists("Local\\" + n.str() + ".req"));
}

// R-NAME-1: a name of 31 characters is rejected on Windows too, before any object exists.
TEST(Win32, R_NAME_1_LimitEnforcedOnWindows) {
  const std::string n31(31, 'w');
  EXPECT_CODE(Requester::create(n31, DType::uint8, {1}), ErrorCode::INVALID_NAME);
  EXPECT_FALSE(mapping_exists(n31));
  EXPECT_CODE(Requester::create("a\\b", DType::uint8, {1}), ErrorCode::INVALID_NAME);
  EXPECT_FALSE(mapping_exists("a\\b"));
}

// R-SEG-4: attaching to a missing name; creating a name whose creator is alive.
TEST(Win32, R_SEG_4_NotFoundAndAlreadyExists) {
  UniqueName n("seg4");
  EXPECT_CODE(Responder::attach(n), ErrorCode::SEGMENT_NOT_FOUND);
  auto req = Requester::create(n, DType::uint8, {8});
  EXPECT_CODE(Requester::create(n, DType::uint8, {8}), ErrorCode::ALREADY_EXISTS);
  EXPECT_CODE(Responder::create(n, DType::uint8, {8}), ErrorCode::ALREADY_EXISTS);
}

// R-SEG-5: the creator going away does not remove a mapping another handle still holds; the
// last one does. (A closed C++ handle keeps its view until it is destroyed, hence the scopes.)
TEST(Win32, R_SEG_5_MappingLivesWhileAnyHandleIsOpen) {
  UniqueName n("seg5");
  {
    std::optional<Requester> req = Requester::create(n, DType::uint8, {8});
    auto rsp = Responder::attach(n);
    req.reset();
    EXPECT_TRUE(mapping_exists(n.str()));
    EXPECT_EQ(rsp.phase(), Phase::IDLE);
    EXPECT_CODE(rsp.take(std::chrono::milliseconds(200)), ErrorCode::PEER_GONE);  // R-LIVE-4
  }
  EXPECT_FALSE(mapping_exists(n.str()));
  EXPECT_CODE(Responder::attach(n), ErrorCode::SEGMENT_NOT_FOUND);
  auto again = Requester::create(n, DType::uint8, {8});  // the name is free again
  EXPECT_TRUE(again.is_creator());
}

// R-SEG-7, R-SEG-4: a mapping whose creator closed (or died) but that another process still holds
// is stale on Windows: it cannot be removed, so a new creator fails with STALE_SEGMENT (whatever
// reclaim_stale says) until the holder closes it; then the name is free.
TEST(Win32, R_SEG_7_HeldMappingOfGoneCreatorIsStale) {
  UniqueName n("seg7");
  ReadyEvent ready(n.str());
  std::optional<Child> holder;
  {
    auto req = Requester::create(n, DType::float32, {64});
    holder.emplace(self_path(), std::vector<std::string>{"--child", "hold", n.str()});
    ASSERT_TRUE(holder->started());
    ASSERT_TRUE(ready.wait());
  }  // the creator closes and unmaps
  EXPECT_TRUE(mapping_exists(n.str()));
  EXPECT_CODE(Requester::create(n, DType::float32, {64}), ErrorCode::STALE_SEGMENT);
  Options no_reclaim;
  no_reclaim.reclaim_stale = false;
  EXPECT_CODE(Requester::create(n, DType::float32, {64}, no_reclaim), ErrorCode::STALE_SEGMENT);
  try {
    Requester::create(n, DType::float32, {64});
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds"), std::string::npos) << e.what();
  }
  holder->kill();  // the OS closes the holder's handles: the mapping dies with the last one
  EXPECT_FALSE(mapping_exists(n.str()));
  auto fresh = Requester::create(n, DType::float32, {64});
  EXPECT_TRUE(fresh.is_creator());
}

// R-SEG-8, R-LAYOUT-6: Windows rounds a mapping up to whole pages; an attacher sees the rounded
// size, and the header (capacity, segment_size) still decides.
TEST(Win32, R_SEG_8_PageRoundedSizeOnAttach) {
  UniqueName n("pages");
  auto req = Requester::create(n, DType::uint8, {100});  // segment_size 612
  Segment seg = Segment::attach(n, std::chrono::seconds(1));
  SYSTEM_INFO si;
  GetSystemInfo(&si);
  EXPECT_GE(seg.size(), 612u);
  EXPECT_EQ(seg.size() % si.dwPageSize, 0u);
  auto rsp = Responder::attach(n, DType::uint8, {100});
  EXPECT_EQ(rsp.capacity(), 100u);
}

// R-LIVE-2: the start stamp is the creation FILETIME; a terminated process is dead even while a
// handle to it is open; a live pid with another start stamp is a different process.
TEST(Win32, R_LIVE_2_CreationTimeStamp) {
  const ProcessInfo me = probe_process(current_pid());
  EXPECT_TRUE(me.exists);
  EXPECT_NE(me.start_stamp, 0u);
  EXPECT_EQ(self_start_stamp(), me.start_stamp);
  UniqueName n("live2");
  ReadyEvent ready(n.str());
  auto req = Requester::create(n, DType::float32, {64});
  Child child = spawn_self({"hold", n.str()});
  ASSERT_TRUE(child.started());
  ASSERT_TRUE(ready.wait());
  const ProcessInfo c = probe_process(child.pid());
  EXPECT_TRUE(c.exists);
  EXPECT_NE(c.start_stamp, 0u);
  EXPECT_TRUE(process_alive(child.pid(), c.start_stamp));
  EXPECT_FALSE(process_alive(child.pid(), c.start_stamp + 1));
  child.kill();
  EXPECT_FALSE(probe_process(child.pid()).exists);
  EXPECT_FALSE(process_alive(child.pid(), c.start_stamp));
}

// R-WAIT-1, R-WAIT-3: two processes, spin 0 so that every wait blocks on the role's named event;
// a lost wake-up would cost a whole slice (the liveness interval, 2 s here).
TEST(Win32, R_WAIT_1_CrossProcessRoundsThroughNamedEvents) {
  UniqueName n("wait1");
  ReadyEvent ready(n.str());
  Options o = child_options();
  o.liveness_interval = std::chrono::seconds(2);
  auto req = Requester::create(n, DType::float32, {64}, o);
  constexpr int kRounds = 200;
  Child rsp = spawn_self({"responder", n.str(), std::to_string(kRounds)});
  ASSERT_TRUE(rsp.started());
  ASSERT_TRUE(ready.wait());
  auto slowest = Clock::duration::zero();
  std::vector<float> out(64);
  for (int i = 0; i < kRounds; ++i) {
    const auto in = filled(static_cast<float>(i));
    const auto t0 = Clock::now();
    req.send(in.data(), {64});
    req.receive(out.data(), {64});
    slowest = std::max(slowest, Clock::now() - t0);
    ASSERT_EQ(out[0], static_cast<float>(i) + 1.0f) << "round " << i;
    ASSERT_EQ(out[63], static_cast<float>(i) + 1.0f) << "round " << i;
  }
  EXPECT_EQ(rsp.wait(), kChildOk);
  EXPECT_LT(slowest, std::chrono::milliseconds(1000)) << "a round waited a whole slice";
}

// R-LIVE-3: the responder dies holding the request (TAKEN): receive ends with PEER_GONE, the
// requester reclaims the payload (T7), and a new responder process serves the next round.
TEST(Win32, R_LIVE_3_ResponderKilledWhileHoldingIsPeerGone) {
  UniqueName n("live3");
  auto req = Requester::create(n, DType::float32, {64}, child_options());
  ReadyEvent ready(n.str());
  {
    Child dying = spawn_self({"responder-die", n.str()});
    ASSERT_TRUE(dying.started());
    ASSERT_TRUE(ready.wait());
    const auto in = filled(7.0f);
    req.send(in.data(), {64});
    const auto t0 = Clock::now();
    EXPECT_CODE(req.receive(), ErrorCode::PEER_GONE);
    EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5));
    EXPECT_EQ(dying.wait(), static_cast<long>(kKilled));
    EXPECT_EQ(req.phase(), Phase::IDLE);
    EXPECT_FALSE(req.pending().has_value());
  }
  ready.reset();
  Child next = spawn_self({"responder", n.str(), "1"});
  ASSERT_TRUE(next.started());
  ASSERT_TRUE(ready.wait());  // sending earlier would meet the dead slot: PEER_GONE (R-LIVE-3)
  std::vector<float> out(64);
  const auto in = filled(41.0f);
  req.send(in.data(), {64});
  req.receive(out.data(), {64});
  EXPECT_EQ(out[0], 42.0f);
  EXPECT_EQ(next.wait(), kChildOk);
}

// R-LIVE-3, R-LIVE-4: the requester process dies; the responder's take ends with PEER_GONE.
TEST(Win32, R_LIVE_3_RequesterKilledEndsResponderWait) {
  UniqueName n("live4");
  ReadyEvent ready(n.str());
  auto rsp = Responder::create(n, DType::float32, {64}, child_options());
  Child dying = spawn_self({"requester-die", n.str()});
  ASSERT_TRUE(dying.started());
  ASSERT_TRUE(ready.wait());
  EXPECT_EQ(dying.wait(), static_cast<long>(kKilled));
  const auto t0 = Clock::now();
  EXPECT_CODE(rsp.take(), ErrorCode::PEER_GONE);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(5));
}

#if defined(SHMBRIDGE_RESPONDER_EXAMPLE) && defined(SHMBRIDGE_REQUESTER_EXAMPLE)
// The examples, C++ to C++ in two processes: shared_memory_example (creates, sends (512, 512)
// float32 and verifies every element) and responder_example (+1.0 in place) (R-STATE-1, R-WAIT-1).
TEST(Win32, Examples_CppToCppRoundTrip) {
  UniqueName n("examples");
  Child requester(native_path(SHMBRIDGE_REQUESTER_EXAMPLE),
                  {"--name", n.str(), "--rounds", "50", "--quiet"});
  ASSERT_TRUE(requester.started());
  Child responder(native_path(SHMBRIDGE_RESPONDER_EXAMPLE),
                  {"--name", n.str(), "--wait", "20", "--quiet"});
  ASSERT_TRUE(responder.started());
  EXPECT_EQ(requester.wait(std::chrono::seconds(60)), 0);
  EXPECT_EQ(responder.wait(std::chrono::seconds(30)), 0);
}
#endif

#if defined(SHMBRIDGE_PEER_EXE)
namespace {
Child peer(const std::vector<std::string>& args) {
  return Child(native_path(SHMBRIDGE_PEER_EXE), args);
}

bool wait_for_mapping(const std::string& name) {
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < deadline) {
    if (mapping_exists(name)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}
}  // namespace

// The conformance peer (spec/PEER.md), C++ to C++ under Windows: 20 verified rounds.
TEST(Win32, Peer_CppToCppRoundTrip) {
  UniqueName n("peer");
  Child req = peer({"--role", "requester", "--name", n.str(), "--create", "--shape", "64,64",
                    "--rounds", "20", "--wait-peer", "--timeout", "10"});
  ASSERT_TRUE(req.started());
  ASSERT_TRUE(wait_for_mapping(n.str()));
  Child rsp = peer(
      {"--role", "responder", "--name", n.str(), "--attach", "--rounds", "0", "--timeout", "10"});
  ASSERT_TRUE(rsp.started());
  EXPECT_EQ(req.wait(std::chrono::seconds(60)), 0);
  EXPECT_EQ(rsp.wait(std::chrono::seconds(30)), 0);
}

// R-LIVE-3 with the conformance peers: the responder is killed right after T2 of round 1; the
// requester exits with PEER_GONE's exit code (16, spec §8).
TEST(Win32, Peer_KilledResponderIsPeerGone) {
  UniqueName n("peerkill");
  Child req = peer({"--role", "requester", "--name", n.str(), "--create", "--shape", "64,64",
                    "--rounds", "5", "--wait-peer", "--timeout", "10"});
  ASSERT_TRUE(req.started());
  ASSERT_TRUE(wait_for_mapping(n.str()));
  Child rsp = peer({"--role", "responder", "--name", n.str(), "--attach", "--rounds", "0",
                    "--timeout", "10", "--crash-at", "T2@1"});
  ASSERT_TRUE(rsp.started());
  EXPECT_EQ(rsp.wait(std::chrono::seconds(30)), static_cast<long>(kKilled));
  EXPECT_EQ(req.wait(std::chrono::seconds(30)), exit_code(ErrorCode::PEER_GONE));
}
#endif

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "--child") return child_main(argc, argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
