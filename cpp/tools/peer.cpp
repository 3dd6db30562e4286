// shmbridge-peer: the C++ conformance peer (spec/PEER.md).
//
// One process, one role, one segment: creates or attaches, runs --rounds rounds with the data
// pattern of PEER.md §3, injects the faults it is asked for, logs every operation as a JSON line
// on stdout (CLOCK_MONOTONIC nanoseconds via std::chrono::steady_clock, so logs of two processes
// merge) and exits with the code of spec/errors.json. Built only on the public C++ API.

#if defined(_WIN32)  // the raw header view and dying on purpose differ (mapping Local\N, R-NAME-2)
#ifndef NOMINMAX
#define NOMINMAX
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#else
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#include <chrono>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "peer_support.hpp"
#include "shmbridge/channel.hpp"
#include "shmbridge/dtype.hpp"
#include "shmbridge/errors.hpp"
#include "shmbridge/layout.hpp"
#include "shmbridge/layout_v2.hpp"
#include "shmbridge/liveness.hpp"
#include "shmbridge/message.hpp"
#include "shmbridge/protocol.hpp"

namespace sb = shmbridge;
using namespace peer;

namespace {

// ------------------------------------------------------------------------------ flags (§1)

struct Delay {
  std::string where;
  double ms;
  std::optional<int> round;
};

struct Args {
  std::string role, name, label, op = "add1", crash_mode = "kill", on_peer_gone = "exit";
  bool create = false, attach = false, no_reclaim = false, keep = false,
       retry_after_timeout = false;
  bool print_clock = false, wait_peer = false, wrong_shape = false, wrong_dtype = false,
       name_given = false;
  std::optional<std::string> dtype, shape, out_of_turn;
  std::optional<long long> capacity;
  long rounds = 1;
  double timeout = 5.0, hold_ms = 0, jitter_ms = 0;
  long long seed = 0;
  std::vector<Delay> before, after;
  std::optional<std::string> crash_where, crash_when;
  int crash_round = 1;
  std::optional<std::string> corrupt_field, corrupt_value, corrupt_where;
  std::optional<std::string> close_where;  // --close-at: close on purpose (R-CLOSE-2)
  long close_round = 1;
  // PEER.md §7: protocol v2
  int protocol = 1;
  std::optional<std::string> request_schema, reply_schema;  // SPEC texts (§7.2)
  std::string extents = "rule", reply_extents = "rule";
};

std::string norm_where(std::string w) {
  if (w == "T1") w = "send";
  if (w == "T2") w = "take";
  if (w == "T3") w = "reply";
  if (w == "T4") w = "receive";
  if (w == "create" || w == "attach") w = "ready";
  if (w != "send" && w != "take" && w != "reply" && w != "receive" && w != "ready" && w != "close")
    throw UsageError{"unknown WHERE '" + w + "' (T1..T4, send/take/reply/receive, ready)"};
  return w;
}

std::pair<std::string, std::optional<int>> split_round(const std::string& s) {
  const auto at = s.rfind('@');
  if (at == std::string::npos) return {s, std::nullopt};
  try {
    return {s.substr(0, at), std::stoi(s.substr(at + 1))};
  } catch (...) {
    throw UsageError{"bad round in '" + s + "'"};
  }
}

std::optional<sb::Shape> parse_shape(const std::optional<std::string>& text) {
  if (!text) return std::nullopt;
  std::string t = *text;
  if (t.empty() || t == "()" || t == "scalar") return sb::Shape();
  if (t.front() == '(') t = t.substr(1);
  if (!t.empty() && t.back() == ')') t.pop_back();
  std::vector<std::uint64_t> dims;
  std::stringstream ss(t);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    if (item.find_first_not_of("0123456789") != std::string::npos)
      throw UsageError{"bad --shape '" + *text + "'"};
    try {
      dims.push_back(std::stoull(item));
    } catch (...) {
      throw UsageError{"bad --shape '" + *text + "'"};
    }
  }
  if (dims.size() > sb::layout::kMaxDims)
    throw sb::Error(sb::ErrorCode::SHAPE_MISMATCH, "a shape of at most 8 dimensions");
  return sb::Shape(dims);
}

Args parse(int argc, char** argv) {
  Args a;
  std::optional<int> protocol_flag;
  std::vector<std::string> av(argv + 1, argv + argc);
  for (std::size_t i = 0; i < av.size(); ++i) {
    std::string k = av[i], v;
    bool has_v = false;
    const auto eq = k.find('=');
    if (k.rfind("--", 0) == 0 && eq != std::string::npos) {
      v = k.substr(eq + 1);
      k = k.substr(0, eq);
      has_v = true;
    }
    auto flag = [&](bool& b) {
      if (has_v) throw UsageError{k + " takes no value"};
      b = true;
    };
    auto val = [&]() -> std::string {
      if (has_v) return v;
      if (i + 1 >= av.size()) throw UsageError{k + " needs a value"};
      return av[++i];
    };
    auto num = [&](const std::string& s) -> double {
      try {
        std::size_t pos = 0;
        const double d = std::stod(s, &pos);
        if (pos != s.size()) throw 0;
        return d;
      } catch (...) {
        throw UsageError{k + ": not a number: '" + s + "'"};
      }
    };
    if (k == "--role") {
      a.role = val();
      if (a.role != "requester" && a.role != "responder")
        throw UsageError{"--role requester|responder"};
    } else if (k == "--name") {
      a.name = val();
      a.name_given = true;
    } else if (k == "--create") {
      flag(a.create);
    } else if (k == "--attach") {
      flag(a.attach);
    } else if (k == "--dtype") {
      a.dtype = val();
    } else if (k == "--shape") {
      a.shape = val();
    } else if (k == "--capacity") {
      a.capacity = static_cast<long long>(num(val()));
    } else if (k == "--rounds") {
      a.rounds = static_cast<long>(num(val()));
    } else if (k == "--timeout") {
      a.timeout = num(val());
    } else if (k == "--op") {
      a.op = val();
      if (a.op != "add1" && a.op != "echo" && a.op != "checksum" && a.op != "fail" &&
          a.op != "derive")
        throw UsageError{"--op add1|echo|checksum|derive|fail"};
    } else if (k == "--protocol") {
      const std::string p = val();
      if (p != "1" && p != "2") throw UsageError{"--protocol 1|2"};
      protocol_flag = p == "1" ? 1 : 2;
    } else if (k == "--request-schema") {
      a.request_schema = val();
    } else if (k == "--reply-schema") {
      a.reply_schema = val();
    } else if (k == "--extents" || k == "--reply-extents") {
      const std::string e = val();
      if (e != "rule" && e != "zero" && e != "max" && e != "over")
        throw UsageError{k + " rule|zero|max|over"};
      (k == "--extents" ? a.extents : a.reply_extents) = e;
    } else if (k == "--seed") {
      a.seed = static_cast<long long>(num(val()));
    } else if (k == "--label") {
      a.label = val();
    } else if (k == "--no-reclaim") {
      flag(a.no_reclaim);
    } else if (k == "--keep") {
      flag(a.keep);
    } else if (k == "--hold-ms") {
      a.hold_ms = num(val());
    } else if (k == "--on-peer-gone") {
      a.on_peer_gone = val();
      if (a.on_peer_gone != "exit" && a.on_peer_gone != "retry")
        throw UsageError{"--on-peer-gone exit|retry"};
    } else if (k == "--retry-after-timeout") {
      flag(a.retry_after_timeout);
    } else if (k == "--print-clock") {
      flag(a.print_clock);
    } else if (k == "--wait-peer") {
      flag(a.wait_peer);
    } else if (k == "--delay-before" || k == "--delay-after") {
      auto [body, rnd] = split_round(val());
      const auto c = body.rfind(':');
      if (c == std::string::npos) throw UsageError{"bad delay '" + body + "': want WHERE:MS[@R]"};
      Delay d{norm_where(body.substr(0, c)), num(body.substr(c + 1)), rnd};
      (k == "--delay-before" ? a.before : a.after).push_back(d);
    } else if (k == "--crash-at") {
      auto [body, rnd] = split_round(val());
      std::string when = "after";
      for (const char* suffix : {":before", ":after"}) {
        const std::string s = suffix;
        if (body.size() > s.size() && body.compare(body.size() - s.size(), s.size(), s) == 0) {
          body = body.substr(0, body.size() - s.size());
          when = s.substr(1);
        }
      }
      a.crash_where = norm_where(body);
      a.crash_when = when;
      a.crash_round = rnd.value_or(1);
    } else if (k == "--crash-mode") {
      a.crash_mode = val();
      if (a.crash_mode != "kill" && a.crash_mode != "abort")
        throw UsageError{"--crash-mode kill|abort"};
    } else if (k == "--out-of-turn") {
      a.out_of_turn = val();
    } else if (k == "--wrong-shape") {
      flag(a.wrong_shape);
    } else if (k == "--wrong-dtype") {
      flag(a.wrong_dtype);
    } else if (k == "--corrupt") {
      std::string s = val();
      const auto at = s.find('@');
      if (at != std::string::npos) {
        a.corrupt_where = norm_where(s.substr(at + 1));
        s = s.substr(0, at);
      } else {
        a.corrupt_where = "ready";
      }
      const auto e = s.find('=');
      a.corrupt_field = s.substr(0, e);
      if (e != std::string::npos && e + 1 < s.size()) a.corrupt_value = s.substr(e + 1);
    } else if (k == "--jitter-ms") {
      a.jitter_ms = num(val());
    } else if (k == "--close-at") {
      std::string s = val();
      const auto at = s.find('@');
      if (at != std::string::npos) {
        a.close_round = static_cast<long>(num(s.substr(at + 1)));
        s = s.substr(0, at);
      }
      a.close_where = norm_where(s);
    } else {
      throw UsageError{"unknown flag '" + k + "'"};
    }
  }
  if (a.print_clock) return a;
  if (a.role.empty() || !a.name_given || a.create == a.attach)
    throw UsageError{"--role, --name and exactly one of --create/--attach are required"};
  if (a.label.empty()) a.label = a.role;
  // PEER.md §7.1: a schema flag means protocol 2; v1's array flags do not apply there.
  const bool schema_flag = a.request_schema || a.reply_schema;
  a.protocol = protocol_flag.value_or(schema_flag ? 2 : 1);
  if (a.protocol == 1 && schema_flag) throw UsageError{"--protocol 1 takes no schema flag"};
  if (a.protocol == 1 && a.op == "derive") throw UsageError{"--op derive needs --protocol 2"};
  if (a.capacity && *a.capacity < 0) throw UsageError{"--capacity takes a byte count >= 0"};
  if (a.protocol == 2) {
    if (a.dtype || a.shape || a.capacity || a.wrong_shape || a.wrong_dtype)
      throw UsageError{
          "--dtype, --shape, --capacity, --wrong-shape and --wrong-dtype are v1 "
          "flags; give --request-schema / --reply-schema with --protocol 2"};
    if (a.create && !(a.request_schema && a.reply_schema))
      throw UsageError{"--create with --protocol 2 needs --request-schema and --reply-schema"};
    for (const auto* spec : {&a.request_schema, &a.reply_schema}) {
      if (!*spec) continue;
      try {
        (void)sb::Schema::parse(**spec);
      } catch (const sb::Error& e) {
        throw UsageError{e.what()};
      }
    }
    return a;
  }
  if (a.create) {
    if (!a.dtype) a.dtype = "float32";
    if (!a.shape) a.shape = "512,512";
  }
  return a;
}

