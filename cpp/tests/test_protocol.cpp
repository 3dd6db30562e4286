// R-STATE-*, §5: the pure transition function agrees with every row of spec/transitions.json and
// rejects every other (actor, op, phase, guard) combination.
#include <set>

#include "test_util.hpp"

using namespace shmbridge;
using namespace shmbridge::test;
using nlohmann::json;

namespace {

std::uint32_t phase_value(const json& transitions, const std::string& name) {
  return transitions["phases"][name]["bits"];
}

// The guards of transitions.json, evaluated independently of decide().
// `own` of T5 also holds for an orphan request on attach (R-REC-1).
bool guard_holds(const std::string& guard, std::uint32_t seq, const ActorState& st, Op op) {
  if (guard == "none") return true;
  if (guard == "none_pending") return !st.pending;
  if (guard == "own") {
    return (st.pending && *st.pending == seq) || (op == Op::cancel && st.orphan_is_own);
  }
  if (guard == "not_own") return !(st.pending && *st.pending == seq);
  if (guard == "held") return st.held && *st.held == seq;
  if (guard == "not_held") return !(st.held && *st.held == seq);
  if (guard == "peer_dead") return st.peer != PeerState::alive;
  ADD_FAILURE() << "unknown guard " << guard;
  return false;
}

bool precondition_holds(const json& transitions, const std::string& op, const ActorState& st) {
  const auto& pre = transitions["preconditions"];
  if (!pre.contains(op)) return true;
  const std::string p = pre[op];
  if (p == "none_pending") return !st.pending;
  if (p == "responder_holds_nothing") return !st.held;
  if (p == "responder_holds_request") return static_cast<bool>(st.held);
  if (p == "has_pending") return static_cast<bool>(st.pending);
  ADD_FAILURE() << "unknown precondition " << p;
  return false;
}

std::vector<ActorState> all_actor_states(std::uint32_t seq) {
  std::vector<ActorState> out;
  const std::vector<std::optional<std::uint32_t>> seqs = {std::nullopt, seq, seq + 1};
  const std::vector<std::optional<std::uint32_t>> lasts = {std::nullopt, seq, seq - 1};
  for (auto pending : seqs)
    for (auto held : seqs)
      for (auto peer : {PeerState::empty, PeerState::alive, PeerState::closed, PeerState::dead})
        for (bool orphan : {false, true})
          for (auto last : lasts) {
            ActorState st;
            st.pending = pending;
            st.held = held;
            st.peer = peer;
            st.orphan_is_own = orphan;
            st.last = last;
            out.push_back(st);
          }
  return out;
}

std::string describe(const ActorState& st) {
  auto o = [](const std::optional<std::uint32_t>& v) { return v ? std::to_string(*v) : "none"; };
  return "pending=" + o(st.pending) + " held=" + o(st.held) + " peer=" + peer_state_name(st.peer) +
         " orphan=" + std::to_string(st.orphan_is_own) + " last=" + o(st.last);
}

}  // namespace

// R-STATE-1
TEST(Protocol, R_STATE_1_WordEncoding) {
  const auto t = load_spec("transitions.json");
  EXPECT_EQ(t["word"]["phase_mask"].get<std::uint32_t>(), kPhaseMask);
  EXPECT_EQ(t["word"]["seq_shift"].get<std::uint32_t>(), kSeqShift);
  EXPECT_EQ(t["word"]["seq_bits"].get<std::uint32_t>(), kSeqBits);
  EXPECT_EQ(t["word"]["status_mask"].get<std::uint32_t>(), kStatusMask);
  EXPECT_EQ(t["word"]["initial"].get<std::uint32_t>(), 0u);
  for (auto& [name, p] : t["phases"].items()) {
    Phase parsed;
    ASSERT_TRUE(phase_from_name(name, parsed));
    EXPECT_EQ(static_cast<std::uint32_t>(parsed), p["bits"].get<std::uint32_t>());
    EXPECT_EQ(status_of(make_word(parsed, 12345)), p["status"].get<std::uint32_t>()) << name;
  }
  EXPECT_EQ(make_word(Phase::TAKEN, 3), 0x34u);
  EXPECT_EQ(seq_of(0x34u), 3u);
  EXPECT_EQ(phase_bits(0x34u), 4u);
  EXPECT_EQ(next_seq(kSeqMask), 0u);  // 28-bit wrap
  EXPECT_EQ(seq_of(make_word(Phase::IDLE, kSeqMask)), kSeqMask);
  std::set<std::uint32_t> valid;
  for (std::uint32_t b = 0; b < 16; ++b)
    if (is_valid_phase(b)) valid.insert(b);
  EXPECT_EQ(valid, (std::set<std::uint32_t>{0, 1, 2, 4}));
}

