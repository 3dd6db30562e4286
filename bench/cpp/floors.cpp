// Physical floors for the shmbridge benchmarks (driven by bench/run.py). Linux only.
//
//   bench_floors copy --bytes B --rounds R
//       per-round timings (steady_clock) of: memcpy of B bytes into a shared mapping ("memcpy"),
//       float32 += 1.0f over it ("add"), and the work floor "work" = memcpy in + add + memcpy out
//       (what one round of the original design computes, without any handoff).
//   bench_floors pingpong --kind spin|futex|spinfutex|spinyield|proto4|addonly --rounds R
//                         [--spin-us S] [--bytes B]
//       raw cross-process round trip of a 32-bit word between two forked processes:
//       spin = busy-wait only; futex = FUTEX_WAIT every time (+ FUTEX_WAKE every time);
//       spinfutex = spin S µs, then FUTEX_WAIT, with a waiters counter so the waker makes the
//       syscall only when somebody sleeps (the scheme of PROTOCOL.md §6);
//       spinyield = spinfutex with a sched_yield() after every 64 pause instructions (an
//       experiment: lets a peer that the scheduler put on the same core run);
//       proto4 = the four compare-and-swaps of one protocol round (IDLE→REQUESTED→TAKEN→
//       REPLIED→IDLE, PROTOCOL.md §5) with spin-then-futex waits, the requester copying B bytes
//       (--bytes, default 64) in and out and the responder adding 1.0 in place, no library: the
//       cross-process floor of a round (with --spin-us 1e6: pure spinning);
//       addonly = proto4 without the copies: the requester writes element 0 of the payload in
//       place and reads the first and last element of the reply, the responder adds 1.0 to all
//       of it in place: the floor of a zero-copy round (the responder's add + the raw hand-offs).
//   bench_floors addisa --bytes B --rounds R
//       the evidence for cpp/examples/add_one.hpp (bench/README.md): the add of each instruction
//       set this CPU has (baseline x86-64 = SSE2, AVX2, AVX-512F), timed in a child process on
//       data the parent process has just written ("fresh": every line comes from the other
//       core, as in a responder) and on data the child itself wrote last ("local"); the
//       versions rotate round by round. Prints p50 per version and case.
// SHMB_BENCH_PIN=1 pins the ping-pong parent to CPU 0 and the child to CPU 1 (as bench/run.py
// --pin does for the peers), so that the scheduler cannot put both on one core.
// Each prints one JSON line: {"kind": ..., "samples_ns": [...]} (one list per measured kind).
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "add_one.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::duration_cast;
using std::chrono::nanoseconds;

std::string opt(int argc, char** argv, const char* key, const char* def) {
  for (int i = 2; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], key) == 0) return argv[i + 1];
  }
  return def;
}

void* shared_map(std::size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("mmap");
    std::exit(1);
  }
  std::memset(p, 0, bytes);  // pre-touch
  return p;
}

void print_samples(const char* key, const std::vector<std::int64_t>& s, bool last) {
  std::printf("\"%s\":[", key);
  for (std::size_t i = 0; i < s.size(); ++i) {
    std::printf(i ? ",%lld" : "%lld", static_cast<long long>(s[i]));
  }
  std::printf(last ? "]" : "],");
}

// The responders' add (cpp/examples/add_one.hpp: the CPU's widest vector unit).
__attribute__((noinline)) void add_one(float* p, std::size_t n) {
  shmbridge_examples::add_in_place(p, n, 1.0f);
}

int copy_floor(std::size_t bytes, long rounds) {
  const std::size_t n = bytes / 4;
  std::vector<float> in(n, 1.0f), out(n, 0.0f);
  auto* shm = static_cast<float*>(shared_map(bytes));
  std::vector<std::int64_t> mc, add, work;
  mc.reserve(rounds);
  add.reserve(rounds);
  work.reserve(rounds);
  const long warm = rounds / 10 + 2;
  for (long r = -warm; r < rounds; ++r) {
    in[0] = static_cast<float>(r);
    auto t0 = Clock::now();
    std::memcpy(shm, in.data(), bytes);
    auto t1 = Clock::now();
    add_one(shm, n);
    auto t2 = Clock::now();
    std::memcpy(out.data(), shm, bytes);
    auto t3 = Clock::now();
    // The work floor is timed as one piece (memcpy in + add + memcpy out) in a second pass, so
    // that the three Clock::now() calls above do not count twice.
    auto t4 = Clock::now();
    std::memcpy(shm, in.data(), bytes);
    add_one(shm, n);
    std::memcpy(out.data(), shm, bytes);
    auto t5 = Clock::now();
    if (out[0] != in[0] + 1.0f) {
      std::fprintf(stderr, "floors: wrong result\n");
      return 1;
    }
    if (r < 0) continue;
    mc.push_back(duration_cast<nanoseconds>(t1 - t0).count());
    add.push_back(duration_cast<nanoseconds>(t2 - t1).count());
    work.push_back(duration_cast<nanoseconds>(t5 - t4).count());
    (void)t3;
  }
  std::printf("{\"kind\":\"copy\",\"bytes\":%zu,", bytes);
  print_samples("memcpy_ns", mc, false);
  print_samples("add_ns", add, false);
  print_samples("work_ns", work, true);
  std::printf("}\n");
  munmap(shm, bytes);
  return 0;
}