// ------------------------------------------------------------------------------ raw pokes

struct FieldInfo {
  const char* name;
  std::size_t off, size;
};
constexpr FieldInfo kFields[] = {
    {"magic", 0x000, 8},
    {"version_major", 0x008, 2},
    {"version_minor", 0x00A, 2},
    {"header_size", 0x00C, 4},
    {"capacity", 0x010, 8},
    {"segment_size", 0x018, 8},
    {"flags", 0x020, 4},
    {"max_dims", 0x024, 4},
    {"declared_dtype", 0x040, 4},
    {"declared_ndim", 0x044, 4},
    {"declared_nbytes", 0x088, 8},
    {"message_dtype", 0x090, 4},
    {"message_ndim", 0x094, 4},
    {"message_shape0", 0x098, 8},
    {"message_nbytes", 0x0D8, 8},
    {"reply_code", 0x0E0, 4},
    {"word", 0x100, 4},
    {"creator_slot", 0x180, 32},  // zeroed: an EMPTY creator slot (R-STALE-1)
};

const FieldInfo* field_info(const std::string& f) {
  for (const auto& fi : kFields)
    if (f == fi.name) return &fi;
  return nullptr;
}

std::uint64_t load_le(const unsigned char* p, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t k = 0; k < n; ++k) v |= static_cast<std::uint64_t>(p[k]) << (8 * k);
  return v;
}

void store_le(unsigned char* p, std::size_t n, std::uint64_t v) {
  for (std::size_t k = 0; k < n; ++k) p[k] = static_cast<unsigned char>(v >> (8 * k));
}

std::uint64_t word_value(const std::optional<std::string>& value, std::uint64_t cur) {
  if (!value) return 0xF;
  const std::pair<const char*, std::uint64_t> phases[] = {
      {"IDLE", 0x0}, {"REQUESTED", 0x1}, {"TAKEN", 0x4}, {"REPLIED", 0x2}};
  for (const auto& [ph, bits] : phases) {
    const std::string p = ph;
    if (value->rfind(p, 0) == 0) {
      const std::string rest = value->substr(p.size());
      long long seq = static_cast<long long>(cur >> 4);
      if (!rest.empty() && rest[0] == '+') seq += std::stoll(rest.substr(1));
      if (!rest.empty() && rest[0] == '-') seq -= std::stoll(rest.substr(1));
      if (!rest.empty() && rest[0] == '=') seq = std::stoll(rest.substr(1));
      return ((static_cast<std::uint64_t>(seq) & ((1u << 28) - 1)) << 4) | bits;
    }
  }
  return std::stoull(*value, nullptr, 0) & 0xFFFFFFFFull;
}

// PEER.md §7.5: the --corrupt fields of a v2 segment. Offsets of the table fields come from the
// geometry block (entry 0 of the area); a schema with no fields has no such field.
std::optional<FieldInfo> v2_field_info(const std::string& f, const unsigned char* h,
                                       std::uint64_t mapped) {
  static const FieldInfo fixed[] = {{"request_fields", 0x040, 4},
                                    {"reply_fields", 0x044, 4},
                                    {"schema0_dtype", 0x220, 4},
                                    {"schema0_offset", 0x270, 8}};
  const std::uint64_t request_fields = load_le(h + 0x040, 4);
  for (const auto& fi : fixed) {
    if (f != fi.name) continue;
    if (f.rfind("schema0_", 0) == 0 && request_fields == 0)
      throw UsageError{"--corrupt " + f + ": the request schema has no fields"};
    return fi;
  }
  for (const char* side : {"request", "reply"}) {
    const std::string prefix = std::string(side) + "_table_";
    if (f.rfind(prefix, 0) != 0) continue;
    const bool reply = side[2] == 'p';
    if (load_le(h + (reply ? 0x044 : 0x040), 4) == 0)
      throw UsageError{"--corrupt " + f + ": the " + side + " schema has no fields"};
    const std::uint64_t area = load_le(h + (reply ? 0x058 : 0x048), 8);
    const std::string what = f.substr(prefix.size());
    const std::size_t rel = what == "dtype" ? 0 : what == "shape0" ? 8 : 72;
    if (what != "dtype" && what != "shape0" && what != "nbytes") return std::nullopt;
    if (area > mapped || mapped - area < 80)
      throw UsageError{"--corrupt " + f + ": the area offset lies outside the segment"};
    return FieldInfo{nullptr, static_cast<std::size_t>(area + rel), what == "dtype" ? 4u : 8u};
  }
  return std::nullopt;
}

