// libFuzzer target: the pure transition function (spec/PROTOCOL.md §4-§5, shmbridge::decide) and
// the model composed from it (shmbridge::Model), driven by arbitrary operation sequences.
//
// Part 1, one byte string = one sequence of public operations on Model::fresh_pair(seq) including
// close/attach/kill of either role and rogue stores to the word. Invariants after every step:
//   - the word is always in the table (R-STATE-1): a non-rogue step never produces a phase outside
//     it, and a word a rogue left outside it is never changed by a legal actor;
//   - ownership is never shared (R-STATE-3): the responder holds seq s only while the word is
//     TAKEN|s, the requester owns the payload (open, nothing pending) only while the word is IDLE,
//     and the two never own it at the same time;
//   - replies only for own seq (R-STATE-6): a receive that consumes a reply consumed REPLIED|own;
//   - seq moves only by send, by exactly +1 mod 2^28 (R-STATE-1/2).
// Until the first rogue store all of them must hold exactly; afterwards only the first (the
// protocol cannot promise ownership after a rogue writer, R-STATE-8).
// Part 2, decide() on arbitrary (actor, op, word, actor state): a transition leaves the current
// phase for a phase in the table, moves seq only for T1 (+1), and never fires from a phase
// outside the table.
#include <cstdint>
#include <cstring>
#include <optional>

#include "fuzz_check.hpp"
#include "shmbridge/protocol.hpp"

using namespace shmbridge;

namespace {

struct Input {
  const std::uint8_t* p;
  std::size_t n;
  std::uint8_t u8() {
    if (!n) return 0;
    --n;
    return *p++;
  }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= std::uint32_t{u8()} << (8 * i);
    return v;
  }
};

std::optional<std::uint32_t> opt_seq(Input& in) {
  const std::uint8_t k = in.u8();
  if (k & 1) return std::nullopt;
  return in.u32() & kSeqMask;
}

void fuzz_decide(Input& in) {
  const Actor actor = (in.u8() & 1) ? Actor::responder : Actor::requester;
  const Op op = static_cast<Op>(in.u8() % 8);
  const std::uint32_t word = in.u32();
  ActorState st;
  st.pending = opt_seq(in);
  st.held = opt_seq(in);
  st.last = opt_seq(in);
  st.peer = static_cast<PeerState>(in.u8() % 4);
  st.orphan_is_own = in.u8() & 1;
  const Decision d = decide(actor, op, word, st);
  if (d.is_transition()) {
    CHECK(is_valid_phase(phase_bits(word)));
    CHECK(is_valid_phase(phase_bits(d.word)));
    CHECK(phase_bits(d.word) != phase_bits(word));
    CHECK(actor_of(op) == actor);
    if (op == Op::send) {
      CHECK(seq_of(d.word) == next_seq(seq_of(word)));
    } else {
      CHECK(seq_of(d.word) == seq_of(word));
    }
  } else if (d.is_error()) {
    CHECK(d.error != ErrorCode::ok);
  }
}

bool in_table(std::uint32_t w) { return is_valid_phase(phase_bits(w)); }

void check_ownership(const Model::State& s) {
  const std::uint32_t phase = phase_bits(s.word);
  if (s.held) CHECK(s.word == make_word(Phase::TAKEN, *s.held));
  const bool req_owns = s.requester_open && !s.pending;
  if (req_owns) CHECK(phase == static_cast<std::uint32_t>(Phase::IDLE));
  CHECK(!(req_owns && s.held));
  if (s.pending) {
    CHECK(phase != static_cast<std::uint32_t>(Phase::IDLE));
    CHECK(seq_of(s.word) == *s.pending);
  }
}

void fuzz_model(Input& in) {
  const std::uint32_t initial = in.u32() & kSeqMask;
  Model m = Model::fresh_pair(initial);
  bool rogue = false;
  for (int step = 0; step < 256 && in.n; ++step) {
    const Model::State before = m.state();
    const std::uint8_t op = in.u8() % 13;
    ErrorCode r = ErrorCode::ok;
    bool consumed_reply = false;
    switch (op) {
      case 0:
      case 1:
        r = m.send();
        break;
      case 2:
      case 3:
        r = m.take();
        break;
      case 4:
        r = m.reply();
        break;
      case 5:
        r = m.reply_error(static_cast<ErrorCode>(1 + in.u8() % kMaxErrorCode));
        break;
      case 6:
      case 7:
        r = m.receive();
        consumed_reply = before.pending && !m.state().pending &&
                         phase_bits(before.word) == static_cast<std::uint32_t>(Phase::REPLIED) &&
                         phase_bits(m.state().word) == static_cast<std::uint32_t>(Phase::IDLE) &&
                         seq_of(before.word) == seq_of(m.state().word);
        break;
      case 8:
        r = m.close((in.u8() & 1) ? Actor::responder : Actor::requester);
        break;
      case 9:
        r = m.attach((in.u8() & 1) ? Actor::responder : Actor::requester);
        break;
      case 10:
        m.kill((in.u8() & 1) ? Actor::responder : Actor::requester);
        break;
      case 11: {  // a rogue store: any value, or a legal-looking one with a shifted seq
        const std::uint8_t k = in.u8();
        const std::uint32_t v = in.u32();
        m.poke_word((k & 1) ? v
                            : make_word(static_cast<Phase>(std::uint32_t{1} << (k % 3) & 7),
                                        seq_of(m.state().word) + (v & 3)));
        rogue = true;
        continue;
      }
      default:
        r = m.receive();  // extra weight on the requester's wait path
        break;
    }
    const Model::State& s = m.state();
    (void)error_name(r);
    // The word is always in the table, and a word outside it is never touched by a legal actor.
    if (in_table(before.word)) {
      CHECK(in_table(s.word));
    } else {
      CHECK(s.word == before.word);
    }
    if (rogue) continue;
    check_ownership(s);
    // seq moves only by send, exactly +1.
    if (seq_of(s.word) != seq_of(before.word)) {
      CHECK(op <= 1);
      CHECK(seq_of(s.word) == next_seq(seq_of(before.word)));
    }
    // R-STATE-6: a consumed reply (ok or an error reply) was the reply to the own request.
    if (consumed_reply) {
      CHECK(before.word == make_word(Phase::REPLIED, *before.pending));
    }
    if ((op == 6 || op == 7 || op == 12) && r == ErrorCode::ok) {
      CHECK(before.pending && before.word == make_word(Phase::REPLIED, *before.pending));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Input in{data, size};
  if (in.u8() & 1) {
    while (in.n) fuzz_decide(in);
  } else {
    fuzz_model(in);
  }
  return 0;
}