long futex(std::atomic<std::uint32_t>* w, int op, std::uint32_t val) {
  return syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(w), op, val, nullptr, nullptr, 0);
}

inline void relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

struct Shared {
  alignas(64) std::atomic<std::uint32_t> word;
  std::atomic<std::uint32_t> waiters;
};

enum class Kind { spin, futex, spinfutex, spinyield };

// Wait until word == want.
void wait_for(Shared* s, std::uint32_t want, Kind kind, nanoseconds spin) {
  if (kind != Kind::futex) {
    const auto end = Clock::now() + spin;
    for (;;) {
      for (int i = 0; i < 64; ++i) {
        if (s->word.load(std::memory_order_acquire) == want) return;
        relax();
      }
      if (kind == Kind::spin) continue;
      if (Clock::now() >= end) break;
      if (kind == Kind::spinyield) sched_yield();
    }
  }
  for (;;) {
    const std::uint32_t cur = s->word.load(std::memory_order_acquire);
    if (cur == want) return;
    s->waiters.fetch_add(1, std::memory_order_seq_cst);
    if (s->word.load(std::memory_order_seq_cst) == cur) futex(&s->word, FUTEX_WAIT, cur);
    s->waiters.fetch_sub(1, std::memory_order_seq_cst);
  }
}

void publish(Shared* s, std::uint32_t v, Kind kind) {
  s->word.store(v, std::memory_order_seq_cst);
  if (kind == Kind::futex) {
    futex(&s->word, FUTEX_WAKE, INT_MAX);
  } else if (kind != Kind::spin && s->waiters.load(std::memory_order_seq_cst) != 0) {
    futex(&s->word, FUTEX_WAKE, INT_MAX);
  }
}

void pin_to(int cpu) {
  const char* e = std::getenv("SHMB_BENCH_PIN");
  if (!e || std::strcmp(e, "1") != 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0) std::perror("sched_setaffinity");
}

// Waits (spin S, then futex) until the phase bits of the word equal `phase`; returns the word.
std::uint32_t wait_phase(Shared* s, std::uint32_t phase, nanoseconds spin) {
  const auto end = Clock::now() + spin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      const std::uint32_t w = s->word.load(std::memory_order_acquire);
      if ((w & 0xF) == phase) return w;
      relax();
    }
    if (Clock::now() >= end) break;
  }
  for (;;) {
    const std::uint32_t cur = s->word.load(std::memory_order_acquire);
    if ((cur & 0xF) == phase) return cur;
    s->waiters.fetch_add(1, std::memory_order_seq_cst);
    if (s->word.load(std::memory_order_seq_cst) == cur) futex(&s->word, FUTEX_WAIT, cur);
    s->waiters.fetch_sub(1, std::memory_order_seq_cst);
  }
}

void cas_publish(Shared* s, std::uint32_t from, std::uint32_t to) {
  std::uint32_t e = from;
  if (!s->word.compare_exchange_strong(e, to, std::memory_order_seq_cst,
                                       std::memory_order_acquire)) {
    std::fprintf(stderr, "proto4: CAS failed (%x, expected %x)\n", e, from);
    std::exit(1);
  }
  if (s->waiters.load(std::memory_order_seq_cst) != 0) futex(&s->word, FUTEX_WAKE, INT_MAX);
}

