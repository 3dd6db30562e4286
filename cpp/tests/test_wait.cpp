// R-WAIT-1..4: spin-then-futex waiting on a shared word, deadlines, wake-ups, the waiters counter.
#include <sys/mman.h>
#include <sys/wait.h>

#include <thread>

#include "test_util.hpp"

using namespace shmbridge;
using namespace shmbridge::test;
using Clock = std::chrono::steady_clock;

namespace {
struct SharedWords {
  std::uint8_t* mem;
  SharedWords() {
    mem = static_cast<std::uint8_t*>(
        ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  }
  ~SharedWords() { ::munmap(mem, 4096); }
  std::atomic<std::uint32_t>& word() { return atomic_u32(mem); }
  std::atomic<std::uint32_t>& waiters() { return atomic_u32(mem + 4); }
};
}  // namespace

// R-WAIT-2: a block with nothing changing returns after about its maximum, not much later.
TEST(Wait, R_WAIT_2_BlockRespectsItsMaximum) {
  SharedWords s;
  Waiter w("wtest", Actor::requester);
  const auto t0 = Clock::now();
  w.block(s.word(), s.waiters(), 0, std::chrono::milliseconds(30));
  const auto took = Clock::now() - t0;
  EXPECT_GE(took, std::chrono::milliseconds(25));
  EXPECT_LT(took, std::chrono::milliseconds(300));
  EXPECT_EQ(s.waiters().load(), 0u);  // R-WAIT-3: decremented after waking
}

// R-WAIT-3: a changed word is re-checked after incrementing waiters: no block at all.
TEST(Wait, R_WAIT_3_NoBlockWhenWordAlreadyChanged) {
  SharedWords s;
  Waiter w("wtest", Actor::requester);
  s.word().store(5);
  const auto t0 = Clock::now();
  w.block(s.word(), s.waiters(), 4, std::chrono::seconds(5));
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(100));
}

// R-WAIT-1/3: a wake from another thread ends the block early.
TEST(Wait, R_WAIT_3_WakeEndsBlockThreads) {
  SharedWords s;
  Waiter a("wtest", Actor::requester), b("wtest", Actor::responder);
  std::thread t([&] {
    while (s.waiters().load() == 0) std::this_thread::yield();
    s.word().store(1);
    b.wake(s.word(), s.waiters());
  });
  const auto t0 = Clock::now();
  while (s.word().load() == 0) a.block(s.word(), s.waiters(), 0, std::chrono::seconds(5));
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(2));
  t.join();
}

// R-WAIT-1: the futex is shared (no FUTEX_PRIVATE_FLAG): a wake crosses processes.
TEST(Wait, R_WAIT_1_WakeCrossesProcesses) {
  SharedWords s;
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    Waiter w("wtest", Actor::responder);
    // Blocks in long slices; only a cross-process wake can end it before 5 s.
    const auto t0 = Clock::now();
    while (s.word().load() == 0) w.block(s.word(), s.waiters(), 0, std::chrono::seconds(5));
    ::_exit(Clock::now() - t0 < std::chrono::seconds(4) ? 0 : 1);
  }
  while (s.waiters().load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let it enter futex_wait
  s.word().store(1);
  Waiter w("wtest", Actor::requester);
  w.wake(s.word(), s.waiters());
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

// R-WAIT-3: a waker with waiters == 0 makes no syscall-visible change; the counter stays 0.
TEST(Wait, R_WAIT_3_WakeWithoutWaitersIsCheap) {
  SharedWords s;
  Waiter w("wtest", Actor::requester);
  const auto t0 = Clock::now();
  for (int i = 0; i < 100000; ++i) w.wake(s.word(), s.waiters());
  // 100k futex syscalls would take tens of ms; reading the counter takes well under that.
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(20));
  EXPECT_EQ(s.waiters().load(), 0u);
}

// R-WAIT-1: a spinning waiter yields the CPU only after 20 us without seeing the word change,
// then every 5 us; a change of the word starts the count again (the Python helper mirrors the
// constants: test_native.py).
TEST(Wait, R_WAIT_1_SpinYieldsOnlyAfterAFruitlessWhile) {
  using std::chrono::microseconds;
  EXPECT_EQ(kSpinYieldAfter, microseconds(20));
  EXPECT_EQ(kSpinYieldEvery, microseconds(5));
  SpinYield y;
  const auto t0 = Clock::now();
  EXPECT_FALSE(y.due(7, t0));                     // the wait starts
  EXPECT_FALSE(y.due(7, t0 + microseconds(19)));  // a 64 B wait never gets further
  EXPECT_TRUE(y.due(7, t0 + microseconds(20)));
  EXPECT_FALSE(y.due(7, t0 + microseconds(24)));
  EXPECT_TRUE(y.due(7, t0 + microseconds(25)));
  EXPECT_FALSE(y.due(8, t0 + microseconds(40)));  // the word changed: start over
  EXPECT_FALSE(y.due(8, t0 + microseconds(59)));
  EXPECT_TRUE(y.due(8, t0 + microseconds(60)));
}
