// Process liveness and the role slots of the header (spec/PROTOCOL.md §3.3, §7, R-LIVE-*).
#pragma once

#include <cstdint>

#include "shmbridge/protocol.hpp"

namespace shmbridge {

// The calling process id.
std::uint32_t current_pid() noexcept;

// R-LIVE-2 probe of one process: exists is false if there is no such process or it is a zombie;
// start_stamp is the OS start stamp (Linux: /proc/PID/stat field 22; macOS: pbi_start_tvsec *
// 10^6 + pbi_start_tvusec; Windows: creation FILETIME), 0 if it cannot be read (e.g. EPERM).
struct ProcessInfo {
  bool exists = false;
  std::uint64_t start_stamp = 0;
};
ProcessInfo probe_process(std::uint32_t pid) noexcept;

// The start stamp of the calling process (cached).
std::uint64_t self_start_stamp() noexcept;

// R-LIVE-2: pid exists, is not a zombie, and its start stamp equals `start_time` when both are
// known (non-zero).
bool process_alive(std::uint32_t pid, std::uint64_t start_time) noexcept;

// Linux helper, exposed for tests: parses the contents of /proc/PID/stat. Returns false if it
// cannot be parsed; `state` is field 3, `start_stamp` field 22. The comm field (2) may contain
// spaces and parentheses: fields are counted after the last ')'.
bool parse_proc_stat(const char* text, char& state, std::uint64_t& start_stamp) noexcept;

// R-LIVE-7: what one read of /proc/PID/stat that returned `text` says (spec/vectors/procstat.json):
// an empty text (the process exited between open and read) or a zombie/dead state (Z, X, x) is a
// process that does not exist; a text that cannot be parsed is a process that exists with an
// unknown stamp (0): a checker never judges a process dead from a text it cannot read.
ProcessInfo process_info_from_stat(const char* text) noexcept;

// A liveness slot in a mapped header (32 bytes, 8-aligned).
class SlotRef {
 public:
  explicit SlotRef(std::uint8_t* slot) noexcept : p_(slot) {}
  std::uint32_t pid() const noexcept;
  std::uint32_t state() const noexcept;
  std::uint64_t start_time() const noexcept;
  std::uint64_t incarnation() const noexcept;

  // R-LIVE-1: claim the slot for the calling process, or throw ROLE_TAKEN naming `role`.
  void claim(const char* role);
  // R-CLOSE-1 step (1): state = CLOSED (release); the slot is then judged by its pid alone, so the
  // owner still counts as alive until clear_pid().
  void mark_closed() noexcept;
  // R-CLOSE-1 step (3): pid = 0 (release), after mark_closed().
  void clear_pid() noexcept;
  // R-CLOSE-1: mark_closed() then clear_pid().
  void release() noexcept;
  // One full liveness check of the slot's owner, as seen by its peer (R-LIVE-6: pid is loaded
  // before state and start_time; pid 0 with CLOSED is closed, pid 0 otherwise empty).
  PeerState peer_state() const noexcept;
  std::uint8_t* raw() const noexcept { return p_; }

 private:
  std::uint8_t* p_;
};

}  // namespace shmbridge
