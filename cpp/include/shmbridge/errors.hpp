// Error taxonomy of the shmbridge protocol (spec/PROTOCOL.md §8, spec/errors.json).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace shmbridge {

// R-ERR-1: names and numeric codes are exactly those of spec/errors.json.
enum class ErrorCode : std::uint32_t {
  ok = 0,  // not an error: reply_code of a successful reply
  SEGMENT_NOT_FOUND = 1,
  ALREADY_EXISTS = 2,
  SHAPE_MISMATCH = 3,
  DTYPE_MISMATCH = 4,
  CAPACITY_EXCEEDED = 5,
  TIMEOUT = 6,
  PEER_GONE = 7,
  OUT_OF_TURN = 8,
  VERSION_MISMATCH = 9,
  CORRUPT_HEADER = 10,
  INVALID_NAME = 11,
  PERMISSION_DENIED = 12,
  ROLE_TAKEN = 13,
  PROTOCOL_VIOLATION = 14,
  STALE_SEGMENT = 15,
  INVALID_ARGUMENT = 16,
  OS_ERROR = 17,
  HANDLER_FAILED = 18,   // R-MSG-3
  SCHEMA_MISMATCH = 19,  // protocol v2 (PROTOCOL.md Part II)
};

inline constexpr std::uint32_t kMaxErrorCode = 19;

// "SEGMENT_NOT_FOUND" etc.; "OK" for ErrorCode::ok; "UNKNOWN" for anything else.
const char* error_name(ErrorCode code) noexcept;
// Process exit code of a command-line peer failing with `code` (R-ERR-1); 0 for ok, 1 if unknown.
int exit_code(ErrorCode code) noexcept;
// One-line meaning from the spec table.
const char* error_meaning(ErrorCode code) noexcept;
// Parses an error name; returns false if unknown.
bool error_from_name(const std::string& name, ErrorCode& out) noexcept;
// True for the codes 1..kMaxErrorCode.
bool is_error_code(std::uint32_t value) noexcept;

// R-ERR-2: every error carries its code, its name and a message saying what was expected, what was
// found and what to do.
class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message);
  ErrorCode code() const noexcept { return code_; }
  const char* name() const noexcept { return error_name(code_); }
  int exit_code() const noexcept { return shmbridge::exit_code(code_); }

 private:
  ErrorCode code_;
};

// Builds "NAME: expected <expected>, found <found>; <todo>".
[[noreturn]] void raise(ErrorCode code, const std::string& expected, const std::string& found,
                        const std::string& todo);

}  // namespace shmbridge
