// R-LIVE-1, R-LIVE-2: process liveness and slot claims.
#include <sys/wait.h>

#include <thread>

#include "test_util.hpp"

using namespace shmbridge;
using namespace shmbridge::test;

// R-LIVE-2: field 22 is counted after the LAST ')' (comm may contain spaces and parens).
TEST(Liveness, R_LIVE_2_ParseProcStatWithHostileComm) {
  std::string fields;
  for (int i = 4; i <= 21; ++i) fields += " " + std::to_string(i);
  const std::string text = "123 (a) b) (c d) R" + fields + " 987654 23 24\n";
  char state = '?';
  std::uint64_t stamp = 0;
  ASSERT_TRUE(parse_proc_stat(text.c_str(), state, stamp));
  EXPECT_EQ(state, 'R');
  EXPECT_EQ(stamp, 987654u);
  EXPECT_FALSE(parse_proc_stat("123 no paren", state, stamp));
  EXPECT_FALSE(parse_proc_stat("123 (x) S 1 2", state, stamp));  // too few fields
}

// R-LIVE-2
TEST(Liveness, R_LIVE_2_SelfIsAliveWithItsStamp) {
  const auto info = probe_process(current_pid());
  EXPECT_TRUE(info.exists);
  EXPECT_NE(info.start_stamp, 0u);
  EXPECT_EQ(self_start_stamp(), info.start_stamp);
  EXPECT_TRUE(process_alive(current_pid(), self_start_stamp()));
  EXPECT_TRUE(process_alive(current_pid(), 0));
  EXPECT_FALSE(process_alive(current_pid(), self_start_stamp() + 1));  // pid reused by another
  EXPECT_FALSE(process_alive(0, 0));
}

// R-LIVE-2: EPERM counts as existing (pid 1 belongs to root; we may or may not be root).
TEST(Liveness, R_LIVE_2_OtherUsersProcessExists) { EXPECT_TRUE(probe_process(1).exists); }

// R-LIVE-2: a zombie is dead; a reaped process is dead.
TEST(Liveness, R_LIVE_2_ZombieAndReapedAreDead) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  // Wait until the child is a zombie (exited, not yet reaped).
  bool zombie = false;
  for (int i = 0; i < 2000 && !zombie; ++i) {
    siginfo_t info{};
    ::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT);
    zombie = info.si_pid == child;
    if (!zombie) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_TRUE(zombie);
  EXPECT_FALSE(probe_process(static_cast<std::uint32_t>(child)).exists);
  EXPECT_FALSE(process_alive(static_cast<std::uint32_t>(child), 0));
  ::waitpid(child, nullptr, 0);
  EXPECT_FALSE(process_alive(static_cast<std::uint32_t>(child), 0));
}

// R-LIVE-1: a slot held by a live process cannot be claimed (ROLE_TAKEN); a dead owner's can.
TEST(Liveness, R_LIVE_1_SlotClaim) {
  alignas(8) std::uint8_t slot[32] = {};
  SlotRef s(slot);
  EXPECT_EQ(s.peer_state(), PeerState::empty);
  s.claim("requester");
  EXPECT_EQ(s.pid(), current_pid());
  EXPECT_EQ(s.state(), static_cast<std::uint32_t>(SlotState::attached));
  EXPECT_EQ(s.incarnation(), 1u);
  EXPECT_EQ(s.start_time(), self_start_stamp());
  EXPECT_EQ(s.peer_state(), PeerState::alive);
  EXPECT_CODE(s.claim("requester"), ErrorCode::ROLE_TAKEN);
  s.release();
  EXPECT_EQ(s.pid(), 0u);
  EXPECT_EQ(s.peer_state(), PeerState::closed);
  s.claim("requester");
  EXPECT_EQ(s.incarnation(), 2u);
  // A dead owner: pid of a reaped child.
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  layout::store_u32(slot + layout::kSlotPid, static_cast<std::uint32_t>(child));
  EXPECT_EQ(s.peer_state(), PeerState::dead);
  s.claim("requester");
  EXPECT_EQ(s.pid(), current_pid());
  EXPECT_EQ(s.incarnation(), 3u);
}

