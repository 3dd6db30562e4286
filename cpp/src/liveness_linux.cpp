// Linux liveness probe: /proc/PID/stat (state field 3, start time field 22), kill(pid, 0).
#if defined(__linux__)
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>

#include "shmbridge/liveness.hpp"

namespace shmbridge {

std::uint32_t current_pid() noexcept { return static_cast<std::uint32_t>(::getpid()); }

ProcessInfo probe_process(std::uint32_t pid) noexcept {
  ProcessInfo info;
  if (pid == 0 || pid > 0x7fffffffu) return info;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%u/stat", pid);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    // No /proc entry readable: fall back to kill(pid, 0); EPERM means it exists (R-LIVE-2).
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM) info.exists = true;
    return info;
  }
  char buf[1024];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  buf[n > 0 ? n : 0] = '\0';           // no bytes: the process vanished between open and read
  return process_info_from_stat(buf);  // R-LIVE-7
}

}  // namespace shmbridge
#endif
