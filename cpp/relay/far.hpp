// The far end (spec/RELAY.md): the local requester of the responder's segment, a ZeroMQ ROUTER
// the near end connects to. One thread: it serves the network between short waits for the local
// reply, executes each (session, relay seq) at most once and keeps the last reply for resends
// (R-RELAY-10, R-RELAY-15). Mirrors python/shmbridge/relay/far.py.
#pragma once

#include <csignal>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "faults.hpp"
#include "link.hpp"
#include "local.hpp"
#include "log.hpp"

namespace shmbridge::relay {

struct FarConfig {
  std::string name;
  std::string bind;
  std::optional<std::pair<DType, Shape>> create_v1;
  std::optional<std::pair<Schema, Schema>> create_v2;
  int protocol = 0;
  double heartbeat = 0.2;  // seconds
  int misses = 3;
  std::optional<Curve> curve;
  Options options;
};

class FarRelay {
 public:
  FarRelay(FarConfig cfg, Log& log);
  ~FarRelay();
  void run(const volatile std::sig_atomic_t& stop);
  void close();

 private:
  struct Job {
    std::uint64_t session = 0, relay_seq = 0;
    zmq::message_t route;
    std::uint32_t local_seq = 0;
    std::vector<Desc> descs;
    std::vector<zmq::message_t> frames;  // payload frames (the REQ's, not copied)
  };
  struct Cached {  // the reply cache of one round (R-RELAY-10)
    std::uint64_t session = 0, relay_seq = 0;
    zmq::message_t route;
    Outcome outcome;
    std::uint64_t sent_at = 0;
  };

  void open_socket();
  bool ensure_local();
  void hello(const zmq::message_t& route, std::uint64_t session);
  void serve_network(int timeout_ms);
  void bad_frame(const WireError& e, const zmq::message_t& route);
  void handle(const Message& m, Received& r);
  RoundState state_of(std::uint64_t session, std::uint64_t rs) const;
  void answer_hb(const Message& m, const zmq::message_t& route);
  void request(const Message& m, Received& r);
  void start(std::unique_ptr<Job> job);
  void step();
  void finish(std::unique_ptr<Job> job, Outcome out);
  void send_rep(Cached& c, const zmq::message_t& route);
  void release_reply();
  bool overdue(std::uint64_t sent_at) const;

  FarConfig cfg_;
  Log& log_;
  zmq::context_t ctx_;
  std::unique_ptr<ZapHandler> zap_;
  Link link_;
  FarLocal local_;
  std::uint64_t epoch_;
  std::uint64_t session_ = 0;  // the current session: the last that said HELLO
  std::uint64_t highest_ = 0;  // the highest relay seq received in the current session
  std::uint64_t last_heard_ = 0;
  bool session_alive_ = false;
  std::unique_ptr<Job> running_, next_;
  std::unique_ptr<Cached> cache_;
  std::uint64_t next_attach_ = 0;
  std::uint64_t hb_ns_;
  Received rx_;
  Message msg_;
  CrashPlan crash_;  // the test hook of spec/RELAY.md §12
};

}  // namespace shmbridge::relay
