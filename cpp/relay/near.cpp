#include "near.hpp"

#include <algorithm>
#include <thread>

namespace shmbridge::relay {
namespace {

constexpr int kCheckMs = 50;  // the longest wait between two liveness checks (R-RELAY-13)

// zmq free function of a zero-copy frame: ZeroMQ released it (R-RELAY-4).
void released(void*, void* hint) { static_cast<std::atomic<int>*>(hint)->fetch_sub(1); }

}  // namespace

// ---------------------------------------------------------------------------- local side

std::uint64_t NearLocal::segment_size() const {
  return v1_ ? v1_->segment_size() : v2_ ? v2_->segment_size() : 0;
}

void NearLocal::opened(bool created) {
  created_ = created;
  decl_ = declaration_of(v1_, v2_);
  field_names(*decl_, request_names_, reply_names_);
}

void NearLocal::create(const std::optional<std::pair<DType, Shape>>& v1,
                       const std::optional<std::pair<Schema, Schema>>& v2) {
  if (v1) {
    v1_.emplace(Responder::create(name_, v1->first, v1->second, opts_));
  } else {
    v2_.emplace(MessageResponder::create(name_, v2->first, v2->second, opts_));
  }
  opened(true);
}

void NearLocal::create_from(const Declaration& far) {
  if (far.v1) {
    const Descriptor& d = far.v1->declared;
    create(std::make_pair(static_cast<DType>(d.dtype), d.shape_of()), std::nullopt);
  } else {
    const SchemaLayout s = far.v2->schemas();
    create(std::nullopt, std::make_pair(s.request_schema(), s.reply_schema()));
  }
}

void NearLocal::attach(int protocol) {
  attach_either(name_, protocol, opts_, v1_, v2_);
  opened(false);
}

bool NearLocal::take(std::chrono::milliseconds timeout) {
  descs_.clear();
  fields_.clear();
  try {
    if (v1_) {
      req1_.emplace(v1_->take(timeout));
      seq_ = req1_->seq();
      descs_.push_back(desc_of(req1_->dtype(), req1_->shape()));
      fields_.emplace_back(req1_->data(), static_cast<std::size_t>(req1_->nbytes()));
    } else {
      req2_.emplace(v2_->take(timeout));
      seq_ = req2_->seq();
      const MessageView& v = req2_->request();
      for (const auto& name : request_names_) {
        const FieldRef f = v.ref(name);
        descs_.push_back(desc_of(f.dtype, f.shape));
        fields_.emplace_back(f.data, static_cast<std::size_t>(v.nbytes(name)));
      }
    }
  } catch (const Error& e) {
    if (e.code() == ErrorCode::TIMEOUT) return false;
    throw;
  }
  return true;
}

const char* NearLocal::reply(const Desc* descs, const Bytes* frames, std::size_t n) {
  try {
    check_descs(*decl_, descs, n, true);  // R-RELAY-7
    if (req1_) {
      req1_->reply(static_cast<const void*>(frames[0].data));
    } else {
      std::vector<NamedField> fields;
      fields.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        fields.push_back(
            {reply_names_[i],
             FieldRef(frames[i].data, static_cast<DType>(descs[i].dtype), shape_of(descs[i]))});
      }
      req2_->reply(fields);
    }
  } catch (const Error& e) {
    fail(static_cast<std::uint32_t>(e.code()));
    return e.name();
  }
  req1_.reset();
  req2_.reset();
  return nullptr;
}

void NearLocal::fail(std::uint32_t code) {
  const auto c = static_cast<ErrorCode>(code);
  if (req1_ && !req1_->answered()) req1_->fail(c);
  if (req2_ && !req2_->answered()) req2_->fail(c);
  req1_.reset();
  req2_.reset();
}

void NearLocal::close() {
  req1_.reset();
  req2_.reset();
  if (v1_) v1_->close();
  if (v2_) v2_->close();
  v1_.reset();
  v2_.reset();
  decl_.reset();
}

