// R-SEG-1..6, R-STALE-1/2, R-LAYOUT-7: creating, attaching and reclaiming segments.
#include <fcntl.h>
#include <pwd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstring>
#include <optional>
#include <thread>

#include "test_util.hpp"

using namespace shmbridge;
using namespace shmbridge::test;
using Clock = std::chrono::steady_clock;

namespace {

// A creator that dies without closing: its segment stays with a dead creator slot.
void create_in_dying_child(const std::string& name) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    try {
      auto r = Requester::create(name, DType::uint8, {16});
      ::_exit(0);  // no destructor: the segment stays behind
    } catch (...) {
      ::_exit(3);
    }
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

Header read_header(const std::string& name) {
  auto seg = Segment::attach(name, std::chrono::seconds(0));
  return decode_header(seg.base());
}

}  // namespace

// R-SEG-1, R-SEG-2: created exclusively, sized header + capacity, mode 0600.
TEST(Segment, R_SEG_2_CreatedWithMode0600AndSized) {
  UniqueName n("mode");
  auto req = Requester::create(n, DType::float32, {3, 4});
  struct stat st{};
  ASSERT_TRUE(n.stat(st));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
#if defined(__APPLE__)
  // macOS rounds a shm object up to whole pages (R-SEG-8, R-LAYOUT-6: "at least").
  EXPECT_GE(static_cast<std::uint64_t>(st.st_size), 512u + 48u);
#else
  EXPECT_EQ(static_cast<std::uint64_t>(st.st_size), 512u + 48u);
#endif
  const Header h = read_header(n);
  EXPECT_EQ(h.capacity, 48u);
  EXPECT_EQ(h.creator.pid, current_pid());
  EXPECT_EQ(h.requester.pid, current_pid());
  EXPECT_EQ(h.responder.pid, 0u);
  EXPECT_EQ(h.word, 0u);  // R-STATE-1: a new segment starts IDLE, seq 0
}

// R-SEG-1 (1.1 errata): capacity is nbytes unless stated; a stated one sizes the segment; one below
// the array is CAPACITY_EXCEEDED before any OS object; attach and v2 create reject a capacity.
TEST(Segment, R_SEG_1_StatedCapacity) {
  UniqueName n("cap");
  Options big;
  big.capacity = 4096;
  {
    auto req = Requester::create(n, DType::float32, {3, 4}, big);
    EXPECT_EQ(req.capacity(), 4096u);
    const Header h = read_header(n);
    EXPECT_EQ(h.capacity, 4096u);
    EXPECT_EQ(h.segment_size, 512u + 4096u);
    struct stat st{};
    ASSERT_TRUE(n.stat(st));
    EXPECT_GE(static_cast<std::uint64_t>(st.st_size), 512u + 4096u);
    EXPECT_CODE(Responder::attach(n, big), ErrorCode::INVALID_ARGUMENT);
    auto rsp = Responder::attach(n, DType::float32, {3, 4});
    const float a[12] = {1};
    req.send(a, {3, 4});
    rsp.take().reply();
    float out[12] = {};
    req.receive(out, {3, 4});
    EXPECT_EQ(out[0], 1.0f);
  }
  Options small;
  small.capacity = 47;
  try {
    Responder::create(n, DType::float32, {3, 4}, small);
    FAIL() << "a capacity below the array was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::CAPACITY_EXCEEDED);
    EXPECT_NE(std::string(e.what()).find("48"), std::string::npos) << e.what();
  }
  struct stat st{};
  EXPECT_FALSE(n.stat(st));  // no OS object was created
  small.capacity = 48;       // exactly nbytes is fine
  EXPECT_EQ(Responder::create(n, DType::float32, {3, 4}, small).capacity(), 48u);
}