// R-LIVE-1, R-STALE-3: a claimer stores start_time = 0 before its pid CAS and its own stamp after,
// and checkers load pid before start_time. A slot showing a live pid with start_time 0 is a claim
// in progress and is judged alive (R-LIVE-2 compares the stamp only when non-zero): a second
// claimer fails with ROLE_TAKEN instead of CASing the live claimer away.
TEST(Liveness, R_LIVE_1_R_STALE_3_LivePidWithZeroStartTimeIsAlive) {
  alignas(8) std::uint8_t slot[32] = {};
  SlotRef s(slot);
  atomic_u32(slot + layout::kSlotPid).store(current_pid());
  atomic_u32(slot + layout::kSlotState).store(static_cast<std::uint32_t>(SlotState::attached));
  atomic_u64(slot + layout::kSlotStartTime).store(0);
  EXPECT_TRUE(process_alive(current_pid(), 0));
  EXPECT_EQ(s.peer_state(), PeerState::alive);
  EXPECT_CODE(s.claim("responder"), ErrorCode::ROLE_TAKEN);
  EXPECT_EQ(s.pid(), current_pid());  // untouched
  EXPECT_EQ(s.start_time(), 0u);
  // A dead pid (reaped child) with start_time 0 is dead: the claim succeeds and ends with the
  // claimer's own stamp.
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  atomic_u32(slot + layout::kSlotPid).store(static_cast<std::uint32_t>(child));
  EXPECT_EQ(s.peer_state(), PeerState::dead);
  s.claim("responder");
  EXPECT_EQ(s.pid(), current_pid());
  EXPECT_EQ(s.start_time(), self_start_stamp());
}

