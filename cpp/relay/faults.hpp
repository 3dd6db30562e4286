// Test-only fault hook of the relay ends (spec/RELAY.md §12, not a user feature): with
// SHMBRIDGE_RELAY_CRASH_AT=POINT[@R] an end kills itself with SIGKILL the R-th time (default 1)
// it reaches POINT, after logging {"event": "crash", "point": ..., "hit": R}. Mirrors
// python/shmbridge/relay/faults.py (the same POINTS).
#pragma once

#include <string>

#include "log.hpp"

namespace shmbridge::relay {

class CrashPlan {
 public:
  // The plan of `end` ("near"/"far") from the environment; an unknown POINT or an R below 1 is
  // INVALID_ARGUMENT (thrown before any socket exists); another end's POINT leaves this end alone.
  static CrashPlan from_env(const char* end, Log& log);
  // Called at `point`: SIGKILL on the planned visit.
  void reached(const char* point);

 private:
  std::string point_;
  long at_ = 1;
  long hits_ = 0;
  Log* log_ = nullptr;
};

}  // namespace shmbridge::relay
