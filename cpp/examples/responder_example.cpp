// The responder of the seed design in C++: attaches to "SimpleShm" (float32, (512, 512)), adds
// 1.0 to every element in place, and serves until the requester closes.
//
// Usage: responder_example [--name NAME] [--timeout SEC] [--wait SEC] [--quiet]
// --wait: how long to wait for the requester to create the segment (default 10 s).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "shmbridge/shmbridge.hpp"

int main(int argc, char** argv) {
  std::string name = "SimpleShm";
  double timeout = 5.0, wait = 10.0;
  bool quiet = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--name" && v) {
      name = v;
      ++i;
    } else if (a == "--timeout" && v) {
      timeout = std::strtod(v, nullptr);
      ++i;
    } else if (a == "--wait" && v) {
      wait = std::strtod(v, nullptr);
      ++i;
    } else if (a == "--quiet") {
      quiet = true;
    } else {
      std::fprintf(stderr, "usage: %s [--name NAME] [--timeout SEC] [--wait SEC] [--quiet]\n",
                   argv[0]);
      return 2;
    }
  }
  using namespace std::chrono;
  try {
    shmbridge::Options opt;
    opt.timeout = duration_cast<nanoseconds>(duration<double>(timeout));
    const auto give_up = steady_clock::now() + duration_cast<nanoseconds>(duration<double>(wait));
    shmbridge::Responder rsp = [&] {
      for (;;) {  // the requester creates the segment; it may not exist yet
        try {
          return shmbridge::Responder::attach(name, shmbridge::DType::float32, {512, 512}, opt);
        } catch (const shmbridge::Error& e) {
          if (e.code() != shmbridge::ErrorCode::SEGMENT_NOT_FOUND ||
              steady_clock::now() >= give_up) {
            throw;
          }
          std::this_thread::sleep_for(milliseconds(20));
        }
      }
    }();
    if (!quiet) std::printf("responder: attached to %s\n", rsp.name().c_str());
    unsigned long served = 0;
    rsp.serve([&](shmbridge::Request& r) {
      for (float& x : r.as<float>()) x += 1.0f;
      ++served;
    });
    std::printf("responder: served %lu requests; the requester closed\n", served);
  } catch (const shmbridge::Error& e) {
    std::fprintf(stderr, "responder: %s\n", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "responder: internal error: %s\n", e.what());
    return 1;
  }
  return 0;
}
