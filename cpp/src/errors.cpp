#include "shmbridge/errors.hpp"

namespace shmbridge {
namespace {

struct Row {
  const char* name;
  int exit;
  const char* meaning;
};

// Index = code. Mirrors spec/errors.json; tests/test_errors.cpp compares the two.
constexpr Row kRows[] = {
    {"OK", 0, "success"},
    {"SEGMENT_NOT_FOUND", 10, "no segment with that name (start the creator first)"},
    {"ALREADY_EXISTS", 11, "the name is in use by a live creator"},
    {"SHAPE_MISMATCH", 12, "shape differs from the declared/expected shape"},
    {"DTYPE_MISMATCH", 13, "dtype differs from the declared/expected dtype, or is unsupported"},
    {"CAPACITY_EXCEEDED", 14, "the array does not fit the payload capacity"},
    {"TIMEOUT", 15, "a wait passed its deadline"},
    {"PEER_GONE", 16, "the other side died or closed"},
    {"OUT_OF_TURN", 17, "the operation is not allowed in the current phase"},
    {"VERSION_MISMATCH", 18, "unsupported protocol major version or host byte order"},
    {"CORRUPT_HEADER", 19, "the header fails validation"},
    {"INVALID_NAME", 20, "the segment name breaks R-NAME-1"},
    {"PERMISSION_DENIED", 21, "the OS refused access to the segment"},
    {"ROLE_TAKEN", 22, "a live process already holds this role"},
    {"PROTOCOL_VIOLATION", 23, "the word holds a value no legal transition produces"},
    {"STALE_SEGMENT", 24, "a dead creator left the segment and reclaiming is off"},
    {"INVALID_ARGUMENT", 25, "a caller argument is invalid (e.g. negative timeout)"},
    {"OS_ERROR", 26, "any other operating-system failure (errno in the message)"},
    {"HANDLER_FAILED", 27, "the responder's handler failed with a non-shmbridge error (R-MSG-3)"},
    {"SCHEMA_MISMATCH", 28,
     "the fields given or expected differ from the schema: names, count or in-place storage (v2)"},
};

std::string format(ErrorCode code, const std::string& message) {
  return std::string(error_name(code)) + ": " + message;
}

}  // namespace

bool is_error_code(std::uint32_t value) noexcept { return value >= 1 && value <= kMaxErrorCode; }

const char* error_name(ErrorCode code) noexcept {
  auto v = static_cast<std::uint32_t>(code);
  return v <= kMaxErrorCode ? kRows[v].name : "UNKNOWN";
}

int exit_code(ErrorCode code) noexcept {
  auto v = static_cast<std::uint32_t>(code);
  return v <= kMaxErrorCode ? kRows[v].exit : 1;
}

const char* error_meaning(ErrorCode code) noexcept {
  auto v = static_cast<std::uint32_t>(code);
  return v <= kMaxErrorCode ? kRows[v].meaning : "unknown error code";
}

bool error_from_name(const std::string& name, ErrorCode& out) noexcept {
  for (std::uint32_t v = 1; v <= kMaxErrorCode; ++v) {
    if (name == kRows[v].name) {
      out = static_cast<ErrorCode>(v);
      return true;
    }
  }
  return false;
}

const char* peer_gone_reason_name(PeerGoneReason reason) noexcept {
  switch (reason) {
    case PeerGoneReason::closed:
      return "CLOSED";
    case PeerGoneReason::died:
      return "DIED";
    case PeerGoneReason::none:
      break;
  }
  return "NONE";
}

Error::Error(ErrorCode code, const std::string& message)
    : std::runtime_error(format(code, message)), code_(code) {}

void raise(ErrorCode code, const std::string& expected, const std::string& found,
           const std::string& todo) {
  throw Error(code, "expected " + expected + ", found " + found + "; " + todo);
}

void raise_field(ErrorCode code, const std::string& field, const std::string& expected,
                 const std::string& found, const std::string& todo) {
  throw Error(code,
              "field '" + field + "': expected " + expected + ", found " + found + "; " + todo)
      .set_field(field);
}

}  // namespace shmbridge
