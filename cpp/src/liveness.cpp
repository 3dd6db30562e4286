#include "shmbridge/liveness.hpp"

#include <atomic>
#include <string>

#include "shmbridge/errors.hpp"
#include "shmbridge/layout.hpp"
#include "shmbridge/segment.hpp"
#include "shmbridge/wait.hpp"

namespace shmbridge {

using namespace layout;

std::uint64_t self_start_stamp() noexcept {
  // Cached per pid: a child created by fork() inherits the cache but not the start time.
  static std::atomic<std::uint64_t> cached_pid{0}, cached_stamp{0};
  const std::uint32_t pid = current_pid();
  if (cached_pid.load(std::memory_order_acquire) != pid) {
    cached_stamp.store(probe_process(pid).start_stamp, std::memory_order_relaxed);
    cached_pid.store(pid, std::memory_order_release);
  }
  return cached_stamp.load(std::memory_order_relaxed);
}

bool process_alive(std::uint32_t pid, std::uint64_t start_time) noexcept {
  if (pid == 0) return false;
  const ProcessInfo info = probe_process(pid);
  if (!info.exists) return false;
  if (start_time != 0 && info.start_stamp != 0 && info.start_stamp != start_time) return false;
  return true;
}

bool parse_proc_stat(const char* text, char& state, std::uint64_t& start_stamp) noexcept {
  const char* close = nullptr;
  for (const char* c = text; *c; ++c) {
    if (*c == ')') close = c;
  }
  if (!close) return false;
  const char* p = close + 1;
  // Fields after ")": 3 state, 4 ppid, ..., 22 starttime.
  int field = 2;
  std::uint64_t value = 0;
  bool in_token = false;
  for (; *p; ++p) {
    if (*p == ' ' || *p == '\n') {
      if (in_token && field == 22) {
        start_stamp = value;
        return true;
      }
      in_token = false;
      continue;
    }
    if (!in_token) {
      in_token = true;
      ++field;
      value = 0;
      if (field == 3) state = *p;
    }
    if (field == 22) {
      if (*p < '0' || *p > '9') return false;
      value = value * 10 + static_cast<std::uint64_t>(*p - '0');
    }
  }
  if (in_token && field == 22) {
    start_stamp = value;
    return true;
  }
  return false;
}

ProcessInfo process_info_from_stat(const char* text) noexcept {
  ProcessInfo info;
  if (!text || !*text) return info;  // no bytes: it exited between open and read
  char state = '?';
  std::uint64_t stamp = 0;
  if (!parse_proc_stat(text, state, stamp)) {
    info.exists = true;  // present but unreadable: exists, stamp unknown
    return info;
  }
  info.exists = state != 'Z' && state != 'X' && state != 'x';  // a zombie or dead task is dead
  if (info.exists) info.start_stamp = stamp;
  return info;
}

std::uint32_t SlotRef::pid() const noexcept {
  return atomic_u32(p_ + kSlotPid).load(std::memory_order_acquire);
}
std::uint32_t SlotRef::state() const noexcept {
  return atomic_u32(p_ + kSlotState).load(std::memory_order_acquire);
}
std::uint64_t SlotRef::start_time() const noexcept {
  return atomic_u64(p_ + kSlotStartTime).load(std::memory_order_acquire);
}
std::uint64_t SlotRef::incarnation() const noexcept {
  return atomic_u64(p_ + kSlotIncarnation).load(std::memory_order_acquire);
}

void SlotRef::claim(const char* role) {
  const std::uint32_t me = current_pid();
  auto& pid_word = atomic_u32(p_ + kSlotPid);
  for (;;) {
    // R-LIVE-1, R-STALE-3: load pid (acquire) before start_time, so a claimer's pid is never
    // judged by the previous owner's stamp (a claimer zeroes the stamp before its pid CAS).
    std::uint32_t seen = pid_word.load(std::memory_order_acquire);
    if (seen != 0 && process_alive(seen, start_time())) {
      raise(ErrorCode::ROLE_TAKEN, std::string("no live ") + role + " on this segment",
            "process " + std::to_string(seen) + " holding the " + role + " role",
            "stop that process, or use another segment name");
    }
    // R-LIVE-1: start_time = 0 (release) before the pid CAS, own stamp after it.
    atomic_u64(p_ + kSlotStartTime).store(0, std::memory_order_release);
    if (pid_word.compare_exchange_strong(seen, me, std::memory_order_acq_rel)) break;
  }
  atomic_u64(p_ + kSlotStartTime).store(self_start_stamp(), std::memory_order_release);
  atomic_u64(p_ + kSlotIncarnation).fetch_add(1, std::memory_order_relaxed);
  atomic_u32(p_ + kSlotState)
      .store(static_cast<std::uint32_t>(SlotState::attached), std::memory_order_seq_cst);
}

void SlotRef::mark_closed() noexcept {
  atomic_u32(p_ + kSlotState)
      .store(static_cast<std::uint32_t>(SlotState::closed), std::memory_order_seq_cst);
}

void SlotRef::clear_pid() noexcept {
  // R-CLOSE-1: stored after CLOSED, so a reader that loads pid first (R-LIVE-6) and sees 0 also
  // sees CLOSED: a clean close is never read as a death.
  atomic_u32(p_ + kSlotPid).store(0, std::memory_order_seq_cst);
}

void SlotRef::release() noexcept {
  mark_closed();
  clear_pid();
}

PeerState SlotRef::peer_state() const noexcept {
  // R-LIVE-6: pid (acquire) before state before start_time.
  const std::uint32_t owner = pid();
  const std::uint32_t st = state();
  if (owner == 0) {
    // Nobody holds the slot: closed, or no peer (yet) — EMPTY, or a claim that completed between
    // the two loads (ATTACHED), seen as such by the next check.
    return st == static_cast<std::uint32_t>(SlotState::closed) ? PeerState::closed
                                                               : PeerState::empty;
  }
  if (st != static_cast<std::uint32_t>(SlotState::attached)) {
    // A claim (R-LIVE-1) or a close (R-CLOSE-1) in progress: judged by the pid alone (the
    // start_time may still be the previous owner's).
    return process_alive(owner, 0) ? PeerState::alive : PeerState::dead;
  }
  return process_alive(owner, start_time()) ? PeerState::alive : PeerState::dead;
}

std::uint32_t detail::refuse_live_creator(std::uint8_t* base, const std::string& canonical) {
  SlotRef creator(base + kOffCreatorSlot);
  const std::uint32_t pid = creator.pid();
  if (pid != 0 && process_alive(pid, creator.start_time())) {
    raise(ErrorCode::ALREADY_EXISTS, "no live creator of \"" + canonical + "\"",
          "process " + std::to_string(pid) + " created it and is alive",
          "attach to it instead of creating it, or choose another name");
  }
  return pid;
}

}  // namespace shmbridge