// ---------------------------------------------------------------------------- relay

NearRelay::NearRelay(NearConfig cfg, Log& log)
    : cfg_(std::move(cfg)),
      log_(log),
      link_(log_, ctx_),
      local_(cfg_.name, cfg_.options),
      hb_ns_(static_cast<std::uint64_t>(cfg_.heartbeat * 1e9)),
      crash_(CrashPlan::from_env("near", log_)) {}

NearRelay::~NearRelay() { close(); }

void NearRelay::open_socket() {
  link_.close();
  session_ = random_u64();
  relay_seq_ = 0;
  link_.open(zmq::socket_type::dealer);
  zmq::socket_t& s = link_.sock();
  std::uint8_t id[8];
  for (int i = 0; i < 8; ++i) id[i] = static_cast<std::uint8_t>(session_ >> (8 * i));
  s.set(zmq::sockopt::routing_id, zmq::const_buffer(id, 8));
  s.set(zmq::sockopt::immediate, 1);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::reconnect_ivl, 100);
  s.set(zmq::sockopt::reconnect_ivl_max, 1000);
  if (cfg_.curve) {
    s.set(zmq::sockopt::curve_serverkey, *cfg_.curve->server_public);
    s.set(zmq::sockopt::curve_publickey, cfg_.curve->public_key);
    s.set(zmq::sockopt::curve_secretkey, cfg_.curve->secret_key);
  }
  s.connect(cfg_.connect);
  // LINGER 0: whatever ZeroMQ held is dropped with the old socket and counted off its own count;
  // a count at 0 gets no more callbacks and can go
  std::atomic<int>* const old = in_flight_;
  in_flight_counts_.erase(
      std::remove_if(in_flight_counts_.begin(), in_flight_counts_.end(),
                     [old](const auto& c) { return c.get() != old && c->load() == 0; }),
      in_flight_counts_.end());
  in_flight_counts_.push_back(std::make_unique<std::atomic<int>>(0));
  in_flight_ = in_flight_counts_.back().get();
  log_.event("session", {num("session", session_)});
}

void NearRelay::hello() {
  const auto& decl = local_.decl();
  Head h;
  h.kind = Kind::HELLO;
  h.protocol = static_cast<std::uint8_t>(decl ? decl->protocol : 0);
  h.session = session_;
  h.epoch = epoch_;
  zmq::message_t frame =
      decl ? zmq::message_t(decl->raw.data(), decl->raw.size()) : zmq::message_t();
  link_.send(nullptr, h, nullptr, 0, &frame, 1);
  next_hb_ = monotonic_ns() + hb_ns_;
}

void NearRelay::send_hb(std::uint64_t relay_seq) {
  Head h;
  h.kind = Kind::HB;
  h.session = session_;
  h.epoch = epoch_;
  h.relay_seq = relay_seq;
  link_.send(nullptr, h, nullptr, 0, nullptr, 0);
}

void NearRelay::bad_frame(const Error& e, const char* check) {
  log_.count("bad_frames");
  log_.event("bad_frame",
             {str("error", e.name()), check ? str("check", check) : Field{"check", nullptr},
              str("message", e.what())});
}

bool NearRelay::recv(int timeout_ms, Message& out) {
  if (!link_.recv(timeout_ms, false, rx_)) return false;
  try {
    decode(rx_.views.data(), rx_.views.size(), out);
  } catch (const WireError& e) {
    bad_frame(e, e.check());
    const auto& h = e.head();
    if (h && h->kind == Kind::REP && h->session == session_) {
      bad_reply_ = std::make_pair(h->relay_seq, static_cast<std::uint32_t>(e.code()));
    }
    return false;
  }
  if (out.head.session != session_) {
    log_.count("stale_session");
    return false;
  }
  return true;
}

