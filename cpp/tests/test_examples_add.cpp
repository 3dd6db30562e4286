// The examples' and the benchmark's handler kernel (cpp/examples/add_one.hpp): every version
// this CPU can run adds to every element, whatever the length and the alignment of the start,
// and the dispatch picks the widest one (bench/README.md, "The C++ responder's add").
#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "add_one.hpp"

namespace {

using AddFn = void (*)(float*, std::size_t, float);

std::vector<std::pair<std::string, AddFn>> versions_here() {
  std::vector<std::pair<std::string, AddFn>> v{
      {"plain", shmbridge_examples::add_detail::add_plain}};
#if defined(SHMBRIDGE_EXAMPLES_ADD_DISPATCH)
  v.emplace_back("baseline", shmbridge_examples::add_detail::add_baseline);
  if (shmbridge_examples::add_detail::has_avx2())
    v.emplace_back("avx2", shmbridge_examples::add_detail::add_avx2);
  if (shmbridge_examples::add_detail::has_avx512f()) {
    v.emplace_back("avx512f", shmbridge_examples::add_detail::add_avx512);
  }
#endif
  return v;
}

TEST(ExamplesAdd, EveryVersionAddsToEveryElementAndNothingElse) {
  std::vector<std::size_t> lengths;
  for (std::size_t n = 0; n <= 40; ++n) lengths.push_back(n);
  lengths.push_back(262144);  // 1 MiB of float32, the benchmark's payload
  for (const auto& [name, fn] : versions_here()) {
    for (const std::size_t n : lengths) {
      for (std::size_t skew = 0; skew < 4; ++skew) {  // starts not aligned to a vector
        std::vector<float> buf(n + skew + 1);
        for (std::size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<float>(i % 1000);
        fn(buf.data() + skew, n, 1.5f);
        for (std::size_t i = 0; i < buf.size(); ++i) {
          const bool inside = i >= skew && i < skew + n;
          const float want = static_cast<float>(i % 1000) + (inside ? 1.5f : 0.0f);
          ASSERT_EQ(buf[i], want) << name << " n=" << n << " skew=" << skew << " i=" << i;
        }
      }
    }
  }
}

TEST(ExamplesAdd, DispatchRunsTheWidestVersionOfThisCpu) {
  const std::string widest = versions_here().back().first;
  EXPECT_EQ(shmbridge_examples::add_in_place_isa(), widest == "plain" ? "plain" : widest);
  std::vector<float> x(37, 2.0f);
  shmbridge_examples::add_in_place(x.data(), x.size(), 1.0f);
  for (const float v : x) EXPECT_EQ(v, 3.0f);
}

}  // namespace