// A writable mapping of the whole OS object (a rogue writer's, R-STATE-8).
class RawMapping {
 public:
  explicit RawMapping(const std::string& name) {
    const std::string bare = name.rfind('/', 0) == 0 ? name.substr(1) : name;
#if defined(_WIN32)
    const std::string os_name = "Local\\" + bare;
    HANDLE mh = OpenFileMappingW(FILE_MAP_ALL_ACCESS, FALSE,
                                 std::wstring(os_name.begin(), os_name.end()).c_str());
    if (!mh) throw sb::Error(sb::ErrorCode::OS_ERROR, "corrupt: OpenFileMappingW failed");
    base_ = static_cast<unsigned char*>(MapViewOfFile(mh, FILE_MAP_ALL_ACCESS, 0, 0, 0));
    CloseHandle(mh);  // the view keeps the mapping alive
    if (!base_) throw sb::Error(sb::ErrorCode::OS_ERROR, "corrupt: MapViewOfFile failed");
    MEMORY_BASIC_INFORMATION info{};
    VirtualQuery(base_, &info, sizeof info);
    size_ = static_cast<std::uint64_t>(info.RegionSize);
#else
    const int fd = ::shm_open(("/" + bare).c_str(), O_RDWR, 0);
    if (fd < 0) throw sb::Error(sb::ErrorCode::OS_ERROR, "corrupt: shm_open failed");
    struct stat st{};
    if (::fstat(fd, &st) != 0 || st.st_size < 512) {
      ::close(fd);
      throw sb::Error(sb::ErrorCode::OS_ERROR, "corrupt: the object is smaller than a header");
    }
    size_ = static_cast<std::uint64_t>(st.st_size);
    void* m =
        ::mmap(nullptr, static_cast<std::size_t>(size_), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    if (m == MAP_FAILED) throw sb::Error(sb::ErrorCode::OS_ERROR, "corrupt: mmap failed");
    base_ = static_cast<unsigned char*>(m);
#endif
  }
  ~RawMapping() {
#if defined(_WIN32)
    UnmapViewOfFile(base_);
#else
    ::munmap(base_, static_cast<std::size_t>(size_));
#endif
  }
  RawMapping(const RawMapping&) = delete;
  RawMapping& operator=(const RawMapping&) = delete;
  unsigned char* base() const { return base_; }
  std::uint64_t size() const { return size_; }

 private:
  unsigned char* base_ = nullptr;
  std::uint64_t size_ = 0;
};

std::uint64_t corrupt_header(const std::string& name, const std::string& field,
                             const std::optional<std::string>& value) {
  const RawMapping map(name);
  unsigned char* h = map.base();
  const bool v2 = load_le(h + 0x008, 2) == 2;
  std::optional<FieldInfo> fi;
  if (const FieldInfo* v1 = field_info(field)) fi = *v1;
  if (!fi && v2) fi = v2_field_info(field, h, map.size());
  if (!fi) throw UsageError{"unknown --corrupt field '" + field + "'"};
  unsigned char* p = h + fi->off;
  std::uint64_t v = 0;
  if (field == "creator_slot") {
    std::memset(p, 0, fi->size);
  } else if (field == "magic") {
    std::string raw = value ? *value : "SHMBRIDX";
    if (raw == "0") raw = std::string(8, '\0');
    raw.resize(8, '\0');
    std::memcpy(p, raw.data(), 8);
  } else {
    const std::uint64_t cur = load_le(p, fi->size);
    const bool table = field.find("_table_") != std::string::npos;
    if (field == "word") {
      v = word_value(value, cur);
    } else if (value) {
      v = std::stoull(*value, nullptr, 0);
    } else if (field == "version_major") {
      v = v2 ? 1 : 2;  // the other version (§7.5)
    } else if (field == "header_size") {
      v = 256;
    } else if (field == "flags") {
      v = 1;
    } else if (field == "max_dims") {
      v = 4;
    } else if (field == "declared_dtype" || field == "schema0_dtype") {
      v = 99;
    } else if (field == "request_fields" || field == "reply_fields") {
      v = 17;
    } else if (field == "message_dtype") {
      v = load_le(h + 0x40, 4) == 6 ? 11 : 6;
    } else if (table && field.size() > 6 && field.compare(field.size() - 6, 6, "_dtype") == 0) {
      v = cur == 6 ? 11 : 6;  // int32, or float32 if the field is int32
    } else {
      v = cur +
          ((field == "capacity" || field == "segment_size" || field == "schema0_offset") ? 64 : 1);
    }
    store_le(p, fi->size, v);
  }
  return v;
}

// Plain reads of the header through the handle's own mapping (ChannelHandle::segment_bytes): the
// same object the handle uses, even after its creator unlinked the name (a second open by name
// would race with that unlink and find nothing).
class HeaderView {
 public:
  explicit HeaderView(const sb::ChannelHandle& handle) : handle_(&handle) {}

  bool read(std::size_t off, std::size_t n, unsigned char* out) const {
    if (!handle_->is_open()) return false;
    const std::vector<std::uint8_t> bytes = handle_->segment_bytes(off, n);
    std::memcpy(out, bytes.data(), n);
    return true;
  }

  // spec/PEER.md §2 `declared_desc` / `message_desc`: the 80 descriptor bytes at `off` as hex.
  std::string desc_field(const char* key, std::size_t off) const {
    unsigned char d[80];
    if (!read(off, sizeof d, d)) return "";
    static const char* digits = "0123456789abcdef";
    std::string hex;
    for (unsigned char c : d) {
      hex += digits[c >> 4];
      hex += digits[c & 15];
    }
    return std::string("\"") + key + "\":\"" + hex + "\"";
  }

  // spec/PEER.md §2: what the reply a receive consumed left (R-MSG-4): reply_code, message_desc
  // (v1 only: a v2 segment has no message descriptor, §7.5).
  std::string reply_fields() const {
    unsigned char rc[4], major[2];
    if (!read(0x0E0, 4, rc) || !read(0x008, 2, major)) return "";
    const std::string code = "\"reply_code\":" + std::to_string(load_le(rc, 4));
    return load_le(major, 2) == 2 ? code : code + "," + desc_field("message_desc", 0x090);
  }