// R-STATE-2, §5 every row: the transition happens with the row's target, seq rule and ordering.
TEST(Protocol, R_STATE_2_EveryRowOfTransitionsJson) {
  const auto t = load_spec("transitions.json");
  ASSERT_EQ(t["transitions"].size(), 8u);
  for (const auto& row : t["transitions"]) {
    SCOPED_TRACE(row["id"].get<std::string>());
    Op op;
    ASSERT_TRUE(op_from_name(row["op"], op));
    const Actor actor = row["actor"] == "requester" ? Actor::requester : Actor::responder;
    EXPECT_EQ(actor_of(op), actor);
    const std::uint32_t from = phase_value(t, row["from"]);
    const std::uint32_t to = phase_value(t, row["to"]);
    for (std::uint32_t seq : {0u, 7u, kSeqMask}) {
      const std::uint32_t word = (seq << kSeqShift) | from;
      int performed = 0;
      for (const auto& st : all_actor_states(seq)) {
        if (!precondition_holds(t, row["op"], st) || !guard_holds(row["guard"], seq, st, op))
          continue;
        if (op == Op::send && st.last && *st.last != seq) continue;  // R-STATE-8 (see below)
        const Decision d = decide(actor, op, word, st);
        ASSERT_TRUE(d.is_transition()) << describe(st);
        ++performed;
        EXPECT_EQ(phase_bits(d.word), to);
        EXPECT_EQ(seq_of(d.word), row["seq"] == "increment" ? next_seq(seq) : seq);
        EXPECT_STREQ(d.id, row["id"].get<std::string>().c_str());
        const std::string order = row["order"];
        const std::memory_order want = order == "release"   ? std::memory_order_release
                                       : order == "acquire" ? std::memory_order_acquire
                                                            : std::memory_order_acq_rel;
        EXPECT_EQ(d.order, want);
      }
      EXPECT_GT(performed, 0);
    }
  }
}

// §5 "otherwise": every other (actor, op, phase, guard, precondition) is rejected, waits only in
// `waits in` phases, and never changes the word (decide has no side effects; the word it proposes
// is only used for transitions). R-STATE-7, R-STATE-8, R-WAIT-5, R-LIVE-3.
TEST(Protocol, R_STATE_7_EverythingElseIsRejected) {
  const auto t = load_spec("transitions.json");
  std::map<std::string, json> rows;
  for (const auto& row : t["transitions"]) rows[row["op"]] = row;
  std::size_t checked = 0, transitions = 0, waits = 0, errors = 0;
  for (Actor actor : {Actor::requester, Actor::responder}) {
    for (Op op : {Op::send, Op::take, Op::reply, Op::receive, Op::cancel, Op::discard, Op::reclaim,
                  Op::recover}) {
      const json& row = rows.at(op_name(op));
      const bool right_actor = row["actor"] == actor_name(actor);
      for (std::uint32_t phase = 0; phase < 16; ++phase) {
        const std::uint32_t seq = 9;
        const std::uint32_t word = (seq << kSeqShift) | phase;
        for (const auto& st : all_actor_states(seq)) {
          SCOPED_TRACE(std::string(actor_name(actor)) + " " + op_name(op) + " phase " +
                       std::to_string(phase) + " " + describe(st));
          const Decision d = decide(actor, op, word, st);
          ++checked;
          const bool pre = precondition_holds(t, op_name(op), st);
          const bool valid = is_valid_phase(phase);
          const bool from = phase == phase_value(t, row["from"]);
          bool in_waits = false;
          for (const auto& w : row["waits_in"]) in_waits |= phase == phase_value(t, w);
          if (!right_actor || !pre) {
            EXPECT_TRUE(d.is_error());
            EXPECT_EQ(d.error, ErrorCode::OUT_OF_TURN);
            ++errors;
            continue;
          }
          if (!valid) {
            EXPECT_TRUE(d.is_error());
            EXPECT_EQ(d.error, ErrorCode::PROTOCOL_VIOLATION);  // R-STATE-1
            ++errors;
            continue;
          }
          const bool own = st.pending && *st.pending == seq;
          // R-STATE-8 additions to the table: a receive that finds another seq or IDLE under its
          // outstanding request, a reply whose held seq moved, a send (nothing pending) that
          // finds a phase other than IDLE or an IDLE seq that jumped, a take (holding nothing)
          // that finds TAKEN (spec/vectors D15).
          const bool violation =
              (op == Op::receive && (phase == 0 || !own)) || (op == Op::reply && *st.held != seq) ||
              (op == Op::send && (phase != 0 || (st.last && *st.last != seq))) ||
              (op == Op::take && phase == static_cast<std::uint32_t>(Phase::TAKEN));
          if (from && guard_holds(row["guard"], seq, st, op) && !violation) {
            EXPECT_TRUE(d.is_transition());
            ++transitions;
          } else if (violation) {
            EXPECT_TRUE(d.is_error());
            EXPECT_EQ(d.error, ErrorCode::PROTOCOL_VIOLATION);
            ++errors;
          } else if (in_waits) {
            if (peer_gone(st.peer)) {
              EXPECT_TRUE(d.is_error());
              EXPECT_EQ(d.error, ErrorCode::PEER_GONE);
              ++errors;
            } else {
              EXPECT_TRUE(d.is_wait());
              ++waits;
            }
          } else {
            EXPECT_TRUE(d.is_error());
            EXPECT_EQ(d.error, ErrorCode::OUT_OF_TURN);
            ++errors;
          }
        }
      }
    }
  }
  EXPECT_EQ(checked, transitions + waits + errors);
  EXPECT_GT(transitions, 0u);
  EXPECT_GT(waits, 0u);
}

