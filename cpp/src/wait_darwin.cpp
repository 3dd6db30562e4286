// macOS: os_sync_wait_on_address with OS_SYNC_WAIT_ON_ADDRESS_SHARED (macOS 14.4+; declared by
// detail/os_sync_darwin.h where the SDK lacks it); on older systems sleeps of at most 1 ms (the
// documented fallback of R-WAIT-1).
#if defined(__APPLE__)
#include <cerrno>
#include <thread>

#include "shmbridge/errors.hpp"
#include "shmbridge/wait.hpp"

#include "shmbridge/detail/os_sync_darwin.h"

namespace shmbridge {
namespace detail {

struct WaitHandles {};

WaitHandles* os_open_handles(const std::string&, Actor) { return nullptr; }
void os_close_handles(WaitHandles*) noexcept {}

void os_wait(WaitHandles*, std::atomic<std::uint32_t>& word, std::uint32_t expected,
             std::chrono::nanoseconds max) {
  if (__builtin_available(macOS 14.4, *)) {
    int rc = os_sync_wait_on_address_with_timeout(
        reinterpret_cast<void*>(&word), expected, sizeof(std::uint32_t),
        OS_SYNC_WAIT_ON_ADDRESS_SHARED, OS_CLOCK_MACH_ABSOLUTE_TIME,
        static_cast<std::uint64_t>(max.count()));
    if (rc < 0 && errno != ETIMEDOUT && errno != EINTR && errno != EFAULT) {
      throw Error(ErrorCode::OS_ERROR, "expected os_sync_wait_on_address to block, found errno " +
                                           std::to_string(errno) + "; report this as a bug");
    }
    return;
  }
  // Fallback for macOS < 14.4: short sleeps, re-checking the word.
  const auto slice = std::chrono::nanoseconds(std::chrono::milliseconds(1));
  if (word.load(std::memory_order_acquire) == expected) {
    std::this_thread::sleep_for(max < slice ? max : slice);
  }
}

void os_wake_all(WaitHandles*, std::atomic<std::uint32_t>& word) {
  if (__builtin_available(macOS 14.4, *)) {
    os_sync_wake_by_address_all(reinterpret_cast<void*>(&word), sizeof(std::uint32_t),
                                OS_SYNC_WAKE_BY_ADDRESS_SHARED);
    return;
  }
  (void)word;
}

}  // namespace detail
}  // namespace shmbridge
#endif
