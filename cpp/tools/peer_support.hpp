// Support of shmbridge-peer (spec/PEER.md): exit codes, the clock, the JSON event log (§2), the
// data pattern, the ops and the checksum (§3). Header-only; included by peer.cpp only.
#pragma once

#include <chrono>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "shmbridge/dtype.hpp"
#include "shmbridge/errors.hpp"
#include "shmbridge/layout.hpp"

namespace peer {

namespace sb = shmbridge;

constexpr int kExitInternal = 1;
constexpr int kExitUsage = 2;
constexpr int kExitVerify = 3;
constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;

inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline void sleep_ms(double ms) {
  if (ms > 0) std::this_thread::sleep_for(std::chrono::microseconds(static_cast<long>(ms * 1000)));
}

struct UsageError {
  std::string what;
};

// ------------------------------------------------------------------------------ JSON output

inline std::string jstr(const std::string& s) {
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

inline void emit(const std::string& line) {
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

// ------------------------------------------------------------------------------ data (§3)

inline std::uint16_t float_to_half(float f) {
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

inline float half_to_float(std::uint16_t h) {
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

inline std::uint64_t count_of(const sb::Shape& shape) {
  std::uint64_t n = 1;
  if (!shape.element_count(n)) throw sb::Error(sb::ErrorCode::CAPACITY_EXCEEDED, "shape overflows");
  return n;
}

inline std::vector<unsigned char> pattern(sb::DType dt, const sb::Shape& shape, std::uint64_t rnd,
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

inline void apply_op(const std::string& op, sb::DType dt, void* p, std::uint64_t nbytes) {
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

inline std::uint64_t checksum(const void* p, std::uint64_t n) {
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

inline std::string hexsum(const void* p, std::uint64_t n) {
  char b[20];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(checksum(p, n)));
  return b;
}

inline sb::Shape wrong_shape(const sb::Shape& s) {
  std::vector<std::uint64_t> v = s.to_vector();
  if (v.empty()) return sb::Shape({1});
  v[0] += 1;
  return sb::Shape(v);
}

inline sb::DType wrong_dtype(sb::DType d) {
  return d == sb::DType::int32 ? sb::DType::float32 : sb::DType::int32;
}

}  // namespace peer
