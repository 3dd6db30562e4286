#include "shmbridge/protocol.hpp"

namespace shmbridge {
namespace {

using K = Decision::Kind;

Decision error(ErrorCode code) noexcept {
  Decision d;
  d.kind = K::error;
  d.error = code;
  return d;
}
Decision wait() noexcept {
  Decision d;
  d.kind = K::wait;
  return d;
}
Decision transition(const char* id, Phase to, std::uint32_t seq, std::memory_order order) noexcept {
  Decision d;
  d.kind = K::transition;
  d.word = make_word(to, seq);
  d.id = id;
  d.order = order;
  return d;
}

constexpr auto IDLE = static_cast<std::uint32_t>(Phase::IDLE);
constexpr auto REQUESTED = static_cast<std::uint32_t>(Phase::REQUESTED);
constexpr auto REPLIED = static_cast<std::uint32_t>(Phase::REPLIED);
constexpr auto TAKEN = static_cast<std::uint32_t>(Phase::TAKEN);

}  // namespace

const char* phase_name(std::uint32_t bits) noexcept {
  switch (bits) {
    case IDLE:
      return "IDLE";
    case REQUESTED:
      return "REQUESTED";
    case REPLIED:
      return "REPLIED";
    case TAKEN:
      return "TAKEN";
    default:
      return "INVALID";
  }
}

bool phase_from_name(const std::string& name, Phase& out) noexcept {
  for (auto p : {Phase::IDLE, Phase::REQUESTED, Phase::REPLIED, Phase::TAKEN}) {
    if (name == phase_name(static_cast<std::uint32_t>(p))) {
      out = p;
      return true;
    }
  }
  return false;
}

const char* actor_name(Actor a) noexcept {
  return a == Actor::requester ? "requester" : "responder";
}

const char* op_name(Op op) noexcept {
  switch (op) {
    case Op::send:
      return "send";
    case Op::take:
      return "take";
    case Op::reply:
      return "reply";
    case Op::receive:
      return "receive";
    case Op::cancel:
      return "cancel";
    case Op::discard:
      return "discard";
    case Op::reclaim:
      return "reclaim";
    case Op::recover:
      return "recover";
  }
  return "?";
}

bool op_from_name(const std::string& name, Op& out) noexcept {
  for (auto op : {Op::send, Op::take, Op::reply, Op::receive, Op::cancel, Op::discard, Op::reclaim,
                  Op::recover}) {
    if (name == op_name(op)) {
      out = op;
      return true;
    }
  }
  return false;
}

Actor actor_of(Op op) noexcept {
  return (op == Op::take || op == Op::reply || op == Op::recover) ? Actor::responder
                                                                  : Actor::requester;
}

const char* peer_state_name(PeerState p) noexcept {
  switch (p) {
    case PeerState::empty:
      return "EMPTY";
    case PeerState::alive:
      return "ALIVE";
    case PeerState::closed:
      return "CLOSED";
    case PeerState::dead:
      return "DEAD";
  }
  return "?";
}

Decision decide(Actor actor, Op op, std::uint32_t word, const ActorState& st) noexcept {
  if (actor_of(op) != actor) return error(ErrorCode::OUT_OF_TURN);  // not this role's operation
  const std::uint32_t phase = phase_bits(word);
  const std::uint32_t seq = seq_of(word);

  // Preconditions on the actor, checked before the phase (§5).
  switch (op) {
    case Op::send:
      if (st.pending) return error(ErrorCode::OUT_OF_TURN);
      break;
    case Op::take:
      if (st.held) return error(ErrorCode::OUT_OF_TURN);
      break;
    case Op::reply:
      if (!st.held) return error(ErrorCode::OUT_OF_TURN);
      break;
    case Op::receive:
      if (!st.pending) return error(ErrorCode::OUT_OF_TURN);
      break;
    default:
      break;
  }
  if (!is_valid_phase(phase)) return error(ErrorCode::PROTOCOL_VIOLATION);  // R-STATE-1

  const bool own = st.pending && *st.pending == seq;
  switch (op) {
    case Op::send:  // T1
      // R-STATE-8: with nothing pending the requester owns the word in IDLE|last; only it moves
      // the word out of IDLE, so another phase (or another seq) is a rogue write.
      if (phase != IDLE) return error(ErrorCode::PROTOCOL_VIOLATION);
      if (st.last && *st.last != seq) return error(ErrorCode::PROTOCOL_VIOLATION);
      return transition("T1", Phase::REQUESTED, next_seq(seq), std::memory_order_release);
    case Op::take:  // T2, waits in IDLE and REPLIED
      if (phase == REQUESTED) return transition("T2", Phase::TAKEN, seq, std::memory_order_acquire);
      if (phase == IDLE || phase == REPLIED) {
        return peer_gone(st.peer) ? error(ErrorCode::PEER_GONE) : wait();
      }
      // TAKEN not held: R-REC-2 completed any predecessor's round at attach and no other
      // responder can hold the role (R-STATE-5), so this TAKEN is a rogue write (R-STATE-8).
      return error(ErrorCode::PROTOCOL_VIOLATION);
    case Op::reply:  // T3
      if (phase == TAKEN && seq == *st.held) {
        return transition("T3", Phase::REPLIED, seq, std::memory_order_release);
      }
      // R-STATE-8: the seq moved while this responder owned the payload.
      if (seq != *st.held) return error(ErrorCode::PROTOCOL_VIOLATION);
      return error(ErrorCode::OUT_OF_TURN);
    case Op::receive:  // T4, waits in REQUESTED and TAKEN
      // R-STATE-8: only the requester itself moves the word to IDLE, so IDLE while its request
      // is outstanding is a rogue write; R-STATE-6/8: never another seq's reply.
      if (phase == IDLE || !own) return error(ErrorCode::PROTOCOL_VIOLATION);
      if (phase == REPLIED) return transition("T4", Phase::IDLE, seq, std::memory_order_acquire);
      return peer_gone(st.peer) ? error(ErrorCode::PEER_GONE) : wait();
    case Op::cancel:  // T5
      if (phase == REQUESTED && (own || st.orphan_is_own)) {
        return transition("T5", Phase::IDLE, seq, std::memory_order_acq_rel);
      }
      return error(ErrorCode::OUT_OF_TURN);
    case Op::discard:  // T6
      if (phase == REPLIED && !own)
        return transition("T6", Phase::IDLE, seq, std::memory_order_acquire);
      return error(ErrorCode::OUT_OF_TURN);
    case Op::reclaim:  // T7
      if (phase == TAKEN && peer_dead(st.peer)) {
        return transition("T7", Phase::IDLE, seq, std::memory_order_acq_rel);
      }
      return error(ErrorCode::OUT_OF_TURN);
    case Op::recover:  // T8
      if (phase == TAKEN && !(st.held && *st.held == seq)) {
        return transition("T8", Phase::REPLIED, seq, std::memory_order_release);
      }
      return error(ErrorCode::OUT_OF_TURN);
  }
  return error(ErrorCode::OUT_OF_TURN);
}

// ---- Model ----------------------------------------------------------------------------------

bool operator==(const Model::State& a, const Model::State& b) noexcept {
  return a.word == b.word && a.reply_code == b.reply_code && a.pending == b.pending &&
         a.timed_out == b.timed_out && a.last == b.last && a.held == b.held &&
         a.requester_open == b.requester_open && a.responder_open == b.responder_open &&
         a.requester_slot == b.requester_slot && a.responder_slot == b.responder_slot;
}

Model Model::fresh_pair(std::uint32_t initial_seq) {
  State s;
  s.word = make_word(Phase::IDLE, initial_seq);
  s.last = initial_seq & kSeqMask;
  s.requester_open = s.responder_open = true;
  s.requester_slot = s.responder_slot = PeerState::alive;
  return Model(s);
}

ActorState Model::requester_view() const noexcept {
  ActorState st;
  st.pending = s_.pending;
  st.last = s_.last;
  st.peer = s_.responder_slot;
  return st;
}

ActorState Model::responder_view() const noexcept {
  ActorState st;
  st.held = s_.held;
  st.peer = s_.requester_slot;
  return st;
}

bool Model::apply(Actor actor, Op op, const ActorState& st, Decision* out) {
  Decision d = decide(actor, op, s_.word, st);
  if (out) *out = d;
  if (!d.is_transition()) return false;
  s_.word = d.word;
  return true;
}

ErrorCode Model::send() {
  if (!s_.requester_open) return ErrorCode::OUT_OF_TURN;
  // R-STATE-10: consume a late reply to the own timed-out request first (result dropped). A
  // request whose receive never timed out keeps its reply (spec/vectors D6).
  if (s_.pending && s_.timed_out && phase_bits(s_.word) == REPLIED &&
      apply(Actor::requester, Op::receive, requester_view())) {
    s_.pending.reset();
    s_.timed_out = false;
    s_.last = seq_of(s_.word);
  }
  Decision d;
  if (!apply(Actor::requester, Op::send, requester_view(), &d)) return d.error;
  s_.pending = s_.last = seq_of(s_.word);
  s_.timed_out = false;
  s_.reply_code = 0;
  return ErrorCode::ok;
}

ErrorCode Model::take() {
  if (!s_.responder_open) return ErrorCode::OUT_OF_TURN;
  Decision d;
  if (apply(Actor::responder, Op::take, responder_view(), &d)) {
    s_.held = seq_of(s_.word);
    return ErrorCode::ok;
  }
  return d.is_wait() ? ErrorCode::TIMEOUT : d.error;  // R-TIME-3: word unchanged
}

ErrorCode Model::finish_reply(std::uint32_t code) {
  if (!s_.responder_open) return ErrorCode::OUT_OF_TURN;
  Decision d;
  if (!apply(Actor::responder, Op::reply, responder_view(), &d)) return d.error;
  s_.held.reset();
  s_.reply_code = code;
  return ErrorCode::ok;
}

ErrorCode Model::reply() { return finish_reply(0); }
ErrorCode Model::reply_error(ErrorCode code) {
  return finish_reply(static_cast<std::uint32_t>(code));
}

ErrorCode Model::receive() {
  if (!s_.requester_open) return ErrorCode::OUT_OF_TURN;
  Decision d;
  auto consumed = [this] {
    s_.pending.reset();
    s_.timed_out = false;
    s_.last = seq_of(s_.word);
  };
  if (apply(Actor::requester, Op::receive, requester_view(), &d)) {
    consumed();
    return s_.reply_code ? static_cast<ErrorCode>(s_.reply_code) : ErrorCode::ok;  // R-MSG-2
  }
  if (d.is_wait()) {
    // R-TIME-2: withdraw a request that is still REQUESTED; keep a TAKEN one outstanding.
    if (apply(Actor::requester, Op::cancel, requester_view())) {
      consumed();
    } else {
      s_.timed_out = true;
    }
    return ErrorCode::TIMEOUT;
  }
  if (d.error == ErrorCode::PEER_GONE) {
    // R-LIVE-3: withdraw (T5) or reclaim (T7) before raising PEER_GONE.
    if (apply(Actor::requester, Op::cancel, requester_view()) ||
        apply(Actor::requester, Op::reclaim, requester_view())) {
      consumed();
    }
  }
  return d.error;
}

ErrorCode Model::close(Actor actor) {
  if (actor == Actor::requester) {
    if (!s_.requester_open) return ErrorCode::ok;  // R-CLOSE-1: idempotent
    s_.requester_open = false;
    s_.pending.reset();  // R-CLOSE-2: the request stays in the word
    s_.timed_out = false;
    s_.last.reset();
    s_.requester_slot = PeerState::closed;
  } else {
    if (!s_.responder_open) return ErrorCode::ok;
    if (s_.held) finish_reply(static_cast<std::uint32_t>(ErrorCode::PEER_GONE));  // R-CLOSE-2
    s_.responder_open = false;
    s_.responder_slot = PeerState::closed;
  }
  return ErrorCode::ok;
}

void Model::kill(Actor actor) noexcept {
  if (actor == Actor::requester) {
    if (!s_.requester_open) return;
    s_.requester_open = false;
    s_.pending.reset();
    s_.timed_out = false;
    s_.last.reset();
    s_.requester_slot = PeerState::dead;
  } else {
    if (!s_.responder_open) return;
    s_.responder_open = false;
    s_.held.reset();
    s_.responder_slot = PeerState::dead;
  }
}

ErrorCode Model::attach(Actor actor) {
  if (actor == Actor::requester) {
    if (s_.requester_open) return ErrorCode::ROLE_TAKEN;  // R-STATE-5, R-LIVE-1
    // R-REC-1: bring the channel back to IDLE before the first send.
    ActorState st;
    st.peer = s_.responder_slot;
    st.orphan_is_own = true;
    const std::uint32_t phase = phase_bits(s_.word);
    if (phase == REQUESTED) {
      apply(Actor::requester, Op::cancel, st);
    } else if (phase == REPLIED) {
      apply(Actor::requester, Op::discard, st);
    } else if (phase == TAKEN) {
      if (!apply(Actor::requester, Op::reclaim, st)) {
        // Wait for the late reply; with timeout 0 the attach deadline has passed: fail with
        // TIMEOUT and release the slot.
        s_.requester_slot = PeerState::closed;
        return ErrorCode::TIMEOUT;
      }
    }
    // R-STATE-11: a phase outside the table does not fail the attach; the first operation that
    // reads it reports PROTOCOL_VIOLATION.
    s_.requester_open = true;
    s_.pending.reset();
    s_.timed_out = false;
    s_.last = seq_of(s_.word);
    s_.requester_slot = PeerState::alive;
  } else {
    if (s_.responder_open) return ErrorCode::ROLE_TAKEN;
    s_.responder_open = true;
    s_.held.reset();
    s_.responder_slot = PeerState::alive;
    // R-REC-2: complete a round left TAKEN by a dead predecessor with reply_code = PEER_GONE.
    if (apply(Actor::responder, Op::recover, responder_view())) {
      s_.reply_code = static_cast<std::uint32_t>(ErrorCode::PEER_GONE);
    }
  }
  return ErrorCode::ok;
}

}  // namespace shmbridge
