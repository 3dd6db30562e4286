// The command line of the requester examples (shared_memory_example, camera_requester):
//   [--rounds N] [--timeout SEC] [--name NAME] [--quiet] [--every N]
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

struct RequesterArgs {
  long rounds = 10;
  double timeout = 5.0;
  std::string name;
  bool quiet = false;
  long every = 100;  // with --quiet, print every Nth round
};

// Parses argv into `a` (whose name is the default); prints the usage line and returns false on a
// usage error (exit 2).
inline bool parse_requester_args(int argc, char** argv, RequesterArgs& a) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (arg == "--quiet") {
      a.quiet = true;
      continue;
    }
    if (arg == "--rounds" && (v = value()) && (a.rounds = std::strtol(v, nullptr, 10)) > 0)
      continue;
    if (arg == "--timeout" && (v = value()) && (a.timeout = std::strtod(v, nullptr)) >= 0) continue;
    if (arg == "--every" && (v = value()) && (a.every = std::strtol(v, nullptr, 10)) > 0) continue;
    if (arg == "--name" && (v = value())) {
      a.name = v;
      continue;
    }
    std::fprintf(stderr,
                 "usage: %s [--rounds N] [--timeout SEC] [--name NAME] [--quiet] [--every N]\n",
                 argv[0]);
    return false;
  }
  return true;
}
