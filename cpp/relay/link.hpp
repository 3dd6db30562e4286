// What both relay ends share on the network side: the endpoint rule (R-RELAY-17), CurveZMQ keys
// read from ZeroMQ certificate files and the ZAP handler that admits client keys (R-RELAY-18),
// and a socket with the send/receive rules of R-RELAY-3/-4. Mirrors
// python/shmbridge/relay/link.py.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "log.hpp"
#include "wire.hpp"

namespace shmbridge::relay {

// Payload frames of at least this size go zero-copy and are tracked (R-RELAY-4).
inline constexpr std::size_t kZeroCopyMin = 65536;

std::uint64_t random_u64();  // non-zero

// R-RELAY-17: throws INVALID_ARGUMENT for a malformed endpoint, or a non-loopback one without
// allow_remote; `what` names the flag.
void check_endpoint(const std::string& endpoint, bool allow_remote, const char* what);
bool is_remote(const std::string& endpoint);

// CurveZMQ keys, Z85 text (40 characters each).
struct Curve {
  std::string public_key;
  std::string secret_key;
  std::optional<std::string> server_public;  // a client's pinned server key
  std::optional<std::string> clients_dir;    // a server's admitted client keys (ZAP)
};

// Reads a ZeroMQ certificate file (ZPL: `public-key = "..."`, `secret-key = "..."`); throws
// INVALID_ARGUMENT naming the file when it is missing, unreadable, not a certificate or (with
// need_secret) holds no secret key.
Curve load_key(const std::string& path, bool need_secret);
// The CURVE configuration of an end from its flags, or nullopt (plain TCP).
std::optional<Curve> load_curve(const std::optional<std::string>& secret_file,
                                const std::optional<std::string>& server_file,
                                const std::optional<std::string>& clients_dir);

// The ZAP handler of a CURVE server with --curve-clients: admits exactly the public keys of the
// *.key certificates in the directory (read once, at start).
class ZapHandler {
 public:
  ZapHandler(zmq::context_t& ctx, const std::string& clients_dir);
  ~ZapHandler();
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;

 private:
  void run();
  zmq::socket_t sock_;
  std::vector<std::string> allowed_;  // 32-byte binary keys
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A received message: frames[0] is frame 0 of the relay message (after the route, if any).
struct Received {
  zmq::message_t route;  // ROUTER only
  std::vector<zmq::message_t> frames;
  std::vector<Bytes> views;
};

class Link {
 public:
  Link(Log& log, zmq::context_t& ctx) : log_(log), ctx_(ctx) {}
  void open(zmq::socket_type type) { sock_.emplace(ctx_, type); }
  zmq::socket_t& sock() { return *sock_; }
  bool is_open() const noexcept { return sock_.has_value(); }
  void close();

  // Sends frame 0 then the payload frames, non-blocking (R-RELAY-3); a send that would block is
  // dropped and counted. route: the ROUTER's peer, or nullptr. Payload frames are sent as given
  // (the caller builds zero-copy ones); they are consumed.
  bool send(const zmq::message_t* route, const Head& head, const Desc* descs, std::size_t ndescs,
            zmq::message_t* payload, std::size_t npayload);
  // One multipart message within timeout_ms (0: do not wait); false when none came.
  bool recv(int timeout_ms, bool routed, Received& out);

 private:
  Log& log_;
  zmq::context_t& ctx_;
  std::optional<zmq::socket_t> sock_;
  int rcvtimeo_ = -2;
  std::uint8_t frame0_[kMaxFrame0];
};

}  // namespace shmbridge::relay
