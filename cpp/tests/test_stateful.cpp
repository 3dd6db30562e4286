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

using Cmd = rc::state::Command<M, Harness>;

// Compares what the real handles show with the model after a step.
void check_state(const Model::State& s, Harness& h) {
  RC_ASSERT(h.word() == s.word);
  RC_ASSERT(h.requester().is_open() == s.requester_open);
  RC_ASSERT(h.responder().is_open() == s.responder_open);
  if (s.requester_open) RC_ASSERT(h.requester().pending() == s.pending);
  if (s.responder_open) RC_ASSERT(h.responder().held() == s.held);
  for (const auto& p : h.problems()) RC_FAIL(p);
}

template <class Self>
struct Step : Cmd {
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

struct Send : Step<Send> {
  double value = *rc::gen::inRange(0, 1000);
  ErrorCode model(shmbridge::Model& m) const { return m.send(); }
  ErrorCode sut(Harness& h) const { return h.send(value); }
  void show(std::ostream& os) const override { os << "send(" << value << ")"; }
};
struct Take : Step<Take> {
  ErrorCode model(shmbridge::Model& m) const { return m.take(); }
  ErrorCode sut(Harness& h) const { return h.take(); }
  void show(std::ostream& os) const override { os << "take"; }
};
struct Reply : Step<Reply> {
  ErrorCode model(shmbridge::Model& m) const { return m.reply(); }
  ErrorCode sut(Harness& h) const { return h.reply(); }
  void show(std::ostream& os) const override { os << "reply"; }
};
struct ReplyError : Step<ReplyError> {
  ErrorCode code = static_cast<ErrorCode>(*rc::gen::inRange(1, 18));
  ErrorCode model(shmbridge::Model& m) const { return m.reply_error(code); }
  ErrorCode sut(Harness& h) const { return h.reply_error(code); }
  void show(std::ostream& os) const override { os << "reply_error(" << error_name(code) << ")"; }
};
struct Receive : Step<Receive> {
  ErrorCode model(shmbridge::Model& m) const { return m.receive(); }
  ErrorCode sut(Harness& h) const { return h.receive(); }
  void show(std::ostream& os) const override { os << "receive"; }
};
struct Close : Step<Close> {
  Actor actor = *rc::gen::element(Actor::requester, Actor::responder);
  ErrorCode model(shmbridge::Model& m) const { return m.close(actor); }
  ErrorCode sut(Harness& h) const { return h.close(actor); }
  void show(std::ostream& os) const override { os << "close(" << actor_name(actor) << ")"; }
};
struct Attach : Step<Attach> {
  Actor actor = *rc::gen::element(Actor::requester, Actor::responder);
  ErrorCode model(shmbridge::Model& m) const { return m.attach(actor); }
  ErrorCode sut(Harness& h) const { return h.attach(actor); }
  void show(std::ostream& os) const override { os << "attach(" << actor_name(actor) << ")"; }
};

}  // namespace

TEST(Stateful, R_STATE_7_ModelAgreesWithRealHandles) {
  rc::detail::TestParams params = rc::detail::configuration().testParams;
  params.maxSuccess = std::max(params.maxSuccess, 1000);
  rc::detail::TestMetadata meta;
  meta.id = "Stateful/R_STATE_7_ModelAgreesWithRealHandles";
  meta.description = meta.id;
  const auto result = rc::detail::checkTestable(
      [] {
        Harness h(DType::float32, {16});
        rc::state::check(M{}, h,
                         rc::state::gen::execOneOfWithArgs<Send, Take, Reply, ReplyError, Receive,
                                                           Close, Attach>());
      },
      meta, params);
  std::ostringstream msg;
  rc::detail::printResultMessage(result, msg);
  ASSERT_TRUE(result.is<rc::detail::SuccessResult>()) << msg.str();
  const int sequences = result.get<rc::detail::SuccessResult>().numSuccess;
  EXPECT_GE(sequences, 1000);
  std::cout << "RapidCheck: " << sequences << " command sequences passed" << std::endl;
}
