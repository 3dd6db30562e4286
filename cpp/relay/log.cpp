#include "log.hpp"

#include <chrono>

namespace shmbridge::relay {
namespace {

// One line, flushed: a log that cannot be written must not stop the relay.
void write_line(std::FILE* out, const nlohmann::ordered_json& j) {
  const std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  if (std::fwrite(line.data(), 1, line.size(), out) == line.size()) std::fflush(out);
}

nlohmann::ordered_json head(const char* event, const char* end) {
  nlohmann::ordered_json j;
  j["event"] = event;
  j["end"] = end;
  j["t"] = monotonic_ns();
  return j;
}

}  // namespace

std::uint64_t monotonic_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

Field num(const char* key, std::uint64_t v) { return {key, v}; }
Field str(const char* key, const std::string& v) { return {key, v}; }

void Log::event(const char* event, std::initializer_list<Field> fields) {
  if (out_ == nullptr) return;
  nlohmann::ordered_json j = head(event, end_);
  for (const Field& f : fields) j[f.key] = f.value;
  write_line(out_, j);
}

void Log::stats() {
  if (out_ == nullptr) return;
  nlohmann::ordered_json j = head("stats", end_);
  for (const auto& [k, v] : stats_) j[k] = v;
  write_line(out_, j);
}

void Log::warn(const std::string& text) const {
  std::fprintf(stderr, "shmbridge relay %s: %s\n", end_, text.c_str());
  std::fflush(stderr);
}

}  // namespace shmbridge::relay
