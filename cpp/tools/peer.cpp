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

#include "shmbridge/channel.hpp"
#include "shmbridge/dtype.hpp"
#include "shmbridge/errors.hpp"
#include "shmbridge/layout.hpp"
#include "shmbridge/liveness.hpp"
#include "shmbridge/protocol.hpp"

namespace sb = shmbridge;

namespace {

constexpr int kExitInternal = 1;
constexpr int kExitUsage = 2;
constexpr int kExitVerify = 3;
constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void sleep_ms(double ms) {
  if (ms > 0) std::this_thread::sleep_for(std::chrono::microseconds(static_cast<long>(ms * 1000)));
}

struct UsageError {
  std::string what;
};

// ------------------------------------------------------------------------------ JSON output

std::string jstr(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        o += "\\\"";
        break;
      case '\\':
        o += "\\\\";
        break;
      case '\n':
        o += "\\n";
        break;
      case '\r':
        o += "\\r";
        break;
      case '\t':
        o += "\\t";
        break;
      default:
        if (c < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", c);
          o += b;
        } else {
          o += static_cast<char>(c);
        }
    }
  }
  return o + "\"";
}

struct Fields {
  std::ostringstream os;
  bool first = true;
  Fields& raw(const char* k, const std::string& v) {
    os << (first ? "{" : ",") << '"' << k << "\":" << v;
    first = false;
    return *this;
  }
  Fields& str(const char* k, const std::string& v) { return raw(k, jstr(v)); }
  Fields& num(const char* k, long long v) { return raw(k, std::to_string(v)); }
  Fields& opt_num(const char* k, std::optional<long long> v) {
    return raw(k, v ? std::to_string(*v) : "null");
  }
  Fields& opt_str(const char* k, const std::optional<std::string>& v) {
    return raw(k, v ? jstr(*v) : "null");
  }
  // Appends pre-rendered `"k":v,...` fields (nothing if empty).
  Fields& extra(const std::string& kv) {
    if (!kv.empty()) os << (first ? "{" : ",") << kv;
    first = first && kv.empty();
    return *this;
  }
  std::string done() { return os.str() + "}"; }
};

