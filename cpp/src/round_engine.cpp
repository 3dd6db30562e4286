#include "round_engine.hpp"

#include <algorithm>
#include <sstream>
#include <thread>

#include "shmbridge/layout.hpp"

namespace shmbridge::detail {

using namespace layout;
using std::chrono::nanoseconds;

namespace {

std::string word_text(std::uint32_t w) {
  std::ostringstream s;
  s << phase_name(phase_bits(w)) << " seq " << seq_of(w) << " (word 0x" << std::hex << w << ")";
  return s.str();
}

std::string seconds_text(nanoseconds t) {
  std::ostringstream s;
  s << std::chrono::duration<double>(t).count() << " s";
  return s.str();
}

}  // namespace

void check_options(const Options& opt, bool capacity_allowed) {
  auto bad = [](const char* what, nanoseconds v) {
    raise(ErrorCode::INVALID_ARGUMENT, std::string(what) + " >= 0",
          std::to_string(v.count()) + " ns", std::string("pass a non-negative ") + what);
  };
  if (opt.timeout < nanoseconds::zero()) bad("timeout", opt.timeout);
  if (opt.spin < nanoseconds::zero()) bad("spin", opt.spin);
  if (opt.liveness_interval <= nanoseconds::zero()) {
    raise(ErrorCode::INVALID_ARGUMENT, "liveness_interval > 0",
          std::to_string(opt.liveness_interval.count()) + " ns", "pass a positive interval");
  }
  if (opt.capacity && !capacity_allowed) {
    raise(ErrorCode::INVALID_ARGUMENT, "no capacity (only a v1 create states one, R-SEG-1)",
          "capacity " + std::to_string(*opt.capacity),
          "leave Options::capacity unset here; the creator sizes the segment");
  }
}

void check_timeout(nanoseconds t) {
  if (t < nanoseconds::zero()) {
    raise(ErrorCode::INVALID_ARGUMENT, "timeout >= 0", std::to_string(t.count()) + " ns",
          "pass 0 to try once, or a positive timeout");
  }
}

RoundEngine::RoundEngine(Actor role, const Options& opt, Segment seg,
                         std::unique_ptr<MessageFormat> format)
    : role_(role),
      opt_(opt),
      seg_(std::move(seg)),
      base_(seg_.base()),
      word_(&atomic_u32(base_ + kOffWord)),
      waiters_(&atomic_u32(base_ + kOffWaiters)),
      own_(base_ + (role == Actor::requester ? kOffRequesterSlot : kOffResponderSlot)),
      peer_(base_ + (role == Actor::requester ? kOffResponderSlot : kOffRequesterSlot)),
      waiter_(seg_.name(), role),
      format_(std::move(format)),
      capacity_(load_u64(base_ + kOffCapacity)) {}  // same offset in both versions

void RoundEngine::ensure_open() const {
  if (!open_) {
    raise(ErrorCode::OUT_OF_TURN, "an open handle", "a closed handle",
          "attach a new handle; a closed one cannot be used");
  }
}

// R-LIVE-1: claim the role slot (the creator claimed it at creation).
void RoundEngine::claim_role() {
  own_.claim(actor_name(role_));
  claimed_ = true;
}

// The requester consumed or withdrew its request: it owns the payload in IDLE|seq.
void RoundEngine::settled(std::uint32_t seq) noexcept {
  pending_.reset();
  timed_out_ = false;
  last_ = seq;
}

// ---- liveness (R-LIVE-3): slot state read every time, process probe cached per interval ----

PeerState RoundEngine::peer_state() {
  // R-LIVE-6: pid (acquire) first, then state, then start_time: a closer stores CLOSED before
  // pid = 0 (R-CLOSE-1), so pid 0 read here comes with its CLOSED.
  const std::uint32_t pid = peer_.pid();
  const auto st = static_cast<SlotState>(peer_.state());
  // pid 0: closed, or nobody holds the slot (EMPTY; ATTACHED = a claim that completed between
  // the two loads): no peer yet, which does not end a wait (R-LIVE-3).
  if (pid == 0) return st == SlotState::closed ? PeerState::closed : PeerState::empty;
  // R-LIVE-3: a slot with pid != 0 that is not ATTACHED is being claimed (R-LIVE-1) or closed
  // (R-CLOSE-1) and is judged by its pid alone.
  const bool claiming = st != SlotState::attached;
  const std::uint64_t inc = peer_.incarnation();
  const auto now = Clock::now();
  if (pid != cache_pid_ || inc != cache_inc_ || claiming != cache_claiming_ ||
      now >= cache_expiry_) {
    cache_alive_ = process_alive(pid, claiming ? 0 : peer_.start_time());
    name_removed();  // R-SEG-9: the creator checks its name with each probe
    cache_pid_ = pid;
    cache_inc_ = inc;
    cache_claiming_ = claiming;
    cache_expiry_ = now + opt_.liveness_interval;
  }
  return cache_alive_ ? PeerState::alive : PeerState::dead;
}

// R-LIVE-5: the reason of a PEER_GONE decided on peer state `p`.
PeerGoneReason RoundEngine::reason_of(PeerState p) noexcept {
  return p == PeerState::closed ? PeerGoneReason::closed : PeerGoneReason::died;
}

ActorState RoundEngine::view(PeerState peer, bool orphan_is_own) const noexcept {
  ActorState st;
  st.pending = pending_;
  st.held = held_;
  st.peer = peer;
  st.orphan_is_own = orphan_is_own;
  st.last = last_;
  return st;
}

// Decide with the cheap assumption "peer alive" first; the liveness probe only matters where
// the decision would wait (R-WAIT-5) or for T7's guard.
Decision RoundEngine::decide_now(Op op, std::uint32_t w, bool orphan_is_own) {
  Decision d = decide(role_, op, w, view(PeerState::alive, orphan_is_own));
  if (d.is_wait() || op == Op::reclaim) {
    const PeerState p = peer_state();
    if (p != PeerState::alive) d = decide(role_, op, w, view(p, orphan_is_own));
    last_peer_ = p;
  }
  return d;
}

// R-STATE-2: every change is a CAS from the exact expected word; R-WAIT-3 wake afterwards.
bool RoundEngine::cas(std::uint32_t expected, std::uint32_t desired) {
  if (!word_->compare_exchange_strong(expected, desired, std::memory_order_seq_cst,
                                      std::memory_order_acquire)) {
    return false;
  }
  waiter_.wake(*word_, *waiters_);
  return true;
}

// One attempt of an internal transition (cancel, discard, reclaim, recover, R-STATE-10's T4).
bool RoundEngine::try_transition(Op op, std::uint32_t w, bool orphan_is_own) {
  const Decision d = decide_now(op, w, orphan_is_own);
  return d.is_transition() && cas(w, d.word);
}

// Spins, then blocks once (R-WAIT-1/3/4). Returns false when the deadline has passed.
bool RoundEngine::pause(Deadline& dl, std::uint32_t w) {
  if (dl.timeout <= nanoseconds::zero()) return false;
  const auto now = Clock::now();
  if (!dl.started) {
    dl.started = true;
    dl.end = now + dl.timeout;
    dl.spin_end = now + opt_.spin;
  }
  if (now >= dl.end) return false;
  if (now < dl.spin_end) {
    for (int i = 0; i < 64 && word_->load(std::memory_order_acquire) == w; ++i) cpu_relax();
    if (dl.yield.due(w, now)) std::this_thread::yield();  // a peer on this core runs
    return true;
  }
  const nanoseconds left = dl.end - now;
  waiter_.block(*word_, *waiters_, w,
                left < opt_.liveness_interval ? left : opt_.liveness_interval);
  return true;
}

// R-WAIT-5: evaluate, transition, or wait and repeat until the deadline.
RoundEngine::Outcome RoundEngine::run(Op op, nanoseconds timeout) {
  Deadline dl{timeout};
  for (;;) {
    const std::uint32_t w = load();
    const Decision d = decide_now(op, w);
    if (d.is_transition()) {
      if (cas(w, d.word)) return {d, w};
      continue;
    }
    // R-LIVE-3: the peer may have published its last transition between our load of the word
    // and the slot probe that found it gone; act on that word before reporting PEER_GONE.
    if (d.is_error() && d.error == ErrorCode::PEER_GONE && load() != w) continue;
    if (d.is_error() || !pause(dl, w)) return {d, w};
  }
}

void RoundEngine::fail(Op op, std::uint32_t w, ErrorCode code, nanoseconds timeout) const {
  const std::string who = actor_name(role_);
  const std::string found = word_text(w);
  std::string mine;
  if (pending_) mine = ", own request #" + std::to_string(*pending_) + " outstanding";
  if (held_) mine = ", holding request #" + std::to_string(*held_);
  switch (code) {
    case ErrorCode::OUT_OF_TURN:
      raise(code, std::string(op_name(op)) + " allowed for the " + who + " (R-STATE-7)",
            found + mine,
            op == Op::send      ? "receive the reply to the outstanding request first"
            : op == Op::receive ? "send a request first"
            : op == Op::take    ? "reply to the held request first"
                                : "take a request first");
    case ErrorCode::PROTOCOL_VIOLATION:
      raise(code, "a control word reachable by legal transitions (R-STATE-8)", found + mine,
            "another process wrote the control word; stop it and restart both peers");
    case ErrorCode::PEER_GONE:
      throw peer_gone(found + mine, reason_of(last_peer_));
    case ErrorCode::TIMEOUT:
      raise(code, std::string(op_name(op)) + " to complete within " + seconds_text(timeout),
            found + mine, "check that the peer is running, or pass a longer timeout");
    default:
      raise(code, std::string(op_name(op)) + " to succeed", found + mine, "see the error code");
  }
}

// R-LIVE-5: PEER_GONE with its reason; the message says which (a supervisor restarts a peer that
// died, not one that closed).
Error RoundEngine::peer_gone(const std::string& context, PeerGoneReason reason) const {
  const std::string peer = role_ == Actor::requester ? "responder" : "requester";
  const std::string what =
      reason == PeerGoneReason::closed
          ? "it closed the channel (slot CLOSED, pid 0)"
          : "it died: process " + std::to_string(cache_pid_) + " is gone without closing";
  Error e(ErrorCode::PEER_GONE,
          "expected the " + peer + " attached and alive, found that " + what + "; " + context +
              "; " +
              (reason == PeerGoneReason::closed ? "attach a new " + peer + " to go on"
                                                : "restart the " + peer + " (it crashed)"));
  e.set_peer_gone_reason(reason);
  return e;
}

std::uint32_t RoundEngine::reply_code() const noexcept {
  return atomic_u32(base_ + kOffReplyCode).load(std::memory_order_relaxed);
}

// Stores only a changed value: in steady state the reply_code line then stays cached by both
// peers instead of changing owner every round.
void RoundEngine::set_reply_code(std::uint32_t code) noexcept {
  auto& rc = atomic_u32(base_ + kOffReplyCode);
  if (rc.load(std::memory_order_relaxed) != code) rc.store(code, std::memory_order_relaxed);
}

// ---- requester ----

// R-STATE-10: consume the late reply of the own timed-out request, result dropped (only after
// a receive timed out: a reply nobody gave up on is never dropped, spec/vectors D6). The dropped
// reply's message is neither read nor validated (R-FIELD-10).
void RoundEngine::consume_late_reply() {
  if (!pending_ || !timed_out_) return;
  const std::uint32_t w = load();
  if (w == make_word(Phase::REPLIED, *pending_) && try_transition(Op::receive, w)) {
    settled(seq_of(w));
  }
}

std::pair<std::uint32_t, Decision> RoundEngine::require_send_allowed() {
  ensure_open();
  consume_late_reply();
  const std::uint32_t w = load();
  const Decision d = decide(role_, Op::send, w, view(PeerState::alive));
  if (!d.is_transition()) fail(Op::send, w, d.error);
  return {w, d};
}

std::uint32_t RoundEngine::publish_request(std::uint32_t w, const Decision& d) {
  // reply_code is the responder's field (R-STATE-3): the requester never writes it.
  if (!cas(w, d.word)) fail(Op::send, load(), ErrorCode::PROTOCOL_VIOLATION);
  pending_ = last_ = seq_of(d.word);
  timed_out_ = false;
  return seq_of(d.word);
}

// R-MSG-5 (1): T4 is done (the channel is IDLE and ours); a reply_code != 0 raises its error.
// Every error raised here carries the reply_code.
void RoundEngine::raise_reply_code(std::uint32_t seq, std::uint32_t code) const {
  if (!is_error_code(code)) {
    throw Error(ErrorCode::PROTOCOL_VIOLATION,
                "the responder rejected request #" + std::to_string(seq) +
                    ": expected a reply_code of spec/errors.json, found " + std::to_string(code) +
                    ", which no version of the protocol defines; restart both peers")
        .set_reply_code(code);
  }
  const auto ec = static_cast<ErrorCode>(code);
  const std::string rejected = "the responder rejected request #" + std::to_string(seq) +
                               ": reply_code " + std::to_string(code) + " (" + error_name(ec) + ")";
  if (ec == ErrorCode::PEER_GONE) {
    // R-LIVE-5: a responder closing while holding stores CLOSED before its T3 (R-CLOSE-1);
    // anything else is a new responder that completed a dead predecessor's round (T8).
    const bool closed = peer_.state() == static_cast<std::uint32_t>(SlotState::closed);
    throw Error(ec, rejected + (closed ? ": it closed the channel while holding the "
                                         "request; attach a new responder and send again"
                                       : ": it died holding the request, a new responder "
                                         "completed the round; send again"))
        .set_reply_code(code)
        .set_peer_gone_reason(closed ? PeerGoneReason::closed : PeerGoneReason::died);
  }
  throw Error(ec, rejected + "; fix the request or the responder and send again")
      .set_reply_code(code);
}

std::uint32_t RoundEngine::receive(nanoseconds timeout) {
  ensure_open();
  check_timeout(timeout);
  const Outcome o = run(Op::receive, timeout);
  if (o.decision.is_transition()) {
    const std::uint32_t seq = seq_of(o.word);
    settled(seq);
    const std::uint32_t code = reply_code();
    if (code != 0) raise_reply_code(seq, code);  // R-MSG-2
    return seq;
  }
  const std::uint32_t w = load();
  if (o.decision.is_wait()) {
    // R-TIME-2: withdraw a request that is still REQUESTED; a TAKEN one stays outstanding.
    if (w == make_word(Phase::REQUESTED, pending_.value_or(0)) && try_transition(Op::cancel, w)) {
      settled(seq_of(w));
    } else {
      timed_out_ = true;  // the reply may arrive later (R-STATE-10)
    }
    fail(Op::receive, w, ErrorCode::TIMEOUT, timeout);
  }
  if (o.decision.error == ErrorCode::PEER_GONE) {
    // R-LIVE-3: withdraw (T5) or reclaim (T7) before raising PEER_GONE.
    if (try_transition(Op::cancel, w) || try_transition(Op::reclaim, w)) settled(seq_of(w));
  }
  fail(Op::receive, o.word, o.decision.error);
}

// R-REC-1: bring the channel back to IDLE before the first send.
void RoundEngine::recover_requester(nanoseconds timeout) {
  Deadline dl{timeout};
  for (;;) {
    const std::uint32_t w = load();
    switch (phase_bits(w)) {
      case static_cast<std::uint32_t>(Phase::IDLE):
        settled(seq_of(w));
        return;
      case static_cast<std::uint32_t>(Phase::REQUESTED):
        try_transition(Op::cancel, w, /*orphan_is_own=*/true);
        break;
      case static_cast<std::uint32_t>(Phase::REPLIED):
        try_transition(Op::discard, w);
        break;
      case static_cast<std::uint32_t>(Phase::TAKEN):
        if (!try_transition(Op::reclaim, w) && !pause(dl, w)) {
          raise(
              ErrorCode::TIMEOUT,
              "the late reply to the previous requester's request within " + seconds_text(timeout),
              word_text(w) + " (the responder still holds it)",
              "retry attach later or with a longer timeout");
        }
        break;
      default:
        // R-STATE-11: attach does not judge a phase outside the table; the first operation
        // that reads the word reports PROTOCOL_VIOLATION.
        settled(seq_of(w));
        return;
    }
  }
}

// ---- responder ----

std::uint32_t RoundEngine::take(nanoseconds timeout) {
  ensure_open();
  check_timeout(timeout);
  const Outcome o = run(Op::take, timeout);
  if (o.decision.is_transition()) {
    held_ = seq_of(o.word);
    return *held_;
  }
  if (o.decision.is_wait()) fail(Op::take, o.word, ErrorCode::TIMEOUT, timeout);
  fail(Op::take, o.word, o.decision.error);
}

void RoundEngine::require_held(const RoundEngine* engine, bool answered, std::uint32_t seq,
                               const char* what) {
  if (!engine) {
    raise(ErrorCode::OUT_OF_TURN, "a taken request", std::string("an empty ") + what,
          "take() first");
  }
  if (answered || engine->held() != seq) {
    raise(ErrorCode::OUT_OF_TURN, "request #" + std::to_string(seq) + " held by this responder",
          "a request that was already answered", "take() the next request");
  }
}

void RoundEngine::require_reply_allowed() {
  ensure_open();
  const std::uint32_t w = load();
  const Decision d = decide(role_, Op::reply, w, view(PeerState::alive));
  if (!d.is_transition()) fail(Op::reply, w, d.error);
}

void RoundEngine::answer(std::uint32_t code) {
  ensure_open();
  for (;;) {
    const std::uint32_t w = load();
    const Decision d = decide(role_, Op::reply, w, view(PeerState::alive));
    if (!d.is_transition()) fail(Op::reply, w, d.error);
    if (code != 0) format_->before_error_reply();
    set_reply_code(code);
    if (cas(w, d.word)) break;
  }
  held_.reset();
}

void RoundEngine::answer_error(ErrorCode code) {
  if (!is_error_code(static_cast<std::uint32_t>(code))) {
    raise(ErrorCode::INVALID_ARGUMENT, "an error code 1.." + std::to_string(kMaxErrorCode),
          std::to_string(static_cast<std::uint32_t>(code)), "pass a shmbridge::ErrorCode");
  }
  answer(static_cast<std::uint32_t>(code));
}

void RoundEngine::reject(const Error& e) {
  answer(static_cast<std::uint32_t>(e.code()));
  throw e;
}

// R-REC-2: complete a round left TAKEN by a dead predecessor.
void RoundEngine::recover_responder() {
  const std::uint32_t w = load();
  if (phase_bits(w) != static_cast<std::uint32_t>(Phase::TAKEN)) return;
  const Decision d = decide(role_, Op::recover, w, view(PeerState::alive));
  if (!d.is_transition()) return;
  format_->before_error_reply();
  set_reply_code(static_cast<std::uint32_t>(ErrorCode::PEER_GONE));
  cas(w, d.word);
}

// ---- close (R-CLOSE-*) ----

// R-CLOSE-1, in its order: (1) CLOSED, (2) a held request completed (R-CLOSE-2), (3) pid 0,
// (4) the creator slot likewise, (5) wake; the mapping goes with the last owner (6), the
// creator unlinks (7). start_time and incarnation are left as they are.
void RoundEngine::close() {
  if (!open_) return;
  if (claimed_) own_.mark_closed();
  if (role_ == Actor::responder && held_) {
    try {
      answer(static_cast<std::uint32_t>(ErrorCode::PEER_GONE));  // R-CLOSE-2
    } catch (const Error&) {
      held_.reset();
    }
  }
  open_ = false;
  pending_.reset();
  if (claimed_) {
    own_.clear_pid();
    if (seg_.is_creator()) SlotRef(base_ + kOffCreatorSlot).release();
    // Wake a peer blocked on the word so that it notices the CLOSED slot at once.
    waiter_.wake(*word_, *waiters_);
  }
  if (!opt_.keep_segment) seg_.unlink();
}

void RoundEngine::close_noexcept() noexcept {
  try {
    close();
  } catch (...) {
  }
}

void RoundEngine::abandon() noexcept {
  if (claimed_) own_.release();
  claimed_ = false;
  open_ = false;
}

// ---- create / attach ----

std::shared_ptr<RoundEngine> create_engine(Actor role, std::string_view name,
                                           std::uint64_t segment_size,
                                           const std::function<void(std::uint8_t*)>& write_header,
                                           const FormatFactory& make_format, const Options& opt) {
  CreateOptions co;
  co.reclaim_stale = opt.reclaim_stale;
  co.init_timeout = std::min<nanoseconds>(opt.timeout, std::chrono::seconds(1));
  const std::size_t role_slot = role == Actor::requester ? kOffRequesterSlot : kOffResponderSlot;
  Segment seg =
      Segment::create(std::string(name), segment_size, write_header, co, [&](std::uint8_t* base) {
        SlotRef(base + kOffCreatorSlot).claim("creator");  // R-LIVE-1
        SlotRef(base + role_slot).claim(actor_name(role));
      });
  auto format = make_format(seg);
  auto engine = std::make_shared<RoundEngine>(role, opt, std::move(seg), std::move(format));
  engine->mark_claimed();
  if (role == Actor::requester) engine->settled(0);  // a new segment starts at IDLE|0
  return engine;
}

std::shared_ptr<RoundEngine> attach_engine(Actor role, std::string_view name,
                                           const Segment::HeaderCheck& check,
                                           const FormatFactory& make_format,
                                           const std::function<void(MessageFormat&)>& expect,
                                           const Options& opt) {
  // R-ATTACH-2: one deadline for the whole attach (the wait for the segment and R-REC-1).
  const auto deadline = RoundEngine::Clock::now() + opt.timeout;
  Segment seg = Segment::attach(std::string(name), opt.timeout, check);
  auto format = make_format(seg);
  auto engine = std::make_shared<RoundEngine>(role, opt, std::move(seg), std::move(format));
  expect(engine->format<MessageFormat>());  // before touching the segment (R-LAYOUT-7, R-SCHEMA-10)
  engine->claim_role();
  try {
    if (role == Actor::requester) {
      engine->recover_requester(
          std::max(nanoseconds::zero(), deadline - RoundEngine::Clock::now()));
    } else {
      engine->recover_responder();
    }
  } catch (...) {
    engine->abandon();  // R-REC-1: release the slot
    throw;
  }
  return engine;
}

}  // namespace shmbridge::detail