// R-SEG-4, R-ATTACH-1: a missing name is SEGMENT_NOT_FOUND once the attach deadline has passed;
// timeout 0 checks once; the message says how long attach waited.
TEST(Segment, R_SEG_4_AttachMissingIsSegmentNotFound) {
  UniqueName n("missing");
  Options once;
  once.timeout = std::chrono::nanoseconds::zero();
  EXPECT_CODE(Responder::attach(n, once), ErrorCode::SEGMENT_NOT_FOUND);
  try {
    Requester::attach(n, once);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("one check (timeout 0)"), std::string::npos) << e.what();
  }
  Options shortly;
  shortly.timeout = std::chrono::milliseconds(150);
  const auto t0 = Clock::now();
  try {
    Requester::attach(n, shortly);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::SEGMENT_NOT_FOUND);
    EXPECT_NE(std::string(e.what()).find("after waiting 0.1"), std::string::npos) << e.what();
  }
  EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(150));  // it waited for the creator
  EXPECT_FALSE(n.exists());                                      // nothing was created
}

// R-ATTACH-1: either side may start first: attach waits for a creator that comes later.
TEST(Segment, R_ATTACH_1_AttachWaitsForTheCreator) {
  UniqueName n("later");
  std::thread creator_thread;
  std::optional<Requester> creator;
  creator_thread = std::thread([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(120));
    creator.emplace(Requester::create(n, DType::uint8, {4}));
  });
  Options opt;
  opt.timeout = std::chrono::seconds(5);
  const auto t0 = Clock::now();
  auto rsp = Responder::attach(n, DType::uint8, {4}, opt);
  EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(100));
  creator_thread.join();
  const std::uint8_t a[4] = {1, 2, 3, 4};
  creator->send(a, {4});
  rsp.take().reply();
  EXPECT_NO_THROW(creator->receive());
}

// R-ATTACH-2: one deadline per attach: the wait for the segment and the requester's recovery
// (R-REC-1, waiting for the late reply of a live responder holding a request) share it.
TEST(Segment, R_ATTACH_2_OneDeadlineForSegmentAndRecovery) {
  UniqueName n("onedl");
  std::optional<Responder> creator;
  std::optional<Segment> raw;
  std::thread creator_thread([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    creator.emplace(Responder::create(n, DType::uint8, {4}));
    // A request TAKEN by this live responder (a previous requester's): the attaching requester
    // must wait for its late reply (R-REC-1), which never comes.
    raw.emplace(Segment::attach(n, std::chrono::seconds(0)));
    atomic_u32(raw->base() + layout::kOffWord).store(make_word(Phase::TAKEN, 1));
  });
  Options opt;
  opt.timeout = std::chrono::milliseconds(600);
  const auto t0 = Clock::now();
  EXPECT_CODE(Requester::attach(n, opt), ErrorCode::TIMEOUT);
  const auto took = Clock::now() - t0;
  creator_thread.join();
  EXPECT_LT(took, std::chrono::milliseconds(950));  // not 400 ms + a fresh 600 ms
}

// R-SEG-4, R-STALE-2: a live creator's name cannot be created again.
TEST(Segment, R_SEG_4_CreateOverLiveCreatorIsAlreadyExists) {
  UniqueName n("exists");
  auto req = Requester::create(n, DType::uint8, {8});
  EXPECT_CODE(Responder::create(n, DType::uint8, {8}), ErrorCode::ALREADY_EXISTS);
  EXPECT_CODE(Requester::create(n, DType::uint8, {8}), ErrorCode::ALREADY_EXISTS);
  // The original segment is untouched and still usable.
  auto rsp = Responder::attach(n, DType::uint8, {8});
  std::uint8_t in[8] = {1, 2, 3, 4, 5, 6, 7, 8}, out[8];
  req.send(in, {8});
  auto r = rsp.take();
  r.reply();
  req.receive(out, {8});
  EXPECT_EQ(std::memcmp(in, out, 8), 0);
}