 private:
  const sb::ChannelHandle* handle_;
};

// --wait-peer: poll the other role's slot state (a plain read) until ATTACHED (1).
bool wait_peer(const std::string& name, const std::string& role, double timeout) {
  const std::string os_name = "/" + (name.rfind('/', 0) == 0 ? name.substr(1) : name);
  const std::size_t off = (role == "requester" ? 0x160 : 0x140) + 4;
  const std::int64_t deadline = now_ns() + static_cast<std::int64_t>(std::max(timeout, 0.0) * 1e9);
  while (true) {
#if defined(_WIN32)
    const std::string win_name = "Local\\" + os_name.substr(1);
    HANDLE mh = OpenFileMappingW(FILE_MAP_READ, FALSE,
                                 std::wstring(win_name.begin(), win_name.end()).c_str());
    if (mh) {
      const void* m = MapViewOfFile(mh, FILE_MAP_READ, 0, 0, 512);
      CloseHandle(mh);
      const bool attached = m && load_le(static_cast<const unsigned char*>(m) + off, 4) == 1;
      if (m) UnmapViewOfFile(m);
      if (attached) return true;
    }
#else
    const int fd = ::shm_open(os_name.c_str(), O_RDONLY, 0);
    if (fd >= 0) {
      unsigned char b[4] = {0, 0, 0, 0};
      const ssize_t n = ::pread(fd, b, 4, static_cast<off_t>(off));
      ::close(fd);
      if (n == 4 && load_le(b, 4) == 1) return true;
    }
#endif
    if (now_ns() >= deadline) return false;
    sleep_ms(2);
  }
}

// ------------------------------------------------------------------------------ the peer

struct Fatal {
  std::string name;
  int code;
};

struct CloseNow {};  // --close-at: stop here and close the handle (exit 0)

const char* phase_name(std::uint32_t word) {
  switch (word & sb::kPhaseMask) {
    case 0x0:
      return "IDLE";
    case 0x1:
      return "REQUESTED";
    case 0x4:
      return "TAKEN";
    case 0x2:
      return "REPLIED";
    default:
      return "INVALID";
  }
}

class Peer;

// The operations of one protocol version's API that the round loops of Peer run (PEER.md §5;
// §7 for v2). Each logs its own event lines through the peer.
class Rounds {
 public:
  virtual ~Rounds() = default;
  virtual void open() = 0;  // create or attach, logged
  virtual sb::ChannelHandle* handle() = 0;
  // requester
  virtual void inject_before_send(long /*rnd*/) {}
  virtual bool send(long rnd, bool injected, std::string& result, int& ec) = 0;
  virtual std::string receive(long rnd, int& ec) = 0;  // waits, verifies, logs, counts
  virtual void receive_injected(long rnd) = 0;         // --out-of-turn receive
  virtual std::optional<std::uint32_t> pending() = 0;
  // responder
  virtual std::string take(long rnd, bool injected, int& ec) = 0;
  virtual void compute() = 0;  // the op, before the `reply` faults
  virtual std::string reply(long rnd, int& ec) = 0;
  virtual void reply_injected(long rnd) = 0;  // --out-of-turn reply
  [[noreturn]] virtual void serve_failing(long rnd) = 0;
};

std::unique_ptr<Rounds> make_v1_rounds(Peer& p);
std::unique_ptr<Rounds> make_v2_rounds(Peer& p);

class Peer {
 public:
  explicit Peer(Args a) : a_(std::move(a)), rng_(static_cast<std::uint64_t>(a_.seed) * 7919 + 1) {
    emit(Fields()
             .str("event", "start")
             .str("peer", a_.label)
             .str("impl", "cpp")
             .num("pid", sb::current_pid())
             .str("role", a_.role)
             .str("name", a_.name)
             .num("protocol", a_.protocol)
             .num("t", now_ns())
             .done());
    rounds_ = a_.protocol == 2 ? make_v2_rounds(*this) : make_v1_rounds(*this);
  }

  int run() {
    std::optional<std::string> error;
    int code = 0;
    try {
      open();
      if (a_.role == "requester")
        run_requester();
      else
        run_responder();
      sleep_ms(a_.hold_ms);
    } catch (const Fatal& f) {
      code = f.code;
      error = f.name;
    } catch (const CloseNow&) {
      // --close-at: close() below, on purpose (a responder holding a request: R-CLOSE-2)
    } catch (const UsageError& u) {
      std::fprintf(stderr, "usage error: %s\n", u.what.c_str());
      code = kExitUsage;
      error = "USAGE";
    } catch (const std::exception& e) {
      std::fprintf(stderr, "shmbridge-peer: internal failure: %s\n", e.what());
      code = kExitInternal;
      error = "INTERNAL";
    }
    close();
    if (code == 0 && mismatches_) code = kExitVerify;
    emit(Fields()
             .str("event", "summary")
             .str("peer", a_.label)
             .num("rounds_ok", rounds_ok_)
             .num("verified", verified_)
             .num("mismatches", mismatches_)
             .num("exit", code)
             .opt_str("error", error)
             .num("t", now_ns())
             .done());
    return code;
  }

  // -- helpers for the Rounds ----------------------------------------------------------------

  const Args& args() const { return a_; }

  std::optional<std::string> phase() {
    sb::ChannelHandle* h = rounds_->handle();
    if (!h || !h->is_open()) return std::nullopt;
    try {
      return std::string(phase_name(h->word()));
    } catch (...) {
      return std::nullopt;
    }
  }

  void event(const std::string& op, long rnd, std::int64_t t0, std::int64_t t1,
             const std::string& result, std::optional<long long> seq, std::optional<std::string> cs,
             bool injected = false, const std::string& message = "",
             std::optional<bool> verified = std::nullopt, const std::string& extra = "") {
    Fields f;
    f.str("peer", a_.label)
        .str("op", op)
        .num("round", rnd)
        .num("t_call", t0)
        .num("t_return", t1)
        .str("result", result)
        .opt_num("seq", seq)
        .opt_str("phase_after", phase())
        .opt_str("checksum", cs);
    if (injected) f.raw("injected", "true");
    if (!message.empty()) f.str("message", message.substr(0, 300));
    if (verified) f.raw("verified", *verified ? "true" : "false");
    f.extra(extra);
    emit(f.done());
  }

  // §7.5: what a v2 line of a failed operation adds: "protocol" (create/attach), null "shapes"
  // and "checksums" (send/take/reply/receive) and the "field" the error names (R-FIELD-7).
  std::string error_fields(const std::string& op, const std::string& field) const {
    if (a_.protocol != 2 || op == "close") return "";
    const std::string named = "\"field\":" + (field.empty() ? std::string("null") : jstr(field));
    if (op == "create" || op == "attach") return "\"protocol\":2," + named;
    return "\"shapes\":null,\"checksums\":null," + named;
  }

  // Runs one library call; on an error logs it and returns its name (value untouched).
  // `on_error` runs after a failed call and before its line is written, and adds fields to it.
  std::string call(const std::string& op, long rnd, const std::function<void()>& fn,
                   std::int64_t& t0, std::int64_t& t1, bool injected = false,
                   int* exit_code = nullptr,
                   const std::function<std::string(const sb::Error&)>& on_error = nullptr) {
    t0 = now_ns();
    try {
      fn();
      t1 = now_ns();
      return "ok";
    } catch (const sb::Error& e) {
      // PEER.md §2: the reason of a PEER_GONE (R-LIVE-5); what a consumed reply left (R-MSG-5);
      // §7.5: in v2 the field the error names (R-FIELD-7).
      std::string extra;
      auto add = [&](const std::string& kv) {
        if (!kv.empty()) extra += (extra.empty() ? "" : ",") + kv;
      };
      if (on_error) add(on_error(e));
      t1 = now_ns();
      if (e.code() == sb::ErrorCode::PEER_GONE) {
        add(std::string("\"reason\":\"") + sb::peer_gone_reason_name(e.peer_gone_reason()) + "\"");
      }
      if (op == "receive" && e.reply_code() && view_) add(view_->reply_fields());
      add(error_fields(op, e.field()));
      event(op, rnd, t0, t1, e.name(), std::nullopt, std::nullopt, injected, e.what(), std::nullopt,
            extra);
      if (exit_code) *exit_code = e.exit_code();
      return e.name();
    }
  }

  [[noreturn]] void fail(const std::string& name, int code) { throw Fatal{name, code}; }

  void count_reply(bool good) {
    ++rounds_ok_;
    verified_ += good;
    mismatches_ += !good;
  }
  void count_served() {
    ++rounds_ok_;
    ++verified_;
  }