void emit(const std::string& line) {
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

// ------------------------------------------------------------------------------ data (§3)

std::uint16_t float_to_half(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const int exp = static_cast<int>((x >> 23) & 0xFF) - 127 + 15;
  std::uint32_t mant = x & 0x7FFFFFu;
  if (((x >> 23) & 0xFF) == 0xFF)
    return static_cast<std::uint16_t>(sign | 0x7C00u | (mant ? 0x200u : 0));
  if (exp >= 31) return static_cast<std::uint16_t>(sign | 0x7C00u);
  if (exp <= 0) {
    if (exp < -10) return static_cast<std::uint16_t>(sign);
    mant |= 0x800000u;
    const int shift = 14 - exp;
    std::uint32_t h = mant >> shift;
    const std::uint32_t rem = mant & ((1u << shift) - 1);
    const std::uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) ++h;
    return static_cast<std::uint16_t>(sign | h);
  }
  std::uint32_t h = (static_cast<std::uint32_t>(exp) << 10) | (mant >> 13);
  const std::uint32_t rem = mant & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) ++h;
  return static_cast<std::uint16_t>(sign | h);
}

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1Fu;
  std::uint32_t mant = h & 0x3FFu;
  std::uint32_t x;
  if (exp == 0) {
    if (mant == 0) {
      x = sign;
    } else {
      exp = 127 - 15 + 1;
      while (!(mant & 0x400u)) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3FFu;
      x = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    x = sign | 0x7F800000u | (mant << 13);
  } else {
    x = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

template <class T>
void fill_as(std::vector<unsigned char>& buf, std::uint64_t n, std::uint64_t rnd,
             std::uint64_t seed, sb::DType dt) {
  buf.assign(n * sb::itemsize(dt), 0);
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint64_t v = (7 * i + 13 * rnd + seed) % 61;
    T x{};
    if constexpr (std::is_same_v<T, bool>) {
      x = (v % 2) == 1;
    } else if constexpr (std::is_same_v<T, std::complex<float>> ||
                         std::is_same_v<T, std::complex<double>>) {
      using R = typename T::value_type;
      x = T(static_cast<R>(v), static_cast<R>(i % 5));
    } else {
      x = static_cast<T>(v);
    }
    std::memcpy(buf.data() + i * sizeof(T), &x, sizeof(T));
  }
}

std::uint64_t count_of(const sb::Shape& shape) {
  std::uint64_t n = 1;
  if (!shape.element_count(n)) throw sb::Error(sb::ErrorCode::CAPACITY_EXCEEDED, "shape overflows");
  return n;
}

std::vector<unsigned char> pattern(sb::DType dt, const sb::Shape& shape, std::uint64_t rnd,
                                   std::uint64_t seed) {
  const std::uint64_t n = count_of(shape);
  std::vector<unsigned char> b;
  switch (dt) {
    case sb::DType::bool_:
      fill_as<bool>(b, n, rnd, seed, dt);
      break;
    case sb::DType::int8:
      fill_as<std::int8_t>(b, n, rnd, seed, dt);
      break;
    case sb::DType::uint8:
      fill_as<std::uint8_t>(b, n, rnd, seed, dt);
      break;
    case sb::DType::int16:
      fill_as<std::int16_t>(b, n, rnd, seed, dt);
      break;
    case sb::DType::uint16:
      fill_as<std::uint16_t>(b, n, rnd, seed, dt);
      break;
    case sb::DType::int32:
      fill_as<std::int32_t>(b, n, rnd, seed, dt);
      break;
    case sb::DType::uint32:
      fill_as<std::uint32_t>(b, n, rnd, seed, dt);
      break;
    case sb::DType::int64:
      fill_as<std::int64_t>(b, n, rnd, seed, dt);
      break;
    case sb::DType::uint64:
      fill_as<std::uint64_t>(b, n, rnd, seed, dt);
      break;
    case sb::DType::float32:
      fill_as<float>(b, n, rnd, seed, dt);
      break;
    case sb::DType::float64:
      fill_as<double>(b, n, rnd, seed, dt);
      break;
    case sb::DType::complex64:
      fill_as<std::complex<float>>(b, n, rnd, seed, dt);
      break;
    case sb::DType::complex128:
      fill_as<std::complex<double>>(b, n, rnd, seed, dt);
      break;
    case sb::DType::float16: {
      b.assign(n * 2, 0);
      for (std::uint64_t i = 0; i < n; ++i) {
        const std::uint16_t h = float_to_half(static_cast<float>((7 * i + 13 * rnd + seed) % 61));
        std::memcpy(b.data() + 2 * i, &h, 2);
      }
      break;
    }
  }
  return b;
}

template <class T>
void add1_as(void* p, std::uint64_t nbytes) {
  const std::uint64_t n = nbytes / sizeof(T);
  auto* c = static_cast<unsigned char*>(p);
  for (std::uint64_t i = 0; i < n; ++i) {
    T x;
    std::memcpy(&x, c + i * sizeof(T), sizeof(T));
    if constexpr (std::is_same_v<T, bool>) {
      x = !x;
    } else {
      x = static_cast<T>(x + T(1));
    }
    std::memcpy(c + i * sizeof(T), &x, sizeof(T));
  }
}

void apply_op(const std::string& op, sb::DType dt, void* p, std::uint64_t nbytes) {
  if (op != "add1") return;
  switch (dt) {
    case sb::DType::bool_:
      add1_as<bool>(p, nbytes);
      break;
    case sb::DType::int8:
      add1_as<std::int8_t>(p, nbytes);
      break;
    case sb::DType::uint8:
      add1_as<std::uint8_t>(p, nbytes);
      break;
    case sb::DType::int16:
      add1_as<std::int16_t>(p, nbytes);
      break;
    case sb::DType::uint16:
      add1_as<std::uint16_t>(p, nbytes);
      break;
    case sb::DType::int32:
      add1_as<std::int32_t>(p, nbytes);
      break;
    case sb::DType::uint32:
      add1_as<std::uint32_t>(p, nbytes);
      break;
    case sb::DType::int64:
      add1_as<std::int64_t>(p, nbytes);
      break;
    case sb::DType::uint64:
      add1_as<std::uint64_t>(p, nbytes);
      break;
    case sb::DType::float32:
      add1_as<float>(p, nbytes);
      break;
    case sb::DType::float64:
      add1_as<double>(p, nbytes);
      break;
    case sb::DType::complex64:
      add1_as<std::complex<float>>(p, nbytes);
      break;
    case sb::DType::complex128:
      add1_as<std::complex<double>>(p, nbytes);
      break;
    case sb::DType::float16: {
      auto* c = static_cast<unsigned char*>(p);
      for (std::uint64_t i = 0; i < nbytes / 2; ++i) {
        std::uint16_t h;
        std::memcpy(&h, c + 2 * i, 2);
        h = float_to_half(half_to_float(h) + 1.0f);
        std::memcpy(c + 2 * i, &h, 2);
      }
      break;
    }
  }
}

std::uint64_t checksum(const void* p, std::uint64_t n) {
  const auto* c = static_cast<const unsigned char*>(p);
  std::uint64_t s = 0;
  const std::uint64_t words = (n + 7) / 8;
  for (std::uint64_t i = 0; i < words; ++i) {
    std::uint64_t w = 0;
    const std::uint64_t take = std::min<std::uint64_t>(8, n - 8 * i);
    for (std::uint64_t k = 0; k < take; ++k)
      w |= static_cast<std::uint64_t>(c[8 * i + k]) << (8 * k);
    s += w * (2 * i + 1);
  }
  return s + n * kGolden;
}

std::string hexsum(const void* p, std::uint64_t n) {
  char b[20];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(checksum(p, n)));
  return b;
}

