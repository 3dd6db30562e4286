// The round engine shared by both protocol versions (spec/PROTOCOL.md §4-§7; Part II R-VER-1):
// control-word transitions, waits, liveness, timeouts, restart recovery and close. A protocol
// version differs only in how a message is checked, written and read; the engine calls a
// MessageFormat for the one step of a round it cannot do alone (what an error reply writes) and
// leaves checking and copying messages to the handles (channel.cpp: v1, message.cpp: v2).
// Internal to the library.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "shmbridge/channel.hpp"
#include "shmbridge/liveness.hpp"
#include "shmbridge/protocol.hpp"
#include "shmbridge/segment.hpp"
#include "shmbridge/wait.hpp"

namespace shmbridge::detail {

// The version-specific part of a round the engine itself performs.
class MessageFormat {
 public:
  virtual ~MessageFormat() = default;
  // Runs before the CAS of every error reply (T3 with reply_code != 0, T8 by R-REC-2, the T3 of
  // R-CLOSE-2), after the responder's own checks. v1 restores message = declared (R-MSG-4); v2
  // writes no part of the reply area (R-FIELD-10).
  virtual void before_error_reply() noexcept = 0;
};

// INVALID_ARGUMENT for a negative time or a capacity where it has no meaning (v1 create only).
void check_options(const Options& opt, bool capacity_allowed = false);
void check_timeout(std::chrono::nanoseconds t);

// Deadline bookkeeping of one blocking operation (R-WAIT-1/2/4).
struct Deadline {
  std::chrono::nanoseconds timeout;
  bool started = false;
  std::chrono::steady_clock::time_point end{};
  std::chrono::steady_clock::time_point spin_end{};
  SpinYield yield{};
};

class RoundEngine {
 public:
  using Clock = std::chrono::steady_clock;

  RoundEngine(Actor role, const Options& opt, Segment seg, std::unique_ptr<MessageFormat> format);
  ~RoundEngine() { close_noexcept(); }
  RoundEngine(const RoundEngine&) = delete;
  RoundEngine& operator=(const RoundEngine&) = delete;

  // ---- accessors ----
  Actor role() const noexcept { return role_; }
  std::uint32_t load() const noexcept { return word_->load(std::memory_order_acquire); }
  std::uint8_t* base() const noexcept { return base_; }
  std::uint64_t capacity() const noexcept { return capacity_; }
  const Segment& segment() const noexcept { return seg_; }
  // R-SEG-9: once removed, a name stays removed (it cannot be linked again).
  bool name_removed() noexcept { return name_removed_ = name_removed_ || seg_.name_removed(); }
  std::shared_ptr<Mapping> mapping() const { return seg_.mapping(); }
  bool open() const noexcept { return open_; }
  const std::optional<std::uint32_t>& pending() const noexcept { return pending_; }
  const std::optional<std::uint32_t>& held() const noexcept { return held_; }
  const Options& options() const noexcept { return opt_; }
  template <class F>
  F& format() const noexcept {
    return static_cast<F&>(*format_);
  }
  void ensure_open() const;

  // ---- attach / create ----
  void claim_role();                                 // R-LIVE-1 (attach)
  void mark_claimed() noexcept { claimed_ = true; }  // the creator claimed at creation
  void settled(std::uint32_t seq) noexcept;          // the requester owns the payload in IDLE|seq
  void recover_requester(std::chrono::nanoseconds timeout);  // R-REC-1
  void recover_responder();                                  // R-REC-2 (T8)

  // ---- requester ----
  // T1's precondition and word check (R-STATE-7/8, R-STATE-10) without the transition: the word
  // and the decision to CAS once the message is written.
  std::pair<std::uint32_t, Decision> require_send_allowed();
  // T1: checks the word, runs `write()` (the message into the areas the requester owns), then
  // the CAS (release). Returns the new request's seq.
  template <class Write>
  std::uint32_t send(Write&& write) {
    const auto [w, d] = require_send_allowed();
    write();
    return publish_request(w, d);
  }
  std::uint32_t publish_request(std::uint32_t w, const Decision& d);
  // T4 and R-MSG-5 (1): waits for the reply to the outstanding request, consumes it, and raises
  // the error of a reply_code != 0. Returns the seq of a successful reply, whose message the
  // caller validates next (R-MSG-5 (2)).
  std::uint32_t receive(std::chrono::nanoseconds timeout);

  // ---- responder ----
  // T2: waits for a request; returns its seq. The caller validates the message next.
  std::uint32_t take(std::chrono::nanoseconds timeout);
  // A request handle's calls: OUT_OF_TURN unless this responder still holds request `seq` (a
  // Request / MessageRequest that was answered, or an older one, cannot answer again).
  // `what` names the handle type in the message ("Request", "MessageRequest").
  static void require_held(const RoundEngine* engine, bool answered, std::uint32_t seq,
                           const char* what);
  // T3's precondition and word check without the transition (R-FIELD-6: every reply call
  // checks it first): OUT_OF_TURN unless the responder holds the request.
  void require_reply_allowed();
  // T3 with reply_code `code` (0: a successful reply whose message the caller wrote).
  void answer(std::uint32_t code);
  // R-MSG-2: an error reply the caller asked for; INVALID_ARGUMENT unless `code` is an error code.
  void answer_error(ErrorCode code);
  // R-MSG-2, R-FIELD-9: completes the held round with an error reply of e's code, then throws e.
  [[noreturn]] void reject(const Error& e);