  void point(const std::string& when, const std::string& where, long rnd) {
    if (when == "after" && a_.corrupt_field && *a_.corrupt_where == where && rnd <= 1 &&
        !corrupted_) {
      corrupted_ = true;
      const std::int64_t t = now_ns();
      const std::uint64_t v = corrupt_header(a_.name, *a_.corrupt_field, a_.corrupt_value);
      Fields f;
      f.str("peer", a_.label)
          .str("op", "corrupt")
          .num("round", rnd)
          .num("t_call", t)
          .num("t_return", t);
      f.str("result", "ok")
          .raw("seq", "null")
          .opt_str("phase_after", phase())
          .raw("checksum", "null");
      f.str("field", *a_.corrupt_field).num("value", static_cast<long long>(v));
      emit(f.done());
    }
    if (when == "before") jitter();
    for (const Delay& d : when == "before" ? a_.before : a_.after)
      if (d.where == where && (!d.round || *d.round == rnd)) sleep_ms(d.ms);
    if (when == "after") jitter();
    if (a_.crash_where && *a_.crash_where == where && *a_.crash_when == when &&
        (where == "ready" || a_.crash_round == rnd))
      die(rnd);
    if (when == "after" && a_.close_where && *a_.close_where == where &&
        (where == "ready" || a_.close_round == rnd))
      throw CloseNow{};
  }

  sb::Options options() const {
    sb::Options o;
    o.timeout = std::chrono::nanoseconds(static_cast<long long>(std::llround(a_.timeout * 1e9)));
    o.reclaim_stale = !a_.no_reclaim;
    o.keep_segment = a_.keep;
    if (a_.create && a_.protocol == 1 && a_.capacity)  // R-SEG-1; attach ignores --capacity
      o.capacity = static_cast<std::uint64_t>(*a_.capacity);
    return o;
  }

  // After a successful create/attach: the separate header view of PEER.md §2.
  HeaderView& open_view(const sb::ChannelHandle& handle) {
    view_.emplace(handle);
    return *view_;
  }
  HeaderView* view() { return view_ ? &*view_ : nullptr; }

 private:
  void jitter() {
    if (a_.jitter_ms > 0) sleep_ms(std::uniform_real_distribution<double>(0, a_.jitter_ms)(rng_));
  }

  [[noreturn]] void die(long rnd) {
    const std::int64_t t = now_ns();
    emit(Fields()
             .str("peer", a_.label)
             .str("op", "crash")
             .num("round", rnd)
             .num("t_call", t)
             .num("t_return", t)
             .str("result", "ok")
             .raw("seq", "null")
             .opt_str("phase_after", phase())
             .raw("checksum", "null")
             .str("mode", a_.crash_mode)
             .done());
#if defined(_WIN32)
    if (a_.crash_mode == "abort") std::abort();
    TerminateProcess(GetCurrentProcess(), 137);  // as SIGKILL: no cleanup, no close
#else
    if (a_.crash_mode == "abort") {
      struct rlimit rl{};
      ::setrlimit(RLIMIT_CORE, &rl);
      std::abort();
    }
    ::kill(::getpid(), SIGKILL);
#endif
    std::this_thread::sleep_for(std::chrono::seconds(60));
    std::_Exit(kExitInternal);
  }

  // -- phases (PEER.md §5) -------------------------------------------------------------------

  void open() {
    rounds_->open();
    point("after", "ready", 0);
    if (a_.wait_peer) wait_peer(a_.name, a_.role, 10.0);
  }

  void run_requester() {
    long rnd = 1;
    bool need_send = true;
    std::int64_t gone_since = -1;  // ns, -1 = not gone
    int retries = 0;
    std::string res;
    int ec = kExitInternal;
    while (rnd <= a_.rounds) {
      if (need_send) {
        if (rnd == 1 && a_.out_of_turn == std::optional<std::string>("receive"))
          rounds_->receive_injected(rnd);
        if (rnd == 1) rounds_->inject_before_send(rnd);
        point("before", "send", rnd);
        if (!rounds_->send(rnd, false, res, ec)) fail(res, ec);
        point("after", "send", rnd);
        if (rnd == 1 && a_.out_of_turn == std::optional<std::string>("send"))
          rounds_->send(rnd, true, res, ec);
      }
      point("before", "receive", rnd);
      res = rounds_->receive(rnd, ec);
      if (res == "ok") {
        point("after", "receive", rnd);
        ++rnd;
        need_send = true;
        gone_since = -1;
        retries = 0;
        continue;
      }
      if (res == "TIMEOUT" && a_.retry_after_timeout && retries < 100) {
        ++retries;
        if (rnd < a_.rounds) {
          std::string r2;
          int ec2 = kExitInternal;
          if (rounds_->send(rnd + 1, false, r2, ec2)) {
            ++rnd;  // the old round is abandoned (cancelled, or its late reply dropped)
            need_send = false;
            continue;
          }
          if (r2 != "OUT_OF_TURN") fail(r2, ec2);
        }
        need_send = false;  // receive the late reply of the same round
        continue;
      }
      if (res == "PEER_GONE" && a_.on_peer_gone == "retry") {
        const std::int64_t now = now_ns();
        if (gone_since < 0) gone_since = now;
        if (static_cast<double>(now - gone_since) <= a_.timeout * 1e9) {
          sleep_ms(20);
          need_send = !rounds_->pending().has_value();
          continue;
        }
      }
      fail(res, ec);
    }
  }

  void run_responder() {
    long rnd = 0;
    std::int64_t gone_since = -1;  // ns, -1 = not gone
    int ec = kExitInternal;
    while (a_.rounds == 0 || rnd < a_.rounds) {
      const long nr = rnd + 1;
      if (nr == 1 && a_.out_of_turn == std::optional<std::string>("reply") && gone_since < 0)
        rounds_->reply_injected(nr);
      point("before", "take", nr);
      if (a_.op == "fail") rounds_->serve_failing(nr);
      std::string res = rounds_->take(nr, false, ec);
      if (res == "PEER_GONE") {
        const std::int64_t now = now_ns();
        if (a_.on_peer_gone == "retry") {
          if (gone_since < 0) gone_since = now;
          if (static_cast<double>(now - gone_since) <= a_.timeout * 1e9) {
            sleep_ms(20);
            continue;
          }
        }
        if (a_.rounds == 0) return;  // end of service (R-LIVE-4)
        fail(res, ec);
      }
      if (res != "ok") fail(res, ec);
      gone_since = -1;
      rnd = nr;
      point("after", "take", rnd);
      if (rnd == 1 && a_.out_of_turn == std::optional<std::string>("take"))
        rounds_->take(rnd, true, ec);
      rounds_->compute();
      point("before", "reply", rnd);
      res = rounds_->reply(rnd, ec);
      if (res != "ok") fail(res, ec);
      count_served();
      point("after", "reply", rnd);
    }
  }

  void close() {
    sb::ChannelHandle* h = rounds_->handle();
    if (!h) return;
    const std::int64_t t0 = now_ns();
    try {
      h->close();
      event("close", 0, t0, now_ns(), "ok", std::nullopt, std::nullopt);
    } catch (const sb::Error& e) {
      event("close", 0, t0, now_ns(), e.name(), std::nullopt, std::nullopt, false, e.what());
    }
  }

