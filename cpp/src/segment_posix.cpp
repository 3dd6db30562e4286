// POSIX segments: shm_open("/N") + ftruncate + mmap(MAP_SHARED) (R-NAME-2, R-SEG-*, R-STALE-*).
#if !defined(_WIN32)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
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
  if (base_) ::munmap(base_, size_);
}

namespace {

constexpr auto kInitPoll = std::chrono::microseconds(200);

std::uint64_t magic_value() noexcept { return load_u64(kMagic.data()); }

std::string errno_text(int e) { return std::to_string(e) + " (" + std::strerror(e) + ")"; }

[[noreturn]] void os_error(const char* call, const std::string& os_name, int e) {
  raise(ErrorCode::OS_ERROR, std::string(call) + "(" + os_name + ") to succeed",
        "errno " + errno_text(e), "check the system's shared-memory limits and /dev/shm");
}

[[noreturn]] void permission_denied(const std::string& os_name) {
  raise(ErrorCode::PERMISSION_DENIED, "read/write access to " + os_name,
        "EACCES (the segment belongs to another user or has other permissions)",
        "run both peers as the same user, or remove the segment: rm /dev/shm" + os_name);
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// `prefault`: the mapping a handle will use is pre-faulted where the OS can (Linux MAP_POPULATE,
// as the Python mapping), so that its first round does not pay one page fault per 4 KiB of
// payload (1,024 at 4 MiB; test_segment). A mapping that only reads another object's header
// (stale check) is not: that object may be large.
std::shared_ptr<Mapping> map_fd(int fd, std::uint64_t size, const std::string& os_name,
                                bool prefault) {
  int flags = MAP_SHARED;
#if defined(MAP_POPULATE)
  if (prefault) flags |= MAP_POPULATE;
#else
  (void)prefault;
#endif
  void* p = ::mmap(nullptr, static_cast<std::size_t>(size), PROT_READ | PROT_WRITE, flags, fd, 0);
  if (p == MAP_FAILED) os_error("mmap", os_name, errno);
  return std::make_shared<Mapping>(static_cast<std::uint8_t*>(p), size, nullptr);
}

std::uint64_t fd_size(int fd, const std::string& os_name) {
  struct stat st;
  if (::fstat(fd, &st) != 0) os_error("fstat", os_name, errno);
  return static_cast<std::uint64_t>(st.st_size);
}

enum class Existing { retry };

// R-STALE-2: decides what to do with an object that already exists under our name. Returns retry
// (the object vanished or was reclaimed) or throws.
Existing inspect_existing(const std::string& canonical, const std::string& os_name,
                          const CreateOptions& opt, Clock::time_point deadline) {
  Fd f;
  f.fd = ::shm_open(os_name.c_str(), O_RDWR, 0);
  if (f.fd < 0) {
    if (errno == ENOENT) return Existing::retry;
    if (errno == EACCES) permission_denied(os_name);
    os_error("shm_open", os_name, errno);
  }
  const std::uint64_t size = fd_size(f.fd, os_name);
  const std::string todo = "remove it (rm /dev/shm" + os_name + ") if no peer uses it";
  if (size > 0 && size < kHeaderSize) {  // no creator leaves this size (R-SEG-1, D16)
    raise(ErrorCode::CORRUPT_HEADER, "an existing shmbridge segment of at least 512 bytes",
          std::to_string(size) + " bytes under " + os_name, todo);
  }
  if (size < kHeaderSize) {
    if (Clock::now() < deadline) {
      std::this_thread::sleep_for(kInitPoll);  // a creator may be sizing it right now (R-SEG-6)
      return Existing::retry;
    }
    raise(ErrorCode::CORRUPT_HEADER, "an existing shmbridge segment of at least 512 bytes",
          std::to_string(size) + " bytes under " + os_name, todo);
  }
  auto m = map_fd(f.fd, size, os_name, /*prefault=*/false);
  if (atomic_u64(m->base() + kOffMagic).load(std::memory_order_acquire) == 0) {
    if (Clock::now() < deadline) {
      std::this_thread::sleep_for(kInitPoll);
      return Existing::retry;
    }
    raise(ErrorCode::CORRUPT_HEADER, "an initialised segment (magic SHMBRIDG)",
          "all-zero magic under " + os_name + " (its creator died while initialising it)", todo);
  }
  validate_any_header(m->base(), size);  // never reclaim what cannot be validated (R-VER-7)
  const std::uint32_t pid = detail::refuse_live_creator(m->base(), canonical);
  if (!opt.reclaim_stale) {
    raise(ErrorCode::STALE_SEGMENT, "no segment named \"" + canonical + "\"",
          "a stale segment left by dead process " + std::to_string(pid),
          "remove it with: rm /dev/shm" + os_name + " (or enable reclaim_stale)");
  }
  detail::reclaim_stale_segment(m->base(), pid, os_name);  // R-STALE-3
  return Existing::retry;
}

}  // namespace

namespace detail {

bool reclaim_stale_segment(std::uint8_t* base, std::uint32_t dead_pid,
                           const std::string& os_name) noexcept {
  // Claim the reclaim by CAS on the dead creator's pid, so that two reclaimers never unlink each
  // other's fresh segment. R-LIVE-1 order: start_time = 0 (release), CAS pid, then our stamp, so
  // another reclaimer never sees our pid next to the dead creator's stamp.
  atomic_u64(base + kOffCreatorSlot + kSlotStartTime).store(0, std::memory_order_release);
  std::uint32_t expected = dead_pid;
  if (!atomic_u32(base + kOffCreatorSlot + kSlotPid)
           .compare_exchange_strong(expected, current_pid(), std::memory_order_acq_rel)) {
    return false;
  }
  atomic_u64(base + kOffCreatorSlot + kSlotStartTime)
      .store(self_start_stamp(), std::memory_order_release);
  return ::shm_unlink(os_name.c_str()) == 0;
}

}  // namespace detail

// The creator's descriptor, kept open for R-SEG-9 and closed with the last copy of the Segment.
static std::shared_ptr<const int> keep_fd(int& fd) {
  auto kept = std::shared_ptr<const int>(new int(fd), [](const int* p) {
    ::close(*p);
    delete p;
  });
  fd = -1;
  return kept;
}

Segment Segment::create_unpublished(const std::string& name, std::uint64_t segment_size,
                                    const std::function<void(std::uint8_t*)>& write_header,
                                    const CreateOptions& opt) {
  const std::string canonical = normalize_name(name);
  const std::string os_name = posix_shm_name(canonical);
  if (!host_is_little_endian()) {
    raise(ErrorCode::VERSION_MISMATCH, "a little-endian host", "a big-endian host",
          "shmbridge v1 runs on little-endian hosts only");
  }
  const auto deadline = Clock::now() + opt.init_timeout;
  for (int attempt = 0;; ++attempt) {
    Fd f;
    f.fd = ::shm_open(os_name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);  // R-SEG-1, R-SEG-2
    if (f.fd >= 0) {
      if (::ftruncate(f.fd, static_cast<off_t>(segment_size)) != 0) {
        const int e = errno;
        ::shm_unlink(os_name.c_str());
        os_error("ftruncate", os_name, e);
      }
      std::shared_ptr<Mapping> m;
      try {
        m = map_fd(f.fd, segment_size, os_name, /*prefault=*/true);
      } catch (...) {
        ::shm_unlink(os_name.c_str());
        throw;
      }
      try {
        write_header(m->base());  // magic stays zero: published last (R-SEG-6)
      } catch (...) {
        ::shm_unlink(os_name.c_str());
        throw;
      }
      Segment s;
      s.mapping_ = std::move(m);
      s.name_ = canonical;
      s.creator_ = true;
      s.fd_ = keep_fd(f.fd);
      return s;
    }
    if (errno == EACCES) permission_denied(os_name);
    if (errno != EEXIST) os_error("shm_open", os_name, errno);
    if (attempt > 10000) {
      raise(ErrorCode::ALREADY_EXISTS, "to create \"" + canonical + "\"",
            "the name keeps being re-created by another process", "choose another name");
    }
    inspect_existing(canonical, os_name, opt, deadline);
  }
}

void Segment::publish() noexcept {
  atomic_u64(base() + kOffMagic).store(magic_value(), std::memory_order_release);
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
  const std::string os_name = posix_shm_name(canonical);
  if (!host_is_little_endian()) {
    raise(ErrorCode::VERSION_MISMATCH, "a little-endian host", "a big-endian host",
          "shmbridge v1 runs on little-endian hosts only");
  }
  // R-ATTACH-1: wait for the name to appear and for its magic, until the deadline.
  AttachPoll poll(timeout);
  for (;;) {
    std::string missing;
    Fd f;
    f.fd = ::shm_open(os_name.c_str(), O_RDWR, 0);
    if (f.fd < 0) {
      if (errno == EACCES) permission_denied(os_name);
      if (errno != ENOENT) os_error("shm_open", os_name, errno);
      missing = "no object " + os_name;
    } else {
      const std::uint64_t size = fd_size(f.fd, os_name);
      if (size > 0 && size < kHeaderSize) {
        // A truncated object: a creator sizes it to segment_size at once (R-SEG-1), so only size
        // 0 means "still being initialised" (R-SEG-6, spec/vectors D16). Never mapped or read.
        raise(ErrorCode::CORRUPT_HEADER, "an OS object of at least the 512-byte header",
              std::to_string(size) + " bytes under " + os_name,
              "the segment is truncated or not a shmbridge segment; remove it (rm /dev/shm" +
                  os_name + ") and restart the creator");
      }
      if (size >= kHeaderSize) {
        auto m = map_fd(f.fd, size, os_name, /*prefault=*/true);
        if (atomic_u64(m->base() + kOffMagic).load(std::memory_order_acquire) != 0) {
          check(m->base(), size, canonical);
          Segment s;
          s.mapping_ = std::move(m);
          s.name_ = canonical;
          s.creator_ = false;
          return s;
        }
      }
      // R-SEG-6: still being initialised.
      missing = "a segment still being initialised (size " + std::to_string(size) + ", magic 0)";
    }
    if (!poll.pause()) {
      raise(ErrorCode::SEGMENT_NOT_FOUND, "a segment named \"" + canonical + "\"",
            missing + " " + poll.waited(),
            "start the creator first, check the name, or give attach a longer timeout");
    }
  }
}

bool Segment::remove(const std::string& name) noexcept {
  if (!is_valid_name(name)) return false;
  try {
    return ::shm_unlink(posix_shm_name(normalize_name(name)).c_str()) == 0;
  } catch (...) {
    return false;
  }
}

void Segment::unlink() noexcept {
  if (!creator_ || unlinked_) return;
  unlinked_ = true;
  ::shm_unlink(posix_shm_name(name_).c_str());  // ENOENT when the name was removed (R-SEG-9)
}

bool Segment::name_removed() const noexcept {
  if (!creator_ || unlinked_ || !fd_) return false;
#if defined(__APPLE__)
  // macOS reports st_nlink = 0 for every shared-memory object: ask for the name instead.
  const int fd = ::shm_open(posix_shm_name(name_).c_str(), O_RDONLY, 0);
  if (fd >= 0) ::close(fd);
  return fd < 0 && errno == ENOENT;
#else
  struct stat st;
  return ::fstat(*fd_, &st) == 0 && st.st_nlink == 0;
#endif
}

}  // namespace shmbridge
#endif