// R-SEG-3: only the creator unlinks, on close (unless keep_segment); an attacher never does.
TEST(Segment, R_SEG_3_OnlyCreatorUnlinks) {
  UniqueName n("unlink");
  {
    auto req = Requester::create(n, DType::uint8, {8});
    {
      auto rsp = Responder::attach(n);
      rsp.close();
    }
    EXPECT_TRUE(n.exists());
  }
  EXPECT_FALSE(n.exists());
  Options keep;
  keep.keep_segment = true;
  {
    auto rsp = Responder::create(n, DType::uint8, {8}, keep);
  }
  EXPECT_TRUE(n.exists());
  // A failed attach (mismatch) does not unlink either.
  EXPECT_CODE(Requester::attach(n, DType::uint16, {8}), ErrorCode::DTYPE_MISMATCH);
  EXPECT_TRUE(n.exists());
}

// R-LAYOUT-7: expected dtype/shape are compared with `declared`, without changing the segment.
TEST(Segment, R_LAYOUT_7_AttachMismatchDoesNotTouchSegment) {
  UniqueName n("mismatch");
  auto req = Requester::create(n, DType::float32, {512, 512});
  const Header before = read_header(n);
  try {
    Responder::attach(n, DType::float32, {512, 256});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::SHAPE_MISMATCH);
    EXPECT_NE(std::string(e.what()).find("(512, 256)"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("(512, 512)"), std::string::npos) << e.what();
  }
  EXPECT_CODE(Responder::attach(n, DType::float64, {512, 512}), ErrorCode::DTYPE_MISMATCH);
  EXPECT_CODE(Responder::attach(n, static_cast<DType>(99), {512, 512}), ErrorCode::DTYPE_MISMATCH);
  EXPECT_EQ(read_header(n), before);
  EXPECT_NO_THROW(Responder::attach(n, DType::float32, {512, 512}));
}

// R-STALE-1/2: a dead creator's segment is reclaimed by default ...
TEST(Segment, R_STALE_2_StaleSegmentIsReclaimed) {
  UniqueName n("stale");
  create_in_dying_child(n);
  ASSERT_TRUE(n.exists());
  const Header old = read_header(n);
  EXPECT_NE(old.creator.pid, current_pid());
  auto req = Requester::create(n, DType::float64, {2});
  const Header h = read_header(n);
  EXPECT_EQ(h.creator.pid, current_pid());
  EXPECT_EQ(h.declared.dtype, static_cast<std::uint32_t>(DType::float64));
}

// R-STALE-2: ... and fails with STALE_SEGMENT naming the removal command when reclaim is off.
TEST(Segment, R_STALE_2_NoReclaimIsStaleSegment) {
  UniqueName n("noreclaim");
  create_in_dying_child(n);
  Options opt;
  opt.reclaim_stale = false;
  try {
    Requester::create(n, DType::uint8, {16}, opt);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::STALE_SEGMENT);
    EXPECT_NE(std::string(e.what()).find("rm " + n.dev_shm()), std::string::npos) << e.what();
  }
  EXPECT_TRUE(n.exists());  // left alone
}

// R-STALE-2: an object that cannot be validated is never reclaimed.
TEST(Segment, R_STALE_2_CorruptObjectIsNotReclaimed) {
  UniqueName n("corrupt");
  const int fd = ::shm_open(("/" + n.str()).c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 4096), 0);
  ASSERT_EQ(::pwrite(fd, "NOTSHMBR", 8, 0), 8);
  ::close(fd);
  EXPECT_CODE(Requester::create(n, DType::uint8, {16}), ErrorCode::CORRUPT_HEADER);
  EXPECT_CODE(Requester::attach(n), ErrorCode::CORRUPT_HEADER);
  EXPECT_TRUE(n.exists());
}