sb::Shape wrong_shape(const sb::Shape& s) {
  std::vector<std::uint64_t> v = s.to_vector();
  if (v.empty()) return sb::Shape({1});
  v[0] += 1;
  return sb::Shape(v);
}

sb::DType wrong_dtype(sb::DType d) {
  return d == sb::DType::int32 ? sb::DType::float32 : sb::DType::int32;
}

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
      if (a.op != "add1" && a.op != "echo" && a.op != "checksum" && a.op != "fail")
        throw UsageError{"--op add1|echo|checksum|fail"};
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

std::uint64_t corrupt_header(const std::string& name, const std::string& field,
                             const std::optional<std::string>& value) {
  const FieldInfo* fi = field_info(field);
  if (!fi) throw UsageError{"unknown --corrupt field '" + field + "'"};
#if defined(_WIN32)
  const std::string os_name = "Local\\" + (name.rfind('/', 0) == 0 ? name.substr(1) : name);
  HANDLE mh = OpenFileMappingW(FILE_MAP_ALL_ACCESS, FALSE,
                               std::wstring(os_name.begin(), os_name.end()).c_str());
  if (!mh) throw sb::Error(sb::ErrorCode::OS_ERROR, "corrupt: OpenFileMappingW failed");
  void* m = MapViewOfFile(mh, FILE_MAP_ALL_ACCESS, 0, 0, 512);
  CloseHandle(mh);  // the view keeps the mapping alive
  if (!m) throw sb::Error(sb::ErrorCode::OS_ERROR, "corrupt: MapViewOfFile failed");
#else
  const std::string os_name = "/" + (name.rfind('/', 0) == 0 ? name.substr(1) : name);
  const int fd = ::shm_open(os_name.c_str(), O_RDWR, 0);
  if (fd < 0) throw sb::Error(sb::ErrorCode::OS_ERROR, "corrupt: shm_open failed");
  void* m = ::mmap(nullptr, 512, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) throw sb::Error(sb::ErrorCode::OS_ERROR, "corrupt: mmap failed");
#endif
  auto* h = static_cast<unsigned char*>(m);
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
    if (field == "word") {
      v = word_value(value, cur);
    } else if (value) {
      v = std::stoull(*value, nullptr, 0);
    } else if (field == "version_major") {
      v = 2;
    } else if (field == "header_size") {
      v = 256;
    } else if (field == "flags") {
      v = 1;
    } else if (field == "max_dims") {
      v = 4;
    } else if (field == "declared_dtype") {
      v = 99;
    } else if (field == "message_dtype") {
      v = load_le(h + 0x40, 4) == 6 ? 11 : 6;
    } else {
      v = cur + ((field == "capacity" || field == "segment_size") ? 64 : 1);
    }
    store_le(p, fi->size, v);
  }
#if defined(_WIN32)
  UnmapViewOfFile(m);
#else
  ::munmap(m, 512);
#endif
  return v;
}

