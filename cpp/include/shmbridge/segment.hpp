// The OS shared-memory segment (spec/PROTOCOL.md §2, R-SEG-*, R-STALE-*).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "shmbridge/layout.hpp"

namespace shmbridge {

// One mapping of a segment. Unmapped when the last owner (channel handle or view) drops it, so
// that a view outliving its channel never points into unmapped memory (R-CLOSE-3).
class Mapping {
 public:
  Mapping(std::uint8_t* base, std::uint64_t size, void* os_handle) noexcept
      : base_(base), size_(size), os_handle_(os_handle) {}
  ~Mapping();
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  std::uint8_t* base() const noexcept { return base_; }
  std::uint64_t size() const noexcept { return size_; }

 private:
  std::uint8_t* base_;
  std::uint64_t size_;
  [[maybe_unused]] void* os_handle_;  // Windows: the file-mapping handle; POSIX: unused
};

struct CreateOptions {
  bool reclaim_stale = true;  // R-STALE-2
  // How long to wait for a concurrently initialising segment under the same name (R-SEG-6).
  std::chrono::nanoseconds init_timeout = std::chrono::seconds(1);
};

class Segment {
 public:
  // R-SEG-1/2/6, R-STALE-2: creates the OS object exclusively (mode 0600), sizes it to
  // `segment_size`, runs `write_header(base)` (every header byte; magic stays zero), then
  // `before_publish(base)` (the caller claims its slots there), then publishes magic (release).
  // Reclaims a stale segment of either protocol version (R-VER-7) or fails with ALREADY_EXISTS,
  // STALE_SEGMENT, CORRUPT_HEADER, VERSION_MISMATCH, PERMISSION_DENIED.
  template <class F>
  static Segment create(const std::string& name, std::uint64_t segment_size,
                        const std::function<void(std::uint8_t*)>& write_header,
                        const CreateOptions& opt, F&& before_publish) {
    Segment s = create_unpublished(name, segment_size, write_header, opt);
    try {
      before_publish(s.base());
    } catch (...) {
      s.unlink();
      throw;
    }
    s.publish();
    return s;
  }
  // The same for a v1 header.
  template <class F>
  static Segment create(const std::string& name, const Header& header, const CreateOptions& opt,
                        F&& before_publish) {
    Header h = header;
    h.magic = {};  // published last (R-SEG-6)
    return create(
        name, header.segment_size, [&h](std::uint8_t* base) { encode_header(h, base); }, opt,
        std::forward<F>(before_publish));
  }
  // R-SEG-4/6: SEGMENT_NOT_FOUND, PERMISSION_DENIED, CORRUPT_HEADER, VERSION_MISMATCH. Retries
  // while magic is 0 until `timeout` has passed. `check(data, mapping_size, canonical_name)`
  // validates a published header (it throws); the default accepts either protocol version.
  using HeaderCheck = std::function<void(const std::uint8_t*, std::uint64_t, const std::string&)>;
  static Segment attach(const std::string& name, std::chrono::nanoseconds timeout);
  static Segment attach(const std::string& name, std::chrono::nanoseconds timeout,
                        const HeaderCheck& check);

  // Removes the OS object of `name` (POSIX shm_unlink; Windows: nothing). True if removed.
  static bool remove(const std::string& name) noexcept;

  Segment() = default;
  std::uint8_t* base() const noexcept { return mapping_ ? mapping_->base() : nullptr; }
  std::uint64_t size() const noexcept { return mapping_ ? mapping_->size() : 0; }
  const std::shared_ptr<Mapping>& mapping() const noexcept { return mapping_; }
  const std::string& name() const noexcept { return name_; }
  bool is_creator() const noexcept { return creator_; }
  // R-SEG-3: creator only; no-op for an attacher. Idempotent.
  void unlink() noexcept;
  // R-SEG-9 (POSIX, creator only): true when the segment's name no longer designates this
  // segment although it is still mapped: another process removed it (shm_unlink), e.g. CPython's
  // resource tracker after a script attached with multiprocessing.shared_memory on Python < 3.13.
  // Linux: fstat of the creator's descriptor reports st_nlink == 0; macOS (st_nlink is always 0
  // there): shm_open of the name fails with ENOENT. Always false for an attacher, on Windows (no
  // unlink) and after this creator unlinked the name itself.
  bool name_removed() const noexcept;
  // Drops this handle's reference to the mapping (views may keep it alive).
  void reset() noexcept { mapping_.reset(); }

 private:
  static Segment create_unpublished(const std::string& name, std::uint64_t segment_size,
                                    const std::function<void(std::uint8_t*)>& write_header,
                                    const CreateOptions& opt);
  void publish() noexcept;

  std::shared_ptr<Mapping> mapping_;
  std::string name_;
  bool creator_ = false;
  bool unlinked_ = false;
  std::shared_ptr<const int> fd_;  // POSIX creator: its descriptor of the object (R-SEG-9)
};

namespace detail {
// R-STALE-3 (POSIX): `base` maps a stale segment whose creator slot held `dead_pid` when it was
// inspected. Stores start_time = 0, CASes that pid to the calling process's pid (then writes its
// own start stamp, R-LIVE-1 order) and unlinks the OS object `os_name` ("/N") only if the CAS
// succeeded, so that two concurrent reclaimers never unlink each other's fresh segment. Returns
// whether it unlinked. Used by Segment::create; exposed for tests.
bool reclaim_stale_segment(std::uint8_t* base, std::uint32_t dead_pid,
                           const std::string& os_name) noexcept;

// R-STALE-2/3: throws ALREADY_EXISTS when the creator slot of the validated header at `base`
// names a live process (pid loaded before start_time; a live pid with start_time 0 is a
// reclaimer's claim in progress and counts as alive, R-LIVE-2). Returns the pid it judged dead (or
// 0): the one a reclaimer must CAS (R-STALE-3). Both platforms' create use it.
std::uint32_t refuse_live_creator(std::uint8_t* base, const std::string& canonical);
}  // namespace detail

}  // namespace shmbridge
