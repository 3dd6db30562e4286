// The near end (spec/RELAY.md): the local responder of the requester's segment, a ZeroMQ DEALER
// towards the far end. One thread: it takes a local request only while the link is up
// (R-RELAY-8), forwards it, and completes the local round with the reply of exactly that relay
// seq (R-RELAY-9), or with a typed error (R-RELAY-12..16). Mirrors python/shmbridge/relay/near.py.
#pragma once

#include <atomic>
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

struct NearConfig {
  std::string name;
  std::string connect;
  bool create = false;
  std::optional<std::pair<DType, Shape>> create_v1;  // --create with a declaration
  std::optional<std::pair<Schema, Schema>> create_v2;
  int protocol = 0;
  double heartbeat = 0.2;
  int misses = 3;
  std::optional<double> round_timeout;
  std::optional<Curve> curve;
  Options options;
  double min_rate = 4.0 * 1048576.0;  // bytes/s assumed while a round is in flight (R-RELAY-13)
};

// The near end's segment: it is the responder (R-RELAY-1), and the request it holds.
class NearLocal {
 public:
  NearLocal(std::string name, Options opts) : name_(std::move(name)), opts_(opts) {}
  bool open() const noexcept { return v1_.has_value() || v2_.has_value(); }
  bool created() const noexcept { return created_; }
  const std::optional<Declaration>& decl() const noexcept { return decl_; }
  std::uint64_t segment_size() const;

  void create(const std::optional<std::pair<DType, Shape>>& v1,
              const std::optional<std::pair<Schema, Schema>>& v2);
  void create_from(const Declaration& far);  // R-RELAY-2: --create without a declaration
  void attach(int protocol);
  // T2 within timeout: true when a request is held (its fields in descs/fields).
  bool take(std::chrono::milliseconds timeout);
  std::uint32_t held_seq() const noexcept { return seq_; }
  const std::vector<Desc>& descs() const noexcept { return descs_; }
  const std::vector<std::pair<const void*, std::size_t>>& fields() const noexcept {
    return fields_;
  }
  // T3 with the far end's reply after R-RELAY-7; on a failing check the round completes with
  // that error's code, and its name is returned (nullptr: ok).
  const char* reply(const Desc* descs, const Bytes* frames, std::size_t n);
  void fail(std::uint32_t code);  // an error reply (R-MSG-2, R-RELAY-12)
  void close();

 private:
  void opened(bool created);
  std::string name_;
  Options opts_;
  std::optional<Responder> v1_;
  std::optional<MessageResponder> v2_;
  std::optional<Request> req1_;
  std::optional<MessageRequest> req2_;
  std::optional<Declaration> decl_;
  bool created_ = false;
  std::vector<std::string> request_names_, reply_names_;
  std::uint32_t seq_ = 0;
  std::vector<Desc> descs_;
  std::vector<std::pair<const void*, std::size_t>> fields_;
};

class NearRelay {
 public:
  NearRelay(NearConfig cfg, Log& log);
  ~NearRelay();
  void run(const volatile std::sig_atomic_t& stop);
  void close();

 private:
  enum class State { CONNECTING, UP, DOWN };
  struct Round {
    std::uint64_t rs = 0;
    std::uint64_t sent_at = 0;
    std::uint64_t silence_ns = 0;
    bool done = false;
  };
  void open_socket();
  void hello();
  bool recv(int timeout_ms, Message& out);  // a message of this session passed W1-W11
  void bad_frame(const Error& e, const char* check);
  bool seen(const Message& m, Round* held);  // true: the caller looks at m further
  void far_hello(const Message& m);
  void housekeeping();
  void far_gone();
  bool ensure_local();
  void idle(int timeout_ms);
  void run_round(const volatile std::sig_atomic_t& stop);
  void send_req(Round& r);
  void release(Round& r);
  void finish_error(Round& r, std::uint32_t code, const char* why);
  void finish(Round& r, const Message& m);
  void send_hb(std::uint64_t relay_seq);

  NearConfig cfg_;
  Log& log_;
  // Zero-copy frames ZeroMQ still holds (R-RELAY-4), one count per socket: the frames of a
  // closed socket are dropped and released later, on ZeroMQ's thread, into that socket's count
  // (never into the next socket's). Declared before ctx_, so they outlive every callback.
  std::vector<std::unique_ptr<std::atomic<int>>> in_flight_counts_;
  std::atomic<int>* in_flight_ = nullptr;  // the current socket's
  zmq::context_t ctx_;
  Link link_;
  NearLocal local_;
  State state_ = State::CONNECTING;
  std::uint64_t session_ = 0, epoch_ = 0, relay_seq_ = 0;
  std::uint64_t last_heard_ = 0, next_hb_ = 0, hb_ns_;
  bool local_gone_ = false;
  std::optional<std::pair<std::uint64_t, std::uint32_t>> bad_reply_;  // (relay seq, code)
  Received rx_;
  std::vector<zmq::message_t> payload_;
  CrashPlan crash_;  // the test hook of spec/RELAY.md §12
};

}  // namespace shmbridge::relay
