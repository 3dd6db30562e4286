// The original requester of the seed design: creates "SimpleShm", sends a (512, 512) float32
// array starting at 1e-6 and incremented by 1 each round, waits for the reply, and verifies that
// EVERY element equals input + 1.0f. Run responder_example (or python/examples/main.py) as peer.
//
// Usage: shared_memory_example [--rounds N] [--timeout SEC] [--name NAME] [--quiet]
// Exit: 0 all rounds verified; 1 a verification failure or internal error; 2 usage error; the
// spec exit code (10..26) on a shmbridge error, e.g. 16 (PEER_GONE) when the responder closed or
// crashed (the message says which, R-LIVE-5).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "example_args.hpp"
#include "shmbridge/shmbridge.hpp"

int main(int argc, char** argv) {
  RequesterArgs args;
  args.name = "SimpleShm";
  if (!parse_requester_args(argc, argv, args)) return 2;
  const long rounds = args.rounds, every = args.every;
  const double timeout = args.timeout;
  const std::string& name = args.name;
  const bool quiet = args.quiet;

  const shmbridge::Shape shape{512, 512};
  const std::size_t n = 512 * 512;
  std::vector<float> data(n, 1e-6f), reply(n);
  std::vector<double> micros;
  micros.reserve(static_cast<std::size_t>(rounds));
  long failures = 0;
  try {
    shmbridge::Options opt;
    opt.timeout = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::duration<double>(timeout));
    auto req = shmbridge::Requester::create(name, shmbridge::DType::float32, shape, opt);
    std::printf("requester: created %s, float32 %s, %llu bytes; waiting for a responder\n",
                req.name().c_str(), shape.to_string().c_str(),
                static_cast<unsigned long long>(req.capacity()));
    std::fflush(stdout);
    bool name_removed = false;
    for (long round = 0; round < rounds; ++round) {
      const auto t0 = std::chrono::steady_clock::now();
      req.send(data.data(), shape);
      req.receive(reply.data(), shape);
      const auto t1 = std::chrono::steady_clock::now();
      micros.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      std::size_t bad = 0, first_bad = 0;
      for (std::size_t i = 0; i < n; ++i) {
        if (reply[i] != data[i] + 1.0f) {
          if (bad++ == 0) first_bad = i;
        }
      }
      if (bad) {
        ++failures;
        std::printf("round %ld: FAILED, %zu elements differ; first [%zu] expected %g found %g\n",
                    round, bad, first_bad, static_cast<double>(data[first_bad] + 1.0f),
                    static_cast<double>(reply[first_bad]));
      } else if (!quiet || round % every == 0 || round + 1 == rounds) {
        std::printf("round %ld: ok, reply[0] = %.6f, %.1f us\n", round,
                    static_cast<double>(reply[0]), micros.back());
      }
      for (auto& x : data) x += 1.0f;
      if (!name_removed && req.name_removed()) {  // R-SEG-9: say it once, keep serving
        name_removed = true;
        std::fprintf(stderr,
                     "requester: warning: the name %s was removed by another process (e.g. a "
                     "Python < 3.13 script that attached with multiprocessing.shared_memory: its "
                     "resource tracker unlinks at exit); this channel keeps working, but no new "
                     "peer can attach. Attach with shmbridge, or SharedMemory(name, track=False) "
                     "on Python >= 3.13\n",
                     req.name().c_str());
      }
    }
    req.close();
  } catch (const shmbridge::Error& e) {
    if (e.peer_gone_reason() == shmbridge::PeerGoneReason::died) {  // R-LIVE-5: a crash
      std::fprintf(stderr, "requester: the responder crashed: %s\n", e.what());
    } else {
      std::fprintf(stderr, "requester: %s\n", e.what());
    }
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "requester: internal error: %s\n", e.what());
    return 1;
  }
  std::vector<double> sorted = micros;
  std::sort(sorted.begin(), sorted.end());
  // The first round includes waiting for the responder to attach; the median is unaffected.
  const double median = sorted.empty() ? 0.0 : sorted[sorted.size() / 2];
  std::printf("summary: rounds %zu, failures %ld, median round trip %.1f us (1 MiB each way)\n",
              micros.size(), failures, median);
  return failures ? 1 : 0;
}
