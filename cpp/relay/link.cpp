#include "link.hpp"

#include <arpa/inet.h>
#include <dirent.h>

#include <fstream>
#include <random>
#include <sstream>

#include "shmbridge/errors.hpp"

namespace shmbridge::relay {
namespace {

[[noreturn]] void invalid(const std::string& what) {
  throw Error(ErrorCode::INVALID_ARGUMENT, "INVALID_ARGUMENT: " + what);
}

bool is_loopback(std::string host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "localhost") return true;
  in_addr a4{};
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) {
    return (ntohl(a4.s_addr) >> 24) == 127;  // 127.0.0.0/8
  }
  in6_addr a6{};
  if (inet_pton(AF_INET6, host.c_str(), &a6) == 1) {
    static const in6_addr loop = IN6ADDR_LOOPBACK_INIT;
    return std::memcmp(&a6, &loop, sizeof a6) == 0;
  }
  return false;  // '*', an interface name or a DNS name: not provably loopback
}

std::string host_of(const std::string& rest) {
  const auto colon = rest.rfind(':');
  return colon == std::string::npos ? rest : rest.substr(0, colon);
}

}  // namespace

std::uint64_t random_u64() {
  static std::random_device rd;
  std::uint64_t v = 0;
  while (v == 0) v = (std::uint64_t(rd()) << 32) ^ std::uint64_t(rd());
  return v;
}

void check_endpoint(const std::string& endpoint, bool allow_remote, const char* what) {
  const auto sep = endpoint.find("://");
  const std::string scheme = sep == std::string::npos ? "" : endpoint.substr(0, sep);
  if (scheme != "tcp" && scheme != "ipc") {
    invalid(std::string(what) + " '" + endpoint +
            "': expected tcp://HOST:PORT or ipc://PATH (ZeroMQ endpoint)");
  }
  if (scheme == "ipc" || allow_remote) return;
  if (!is_loopback(host_of(endpoint.substr(sep + 3)))) {
    invalid(std::string(what) + " '" + endpoint +
            "' is not a loopback address (127.0.0.0/8, ::1, localhost); a relay binds and "
            "connects to loopback only unless started with --allow-remote (give it CurveZMQ "
            "keys too: shmbridge relay keygen)");
  }
}

bool is_remote(const std::string& endpoint) {
  const auto sep = endpoint.find("://");
  if (sep == std::string::npos || endpoint.substr(0, sep) != "tcp") return false;
  return !is_loopback(host_of(endpoint.substr(sep + 3)));
}

Curve load_key(const std::string& path, bool need_secret) {
  std::ifstream in(path);
  if (!in) {
    invalid("CurveZMQ key file '" + path +
            "' cannot be read; create one with: shmbridge relay keygen PREFIX");
  }
  Curve c;
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq == std::string::npos || line.find('#') < eq) continue;
    std::string key = line.substr(0, eq);
    key.erase(0, key.find_first_not_of(" \t"));
    key.erase(key.find_last_not_of(" \t") + 1);
    const auto q1 = line.find('"', eq), q2 = line.rfind('"');
    if (q1 == std::string::npos || q2 <= q1) continue;
    const std::string value = line.substr(q1 + 1, q2 - q1 - 1);
    if (key == "public-key") c.public_key = value;
    if (key == "secret-key") c.secret_key = value;
  }
  std::uint8_t bin[32];
  const auto z85_ok = [&](const std::string& z) {
    return z.size() == 40 && zmq_z85_decode(bin, z.c_str()) != nullptr;
  };
  if (!z85_ok(c.public_key)) {
    invalid("CurveZMQ key file '" + path +
            "' is not a ZeroMQ certificate (no 40-character public-key); create one with: "
            "shmbridge relay keygen PREFIX");
  }
  if (need_secret && !z85_ok(c.secret_key)) {
    invalid("CurveZMQ key file '" + path +
            "' holds no secret key; give the PREFIX.key_secret file");
  }
  return c;
}

std::optional<Curve> load_curve(const std::optional<std::string>& secret_file,
                                const std::optional<std::string>& server_file,
                                const std::optional<std::string>& clients_dir) {
  if (!secret_file && !server_file) {
    if (clients_dir) invalid("--curve-clients needs --curve-secret (the server's key)");
    return std::nullopt;
  }
  Curve c;
  if (secret_file) {
    c = load_key(*secret_file, true);
  } else {  // a client without its own key: an ephemeral pair
    char pub[41], sec[41];
    if (zmq_curve_keypair(pub, sec) != 0) invalid("CurveZMQ is not available in this libzmq");
    c.public_key = pub;
    c.secret_key = sec;
  }
  if (server_file) c.server_public = load_key(*server_file, false).public_key;
  if (clients_dir) {
    DIR* d = opendir(clients_dir->c_str());
    if (d == nullptr)
      invalid("--curve-clients '" + *clients_dir + "' is not a directory of .key files");
    closedir(d);
    c.clients_dir = clients_dir;
  }
  return c;
}

// ---------------------------------------------------------------------------- ZAP

