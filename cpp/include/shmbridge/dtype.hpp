// dtype codes (spec/PROTOCOL.md §3.2, spec/dtypes.json, R-DTYPE-1).
#pragma once

#include <complex>
#include <cstddef>
#include <cstdint>
#include <string>

namespace shmbridge {

enum class DType : std::uint32_t {
  bool_ = 1,
  int8 = 2,
  uint8 = 3,
  int16 = 4,
  uint16 = 5,
  int32 = 6,
  uint32 = 7,
  int64 = 8,
  uint64 = 9,
  float16 = 10,
  float32 = 11,
  float64 = 12,
  complex64 = 13,
  complex128 = 14,
};

inline constexpr std::uint32_t kMaxDTypeCode = 14;

// True for the codes 1..14 (R-DTYPE-1).
constexpr bool is_dtype_code(std::uint32_t code) noexcept {
  return code >= 1 && code <= kMaxDTypeCode;
}
// Bytes per element; 0 for an unknown code.
std::size_t itemsize(DType dtype) noexcept;
// numpy name ("float32"); "unknown" for an unknown code.
const char* dtype_name(DType dtype) noexcept;
// Parses a numpy name; returns false if unknown.
bool dtype_from_name(const std::string& name, DType& out) noexcept;

// C++ type → dtype code, for the typed overloads of the channel.
template <class T>
struct dtype_of;
#define SHMBRIDGE_DTYPE_OF(T, D)             \
  template <>                                \
  struct dtype_of<T> {                       \
    static constexpr DType value = DType::D; \
  };
SHMBRIDGE_DTYPE_OF(bool, bool_)
SHMBRIDGE_DTYPE_OF(std::int8_t, int8)
SHMBRIDGE_DTYPE_OF(std::uint8_t, uint8)
SHMBRIDGE_DTYPE_OF(std::int16_t, int16)
SHMBRIDGE_DTYPE_OF(std::uint16_t, uint16)
SHMBRIDGE_DTYPE_OF(std::int32_t, int32)
SHMBRIDGE_DTYPE_OF(std::uint32_t, uint32)
SHMBRIDGE_DTYPE_OF(std::int64_t, int64)
SHMBRIDGE_DTYPE_OF(std::uint64_t, uint64)
SHMBRIDGE_DTYPE_OF(float, float32)
SHMBRIDGE_DTYPE_OF(double, float64)
SHMBRIDGE_DTYPE_OF(std::complex<float>, complex64)
SHMBRIDGE_DTYPE_OF(std::complex<double>, complex128)
#undef SHMBRIDGE_DTYPE_OF

template <class T>
inline constexpr DType dtype_of_v = dtype_of<T>::value;

}  // namespace shmbridge
