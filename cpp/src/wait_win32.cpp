// Windows: named auto-reset events, Local\N.req (the requester blocks on it) and Local\N.rsp (the
// responder blocks on it); a waker sets the event of the peer role (R-WAIT-1, R-WAIT-3).
#if defined(_WIN32)
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>

#include "shmbridge/errors.hpp"
#include "shmbridge/naming.hpp"
#include "shmbridge/wait.hpp"

namespace shmbridge {
namespace detail {

struct WaitHandles {
  HANDLE own = nullptr;   // the event this role blocks on
  HANDLE peer = nullptr;  // the event the other role blocks on
};

namespace {
HANDLE open_event(const std::string& name) {
  std::wstring wide(name.begin(), name.end());  // names are ASCII (R-NAME-1)
  HANDLE h = CreateEventW(nullptr, FALSE, FALSE, wide.c_str());
  if (!h) {
    throw Error(ErrorCode::OS_ERROR, "expected CreateEventW(" + name +
                                         ") to succeed, found error " +
                                         std::to_string(GetLastError()) + "; check the name");
  }
  return h;
}
}  // namespace

WaitHandles* os_open_handles(const std::string& name, Actor self) {
  auto* h = new WaitHandles;
  try {
    h->own = open_event(win32_event_name(name, self == Actor::requester));
    h->peer = open_event(win32_event_name(name, self != Actor::requester));
  } catch (...) {
    os_close_handles(h);
    throw;
  }
  return h;
}

void os_close_handles(WaitHandles* h) noexcept {
  if (!h) return;
  if (h->own) CloseHandle(h->own);
  if (h->peer) CloseHandle(h->peer);
  delete h;
}

void os_wait(WaitHandles* h, std::atomic<std::uint32_t>& word, std::uint32_t expected,
             std::chrono::nanoseconds max) {
  if (word.load(std::memory_order_seq_cst) != expected) return;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(max).count();
  if (ms <= 0) ms = 1;
  DWORD rc = WaitForSingleObject(h->own, static_cast<DWORD>(ms));
  if (rc == WAIT_FAILED) {
    throw Error(ErrorCode::OS_ERROR, "expected WaitForSingleObject to block, found error " +
                                         std::to_string(GetLastError()) + "; report this as a bug");
  }
}

void os_wake_all(WaitHandles* h, std::atomic<std::uint32_t>&) {
  if (h) SetEvent(h->peer);
}

}  // namespace detail
}  // namespace shmbridge
#endif