  Args a_;
  std::mt19937_64 rng_;
  std::unique_ptr<Rounds> rounds_;
  std::optional<HeaderView> view_;  // opened after create/attach (PEER.md §2 header fields)
  long rounds_ok_ = 0, verified_ = 0, mismatches_ = 0;
  bool corrupted_ = false;
};

// ------------------------------------------------------------------------------ v1 (§1-§5)

// What the `take` line of a request shows: its seq, checksum (v1) and extra fields (v2).
struct TakeLog {
  std::uint32_t seq;
  std::optional<std::string> checksum;
  std::string extra;
};

// The serve loop with a failing handler, for both versions.
template <class Responder, class Log>
[[noreturn]] void serve_failing_with(Peer& p, Responder& rsp, long rnd, Log&& take_log) {
  std::int64_t t0 = now_ns();
  std::optional<long long> seq;
  bool taken = false;
  try {
    rsp.serve([&](auto& r) {
      taken = true;
      const TakeLog log = take_log(r);
      seq = log.seq;
      p.event("take", rnd, t0, now_ns(), "ok", log.seq, log.checksum, false, "", std::nullopt,
              log.extra);
      p.point("after", "take", rnd);
      p.point("before", "reply", rnd);
      t0 = now_ns();
      throw std::runtime_error("--op fail: the handler failed on purpose");
    });
  } catch (const sb::Error& e) {
    const std::string op = taken ? "reply" : "take";
    p.event(op, rnd, t0, now_ns(), e.name(), std::nullopt, std::nullopt, false, e.what(),
            std::nullopt, p.error_fields(op, e.field()));
    p.fail(e.name(), e.exit_code());
  } catch (const std::runtime_error& e) {
    const sb::Error hf(sb::ErrorCode::HANDLER_FAILED,
                       std::string("the handler of request #") + std::to_string(seq.value_or(0)) +
                           " failed: " + e.what() +
                           "; the library answered it with reply_code HANDLER_FAILED (R-MSG-3)");
    p.event("reply", rnd, t0, now_ns(), hf.name(), seq, std::nullopt, false, hf.what(),
            std::nullopt, p.error_fields("reply", ""));
    p.fail(hf.name(), hf.exit_code());
  }
  // serve() returned: the requester closed before sending (R-LIVE-4)
  p.event("take", rnd, t0, now_ns(), "PEER_GONE", std::nullopt, std::nullopt, false,
          "PEER_GONE: the requester closed before sending a request for --op fail", std::nullopt,
          p.error_fields("take", ""));
  p.fail("PEER_GONE", sb::exit_code(sb::ErrorCode::PEER_GONE));
}
// What both versions' rounds share: the handles, the request held, `take`, the injected reply and
// the failing serve loop; `take_log` says what a version's `take` line shows.
template <class Requester, class Responder, class Request>
class RoundsOf : public Rounds {
 public:
  explicit RoundsOf(Peer& p) : p_(p), a_(p.args()) {}

  sb::ChannelHandle* handle() override {
    if (req_) return &*req_;
    if (rsp_) return &*rsp_;
    return nullptr;
  }

  std::optional<std::uint32_t> pending() override { return req_->pending(); }

  std::string take(long rnd, bool injected, int& ec) override {
    std::int64_t t0, t1;
    std::optional<Request> got;
    const std::string res = p_.call(
        "take", rnd,
        [&] {
          got.emplace(injected ? rsp_->take(std::chrono::nanoseconds::zero()) : rsp_->take());
        },
        t0, t1, injected, &ec);
    if (res != "ok") return res;
    if (injected) {
      p_.event("take", rnd, t0, t1, "ok", got->seq(), std::nullopt, true);
      return res;
    }
    request_ = std::move(got);
    const TakeLog log = take_log(*request_);  // before the op writes anything (§7.5)
    p_.event("take", rnd, t0, t1, "ok", log.seq, log.checksum, false, "", std::nullopt, log.extra);
    return res;
  }

  void reply_injected(long rnd) override {
    std::int64_t t0, t1;
    if (p_.call("reply", rnd, [&] { rsp_->reply(); }, t0, t1, true) == "ok")
      p_.event("reply", rnd, t0, t1, "ok", std::nullopt, std::nullopt, true);
  }

  // --op fail: the library's handler path (serve) with a handler that throws a non-shmbridge
  // exception: the library answers with reply_code HANDLER_FAILED (R-MSG-3) and rethrows; logged
  // as a `reply` whose result is HANDLER_FAILED. Ends the peer.
  [[noreturn]] void serve_failing(long rnd) override {
    serve_failing_with(p_, *rsp_, rnd, [this](Request& r) { return take_log(r); });
  }

 protected:
  virtual TakeLog take_log(Request& r) = 0;

  Peer& p_;
  const Args& a_;
  std::optional<Requester> req_;
  std::optional<Responder> rsp_;
  std::optional<Request> request_;
};

class V1Rounds final : public RoundsOf<sb::Requester, sb::Responder, sb::Request> {
 public:
  using RoundsOf::RoundsOf;

  void open() override {
    const std::string op = a_.create ? "create" : "attach";
    std::int64_t t0 = now_ns(), t1 = 0;
    int ec = kExitInternal;
    std::optional<sb::DType> dt;
    if (a_.dtype) {
      sb::DType d;
      if (!sb::dtype_from_name(*a_.dtype, d)) {
        // The typed API cannot even express an unknown dtype: report it as the library would.
        t1 = now_ns();
        p_.event(op, 0, t0, t1, "DTYPE_MISMATCH", std::nullopt, std::nullopt, false,
                 "unsupported dtype '" + *a_.dtype + "': expected one of spec/dtypes.json");
        p_.fail("DTYPE_MISMATCH", sb::exit_code(sb::ErrorCode::DTYPE_MISMATCH));
      }
      dt = d;
    }
    std::optional<sb::Shape> shape;
    std::string result = p_.call(op, 0, [&] { shape = parse_shape(a_.shape); }, t0, t1, false, &ec);
    if (result != "ok") p_.fail(result, ec);
    if (a_.attach) {
      if (a_.wrong_dtype) {
        if (!dt) throw UsageError{"--wrong-dtype with --attach needs --dtype"};
        dt = wrong_dtype(*dt);
      }
      if (a_.wrong_shape) {
        if (!shape) throw UsageError{"--wrong-shape with --attach needs --shape"};
        shape = wrong_shape(*shape);
      }
      if (dt.has_value() != shape.has_value())
        throw UsageError{"--attach takes both --dtype and --shape, or neither"};
    }
    const sb::Options opt = p_.options();
    result = p_.call(
        op, 0,
        [&] {
          if (a_.role == "requester") {
            if (a_.create)
              req_.emplace(sb::Requester::create(a_.name, *dt, *shape, opt));
            else if (dt)
              req_.emplace(sb::Requester::attach(a_.name, *dt, *shape, opt));
            else
              req_.emplace(sb::Requester::attach(a_.name, opt));
          } else {
            if (a_.create)
              rsp_.emplace(sb::Responder::create(a_.name, *dt, *shape, opt));
            else if (dt)
              rsp_.emplace(sb::Responder::attach(a_.name, *dt, *shape, opt));
            else
              rsp_.emplace(sb::Responder::attach(a_.name, opt));
          }
        },
        t0, t1, false, &ec);
    if (result != "ok") p_.fail(result, ec);
    sb::Handle* h = req_ ? static_cast<sb::Handle*>(&*req_) : &*rsp_;
    HeaderView& view = p_.open_view(*h);
    p_.event(op, 0, t0, t1, "ok", h->seq(), std::nullopt, false, "", std::nullopt,
             view.desc_field("declared_desc", 0x040));
    dtype_ = h->dtype();
    shape_ = h->shape();
    nbytes_ = count_of(shape_) * sb::itemsize(dtype_);
  }

  std::vector<unsigned char> data(long rnd) const {
    return pattern(dtype_, shape_, static_cast<std::uint64_t>(rnd),
                   static_cast<std::uint64_t>(a_.seed));
  }

  void inject_before_send(long rnd) override {
    if (!(a_.create && (a_.wrong_shape || a_.wrong_dtype))) return;
    std::string res;
    int ec = kExitInternal;
    const sb::DType bd = a_.wrong_dtype ? wrong_dtype(dtype_) : dtype_;
    const sb::Shape bs = a_.wrong_shape ? wrong_shape(shape_) : shape_;
    send_array(
        rnd, pattern(bd, bs, static_cast<std::uint64_t>(rnd), static_cast<std::uint64_t>(a_.seed)),
        bd, bs, true, res, ec);
  }

  bool send(long rnd, bool injected, std::string& result, int& ec) override {
    return send_array(rnd, data(rnd), dtype_, shape_, injected, result, ec);
  }

  std::string receive(long rnd, int& ec) override {
    std::vector<unsigned char> reply(nbytes_);
    std::int64_t t0, t1;
    const std::string res = p_.call(
        "receive", rnd, [&] { req_->receive(reply.data(), dtype_, shape_); }, t0, t1, false, &ec);
    if (res != "ok") return res;
    const bool good = verify(data(rnd), reply);
    p_.event("receive", rnd, t0, t1, "ok", req_->seq(), hexsum(reply.data(), reply.size()), false,
             "", good, p_.view()->reply_fields());
    p_.count_reply(good);
    return res;
  }

