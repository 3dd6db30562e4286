// Linux: shared (non-private) futex on the control word (R-WAIT-1, R-WAIT-3).
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <ctime>

#include "shmbridge/errors.hpp"
#include "shmbridge/wait.hpp"

namespace shmbridge {
namespace detail {

struct WaitHandles {};

WaitHandles* os_open_handles(const std::string&, Actor) { return nullptr; }
void os_close_handles(WaitHandles*) noexcept {}

void os_wait(WaitHandles*, std::atomic<std::uint32_t>& word, std::uint32_t expected,
             std::chrono::nanoseconds max) {
  struct timespec ts;
  ts.tv_sec = static_cast<time_t>(max.count() / 1000000000);
  ts.tv_nsec = static_cast<long>(max.count() % 1000000000);
  // FUTEX_WAIT, not FUTEX_WAIT_PRIVATE: the key must be the shared mapping (file + offset).
  long rc = syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT, expected, &ts,
                    nullptr, 0);
  if (rc == -1 && errno != EAGAIN && errno != EINTR && errno != ETIMEDOUT) {
    throw Error(ErrorCode::OS_ERROR, "expected futex(FUTEX_WAIT) to block, found errno " +
                                         std::to_string(errno) + "; report this as a bug");
  }
}

void os_wake_all(WaitHandles*, std::atomic<std::uint32_t>& word) {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, INT_MAX, nullptr, nullptr,
          0);
}

}  // namespace detail
}  // namespace shmbridge
#endif