// IDLE 0, REQUESTED 1, TAKEN 4, REPLIED 2; seq in bits 4..31. copy: the requester copies the
// payload in and out (proto4); else it writes element 0 and reads the first and last (addonly).
int proto4(long rounds, double spin_us, std::size_t bytes, bool copy) {
  const std::size_t n = bytes / 4;
  auto* s = static_cast<Shared*>(shared_map(512 + bytes));
  new (s) Shared{};
  auto* payload = reinterpret_cast<float*>(reinterpret_cast<char*>(s) + 512);
  const nanoseconds spin(static_cast<long long>(spin_us * 1000.0));
  const long warm = rounds / 10 + 10;
  const long total = warm + rounds;
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    pin_to(1);
    for (long k = 0; k < total; ++k) {
      const std::uint32_t w = wait_phase(s, 1, spin);  // REQUESTED
      cas_publish(s, w, (w & ~0xFu) | 4);             // take
      add_one(payload, n);
      cas_publish(s, (w & ~0xFu) | 4, (w & ~0xFu) | 2);  // reply
    }
    _exit(0);
  }
  pin_to(0);
  std::vector<float> in(n), out(n);
  for (std::size_t i = 0; i < n; ++i) in[i] = static_cast<float>(i % 1024);
  std::memcpy(payload, in.data(), bytes);  // addonly: the request written in place once
  float last = in[n - 1];                  // addonly: the last element, +1 per round
  std::vector<std::int64_t> rt;
  rt.reserve(rounds);
  std::uint32_t w = 0;
  for (long k = 0; k < total; ++k) {
    const auto t0 = Clock::now();
    in[0] = static_cast<float>(k & 0xffff);
    if (copy) {
      std::memcpy(payload, in.data(), bytes);
    } else {
      payload[0] = in[0];
    }
    const std::uint32_t req = ((w & ~0xFu) + 0x10) | 1;
    cas_publish(s, w, req);                     // send
    const std::uint32_t r = wait_phase(s, 2, spin);  // REPLIED
    cas_publish(s, r, r & ~0xFu);               // receive
    if (copy) {
      std::memcpy(out.data(), payload, bytes);
    } else {
      out[0] = payload[0];
      out[n - 1] = payload[n - 1];
      in[n - 1] = last;
      last += 1.0f;
    }
    w = r & ~0xFu;
    const auto t1 = Clock::now();
    if (out[0] != in[0] + 1.0f || out[n - 1] != in[n - 1] + 1.0f) {
      std::fprintf(stderr, "proto4: wrong result\n");
      return 1;
    }
    if (k >= warm) rt.push_back(duration_cast<nanoseconds>(t1 - t0).count());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  std::printf("{\"kind\":\"pingpong_%s\",\"spin_us\":%g,\"bytes\":%zu,",
              copy ? "proto4" : "addonly", spin_us, bytes);
  print_samples("samples_ns", rt, true);
  std::printf("}\n");
  return 0;
}

int pingpong(const std::string& kind_s, long rounds, double spin_us, std::size_t bytes) {
  if (kind_s == "proto4" || kind_s == "addonly") {
    return proto4(rounds, spin_us, bytes, kind_s == "proto4");
  }
  Kind kind = kind_s == "spin"        ? Kind::spin
              : kind_s == "futex"     ? Kind::futex
              : kind_s == "spinyield" ? Kind::spinyield
                                      : Kind::spinfutex;
  if (kind_s != "spin" && kind_s != "futex" && kind_s != "spinfutex" && kind_s != "spinyield") {
    std::fprintf(stderr, "unknown --kind %s\n", kind_s.c_str());
    return 2;
  }
  auto* s = static_cast<Shared*>(shared_map(sizeof(Shared)));
  new (s) Shared{};
  const nanoseconds spin(static_cast<long long>(spin_us * 1000.0));
  const long warm = rounds / 10 + 10;
  const long total = warm + rounds;
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid < 0) {
    std::perror("fork");
    return 1;
  }
  if (pid == 0) {  // responder: waits for 2k+1, answers 2k+2
    pin_to(1);
    for (long k = 0; k < total; ++k) {
      const auto v = static_cast<std::uint32_t>(2 * k + 1);
      wait_for(s, v, kind, spin);
      publish(s, v + 1, kind);
    }
    _exit(0);
  }
  pin_to(0);
  std::vector<std::int64_t> rt;
  rt.reserve(rounds);
  for (long k = 0; k < total; ++k) {
    const auto v = static_cast<std::uint32_t>(2 * k + 1);
    const auto t0 = Clock::now();
    publish(s, v, kind);
    wait_for(s, v + 1, kind, spin);
    const auto t1 = Clock::now();
    if (k >= warm) rt.push_back(duration_cast<nanoseconds>(t1 - t0).count());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  std::printf("{\"kind\":\"pingpong_%s\",\"spin_us\":%g,", kind_s.c_str(), spin_us);
  print_samples("samples_ns", rt, true);
  std::printf("}\n");
  return 0;
}