  void receive_injected(long rnd) override {
    std::int64_t t0, t1;
    sb::ArrayView view;
    if (p_.call("receive", rnd, [&] { view = req_->try_receive(); }, t0, t1, true) == "ok")
      p_.event("receive", rnd, t0, t1, "ok", view.seq(), hexsum(view.data(), view.nbytes()), true,
               "", std::nullopt, p_.view()->reply_fields());
  }

  void compute() override { apply_op(a_.op, dtype_, request_->data(), request_->nbytes()); }

  std::string reply(long rnd, int& ec) override {
    std::int64_t t0, t1;
    const std::string cs = hexsum(request_->data(), request_->nbytes());
    const std::string res = p_.call("reply", rnd, [&] { request_->reply(); }, t0, t1, false, &ec);
    if (res == "ok") p_.event("reply", rnd, t0, t1, "ok", request_->seq(), cs);
    return res;
  }

 protected:
  TakeLog take_log(sb::Request& r) override {
    return TakeLog{r.seq(), hexsum(r.data(), r.nbytes()), ""};
  }

 private:
  bool send_array(long rnd, const std::vector<unsigned char>& data, sb::DType dt,
                  const sb::Shape& shape, bool injected, std::string& result, int& ec) {
    std::int64_t t0, t1;
    result =
        p_.call("send", rnd, [&] { req_->send(data.data(), dt, shape); }, t0, t1, injected, &ec);
    if (result != "ok") return false;
    p_.event("send", rnd, t0, t1, "ok",
             req_->pending() ? std::optional<long long>(*req_->pending())
                             : std::optional<long long>(req_->seq()),
             hexsum(data.data(), data.size()), injected);
    return true;
  }

  bool verify(const std::vector<unsigned char>& sent, const std::vector<unsigned char>& reply) {
    if (a_.op == "checksum")
      return checksum(sent.data(), sent.size()) == checksum(reply.data(), reply.size());
    std::vector<unsigned char> want = sent;
    apply_op(a_.op, dtype_, want.data(), want.size());
    return want == reply;
  }