bool NearRelay::seen(const Message& m, Round* held) {
  last_heard_ = monotonic_ns();
  if (epoch_ != 0 && m.head.epoch != 0 && m.head.epoch != epoch_) {
    log_.event("far_restarted", {num("old_epoch", epoch_), num("epoch", m.head.epoch)});
    epoch_ = 0;
    if (held != nullptr) {
      finish_error(*held, static_cast<std::uint32_t>(ErrorCode::PEER_GONE),
                   "the far relay restarted (epoch changed): the request was executed at most "
                   "once, perhaps not at all; send it again if it is safe");
    }
    state_ = State::CONNECTING;
    // The new far end serves only a session that said HELLO to it (R-RELAY-10), and it may
    // have started before this end saw the old one silent: say HELLO now (R-RELAY-14).
    hello();
    if (m.head.kind != Kind::HELLO) return false;
  }
  if (m.head.kind == Kind::HELLO) {
    far_hello(m);
    return false;
  }
  return true;
}

void NearRelay::far_hello(const Message& m) {
  std::optional<Declaration> far;
  try {
    far = Declaration::decode(m.frames[0]);
  } catch (const Error& e) {
    bad_frame(e, nullptr);
    return;
  }
  if (!local_.open() && cfg_.create && !cfg_.create_v1 && !cfg_.create_v2) {
    local_.create_from(*far);  // R-RELAY-2: --create without a declaration
    log_.event("created", {str("name", cfg_.name)});
  }
  if (!local_.decl()) return;                  // our segment is not there yet: not up
  local_.decl()->check_same(*far, cfg_.name);  // a mismatch is fatal (R-RELAY-2)
  epoch_ = m.head.epoch;
  if (state_ != State::UP) {
    state_ = State::UP;
    log_.event("up", {num("epoch", epoch_), num("session", session_)});
  }
}

void NearRelay::housekeeping() {
  const std::uint64_t now = monotonic_ns();
  if (state_ == State::UP && now - last_heard_ > hb_ns_ * std::uint64_t(cfg_.misses)) far_gone();
  if (now >= next_hb_) {
    if (state_ == State::UP) {
      send_hb(0);
      next_hb_ = now + hb_ns_;
    } else {
      hello();
    }
  }
}

void NearRelay::far_gone() {
  state_ = State::DOWN;
  log_.event("down",
             {num("epoch", epoch_), Field{"silent_s", (monotonic_ns() - last_heard_) / 1e9}});
  log_.count("far_gone");
  epoch_ = 0;
  open_socket();
  hello();
}

bool NearRelay::ensure_local() {
  if (local_.open()) return true;
  try {
    if (cfg_.create) {
      if (!cfg_.create_v1 && !cfg_.create_v2) return false;  // created from the far end's HELLO
      local_.create(cfg_.create_v1, cfg_.create_v2);
      log_.event("created", {str("name", cfg_.name)});
    } else {
      local_.attach(cfg_.protocol);
      log_.event("attached", {str("name", cfg_.name), num("protocol", local_.decl()->protocol)});
    }
  } catch (const Error& e) {
    if (e.code() == ErrorCode::SEGMENT_NOT_FOUND || e.code() == ErrorCode::ROLE_TAKEN ||
        e.code() == ErrorCode::TIMEOUT) {
      return false;  // not there yet, or a previous responder still holds the role
    }
    throw;
  }
  hello();  // tell the far end our declaration
  return true;
}

void NearRelay::idle(int timeout_ms) {
  Message m;
  for (int i = 0; i < 64; ++i) {
    if (!recv(timeout_ms, m)) {
      if (rx_.frames.empty()) return;  // nothing came
      timeout_ms = 0;
      continue;
    }
    if (seen(m, nullptr) && m.head.kind == Kind::REP) {
      log_.count("stale_replies");
      log_.event("stale", {num("relay_seq", m.head.relay_seq)});
    }
    timeout_ms = 0;
  }
}