// The add of each instruction set on fresh (just written by the other process) and local data.
int addisa(std::size_t bytes, long rounds) {
#if defined(SHMBRIDGE_EXAMPLES_ADD_DISPATCH)
  using shmbridge_examples::add_detail::AddFn;
  struct Version {
    const char* name;
    AddFn fn;
  };
  std::vector<Version> versions{{"baseline", shmbridge_examples::add_detail::add_baseline}};
  if (shmbridge_examples::add_detail::has_avx2()) versions.push_back({"avx2", shmbridge_examples::add_detail::add_avx2});
  if (shmbridge_examples::add_detail::has_avx512f()) {
    versions.push_back({"avx512f", shmbridge_examples::add_detail::add_avx512});
  }
  const std::size_t nv = versions.size(), n = bytes / 4;
  const long total = rounds * static_cast<long>(nv) * 2;  // every version, fresh and local
  auto* s = static_cast<Shared*>(shared_map(4096 + bytes));
  new (s) Shared{};
  auto* payload = reinterpret_cast<float*>(reinterpret_cast<char*>(s) + 4096);
  auto* times = static_cast<std::int64_t*>(shared_map(sizeof(std::int64_t) * total));
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {  // the adding process: round k uses version k % nv, fresh if (k / nv) is even
    pin_to(1);
    for (long k = 0; k < total; ++k) {
      while (s->word.load(std::memory_order_acquire) != static_cast<std::uint32_t>(2 * k + 1)) relax();
      const auto t0 = Clock::now();
      versions[static_cast<std::size_t>(k) % nv].fn(payload, n, 1.0f);
      times[k] = duration_cast<nanoseconds>(Clock::now() - t0).count();
      s->word.store(static_cast<std::uint32_t>(2 * k + 2), std::memory_order_release);
    }
    _exit(0);
  }
  pin_to(0);
  std::vector<float> in(n, 1.0f);
  for (long k = 0; k < total; ++k) {
    const bool fresh = (k / static_cast<long>(nv)) % 2 == 0;
    if (fresh) std::memcpy(payload, in.data(), bytes);  // every line now in this core's cache
    s->word.store(static_cast<std::uint32_t>(2 * k + 1), std::memory_order_release);
    while (s->word.load(std::memory_order_acquire) != static_cast<std::uint32_t>(2 * k + 2)) relax();
  }
  int status = 0;
  waitpid(pid, &status, 0);
  std::printf("{\"kind\":\"addisa\",\"bytes\":%zu", bytes);
  for (std::size_t v = 0; v < nv; ++v) {
    for (const bool fresh : {true, false}) {
      std::vector<std::int64_t> x;
      for (long k = rounds / 10 * static_cast<long>(nv) * 2; k < total; ++k) {  // warm-up out
        const bool k_fresh = (k / static_cast<long>(nv)) % 2 == 0;
        if (static_cast<std::size_t>(k) % nv == v && k_fresh == fresh) x.push_back(times[k]);
      }
      std::sort(x.begin(), x.end());
      std::printf(",\"%s_%s_p50_ns\":%lld", versions[v].name, fresh ? "fresh" : "local",
                  static_cast<long long>(x.empty() ? 0 : x[x.size() / 2]));
    }
  }
  std::printf("}\n");
  return 0;
#else
  (void)bytes;
  (void)rounds;
  std::fprintf(stderr, "addisa: no add versions on this compiler/CPU (add_one.hpp)\n");
  return 2;
#endif
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s copy|pingpong|addisa [options]\n", argv[0]);
    return 2;
  }
  const std::string mode = argv[1];
  const long rounds = std::strtol(opt(argc, argv, "--rounds", "1000").c_str(), nullptr, 10);
  if (mode == "copy") {
    const auto bytes = static_cast<std::size_t>(
        std::strtoull(opt(argc, argv, "--bytes", "1048576").c_str(), nullptr, 10));
    return copy_floor(bytes, rounds);
  }
  if (mode == "pingpong") {
    const auto bytes = static_cast<std::size_t>(
        std::strtoull(opt(argc, argv, "--bytes", "64").c_str(), nullptr, 10));
    if (bytes < 4 || bytes % 4) {
      std::fprintf(stderr, "--bytes must be a positive multiple of 4\n");
      return 2;
    }
    return pingpong(opt(argc, argv, "--kind", "spinfutex"), rounds,
                    std::strtod(opt(argc, argv, "--spin-us", "100").c_str(), nullptr), bytes);
  }
  if (mode == "addisa") {
    return addisa(static_cast<std::size_t>(
                      std::strtoull(opt(argc, argv, "--bytes", "1048576").c_str(), nullptr, 10)),
                  rounds);
  }
  std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
  return 2;
}