// R-SEG-6: an attacher retries while magic is 0 until its deadline ...
TEST(Segment, R_SEG_6_AttachWaitsForMagic) {
  UniqueName n("init");
  const int fd = ::shm_open(("/" + n.str()).c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  const Header h = Header::fresh(DType::uint8, {8});
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(h.segment_size)), 0);
  auto* base = static_cast<std::uint8_t*>(
      ::mmap(nullptr, h.segment_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ::close(fd);
  Header unpublished = h;
  unpublished.magic = {};
  encode_header(unpublished, base);
  // ... and fails with SEGMENT_NOT_FOUND at the deadline
  const auto t0 = Clock::now();
  EXPECT_CODE(Segment::attach(n, std::chrono::milliseconds(50)), ErrorCode::SEGMENT_NOT_FOUND);
  EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(50));
  // ... or succeeds once the creator publishes the magic.
  std::thread creator([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    atomic_u64(base).store(layout::load_u64(layout::kMagic.data()), std::memory_order_release);
  });
  EXPECT_NO_THROW(Segment::attach(n, std::chrono::seconds(2)));
  creator.join();
  ::munmap(base, h.segment_size);
}

// R-SEG-2/4: another user is refused (PERMISSION_DENIED), the segment being 0600.
TEST(Segment, R_SEG_2_OtherUserGetsPermissionDenied) {
  UniqueName n("perm");
#if defined(__APPLE__)
  if (::geteuid() != 0) GTEST_SKIP() << "macOS: a POSIX shm object has no path to chmod";
#endif
  auto req = Requester::create(n, DType::uint8, {8});
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::geteuid() == 0) {
      const struct passwd* nobody = ::getpwnam("nobody");
      if (!nobody || ::setgid(nobody->pw_gid) != 0 || ::setuid(nobody->pw_uid) != 0) ::_exit(4);
    } else if (::chmod(n.dev_shm().c_str(), 0) != 0) {
      ::_exit(5);
    }
    const ErrorCode c = code_of([&] { Responder::attach(n.str()); });
    ::_exit(c == ErrorCode::PERMISSION_DENIED ? 0 : 6);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

// R-STATE-5, R-LIVE-1: a second live requester is ROLE_TAKEN.
TEST(Segment, R_STATE_5_SecondRoleOwnerIsRoleTaken) {
  UniqueName n("role");
  auto req = Requester::create(n, DType::uint8, {8});
  auto rsp = Responder::attach(n);
  EXPECT_CODE(Requester::attach(n), ErrorCode::ROLE_TAKEN);
  EXPECT_CODE(Responder::attach(n), ErrorCode::ROLE_TAKEN);
  rsp.close();
  EXPECT_NO_THROW(Responder::attach(n));
}

namespace {
// A raw OS object of `size` bytes under `name`; `header` (if given) is written at offset 0.
void raw_object(const std::string& name, std::uint64_t size, const Header* header = nullptr) {
  const int fd = ::shm_open(("/" + name).c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
  if (header) {
    std::vector<std::uint8_t> bytes(layout::kHeaderSize);
    encode_header(*header, bytes.data());
    const auto n = static_cast<ssize_t>(std::min<std::uint64_t>(size, bytes.size()));
    ASSERT_EQ(::pwrite(fd, bytes.data(), static_cast<std::size_t>(n), 0), n);
  }
  ::close(fd);
}
}  // namespace

// R-LAYOUT-6, spec/vectors D16: an object smaller than the header (1..511 bytes) is CORRUPT_HEADER
// at once, on attach and on create (never reclaimed, R-STALE-2); it is never mapped or read.
TEST(Segment, R_LAYOUT_6_ObjectSmallerThanHeaderIsCorruptAtOnce) {
  UniqueName n("tiny");
  raw_object(n, 100);
  Options opt;
  opt.timeout = std::chrono::seconds(5);
  const auto t0 = Clock::now();
  EXPECT_CODE(Requester::attach(n, opt), ErrorCode::CORRUPT_HEADER);
  EXPECT_CODE(Responder::attach(n, opt), ErrorCode::CORRUPT_HEADER);
  EXPECT_CODE(Requester::create(n, DType::uint8, {16}, opt), ErrorCode::CORRUPT_HEADER);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(1));  // no waiting for an "initialisation"
  EXPECT_TRUE(n.exists());                                // left alone
}

