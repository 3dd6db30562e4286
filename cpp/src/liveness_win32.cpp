// Windows liveness probe: OpenProcess + GetExitCodeProcess + GetProcessTimes (creation FILETIME).
#if defined(_WIN32)
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>

#include "shmbridge/liveness.hpp"

namespace shmbridge {

std::uint32_t current_pid() noexcept { return static_cast<std::uint32_t>(GetCurrentProcessId()); }

ProcessInfo probe_process(std::uint32_t pid) noexcept {
  ProcessInfo info;
  if (pid == 0) return info;
  HANDLE h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, static_cast<DWORD>(pid));
  if (!h) {
    info.exists = GetLastError() == ERROR_ACCESS_DENIED;  // exists, another user's (R-LIVE-2)
    return info;
  }
  DWORD code = 0;
  if (GetExitCodeProcess(h, &code) && code != STILL_ACTIVE) {
    CloseHandle(h);
    return info;  // exited; the handle keeps only its record alive
  }
  info.exists = true;
  FILETIME created, exited, kernel, user;
  if (GetProcessTimes(h, &created, &exited, &kernel, &user)) {
    info.start_stamp =
        (static_cast<std::uint64_t>(created.dwHighDateTime) << 32) | created.dwLowDateTime;
  }
  CloseHandle(h);
  return info;
}

}  // namespace shmbridge
#endif
