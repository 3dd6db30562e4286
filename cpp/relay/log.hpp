// The relay's JSON-lines log (spec/RELAY.md R-RELAY-19, §10 "Log events"): one object per line,
// flushed per line, {"event": ..., "end": "near"|"far", "t": monotonic ns, ...}, and the
// counters the `stats` event reports. Mirrors Log in python/shmbridge/relay/link.py.
#pragma once

#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

namespace shmbridge::relay {

// One "key": value pair of an event (nlohmann's JSON writes and escapes it).
struct Field {
  const char* key;
  nlohmann::ordered_json value;
};
Field num(const char* key, std::uint64_t v);
Field str(const char* key, const std::string& v);

class Log {
 public:
  // out: a file opened for append, stdout, or nullptr (no log).
  Log(const char* end, std::FILE* out) : end_(end), out_(out) {}
  void event(const char* event, std::initializer_list<Field> fields = {});
  void count(const char* key, std::uint64_t n = 1) { stats_[key] += n; }
  void stats();                              // the `stats` event: every counter
  void warn(const std::string& text) const;  // one line on stderr
  const char* end() const noexcept { return end_; }

 private:
  const char* end_;
  std::FILE* out_;
  std::map<std::string, std::uint64_t> stats_;
};

std::uint64_t monotonic_ns();

}  // namespace shmbridge::relay
