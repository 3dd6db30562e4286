#include "far.hpp"

#include <cerrno>
#include <chrono>
#include <thread>

namespace shmbridge::relay {
namespace {

constexpr int kSliceMs = 20;  // longest local wait before the network is served (R-RELAY-11)

zmq::message_t copy_of(const zmq::message_t& m) {
  zmq::message_t c;
  c.copy(const_cast<zmq::message_t&>(m));  // shares a large message's buffer (refcounted)
  return c;
}

}  // namespace

FarRelay::FarRelay(FarConfig cfg, Log& log)
    : cfg_(std::move(cfg)),
      log_(log),
      link_(log_, ctx_),
      local_(cfg_.name, cfg_.options),
      epoch_(random_u64()),
      hb_ns_(static_cast<std::uint64_t>(cfg_.heartbeat * 1e9)),
      crash_(CrashPlan::from_env("far", log_)) {}

FarRelay::~FarRelay() { close(); }

void FarRelay::open_socket() {
  link_.open(zmq::socket_type::router);
  zmq::socket_t& s = link_.sock();
  s.set(zmq::sockopt::router_handover, 1);
  s.set(zmq::sockopt::linger, 0);
  if (cfg_.curve) {
    if (cfg_.curve->clients_dir && !zap_)  // one per context, kept across a reopen
      zap_ = std::make_unique<ZapHandler>(ctx_, *cfg_.curve->clients_dir);
    s.set(zmq::sockopt::curve_server, 1);
    s.set(zmq::sockopt::curve_secretkey, cfg_.curve->secret_key);
    s.set(zmq::sockopt::curve_publickey, cfg_.curve->public_key);
  }
  // A reopen (release_reply) binds the endpoint its closed socket held: ZeroMQ frees it on
  // its I/O thread, shortly after the close returned.
  for (int tries = 0;; ++tries) {
    try {
      s.bind(cfg_.bind);
      return;
    } catch (const zmq::error_t& e) {
      if (e.num() != EADDRINUSE || tries >= 200) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
}

// -- local segment ------------------------------------------------------------------------------

bool FarRelay::ensure_local() {
  if (local_.open()) return true;
  const std::uint64_t now = monotonic_ns();
  if (now < next_attach_) return false;
  next_attach_ = now + 50'000'000;
  try {
    if (cfg_.create_v1) {
      local_.create_v1(cfg_.create_v1->first, cfg_.create_v1->second);
      log_.event("created", {str("name", cfg_.name)});
    } else if (cfg_.create_v2) {
      local_.create_v2(cfg_.create_v2->first, cfg_.create_v2->second);
      log_.event("created", {str("name", cfg_.name)});
    } else {
      local_.attach(cfg_.protocol);
      log_.event("attached", {str("name", cfg_.name)});
    }
  } catch (const Error& e) {
    if (e.code() == ErrorCode::SEGMENT_NOT_FOUND || e.code() == ErrorCode::ROLE_TAKEN ||
        e.code() == ErrorCode::TIMEOUT) {
      return false;  // no segment or no free role yet: try again later
    }
    throw;
  }
  return true;
}

// -- network ------------------------------------------------------------------------------------

void FarRelay::hello(const zmq::message_t& route, std::uint64_t session) {
  const auto& decl = local_.decl();
  if (!local_.open() || !decl) return;  // no segment yet: the link is not up (R-RELAY-8)
  Head h;
  h.kind = Kind::HELLO;
  h.protocol = static_cast<std::uint8_t>(decl->protocol);
  h.session = session;
  h.epoch = epoch_;
  zmq::message_t frame(decl->raw.data(), decl->raw.size());
  link_.send(&route, h, nullptr, 0, &frame, 1);
}

void FarRelay::serve_network(int timeout_ms) {
  if (!link_.recv(timeout_ms, true, rx_)) return;
  try {
    decode(rx_.views.data(), rx_.views.size(), msg_);
  } catch (const WireError& e) {
    bad_frame(e, rx_.route);
    return;
  }
  handle(msg_, rx_);
}

void FarRelay::bad_frame(const WireError& e, const zmq::message_t& route) {
  log_.count("bad_frames");
  log_.event("bad_frame",
             {str("error", e.name()), str("check", e.check()), str("message", e.what())});
  const auto& head = e.head();
  if (head && head->kind == Kind::REQ && head->session == session_) {
    // R-RELAY-6: a REQ whose frames fail W9-W11 is answered with that error (not cached)
    Cached c;
    c.session = head->session;
    c.relay_seq = head->relay_seq;
    c.outcome.reply_code = static_cast<std::uint32_t>(e.code());
    c.outcome.local_seq = head->local_seq;
    send_rep(c, route);
  }
}

void FarRelay::handle(const Message& m, Received& r) {
  const std::uint64_t now = monotonic_ns();
  if (m.head.kind == Kind::HELLO) {
    if (m.head.session != session_) {
      session_ = m.head.session;
      highest_ = 0;
      log_.event("session", {num("session", session_)});
    }
    last_heard_ = now;
    session_alive_ = true;
    hello(r.route, m.head.session);
    return;
  }
  if (m.head.session != session_ || m.head.epoch != epoch_) {
    // R-RELAY-10: another session or an older far end's epoch: never executed
    log_.count(m.head.session == session_ ? "stale_epoch" : "stale_session");
    hello(r.route, m.head.session);
    return;
  }
  last_heard_ = now;
  session_alive_ = true;
  if (m.head.kind == Kind::HB) {
    answer_hb(m, r.route);
  } else if (m.head.kind == Kind::REQ) {
    request(m, r);
  } else {
    log_.count("unexpected");
  }
}

RoundState FarRelay::state_of(std::uint64_t session, std::uint64_t rs) const {
  if (rs == 0) return RoundState::NONE;
  if (cache_ && cache_->session == session && cache_->relay_seq == rs) return RoundState::DONE;
  for (const auto* j : {running_.get(), next_.get()}) {
    if (j != nullptr && j->session == session && j->relay_seq == rs) return RoundState::EXECUTING;
  }
  return RoundState::UNKNOWN;
}

bool FarRelay::overdue(std::uint64_t sent_at) const { return monotonic_ns() - sent_at >= hb_ns_; }

void FarRelay::answer_hb(const Message& m, const zmq::message_t& route) {
  const RoundState state = state_of(m.head.session, m.head.relay_seq);
  Head h;
  h.kind = Kind::HB;
  h.session = m.head.session;
  h.epoch = epoch_;
  h.relay_seq = m.head.relay_seq;
  h.round_state = static_cast<std::uint8_t>(state);
  link_.send(&route, h, nullptr, 0, nullptr, 0);
  // R-RELAY-15: resend the cached REP if it had a whole heartbeat to arrive
  if (state == RoundState::DONE && overdue(cache_->sent_at)) {
    log_.count("reply_resends");
    send_rep(*cache_, route);
  }
}

void FarRelay::request(const Message& m, Received& r) {
  const RoundState state = state_of(m.head.session, m.head.relay_seq);
  if (state == RoundState::DONE) {
    log_.count("duplicates");  // R-RELAY-10: the cached reply, not a new run
    send_rep(*cache_, r.route);
    return;
  }
  if (state == RoundState::EXECUTING) {
    log_.count("duplicates");
    return;
  }
  if (m.head.relay_seq <= highest_) {
    log_.count("stale_requests");
    return;
  }
  highest_ = m.head.relay_seq;
  crash_.reached("far.req_received");
  auto job = std::make_unique<Job>();
  job->session = m.head.session;
  job->relay_seq = m.head.relay_seq;
  job->route = std::move(r.route);
  job->local_seq = m.head.local_seq;
  job->descs.assign(m.descs.begin(), m.descs.begin() + m.head.nfields);
  for (std::size_t i = 1; i < r.frames.size(); ++i) job->frames.push_back(std::move(r.frames[i]));
  if (!running_) {
    start(std::move(job));
  } else {
    if (next_) log_.count("superseded");
    next_ = std::move(job);  // a newer round waits for the running one (R-RELAY-10)
  }
}

// -- rounds -------------------------------------------------------------------------------------

void FarRelay::start(std::unique_ptr<Job> job) {
  cache_.reset();  // the next round begins: the last reply is no longer asked for
  release_reply();
  Outcome out;
  if (!ensure_local()) {
    out.reply_code = static_cast<std::uint32_t>(ErrorCode::PEER_GONE);
    out.message = "the far segment is not attached";
    finish(std::move(job), std::move(out));
    return;
  }
  try {
    local_.check(job->descs.data(), job->descs.size());  // R-RELAY-7
    local_.start(job->descs.data(), job->frames.data(), job->frames.size());
  } catch (const Error& e) {
    out.reply_code = static_cast<std::uint32_t>(e.code());
    out.message = e.what();
    finish(std::move(job), std::move(out));
    return;
  }
  crash_.reached("far.sent");
  running_ = std::move(job);
}

void FarRelay::step() {
  Outcome out;
  if (!local_.step(std::chrono::milliseconds(kSliceMs), out)) return;
  crash_.reached("far.reply_taken");
  std::unique_ptr<Job> job = std::move(running_);
  if (out.reply_code == static_cast<std::uint32_t>(ErrorCode::PEER_GONE) && !local_.created()) {
    local_.close();  // R-RELAY-19: re-attach for the next responder
    log_.event("local_peer_gone", {str("message", out.message)});
  }
  finish(std::move(job), std::move(out));
}

void FarRelay::finish(std::unique_ptr<Job> job, Outcome out) {
  const std::uint32_t code = out.reply_code;
  cache_ = std::make_unique<Cached>();
  cache_->session = job->session;
  cache_->relay_seq = job->relay_seq;
  cache_->route = std::move(job->route);
  cache_->outcome = std::move(out);
  send_rep(*cache_, cache_->route);
  crash_.reached("far.rep_sent");
  log_.count(code == 0 ? "rounds_ok" : "rounds_failed");
  log_.event("round", {num("seq", cache_->outcome.local_seq), num("relay_seq", job->relay_seq),
                       str("result", code == 0 ? "ok" : error_name(static_cast<ErrorCode>(code)))});
  if (next_) start(std::move(next_));
}

void FarRelay::release_reply() {
  // R-RELAY-4: the last REP's zero-copy frames are the segment's reply area, which the next T1
  // hands back to the local responder, so ZeroMQ must have released them. It has once it wrote
  // them to the connection; a frame still queued (a peer that stopped reading) is dropped with
  // the socket (LINGER 0), and the near end recovers the round by R-RELAY-15.
  if (local_.wait_released(std::chrono::milliseconds(50))) return;
  log_.event("dropped_queued_reply", {});
  link_.close();
  open_socket();
  if (!local_.wait_released(std::chrono::seconds(5))) {
    throw Error(ErrorCode::OS_ERROR,
                "far relay: ZeroMQ still held a reply frame 5 s after its socket was closed, so "
                "the segment's reply area cannot be handed back; restart the far relay");
  }
}

void FarRelay::send_rep(Cached& c, const zmq::message_t& route) {
  const Outcome& out = c.outcome;
  Head h;
  h.kind = Kind::REP;
  h.protocol = static_cast<std::uint8_t>(local_.decl() ? local_.decl()->protocol : 1);
  h.session = c.session;
  h.epoch = epoch_;
  h.relay_seq = c.relay_seq;
  h.local_seq = out.local_seq;
  h.reply_code = out.reply_code;
  std::vector<zmq::message_t> frames;
  if (out.reply_code == 0) {
    for (const auto& p : out.payload) frames.push_back(copy_of(p));
  }
  link_.send(&route, h, out.reply_code == 0 ? out.descs.data() : nullptr, frames.size(),
             frames.data(), frames.size());
  c.sent_at = monotonic_ns();
}

// -- loop ---------------------------------------------------------------------------------------

void FarRelay::run(const volatile std::sig_atomic_t& stop) {
  open_socket();
  ensure_local();
  log_.event("ready", {str("name", cfg_.name), str("bind", cfg_.bind), num("epoch", epoch_)});
  const std::uint64_t gone_after = hb_ns_ * static_cast<std::uint64_t>(cfg_.misses);
  while (!stop) {
    if (running_) {
      step();  // the local reply first: most rounds end within one slice
      if (running_) serve_network(0);
    } else {
      ensure_local();
      serve_network(50);
    }
    if (session_alive_ && monotonic_ns() - last_heard_ > gone_after) {
      session_alive_ = false;
      log_.count("sessions_gone");
      log_.event("session_gone", {num("session", session_)});
    }
  }
}

void FarRelay::close() {
  // ZeroMQ first: a reply frame it holds refers to the segment, which local_.close() unmaps
  cache_.reset();
  link_.close();
  zap_.reset();
  ctx_.close();  // returns once every socket is closed and every message released
  local_.close();
}

}  // namespace shmbridge::relay