// R-LAYOUT-6: a header whose segment_size exceeds the OS object (a truncated segment) is
// CORRUPT_HEADER on attach, with no SIGBUS (only the existing bytes are mapped and read).
TEST(Segment, R_LAYOUT_6_TruncatedSegmentIsCorruptNoSigbus) {
  UniqueName n("trunc");
  const Header h = Header::fresh(DType::float32, {512, 512});  // 1 MiB payload
  raw_object(n, 4096, &h);
  EXPECT_CODE(Requester::attach(n), ErrorCode::CORRUPT_HEADER);
  EXPECT_CODE(Responder::attach(n, DType::float32, {512, 512}), ErrorCode::CORRUPT_HEADER);
  EXPECT_CODE(Requester::create(n, DType::uint8, {16}), ErrorCode::CORRUPT_HEADER);
  UniqueName m("trunchdr");
  raw_object(m, layout::kHeaderSize, &h);  // exactly the header, no payload
  EXPECT_CODE(Requester::attach(m), ErrorCode::CORRUPT_HEADER);
}

// R-SEG-6: an object of size 0 is still being initialised: attach retries until its deadline and
// then reports SEGMENT_NOT_FOUND.
TEST(Segment, R_SEG_6_EmptyObjectIsInitialising) {
  UniqueName n("empty");
  raw_object(n, 0);
  Options opt;
  opt.timeout = std::chrono::milliseconds(50);
  EXPECT_CODE(Requester::attach(n, opt), ErrorCode::SEGMENT_NOT_FOUND);
}

// R-STALE-1: a creator slot that is CLOSED (a creator that kept the segment and detached) is not
// held by a live process: the segment is stale, reclaimed by default, STALE_SEGMENT with
// reclaiming off. An object smaller than the header is CORRUPT_HEADER and never reclaimed.
TEST(Segment, R_STALE_1_KeptSegmentIsStaleTinyObjectIsNot) {
  UniqueName n("kept");
  Options keep;
  keep.keep_segment = true;
  {
    auto creator = Requester::create(n, DType::uint8, {16}, keep);
  }
  const Header kept = read_header(n);
  EXPECT_EQ(kept.creator.state, static_cast<std::uint32_t>(SlotState::closed));
  EXPECT_EQ(kept.creator.pid, 0u);
  Options no_reclaim;
  no_reclaim.reclaim_stale = false;
  EXPECT_CODE(Requester::create(n, DType::float64, {2}, no_reclaim), ErrorCode::STALE_SEGMENT);
  EXPECT_EQ(read_header(n).declared.dtype, static_cast<std::uint32_t>(DType::uint8));
  {
    auto fresh = Requester::create(n, DType::float64, {2});  // reclaimed
    const Header h = read_header(n);
    EXPECT_EQ(h.declared.dtype, static_cast<std::uint32_t>(DType::float64));
    EXPECT_EQ(h.creator.pid, current_pid());
  }
  UniqueName t("tiny511");
  raw_object(t, layout::kHeaderSize - 1);
  EXPECT_CODE(Requester::create(t, DType::uint8, {16}), ErrorCode::CORRUPT_HEADER);
  struct stat st{};
  ASSERT_TRUE(t.stat(st));  // never reclaimed
  EXPECT_EQ(st.st_size, static_cast<off_t>(layout::kHeaderSize - 1));
}

// R-SEG-6: the slots are written before magic: a published segment shows the creator slot and
// the creator's role slot claimed (incarnation 1, ATTACHED) and the other role's slot EMPTY.
TEST(Segment, R_SEG_6_SlotsAreWrittenBeforeMagic) {
  UniqueName n("slots");
  auto rsp = Responder::create(n, DType::uint8, {4});
  const Header h = read_header(n);
  for (const Slot* s : {&h.creator, &h.responder}) {
    EXPECT_EQ(s->pid, current_pid());
    EXPECT_EQ(s->state, static_cast<std::uint32_t>(SlotState::attached));
    EXPECT_EQ(s->start_time, self_start_stamp());
    EXPECT_EQ(s->incarnation, 1u);
  }
  EXPECT_EQ(h.requester.pid, 0u);
  EXPECT_EQ(h.requester.state, static_cast<std::uint32_t>(SlotState::empty));
}