  sb::DType dtype_ = sb::DType::float32;
  sb::Shape shape_;
  std::uint64_t nbytes_ = 0;
};

std::unique_ptr<Rounds> make_v1_rounds(Peer& p) { return std::make_unique<V1Rounds>(p); }

// ------------------------------------------------------------------------------ v2 (§7)

// A field of a message as the peer builds, logs and verifies it.
struct V2Field {
  std::string name;
  sb::DType dtype;
  sb::Shape shape;
  std::vector<unsigned char> data;
};
using V2Message = std::vector<V2Field>;

// §7.3 / §7.4: a variable extent of maximum `max` by `mode`, from `base + d` for `rule`.
std::uint64_t extent_by(std::uint64_t max, const std::string& mode, std::uint64_t base,
                        std::size_t d) {
  if (mode == "zero") return 0;
  if (mode == "max") return max;
  if (mode == "over") {
    if (max == UINT64_MAX) throw UsageError{"'over' with a maximum of 2^64 - 1 (PEER.md §7.3)"};
    return max + 1;
  }
  const std::uint64_t v = base + d;  // mod (M + 1), exact: for M = 2^64 - 1 the left operand
  return max == UINT64_MAX ? v : v % (max + 1);
}

sb::Shape shape_by(const sb::FieldRecord& r, const std::string& mode, std::uint64_t base) {
  std::vector<std::uint64_t> dims;
  for (std::size_t d = 0; d < r.ndim; ++d) {
    dims.push_back(r.variable(d) ? extent_by(r.max_shape[d], mode, base, d) : r.max_shape[d]);
  }
  return sb::Shape(dims);
}

// §7.5: "shapes" and "checksums" of the fields of a message, in schema order.
std::string message_fields(const std::vector<std::string>& names,
                           const std::function<sb::FieldRef(std::size_t)>& field) {
  std::string shapes = "{", sums = "{";
  for (std::size_t k = 0; k < names.size(); ++k) {
    const sb::FieldRef f = field(k);
    std::string dims;
    for (std::uint64_t e : f.shape) dims += (dims.empty() ? "" : ",") + std::to_string(e);
    shapes += (k ? "," : "") + jstr(names[k]) + ":[" + dims + "]";
    sums += (k ? "," : "") + jstr(names[k]) + ":" + jstr(hexsum(f.data, f.nbytes()));
  }
  return "\"shapes\":" + shapes + "},\"checksums\":" + sums + "}";
}
std::string message_fields(const sb::FieldSet& m) {
  return message_fields(m.names(), [&](std::size_t k) { return m.ref(m.names()[k]); });
}
std::string message_fields(const V2Message& m) {
  std::vector<std::string> names;
  for (const auto& f : m) names.push_back(f.name);
  return message_fields(
      names, [&](std::size_t k) { return sb::FieldRef(m[k].data.data(), m[k].dtype, m[k].shape); });
}

class V2Rounds final
    : public RoundsOf<sb::MessageRequester, sb::MessageResponder, sb::MessageRequest> {
 public:
  using RoundsOf::RoundsOf;

  void open() override {
    const std::string op = a_.create ? "create" : "attach";
    std::optional<sb::Schema> request, reply;  // validated by parse()
    if (a_.request_schema) request = sb::Schema::parse(*a_.request_schema);
    if (a_.reply_schema) reply = sb::Schema::parse(*a_.reply_schema);
    const sb::Options opt = p_.options();
    std::int64_t t0, t1;
    int ec = kExitInternal;
    const std::string result = p_.call(
        op, 0,
        [&] {
          if (a_.role == "requester") {
            req_.emplace(a_.create ? sb::MessageRequester::create(a_.name, *request, *reply, opt)
                                   : sb::MessageRequester::attach(a_.name, request, reply, opt));
          } else {
            rsp_.emplace(a_.create ? sb::MessageResponder::create(a_.name, *request, *reply, opt)
                                   : sb::MessageResponder::attach(a_.name, request, reply, opt));
          }
        },
        t0, t1, false, &ec);
    if (result != "ok") p_.fail(result, ec);
    layout_ = req_ ? req_->schemas() : rsp_->schemas();
    p_.open_view(*handle());
    p_.event(op, 0, t0, t1, "ok", handle()->seq(), std::nullopt, false, "", std::nullopt,
             "\"protocol\":2");
    if (!op_fits()) {
      throw UsageError{"--op " + a_.op +
                       " needs compatible schemas (PEER.md §7.4): as many reply fields as request "
                       "fields, reply field k in place onto request field k or of its dtype, "
                       "extents, maxima and variable extents"};
    }
  }

  // §7.3: the request of round r.
  V2Message request_of(long rnd) const {
    const auto r = static_cast<std::uint64_t>(rnd), s = static_cast<std::uint64_t>(a_.seed);
    V2Message m;
    for (std::size_t k = 0; k < layout_.request.size(); ++k) {
      const sb::FieldRecord& rec = layout_.request[k];
      const sb::Shape shape = shape_by(rec, a_.extents, r + s + 3 * k);
      m.push_back(
          {rec.name, rec.dtype_value(), shape, pattern(rec.dtype_value(), shape, r, s + 29 * k)});
    }
    return m;
  }

  // §7.4: the reply the op promises for `request` (derive with this peer's --reply-extents).
  V2Message reply_for(const V2Message& request) const {
    V2Message m;
    if (a_.op == "derive") {
      const std::uint64_t c =
          request.empty() ? 0 : checksum(request[0].data.data(), request[0].data.size()) % 61;
      for (std::size_t k = 0; k < layout_.reply.size(); ++k) {
        const sb::FieldRecord& rec = layout_.reply[k];
        const sb::Shape shape = shape_by(rec, a_.reply_extents, c + 3 * k);
        m.push_back(
            {rec.name, rec.dtype_value(), shape, pattern(rec.dtype_value(), shape, 0, 29 * k + c)});
      }
      return m;
    }
    for (std::size_t k = 0; k < layout_.reply.size(); ++k) {
      V2Field f = request[k];
      f.name = layout_.reply[k].name;
      apply_op(a_.op, f.dtype, f.data.data(), f.data.size());
      m.push_back(std::move(f));
    }
    return m;
  }

  // Zero-copy: request_buffer checks the shapes (S1-S3, S5-S7) before any data exists, so
  // --extents over fails without allocating the oversized fields.
  bool send(long rnd, bool injected, std::string& result, int& ec) override {
    const auto r = static_cast<std::uint64_t>(rnd), s = static_cast<std::uint64_t>(a_.seed);
    std::vector<sb::NamedShape> shapes;
    for (std::size_t k = 0; k < layout_.request.size(); ++k) {
      shapes.push_back(
          {layout_.request[k].name, shape_by(layout_.request[k], a_.extents, r + s + 3 * k)});
    }
    V2Message m;
    std::uint32_t seq = 0;
    std::int64_t t0, t1;
    result = p_.call(
        "send", rnd,
        [&] {
          sb::MessageBuffer buf = req_->request_buffer(shapes);
          m = request_of(rnd);
          for (const V2Field& f : m) {
            if (!f.data.empty()) std::memcpy(buf.raw(f.name).data, f.data.data(), f.data.size());
          }
          seq = req_->send_in_place();
        },
        t0, t1, injected, &ec);
    if (result != "ok") return false;
    p_.event("send", rnd, t0, t1, "ok", seq, std::nullopt, injected, "", std::nullopt,
             message_fields(m));
    return true;
  }

  std::string receive(long rnd, int& ec) override {
    sb::MessageView v;
    std::int64_t t0, t1;
    const std::string res =
        p_.call("receive", rnd, [&] { v = req_->receive(); }, t0, t1, false, &ec);
    if (res != "ok") return res;
    const bool good = verify(reply_for(request_of(rnd)), v);
    p_.event("receive", rnd, t0, t1, "ok", v.seq(), std::nullopt, false, "", good,
             message_fields(v) + "," + p_.view()->reply_fields());
    p_.count_reply(good);
    return res;
  }

  void receive_injected(long rnd) override {
    std::int64_t t0, t1;
    sb::MessageView v;
    if (p_.call("receive", rnd, [&] { v = req_->try_receive(); }, t0, t1, true) == "ok")
      p_.event("receive", rnd, t0, t1, "ok", v.seq(), std::nullopt, true, "", std::nullopt,
               message_fields(v) + "," + p_.view()->reply_fields());
  }

  void compute() override {}  // the reply fields are written by reply() (zero-copy views)

  // §7.4: the op's reply through reply_field views, then reply(); a reply call that fails (S7
  // with --reply-extents over) is answered with an error reply of its code (R-MSG-2) before its
  // line is logged, with that reply_code.
  std::string reply(long rnd, int& ec) override {
    std::string fields;
    std::int64_t t0, t1;
    const std::string res = p_.call(
        "reply", rnd,
        [&] {
          fields = write_reply();
          request_->reply();
        },
        t0, t1, false, &ec, [&](const sb::Error& e) { return error_reply(e); });
    if (res == "ok") {
      p_.event("reply", rnd, t0, t1, "ok", request_->seq(), std::nullopt, false, "", std::nullopt,
               fields);
    }
    return res;
  }

  // §7.4: completes a refused reply's round with an error reply of its code; the "reply_code"
  // its line logs, or nothing if the round was answered or the error reply failed too.
  std::string error_reply(const sb::Error& e) {
    if (request_->answered()) return "";
    try {
      request_->fail(e.code());
    } catch (const sb::Error&) {
      return "";
    }
    return "\"reply_code\":" + std::to_string(static_cast<int>(e.code()));
  }

 protected:
  TakeLog take_log(sb::MessageRequest& r) override {
    return TakeLog{r.seq(), std::nullopt, message_fields(r.request())};  // §7.5
  }

 private:
  // §7.4: add1/echo/checksum need reply field k in place onto request field k, or of its dtype,
  // ndim, extents, maxima and variable extents; derive and fail fit any schemas.
  bool op_fits() const {
    if (a_.op == "derive" || a_.op == "fail") return true;
    if (layout_.request.size() != layout_.reply.size()) return false;
    for (std::size_t k = 0; k < layout_.reply.size(); ++k) {
      const sb::FieldRecord &rep = layout_.reply[k], &req = layout_.request[k];
      if (rep.alias ? rep.alias != k + 1
                    : (rep.dtype != req.dtype || rep.ndim != req.ndim ||
                       rep.max_shape != req.max_shape || rep.variable_mask != req.variable_mask))
        return false;
    }
    return true;
  }

  // Writes the op's reply into reply_field views; returns its "shapes"/"checksums" fields,
  // computed while the responder still owns the areas.
  std::string write_reply() {
    const sb::MessageView& in = request_->request();
    std::uint64_t c = 0;
    if (a_.op == "derive" && !layout_.request.empty()) {
      const sb::FieldRef f0 = in.ref(layout_.request[0].name);
      c = checksum(f0.data, f0.nbytes()) % 61;  // before an in-place field overwrites it
    }
    std::vector<sb::RawField> written;
    for (std::size_t k = 0; k < layout_.reply.size(); ++k) {
      const sb::FieldRecord& rec = layout_.reply[k];
      if (a_.op == "derive") {
        const sb::Shape shape = shape_by(rec, a_.reply_extents, c + 3 * k);
        written.push_back(request_->reply_field(rec.name, shape));
        const auto data = pattern(rec.dtype_value(), shape, 0, 29 * k + c);
        if (!data.empty()) std::memcpy(written.back().data, data.data(), data.size());
      } else {
        const sb::FieldRef src = in.ref(layout_.request[k].name);
        written.push_back(request_->reply_field(rec.name, src.shape));
        const sb::RawField& f = written.back();
        if (f.data != src.data && f.nbytes) std::memcpy(f.data, src.data, f.nbytes);
        apply_op(a_.op, f.dtype, f.data, f.nbytes);
      }
    }
    std::vector<std::string> names;
    for (const auto& rec : layout_.reply) names.push_back(rec.name);
    return message_fields(names, [&](std::size_t k) {
      return sb::FieldRef(written[k].data, written[k].dtype, written[k].shape);
    });
  }

  bool verify(const V2Message& want, const sb::MessageView& got) const {
    for (const V2Field& f : want) {
      const sb::FieldRef g = got.ref(f.name);
      if (g.shape != f.shape || g.nbytes() != f.data.size()) return false;
      if (a_.op == "checksum") {
        if (checksum(g.data, g.nbytes()) != checksum(f.data.data(), f.data.size())) return false;
      } else if (!f.data.empty() && std::memcmp(g.data, f.data.data(), f.data.size()) != 0) {
        return false;
      }
    }
    return true;
  }

  sb::SchemaLayout layout_;
};

std::unique_ptr<Rounds> make_v2_rounds(Peer& p) { return std::make_unique<V2Rounds>(p); }

}  // namespace

int main(int argc, char** argv) {
  Args a;
  try {
    a = parse(argc, argv);
  } catch (const UsageError& u) {
    std::fprintf(stderr, "usage error: %s\n", u.what.c_str());
    return kExitUsage;
  } catch (const sb::Error& e) {
    std::fprintf(stderr, "usage error: %s\n", e.what());
    return kExitUsage;
  }
  if (a.print_clock) {
    emit(Fields().str("event", "clock").num("t", now_ns()).done());
    return 0;
  }
  Peer peer(std::move(a));
  return peer.run();
}
