// Waiting on the shared control word across processes (spec/PROTOCOL.md §6, R-WAIT-*).
//
// Linux: futex(FUTEX_WAIT/FUTEX_WAKE) on the word WITHOUT FUTEX_PRIVATE_FLAG. macOS 14.4+:
// os_sync_wait_on_address with OS_SYNC_WAIT_ON_ADDRESS_SHARED (older: sleeps of <= 1 ms). Windows:
// the named auto-reset event of the waiting role (Local\N.req / Local\N.rsp). std::atomic::wait is
// never used: it is process-local.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>  // _mm_pause, __yield
#endif

#include "shmbridge/protocol.hpp"

namespace shmbridge {

// C++17 has no atomic_ref; the shared fields are accessed through std::atomic objects placed on
// naturally aligned words of the mapping. This is valid only for lock-free atomics whose object
// representation is the plain integer.
static_assert(std::atomic<std::uint32_t>::is_always_lock_free, "u32 atomics must be lock-free");
static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t), "u32 atomic size");
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "u64 atomics must be lock-free");
static_assert(sizeof(std::atomic<std::uint64_t>) == sizeof(std::uint64_t), "u64 atomic size");

inline std::atomic<std::uint32_t>& atomic_u32(std::uint8_t* p) noexcept {
  return *reinterpret_cast<std::atomic<std::uint32_t>*>(p);
}
inline std::atomic<std::uint64_t>& atomic_u64(std::uint8_t* p) noexcept {
  return *reinterpret_cast<std::atomic<std::uint64_t>*>(p);
}

// One pause/yield instruction for spin loops.
inline void cpu_relax() noexcept {
#if defined(_MSC_VER) && !defined(__clang__) && (defined(_M_X64) || defined(_M_IX86))
  _mm_pause();
#elif defined(_MSC_VER) && !defined(__clang__) && defined(_M_ARM64)
  __yield();
#elif defined(__x86_64__) || defined(__i386__) || defined(_M_X64) || defined(_M_IX86)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  asm volatile("yield" ::: "memory");
#else
  std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

// R-WAIT-1: a spinning waiter that has not seen the word change for kSpinYieldAfter yields the
// CPU, then every kSpinYieldEvery. When the scheduler has put both peers on one core (wake-affine
// placement after a futex wake), the peer it waits for then runs within ~20 us instead of after
// the whole spin budget. Bench, 2 vCPUs unpinned, 1 MiB: p90 115-147 us instead of 285-320 us.
// Waits of a 64 B round are shorter than kSpinYieldAfter, so they never yield; a shorter delay
// (<= 10 us) made a co-located 64 B Python pair stable at 20-35 us per round (it is 2-5 us).
inline constexpr std::chrono::microseconds kSpinYieldAfter{20};
inline constexpr std::chrono::microseconds kSpinYieldEvery{5};

class SpinYield {
 public:
  using Clock = std::chrono::steady_clock;
  // Called on every spin step with the word being waited on; true when the caller should yield.
  bool due(std::uint32_t word, Clock::time_point now) noexcept {
    if (!armed_ || word != word_) {  // a new wait, or the word changed: start over
      armed_ = true;
      word_ = word;
      next_ = now + kSpinYieldAfter;
      return false;
    }
    if (now < next_) return false;
    next_ = now + kSpinYieldEvery;
    return true;
  }

 private:
  bool armed_ = false;
  std::uint32_t word_ = 0;
  Clock::time_point next_{};
};

// Blocks the calling thread on one shared word. One per channel handle.
class Waiter {
 public:
  // `name` is the canonical segment name, `self` the role that will block (Windows events).
  Waiter(const std::string& name, Actor self);
  ~Waiter();
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;

  // R-WAIT-3: increments `waiters`, re-checks `word == expected` (seq_cst) and blocks in the OS
  // for at most `max` (callers pass at most the liveness interval, R-WAIT-4); decrements `waiters`
  // after waking. Returns on a wake-up, a timeout or a spurious wake: the caller re-evaluates.
  void block(std::atomic<std::uint32_t>& word, std::atomic<std::uint32_t>& waiters,
             std::uint32_t expected, std::chrono::nanoseconds max);
  // R-WAIT-3: call after a successful CAS. Reads `waiters` (seq_cst) and, if non-zero, wakes every
  // waiter on `word`.
  void wake(std::atomic<std::uint32_t>& word, std::atomic<std::uint32_t>& waiters);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// R-ATTACH-1: the one wait of the protocol that polls with sleeps, attach waiting for a segment
// that does not exist yet or is still being initialised (no OS offers a portable wait for a name
// to appear; this is not the data path). Pauses start at 2 ms and double up to 50 ms, and never
// sleep past the deadline.
class AttachPoll {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kFirstPause{2};
  static constexpr std::chrono::milliseconds kMaxPause{50};

  explicit AttachPoll(std::chrono::nanoseconds timeout)
      : start_(Clock::now()), deadline_(start_ + timeout) {}
  // Sleeps until the next check and returns true; returns false at once when the deadline has
  // passed (timeout 0: after the first check).
  bool pause();
  // "after waiting 1.5 s", or "after one check (timeout 0)".
  std::string waited() const;

 private:
  Clock::time_point start_, deadline_;
  std::chrono::nanoseconds next_ = kFirstPause;
};

namespace detail {
// Platform primitives (wait_linux.cpp / wait_darwin.cpp / wait_win32.cpp). os_wait returns after
// a wake, a timeout, a spurious wake, or at once if *word != expected.
struct WaitHandles;
void os_wait(WaitHandles* h, std::atomic<std::uint32_t>& word, std::uint32_t expected,
             std::chrono::nanoseconds max);
void os_wake_all(WaitHandles* h, std::atomic<std::uint32_t>& word);
WaitHandles* os_open_handles(const std::string& name, Actor self);
void os_close_handles(WaitHandles* h) noexcept;
}  // namespace detail

}  // namespace shmbridge