ZapHandler::ZapHandler(zmq::context_t& ctx, const std::string& clients_dir)
    : sock_(ctx, zmq::socket_type::rep) {
  DIR* d = opendir(clients_dir.c_str());
  if (d != nullptr) {
    while (dirent* e = readdir(d)) {
      const std::string n = e->d_name;
      if (n.size() > 4 && n.compare(n.size() - 4, 4, ".key") == 0) {
        try {
          const Curve c = load_key(clients_dir + "/" + n, false);
          std::string bin(32, '\0');
          zmq_z85_decode(reinterpret_cast<std::uint8_t*>(&bin[0]), c.public_key.c_str());
          allowed_.push_back(bin);
        } catch (const Error&) {
          // not a certificate: not admitted (as pyzmq's load_certificates skips it)
        }
      }
    }
    closedir(d);
  }
  sock_.set(zmq::sockopt::linger, 0);
  sock_.set(zmq::sockopt::rcvtimeo, 50);
  sock_.bind("inproc://zeromq.zap.01");
  thread_ = std::thread([this] { run(); });
}

ZapHandler::~ZapHandler() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void ZapHandler::run() {
  while (!stop_) {
    std::vector<zmq::message_t> req;
    try {
      zmq::message_t m;
      if (!sock_.recv(m)) continue;
      req.push_back(std::move(m));
      while (req.back().more()) {
        zmq::message_t part;
        (void)sock_.recv(part);
        req.push_back(std::move(part));
      }
    } catch (const zmq::error_t&) {
      continue;
    }
    // ZAP request: version, request id, domain, address, identity, mechanism, credentials.
    bool ok = false;
    if (req.size() >= 7 && req[5].to_string() == "CURVE" && req[6].size() == 32) {
      const std::string key = req[6].to_string();
      for (const auto& k : allowed_) ok = ok || k == key;
    }
    const std::string id = req.size() > 1 ? req[1].to_string() : "";
    const std::string parts[6] = {"1.0", id, ok ? "200" : "400", ok ? "OK" : "key not admitted",
                                  "",    ""};
    try {
      for (int i = 0; i < 6; ++i) {
        sock_.send(zmq::buffer(parts[i]), i < 5 ? zmq::send_flags::sndmore : zmq::send_flags::none);
      }
    } catch (const zmq::error_t&) {
    }
  }
  sock_.close();
}

// ---------------------------------------------------------------------------- Link

void Link::close() {
  if (sock_) {
    sock_->set(zmq::sockopt::linger, 0);
    sock_->close();
  }
  sock_.reset();
  rcvtimeo_ = -2;
}

bool Link::send(const zmq::message_t* route, const Head& head, const Desc* descs,
                std::size_t ndescs, zmq::message_t* payload, std::size_t npayload) {
  const std::size_t n0 = encode_frame0(head, descs, ndescs, frame0_);
  const auto more = zmq::send_flags::dontwait | zmq::send_flags::sndmore;
  try {
    // ZeroMQ queues a multipart message whole or not at all: only the first part can meet a
    // full queue (EAGAIN); the later ones are then always accepted.
    if (route != nullptr) {
      zmq::message_t r;
      r.copy(const_cast<zmq::message_t&>(*route));
      if (!sock_->send(r, more)) {
        log_.count("dropped_sends");
        return false;
      }
    }
    const auto last0 = npayload == 0 ? zmq::send_flags::dontwait : more;
    if (!sock_->send(zmq::const_buffer(frame0_, n0), last0)) {
      log_.count("dropped_sends");
      return false;
    }
    for (std::size_t i = 0; i < npayload; ++i) {
      (void)sock_->send(payload[i], i + 1 == npayload ? zmq::send_flags::dontwait : more);
    }
  } catch (const zmq::error_t& e) {  // e.g. EHOSTUNREACH
    log_.count("dropped_sends");
    log_.event("send_error", {str("error", e.what())});
    return false;
  }
  return true;
}

bool Link::recv(int timeout_ms, bool routed, Received& out) {
  out.frames.clear();
  out.views.clear();
  auto flags = zmq::recv_flags::none;
  if (timeout_ms <= 0) {
    flags = zmq::recv_flags::dontwait;
  } else if (rcvtimeo_ != timeout_ms) {
    sock_->set(zmq::sockopt::rcvtimeo, timeout_ms);
    rcvtimeo_ = timeout_ms;
  }
  try {
    if (routed) {
      if (!sock_->recv(out.route, flags)) return false;
      if (!out.route.more()) return recv(0, routed, out);  // not a relay message: skip it
    }
    zmq::message_t m;
    if (!sock_->recv(m, routed ? zmq::recv_flags::none : flags)) return false;
    bool more = m.more();
    out.frames.push_back(std::move(m));
    while (more) {
      zmq::message_t part;
      (void)sock_->recv(part);
      more = part.more();
      out.frames.push_back(std::move(part));
    }
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return false;  // a signal (SIGTERM): the loop checks its flag
    throw;
  }
  for (auto& f : out.frames) out.views.push_back({f.data<std::uint8_t>(), f.size()});
  return true;
}

}  // namespace shmbridge::relay
