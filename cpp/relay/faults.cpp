#include "faults.hpp"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>

#include "shmbridge/errors.hpp"

namespace shmbridge::relay {
namespace {

constexpr const char* kEnv = "SHMBRIDGE_RELAY_CRASH_AT";
// Every point, in the order a round reaches it (spec/RELAY.md §12).
constexpr const char* kPoints[] = {"near.taken",      "near.req_sent",    "near.rep_received",
                                   "near.replied",    "far.req_received", "far.sent",
                                   "far.reply_taken", "far.rep_sent"};

}  // namespace

CrashPlan CrashPlan::from_env(const char* end, Log& log) {
  CrashPlan plan;
  const char* raw = std::getenv(kEnv);
  std::string text = raw != nullptr ? raw : "";
  text.erase(0, text.find_first_not_of(" \t"));
  text.erase(text.find_last_not_of(" \t") + 1);
  if (text.empty()) return plan;
  const auto at = text.find('@');
  const std::string point = text.substr(0, at);
  bool known = false;
  std::string all;
  for (const char* p : kPoints) {
    known = known || point == p;
    all += std::string(all.empty() ? "" : ", ") + p;
  }
  if (!known) {
    throw Error(ErrorCode::INVALID_ARGUMENT, std::string("INVALID_ARGUMENT: ") + kEnv + "='" +
                                                 text + "': expected POINT[@R] with POINT one of " +
                                                 all + "; unset it (it is a test hook)");
  }
  long r = 1;
  if (at != std::string::npos) {
    const std::string rounds = text.substr(at + 1);
    char* stop = nullptr;
    r = std::strtol(rounds.c_str(), &stop, 10);
    if (rounds.empty() || *stop != '\0') r = 0;
  }
  if (r < 1) {
    throw Error(ErrorCode::INVALID_ARGUMENT,
                std::string("INVALID_ARGUMENT: ") + kEnv + "='" + text +
                    "': expected R, the visit to die at, a whole number >= 1");
  }
  if (point.rfind(std::string(end) + ".", 0) != 0) return plan;
  plan.point_ = point;
  plan.at_ = r;
  plan.log_ = &log;
  return plan;
}

void CrashPlan::reached(const char* point) {
  if (point_.empty() || point_ != point) return;
  if (++hits_ != at_) return;
  if (log_ != nullptr)
    log_->event("crash", {str("point", point_), num("hit", std::uint64_t(hits_))});
  ::kill(::getpid(), SIGKILL);
}

}  // namespace shmbridge::relay
