// Segment names (spec/PROTOCOL.md §2, R-NAME-1, R-NAME-2).
#pragma once

#include <string>
#include <string_view>

namespace shmbridge {

inline constexpr std::size_t kMaxNameLength = 30;

// R-NAME-1: returns the canonical name (one leading '/' removed) or throws INVALID_NAME.
std::string normalize_name(std::string_view name);
// True if `name` is acceptable (after removing one leading '/').
bool is_valid_name(std::string_view name) noexcept;
// R-NAME-2: the OS object names for a canonical name N.
std::string posix_shm_name(const std::string& canonical);                    // "/N"
std::string win32_mapping_name(const std::string& canonical);                // "Local\\N"
std::string win32_event_name(const std::string& canonical, bool requester);  // "Local\\N.req"/.rsp

}  // namespace shmbridge