// A separate read-only view of the OS object, opened once after create/attach (plain reads, as
// --wait-peer's): it reads the same object even after its creator unlinked the name.
class HeaderView {
 public:
  explicit HeaderView(const std::string& name) {
    const std::string bare = name.rfind('/', 0) == 0 ? name.substr(1) : name;
#if defined(_WIN32)
    const std::string win_name = "Local\\" + bare;
    HANDLE mh = OpenFileMappingW(FILE_MAP_READ, FALSE,
                                 std::wstring(win_name.begin(), win_name.end()).c_str());
    if (!mh) return;
    view_ = static_cast<const unsigned char*>(MapViewOfFile(mh, FILE_MAP_READ, 0, 0, 512));
    CloseHandle(mh);  // the view keeps the mapping alive
#else
    fd_ = ::shm_open(("/" + bare).c_str(), O_RDONLY, 0);
#endif
  }
  ~HeaderView() {
#if defined(_WIN32)
    if (view_) UnmapViewOfFile(view_);
#else
    if (fd_ >= 0) ::close(fd_);
#endif
  }
  HeaderView(const HeaderView&) = delete;
  HeaderView& operator=(const HeaderView&) = delete;

  bool read(std::size_t off, std::size_t n, unsigned char* out) const {
#if defined(_WIN32)
    if (!view_) return false;
    std::memcpy(out, view_ + off, n);
    return true;
#else
    return fd_ >= 0 && ::pread(fd_, out, n, static_cast<off_t>(off)) == static_cast<ssize_t>(n);
#endif
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

  // spec/PEER.md §2: what the reply a receive consumed left (R-MSG-4): reply_code, message_desc.
  std::string reply_fields() const {
    unsigned char rc[4];
    if (!read(0x0E0, 4, rc)) return "";
    return "\"reply_code\":" + std::to_string(load_le(rc, 4)) + "," +
           desc_field("message_desc", 0x090);
  }

 private:
#if defined(_WIN32)
  const unsigned char* view_ = nullptr;
#else
  int fd_ = -1;
#endif
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
             .num("t", now_ns())
             .done());
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

 private:
  // -- helpers ------------------------------------------------------------------------------

  sb::Handle* handle() {
    if (req_) return &*req_;
    if (rsp_) return &*rsp_;
    return nullptr;
  }