// R-WAIT-5: the peer's liveness is checked before the deadline; an EMPTY peer does not end a wait.
TEST(Protocol, R_WAIT_5_PeerLivenessBeforeDeadline) {
  ActorState st;
  st.pending = 3;
  st.peer = PeerState::empty;
  EXPECT_TRUE(decide(Actor::requester, Op::receive, make_word(Phase::REQUESTED, 3), st).is_wait());
  st.peer = PeerState::closed;
  EXPECT_EQ(decide(Actor::requester, Op::receive, make_word(Phase::TAKEN, 3), st).error,
            ErrorCode::PEER_GONE);
  // ... but a transition that is possible wins over a gone peer.
  EXPECT_TRUE(
      decide(Actor::requester, Op::receive, make_word(Phase::REPLIED, 3), st).is_transition());
  ActorState rsp;
  rsp.peer = PeerState::dead;
  EXPECT_EQ(decide(Actor::responder, Op::take, make_word(Phase::IDLE, 3), rsp).error,
            ErrorCode::PEER_GONE);
  EXPECT_TRUE(
      decide(Actor::responder, Op::take, make_word(Phase::REQUESTED, 3), rsp).is_transition());
}

// R-STATE-6: a reply with another seq is never returned.
TEST(Protocol, R_STATE_6_ReplyWithOtherSeqIsViolation) {
  ActorState st;
  st.pending = 4;
  const Decision d = decide(Actor::requester, Op::receive, make_word(Phase::REPLIED, 5), st);
  EXPECT_EQ(d.error, ErrorCode::PROTOCOL_VIOLATION);
}

// Model: one round shows status 0,1,0,2,0 (R-STATE-1) and seq +1.
TEST(Protocol, R_STATE_1_ModelRoundStatusSequence) {
  Model m = Model::fresh_pair();
  std::vector<std::uint32_t> status = {status_of(m.state().word)};
  EXPECT_EQ(m.send(), ErrorCode::ok);
  status.push_back(status_of(m.state().word));
  EXPECT_EQ(m.take(), ErrorCode::ok);
  status.push_back(status_of(m.state().word));
  EXPECT_EQ(m.reply(), ErrorCode::ok);
  status.push_back(status_of(m.state().word));
  EXPECT_EQ(m.receive(), ErrorCode::ok);
  status.push_back(status_of(m.state().word));
  EXPECT_EQ(status, (std::vector<std::uint32_t>{0, 1, 0, 2, 0}));
  EXPECT_EQ(m.state().word, make_word(Phase::IDLE, 1));
}

// R-REC-2 in the model: a responder restarted over TAKEN replies PEER_GONE for its predecessor.
TEST(Protocol, R_REC_2_ModelResponderRecovers) {
  Model m = Model::fresh_pair();
  ASSERT_EQ(m.send(), ErrorCode::ok);
  ASSERT_EQ(m.take(), ErrorCode::ok);
  m.kill(Actor::responder);
  EXPECT_EQ(m.attach(Actor::responder), ErrorCode::ok);
  EXPECT_EQ(m.state().word, make_word(Phase::REPLIED, 1));
  EXPECT_EQ(m.receive(), ErrorCode::PEER_GONE);
  EXPECT_EQ(m.send(), ErrorCode::ok);
}

// R-LIVE-3 in the model: a dead responder holding the request is reclaimed (T7).
TEST(Protocol, R_LIVE_3_ModelReclaimsFromDeadResponder) {
  Model m = Model::fresh_pair();
  ASSERT_EQ(m.send(), ErrorCode::ok);
  ASSERT_EQ(m.take(), ErrorCode::ok);
  m.kill(Actor::responder);
  EXPECT_EQ(m.receive(), ErrorCode::PEER_GONE);
  EXPECT_EQ(m.state().word, make_word(Phase::IDLE, 1));
  EXPECT_FALSE(m.state().pending);
}

