// A C++ responder for camera_requester (python/examples/camera_responder.py is the Python one;
// either may serve): attaches to "Camera" stating the schemas it expects (R-SCHEMA-10), and
// answers every frame with the detections of the rule (cpp/examples/README.md), written in place
// into the reply field's zero-copy view (reply_field), until the requester closes.
//
// Usage: camera_responder [--timeout SEC] [--name NAME] [--quiet]
// Exit: 0 when the requester closed; the spec exit code (10..28) on a shmbridge error, e.g. 16
// (PEER_GONE, reason DIED) when the requester crashed (R-LIVE-4).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "camera_rule.hpp"
#include "shmbridge/shmbridge.hpp"

using namespace camera;

int main(int argc, char** argv) {
  double timeout = 10.0;
  std::string name = "Camera";
  bool quiet = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--timeout" && i + 1 < argc) {
      timeout = std::strtod(argv[++i], nullptr);
    } else if (a == "--name" && i + 1 < argc) {
      name = argv[++i];
    } else if (a == "--quiet") {
      quiet = true;
    } else {
      std::fprintf(stderr, "usage: %s [--timeout SEC] [--name NAME] [--quiet]\n", argv[0]);
      return 2;
    }
  }
  const auto request = shmbridge::Schema{}
                           .field<std::uint8_t>("image", {kHeight, kWidth, kChannels})
                           .field<double>("stamp", {});
  const auto reply = shmbridge::Schema{}.field<float>("boxes", {shmbridge::upto(kMaxBoxes), 6});
  long served = 0;
  try {
    shmbridge::Options opt;
    opt.timeout = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::duration<double>(timeout));
    auto rsp = shmbridge::MessageResponder::attach(name, request, reply, opt);
    rsp.serve([&](shmbridge::MessageRequest& r) {
      const auto image = r.request().field<std::uint8_t>("image");  // read-only, zero-copy
      const double stamp = r.request().field<double>("stamp")[0];
      const std::uint64_t s = frame_sum(image.data()), n = count(s);
      auto boxes = r.reply_field<float>("boxes", {n, 6});  // writable view of the reply field
      write_detections(boxes.data(), n, image.data(), stamp, s);
      if (!quiet)
        std::printf("request #%u: %llu boxes\n", r.seq(), static_cast<unsigned long long>(n));
      ++served;
    });  // the library publishes the reply after the handler
  } catch (const shmbridge::Error& e) {
    std::fprintf(stderr, "camera_responder: %s\n", e.what());
    return e.exit_code();
  }
  std::printf("camera_responder: served %ld requests; the requester closed\n", served);
  return 0;
}
