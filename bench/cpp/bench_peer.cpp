// Benchmark peer on the public shmbridge C++ API (driven by bench/run.py).
//
//   bench_peer requester --name N --bytes B [--rounds R] [--warmup W] [--spin-us S] [--timeout S]
//       creates the segment (float32; (512, 512) for 1 MiB, else (B/4,)), prints "READY", then
//       runs W warm-up and R timed rounds: send(in) (copy in) + receive(out) (copy out), each
//       round timed with steady_clock (stopping early after --max-seconds of timed rounds);
//       prints one JSON line with the samples in ns.
//       --zero-copy 1: the zero-copy round instead: the requester writes element 0 of the
//       request_buffer() in place (the whole buffer once, before the warm-up), send_in_place(),
//       and reads the first and last element of the receive() view (ArrayView); no copy in or
//       out. The responder is the same (it always computes in place).
//   bench_peer responder --name N [--spin-us S] [--timeout S]
//       attaches and serves (adds 1.0 in place, as the original design) until the requester
//       closes; prints one JSON line.
//   bench_peer idle --name N --seconds T [--spin-us S]
//       creates the segment as the responder and waits T seconds in take() for a request that
//       never comes; prints the process CPU time (getrusage) spent in that wait.
//   bench_peer camera-requester --protocol 2|1 --name N [--rounds R] [--warmup W] [...]
//   bench_peer camera-responder --protocol 2|1 --name N [--spin-us S] [--timeout S]
//       the camera scenario (bench/README.md): a (480, 640, 3) uint8 frame and a float64 stamp
//       -> n <= 100 float32 detections (n, 6). --protocol 2: the v2 messages of the camera
//       example; --protocol 1: the same exchange squeezed into one v1 uint8 array (the frame,
//       then the stamp's 8 bytes; the reply in place: n as a uint32, 4 spare bytes, the rows).
#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "add_one.hpp"  // cpp/examples: the add with the CPU's widest vector unit
#include "shmbridge/shmbridge.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::duration;
using std::chrono::duration_cast;
using std::chrono::nanoseconds;

struct Args {
  std::string mode;
  std::string name = "shmb_bench";
  std::uint64_t bytes = 1 << 20;
  long rounds = 1000;
  long warmup = 100;
  double spin_us = 100.0;  // the library default (R-WAIT-1)
  double timeout_s = 30.0;
  double seconds = 10.0;
  double max_seconds = 0.0;  // requester: stop the timed rounds after this long (0 = no limit)
  int protocol = 2;          // camera-*: 2 (typed messages) or 1 (one array)
  bool zero_copy = false;    // requester: request_buffer + send_in_place + receive() view
};

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s requester|responder|idle|camera-requester|camera-responder --name N "
               "[--bytes B] [--rounds R] [--warmup W] [--spin-us S] [--timeout S] [--seconds T] "
               "[--max-seconds T] [--zero-copy 0|1] [--protocol 2|1]\n",
               argv0);
  std::exit(2);
}

Args parse(int argc, char** argv) {
  if (argc < 2) usage(argv[0]);
  Args a;
  a.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) usage(argv[0]);
    const char* v = argv[++i];
    if (k == "--name") a.name = v;
    else if (k == "--bytes") a.bytes = std::strtoull(v, nullptr, 10);
    else if (k == "--rounds") a.rounds = std::strtol(v, nullptr, 10);
    else if (k == "--warmup") a.warmup = std::strtol(v, nullptr, 10);
    else if (k == "--spin-us") a.spin_us = std::strtod(v, nullptr);
    else if (k == "--timeout") a.timeout_s = std::strtod(v, nullptr);
    else if (k == "--seconds") a.seconds = std::strtod(v, nullptr);
    else if (k == "--max-seconds") a.max_seconds = std::strtod(v, nullptr);
    else if (k == "--protocol") a.protocol = std::atoi(v);
    else if (k == "--zero-copy") a.zero_copy = std::strtol(v, nullptr, 10) != 0;
    else usage(argv[0]);
  }
  if (a.mode != "requester" && a.mode != "responder" && a.mode != "idle" &&
      a.mode != "camera-requester" && a.mode != "camera-responder")
    usage(argv[0]);
  if (a.protocol != 1 && a.protocol != 2) usage(argv[0]);
  if (a.bytes < 4 || a.bytes % 4 != 0) {
    std::fprintf(stderr, "--bytes must be a positive multiple of 4\n");
    std::exit(2);
  }
  return a;
}