// R-STATE-8 (spec/vectors D15): the words no legal move of the other role can produce from what
// the actor last saw are PROTOCOL_VIOLATION, not OUT_OF_TURN.
TEST(Protocol, R_STATE_8_DecidedViolations) {
  ActorState req;  // nothing pending, owns IDLE|3
  req.last = 3;
  for (Phase p : {Phase::REQUESTED, Phase::TAKEN, Phase::REPLIED}) {
    SCOPED_TRACE(phase_name(static_cast<std::uint32_t>(p)));
    EXPECT_EQ(decide(Actor::requester, Op::send, make_word(p, 3), req).error,
              ErrorCode::PROTOCOL_VIOLATION);
    EXPECT_EQ(decide(Actor::requester, Op::send, make_word(p, 4), req).error,
              ErrorCode::PROTOCOL_VIOLATION);
  }
  EXPECT_TRUE(decide(Actor::requester, Op::send, make_word(Phase::IDLE, 3), req).is_transition());
  ActorState pending;  // request #4 outstanding: only this requester moves the word to IDLE
  pending.pending = 4;
  EXPECT_EQ(decide(Actor::requester, Op::receive, make_word(Phase::IDLE, 4), pending).error,
            ErrorCode::PROTOCOL_VIOLATION);
  EXPECT_EQ(decide(Actor::requester, Op::receive, make_word(Phase::IDLE, 3), pending).error,
            ErrorCode::PROTOCOL_VIOLATION);
  ActorState rsp;  // responder holding nothing: R-REC-2 completed any predecessor's round
  EXPECT_EQ(decide(Actor::responder, Op::take, make_word(Phase::TAKEN, 4), rsp).error,
            ErrorCode::PROTOCOL_VIOLATION);
  rsp.held = 4;  // reply whose held seq moved
  EXPECT_EQ(decide(Actor::responder, Op::reply, make_word(Phase::TAKEN, 5), rsp).error,
            ErrorCode::PROTOCOL_VIOLATION);
  // Still out of turn: the precondition fails first (R-STATE-7).
  EXPECT_EQ(decide(Actor::responder, Op::take, make_word(Phase::TAKEN, 4), rsp).error,
            ErrorCode::OUT_OF_TURN);
}

// R-STATE-11 in the model: a requester and a responder attach over a phase outside the table; the
// first operation reports PROTOCOL_VIOLATION and changes nothing.
TEST(Protocol, R_STATE_11_ModelAttachOverInvalidPhase) {
  Model m = Model::fresh_pair();
  m.close(Actor::requester);
  m.close(Actor::responder);
  m.poke_word(0x13);
  EXPECT_EQ(m.attach(Actor::requester), ErrorCode::ok);
  EXPECT_EQ(m.attach(Actor::responder), ErrorCode::ok);
  EXPECT_EQ(m.state().word, 0x13u);
  EXPECT_EQ(m.send(), ErrorCode::PROTOCOL_VIOLATION);
  EXPECT_EQ(m.take(), ErrorCode::PROTOCOL_VIOLATION);
  EXPECT_EQ(m.state().word, 0x13u);
  m.poke_word(make_word(Phase::IDLE, 1));
  EXPECT_EQ(m.send(), ErrorCode::ok);
}

// R-STATE-4: transitions that publish data (send, reply, recover) are release, those that consume
// it (take, receive, discard) acquire, the others (cancel, reclaim) acquire-release; checked
// against the text of R-STATE-4, independently of transitions.json.
TEST(Protocol, R_STATE_4_MemoryOrderOfEachTransition) {
  struct Case {
    Actor actor;
    Op op;
    Phase from;
    ActorState st;
    std::memory_order want;
  };
  ActorState none, own, held, gone;
  none.last = 3;
  own.pending = 3;
  held.held = 3;
  gone.pending = 3;
  gone.peer = PeerState::dead;
  const Case cases[] = {
      {Actor::requester, Op::send, Phase::IDLE, none, std::memory_order_release},
      {Actor::responder, Op::reply, Phase::TAKEN, held, std::memory_order_release},
      {Actor::responder, Op::recover, Phase::TAKEN, ActorState{}, std::memory_order_release},
      {Actor::responder, Op::take, Phase::REQUESTED, ActorState{}, std::memory_order_acquire},
      {Actor::requester, Op::receive, Phase::REPLIED, own, std::memory_order_acquire},
      {Actor::requester, Op::discard, Phase::REPLIED, ActorState{}, std::memory_order_acquire},
      {Actor::requester, Op::cancel, Phase::REQUESTED, own, std::memory_order_acq_rel},
      {Actor::requester, Op::reclaim, Phase::TAKEN, gone, std::memory_order_acq_rel},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(op_name(c.op));
    const Decision d = decide(c.actor, c.op, make_word(c.from, 3), c.st);
    ASSERT_TRUE(d.is_transition());
    EXPECT_EQ(d.order, c.want);
  }
}
