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
#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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
  bool zero_copy = false;    // requester: request_buffer + send_in_place + receive() view
};

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s requester|responder|idle --name N [--bytes B] [--rounds R] "
               "[--warmup W] [--spin-us S] [--timeout S] [--seconds T] [--max-seconds T] "
               "[--zero-copy 0|1]\n",
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
    else if (k == "--zero-copy") a.zero_copy = std::strtol(v, nullptr, 10) != 0;
    else usage(argv[0]);
  }
  if (a.mode != "requester" && a.mode != "responder" && a.mode != "idle") usage(argv[0]);
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
  std::printf("READY\n");
  std::fflush(stdout);

  std::vector<std::int64_t> samples;
  samples.reserve(static_cast<std::size_t>(a.rounds));
  long bad = 0;
  double cpu0 = 0.0, wall0 = 0.0;
  long flt0 = 0;
  Clock::time_point start{};
  for (long r = -a.warmup; r < a.rounds; ++r) {
    if (r == 0) {
      cpu0 = cpu_seconds();
      flt0 = minor_faults();
      start = Clock::now();
    }
    in[0] = static_cast<float>(r & 0xffff);  // a different request every round
    if (a.zero_copy) {
      const auto t0 = Clock::now();
      req.request_buffer<float>()[0] = in[0];
      req.send_in_place();
      const shmbridge::ArrayView reply = req.receive();
      const shmbridge::Span<const float> v = reply.as<float>();
      const float first = v[0], end = v[n - 1];
      const auto t1 = Clock::now();
      last += 1.0f;
      if (first != in[0] + 1.0f || end != last) ++bad;
      if (r >= 0) samples.push_back(duration_cast<nanoseconds>(t1 - t0).count());
      if (r >= 0 && a.max_seconds > 0 && duration<double>(t1 - start).count() > a.max_seconds) {
        break;
      }
      continue;
    }
    const auto t0 = Clock::now();
    req.send(in.data(), shape);
    req.receive(out.data(), shape);
    const auto t1 = Clock::now();
    if (out[0] != in[0] + 1.0f || out[n - 1] != in[n - 1] + 1.0f) ++bad;
    if (r >= 0) samples.push_back(duration_cast<nanoseconds>(t1 - t0).count());
    if (r >= 0 && a.max_seconds > 0 && duration<double>(t1 - start).count() > a.max_seconds) break;
  }
  wall0 = duration<double>(Clock::now() - start).count();
  const double cpu = cpu_seconds() - cpu0;
  const long flt = minor_faults() - flt0;
  std::printf("{\"lang\":\"cpp\",\"role\":\"requester\",\"bytes\":%llu,\"rounds\":%zu,"
              "\"errors\":%ld,\"wall_s\":%.6f,\"cpu_s\":%.6f,\"minor_faults\":%ld,\"samples_ns\":[",
              static_cast<unsigned long long>(a.bytes), samples.size(), bad, wall0, cpu, flt);
  for (std::size_t i = 0; i < samples.size(); ++i) {
    std::printf(i ? ",%lld" : "%lld", static_cast<long long>(samples[i]));
  }
  std::printf("]}\n");
  std::fflush(stdout);
  req.close();
  return bad ? 1 : 0;
}

int responder(const Args& a) {
  const auto give_up = Clock::now() + std::chrono::seconds(10);
  shmbridge::Responder rsp = [&] {
    for (;;) {
      try {
        return shmbridge::Responder::attach(a.name, options(a));
      } catch (const shmbridge::Error& e) {
        if (e.code() != shmbridge::ErrorCode::SEGMENT_NOT_FOUND || Clock::now() >= give_up) throw;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
  }();
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

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  try {
    if (a.mode == "requester") return requester(a);
    if (a.mode == "responder") return responder(a);
    return idle(a);
  } catch (const shmbridge::Error& e) {
    std::fprintf(stderr, "bench_peer %s: %s\n", a.mode.c_str(), e.what());
    return e.exit_code();
  }
}
