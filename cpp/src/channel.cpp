#include "shmbridge/channel.hpp"

#include <cstring>
#include <sstream>
#include <thread>
#include <utility>

#include "shmbridge/liveness.hpp"
#include "shmbridge/naming.hpp"
#include "shmbridge/wait.hpp"

namespace shmbridge {

using namespace layout;
using Clock = std::chrono::steady_clock;
using std::chrono::nanoseconds;

namespace detail {

void check_dtype(DType have, DType want) {
  if (have != want) {
    raise(ErrorCode::DTYPE_MISMATCH, std::string("dtype ") + dtype_name(have),
          std::string("element type of dtype ") + dtype_name(want),
          std::string("access the array as ") + dtype_name(have));
  }
}

namespace {

void check_options(const Options& opt) {
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
}

void check_timeout(nanoseconds t) {
  if (t < nanoseconds::zero()) {
    raise(ErrorCode::INVALID_ARGUMENT, "timeout >= 0", std::to_string(t.count()) + " ns",
          "pass 0 to try once, or a positive timeout");
  }
}

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

// Deadline bookkeeping of one blocking operation (R-WAIT-1/2/4).
struct Deadline {
  nanoseconds timeout;
  bool started = false;
  Clock::time_point end{};
  Clock::time_point spin_end{};
  SpinYield yield{};
};

class Core {
 public:
  Core(Actor role, const Options& opt, Segment seg)
      : role_(role),
        opt_(opt),
        seg_(std::move(seg)),
        base_(seg_.base()),
        word_(&atomic_u32(base_ + kOffWord)),
        waiters_(&atomic_u32(base_ + kOffWaiters)),
        own_(base_ + (role == Actor::requester ? kOffRequesterSlot : kOffResponderSlot)),
        peer_(base_ + (role == Actor::requester ? kOffResponderSlot : kOffRequesterSlot)),
        payload_(base_ + kOffPayload),
        waiter_(seg_.name(), role) {
    const Header h = decode_header(base_);
    capacity_ = h.capacity;
    declared_ = h.declared;
    dtype_ = static_cast<DType>(declared_.dtype);
    shape_ = declared_.shape_of();
    encode_descriptor(declared_, declared_bytes_.data());
  }
  ~Core() { close_noexcept(); }

  // ---- accessors ----
  Actor role() const noexcept { return role_; }
  std::uint32_t load() const noexcept { return word_->load(std::memory_order_acquire); }
  DType dtype() const noexcept { return dtype_; }
  const Shape& shape() const noexcept { return shape_; }
  std::uint64_t capacity() const noexcept { return capacity_; }
  std::uint64_t nbytes() const noexcept { return declared_.nbytes; }
  void* payload() const noexcept { return payload_; }
  const Segment& segment() const noexcept { return seg_; }
  // R-SEG-9: once removed, a name stays removed (it cannot be linked again).
  bool name_removed() noexcept { return name_removed_ = name_removed_ || seg_.name_removed(); }
  bool open() const noexcept { return open_; }
  const std::optional<std::uint32_t>& pending() const noexcept { return pending_; }
  const std::optional<std::uint32_t>& held() const noexcept { return held_; }
  const Options& options() const noexcept { return opt_; }

  void ensure_open() const {
    if (!open_) {
      raise(ErrorCode::OUT_OF_TURN, "an open handle", "a closed handle",
            "attach a new handle; a closed one cannot be used");
    }
  }

  // R-LIVE-1: claim the role slot (and, for the creator, it was claimed at creation).
  void claim_role() {
    own_.claim(actor_name(role_));
    claimed_ = true;
  }
  void mark_claimed() noexcept { claimed_ = true; }