void NearRelay::run(const volatile std::sig_atomic_t& stop) {
  open_socket();
  ensure_local();
  hello();
  log_.event("ready", {str("name", cfg_.name), str("connect", cfg_.connect)});
  std::uint64_t next_drain = 0;
  const auto take_ms = std::chrono::milliseconds(std::max<std::int64_t>(
      1, std::min<std::int64_t>(kCheckMs, std::int64_t(hb_ns_ / 2'000'000))));
  while (!stop) {
    const std::uint64_t now = monotonic_ns();
    if (now >= next_drain) {  // HB answers and stale REPs between rounds
      idle(0);
      next_drain = now + kCheckMs * 1'000'000ull;
    }
    housekeeping();
    if (!ensure_local() || state_ == State::CONNECTING) {
      idle(kCheckMs);
      continue;
    }
    bool got = false;
    try {
      got = local_.take(take_ms);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::PEER_GONE) throw;
      if (!local_gone_) {  // the local requester closed or died (R-RELAY-19): logged once
        local_gone_ = true;
        log_.event("local_peer_gone", {str("message", e.what())});
      }
      if (!local_.created()) local_.close();  // re-attach: a creator may have removed it
      idle(kCheckMs);
      continue;
    }
    local_gone_ = false;
    if (!got) continue;
    if (state_ == State::DOWN) {
      const std::uint32_t seq = local_.held_seq();
      local_.fail(static_cast<std::uint32_t>(ErrorCode::PEER_GONE));
      log_.count("rounds_failed");
      log_.event("round", {num("seq", seq), num("relay_seq", 0), str("result", "PEER_GONE"),
                           str("why", "far end gone")});
      continue;
    }
    crash_.reached("near.taken");
    run_round(stop);
  }
}

void NearRelay::send_req(Round& r) {
  const auto& descs = local_.descs();
  const auto& fields = local_.fields();
  payload_.clear();
  for (const auto& [data, size] : fields) {
    if (size >= kZeroCopyMin) {  // R-RELAY-4: taken from the request area, tracked
      in_flight_->fetch_add(1);
      payload_.emplace_back(const_cast<void*>(data), size, &released, in_flight_);
    } else {
      payload_.emplace_back(data, size);  // copied: nothing held
    }
  }
  Head h;
  h.kind = Kind::REQ;
  h.protocol = static_cast<std::uint8_t>(local_.decl() ? local_.decl()->protocol : 1);
  h.session = session_;
  h.epoch = epoch_;
  h.relay_seq = r.rs;
  h.local_seq = local_.held_seq();
  link_.send(nullptr, h, descs.data(), descs.size(), payload_.data(), payload_.size());
  // a dropped send leaves the messages with us: destroying them releases the frames
  payload_.clear();
  r.sent_at = monotonic_ns();
}

