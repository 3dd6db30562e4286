// Windows segments: named file mappings Local\N (R-NAME-2, R-SEG-5). A mapping lives while any
// handle is open, so there is no unlink; a mapping whose creator is gone but that another process
// still holds is stale and cannot be reclaimed (R-SEG-7).
#if defined(_WIN32)
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>

#include <thread>

#include "shmbridge/errors.hpp"
#include "shmbridge/layout_v2.hpp"
#include "shmbridge/liveness.hpp"
#include "shmbridge/naming.hpp"
#include "shmbridge/segment.hpp"
#include "shmbridge/wait.hpp"

namespace shmbridge {

using namespace layout;
using Clock = std::chrono::steady_clock;

Mapping::~Mapping() {
  if (base_) UnmapViewOfFile(base_);
  if (os_handle_) CloseHandle(static_cast<HANDLE>(os_handle_));
}

namespace {

std::wstring widen(const std::string& s) { return std::wstring(s.begin(), s.end()); }

[[noreturn]] void os_error(const char* call, const std::string& os_name, DWORD e) {
  raise(ErrorCode::OS_ERROR, std::string(call) + "(" + os_name + ") to succeed",
        "error " + std::to_string(e), "check the name and the system's resources");
}

std::shared_ptr<Mapping> map_handle(HANDLE h, const std::string& os_name) {
  void* p = MapViewOfFile(h, FILE_MAP_ALL_ACCESS, 0, 0, 0);
  if (!p) {
    DWORD e = GetLastError();
    CloseHandle(h);
    os_error("MapViewOfFile", os_name, e);
  }
  MEMORY_BASIC_INFORMATION info{};
  VirtualQuery(p, &info, sizeof info);  // sizes are rounded up to pages (R-LAYOUT-6)
  return std::make_shared<Mapping>(static_cast<std::uint8_t*>(p),
                                   static_cast<std::uint64_t>(info.RegionSize), h);
}

// R-SEG-4, R-SEG-7: CreateFileMappingW opened an existing mapping (handle h) instead of creating
// one. Always throws: ALREADY_EXISTS while its creator is alive (or still initialising it),
// STALE_SEGMENT once the creator is gone (no unlink exists, so it cannot be reclaimed whatever
// reclaim_stale says), CORRUPT_HEADER / VERSION_MISMATCH if it is not a valid segment.
[[noreturn]] void inspect_existing(HANDLE h, const std::string& canonical,
                                   const std::string& os_name, const CreateOptions& opt) {
  auto m = map_handle(h, os_name);  // owns h from here on
  const auto deadline = Clock::now() + opt.init_timeout;
  while (atomic_u64(m->base() + kOffMagic).load(std::memory_order_acquire) == 0) {
    if (Clock::now() >= deadline) {
      raise(ErrorCode::ALREADY_EXISTS, "no mapping named " + os_name,
            "a mapping still being initialised (magic 0)",
            "attach to it instead of creating it, or choose another name");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  validate_any_header(m->base(), m->size());  // R-VER-7
  detail::refuse_live_creator(m->base(), canonical);
  raise(ErrorCode::STALE_SEGMENT, "no segment named \"" + canonical + "\"",
        "a stale segment: its creator is gone but another process still holds " + os_name +
            " open, and Windows cannot remove a mapping (R-SEG-7)",
        "close or stop the processes still attached to it (e.g. the old peer); the name is free "
        "once the last handle is closed");
}

}  // namespace

Segment Segment::create_unpublished(const std::string& name, std::uint64_t segment_size,
                                    const std::function<void(std::uint8_t*)>& write_header,
                                    const CreateOptions& opt) {
  const std::string canonical = normalize_name(name);
  const std::string os_name = win32_mapping_name(canonical);
  const std::uint64_t size = segment_size;
  HANDLE h = CreateFileMappingW(INVALID_HANDLE_VALUE, nullptr, PAGE_READWRITE,
                                static_cast<DWORD>(size >> 32), static_cast<DWORD>(size),
                                widen(os_name).c_str());
  if (!h) {
    DWORD e = GetLastError();
    if (e == ERROR_ACCESS_DENIED) {
      raise(ErrorCode::PERMISSION_DENIED, "access to " + os_name, "ERROR_ACCESS_DENIED",
            "run both peers as the same user");
    }
    os_error("CreateFileMappingW", os_name, e);
  }
  if (GetLastError() == ERROR_ALREADY_EXISTS) inspect_existing(h, canonical, os_name, opt);
  auto m = map_handle(h, os_name);
  write_header(m->base());  // magic stays zero: published last (R-SEG-6)
  Segment s;
  s.mapping_ = std::move(m);
  s.name_ = canonical;
  s.creator_ = true;
  return s;
}

void Segment::publish() noexcept {
  atomic_u64(base() + kOffMagic).store(load_u64(kMagic.data()), std::memory_order_release);
}

Segment Segment::attach(const std::string& name, std::chrono::nanoseconds timeout) {
  return attach(name, timeout,
                [](const std::uint8_t* data, std::uint64_t size, const std::string&) {
                  validate_any_header(data, size);
                });
}

Segment Segment::attach(const std::string& name, std::chrono::nanoseconds timeout,
                        const HeaderCheck& check) {
  const std::string canonical = normalize_name(name);
  const std::string os_name = win32_mapping_name(canonical);
  // R-ATTACH-1: wait for the mapping to appear and for its magic, until the deadline.
  AttachPoll poll(timeout);
  for (;;) {
    std::string missing;
    HANDLE h = OpenFileMappingW(FILE_MAP_ALL_ACCESS, FALSE, widen(os_name).c_str());
    if (!h) {
      DWORD e = GetLastError();
      if (e == ERROR_ACCESS_DENIED) {
        raise(ErrorCode::PERMISSION_DENIED, "access to " + os_name, "ERROR_ACCESS_DENIED",
              "run both peers as the same user");
      }
      if (e != ERROR_FILE_NOT_FOUND) os_error("OpenFileMappingW", os_name, e);
      missing = "no mapping " + os_name;
    } else {
      auto m = map_handle(h, os_name);
      if (m->size() >= kHeaderSize &&
          atomic_u64(m->base() + kOffMagic).load(std::memory_order_acquire) != 0) {
        check(m->base(), m->size(), canonical);
        Segment s;
        s.mapping_ = std::move(m);
        s.name_ = canonical;
        return s;
      }
      missing = "a segment still being initialised (magic 0)";
    }
    if (!poll.pause()) {
      raise(ErrorCode::SEGMENT_NOT_FOUND, "a segment named \"" + canonical + "\"",
            missing + " " + poll.waited(),
            "start the creator first, check the name, or give attach a longer timeout");
    }
  }
}

bool Segment::remove(const std::string&) noexcept { return false; }

void Segment::unlink() noexcept { unlinked_ = true; }

bool Segment::name_removed() const noexcept { return false; }  // no unlink on Windows (R-SEG-5)

}  // namespace shmbridge
#endif
