// Helpers shared by the shmbridge tests.
#pragma once

#include <gtest/gtest.h>

#if defined(_WIN32)
#ifndef NOMINMAX
#define NOMINMAX
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#else
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif
#include <atomic>
#include <cerrno>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "shmbridge/shmbridge.hpp"

namespace shmbridge::test {

inline std::string spec_path(const std::string& rel) {
  return std::string(SHMBRIDGE_SPEC_DIR) + "/" + rel;
}

inline bool spec_exists(const std::string& rel) { return std::ifstream(spec_path(rel)).good(); }

inline nlohmann::json load_spec(const std::string& rel) {
  std::ifstream in(spec_path(rel));
  if (!in) throw std::runtime_error("cannot open " + spec_path(rel));
  return nlohmann::json::parse(in);
}

// A segment name unique to this process and call ("sbt<pid>_<tag><n>", at most 30 chars), removed
// again by the destructor so that no test leaves anything in /dev/shm.
class UniqueName {
 public:
  explicit UniqueName(const std::string& tag = "t") {
    static std::atomic<int> counter{0};
    name_ =
        "sbt" + std::to_string(current_pid()) + "_" + tag.substr(0, 8) + std::to_string(counter++);
    Segment::remove(name_);
  }
  ~UniqueName() { Segment::remove(name_); }
  UniqueName(const UniqueName&) = delete;
  UniqueName& operator=(const UniqueName&) = delete;
  const std::string& str() const { return name_; }
  operator const std::string&() const { return name_; }
  operator std::string_view() const { return name_; }
  std::string dev_shm() const { return "/dev/shm/" + name_; }
  // Whether the OS object exists (R-NAME-2): shm_open("/N") on POSIX (macOS has no /dev/shm),
  // the mapping Local\N on Windows.
  bool exists() const {
#if defined(_WIN32)
    const std::string os = "Local\\" + name_;
    HANDLE h = OpenFileMappingA(FILE_MAP_READ, FALSE, os.c_str());
    if (!h) return false;
    CloseHandle(h);
    return true;
#else
    const int fd = ::shm_open(("/" + name_).c_str(), O_RDONLY, 0);
    if (fd < 0) return errno == EACCES;
    ::close(fd);
    return true;
#endif
  }
#if !defined(_WIN32)
  // fstat of the POSIX object; false if it cannot be opened.
  bool stat(struct stat& st) const {
    const int fd = ::shm_open(("/" + name_).c_str(), O_RDONLY, 0);
    if (fd < 0) return false;
    const bool ok = ::fstat(fd, &st) == 0;
    ::close(fd);
    return ok;
  }
#endif

 private:
  std::string name_;
};

// Runs `f` and returns the ErrorCode of the shmbridge::Error it throws, or ErrorCode::ok.
template <class F>
ErrorCode code_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  return ErrorCode::ok;
}

inline std::chrono::nanoseconds ms(long v) { return std::chrono::milliseconds(v); }

// The vectors' forms (spec/vectors/README.md): lower-case hex, a §3.1 descriptor, a §3.3 slot.
inline std::vector<std::uint8_t> hex_bytes(const std::string& hex) {
  std::vector<std::uint8_t> out(hex.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<std::uint8_t>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
  }
  return out;
}

inline Descriptor descriptor_of(const nlohmann::json& j) {
  Descriptor d;
  d.dtype = j["dtype"];
  d.ndim = j["ndim"];
  const auto& shape = j["shape"];
  for (std::size_t i = 0; i < shape.size(); ++i) d.shape[i] = shape[i];
  d.nbytes = j["nbytes"];
  return d;
}

inline Slot slot_of(const nlohmann::json& j) {
  Slot s;
  s.pid = j["pid"];
  s.state = j["state"];
  s.start_time = j["start_time"];
  s.incarnation = j["incarnation"];
  return s;
}

// The fields of a header vector's `fields` that every protocol version has (FixedHeader).
inline FixedHeader fixed_header_of(const nlohmann::json& f) {
  FixedHeader h;
  const std::string magic = f["magic"];
  std::copy(magic.begin(), magic.end(), h.magic.begin());
  h.version_major = f["version_major"];
  h.version_minor = f["version_minor"];
  h.header_size = f["header_size"];
  h.capacity = f["capacity"];
  h.segment_size = f["segment_size"];
  h.flags = f["flags"];
  h.max_dims = f["max_dims"];
  h.reply_code = f["reply_code"];
  h.word = f["word"];
  h.waiters = f["waiters"];
  h.requester = slot_of(f["requester"]);
  h.responder = slot_of(f["responder"]);
  h.creator = slot_of(f["creator"]);
  return h;
}

inline Options fast_options() {
  Options o;
  o.timeout = std::chrono::seconds(2);
  o.liveness_interval = std::chrono::milliseconds(20);
  return o;
}

}  // namespace shmbridge::test

#define EXPECT_CODE(expr, code) EXPECT_EQ(::shmbridge::test::code_of([&] { (void)(expr); }), (code))
#define ASSERT_CODE(expr, code) ASSERT_EQ(::shmbridge::test::code_of([&] { (void)(expr); }), (code))
