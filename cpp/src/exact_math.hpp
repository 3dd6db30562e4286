// Exact unsigned arithmetic for the layout checks (R-LAYOUT-5, PROTOCOL.md Part II "exact
// arithmetic"): a value above 2^64 - 1 never equals a stored u64, so sums and products must not
// wrap. Internal to the library (not installed).
#pragma once

#include <cstdint>

namespace shmbridge::detail {

// True if a + b (a * b) does not fit 64 bits; *r is the wrapped result.
inline bool add_overflow(std::uint64_t a, std::uint64_t b, std::uint64_t* r) noexcept {
#if defined(_MSC_VER) && !defined(__clang__)
  *r = a + b;
  return *r < a;
#else
  return __builtin_add_overflow(a, b, r);
#endif
}
inline bool mul_overflow(std::uint64_t a, std::uint64_t b, std::uint64_t* r) noexcept {
#if defined(_MSC_VER) && !defined(__clang__)
  *r = a * b;
  return a != 0 && *r / a != b;
#else
  return __builtin_mul_overflow(a, b, r);
#endif
}

// A non-negative integer below 2^128: the positions and sizes of R-SCHEMA-7 are sums of at most
// 33 values below 2^64 (each rounded up to 64), so they are exact here, and a comparison with a
// stored u64 is exact too (a value >= 2^64 never equals one).
struct Wide {
  std::uint64_t hi = 0;
  std::uint64_t lo = 0;

  static Wide of(std::uint64_t v) noexcept { return Wide{0, v}; }
  bool fits() const noexcept { return hi == 0; }
  bool equals(std::uint64_t v) const noexcept { return hi == 0 && lo == v; }

  friend Wide operator+(Wide a, Wide b) noexcept {
    Wide r{a.hi + b.hi, 0};
    if (add_overflow(a.lo, b.lo, &r.lo)) ++r.hi;
    return r;
  }
  friend Wide operator+(Wide a, std::uint64_t b) noexcept { return a + of(b); }
  // a - b for a >= b.
  friend Wide operator-(Wide a, Wide b) noexcept {
    Wide r{a.hi - b.hi, a.lo - b.lo};
    if (a.lo < b.lo) --r.hi;
    return r;
  }
  // The smallest multiple of 64 that is >= a.
  friend Wide align64(Wide a) noexcept {
    const std::uint64_t rest = a.lo & 63;
    return rest == 0 ? a : a + (64 - rest);
  }
  friend bool operator==(Wide a, Wide b) noexcept { return a.hi == b.hi && a.lo == b.lo; }
  friend bool operator!=(Wide a, Wide b) noexcept { return !(a == b); }
};

}  // namespace shmbridge::detail
