// One round trip through an installed shmbridge: create a requester, attach a responder, send a
// (2, 3) float32 array, add 1 in place, reply, receive and verify. Exit 0 on success.
#include <shmbridge/shmbridge.hpp>

#include <cstdio>
#include <string>

int main() {
  const std::string name = "sbconsumer" + std::to_string(shmbridge::current_pid());
  try {
    auto req = shmbridge::Requester::create(name, shmbridge::DType::float32, {2, 3});
    auto rsp = shmbridge::Responder::attach(name, shmbridge::DType::float32, {2, 3});
    const float in[6] = {1, 2, 3, 4, 5, 6};
    req.send(in, {2, 3});
    auto request = rsp.take();
    for (float& x : request.as<float>()) x += 1.0f;
    request.reply();
    float out[6] = {};
    req.receive(out, {2, 3});
    for (int i = 0; i < 6; ++i) {
      if (out[i] != in[i] + 1.0f) {
        std::fprintf(stderr, "consumer: element %d is %g, expected %g\n", i, out[i], in[i] + 1.0f);
        return 1;
      }
    }
  } catch (const shmbridge::Error& e) {
    std::fprintf(stderr, "consumer: %s\n", e.what());
    return e.exit_code();
  }
  std::printf("consumer: round trip through the installed shmbridge OK\n");
  return 0;
}