  // ---- close (R-CLOSE-*) ----
  void close();
  void close_noexcept() noexcept;
  void abandon() noexcept;  // releases the slot without the close protocol (a failed attach)

 private:
  PeerState peer_state();
  static PeerGoneReason reason_of(PeerState p) noexcept;
  ActorState view(PeerState peer, bool orphan_is_own = false) const noexcept;
  Decision decide_now(Op op, std::uint32_t w, bool orphan_is_own = false);
  bool cas(std::uint32_t expected, std::uint32_t desired);
  bool try_transition(Op op, std::uint32_t w, bool orphan_is_own = false);
  bool pause(Deadline& dl, std::uint32_t w);
  struct Outcome {
    Decision decision;   // transition (performed), error, or wait (= the deadline passed)
    std::uint32_t word;  // the word the decision was made on
  };
  Outcome run(Op op, std::chrono::nanoseconds timeout);
  [[noreturn]] void fail(Op op, std::uint32_t w, ErrorCode code,
                         std::chrono::nanoseconds timeout = {}) const;
  Error peer_gone(const std::string& context, PeerGoneReason reason) const;
  [[noreturn]] void raise_reply_code(std::uint32_t seq, std::uint32_t code) const;
  std::uint32_t reply_code() const noexcept;
  void set_reply_code(std::uint32_t code) noexcept;
  void consume_late_reply();

  Actor role_;
  Options opt_;
  Segment seg_;
  bool name_removed_ = false;
  std::uint8_t* base_;
  std::atomic<std::uint32_t>* word_;
  std::atomic<std::uint32_t>* waiters_;
  SlotRef own_;
  SlotRef peer_;
  Waiter waiter_;
  std::unique_ptr<MessageFormat> format_;
  std::uint64_t capacity_ = 0;
  std::optional<std::uint32_t> pending_;
  bool timed_out_ = false;
  std::optional<std::uint32_t> last_;  // requester: seq last observed owning IDLE (R-STATE-8)
  std::optional<std::uint32_t> held_;
  bool open_ = true;
  bool claimed_ = false;
  std::uint32_t cache_pid_ = 0;
  std::uint64_t cache_inc_ = ~std::uint64_t{0};
  bool cache_alive_ = false;
  bool cache_claiming_ = false;
  Clock::time_point cache_expiry_{};
  PeerState last_peer_ = PeerState::alive;  // the peer state of the last liveness decision
};

// Builds the version's MessageFormat over a mapped, validated header.
using FormatFactory = std::function<std::unique_ptr<MessageFormat>(const Segment& seg)>;

// R-SEG-1/6, R-LIVE-1: creates the segment (`write_header` writes every header byte but magic),
// claims the creator and role slots before magic is published, and returns the creator's engine.
std::shared_ptr<RoundEngine> create_engine(Actor role, std::string_view name,
                                           std::uint64_t segment_size,
                                           const std::function<void(std::uint8_t*)>& write_header,
                                           const FormatFactory& make_format, const Options& opt);

// R-ATTACH-1/2: waits for the segment and validates its header by `check`; `expect(format)`
// compares what the caller stated with the segment before the slot is claimed (R-LAYOUT-7,
// R-SCHEMA-10); then claims the role (R-LIVE-1) and recovers (R-REC-1/2) within one deadline.
std::shared_ptr<RoundEngine> attach_engine(Actor role, std::string_view name,
                                           const Segment::HeaderCheck& check,
                                           const FormatFactory& make_format,
                                           const std::function<void(MessageFormat&)>& expect,
                                           const Options& opt);

// The serve loop of both versions' responders (R-LIVE-4, R-MSG-2, R-MSG-3): takes and answers
// requests until the requester closes. `take()` returns a request handle `R` with answered(),
// reply() and fail(code); a request whose message failed validation was already answered by take.
template <class R, class Take, class Handler>
void serve_loop(Take&& take, Handler&& handler) {
  for (;;) {
    R r;
    try {
      r = take();
    } catch (const Error& e) {
      switch (e.code()) {
        case ErrorCode::TIMEOUT:
          continue;  // no request yet: keep serving
        case ErrorCode::DTYPE_MISMATCH:
        case ErrorCode::SHAPE_MISMATCH:
        case ErrorCode::CORRUPT_HEADER:
          continue;  // R-MSG-2, R-FIELD-9: already answered with an error reply
        case ErrorCode::PEER_GONE:
          // R-LIVE-4: a requester that detached cleanly ends the service normally; one that died
          // is reported (reason DIED, R-LIVE-5), so a supervisor sees the crash.
          if (e.peer_gone_reason() == PeerGoneReason::closed) return;
          throw;
        default:
          throw;
      }
    }
    try {
      handler(r);
      if (!r.answered()) r.reply();
    } catch (const Error& e) {
      if (!r.answered()) r.fail(e.code());
      throw;
    } catch (...) {
      if (!r.answered()) r.fail(ErrorCode::HANDLER_FAILED);  // R-MSG-3
      throw;
    }
  }
}

}  // namespace shmbridge::detail
