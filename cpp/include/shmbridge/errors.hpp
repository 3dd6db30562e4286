// Error taxonomy of the shmbridge protocol (spec/PROTOCOL.md §8, spec/errors.json).
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

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

// R-LIVE-5: why a PEER_GONE peer is gone. `none` on every error whose code is not PEER_GONE.
enum class PeerGoneReason : std::uint8_t {
  none = 0,
  closed = 1,  // the peer detached cleanly (its slot CLOSED with pid 0, or R-CLOSE-2's reply)
  died = 2,    // the peer's process is gone without closing (or R-REC-2 completed its round)
};
// "NONE", "CLOSED", "DIED" (the names of the peers' event log, spec/PEER.md §2).
const char* peer_gone_reason_name(PeerGoneReason reason) noexcept;

// R-ERR-2: every error carries its code, its name and a message saying what was expected, what was
// found and what to do.
class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message);
  ErrorCode code() const noexcept { return code_; }
  const char* name() const noexcept { return error_name(code_); }
  int exit_code() const noexcept { return shmbridge::exit_code(code_); }
  // R-LIVE-5: set on PEER_GONE (closed or died), none otherwise.
  PeerGoneReason peer_gone_reason() const noexcept { return reason_; }
  // R-MSG-5: the reply_code of the reply this error was raised from (after T4); empty for an
  // error that did not come from a reply (a timeout, a withdrawn request, a local check, ...).
  const std::optional<std::uint32_t>& reply_code() const noexcept { return reply_code_; }
  // R-FIELD-7 (v2): the field the error concerns, as the caller gave it; empty when it names none
  // (every v1 error, header validation, and every error raised from a reply_code).
  const std::string& field() const noexcept { return field_; }

  Error& set_peer_gone_reason(PeerGoneReason reason) noexcept {
    reason_ = reason;
    return *this;
  }
  Error& set_reply_code(std::uint32_t reply_code) noexcept {
    reply_code_ = reply_code;
    return *this;
  }
  Error& set_field(std::string field) noexcept {
    field_ = std::move(field);
    return *this;
  }

 private:
  ErrorCode code_;
  PeerGoneReason reason_ = PeerGoneReason::none;
  std::optional<std::uint32_t> reply_code_;
  std::string field_;
};

// Builds "NAME: expected <expected>, found <found>; <todo>".
[[noreturn]] void raise(ErrorCode code, const std::string& expected, const std::string& found,
                        const std::string& todo);
// R-FIELD-7: the same for an error that names a field: "NAME: field 'f': expected ..., found ...;
// <todo>", with Error::field() = `field`.
[[noreturn]] void raise_field(ErrorCode code, const std::string& field, const std::string& expected,
                              const std::string& found, const std::string& todo);

}  // namespace shmbridge