// R-STALE-1: an EMPTY creator slot in a published segment is stale (no conforming creator leaves
// it): reclaimed by default, STALE_SEGMENT with reclaiming off; never ALREADY_EXISTS or a wait.
TEST(Segment, R_STALE_1_EmptyCreatorSlotIsStale) {
  UniqueName n("emptycr");
  Options keep;
  keep.keep_segment = true;
  {
    auto creator = Requester::create(n, DType::uint8, {16}, keep);
  }
  {
    auto seg = Segment::attach(n, std::chrono::seconds(0));
    std::memset(seg.base() + layout::kOffCreatorSlot, 0, layout::kSlotSize);  // EMPTY
  }
  Options no_reclaim;
  no_reclaim.reclaim_stale = false;
  no_reclaim.timeout = std::chrono::seconds(1);
  EXPECT_CODE(Requester::create(n, DType::float64, {2}, no_reclaim), ErrorCode::STALE_SEGMENT);
  auto fresh = Requester::create(n, DType::float64, {2});  // reclaimed
  EXPECT_EQ(read_header(n).declared.dtype, static_cast<std::uint32_t>(DType::float64));
}

// R-STALE-3: a reclaimer unlinks only after CASing the creator pid it read as dead to its own
// pid: when another reclaimer changed that pid in between, nothing is unlinked.
TEST(Segment, R_STALE_3_UnlinkOnlyAfterCasOfTheDeadPid) {
  UniqueName n("recas");
  Options keep;
  keep.keep_segment = true;
  {
    auto creator = Requester::create(n, DType::uint8, {16}, keep);
  }  // creator slot CLOSED, pid 0
  auto seg = Segment::attach(n, std::chrono::seconds(1));
  auto& creator_pid = atomic_u32(seg.base() + layout::kOffCreatorSlot + layout::kSlotPid);
  const std::uint32_t other = current_pid() + 1;  // another reclaimer's CAS won meanwhile
  creator_pid.store(other);
  EXPECT_FALSE(detail::reclaim_stale_segment(seg.base(), 0, "/" + n.str()));
  EXPECT_TRUE(n.exists());               // not unlinked
  EXPECT_EQ(creator_pid.load(), other);  // and the slot left as the winner wrote it
  EXPECT_TRUE(detail::reclaim_stale_segment(seg.base(), other, "/" + n.str()));
  EXPECT_FALSE(n.exists());  // the CAS succeeded: unlinked
  EXPECT_EQ(creator_pid.load(), current_pid());
}

// R-STALE-3, R-LIVE-1: a reclaimer zeroes the creator start_time before its pid CAS and writes its
// own stamp after; the reclaim path loads pid before start_time and refuses (ALREADY_EXISTS) a
// creator slot whose pid is live with start_time 0: another reclaimer's claim in progress.
TEST(Segment, R_STALE_3_R_LIVE_1_LiveCreatorPidWithZeroStartTimeIsNotReclaimed) {
  UniqueName n("rezero");
  Options keep;
  keep.keep_segment = true;
  {
    auto creator = Requester::create(n, DType::uint8, {16}, keep);
  }  // creator slot CLOSED, pid 0
  auto seg = Segment::attach(n, std::chrono::seconds(1));
  std::uint8_t* slot = seg.base() + layout::kOffCreatorSlot;
  auto& pid_word = atomic_u32(slot + layout::kSlotPid);
  auto& start_word = atomic_u64(slot + layout::kSlotStartTime);
  pid_word.store(current_pid());  // a live reclaimer between its pid CAS and its stamp
  atomic_u32(slot + layout::kSlotState).store(static_cast<std::uint32_t>(SlotState::attached));
  start_word.store(0);
  EXPECT_CODE(Requester::create(n, DType::float64, {2}), ErrorCode::ALREADY_EXISTS);
  EXPECT_TRUE(n.exists());  // not unlinked
  EXPECT_EQ(pid_word.load(), current_pid());
  EXPECT_EQ(start_word.load(), 0u);
  EXPECT_EQ(read_header(n).declared.dtype, static_cast<std::uint32_t>(DType::uint8));
  // A dead creator pid with a stale stamp: the reclaim CAS succeeds and writes our own stamp.
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  pid_word.store(static_cast<std::uint32_t>(child));
  start_word.store(12345);
  EXPECT_TRUE(
      detail::reclaim_stale_segment(seg.base(), static_cast<std::uint32_t>(child), "/" + n.str()));
  EXPECT_EQ(pid_word.load(), current_pid());
  EXPECT_EQ(start_word.load(), self_start_stamp());
  EXPECT_FALSE(n.exists());  // unlinked
}

