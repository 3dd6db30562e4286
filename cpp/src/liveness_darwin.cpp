// macOS liveness probe: proc_pidinfo(PROC_PIDTBSDINFO).
#if defined(__APPLE__)
#include <libproc.h>
#include <signal.h>
#include <sys/proc.h>  // SZOMB
#include <sys/proc_info.h>
#include <unistd.h>

#include <cerrno>

#include "shmbridge/liveness.hpp"

#ifndef SZOMB
#define SZOMB 5  // <sys/proc.h>: awaiting collection by the parent
#endif

namespace shmbridge {

std::uint32_t current_pid() noexcept { return static_cast<std::uint32_t>(::getpid()); }

ProcessInfo probe_process(std::uint32_t pid) noexcept {
  ProcessInfo info;
  if (pid == 0 || pid > 0x7fffffffu) return info;
  struct proc_bsdinfo bsd;
  int n = proc_pidinfo(static_cast<int>(pid), PROC_PIDTBSDINFO, 0, &bsd, sizeof bsd);
  if (n == static_cast<int>(sizeof bsd)) {
    info.exists = bsd.pbi_status != SZOMB;
    info.start_stamp = static_cast<std::uint64_t>(bsd.pbi_start_tvsec) * 1000000u +
                       static_cast<std::uint64_t>(bsd.pbi_start_tvusec);
    return info;
  }
  if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM) info.exists = true;
  return info;
}

}  // namespace shmbridge
#endif
