// RapidCheck stateful test: model = the pure transition function (shmbridge::Model, the
// semantics of spec/transitions.json), SUT = a requester and a responder handle on one real
// segment. Commands include out-of-turn operations, timeouts (every op has timeout 0), error
// replies and close/re-attach of either role. At least 1,000 sequences per run.
// R-STATE-1..10, R-TIME-2/3, R-REC-1/2, R-CLOSE-1/2, R-MSG-2, R-LIVE-3/4, R-STATE-5.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/state.h>

#include <sstream>

#include "seq_harness.hpp"

using namespace shmbridge;
using namespace shmbridge::test;

namespace {

struct M {
  Model model = Model::fresh_pair();
};

// Compares what the real handles show with the model after a step.
template <class Harness>
void check_state(const Model::State& s, Harness& h) {
  RC_ASSERT(h.word() == s.word);
  RC_ASSERT(h.requester().is_open() == s.requester_open);
  RC_ASSERT(h.responder().is_open() == s.responder_open);
  if (s.requester_open) RC_ASSERT(h.requester().pending() == s.pending);
  if (s.responder_open) RC_ASSERT(h.responder().held() == s.held);
  for (const auto& p : h.problems()) RC_FAIL(p);
}

template <class Self, class Harness>
struct Step : rc::state::Command<M, Harness> {
  // The model's transition, applied to the model and to a copy in run().
  void apply(M& m) const override { static_cast<const Self*>(this)->model(m.model); }
  void run(const M& m, Harness& h) const override {
    M next = m;
    const ErrorCode want = static_cast<const Self*>(this)->model(next.model);
    const ErrorCode got = static_cast<const Self*>(this)->sut(h);
    RC_ASSERT(std::string(error_name(got)) == std::string(error_name(want)));
    check_state(next.model.state(), h);
  }
};

template <class Harness>
struct Send : Step<Send<Harness>, Harness> {
  double value = *rc::gen::inRange(0, 1000);
  ErrorCode model(shmbridge::Model& m) const { return m.send(); }
  ErrorCode sut(Harness& h) const { return h.send(value); }
  void show(std::ostream& os) const override { os << "send(" << value << ")"; }
};
template <class Harness>
struct Take : Step<Take<Harness>, Harness> {
  ErrorCode model(shmbridge::Model& m) const { return m.take(); }
  ErrorCode sut(Harness& h) const { return h.take(); }
  void show(std::ostream& os) const override { os << "take"; }
};
template <class Harness>
struct Reply : Step<Reply<Harness>, Harness> {
  ErrorCode model(shmbridge::Model& m) const { return m.reply(); }
  ErrorCode sut(Harness& h) const { return h.reply(); }
  void show(std::ostream& os) const override { os << "reply"; }
};
template <class Harness>
struct ReplyError : Step<ReplyError<Harness>, Harness> {
  ErrorCode code = static_cast<ErrorCode>(*rc::gen::inRange(1, 18));
  ErrorCode model(shmbridge::Model& m) const { return m.reply_error(code); }
  ErrorCode sut(Harness& h) const { return h.reply_error(code); }
  void show(std::ostream& os) const override { os << "reply_error(" << error_name(code) << ")"; }
};
template <class Harness>
struct Receive : Step<Receive<Harness>, Harness> {
  ErrorCode model(shmbridge::Model& m) const { return m.receive(); }
  ErrorCode sut(Harness& h) const { return h.receive(); }
  void show(std::ostream& os) const override { os << "receive"; }
};
template <class Harness>
struct Close : Step<Close<Harness>, Harness> {
  Actor actor = *rc::gen::element(Actor::requester, Actor::responder);
  ErrorCode model(shmbridge::Model& m) const { return m.close(actor); }
  ErrorCode sut(Harness& h) const { return h.close(actor); }
  void show(std::ostream& os) const override { os << "close(" << actor_name(actor) << ")"; }
};
template <class Harness>
struct Attach : Step<Attach<Harness>, Harness> {
  Actor actor = *rc::gen::element(Actor::requester, Actor::responder);
  ErrorCode model(shmbridge::Model& m) const { return m.attach(actor); }
  ErrorCode sut(Harness& h) const { return h.attach(actor); }
  void show(std::ostream& os) const override { os << "attach(" << actor_name(actor) << ")"; }
};

template <class H>
void model_agrees_with(const char* id) {
  rc::detail::TestParams params = rc::detail::configuration().testParams;
  params.maxSuccess = std::max(params.maxSuccess, 1000);
  rc::detail::TestMetadata meta;
  meta.id = id;
  meta.description = meta.id;
  const rc::detail::TestResult result = rc::detail::checkTestable(
      [] {
        H h(DType::float32, {16});
        rc::state::check(
            M{}, h,
            rc::state::gen::execOneOfWithArgs<Send<H>, Take<H>, Reply<H>, ReplyError<H>, Receive<H>,
                                              Close<H>, Attach<H>>());
      },
      meta, params);
  std::ostringstream msg;
  rc::detail::printResultMessage(result, msg);
  ASSERT_TRUE(result.is<rc::detail::SuccessResult>()) << msg.str();
  const int sequences = result.get<rc::detail::SuccessResult>().numSuccess;
  EXPECT_GE(sequences, 1000);
  std::cout << "RapidCheck: " << sequences << " command sequences passed" << std::endl;
}

}  // namespace

TEST(Stateful, R_STATE_7_ModelAgreesWithRealHandles) {
  model_agrees_with<Harness>("Stateful/R_STATE_7_ModelAgreesWithRealHandles");
}

// R-VER-1: the same model against v2 handles (the v1-like schema pair).
TEST(Stateful, R_VER_1_ModelAgreesWithV2Handles) {
  model_agrees_with<HarnessV2>("Stateful/R_VER_1_ModelAgreesWithV2Handles");
}
