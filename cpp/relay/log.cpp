#include "log.hpp"

#include <chrono>

namespace shmbridge::relay {
namespace {

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

}  // namespace

std::uint64_t monotonic_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

Field num(const char* key, std::uint64_t v) { return {key, std::to_string(v)}; }
Field str(const char* key, const std::string& v) { return {key, quote(v)}; }

void Log::event(const char* event, std::initializer_list<Field> fields) {
  if (out_ == nullptr) return;
  std::string line = "{\"event\": " + quote(event) + ", \"end\": " + quote(end_) +
                     ", \"t\": " + std::to_string(monotonic_ns());
  for (const Field& f : fields) line += std::string(", ") + quote(f.key) + ": " + f.json;
  line += "}\n";
  // A log that cannot be written must not stop the relay.
  if (std::fwrite(line.data(), 1, line.size(), out_) == line.size()) std::fflush(out_);
}

void Log::stats() {
  if (out_ == nullptr) return;
  std::string line = "{\"event\": \"stats\", \"end\": " + quote(end_) +
                     ", \"t\": " + std::to_string(monotonic_ns());
  for (const auto& [k, v] : stats_) line += ", " + quote(k) + ": " + std::to_string(v);
  line += "}\n";
  if (std::fwrite(line.data(), 1, line.size(), out_) == line.size()) std::fflush(out_);
}

void Log::warn(const std::string& text) const {
  std::fprintf(stderr, "shmbridge relay %s: %s\n", end_, text.c_str());
  std::fflush(stderr);
}

}  // namespace shmbridge::relay
