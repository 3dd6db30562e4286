// shmbridge-relay near|far: the C++ relay ends (spec/RELAY.md R-RELAY-19), with the flags, log
// events and exit codes of `python -m shmbridge relay near|far`. keygen stays in Python
// (R-RELAY-18): this program reads the certificate files it writes.
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "far.hpp"
#include "link.hpp"
#include "log.hpp"
#include "near.hpp"
#include "shmbridge/errors.hpp"

namespace sr = shmbridge::relay;
namespace sb = shmbridge;

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

struct UsageError {
  std::string what;
};

const char* const kUsage =
    "usage: shmbridge-relay near NAME --connect ENDPOINT [--round-timeout S] [--min-rate-mib R]\n"
    "                             [--curve-server FILE] [common flags]\n"
    "       shmbridge-relay far NAME --bind ENDPOINT [--curve-clients DIR] [common flags]\n"
    "common flags: [--create [--dtype D --shape S | --request-schema SPEC --reply-schema SPEC]]\n"
    "              [--protocol 1|2] [--heartbeat-ms MS] [--heartbeat-misses N] [--allow-remote]\n"
    "              [--curve-secret FILE] [--log FILE|-] [--spin-us US]\n"
    "(spec/RELAY.md R-RELAY-19; keygen: python -m shmbridge relay keygen PREFIX)\n";

struct Args {
  std::string end, name;
  std::map<std::string, std::string> values;  // --flag value
  bool create = false, allow_remote = false;
  std::optional<std::string> get(const std::string& k) const {
    auto it = values.find(k);
    if (it == values.end()) return std::nullopt;
    return it->second;
  }
};

