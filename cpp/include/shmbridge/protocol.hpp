// The control word and the pure transition function (spec/PROTOCOL.md §4-§5, transitions.json).
//
// Nothing in this file touches the OS. `decide` is the single decision procedure for one primitive
// operation (T1..T8 plus the R-WAIT-5 evaluation order); the channel calls it on every attempt and
// `Model` composes it into the public operations with timeout 0, which the stateful tests use as
// their model.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

#include "shmbridge/errors.hpp"

namespace shmbridge {

// R-STATE-1: phase bits 0-3.
enum class Phase : std::uint32_t { IDLE = 0x0, REQUESTED = 0x1, REPLIED = 0x2, TAKEN = 0x4 };

inline constexpr std::uint32_t kPhaseMask = 0xF;
inline constexpr std::uint32_t kSeqShift = 4;
inline constexpr std::uint32_t kSeqBits = 28;
inline constexpr std::uint32_t kSeqMask = (1u << kSeqBits) - 1;
inline constexpr std::uint32_t kStatusMask = 3;

constexpr std::uint32_t phase_bits(std::uint32_t word) noexcept { return word & kPhaseMask; }
constexpr std::uint32_t seq_of(std::uint32_t word) noexcept { return word >> kSeqShift; }
constexpr std::uint32_t status_of(std::uint32_t word) noexcept { return word & kStatusMask; }
constexpr std::uint32_t make_word(Phase phase, std::uint32_t seq) noexcept {
  return ((seq & kSeqMask) << kSeqShift) | static_cast<std::uint32_t>(phase);
}
// The sequence number after `seq` (28 bits, wrapping).
constexpr std::uint32_t next_seq(std::uint32_t seq) noexcept { return (seq + 1) & kSeqMask; }
constexpr bool is_valid_phase(std::uint32_t bits) noexcept {
  return bits == 0x0 || bits == 0x1 || bits == 0x2 || bits == 0x4;
}
const char* phase_name(std::uint32_t bits) noexcept;  // "IDLE", ...; "INVALID" otherwise
bool phase_from_name(const std::string& name, Phase& out) noexcept;

enum class Actor { requester, responder };
enum class Op { send, take, reply, receive, cancel, discard, reclaim, recover };
const char* actor_name(Actor a) noexcept;
const char* op_name(Op op) noexcept;
bool op_from_name(const std::string& name, Op& out) noexcept;
// The role that performs `op` (transitions.json "ops").
Actor actor_of(Op op) noexcept;

// What an actor knows about the other role's liveness slot (§3.3, §7).
enum class PeerState {
  empty,   // slot EMPTY: no peer yet; does not end a wait (R-LIVE-3)
  alive,   // slot ATTACHED and the process is alive
  closed,  // slot CLOSED: detached cleanly
  dead,    // slot ATTACHED but the process is dead
};
// Ends a wait with PEER_GONE (R-LIVE-3, R-LIVE-4).
constexpr bool peer_gone(PeerState p) noexcept {
  return p == PeerState::closed || p == PeerState::dead;
}
// The `peer dead` guard of T7: not ATTACHED with a live process.
constexpr bool peer_dead(PeerState p) noexcept { return p != PeerState::alive; }
const char* peer_state_name(PeerState p) noexcept;

// The actor-local part of the model state.
struct ActorState {
  std::optional<std::uint32_t> pending;  // requester: seq of its outstanding request
  std::optional<std::uint32_t> held;     // responder: seq it took and has not replied to
  PeerState peer = PeerState::empty;     // the other role's slot
  bool orphan_is_own = false;            // R-REC-1: on attach, an orphan request counts as own
  // requester: the seq it last observed while owning the payload (IDLE). A send that finds IDLE
  // with another seq reports PROTOCOL_VIOLATION (R-STATE-8: only the requester moves to IDLE).
  std::optional<std::uint32_t> last;
};

struct Decision {
  enum class Kind { transition, wait, error };
  Kind kind = Kind::error;
  std::uint32_t word = 0;                               // transition: the new word
  ErrorCode error = ErrorCode::ok;                      // error: the code to report
  const char* id = "";                                  // transition: "T1".."T8"
  std::memory_order order = std::memory_order_seq_cst;  // transition: minimum ordering (R-STATE-4)

  bool is_transition() const noexcept { return kind == Kind::transition; }
  bool is_wait() const noexcept { return kind == Kind::wait; }
  bool is_error() const noexcept { return kind == Kind::error; }
};

// R-WAIT-5 evaluation of one attempt of `op` by `actor` on control word `word`:
// precondition (OUT_OF_TURN); the transition if the phase is `from` and the guard holds; in a
// `waits in` phase the peer's liveness (PEER_GONE), else Kind::wait (the caller applies the
// deadline); anything else OUT_OF_TURN or PROTOCOL_VIOLATION (R-STATE-7, R-STATE-8).
Decision decide(Actor actor, Op op, std::uint32_t word, const ActorState& state) noexcept;

// The whole protocol state seen by an observer of one segment with one requester and one responder
// handle, and the public operations with timeout 0 (spec/vectors/README.md "sequences").
class Model {
 public:
  struct State {
    std::uint32_t word = 0;
    std::uint32_t reply_code = 0;
    std::optional<std::uint32_t> pending;  // open requester handle's outstanding seq
    bool timed_out = false;                // ... whose receive timed out (R-STATE-10)
    std::optional<std::uint32_t> last;     // ... last seq it observed owning IDLE (R-STATE-8)
    std::optional<std::uint32_t> held;     // open responder handle's held seq
    bool requester_open = false;
    bool responder_open = false;
    PeerState requester_slot = PeerState::empty;  // as the responder sees it
    PeerState responder_slot = PeerState::empty;  // as the requester sees it
    friend bool operator==(const State& a, const State& b) noexcept;
  };

  Model() = default;
  explicit Model(const State& s) : s_(s) {}
  // The harness of spec/vectors/README.md: a fresh segment with word IDLE|initial_seq, created
  // by an open requester handle, and an open responder handle attached.
  static Model fresh_pair(std::uint32_t initial_seq = 0);
  const State& state() const noexcept { return s_; }
  State& state() noexcept { return s_; }

  // Each returns ErrorCode::ok or the error the real handle must raise; the state afterwards is
  // what the real segment and handles must show.
  ErrorCode send();
  ErrorCode take();
  ErrorCode reply();
  ErrorCode reply_error(ErrorCode code);
  ErrorCode receive();
  ErrorCode close(Actor actor);
  ErrorCode attach(Actor actor);
  void poke_word(std::uint32_t word) noexcept { s_.word = word; }
  // A role's process dies without closing (its slot stays ATTACHED with a dead pid).
  void kill(Actor actor) noexcept;

 private:
  bool apply(Actor actor, Op op, const ActorState& st, Decision* out = nullptr);
  ActorState requester_view() const noexcept;
  ActorState responder_view() const noexcept;
  ErrorCode finish_reply(std::uint32_t code);
  State s_;
};

}  // namespace shmbridge