  std::optional<std::string> phase() {
    sb::Handle* h = handle();
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

  // Runs one library call; on an error logs it and returns its name (value untouched).
  std::string call(const std::string& op, long rnd, const std::function<void()>& fn,
                   std::int64_t& t0, std::int64_t& t1, bool injected = false,
                   int* exit_code = nullptr) {
    t0 = now_ns();
    try {
      fn();
      t1 = now_ns();
      return "ok";
    } catch (const sb::Error& e) {
      t1 = now_ns();
      // PEER.md §2: the reason of a PEER_GONE (R-LIVE-5); what a consumed reply left (R-MSG-5).
      std::string extra;
      if (e.code() == sb::ErrorCode::PEER_GONE) {
        extra =
            std::string("\"reason\":\"") + sb::peer_gone_reason_name(e.peer_gone_reason()) + "\"";
      }
      if (op == "receive" && e.reply_code()) {
        const std::string r = view_ ? view_->reply_fields() : "";
        extra += (extra.empty() || r.empty() ? "" : ",") + r;
      }
      event(op, rnd, t0, t1, e.name(), std::nullopt, std::nullopt, injected, e.what(), std::nullopt,
            extra);
      if (exit_code) *exit_code = e.exit_code();
      return e.name();
    }
  }

  [[noreturn]] void fail(const std::string& name, int code) { throw Fatal{name, code}; }

  void jitter() {
    if (a_.jitter_ms > 0) sleep_ms(std::uniform_real_distribution<double>(0, a_.jitter_ms)(rng_));
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

  sb::Options options() const {
    sb::Options o;
    o.timeout = std::chrono::nanoseconds(static_cast<long long>(std::llround(a_.timeout * 1e9)));
    o.reclaim_stale = !a_.no_reclaim;
    o.keep_segment = a_.keep;
    return o;
  }

  // -- phases -------------------------------------------------------------------------------

  void open() {
    const std::string op = a_.create ? "create" : "attach";
    std::int64_t t0 = now_ns(), t1 = 0;
    int ec = kExitInternal;
    std::optional<sb::DType> dt;
    if (a_.dtype) {
      sb::DType d;
      if (!sb::dtype_from_name(*a_.dtype, d)) {
        // The typed API cannot even express an unknown dtype: report it as the library would.
        t1 = now_ns();
        event(op, 0, t0, t1, "DTYPE_MISMATCH", std::nullopt, std::nullopt, false,
              "unsupported dtype '" + *a_.dtype + "': expected one of spec/dtypes.json");
        fail("DTYPE_MISMATCH", sb::exit_code(sb::ErrorCode::DTYPE_MISMATCH));
      }
      dt = d;
    }
    std::optional<sb::Shape> shape;
    std::string result = call(op, 0, [&] { shape = parse_shape(a_.shape); }, t0, t1, false, &ec);
    if (result != "ok") fail(result, ec);
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
    const sb::Options opt = options();
    result = call(
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
    if (result != "ok") fail(result, ec);
    sb::Handle* h = handle();
    view_.emplace(a_.name);
    event(op, 0, t0, t1, "ok", h->seq(), std::nullopt, false, "", std::nullopt,
          view_->desc_field("declared_desc", 0x040));
    dtype_ = h->dtype();
    shape_ = h->shape();
    nbytes_ = count_of(shape_) * sb::itemsize(dtype_);
    point("after", "ready", 0);
    if (a_.wait_peer) wait_peer(a_.name, a_.role, 10.0);
  }

  bool send(long rnd, const std::vector<unsigned char>& data, sb::DType dt, const sb::Shape& shape,
            bool injected, std::string& result, int& ec) {
    std::int64_t t0, t1;
    result = call("send", rnd, [&] { req_->send(data.data(), dt, shape); }, t0, t1, injected, &ec);
    if (result != "ok") return false;
    event("send", rnd, t0, t1, "ok",
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

  void run_requester() {
    const std::uint64_t seed = static_cast<std::uint64_t>(a_.seed);
    long rnd = 1;
    std::vector<unsigned char> data = pattern(dtype_, shape_, 1, seed);
    std::vector<unsigned char> reply(nbytes_);
    bool need_send = true;
    std::int64_t gone_since = -1;  // ns, -1 = not gone
    int retries = 0;
    std::string res;
    int ec = kExitInternal;
    while (rnd <= a_.rounds) {
      if (need_send) {
        if (rnd == 1 && a_.out_of_turn == std::optional<std::string>("receive")) {
          std::int64_t t0, t1;
          sb::ArrayView view;
          if (call("receive", rnd, [&] { view = req_->try_receive(); }, t0, t1, true) == "ok")
            event("receive", rnd, t0, t1, "ok", view.seq(), hexsum(view.data(), view.nbytes()),
                  true, "", std::nullopt, view_->reply_fields());
        }
        if (rnd == 1 && a_.create && (a_.wrong_shape || a_.wrong_dtype)) {
          const sb::DType bd = a_.wrong_dtype ? wrong_dtype(dtype_) : dtype_;
          const sb::Shape bs = a_.wrong_shape ? wrong_shape(shape_) : shape_;
          send(rnd, pattern(bd, bs, static_cast<std::uint64_t>(rnd), seed), bd, bs, true, res, ec);
        }
        point("before", "send", rnd);
        if (!send(rnd, data, dtype_, shape_, false, res, ec)) fail(res, ec);
        point("after", "send", rnd);
        if (rnd == 1 && a_.out_of_turn == std::optional<std::string>("send"))
          send(rnd, data, dtype_, shape_, true, res, ec);
      }
      point("before", "receive", rnd);
      std::int64_t t0, t1;
      res = call(
          "receive", rnd, [&] { req_->receive(reply.data(), dtype_, shape_); }, t0, t1, false, &ec);
      if (res == "ok") {
        const bool good = verify(data, reply);
        event("receive", rnd, t0, t1, "ok", req_->seq(), hexsum(reply.data(), reply.size()), false,
              "", good, view_->reply_fields());
        ++rounds_ok_;
        verified_ += good;
        mismatches_ += !good;
        point("after", "receive", rnd);
        ++rnd;
        data = pattern(dtype_, shape_, static_cast<std::uint64_t>(rnd), seed);
        need_send = true;
        gone_since = -1;
        retries = 0;
        continue;
      }
      if (res == "TIMEOUT" && a_.retry_after_timeout && retries < 100) {
        ++retries;
        if (rnd < a_.rounds) {
          std::vector<unsigned char> nxt =
              pattern(dtype_, shape_, static_cast<std::uint64_t>(rnd + 1), seed);
          std::string r2;
          int ec2 = kExitInternal;
          if (send(rnd + 1, nxt, dtype_, shape_, false, r2, ec2)) {
            ++rnd;  // the old round is abandoned (cancelled, or its late reply dropped)
            data = nxt;
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
          need_send = !req_->pending().has_value();
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
      std::int64_t t0, t1;
      if (nr == 1 && a_.out_of_turn == std::optional<std::string>("reply") && gone_since < 0)
        if (call("reply", nr, [&] { rsp_->reply(); }, t0, t1, true) == "ok")
          event("reply", nr, t0, t1, "ok", std::nullopt, std::nullopt, true);
      point("before", "take", nr);
      if (a_.op == "fail") serve_failing(nr, ec);
      std::optional<sb::Request> req;
      std::string res = call("take", nr, [&] { req.emplace(rsp_->take()); }, t0, t1, false, &ec);
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
      event("take", rnd, t0, t1, "ok", req->seq(), hexsum(req->data(), req->nbytes()));
      point("after", "take", rnd);
      if (rnd == 1 && a_.out_of_turn == std::optional<std::string>("take")) {
        std::int64_t u0, u1;
        std::optional<sb::Request> extra;
        if (call(
                "take", rnd, [&] { extra.emplace(rsp_->take(std::chrono::nanoseconds::zero())); },
                u0, u1, true) == "ok")
          event("take", rnd, u0, u1, "ok", extra->seq(), std::nullopt, true);
      }
      apply_op(a_.op, dtype_, req->data(), req->nbytes());
      point("before", "reply", rnd);
      const std::string cs = hexsum(req->data(), req->nbytes());
      res = call("reply", rnd, [&] { req->reply(); }, t0, t1, false, &ec);
      if (res != "ok") fail(res, ec);
      event("reply", rnd, t0, t1, "ok", req->seq(), cs);
      ++rounds_ok_;
      ++verified_;
      point("after", "reply", rnd);
    }
  }

  // --op fail: the library's handler path (Responder::serve) with a handler that throws a
  // non-shmbridge exception: the library answers with reply_code HANDLER_FAILED (R-MSG-3) and
  // rethrows; logged as a `reply` whose result is HANDLER_FAILED. Ends the peer.
  [[noreturn]] void serve_failing(long rnd, int& ec) {
    std::int64_t t0 = now_ns();
    std::optional<long long> seq;
    bool taken = false;
    try {
      rsp_->serve([&](sb::Request& r) {
        taken = true;
        seq = r.seq();
        event("take", rnd, t0, now_ns(), "ok", r.seq(), hexsum(r.data(), r.nbytes()));
        point("after", "take", rnd);
        point("before", "reply", rnd);
        t0 = now_ns();
        throw std::runtime_error("--op fail: the handler failed on purpose");
      });
    } catch (const sb::Error& e) {
      event(taken ? "reply" : "take", rnd, t0, now_ns(), e.name(), std::nullopt, std::nullopt,
            false, e.what());
      fail(e.name(), e.exit_code());
    } catch (const std::runtime_error& e) {
      const sb::Error hf(sb::ErrorCode::HANDLER_FAILED,
                         std::string("the handler of request #") + std::to_string(seq.value_or(0)) +
                             " failed: " + e.what() +
                             "; the library answered it with reply_code HANDLER_FAILED (R-MSG-3)");
      event("reply", rnd, t0, now_ns(), hf.name(), seq, std::nullopt, false, hf.what());
      ec = hf.exit_code();
      fail(hf.name(), ec);
    }
    // serve() returned: the requester closed before sending (R-LIVE-4)
    event("take", rnd, t0, now_ns(), "PEER_GONE", std::nullopt, std::nullopt, false,
          "PEER_GONE: the requester closed before sending a request for --op fail");
    fail("PEER_GONE", sb::exit_code(sb::ErrorCode::PEER_GONE));
  }

  void close() {
    sb::Handle* h = handle();
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
  std::optional<sb::Requester> req_;
  std::optional<sb::Responder> rsp_;
  std::optional<HeaderView> view_;  // opened after create/attach (PEER.md §2 header fields)
  sb::DType dtype_ = sb::DType::float32;
  sb::Shape shape_;
  std::uint64_t nbytes_ = 0;
  long rounds_ok_ = 0, verified_ = 0, mismatches_ = 0;
  bool corrupted_ = false;
};

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