Args parse(int argc, char** argv) {
  Args a;
  if (argc < 2) throw UsageError{"give near or far"};
  a.end = argv[1];
  if (a.end != "near" && a.end != "far") throw UsageError{"unknown end '" + a.end + "'"};
  const std::vector<std::string> common = {
      "--dtype",    "--shape",        "--request-schema",   "--reply-schema",
      "--protocol", "--heartbeat-ms", "--heartbeat-misses", "--curve-secret",
      "--log",      "--spin-us"};
  std::vector<std::string> valued = common;
  if (a.end == "near") {
    valued.insert(valued.end(),
                  {"--connect", "--round-timeout", "--min-rate-mib", "--curve-server"});
  } else {
    valued.insert(valued.end(), {"--bind", "--curve-clients"});
  }
  for (int i = 2; i < argc; ++i) {
    std::string k = argv[i];
    if (k == "-h" || k == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (k == "--create") {
      a.create = true;
      continue;
    }
    if (k == "--allow-remote") {
      a.allow_remote = true;
      continue;
    }
    std::string v;
    bool has_value = false;
    if (const auto eq = k.find('='); k.rfind("--", 0) == 0 && eq != std::string::npos) {
      v = k.substr(eq + 1);
      k = k.substr(0, eq);
      has_value = true;
    }
    if (k.rfind("--", 0) != 0) {
      if (!a.name.empty()) throw UsageError{"unexpected argument '" + k + "'"};
      a.name = k;
      continue;
    }
    bool known = false;
    for (const auto& f : valued) known = known || f == k;
    if (!known) throw UsageError{"unknown flag " + k + " for the " + a.end + " end"};
    if (!has_value) {
      if (i + 1 >= argc) throw UsageError{k + " needs a value"};
      v = argv[++i];
    }
    a.values[k] = v;
  }
  if (a.name.empty()) throw UsageError{"give the local segment name"};
  const char* need = a.end == "near" ? "--connect" : "--bind";
  if (!a.get(need)) throw UsageError{std::string("the ") + a.end + " end needs " + need};
  if (auto p = a.get("--protocol"); p && *p != "1" && *p != "2") {
    throw UsageError{"--protocol must be 1 or 2, found '" + *p + "'"};
  }
  return a;
}

double number(const Args& a, const char* flag, double dflt) {
  const auto v = a.get(flag);
  if (!v) return dflt;
  char* end = nullptr;
  errno = 0;
  const double d = std::strtod(v->c_str(), &end);
  if (v->empty() || *end != '\0' || errno != 0) {
    throw UsageError{std::string(flag) + ": expected a number, found '" + *v + "'"};
  }
  return d;
}

[[noreturn]] void invalid(const std::string& what) {
  throw sb::Error(sb::ErrorCode::INVALID_ARGUMENT, "INVALID_ARGUMENT: " + what);
}

sb::Shape parse_shape(const std::string& text) {
  std::string t = text;
  if (t.empty() || t == "()" || t == "scalar") return sb::Shape();
  if (t.front() == '(') t = t.substr(1);
  if (!t.empty() && t.back() == ')') t.pop_back();
  std::vector<std::uint64_t> dims;
  std::size_t pos = 0;
  while (pos <= t.size()) {
    const std::size_t comma = t.find(',', pos);
    std::string item = t.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (!item.empty()) {
      if (item.find_first_not_of("0123456789") != std::string::npos || item.size() > 19) {
        invalid("bad --shape '" + text + "': expected comma-separated extents >= 0");
      }
      dims.push_back(std::stoull(item));
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  if (dims.size() > 8) invalid("bad --shape '" + text + "': at most 8 extents");
  return sb::Shape(dims);
}

// Runs an end until SIGTERM/SIGINT; its segment handle and socket are closed whatever ends it.
template <class Relay, class Config>
void run_end(Config cfg, sr::Log& log) {
  Relay relay(std::move(cfg), log);
  try {
    relay.run(g_stop);
  } catch (...) {
    relay.close();
    throw;
  }
  relay.close();
}

struct Decl {
  std::optional<std::pair<sb::DType, sb::Shape>> v1;
  std::optional<std::pair<sb::Schema, sb::Schema>> v2;
};

// --dtype/--shape (v1) or the two schemas (v2), as the Python CLI checks them.
Decl declaration(const Args& a) {
  const bool v1 = a.get("--dtype") || a.get("--shape");
  const bool v2 = a.get("--request-schema") || a.get("--reply-schema");
  if ((v1 || v2) && !a.create) {
    invalid("--dtype/--shape/--*-schema declare a segment: give --create too");
  }
  if (v1 && v2) invalid("give either --dtype/--shape (v1) or the two schemas (v2), not both");
  Decl d;
  if (v1) {
    if (!a.get("--dtype") || !a.get("--shape"))
      invalid("a v1 --create needs both --dtype and --shape");
    sb::DType dt{};
    if (!sb::dtype_from_name(*a.get("--dtype"), dt)) {
      throw sb::Error(sb::ErrorCode::DTYPE_MISMATCH,
                      "DTYPE_MISMATCH: unsupported dtype '" + *a.get("--dtype") +
                          "': expected one of spec/dtypes.json (e.g. float32)");
    }
    d.v1.emplace(dt, parse_shape(*a.get("--shape")));
  } else if (v2) {
    if (!a.get("--request-schema") || !a.get("--reply-schema")) {
      invalid("a v2 --create needs --request-schema and --reply-schema");
    }
    d.v2.emplace(sb::Schema::parse(*a.get("--request-schema")),
                 sb::Schema::parse(*a.get("--reply-schema")));
  }
  return d;
}

int run(const Args& a) {
  const std::string endpoint = *a.get(a.end == "near" ? "--connect" : "--bind");
  sr::check_endpoint(endpoint, a.allow_remote, a.end == "near" ? "--connect" : "--bind");
  const double hb_ms = number(a, "--heartbeat-ms", 200.0);
  const double misses = number(a, "--heartbeat-misses", 3);
  if (!(hb_ms > 0) || misses < 1 || misses != static_cast<int>(misses)) {
    invalid("--heartbeat-ms must be > 0 and --heartbeat-misses an integer >= 1");
  }
  const double min_rate = number(a, "--min-rate-mib", 4.0);
  if (a.end == "near" && !(min_rate > 0)) {
    invalid("--min-rate-mib must be > 0 (MiB/s), found " + *a.get("--min-rate-mib"));
  }
  const auto curve =
      sr::load_curve(a.get("--curve-secret"), a.get("--curve-server"), a.get("--curve-clients"));
  if (a.end == "near" && curve && !curve->server_public) {
    invalid("the near end's CURVE needs --curve-server (the far end's key)");
  }
  const std::string log_path = a.get("--log").value_or("-");
  std::FILE* out = log_path == "-" ? stdout : std::fopen(log_path.c_str(), "a");
  if (out == nullptr) invalid("--log '" + log_path + "' cannot be opened: " + std::strerror(errno));
  sr::Log log(a.end == "near" ? "near" : "far", out);
  if (sr::is_remote(endpoint) && !curve) {
    log.warn(endpoint +
             " leaves this host without CurveZMQ: the arrays travel in clear text "
             "(shmbridge relay keygen; --curve-secret/--curve-server)");
  }
  const Decl decl = declaration(a);
  const double spin_us = number(a, "--spin-us", 0.0);
  if (spin_us < 0) invalid("--spin-us must be >= 0");
  sb::Options opts;
  opts.spin = std::chrono::nanoseconds(static_cast<std::int64_t>(spin_us * 1000));
  const int protocol = a.get("--protocol") ? std::stoi(*a.get("--protocol")) : 0;

  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  int code = 0;
  try {
    if (a.end == "far") {
      sr::FarConfig cfg;
      cfg.name = a.name;
      cfg.bind = endpoint;
      cfg.create_v1 = decl.v1;
      cfg.create_v2 = decl.v2;
      cfg.protocol = protocol;
      cfg.heartbeat = hb_ms / 1000.0;
      cfg.misses = static_cast<int>(misses);
      cfg.curve = curve;
      cfg.options = opts;
      run_end<sr::FarRelay>(cfg, log);
    } else {
      sr::NearConfig cfg;
      cfg.name = a.name;
      cfg.connect = endpoint;
      cfg.create = a.create;
      cfg.create_v1 = decl.v1;
      cfg.create_v2 = decl.v2;
      cfg.protocol = protocol;
      cfg.heartbeat = hb_ms / 1000.0;
      cfg.misses = static_cast<int>(misses);
      if (auto rt = a.get("--round-timeout")) cfg.round_timeout = number(a, "--round-timeout", 0);
      cfg.curve = curve;
      cfg.options = opts;
      cfg.min_rate = min_rate * 1048576.0;
      run_end<sr::NearRelay>(cfg, log);
    }
  } catch (const sb::Error& e) {
    log.event("exit", {sr::str("error", e.name()), sr::str("message", e.what())});
    std::fprintf(stderr, "shmbridge relay %s: %s\n", a.end.c_str(), e.what());
    code = e.exit_code();
  } catch (const zmq::error_t& e) {
    log.event("exit", {sr::str("error", "OS_ERROR"), sr::str("message", e.what())});
    std::fprintf(stderr, "shmbridge relay %s: OS_ERROR: %s (endpoint %s)\n", a.end.c_str(),
                 e.what(), endpoint.c_str());
    code = sb::exit_code(sb::ErrorCode::OS_ERROR);
  }
  log.stats();
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  try {
    a = parse(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%sshmbridge-relay: error: %s\n", kUsage, e.what.c_str());
    return 2;
  }
  try {
    return run(a);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%sshmbridge-relay: error: %s\n", kUsage, e.what.c_str());
    return 2;
  } catch (const sb::Error& e) {
    std::fprintf(stderr, "shmbridge relay %s: %s\n", a.end.c_str(), e.what());
    return e.exit_code();
  }
}