void NearRelay::release(Round& r) {
  // R-RELAY-4: no zero-copy frame of the REQ may still be queued when the round completes
  for (int i = 0; i < 50 && in_flight_->load() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (in_flight_->load() > 0) {
    log_.event("dropped_queued_request", {num("relay_seq", r.rs)});
    open_socket();  // LINGER 0 drops it (R-RELAY-16)
    state_ = State::CONNECTING;
    hello();
  }
}

void NearRelay::finish_error(Round& r, std::uint32_t code, const char* why) {
  if (r.done) return;
  release(r);
  const std::uint32_t seq = local_.held_seq();
  local_.fail(code);
  r.done = true;
  log_.count("rounds_failed");
  log_.event("round", {num("seq", seq), num("relay_seq", r.rs),
                       str("result", error_name(static_cast<ErrorCode>(code))), str("why", why)});
}

void NearRelay::finish(Round& r, const Message& m) {
  crash_.reached("near.rep_received");
  release(r);
  const std::uint32_t seq = local_.held_seq();
  const char* result = "ok";
  if (m.head.reply_code != 0) {
    local_.fail(m.head.reply_code);
    log_.count("rounds_failed");
    result = error_name(static_cast<ErrorCode>(m.head.reply_code));
  } else {
    const char* err = local_.reply(m.descs.data(), m.frames.data(), m.head.nfields);
    log_.count(err == nullptr ? "rounds_ok" : "rounds_failed");
    if (err != nullptr) result = err;
  }
  r.done = true;
  crash_.reached("near.replied");
  log_.event("round", {num("seq", seq), num("relay_seq", r.rs), str("result", result)});
}

void NearRelay::run_round(const volatile std::sig_atomic_t& stop) {
  Round r;
  r.rs = ++relay_seq_;
  // R-RELAY-13: W = M x H + B / R, B = the request's bytes + the local segment's size
  std::uint64_t bytes = local_.segment_size();
  for (const auto& f : local_.fields()) bytes += f.second;
  r.silence_ns = hb_ns_ * std::uint64_t(cfg_.misses) +
                 static_cast<std::uint64_t>(double(bytes) / cfg_.min_rate * 1e9);
  send_req(r);
  crash_.reached("near.req_sent");
  const std::uint64_t start = r.sent_at;
  // --round-timeout: UINT64_MAX when none
  const std::uint64_t deadline =
      cfg_.round_timeout ? start + std::uint64_t(*cfg_.round_timeout * 1e9) : UINT64_MAX;
  Message m;
  while (!r.done && !stop) {
    std::uint64_t now = monotonic_ns();
    std::uint64_t wait =
        std::min<std::uint64_t>(kCheckMs * 1'000'000ull, next_hb_ > now ? next_hb_ - now : 0);
    wait = std::min<std::uint64_t>(wait, deadline > now ? deadline - now : 0);
    const int wait_ms = static_cast<int>((wait + 999'999) / 1'000'000);
    if (recv(wait_ms, m) && seen(m, &r) && !r.done) {
      if (m.head.kind == Kind::REP) {
        if (m.head.relay_seq == r.rs && m.head.epoch == epoch_) {
          finish(r, m);
          break;
        }
        log_.count("stale_replies");  // R-RELAY-9
        log_.event("stale", {num("relay_seq", m.head.relay_seq), num("holding", r.rs)});
      } else if (m.head.kind == Kind::HB && m.head.relay_seq == r.rs &&
                 m.head.round_state == static_cast<std::uint8_t>(RoundState::UNKNOWN) &&
                 monotonic_ns() - r.sent_at >= hb_ns_) {
        log_.count("resends");  // R-RELAY-15
        send_req(r);
      }
    }
    if (r.done) break;
    if (bad_reply_) {
      const auto bad = *bad_reply_;
      bad_reply_.reset();
      if (bad.first == r.rs) {
        finish_error(r, bad.second, "bad reply frames");
        break;
      }
    }
    if (state_ != State::UP) {  // a new epoch was learned (seen)
      finish_error(r, static_cast<std::uint32_t>(ErrorCode::PEER_GONE), "far end restarted");
      break;
    }
    now = monotonic_ns();
    if (now >= deadline) {
      finish_error(r, static_cast<std::uint32_t>(ErrorCode::TIMEOUT), "--round-timeout passed");
      break;
    }
    if (now - last_heard_ > r.silence_ns) {
      finish_error(r, static_cast<std::uint32_t>(ErrorCode::PEER_GONE),
                   "far end silent (heartbeats)");
      far_gone();
      break;
    }
    if (now >= next_hb_) {
      send_hb(r.rs);
      next_hb_ = now + hb_ns_;
    }
  }
}

void NearRelay::close() {
  // ZeroMQ first: a REQ frame it holds refers to the segment, which local_.close() unmaps
  payload_.clear();
  link_.close();
  ctx_.close();  // returns once every socket is closed and every message released
  local_.close();
}

}  // namespace shmbridge::relay
