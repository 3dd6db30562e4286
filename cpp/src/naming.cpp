#include "shmbridge/naming.hpp"

#include "shmbridge/errors.hpp"

namespace shmbridge {
namespace {

bool allowed(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

std::string_view strip(std::string_view name) noexcept {
  if (!name.empty() && name.front() == '/') name.remove_prefix(1);
  return name;
}

}  // namespace

bool is_valid_name(std::string_view name) noexcept {
  name = strip(name);
  if (name.empty() || name.size() > kMaxNameLength) return false;
  if (name.front() == '.' || name.front() == '-') return false;
  for (char c : name) {
    if (!allowed(c)) return false;
  }
  return true;
}

std::string normalize_name(std::string_view name) {
  if (!is_valid_name(name)) {
    std::string shown;
    for (char c : name) {
      if (c >= 0x20 && c < 0x7f) {
        shown += c;
      } else {
        shown += "\\x";
        const char* hex = "0123456789abcdef";
        shown += hex[(static_cast<unsigned char>(c) >> 4) & 0xf];
        shown += hex[static_cast<unsigned char>(c) & 0xf];
      }
    }
    raise(ErrorCode::INVALID_NAME,
          "1 to 30 characters from [A-Za-z0-9_.-], not starting with '.' or '-' (one leading '/' "
          "is ignored)",
          "\"" + shown + "\" (" + std::to_string(name.size()) + " characters)",
          "choose a name such as \"SimpleShm\"");
  }
  return std::string(strip(name));
}

std::string posix_shm_name(const std::string& canonical) { return "/" + canonical; }
std::string win32_mapping_name(const std::string& canonical) { return "Local\\" + canonical; }
std::string win32_event_name(const std::string& canonical, bool requester) {
  return "Local\\" + canonical + (requester ? ".req" : ".rsp");
}

}  // namespace shmbridge
