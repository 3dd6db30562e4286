// Google Benchmark micro-benchmarks of the pieces of the shmbridge fast path (profiling aid;
// the round-trip figures come from bench_peer + bench/run.py).
//
//   bench_micro [--benchmark_format=json] [--benchmark_filter=...]
#include <benchmark/benchmark.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "add_one.hpp"
#include "shmbridge/shmbridge.hpp"

namespace {

void* shared_map(std::size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  std::memset(p, 0, bytes);
  return p;
}

// memcpy into a shared mapping (the copy-in of send / copy-out of receive).
void BM_memcpy(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0));
  std::vector<char> src(n, 1);
  void* dst = shared_map(n);
  for (auto _ : st) {
    std::memcpy(dst, src.data(), n);
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(n));
  munmap(dst, n);
}
BENCHMARK(BM_memcpy)->RangeMultiplier(16)->Range(64, 16 << 20);

// float32 += 1 (the responder's work in C++).
void BM_add(benchmark::State& st) {
  const auto n = static_cast<std::size_t>(st.range(0)) / 4;
  auto* p = static_cast<float*>(shared_map(n * 4));
  for (auto _ : st) {
    for (std::size_t i = 0; i < n; ++i) p[i] += 1.0f;
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(n * 4));
  munmap(p, n * 4);
}
BENCHMARK(BM_add)->RangeMultiplier(16)->Range(64, 16 << 20);

// steady_clock::now(): read once per 64 pause instructions in the library's spin loop.
void BM_steady_clock_now(benchmark::State& st) {
  for (auto _ : st) benchmark::DoNotOptimize(std::chrono::steady_clock::now());
}
BENCHMARK(BM_steady_clock_now);

// One pause instruction (the spin loop's unit).
void BM_cpu_relax(benchmark::State& st) {
  for (auto _ : st) shmbridge::cpu_relax();
}
BENCHMARK(BM_cpu_relax);

// The CAS of every transition, uncontended, on a word of a shared mapping.
void BM_cas_shared_word(benchmark::State& st) {
  auto* w = static_cast<std::atomic<std::uint32_t>*>(shared_map(64));
  std::uint32_t v = 0;
  for (auto _ : st) {
    std::uint32_t e = v;
    w->compare_exchange_strong(e, v + 1, std::memory_order_seq_cst, std::memory_order_acquire);
    ++v;
  }
  munmap(w, 64);
}
BENCHMARK(BM_cas_shared_word);

// FUTEX_WAKE with nobody waiting: what a wake costs when `waiters` is not consulted.
void BM_futex_wake_nobody(benchmark::State& st) {
  auto* w = static_cast<std::uint32_t*>(shared_map(64));
  for (auto _ : st) {
    benchmark::DoNotOptimize(syscall(SYS_futex, w, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0));
  }
  munmap(w, 64);
}
BENCHMARK(BM_futex_wake_nobody);

// The pure transition function, as called on every evaluation of a blocking operation.
void BM_decide_take(benchmark::State& st) {
  shmbridge::ActorState s;
  s.peer = shmbridge::PeerState::alive;
  const std::uint32_t w = 0x11;  // REQUESTED, seq 1
  for (auto _ : st) {
    benchmark::DoNotOptimize(
        shmbridge::decide(shmbridge::Actor::responder, shmbridge::Op::take, w, s));
  }
}
BENCHMARK(BM_decide_take);

// In-process round trip through the public API: requester in this thread, responder in a
// second thread (spin mode: the library's own overhead, without process wake-ups). Payload
// bytes = range(0).
void BM_roundtrip_threads(benchmark::State& st) {
  const auto bytes = static_cast<std::uint64_t>(st.range(0));
  const std::string name = "shmb_micro_" + std::to_string(getpid());
  shmbridge::Options opt;
  opt.spin = std::chrono::seconds(1);
  auto req = shmbridge::Requester::create(name, shmbridge::DType::float32, {bytes / 4}, opt);
  std::thread t([&] {
    auto rsp = shmbridge::Responder::attach(name, opt);
    rsp.serve([](shmbridge::Request& r) {
      shmbridge_examples::add_in_place(r.data<float>(), r.nbytes() / 4, 1.0f);
    });
  });
  std::vector<float> in(bytes / 4, 1.0f), out(bytes / 4);
  const shmbridge::Shape shape{bytes / 4};
  for (auto _ : st) {
    req.send(in.data(), shape);
    req.receive(out.data(), shape);
  }
  req.close();
  t.join();
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * static_cast<std::int64_t>(bytes));
}
BENCHMARK(BM_roundtrip_threads)->Arg(64)->Arg(4096)->Arg(1 << 20)->UseRealTime();

// One round with both handles in this thread: the library's CPU cost per round (checks, CAS,
// copies, add), without any cross-core hand-off. Compare with BM_bare_round_one_thread.
void BM_round_one_thread(benchmark::State& st) {
  const auto bytes = static_cast<std::uint64_t>(st.range(0));
  const std::string name = "shmb_micro1_" + std::to_string(getpid());
  auto req = shmbridge::Requester::create(name, shmbridge::DType::float32, {bytes / 4});
  auto rsp = shmbridge::Responder::attach(name);
  std::vector<float> in(bytes / 4, 1.0f), out(bytes / 4);
  const shmbridge::Shape shape{bytes / 4};
  for (auto _ : st) {
    req.send(in.data(), shape);
    auto r = rsp.take();
    shmbridge_examples::add_in_place(r.data<float>(), r.nbytes() / 4, 1.0f);
    r.reply();
    req.receive(out.data(), shape);
  }
  benchmark::DoNotOptimize(out.data());
}
BENCHMARK(BM_round_one_thread)->Arg(64);

// The same round with no library: four CAS on a word, copy in, add, copy out.
void BM_bare_round_one_thread(benchmark::State& st) {
  const auto bytes = static_cast<std::size_t>(st.range(0));
  std::vector<float> in(bytes / 4, 1.0f), out(bytes / 4), payload(bytes / 4);
  std::atomic<std::uint32_t> word{0}, waiters{0};
  std::uint32_t w = 0;
  for (auto _ : st) {
    std::memcpy(payload.data(), in.data(), bytes);
    for (const std::uint32_t phase : {1u, 4u, 2u, 0u}) {
      const std::uint32_t next = (phase == 1u ? w + 0x10 : w) & ~0xFu;
      std::uint32_t e = w;
      word.compare_exchange_strong(e, next | phase);
      w = next | phase;
      if (waiters.load() != 0) std::abort();
      if (phase == 4u) {
        shmbridge_examples::add_in_place(payload.data(), payload.size(), 1.0f);
      }
    }
    std::memcpy(out.data(), payload.data(), bytes);
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_bare_round_one_thread)->Arg(64);

}  // namespace

BENCHMARK_MAIN();