  // ---- liveness (R-LIVE-3): slot state read every time, process probe cached per interval ----
  PeerState peer_state() {
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
  static PeerGoneReason reason_of(PeerState p) noexcept {
    return p == PeerState::closed ? PeerGoneReason::closed : PeerGoneReason::died;
  }

  ActorState view(PeerState peer, bool orphan_is_own = false) const noexcept {
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
  Decision decide_now(Op op, std::uint32_t w, bool orphan_is_own = false) {
    Decision d = decide(role_, op, w, view(PeerState::alive, orphan_is_own));
    if (d.is_wait() || op == Op::reclaim) {
      const PeerState p = peer_state();
      if (p != PeerState::alive) d = decide(role_, op, w, view(p, orphan_is_own));
      last_peer_ = p;
    }
    return d;
  }

  // R-STATE-2: every change is a CAS from the exact expected word; R-WAIT-3 wake afterwards.
  bool cas(std::uint32_t expected, std::uint32_t desired) {
    if (!word_->compare_exchange_strong(expected, desired, std::memory_order_seq_cst,
                                        std::memory_order_acquire)) {
      return false;
    }
    waiter_.wake(*word_, *waiters_);
    return true;
  }

  // One attempt of an internal transition (cancel, discard, reclaim, recover, R-STATE-10's T4).
  bool try_transition(Op op, std::uint32_t w, bool orphan_is_own = false) {
    const Decision d = decide_now(op, w, orphan_is_own);
    return d.is_transition() && cas(w, d.word);
  }

  // Spins, then blocks once (R-WAIT-1/3/4). Returns false when the deadline has passed.
  bool pause(Deadline& dl, std::uint32_t w) {
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

  struct Outcome {
    Decision decision;   // transition (performed), error, or wait (= the deadline passed)
    std::uint32_t word;  // the word the decision was made on
  };

  // R-WAIT-5: evaluate, transition, or wait and repeat until the deadline.
  Outcome run(Op op, nanoseconds timeout) {
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

  [[noreturn]] void fail(Op op, std::uint32_t w, ErrorCode code, nanoseconds timeout = {}) const {
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
  Error peer_gone(const std::string& context, PeerGoneReason reason) const {
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

  // ---- R-MSG-1: the message descriptor must equal declared ----
  ErrorCode check_message(std::string* why) const {
    if (std::memcmp(base_ + kOffMessage, declared_bytes_.data(), kDescSize) == 0) {
      return ErrorCode::ok;
    }
    const Descriptor m = decode_descriptor(base_ + kOffMessage);
    try {
      validate_descriptor(m, capacity_, "message");
    } catch (const Error& e) {
      *why = e.what();
      return e.code();
    }
    if (m.dtype != declared_.dtype) {
      *why = std::string("expected dtype ") + dtype_name(dtype_) + ", found " +
             dtype_name(static_cast<DType>(m.dtype));
      return ErrorCode::DTYPE_MISMATCH;
    }
    *why = "expected shape " + shape_.to_string() + ", found " + m.shape_of().to_string();
    return ErrorCode::SHAPE_MISMATCH;
  }

  std::uint32_t reply_code() const noexcept {
    return atomic_u32(base_ + kOffReplyCode).load(std::memory_order_relaxed);
  }
  // The two writers below store only a changed value: in steady state the message and
  // reply_code lines then stay cached by both peers instead of changing owner every round.
  void set_reply_code(std::uint32_t code) noexcept {
    auto& rc = atomic_u32(base_ + kOffReplyCode);
    if (rc.load(std::memory_order_relaxed) != code) rc.store(code, std::memory_order_relaxed);
  }
  void publish_message() noexcept {
    if (std::memcmp(base_ + kOffMessage, declared_bytes_.data(), kDescSize) != 0) {
      std::memcpy(base_ + kOffMessage, declared_bytes_.data(), kDescSize);
    }
  }

  // ---- requester ----
  void check_array(DType dtype, const Shape& shape) const {
    if (dtype != dtype_) {
      raise(ErrorCode::DTYPE_MISMATCH, std::string("dtype ") + dtype_name(dtype_) + " (declared)",
            dtype_name(dtype), "convert the array to the declared dtype");
    }
    if (shape != shape_) {
      raise(ErrorCode::SHAPE_MISMATCH, "shape " + shape_.to_string() + " (declared)",
            shape.to_string(), "reshape the array to the declared shape");
    }
    if (declared_.nbytes > capacity_) {
      raise(ErrorCode::CAPACITY_EXCEEDED, "at most " + std::to_string(capacity_) + " bytes",
            std::to_string(declared_.nbytes) + " bytes", "create a larger segment");
    }
  }

  // The requester consumed or withdrew its request: it owns the payload in IDLE|seq.
  void settled(std::uint32_t seq) noexcept {
    pending_.reset();
    timed_out_ = false;
    last_ = seq;
  }

  // R-STATE-10: consume the late reply of the own timed-out request, result dropped (only after
  // a receive timed out: a reply nobody gave up on is never dropped, spec/vectors D6).
  void consume_late_reply() {
    if (!pending_ || !timed_out_) return;
    const std::uint32_t w = load();
    if (w == make_word(Phase::REPLIED, *pending_) && try_transition(Op::receive, w)) {
      settled(seq_of(w));
    }
  }

  // Payload ownership check for request_buffer / send (without transition). Returns the word
  // and the T1 decision taken on it.
  std::pair<std::uint32_t, Decision> require_send_allowed() {
    ensure_open();
    consume_late_reply();
    const std::uint32_t w = load();
    const Decision d = decide(role_, Op::send, w, view(PeerState::alive));
    if (!d.is_transition()) fail(Op::send, w, d.error);
    return {w, d};
  }

  void send(const void* src) {
    const auto [w, d] = require_send_allowed();
    if (src) std::memcpy(payload_, src, static_cast<std::size_t>(declared_.nbytes));
    publish_message();
    // reply_code is the responder's field (R-STATE-3): the requester never writes it.
    if (!cas(w, d.word)) fail(Op::send, load(), ErrorCode::PROTOCOL_VIOLATION);
    pending_ = last_ = seq_of(d.word);
    timed_out_ = false;
  }

  // Returns the seq of the consumed reply.
  std::uint32_t receive(nanoseconds timeout) {
    ensure_open();
    check_timeout(timeout);
    const Outcome o = run(Op::receive, timeout);
    if (o.decision.is_transition()) {
      const std::uint32_t seq = seq_of(o.word);
      settled(seq);
      // R-MSG-5: T4 is done (the channel is IDLE and ours); reply_code first, then the
      // descriptor of a successful reply. Every error raised here carries the reply_code.
      const std::uint32_t code = reply_code();
      if (code != 0) {  // R-MSG-2
        if (!is_error_code(code)) {
          throw Error(ErrorCode::PROTOCOL_VIOLATION,
                      "the responder rejected request #" + std::to_string(seq) +
                          ": expected a reply_code of spec/errors.json, found " +
                          std::to_string(code) +
                          ", which no version of the protocol defines; restart both peers")
              .set_reply_code(code);
        }
        const auto ec = static_cast<ErrorCode>(code);
        const std::string rejected = "the responder rejected request #" + std::to_string(seq) +
                                     ": reply_code " + std::to_string(code) + " (" +
                                     error_name(ec) + ")";
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
      std::string why;
      const ErrorCode m = check_message(&why);
      if (m != ErrorCode::ok) {
        throw Error(m, "reply #" + std::to_string(seq) + ": " + why + "; restart both peers")
            .set_reply_code(0);
      }
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
  void recover_requester(nanoseconds timeout) {
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
            raise(ErrorCode::TIMEOUT,
                  "the late reply to the previous requester's request within " +
                      seconds_text(timeout),
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
  std::uint32_t take(nanoseconds timeout) {
    ensure_open();
    check_timeout(timeout);
    const Outcome o = run(Op::take, timeout);
    if (o.decision.is_transition()) {
      const std::uint32_t seq = seq_of(o.word);
      held_ = seq;
      std::string why;
      const ErrorCode m = check_message(&why);
      if (m != ErrorCode::ok) {  // R-MSG-2: still complete the round
        answer(static_cast<std::uint32_t>(m));
        throw Error(m, "request #" + std::to_string(seq) + " rejected: " + why +
                           "; the requester must send the declared dtype and shape");
      }
      return seq;
    }
    if (o.decision.is_wait()) fail(Op::take, o.word, ErrorCode::TIMEOUT, timeout);
    fail(Op::take, o.word, o.decision.error);
  }

  // T3 with reply_code `code`.
  void answer(std::uint32_t code) {
    ensure_open();
    for (;;) {
      const std::uint32_t w = load();
      const Decision d = decide(role_, Op::reply, w, view(PeerState::alive));
      if (!d.is_transition()) fail(Op::reply, w, d.error);
      // R-MSG-4: every reply leaves message = declared (a rejected request's descriptor may
      // differ); a successful reply follows a take that found it equal.
      if (code != 0) publish_message();
      set_reply_code(code);
      if (cas(w, d.word)) break;
    }
    held_.reset();
  }

  // R-REC-2: complete a round left TAKEN by a dead predecessor.
  void recover_responder() {
    const std::uint32_t w = load();
    if (phase_bits(w) != static_cast<std::uint32_t>(Phase::TAKEN)) return;
    const Decision d = decide(role_, Op::recover, w, view(PeerState::alive));
    if (!d.is_transition()) return;
    publish_message();  // R-MSG-4: T8 leaves message = declared too
    set_reply_code(static_cast<std::uint32_t>(ErrorCode::PEER_GONE));
    cas(w, d.word);
  }

  // ---- close (R-CLOSE-*) ----
  // R-CLOSE-1, in its order: (1) CLOSED, (2) a held request completed (R-CLOSE-2), (3) pid 0,
  // (4) the creator slot likewise, (5) wake; the mapping goes with the last owner (6), the
  // creator unlinks (7). start_time and incarnation are left as they are.
  void close() {
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
  void close_noexcept() noexcept {
    try {
      close();
    } catch (...) {
    }
  }

  // Releases the slot without the close protocol (a failed attach).
  void abandon() noexcept {
    if (claimed_) own_.release();
    claimed_ = false;
    open_ = false;
  }

  std::shared_ptr<Mapping> mapping() const { return seg_.mapping(); }

 private:
  Actor role_;
  Options opt_;
  Segment seg_;
  bool name_removed_ = false;
  std::uint8_t* base_;
  std::atomic<std::uint32_t>* word_;
  std::atomic<std::uint32_t>* waiters_;
  SlotRef own_;
  SlotRef peer_;
  std::uint8_t* payload_;
  Waiter waiter_;
  std::uint64_t capacity_ = 0;
  Descriptor declared_;
  std::array<std::uint8_t, kDescSize> declared_bytes_{};
  DType dtype_ = DType::uint8;
  Shape shape_;
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

namespace {

std::shared_ptr<Core> create_core(Actor role, std::string_view name, DType dtype,
                                  const Shape& shape, const Options& opt) {
  check_options(opt);
  const Header h = Header::fresh(dtype, shape);
  CreateOptions co;
  co.reclaim_stale = opt.reclaim_stale;
  co.init_timeout = std::min<nanoseconds>(opt.timeout, std::chrono::seconds(1));
  const std::size_t role_slot = role == Actor::requester ? kOffRequesterSlot : kOffResponderSlot;
  Segment seg = Segment::create(std::string(name), h, co, [&](std::uint8_t* base) {
    SlotRef(base + kOffCreatorSlot).claim("creator");  // R-LIVE-1
    SlotRef(base + role_slot).claim(actor_name(role));
  });
  auto core = std::make_shared<Core>(role, opt, std::move(seg));
  core->mark_claimed();
  if (role == Actor::requester) core->settled(0);  // a new segment starts at IDLE|0
  return core;
}

std::shared_ptr<Core> attach_core(Actor role, std::string_view name, const DType* dtype,
                                  const Shape* shape, const Options& opt) {
  check_options(opt);
  if (dtype && !is_dtype_code(static_cast<std::uint32_t>(*dtype))) {
    raise(ErrorCode::DTYPE_MISMATCH, "a dtype code 1..14",
          "code " + std::to_string(static_cast<std::uint32_t>(*dtype)),
          "use one of the dtypes of spec/dtypes.json");
  }
  // R-ATTACH-2: one deadline for the whole attach (the wait for the segment and R-REC-1).
  const auto deadline = Clock::now() + opt.timeout;
  Segment seg = Segment::attach(std::string(name), opt.timeout);
  auto core = std::make_shared<Core>(role, opt, std::move(seg));
  // R-LAYOUT-7: compare with declared before touching the segment.
  if (dtype && *dtype != core->dtype()) {
    raise(ErrorCode::DTYPE_MISMATCH, std::string("dtype ") + dtype_name(*dtype),
          std::string("dtype ") + dtype_name(core->dtype()) + " declared by the segment",
          "attach with the creator's dtype");
  }
  if (shape && *shape != core->shape()) {
    raise(ErrorCode::SHAPE_MISMATCH, "shape " + shape->to_string(),
          "shape " + core->shape().to_string() + " declared by the segment",
          "attach with the creator's shape");
  }
  core->claim_role();
  try {
    if (role == Actor::requester) {
      core->recover_requester(std::max(nanoseconds::zero(), deadline - Clock::now()));
    } else {
      core->recover_responder();
    }
  } catch (...) {
    core->abandon();  // R-REC-1: release the slot
    throw;
  }
  return core;
}

}  // namespace
}  // namespace detail

// ---- Handle --------------------------------------------------------------------------------

Handle::Handle(std::shared_ptr<detail::Core> core) noexcept : core_(std::move(core)) {}
Handle::Handle(Handle&&) noexcept = default;
Handle& Handle::operator=(Handle&& other) noexcept {
  if (this != &other) {
    if (core_) core_->close_noexcept();
    core_ = std::move(other.core_);
  }
  return *this;
}
Handle::~Handle() {
  if (core_) core_->close_noexcept();
}

detail::Core& Handle::core() const {
  if (!core_) {
    raise(ErrorCode::OUT_OF_TURN, "a handle", "a moved-from handle",
          "use the handle it was moved to");
  }
  return *core_;
}

std::uint32_t Handle::word() const { return core().load(); }
DType Handle::dtype() const { return core().dtype(); }
const Shape& Handle::shape() const { return core().shape(); }
std::uint64_t Handle::capacity() const { return core().capacity(); }
const std::string& Handle::name() const { return core().segment().name(); }
bool Handle::name_removed() const { return core().name_removed(); }
bool Handle::is_creator() const { return core().segment().is_creator(); }
bool Handle::is_open() const noexcept { return core_ && core_->open(); }
void Handle::close() {
  if (core_) core_->close();
}

// ---- Requester -----------------------------------------------------------------------------

Requester Requester::create(std::string_view name, DType dtype, const Shape& shape,
                            const Options& opt) {
  return Requester(detail::create_core(Actor::requester, name, dtype, shape, opt));
}
Requester Requester::attach(std::string_view name, const Options& opt) {
  return Requester(detail::attach_core(Actor::requester, name, nullptr, nullptr, opt));
}
Requester Requester::attach(std::string_view name, DType dtype, const Shape& shape,
                            const Options& opt) {
  return Requester(detail::attach_core(Actor::requester, name, &dtype, &shape, opt));
}

void Requester::send(const void* data, DType dtype, const Shape& shape) {
  auto& c = core();
  c.ensure_open();
  c.check_array(dtype, shape);  // R-STATE-9 first
  if (!data && c.nbytes() != 0) {
    raise(ErrorCode::INVALID_ARGUMENT, "a data pointer", "nullptr", "pass the array's data");
  }
  c.send(data ? data : c.payload());
}

void* Requester::request_buffer(DType dtype) {
  auto& c = core();
  c.ensure_open();
  detail::check_dtype(c.dtype(), dtype);
  c.require_send_allowed();
  return c.payload();
}

void Requester::send_in_place() { core().send(nullptr); }

ArrayView Requester::receive() { return receive(core().options().timeout); }

ArrayView Requester::receive(std::chrono::nanoseconds timeout) {
  auto& c = core();
  ArrayView v;
  v.seq_ = c.receive(timeout);
  v.data_ = c.payload();
  v.dtype_ = c.dtype();
  v.shape_ = c.shape();
  v.nbytes_ = c.nbytes();
  v.keep_ = c.mapping();
  return v;
}

void Requester::receive(void* out, DType dtype, const Shape& shape) {
  auto& c = core();
  c.ensure_open();
  c.check_array(dtype, shape);
  c.receive(c.options().timeout);
  // An empty array may come with out == nullptr: memcpy(nullptr, p, 0) is undefined (UBSan).
  if (c.nbytes()) std::memcpy(out, c.payload(), static_cast<std::size_t>(c.nbytes()));
}

std::optional<std::uint32_t> Requester::pending() const { return core().pending(); }

// ---- Responder / Request -------------------------------------------------------------------

Responder Responder::create(std::string_view name, DType dtype, const Shape& shape,
                            const Options& opt) {
  return Responder(detail::create_core(Actor::responder, name, dtype, shape, opt));
}
Responder Responder::attach(std::string_view name, const Options& opt) {
  return Responder(detail::attach_core(Actor::responder, name, nullptr, nullptr, opt));
}
Responder Responder::attach(std::string_view name, DType dtype, const Shape& shape,
                            const Options& opt) {
  return Responder(detail::attach_core(Actor::responder, name, &dtype, &shape, opt));
}

Request Responder::take() { return take(core().options().timeout); }

Request Responder::take(std::chrono::nanoseconds timeout) {
  auto& c = core();
  Request r;
  r.seq_ = c.take(timeout);
  r.core_ = core_;
  r.data_ = c.payload();
  r.dtype_ = c.dtype();
  r.shape_ = c.shape();
  r.nbytes_ = c.nbytes();
  return r;
}

void Responder::reply() { core().answer(0); }
void Responder::fail(ErrorCode code) { core().answer(static_cast<std::uint32_t>(code)); }
std::optional<std::uint32_t> Responder::held() const { return core().held(); }

void Responder::serve(const std::function<void(Request&)>& handler) {
  for (;;) {
    Request r;
    try {
      r = take();
    } catch (const Error& e) {
      switch (e.code()) {
        case ErrorCode::TIMEOUT:
          continue;  // no request yet: keep serving
        case ErrorCode::DTYPE_MISMATCH:
        case ErrorCode::SHAPE_MISMATCH:
        case ErrorCode::CORRUPT_HEADER:
          continue;  // R-MSG-2: already answered with an error reply
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
    } catch (const Error& e) {
      if (!r.answered()) r.fail(e.code());
      throw;
    } catch (...) {
      if (!r.answered()) r.fail(ErrorCode::HANDLER_FAILED);  // R-MSG-3
      throw;
    }
    if (!r.answered()) r.reply();
  }
}

namespace {
void check_request(const std::shared_ptr<detail::Core>& core, bool answered, std::uint32_t seq) {
  if (!core) raise(ErrorCode::OUT_OF_TURN, "a taken request", "an empty Request", "take() first");
  if (answered || core->held() != seq) {
    raise(ErrorCode::OUT_OF_TURN, "request #" + std::to_string(seq) + " held by this responder",
          "a request that was already answered", "take() the next request");
  }
}
}  // namespace

void Request::reply() {
  check_request(core_, answered_, seq_);
  core_->answer(0);
  answered_ = true;
}

void Request::reply(const void* src) {
  check_request(core_, answered_, seq_);
  core_->ensure_open();
  if (src != data_ && nbytes_) std::memcpy(data_, src, static_cast<std::size_t>(nbytes_));
  reply();
}

void Request::fail(ErrorCode code) {
  check_request(core_, answered_, seq_);
  if (!is_error_code(static_cast<std::uint32_t>(code))) {
    raise(ErrorCode::INVALID_ARGUMENT, "an error code 1.." + std::to_string(kMaxErrorCode),
          std::to_string(static_cast<std::uint32_t>(code)), "pass a shmbridge::ErrorCode");
  }
  core_->answer(static_cast<std::uint32_t>(code));
  answered_ = true;
}

}  // namespace shmbridge
