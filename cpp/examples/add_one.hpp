// The examples' and the benchmark's handler kernel: `x += value` over a float32 array, run with
// the widest vector unit the CPU has, chosen once at run time (as numpy dispatches its loops).
//
// Why (bench/README.md, "The C++ responder's add"): a responder adds to data the other core has
// just written, so every cache line comes from the other core. A loop compiled for baseline
// x86-64 (SSE2) needs four 16-byte loads and stores per 64-byte line and was 1.3-1.5x slower on
// such data than the same loop with AVX2 or AVX-512 (one or two per line), while on data already
// in the own cache all three ran at the same speed. A binary built with -march=native gets the
// wide loop too, but only runs on CPUs like the build machine's; this header keeps one portable
// binary.
//
// GCC and Clang on x86: three versions (AVX-512F, AVX2, baseline), written with vector
// extensions so that they do not depend on the optimisation level's auto-vectoriser, selected by
// CPUID/XGETBV at the first call. Elsewhere (MSVC, ARM, where the baseline already has
// the vector unit the compiler uses): the plain loop.
#pragma once

#include <cstddef>
#include <cstring>
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#endif

namespace shmbridge_examples {

namespace add_detail {

inline void add_plain(float* p, std::size_t n, float value) {
  for (std::size_t i = 0; i < n; ++i) p[i] += value;
}

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define SHMBRIDGE_EXAMPLES_ADD_DISPATCH 1

// One version per vector width: `Lanes` floats per vector, loads and stores by memcpy (no
// alignment assumed), the tail by the plain loop.
#define SHMBRIDGE_EXAMPLES_ADD_VERSION(name, target_attr, lanes)           \
  target_attr inline void name(float* p, std::size_t n, float value) {     \
    typedef float vec __attribute__((vector_size(lanes * sizeof(float)))); \
    vec add;                                                               \
    for (int k = 0; k < lanes; ++k) add[k] = value;                        \
    std::size_t i = 0;                                                     \
    for (; i + lanes <= n; i += lanes) {                                   \
      vec x;                                                               \
      std::memcpy(&x, p + i, sizeof x);                                    \
      x += add;                                                            \
      std::memcpy(p + i, &x, sizeof x);                                    \
    }                                                                      \
    for (; i < n; ++i) p[i] += value;                                      \
  }

SHMBRIDGE_EXAMPLES_ADD_VERSION(add_avx512, __attribute__((target("avx512f"))), 16)
SHMBRIDGE_EXAMPLES_ADD_VERSION(add_avx2, __attribute__((target("avx2"))), 8)
SHMBRIDGE_EXAMPLES_ADD_VERSION(add_baseline, , 4)
#undef SHMBRIDGE_EXAMPLES_ADD_VERSION

using AddFn = void (*)(float*, std::size_t, float);

// What the CPU has and the OS saves across context switches (CPUID and XGETBV, as numpy's
// dispatch checks): __builtin_cpu_supports would need a runtime library that not every
// toolchain ships (zig's has no __cpu_model for macOS).
inline bool os_saves(unsigned xcr0_bits) {
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  (void)hi;
  return (lo & xcr0_bits) == xcr0_bits;
}

inline bool has_avx2() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool osxsave = (c >> 27) & 1u, avx = (c >> 28) & 1u;
  if (!osxsave || !avx || !os_saves(0x6u)) return false;  // XMM and YMM state
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return (b >> 5) & 1u;
}

inline bool has_avx512f() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!has_avx2() || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return ((b >> 16) & 1u) && os_saves(0xE6u);  // + opmask, ZMM0-15 upper halves, ZMM16-31
}

inline AddFn select_add() {
  if (has_avx512f()) return add_avx512;
  if (has_avx2()) return add_avx2;
  return add_baseline;
}
#endif

}  // namespace add_detail

// The name of the version add_in_place runs on this CPU ("avx512f", "avx2", "baseline", or
// "plain" where there is no dispatch).
inline const char* add_in_place_isa() {
#if defined(SHMBRIDGE_EXAMPLES_ADD_DISPATCH)
  const add_detail::AddFn fn = add_detail::select_add();
  return fn == add_detail::add_avx512 ? "avx512f"
         : fn == add_detail::add_avx2 ? "avx2"
                                      : "baseline";
#else
  return "plain";
#endif
}

// p[i] += value for i < n.
inline void add_in_place(float* p, std::size_t n, float value) {
#if defined(SHMBRIDGE_EXAMPLES_ADD_DISPATCH)
  static const add_detail::AddFn fn = add_detail::select_add();
  fn(p, n, value);
#else
  add_detail::add_plain(p, n, value);
#endif
}

}  // namespace shmbridge_examples