// R-SEG-6: the creator writes every header field before the magic, which it publishes as one
// 64-bit atomic release store (lock-free, naturally aligned: never two 32-bit halves); attach
// reads it with one 64-bit acquire load and sees either 0 (initialising) or the whole magic.
TEST(Segment, R_SEG_6_MagicPublishedLastAsOne64BitAtomic) {
  static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
  static_assert(layout::kOffMagic % alignof(std::uint64_t) == 0);
  UniqueName n("magic64");
  const Header h = Header::fresh(DType::float32, {3});
  std::vector<std::uint8_t> want(layout::kHeaderSize);
  encode_header(h, want.data());
  bool ran = false;
  Segment s = Segment::create(n, h, CreateOptions{}, [&](std::uint8_t* base) {
    ran = true;  // just before the publish: every other field written, magic still 0
    EXPECT_EQ(atomic_u64(base + layout::kOffMagic).load(std::memory_order_acquire), 0u);
    EXPECT_EQ(std::memcmp(base + 8, want.data() + 8, layout::kHeaderSize - 8), 0);
    EXPECT_CODE(Segment::attach(n, std::chrono::nanoseconds::zero()),
                ErrorCode::SEGMENT_NOT_FOUND);  // initialising
  });
  EXPECT_TRUE(ran);
  std::uint64_t magic = 0;
  std::memcpy(&magic, layout::kMagic.data(), 8);
  EXPECT_EQ(atomic_u64(s.base() + layout::kOffMagic).load(std::memory_order_acquire), magic);
  EXPECT_NO_THROW(Segment::attach(n, std::chrono::nanoseconds::zero()));
}

