// The camera requester of protocol v2 (typed messages, spec/PROTOCOL.md Part II): creates the
// segment "Camera" with
//   request {image: uint8 (480, 640, 3), stamp: float64 ()}
//   reply   {boxes: float32 (<= 100, 6)}
// and every round sends a frame and its timestamp, receives the detections and verifies EVERY
// value of the reply (count and content, bit for bit) against the detection rule, which a
// responder computes from the request alone. The frames and the rule are written down once, in
// cpp/examples/README.md ("The camera exchange"); camera_rule.hpp is their C++ code and
// python/examples/camera_responder.py their Python code.
//
// Usage: camera_requester [--rounds N] [--timeout SEC] [--name NAME] [--quiet] [--every N]
// Exit: 0 all rounds verified; 1 a verification failure or internal error; 2 usage error; the
// spec exit code (10..28) on a shmbridge error, e.g. 16 (PEER_GONE) when the responder closed or
// crashed (the message says which, R-LIVE-5).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "camera_rule.hpp"
#include "example_args.hpp"
#include "shmbridge/shmbridge.hpp"

using namespace camera;

int main(int argc, char** argv) {
  RequesterArgs args;
  args.name = "Camera";
  if (!parse_requester_args(argc, argv, args)) return 2;
  const long rounds = args.rounds, every = args.every;
  const double timeout = args.timeout;
  const std::string& name = args.name;
  const bool quiet = args.quiet;

  const auto request = shmbridge::Schema{}
                           .field<std::uint8_t>("image", {kHeight, kWidth, kChannels})
                           .field<double>("stamp", {});
  const auto reply = shmbridge::Schema{}.field<float>("boxes", {shmbridge::upto(kMaxBoxes), 6});
  std::vector<std::uint8_t> image(kHeight * kWidth * kChannels);
  std::vector<double> micros;
  micros.reserve(static_cast<std::size_t>(rounds));
  long failures = 0;
  std::uint64_t boxes_seen = 0;
  try {
    shmbridge::Options opt;
    opt.timeout = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::duration<double>(timeout));
    auto req = shmbridge::MessageRequester::create(name, request, reply, opt);
    std::printf("camera: created %s: request %s, reply %s; waiting for a responder\n",
                req.name().c_str(), request.to_string().c_str(), reply.to_string().c_str());
    std::fflush(stdout);
    for (long round = 0; round < rounds; ++round) {
      fill_frame(image, round);
      const double stamp = static_cast<double>(round) / 30.0;
      const auto t0 = std::chrono::steady_clock::now();
      req.send({{"image", shmbridge::FieldRef(image.data(), {kHeight, kWidth, kChannels})},
                {"stamp", shmbridge::FieldRef(&stamp, {})}});
      const shmbridge::MessageView msg = req.receive();  // zero-copy, valid until the next send
      const auto t1 = std::chrono::steady_clock::now();
      micros.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      const auto boxes = msg.field<float>("boxes");  // FieldSpan<const float>, shape (n, 6)
      const std::vector<float> want = detect(image.data(), stamp);
      const std::uint64_t n = want.size() / 6;
      boxes_seen += boxes.shape()[0];
      std::size_t bad = 0, first_bad = 0;
      if (boxes.shape() != shmbridge::Shape{n, 6}) {
        bad = 1;
      } else {
        for (std::size_t i = 0; i < want.size(); ++i) {
          if (boxes[i] != want[i] && bad++ == 0) first_bad = i;
        }
      }
      if (bad) {
        ++failures;
        std::printf("round %ld: FAILED: expected %llu boxes, found shape %s; %zu values differ",
                    round, static_cast<unsigned long long>(n), boxes.shape().to_string().c_str(),
                    bad);
        if (boxes.shape() == shmbridge::Shape{n, 6}) {
          std::printf(" (first [%zu] expected %g found %g)", first_bad,
                      static_cast<double>(want[first_bad]), static_cast<double>(boxes[first_bad]));
        }
        std::printf("\n");
      } else if (!quiet || round % every == 0 || round + 1 == rounds) {
        std::printf("round %ld: ok, %llu boxes, %.1f us\n", round,
                    static_cast<unsigned long long>(n), micros.back());
      }
    }
    req.close();
  } catch (const shmbridge::Error& e) {
    if (e.peer_gone_reason() == shmbridge::PeerGoneReason::died) {  // R-LIVE-5: a crash
      std::fprintf(stderr, "camera: the responder crashed: %s\n", e.what());
    } else {
      std::fprintf(stderr, "camera: %s\n", e.what());
    }
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "camera: internal error: %s\n", e.what());
    return 1;
  }
  // Round 0 also waits for the responder to start (a Python one imports numpy first): the mean
  // and the median are of the rounds after it, when there are any.
  std::vector<double> sorted(micros.size() > 1 ? micros.begin() + 1 : micros.begin(), micros.end());
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted.empty() ? 0.0 : sorted[sorted.size() / 2];
  double total = 0.0;
  for (const double us : sorted) total += us;
  const double mean = sorted.empty() ? 0.0 : total / static_cast<double>(sorted.size());
  std::printf(
      "summary: rounds %zu, verified %zu, failures %ld, boxes %llu, mean round trip %.1f us, "
      "median round trip %.1f us\n",
      micros.size(), micros.size() - static_cast<std::size_t>(failures), failures,
      static_cast<unsigned long long>(boxes_seen), mean, median);
  return failures ? 1 : 0;
}
