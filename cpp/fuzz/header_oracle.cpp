// Differential oracle for ci/fuzz.sh: for each file prints what the C++ validators say, and
// ci/fuzz.sh (differential.py) compares the lines with the Python implementation and the
// reference decoders of spec/tools/ on the fuzzers' corpora.
//
//   header_oracle FILE...        v1 (fuzz_header's format: 8 bytes little-endian mapping size,
//                                then up to 512 header bytes, zero-padded):
//                                "<error name or OK> <file>"
//   header_oracle --v2 FILE...   v2 (fuzz_v2's format, v2_input.hpp): "<header> <tables> <file>",
//                                <header> the error name or OK (H1-H16, F1-F9); <tables> "-" when
//                                the header fails, else OK or ERROR:field of the first failing
//                                table, the request table first (E1-E8)
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "shmbridge/errors.hpp"
#include "shmbridge/layout.hpp"
#include "shmbridge/layout_v2.hpp"
#include "shmbridge/message_table.hpp"
#include "v2_input.hpp"

namespace {

using namespace shmbridge;

std::vector<std::uint8_t> read_file(const char* path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(f)), {});
}

std::string v1_result(const std::vector<std::uint8_t>& in) {
  std::uint64_t mapping = 0;
  for (std::size_t k = 0; k < 8 && k < in.size(); ++k) mapping |= std::uint64_t{in[k]} << (8 * k);
  std::vector<std::uint8_t> h(layout::kHeaderSize, 0);
  for (std::size_t k = 8; k < in.size() && k - 8 < h.size(); ++k) h[k - 8] = in[k];
  try {
    validate_header(h.data(), mapping);
  } catch (const Error& e) {
    return e.name();
  }
  return "OK";
}

std::string v2_result(const std::vector<std::uint8_t>& raw) {
  const V2Input in = split_v2_input(raw.data(), raw.size());
  HeaderV2 h;
  try {
    h = validate_header_v2(in.header.get(), in.mapping);
  } catch (const Error& e) {
    return std::string(e.name()) + " -";
  }
  try {
    validate_table(h.request, in.tables.get());
    validate_table(h.reply, in.tables.get() + layout_v2::kEntrySize * h.request.size());
  } catch (const Error& e) {
    return std::string("OK ") + e.name() + ":" + e.field();
  }
  return "OK OK";
}

}  // namespace

int main(int argc, char** argv) {
  const bool v2 = argc > 1 && std::strcmp(argv[1], "--v2") == 0;
  for (int i = v2 ? 2 : 1; i < argc; ++i) {
    const auto in = read_file(argv[i]);
    const std::string result = v2 ? v2_result(in) : v1_result(in);
    std::printf("%s %s\n", result.c_str(), argv[i]);
  }
  return 0;
}