// R-STALE-2, R-SEG-6: an existing object whose magic is still zero when the create deadline passes
// (its creator died initialising it) cannot be validated: CORRUPT_HEADER, never reclaimed.
TEST(Segment, R_STALE_2_ZeroMagicObjectIsCorruptNeverReclaimed) {
  UniqueName n("zmagic");
  raw_object(n, 4096);
  Options opt;
  opt.timeout = std::chrono::milliseconds(50);
  EXPECT_CODE(Requester::create(n, DType::uint8, {4}, opt), ErrorCode::CORRUPT_HEADER);
  struct stat st{};
  ASSERT_EQ(::stat(("/dev/shm/" + std::string(n)).c_str(), &st), 0) << "the object was removed";
  EXPECT_EQ(st.st_size, 4096);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SHMB_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SHMB_SANITIZED 1
#endif
#endif

// Pre-touched mappings (issue 5, as Python's MAP_POPULATE): a peer that maps a 4 MiB segment and
// then writes every page of it takes (almost) no page faults, so its first round does not pay
// them. Without pre-faulting this is one fault per 4 KiB page (1,024).
TEST(Segment, MappingIsPrefaulted) {
#if defined(SHMB_SANITIZED)
  GTEST_SKIP() << "sanitizer shadow memory faults on first touch (ASan 127, TSan 2,048 at 4 MiB)";
#elif defined(__linux__)
  UniqueName n("populate");
  constexpr std::uint64_t kBytes = 4u << 20;
  auto req = Requester::create(n, DType::uint8, {kBytes});
  auto seg = Segment::attach(n, std::chrono::seconds(0));
  std::uint8_t* payload = seg.base() + layout::kOffPayload;
  struct rusage before{};
  struct rusage after{};
  ::getrusage(RUSAGE_SELF, &before);
  for (std::uint64_t off = 0; off < kBytes; off += 4096) payload[off] = 1;
  ::getrusage(RUSAGE_SELF, &after);
  EXPECT_LT(after.ru_minflt - before.ru_minflt, 64) << "pages were faulted in on first touch";
#else
  GTEST_SKIP() << "MAP_POPULATE is Linux-only";
#endif
}

// R-SEG-9: another process removes the segment's name while it is mapped (what CPython's resource
// tracker does at the exit of a script that attached with multiprocessing.shared_memory on
// Python < 3.13). The creator notices it and says so; it is not an error: the peers already
// attached keep working, no new peer can attach by name, the creator's close does not fail.
TEST(Segment, R_SEG_9_CreatorNoticesItsNameRemovedWhileMapped) {
  UniqueName n("nrm");
  auto req = Requester::create(n, DType::float32, {4});
  auto rsp = Responder::attach(n, DType::float32, {4});
  EXPECT_FALSE(req.name_removed());
  EXPECT_FALSE(rsp.name_removed());  // only the creator tracks its name

  ASSERT_EQ(::shm_unlink(("/" + n.str()).c_str()), 0);  // the legacy attacher's tracker
  EXPECT_TRUE(req.name_removed());
  EXPECT_FALSE(rsp.name_removed());

  const float in[4] = {1, 2, 3, 4};
  req.send(in, {4});
  auto r = rsp.take();
  for (float& x : r.as<float>()) x += 1.0f;
  r.reply();
  float out[4];
  req.receive(out, {4});
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i], in[i] + 1.0f);

  EXPECT_CODE(Responder::attach(n, DType::float32, {4}), ErrorCode::SEGMENT_NOT_FOUND);
  {
    // The name is free: a new creator makes a different segment under it; the old creator's
    // name stays removed (a removed name is never restored).
    auto other = Requester::create(n, DType::uint8, {8});
    EXPECT_FALSE(other.name_removed());
    EXPECT_TRUE(req.name_removed());
  }
  EXPECT_NO_THROW(req.close());
  EXPECT_NO_THROW(rsp.close());
}

// spec/API.md segment_bytes (diagnostics; the conformance peer's PEER.md §2 header fields): a copy
// of bytes of the handle's own mapping. It reads the same object after another process removed
// the name (R-SEG-9), which a second open by name cannot.
TEST(Segment, SegmentBytesReadsTheOwnMappingAfterTheNameIsGone) {
  UniqueName n("sbytes");
  auto req = Requester::create(n, DType::float32, {4});
  auto rsp = Responder::attach(n, DType::float32, {4});
  ASSERT_EQ(::shm_unlink(("/" + n.str()).c_str()), 0);
  const auto magic = rsp.segment_bytes(layout::kOffMagic, 8);
  EXPECT_EQ(std::vector<std::uint8_t>(layout::kMagic.begin(), layout::kMagic.end()), magic);
  EXPECT_EQ(req.segment_bytes(layout::kOffDeclared, 80),
            rsp.segment_bytes(layout::kOffDeclared, 80));
  EXPECT_EQ(rsp.segment_bytes(0, 0).size(), 0u);
  EXPECT_CODE(rsp.segment_bytes(rsp.segment_size(), 1), ErrorCode::INVALID_ARGUMENT);
  EXPECT_CODE(rsp.segment_bytes(8, rsp.segment_size()), ErrorCode::INVALID_ARGUMENT);
  rsp.close();
  EXPECT_CODE(rsp.segment_bytes(0, 8), ErrorCode::OUT_OF_TURN);  // a closed handle, as word()
}