// R-LIVE-1/2: a forked child writes its OWN start stamp (the cache is per pid).
TEST(Liveness, R_LIVE_2_ForkedChildHasItsOwnStamp) {
  (void)self_start_stamp();                                    // fill the parent's cache
  std::this_thread::sleep_for(std::chrono::milliseconds(30));  // > 1 clock tick
  const pid_t child = ::fork();
  if (child == 0) {
    ::_exit(self_start_stamp() == probe_process(current_pid()).start_stamp ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

namespace {
std::uint32_t reaped_pid() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  return static_cast<std::uint32_t>(child);
}
void write_slot(std::uint8_t* slot, std::uint32_t pid, SlotState state, std::uint64_t start) {
  atomic_u32(slot + layout::kSlotPid).store(pid);
  atomic_u32(slot + layout::kSlotState).store(static_cast<std::uint32_t>(state));
  atomic_u64(slot + layout::kSlotStartTime).store(start);
}
}  // namespace

// R-LIVE-3 (last sentence): a slot with pid != 0 that is not yet ATTACHED is being claimed and is
// judged by its pid alone; gone is ATTACHED with a dead process, or CLOSED with pid 0.
TEST(Liveness, R_LIVE_3_SlotBeingClaimedIsJudgedByPid) {
  UniqueName n("claim");
  auto req = Requester::create(n, DType::uint8, {4});
  Segment raw = Segment::attach(n, std::chrono::seconds(1));
  std::uint8_t* slot = raw.base() + layout::kOffResponderSlot;
  SlotRef ref(slot);
  // CLOSED with a live pid (this process) and a start_time that is not its own (the previous
  // owner's): a restart in progress, not a departure.
  write_slot(slot, current_pid(), SlotState::closed, self_start_stamp() + 12345);
  EXPECT_EQ(ref.peer_state(), PeerState::alive);
  const std::uint8_t in[4] = {1, 2, 3, 4};
  req.send(in, {4});
  EXPECT_CODE(req.try_receive(), ErrorCode::TIMEOUT);  // not PEER_GONE: the request is withdrawn
  EXPECT_FALSE(req.pending());
  write_slot(slot, current_pid(), SlotState::empty, 0);  // first claim in progress
  EXPECT_EQ(ref.peer_state(), PeerState::alive);
  const std::uint32_t dead = reaped_pid();
  write_slot(slot, dead, SlotState::closed, 0);  // the claimer died: judged by its pid
  EXPECT_EQ(ref.peer_state(), PeerState::dead);
  write_slot(slot, 0, SlotState::closed, 0);  // CLOSED with pid 0: gone
  EXPECT_EQ(ref.peer_state(), PeerState::closed);
  req.send(in, {4});
  EXPECT_CODE(req.try_receive(), ErrorCode::PEER_GONE);
  write_slot(slot, dead, SlotState::attached, 0);  // ATTACHED, dead: gone
  EXPECT_EQ(ref.peer_state(), PeerState::dead);
  write_slot(slot, 0, SlotState::empty, 0);  // EMPTY: no peer yet, not gone
  EXPECT_EQ(ref.peer_state(), PeerState::empty);
}

// R-LIVE-7, R-LIVE-2: every case of the shared vectors spec/vectors/procstat.json (fields counted
// after the last ')'; Z/X/x dead; no bytes: gone; unparsable: exists with an unknown stamp).
TEST(Liveness, R_LIVE_7_ProcStatVectors) {
  const auto doc = load_spec("vectors/procstat.json");
  ASSERT_GE(doc["cases"].size(), 10u);
  for (const auto& c : doc["cases"]) {
    const std::string text = c["text"].get<std::string>();
    const ProcessInfo info = process_info_from_stat(text.c_str());
    EXPECT_EQ(info.exists, c["expect"]["exists"].get<bool>()) << c["id"];
    EXPECT_EQ(info.start_stamp, c["expect"]["start_stamp"].get<std::uint64_t>()) << c["id"];
  }
}

// R-LIVE-6: pid is read first; pid 0 is CLOSED (gone) or nobody (no peer yet, also for ATTACHED,
// a claim completed between the loads); pid != 0 not ATTACHED is judged by the pid alone.
TEST(Liveness, R_LIVE_6_SlotReadingTable) {
  alignas(8) std::uint8_t slot[32] = {};
  SlotRef s(slot);
  const std::uint32_t dead = reaped_pid();
  write_slot(slot, 0, SlotState::closed, 0);
  EXPECT_EQ(s.peer_state(), PeerState::closed);
  write_slot(slot, 0, SlotState::attached, self_start_stamp());
  EXPECT_EQ(s.peer_state(), PeerState::empty);
  write_slot(slot, 0, SlotState::empty, 0);
  EXPECT_EQ(s.peer_state(), PeerState::empty);
  atomic_u32(slot + layout::kSlotState).store(7);  // a state outside the table, nobody holds it
  EXPECT_EQ(s.peer_state(), PeerState::empty);
  write_slot(slot, current_pid(), SlotState::closed, self_start_stamp() + 1);  // closing
  EXPECT_EQ(s.peer_state(), PeerState::alive);
  write_slot(slot, dead, SlotState::closed, 0);  // died while closing or claiming
  EXPECT_EQ(s.peer_state(), PeerState::dead);
  write_slot(slot, current_pid(), SlotState::attached, self_start_stamp() + 1);  // pid reused
  EXPECT_EQ(s.peer_state(), PeerState::dead);
}

// R-CLOSE-1: release() stores CLOSED, then pid 0, and keeps start_time and incarnation.
TEST(Liveness, R_CLOSE_1_ReleaseKeepsStampAndIncarnation) {
  alignas(8) std::uint8_t slot[32] = {};
  SlotRef s(slot);
  s.claim("requester");
  s.mark_closed();  // step (1): CLOSED with the pid still set is judged by the pid: alive
  EXPECT_EQ(s.peer_state(), PeerState::alive);
  s.clear_pid();  // step (3)
  EXPECT_EQ(s.peer_state(), PeerState::closed);
  EXPECT_EQ(s.start_time(), self_start_stamp());
  EXPECT_EQ(s.incarnation(), 1u);
}
