// Differential oracle for ci/fuzz.sh: for each file (the fuzz_header input format: 8 bytes
// little-endian mapping size, then up to 512 header bytes, zero-padded) prints
// "<error name or OK> <file>". ci/fuzz.sh compares these lines with the Python implementation
// and the reference decoder of spec/tools/gen_vectors.py on the fuzzer's corpus.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <vector>

#include "shmbridge/errors.hpp"
#include "shmbridge/layout.hpp"

int main(int argc, char** argv) {
  using namespace shmbridge;
  for (int i = 1; i < argc; ++i) {
    std::ifstream f(argv[i], std::ios::binary);
    std::vector<std::uint8_t> in((std::istreambuf_iterator<char>(f)), {});
    std::uint64_t mapping = 0;
    for (std::size_t k = 0; k < 8 && k < in.size(); ++k) mapping |= std::uint64_t{in[k]} << (8 * k);
    std::vector<std::uint8_t> h(layout::kHeaderSize, 0);
    for (std::size_t k = 8; k < in.size() && k - 8 < h.size(); ++k) h[k - 8] = in[k];
    const char* result = "OK";
    try {
      validate_header(h.data(), mapping);
    } catch (const Error& e) {
      result = e.name();
    }
    std::printf("%s %s\n", result, argv[i]);
  }
  return 0;
}
