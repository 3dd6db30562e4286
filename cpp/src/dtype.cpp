#include "shmbridge/dtype.hpp"

namespace shmbridge {
namespace {

struct Row {
  const char* name;
  std::size_t itemsize;
};

// Index = code. Mirrors spec/dtypes.json; tests/test_dtype.cpp compares the two.
constexpr Row kRows[] = {
    {"unknown", 0}, {"bool", 1},    {"int8", 1},    {"uint8", 1},     {"int16", 2},
    {"uint16", 2},  {"int32", 4},   {"uint32", 4},  {"int64", 8},     {"uint64", 8},
    {"float16", 2}, {"float32", 4}, {"float64", 8}, {"complex64", 8}, {"complex128", 16},
};

}  // namespace

std::size_t itemsize(DType dtype) noexcept {
  auto v = static_cast<std::uint32_t>(dtype);
  return is_dtype_code(v) ? kRows[v].itemsize : 0;
}

const char* dtype_name(DType dtype) noexcept {
  auto v = static_cast<std::uint32_t>(dtype);
  return is_dtype_code(v) ? kRows[v].name : "unknown";
}

bool dtype_from_name(const std::string& name, DType& out) noexcept {
  for (std::uint32_t v = 1; v <= kMaxDTypeCode; ++v) {
    if (name == kRows[v].name) {
      out = static_cast<DType>(v);
      return true;
    }
  }
  return false;
}

}  // namespace shmbridge