shmbridge::Options options(const Args& a) {
  shmbridge::Options o;
  o.spin = duration_cast<nanoseconds>(duration<double, std::micro>(a.spin_us));
  o.timeout = duration_cast<nanoseconds>(duration<double>(a.timeout_s));
  return o;
}

shmbridge::Shape shape_for(std::uint64_t bytes) {
  if (bytes == (1u << 20)) return shmbridge::Shape{512, 512};  // the seed's (512, 512) float32
  return shmbridge::Shape{bytes / 4};
}

double cpu_seconds() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

long minor_faults() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

// Attach as soon as the requester created the segment (it prints READY first).
template <class Handle>
Handle attach_when_created(const Args& a) {
  const auto give_up = Clock::now() + std::chrono::seconds(10);
  for (;;) {
    try {
      return Handle::attach(a.name, options(a));
    } catch (const shmbridge::Error& e) {
      if (e.code() != shmbridge::ErrorCode::SEGMENT_NOT_FOUND || Clock::now() >= give_up) throw;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
}

// W warm-up and R timed rounds (--warmup, --rounds; r < 0 is a warm-up round): run(r) is timed
// with steady_clock, check(r) (did the round give the right reply?) is not; stops after
// --max-seconds of timed rounds. Prints the JSON line of a requester (`extra`, e.g.
// "\"protocol\":2,", goes after its role) and returns the number of wrong replies.
template <class Run, class Check>
long timed_rounds(const Args& a, const char* role, const char* extra, std::uint64_t bytes, Run run,
                  Check check) {
  std::vector<std::int64_t> samples;
  samples.reserve(static_cast<std::size_t>(a.rounds));
  long bad = 0;
  double cpu0 = 0.0;
  long flt0 = 0;
  Clock::time_point start{};
  for (long r = -a.warmup; r < a.rounds; ++r) {
    if (r == 0) {
      cpu0 = cpu_seconds();
      flt0 = minor_faults();
      start = Clock::now();
    }
    const auto t0 = Clock::now();
    run(r);
    const auto t1 = Clock::now();
    if (!check(r)) ++bad;
    if (r >= 0) samples.push_back(duration_cast<nanoseconds>(t1 - t0).count());
    if (r >= 0 && a.max_seconds > 0 && duration<double>(t1 - start).count() > a.max_seconds) break;
  }
  const double wall = duration<double>(Clock::now() - start).count();
  const double cpu = cpu_seconds() - cpu0;
  const long flt = minor_faults() - flt0;
  std::printf("{\"lang\":\"cpp\",\"role\":\"%s\",%s\"bytes\":%llu,\"rounds\":%zu,\"errors\":%ld,"
              "\"wall_s\":%.6f,\"cpu_s\":%.6f,\"minor_faults\":%ld,\"samples_ns\":[",
              role, extra, static_cast<unsigned long long>(bytes), samples.size(), bad, wall, cpu,
              flt);
  for (std::size_t i = 0; i < samples.size(); ++i) {
    std::printf(i ? ",%lld" : "%lld", static_cast<long long>(samples[i]));
  }
  std::printf("]}\n");
  std::fflush(stdout);
  return bad;
}

int requester(const Args& a) {
  const shmbridge::Shape shape = shape_for(a.bytes);
  const std::size_t n = static_cast<std::size_t>(a.bytes / 4);
  auto req = shmbridge::Requester::create(a.name, shmbridge::DType::float32, shape, options(a));
  std::vector<float> in(n), out(n);  // value-initialised: every page touched before timing
  for (std::size_t i = 0; i < n; ++i) in[i] = 1e-6f + static_cast<float>(i % 1024);
  if (a.zero_copy) {  // the request is written in place: whole values, exact after many +1
    const shmbridge::Span<float> buf = req.request_buffer<float>();
    for (std::size_t i = 0; i < n; ++i) buf[i] = static_cast<float>(i % 1024);
  }
  float last = static_cast<float>((n - 1) % 1024);  // zero-copy: the last element, +1 per round
  float first = 0.0f, end = 0.0f;                   // zero-copy: what the reply view showed
  std::printf("READY\n");
  std::fflush(stdout);
  long bad = 0;
  if (a.zero_copy) {  // no copy in or out: element 0 written in place, 2 elements of the view read
    bad = timed_rounds(
        a, "requester", "", a.bytes,
        [&](long r) {
          in[0] = static_cast<float>(r & 0xffff);  // a different request every round
          req.request_buffer<float>()[0] = in[0];
          req.send_in_place();
          const shmbridge::ArrayView reply = req.receive();
          const shmbridge::Span<const float> v = reply.as<float>();
          first = v[0];
          end = v[n - 1];
        },
        [&](long) {
          last += 1.0f;
          return first == in[0] + 1.0f && end == last;
        });
  } else {
    bad = timed_rounds(
        a, "requester", "", a.bytes,
        [&](long r) {
          in[0] = static_cast<float>(r & 0xffff);  // a different request every round
          req.send(in.data(), shape);
          req.receive(out.data(), shape);
        },
        [&](long) { return out[0] == in[0] + 1.0f && out[n - 1] == in[n - 1] + 1.0f; });
  }
  req.close();
  return bad ? 1 : 0;
}

int responder(const Args& a) {
  auto rsp = attach_when_created<shmbridge::Responder>(a);
  const double cpu0 = cpu_seconds();
  const long flt0 = minor_faults();
  long served = 0;
  rsp.serve([&](shmbridge::Request& r) {
    const auto data = r.as<float>();  // the reply is computed in place
    shmbridge_examples::add_in_place(data.data(), data.size(), 1.0f);
    ++served;
  });
  std::printf("{\"lang\":\"cpp\",\"role\":\"responder\",\"served\":%ld,\"cpu_s\":%.6f,"
              "\"minor_faults\":%ld}\n",
              served, cpu_seconds() - cpu0, minor_faults() - flt0);
  return 0;
}

int idle(const Args& a) {
  auto rsp = shmbridge::Responder::create(a.name, shmbridge::DType::float32, shape_for(a.bytes),
                                          options(a));
  std::printf("READY\n");
  std::fflush(stdout);
  const double cpu0 = cpu_seconds();
  const auto t0 = Clock::now();
  std::string outcome = "request";
  try {
    rsp.take(duration_cast<nanoseconds>(duration<double>(a.seconds)));
  } catch (const shmbridge::Error& e) {
    outcome = e.name();
  }
  const double wall = duration<double>(Clock::now() - t0).count();
  const double cpu = cpu_seconds() - cpu0;
  std::printf("{\"lang\":\"cpp\",\"role\":\"idle\",\"outcome\":\"%s\",\"wall_s\":%.6f,"
              "\"cpu_s\":%.6f}\n",
              outcome.c_str(), wall, cpu);
  return 0;
}

// -- The camera scenario ------------------------------------------------------------------------
// Round k (counted from the first warm-up round) sends frame[0] = k mod 256 (the rest of the
// frame is a fixed pattern) and stamp = k; the responder answers n = k mod 101 rows of 6 float32,
// every value float(stamp) except column 0 = frame[0]. It touches the frame as little as a
// responder can, so the figures are the transport's; the example's detection rule
// (cpp/examples/README.md) would add its own compute. The requester copies the n rows out and
// checks n, the first and the last value.

constexpr std::uint64_t kFrameBytes = 480 * 640 * 3, kMaxBoxes = 100;
constexpr std::uint64_t kPackedBytes = kFrameBytes + 8;  // v1: the frame, then the stamp's bytes
constexpr std::uint64_t kRowsOffset = 8;                 // v1 reply: uint32 n, 4 spare, the rows

shmbridge::Schema camera_request() {
  return shmbridge::Schema{}.field<std::uint8_t>("image", {480, 640, 3}).field<double>("stamp", {});
}
shmbridge::Schema camera_reply() {
  return shmbridge::Schema{}.field<float>("boxes", {shmbridge::upto(kMaxBoxes), 6});
}

// The responder's rows for (stamp, first byte of the frame) into `rows` (n x 6 floats).
std::uint64_t fill_boxes(float* rows, double stamp, std::uint8_t first) {
  const std::uint64_t n = static_cast<std::uint64_t>(stamp) % (kMaxBoxes + 1);
  for (std::uint64_t i = 0; i < n * 6; ++i) rows[i] = static_cast<float>(stamp);
  for (std::uint64_t i = 0; i < n; ++i) rows[i * 6] = static_cast<float>(first);
  return n;
}

bool boxes_ok(const std::vector<float>& out, std::uint64_t n, long k) {
  const std::uint64_t want = static_cast<std::uint64_t>(k) % (kMaxBoxes + 1);
  if (n != want) return false;
  return n == 0 || (out[0] == static_cast<float>(k & 0xff) &&
                    out[n * 6 - 1] == static_cast<float>(static_cast<double>(k)));
}

int camera_requester(const Args& a) {
  std::vector<float> out(kMaxBoxes * 6);
  // v1 keeps the frame inside the packed array (no packing copy); v2 sends it as it is.
  std::vector<std::uint8_t> frame(a.protocol == 1 ? kPackedBytes : kFrameBytes);
  for (std::uint64_t i = 0; i < kFrameBytes; ++i) frame[i] = static_cast<std::uint8_t>(i * 7);
  std::uint64_t n = 0;  // the rows of the last reply
  // One round: frame[0] and the stamp of round k = r + warmup, send, the rows copied to `out`.
  std::function<std::uint64_t(double)> exchange;
  std::optional<shmbridge::MessageRequester> req2;
  std::optional<shmbridge::Requester> req1;
  if (a.protocol == 2) {
    req2.emplace(
        shmbridge::MessageRequester::create(a.name, camera_request(), camera_reply(), options(a)));
    exchange = [&](double stamp) {
      req2->send({{"image", shmbridge::FieldRef(frame.data(), {480, 640, 3})},
                  {"stamp", shmbridge::FieldRef(&stamp, {})}});
      const shmbridge::MessageView m = req2->receive();
      const auto boxes = m.field<float>("boxes");
      std::memcpy(out.data(), boxes.data(), boxes.nbytes());
      return boxes.shape()[0];
    };
  } else {
    req1.emplace(shmbridge::Requester::create(a.name, shmbridge::DType::uint8,
                                              shmbridge::Shape{kPackedBytes}, options(a)));
    exchange = [&](double stamp) {
      std::memcpy(frame.data() + kFrameBytes, &stamp, sizeof stamp);
      req1->send(frame.data(), shmbridge::Shape{kPackedBytes});
      const shmbridge::ArrayView v = req1->receive();
      const auto* p = v.data<std::uint8_t>();
      std::uint32_t rows = 0;
      std::memcpy(&rows, p, sizeof rows);
      if (rows > kMaxBoxes) return std::uint64_t{kMaxBoxes + 1};  // a wrong reply, no overflow
      std::memcpy(out.data(), p + kRowsOffset, rows * 6 * sizeof(float));
      return std::uint64_t{rows};
    };
  }
  std::printf("READY\n");
  std::fflush(stdout);
  const std::string extra = "\"protocol\":" + std::to_string(a.protocol) + ",";
  const long bad = timed_rounds(
      a, "camera-requester", extra.c_str(), kPackedBytes,
      [&](long r) {
        const long k = r + a.warmup;
        frame[0] = static_cast<std::uint8_t>(k & 0xff);
        n = exchange(static_cast<double>(k));
      },
      [&](long r) { return boxes_ok(out, n, r + a.warmup); });
  if (req2) req2->close();
  if (req1) req1->close();
  return bad ? 1 : 0;
}

int camera_responder(const Args& a) {
  long served = 0;
  double cpu0 = 0.0;
  if (a.protocol == 2) {
    auto rsp = attach_when_created<shmbridge::MessageResponder>(a);
    cpu0 = cpu_seconds();
    rsp.serve([&](shmbridge::MessageRequest& r) {
      const auto image = r.request().field<std::uint8_t>("image");
      const double stamp = r.request().field<double>("stamp")[0];
      const std::uint64_t n = static_cast<std::uint64_t>(stamp) % (kMaxBoxes + 1);
      fill_boxes(r.reply_field<float>("boxes", {n, 6}).data(), stamp, image[0]);
      ++served;
    });
  } else {
    auto rsp = attach_when_created<shmbridge::Responder>(a);
    cpu0 = cpu_seconds();
    float rows[kMaxBoxes * 6];
    rsp.serve([&](shmbridge::Request& r) {
      auto* p = r.data<std::uint8_t>();
      double stamp = 0.0;
      std::memcpy(&stamp, p + kFrameBytes, sizeof stamp);
      const auto n = static_cast<std::uint32_t>(fill_boxes(rows, stamp, p[0]));
      std::memcpy(p, &n, sizeof n);  // the reply in place, over the frame
      std::memcpy(p + kRowsOffset, rows, n * 6 * sizeof(float));
      ++served;
    });
  }
  std::printf("{\"lang\":\"cpp\",\"role\":\"camera-responder\",\"protocol\":%d,\"served\":%ld,"
              "\"cpu_s\":%.6f}\n",
              a.protocol, served, cpu_seconds() - cpu0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  try {
    if (a.mode == "requester") return requester(a);
    if (a.mode == "responder") return responder(a);
    if (a.mode == "camera-requester") return camera_requester(a);
    if (a.mode == "camera-responder") return camera_responder(a);
    return idle(a);
  } catch (const shmbridge::Error& e) {
    std::fprintf(stderr, "bench_peer %s: %s\n", a.mode.c_str(), e.what());
    return e.exit_code();
  }
}
