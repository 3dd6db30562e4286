// spec/vectors/sequences.json replayed on real handles AND on the pure model (R-STATE-*,
// R-TIME-*, R-REC-*, R-CLOSE-*, R-MSG-2, R-LIVE-3/4), and on v2 handles (R-VER-1).
#include "seq_harness.hpp"

using namespace shmbridge;
using namespace shmbridge::test;
using nlohmann::json;

namespace {

ErrorCode expected_result(const json& step) {
  const std::string r = step["expect"]["result"];
  if (r == "ok") return ErrorCode::ok;
  ErrorCode c;
  if (!error_from_name(r, c)) ADD_FAILURE() << "unknown result " << r;
  return c;
}

ErrorCode error_arg(const json& step) {
  ErrorCode c;
  if (!error_from_name(step["code"], c)) ADD_FAILURE() << "unknown code " << step["code"];
  return c;
}

void check_word(const json& expect, std::uint32_t word) {
  if (expect.contains("phase")) {
    EXPECT_STREQ(phase_name(phase_bits(word)), expect["phase"].get<std::string>().c_str());
  } else {
    EXPECT_FALSE(is_valid_phase(phase_bits(word)));
  }
  EXPECT_EQ(seq_of(word), expect["seq"].get<std::uint32_t>());
  EXPECT_EQ(status_of(word), expect["status"].get<std::uint32_t>());
}

void check_opt(const json& expect, const char* key, const std::optional<std::uint32_t>& have) {
  if (!expect.contains(key)) return;
  if (expect[key].is_null()) {
    EXPECT_FALSE(have) << key << " = " << *have;
  } else {
    ASSERT_TRUE(have) << key;
    EXPECT_EQ(*have, expect[key].get<std::uint32_t>()) << key;
  }
}

DType dtype_of_seq(const json& s) {
  DType d;
  if (!dtype_from_name(s["dtype"], d)) ADD_FAILURE() << "dtype " << s["dtype"];
  return d;
}

Shape shape_of_seq(const json& s) { return Shape(s["shape"].get<std::vector<std::uint64_t>>()); }

const json& sequences() {
  static const json j = load_spec("vectors/sequences.json");
  return j["sequences"];
}

}  // namespace

// Every sequence on one real segment with a requester and a responder handle of protocol `H`.
template <class H>
void replay_on_real_handles() {
  ASSERT_FALSE(sequences().empty());
  for (const auto& s : sequences()) {
    SCOPED_TRACE(s["id"].get<std::string>());
    H h(dtype_of_seq(s), shape_of_seq(s), s.value("initial_seq", 0u));
    int index = 0;
    for (const auto& step : s["steps"]) {
      SCOPED_TRACE("step " + std::to_string(index) + ": " + step["actor"].get<std::string>() + " " +
                   step["op"].get<std::string>());
      const std::string op = step["op"], actor = step["actor"];
      const Actor who = actor == "requester" ? Actor::requester : Actor::responder;
      ErrorCode got = ErrorCode::ok;
      if (op == "send")
        got = h.send(step.value("value", static_cast<double>(index)));
      else if (op == "take")
        got = h.take();
      else if (op == "reply")
        got = h.reply();
      else if (op == "reply_error")
        got = h.reply_error(error_arg(step));
      else if (op == "receive")
        got = h.receive();
      else if (op == "close")
        got = h.close(who);
      else if (op == "attach")
        got = h.attach(who);
      else if (op == "poke_word")
        h.poke_word(step["value"].get<std::uint32_t>());
      else
        ADD_FAILURE() << "unknown op " << op;
      const json& expect = step["expect"];
      EXPECT_EQ(error_name(got), std::string(error_name(expected_result(step))));
      check_word(expect, h.word());
      if (h.requester().is_open()) check_opt(expect, "pending", h.requester().pending());
      if (h.responder().is_open()) check_opt(expect, "held", h.responder().held());
      for (const auto& p : h.problems()) ADD_FAILURE() << p;
      h.problems().clear();
      ++index;
    }
  }
}

TEST(Sequences, R_STATE_7_ReplayOnRealHandles) { replay_on_real_handles<Harness>(); }

// R-VER-1: the same sequences on v2 handles (MessageRequester/MessageResponder, the v1-like
// schema pair): v2 inherits the state machine, waits, timeouts, recovery and close unchanged.
TEST(Sequences, R_VER_1_ReplayOnV2Handles) { replay_on_real_handles<HarnessV2>(); }

// Every sequence on the pure model (the model of the stateful test).
TEST(Sequences, R_STATE_7_ReplayOnPureModel) {
  for (const auto& s : sequences()) {
    SCOPED_TRACE(s["id"].get<std::string>());
    Model m = Model::fresh_pair(s.value("initial_seq", 0u));
    int index = 0;
    for (const auto& step : s["steps"]) {
      SCOPED_TRACE("step " + std::to_string(index++) + ": " + step["actor"].get<std::string>() +
                   " " + step["op"].get<std::string>());
      const std::string op = step["op"], actor = step["actor"];
      const Actor who = actor == "requester" ? Actor::requester : Actor::responder;
      ErrorCode got = ErrorCode::ok;
      if (op == "send")
        got = m.send();
      else if (op == "take")
        got = m.take();
      else if (op == "reply")
        got = m.reply();
      else if (op == "reply_error")
        got = m.reply_error(error_arg(step));
      else if (op == "receive")
        got = m.receive();
      else if (op == "close")
        got = m.close(who);
      else if (op == "attach")
        got = m.attach(who);
      else if (op == "poke_word")
        m.poke_word(step["value"].get<std::uint32_t>());
      const json& expect = step["expect"];
      EXPECT_EQ(error_name(got), std::string(error_name(expected_result(step))));
      check_word(expect, m.state().word);
      if (m.state().requester_open) check_opt(expect, "pending", m.state().pending);
      if (m.state().responder_open) check_opt(expect, "held", m.state().held);
    }
  }
}
