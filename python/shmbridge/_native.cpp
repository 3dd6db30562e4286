// shmbridge._native: the few operations Python cannot do correctly by itself (PROTOCOL.md R-STATE-4,
// R-WAIT-1, R-WAIT-3, R-WAIT-4): 32-bit atomics with explicit memory order on a word inside a
// writable buffer (the shared mapping), and a cross-process wait/wake on such a word.
//
// Everything else (layout, protocol, liveness, naming) is pure Python. This file is deliberately
// small and has no knowledge of the protocol.
//
// Linux: futex(FUTEX_WAIT / FUTEX_WAKE) WITHOUT FUTEX_PRIVATE_FLAG (the key is file + offset, so it
// works across processes). macOS 14.4+: os_sync_wait_on_address with OS_SYNC_WAIT_ON_ADDRESS_SHARED;
// older macOS: sleeps of <= 1 ms (documented fallback). Windows: named auto-reset events
// (Local\\N.req, Local\\N.rsp), opened once per channel handle in a WaitEvents object that the
// caller keeps and passes to every wait and wake, as the C++ Waiter does (cpp/src/wait_win32.cpp).
// Linux is exercised by the tests; the macOS and Windows branches are compile-checked by
// ci/test-macos.sh and ci/test-windows.sh.

#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include <chrono>
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

#if defined(_WIN32)
#  define WIN32_LEAN_AND_MEAN
#  include <windows.h>
#  include <intrin.h>
#elif defined(__linux__)
#  include <cerrno>
#  include <ctime>
#  include <linux/futex.h>
#  include <sys/syscall.h>
#  include <unistd.h>
#elif defined(__APPLE__)
#  include <cerrno>
#  include "shmbridge/detail/os_sync_darwin.h"  // declares os_sync_* where the SDK lacks them
#endif

namespace nb = nanobind;

namespace {

// Longest single OS wait: blocking is sliced so that Ctrl-C is noticed (R-WAIT-4).
constexpr double kMaxSliceSeconds = 0.050;

// RAII wrapper around a writable buffer export of a Python object (mmap, memoryview, bytearray,
// numpy array). Holding the export also keeps the mapping alive while we block on it.
class WritableBuffer {
public:
    explicit WritableBuffer(nb::handle obj) {
        if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_WRITABLE | PyBUF_SIMPLE) != 0) {
            throw nb::python_error();
        }
    }
    ~WritableBuffer() { PyBuffer_Release(&view_); }
    WritableBuffer(const WritableBuffer&) = delete;
    WritableBuffer& operator=(const WritableBuffer&) = delete;

    // Bounds- and alignment-checked pointer to the 32-bit word at `offset`.
    template <typename T = uint32_t>
    T* word(long long offset) const {
        if (offset < 0 || static_cast<unsigned long long>(offset) + sizeof(T) >
                              static_cast<unsigned long long>(view_.len)) {
            throw nb::value_error("shmbridge._native: offset out of bounds for the word size");
        }
        char* p = static_cast<char*>(view_.buf) + offset;
        if ((reinterpret_cast<uintptr_t>(p) & (sizeof(T) - 1)) != 0) {
            throw nb::value_error("shmbridge._native: word address is not naturally aligned");
        }
        return reinterpret_cast<T*>(p);
    }

private:
    Py_buffer view_{};
};

uint32_t checked_u32(long long v, const char* what) {
    if (v < 0 || v > 0xFFFFFFFFLL) {
        throw nb::value_error((std::string("shmbridge._native: ") + what +
                               " must be in 0..2**32-1").c_str());
    }
    return static_cast<uint32_t>(v);
}

#if defined(_WIN32)
uint32_t atomic_load_acquire(uint32_t* p) {
    return static_cast<uint32_t>(InterlockedCompareExchange(reinterpret_cast<volatile LONG*>(p), 0, 0));
}
void atomic_store_release(uint32_t* p, uint32_t v) {
    InterlockedExchange(reinterpret_cast<volatile LONG*>(p), static_cast<LONG>(v));
}
uint32_t atomic_cas(uint32_t* p, uint32_t expected, uint32_t desired) {
    return static_cast<uint32_t>(InterlockedCompareExchange(
        reinterpret_cast<volatile LONG*>(p), static_cast<LONG>(desired), static_cast<LONG>(expected)));
}
uint32_t atomic_fetch_add(uint32_t* p, uint32_t delta) {
    return static_cast<uint32_t>(
        InterlockedExchangeAdd(reinterpret_cast<volatile LONG*>(p), static_cast<LONG>(delta)));
}
#else
uint32_t atomic_load_acquire(uint32_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
void atomic_store_release(uint32_t* p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
uint32_t atomic_cas(uint32_t* p, uint32_t expected, uint32_t desired) {
    // Sequentially consistent on success and failure: covers the acquire, release and acq_rel
    // transitions of the spec and the seq_cst pairing with the waiters counter (R-WAIT-3).
    __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;  // the value found (== the old expected on success)
}
uint32_t atomic_fetch_add(uint32_t* p, uint32_t delta) {
    return __atomic_fetch_add(p, delta, __ATOMIC_SEQ_CST);
}
#endif

// The wait events of one channel handle (Windows): `own` is the event this role blocks on, `peer`
// the one the other role blocks on. Opened once, when the handle is made, and closed with it: an
// event opened per wait slice would not exist between two slices when nobody else holds it, and
// a SetEvent in that gap would be lost (the waiter then sleeps a whole slice). Elsewhere the
// object only keeps the names: futex and os_sync wait on the word itself.
class WaitEvents {
public:
    WaitEvents(std::string own, std::string peer) : own_name_(std::move(own)), peer_name_(std::move(peer)) {
#if defined(_WIN32)
        own_ = open_event(own_name_);
        peer_ = open_event(peer_name_);
        if (own_ == nullptr || peer_ == nullptr) {
            const unsigned long err = GetLastError();
            close();
            throw std::runtime_error("shmbridge._native.WaitEvents: expected CreateEventW(" +
                                     own_name_ + ", " + peer_name_ + ") to succeed, found error " +
                                     std::to_string(err) + "; check the segment name");
        }
#endif
    }
    ~WaitEvents() { close(); }
    WaitEvents(const WaitEvents&) = delete;
    WaitEvents& operator=(const WaitEvents&) = delete;

    void close() noexcept {
#if defined(_WIN32)
        if (own_ != nullptr) CloseHandle(own_);
        if (peer_ != nullptr) CloseHandle(peer_);
        own_ = peer_ = nullptr;
#endif
        closed_ = true;
    }
    bool closed() const noexcept { return closed_; }
    const std::string& own_name() const noexcept { return own_name_; }
    const std::string& peer_name() const noexcept { return peer_name_; }
#if defined(_WIN32)
    HANDLE own() const noexcept { return own_; }
    HANDLE peer() const noexcept { return peer_; }

private:
    static HANDLE open_event(const std::string& name) {
        std::wstring wide(name.begin(), name.end());  // names are ASCII (R-NAME-1)
        return CreateEventW(nullptr, FALSE, FALSE, wide.c_str());
    }
    HANDLE own_ = nullptr;
    HANDLE peer_ = nullptr;
#else
private:
#endif
    std::string own_name_;
    std::string peer_name_;
    bool closed_ = false;
};

// One OS-level wait of at most `seconds` while *p == expected. Called without the GIL.
void os_wait_slice(uint32_t* p, uint32_t expected, double seconds, const WaitEvents* events) {
#if defined(__linux__)
    (void)events;
    struct timespec ts;
    ts.tv_sec = static_cast<time_t>(seconds);
    ts.tv_nsec = static_cast<long>((seconds - static_cast<double>(ts.tv_sec)) * 1e9);
    // FUTEX_WAIT, not FUTEX_WAIT_PRIVATE: the word lives in a MAP_SHARED mapping.
    syscall(SYS_futex, p, FUTEX_WAIT, expected, &ts, nullptr, 0);
#elif defined(__APPLE__)
    (void)events;
    if (__builtin_available(macOS 14.4, *)) {
        os_sync_wait_on_address_with_timeout(p, expected, sizeof(uint32_t),
                                             OS_SYNC_WAIT_ON_ADDRESS_SHARED, OS_CLOCK_MACH_ABSOLUTE_TIME,
                                             static_cast<uint64_t>(seconds * 1e9));
        return;
    }
    // Fallback for macOS < 14.4: short sleeps (<= 1 ms), documented in R-WAIT-1.
    const double step = seconds < 0.001 ? seconds : 0.001;
    std::this_thread::sleep_for(std::chrono::duration<double>(step));
#elif defined(_WIN32)
    if (events == nullptr || events->own() == nullptr) {  // no events (tests of the helper alone)
        Sleep(1);
        return;
    }
    if (atomic_load_acquire(p) != expected) return;
    WaitForSingleObject(events->own(), static_cast<DWORD>(seconds * 1000.0) + 1);
#else
    (void)p;
    (void)expected;
    (void)events;
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds < 0.001 ? seconds : 0.001));
#endif
}

int os_wake_all(uint32_t* p, const WaitEvents* events) {
#if defined(__linux__)
    (void)events;
    long n = syscall(SYS_futex, p, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
    return n < 0 ? 0 : static_cast<int>(n);
#elif defined(__APPLE__)
    (void)events;
    if (__builtin_available(macOS 14.4, *)) {
        os_sync_wake_by_address_all(p, sizeof(uint32_t), OS_SYNC_WAKE_BY_ADDRESS_SHARED);
    }
    return 0;
#elif defined(_WIN32)
    (void)p;
    if (events == nullptr || events->peer() == nullptr) return 0;
    return SetEvent(events->peer()) ? 1 : 0;
#else
    (void)p;
    (void)events;
    return 0;
#endif
}

// One spin-loop pause: lets the sibling hyper-thread run and saves power while spinning.
inline void cpu_relax() noexcept {
#if defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
    _mm_pause();
#elif defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// Longest single native spin: a Python caller with a long spin budget calls again, so that
// Ctrl-C and other threads get a turn at least this often.
constexpr double kMaxSpinSliceSeconds = 0.010;

// wait_cas spins this long with the GIL held before it releases it (see there).
constexpr std::chrono::microseconds kGilSpin{5};
constexpr double kGilSpinSeconds = 5e-6;

// R-WAIT-1 (C++: SpinYield in wait.hpp): after spinning this long without seeing the word change,
// yield the CPU, then every kSpinYieldEvery, so that a peer the scheduler put on this core runs
// within ~20 us instead of after the whole budget. Waits of a 64 B round never get that far.
constexpr std::chrono::microseconds kSpinYieldAfter{20};
constexpr std::chrono::microseconds kSpinYieldEvery{5};

// Spin with acquire loads while the word equals `expected`, at most `budget_s` seconds (capped at
// kMaxSpinSliceSeconds), with the GIL released. Returns the last value read. Spinning in C++
// instead of a Python loop notices the change within a pause (~20 ns) instead of a Python
// iteration, and frees the GIL for other threads while waiting (R-WAIT-1).
uint32_t spin(nb::handle buffer, long long offset, long long expected_ll, double budget_s) {
    const uint32_t expected = checked_u32(expected_ll, "expected");
    WritableBuffer buf(buffer);
    uint32_t* p = buf.word(offset);
    uint32_t w = atomic_load_acquire(p);
    if (w != expected || !(budget_s > 0.0)) return w;
    const double budget = budget_s < kMaxSpinSliceSeconds ? budget_s : kMaxSpinSliceSeconds;
    nb::gil_scoped_release release;
    using clock = std::chrono::steady_clock;
    auto now = clock::now();
    const auto end = now + std::chrono::duration_cast<clock::duration>(
                               std::chrono::duration<double>(budget));
    auto next_yield = now + kSpinYieldAfter;
    for (;;) {
        for (int i = 0; i < 64; ++i) {
            w = atomic_load_acquire(p);
            if (w != expected) return w;
            cpu_relax();
        }
        now = clock::now();
        if (now >= end) return w;
        if (now >= next_yield) {  // a peer sharing this core gets its turn
            std::this_thread::yield();
            next_yield = now + kSpinYieldEvery;
        }
    }
}

// Block while the word equals `expected` (not named `wait`: macOS headers declare wait(2)), at
// most `timeout_s` seconds, in slices of <= 50 ms with the
// GIL released; between slices pending signals are handled (KeyboardInterrupt propagates).
// Returns True if the word was seen different from `expected`, False on timeout.
bool wait_while_equal(nb::handle buffer, long long offset, long long expected_ll, double timeout_s,
          const WaitEvents* events) {
    const uint32_t expected = checked_u32(expected_ll, "expected");
    if (!(timeout_s >= 0.0)) {
        throw nb::value_error("shmbridge._native.wait: timeout_s must be >= 0");
    }
    WritableBuffer buf(buffer);
    uint32_t* p = buf.word(offset);
    using clock = std::chrono::steady_clock;
    const auto start = clock::now();
    for (;;) {
        if (atomic_load_acquire(p) != expected) return true;
        const double elapsed = std::chrono::duration<double>(clock::now() - start).count();
        const double remaining = timeout_s - elapsed;
        if (remaining <= 0.0) return false;
        const double slice = remaining < kMaxSliceSeconds ? remaining : kMaxSliceSeconds;
        {
            nb::gil_scoped_release release;
            os_wait_slice(p, expected, slice, events);
        }
        if (PyErr_CheckSignals() != 0) throw nb::python_error();
    }
}

// What wait_cas found, in bits 32.. of its result (bits 0..31: a word). One integer, not a
// tuple: building a tuple costs more than the rest of a call that finds the word ready.
enum WaitCasStatus : uint64_t {
    kChanged = 0,         // the word matched and the CAS changed it (the word is the old value)
    kLeft = 1ull << 32,   // the word holds a value neither matched nor waited in: caller decides
    kWaiting = 2ull << 32,  // still waited in: the budgets ran out, or one OS wait ended
};

// One blocking protocol step in one call (R-WAIT-1, R-WAIT-3, R-STATE-2): wait while the word
// holds a value waited in, and as soon as it matches, compare-and-swap it and wake the peer.
// Generic bit tests, no knowledge of the protocol; the caller states
//   the match:    (w & match_mask) == match_value, then CAS w -> (w & keep_mask) | set_bits;
//   the wait set: (w & wait_mask) == wait_a or == wait_b;
//   the budgets:  spin up to spin_s (<= 10 ms per call; pause loop with the R-WAIT-1 yields),
//                 then at most one OS wait of up to block_s (<= 50 ms), waiters counted
//                 (R-WAIT-3).
// Returns status | word: kChanged (0) with the word the CAS replaced, so a result < 2**32 is
// that word; kLeft or kWaiting with the last word read. Deadlines and liveness stay with the caller, which checks them and calls again
// (R-WAIT-4, R-LIVE-3), so Ctrl-C is seen within a slice. The GIL is released only to wait: a
// word that already matches costs one load and one CAS.
uint64_t wait_cas(nb::handle buffer, long long offset, long long waiters_offset,
                                  long long match_mask_ll, long long match_value_ll,
                                  long long keep_mask_ll, long long set_bits_ll,
                                  long long wait_mask_ll, long long wait_a_ll, long long wait_b_ll,
                                  double spin_s, double block_s, const WaitEvents* events) {
    const uint32_t match_mask = checked_u32(match_mask_ll, "match_mask");
    const uint32_t match_value = checked_u32(match_value_ll, "match_value");
    const uint32_t keep_mask = checked_u32(keep_mask_ll, "keep_mask");
    const uint32_t set_bits = checked_u32(set_bits_ll, "set_bits");
    const uint32_t wait_mask = checked_u32(wait_mask_ll, "wait_mask");
    const uint32_t wait_a = checked_u32(wait_a_ll, "wait_a");
    const uint32_t wait_b = checked_u32(wait_b_ll, "wait_b");
    if (!(spin_s >= 0.0) || !(block_s >= 0.0)) {
        throw nb::value_error("shmbridge._native.wait_cas: spin_s and block_s must be >= 0");
    }
    WritableBuffer buf(buffer);
    uint32_t* word = buf.word(offset);
    uint32_t* waiters = buf.word(waiters_offset);
    // The match and its CAS (R-STATE-2), then the R-WAIT-3 wake; false once the word is no match.
    auto try_change = [&](uint32_t& w) -> bool {
        while ((w & match_mask) == match_value) {
            const uint32_t found = atomic_cas(word, w, (w & keep_mask) | set_bits);
            if (found == w) {
                if (atomic_fetch_add(waiters, 0) != 0) os_wake_all(word, events);
                return true;
            }
            w = found;
        }
        return false;
    };
    auto waited_in = [&](uint32_t w) {
        return (w & wait_mask) == wait_a || (w & wait_mask) == wait_b;
    };

    uint32_t w = atomic_load_acquire(word);
    if (try_change(w)) return kChanged | w;
    if (!waited_in(w)) return kLeft | w;
    if (!(spin_s > 0.0) && !(block_s > 0.0)) return kWaiting | w;

    using clock = std::chrono::steady_clock;
    const auto span = [](double s) {
        return std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(s));
    };
    // A peer answering within kGilSpin is waited for with the GIL held: releasing and taking it
    // back costs more than a 64 B round's own work, and kGilSpin is a thousandth of the
    // interpreter's 5 ms switch interval, so other threads do not notice.
    if (spin_s > 0.0) {
        const auto gil_end = clock::now() + (spin_s < kGilSpinSeconds ? span(spin_s) : kGilSpin);
        do {
            uint32_t v = w;
            for (int i = 0; i < 8 && (v = atomic_load_acquire(word)) == w; ++i) cpu_relax();
            if (v != w) {
                w = v;
                if (try_change(w)) return kChanged | w;
                if (!waited_in(w)) return kLeft | w;
            }
        } while (clock::now() < gil_end);
    }
    uint64_t status = kWaiting;
    bool blocked = false;
    {
        nb::gil_scoped_release release;
        auto now = clock::now();
        const auto spin_end =
            now + span(spin_s < kMaxSpinSliceSeconds ? spin_s : kMaxSpinSliceSeconds);
        auto next_yield = now + kSpinYieldAfter;
        while (spin_s > 0.0) {
            uint32_t v = w;
            for (int i = 0; i < 64 && (v = atomic_load_acquire(word)) == w; ++i) cpu_relax();
            now = clock::now();
            if (v != w) {
                w = v;
                if (try_change(w)) return kChanged | w;
                if (!waited_in(w)) return kLeft | w;
                next_yield = now + kSpinYieldAfter;  // a change restarts the yield clock
            }
            if (now >= spin_end) break;
            if (now >= next_yield) {  // a peer sharing this core gets its turn
                std::this_thread::yield();
                next_yield = now + kSpinYieldEvery;
            }
        }
        if (block_s > 0.0) {  // one OS wait: count in, re-check, wait, count out (R-WAIT-3)
            blocked = true;
            atomic_fetch_add(waiters, 1);
            if (atomic_load_acquire(word) == w) {
                os_wait_slice(word, w, block_s < kMaxSliceSeconds ? block_s : kMaxSliceSeconds,
                              events);
            }
            atomic_fetch_add(waiters, static_cast<uint32_t>(-1));
            const uint32_t v = atomic_load_acquire(word);
            if (v != w) {
                w = v;
                status = try_change(w) ? kChanged : waited_in(w) ? kWaiting : kLeft;
            }
        }
    }
    // After an OS wait, pending signals first (Ctrl-C raises KeyboardInterrupt, R-WAIT-4).
    if (blocked && status != kChanged && PyErr_CheckSignals() != 0) throw nb::python_error();
    return status | w;
}

}  // namespace

NB_MODULE(_native, m) {
    m.doc() = "shmbridge native helper: 32-bit atomics and cross-process wait/wake on a shared word";

    nb::class_<WaitEvents>(m, "WaitEvents",
                           "The named wait events of one channel handle (Windows: opened once, "
                           "held until close(); elsewhere only the names).")
        .def(nb::init<std::string, std::string>(), nb::arg("own"), nb::arg("peer"))
        .def("close", &WaitEvents::close, "Close the event handles (idempotent).")
        .def_prop_ro("closed", &WaitEvents::closed)
        .def_prop_ro("own", &WaitEvents::own_name, "The event this role blocks on.")
        .def_prop_ro("peer", &WaitEvents::peer_name, "The event the other role blocks on.");

    m.def(
        "load_acquire",
        [](nb::handle buffer, long long offset) -> uint32_t {
            WritableBuffer buf(buffer);
            return atomic_load_acquire(buf.word(offset));
        },
        nb::arg("buffer"), nb::arg("offset"), "Acquire load of the u32 at `offset`.");

    m.def(
        "store_release",
        [](nb::handle buffer, long long offset, long long value) {
            const uint32_t v = checked_u32(value, "value");
            WritableBuffer buf(buffer);
            atomic_store_release(buf.word(offset), v);
        },
        nb::arg("buffer"), nb::arg("offset"), nb::arg("value"), "Release store of a u32 at `offset`.");

    m.def(
        "compare_exchange",
        [](nb::handle buffer, long long offset, long long expected, long long desired) -> uint32_t {
            const uint32_t e = checked_u32(expected, "expected");
            const uint32_t d = checked_u32(desired, "desired");
            WritableBuffer buf(buffer);
            return atomic_cas(buf.word(offset), e, d);
        },
        nb::arg("buffer"), nb::arg("offset"), nb::arg("expected"), nb::arg("desired"),
        "Sequentially consistent compare-and-swap; returns the value found (== expected on "
        "success).");

    m.def(
        "fetch_add",
        [](nb::handle buffer, long long offset, long long delta) -> uint32_t {
            if (delta < -0x80000000LL || delta > 0xFFFFFFFFLL) {
                throw nb::value_error("shmbridge._native.fetch_add: delta out of range");
            }
            WritableBuffer buf(buffer);
            return atomic_fetch_add(buf.word(offset), static_cast<uint32_t>(delta));
        },
        nb::arg("buffer"), nb::arg("offset"), nb::arg("delta"),
        "Sequentially consistent fetch_add (wrapping); returns the previous value.");

    // 64-bit variants, used only for the 8-byte `magic` that the creator publishes last with
    // release semantics and an attacher reads with acquire semantics (R-SEG-6): a peer may read it
    // with one 8-byte load, so it must be written by one 8-byte store.
    m.def(
        "load_acquire64",
        [](nb::handle buffer, long long offset) -> uint64_t {
            WritableBuffer buf(buffer);
#if defined(_WIN32)
            return static_cast<uint64_t>(InterlockedCompareExchange64(
                reinterpret_cast<volatile LONG64*>(buf.word<uint64_t>(offset)), 0, 0));
#else
            return __atomic_load_n(buf.word<uint64_t>(offset), __ATOMIC_ACQUIRE);
#endif
        },
        nb::arg("buffer"), nb::arg("offset"), "Acquire load of the u64 at `offset`.");

    m.def(
        "store_release64",
        [](nb::handle buffer, long long offset, uint64_t value) {
            WritableBuffer buf(buffer);
#if defined(_WIN32)
            InterlockedExchange64(reinterpret_cast<volatile LONG64*>(buf.word<uint64_t>(offset)),
                                  static_cast<LONG64>(value));
#else
            __atomic_store_n(buf.word<uint64_t>(offset), value, __ATOMIC_RELEASE);
#endif
        },
        nb::arg("buffer"), nb::arg("offset"), nb::arg("value"), "Release store of a u64.");

    m.attr("SPIN_YIELD_AFTER_US") = kSpinYieldAfter.count();
    m.attr("SPIN_YIELD_EVERY_US") = kSpinYieldEvery.count();
    m.def("spin", &spin, nb::arg("buffer"), nb::arg("offset"), nb::arg("expected"),
          nb::arg("budget_s"),
          "Spin (GIL released) while the u32 at `offset` equals `expected`, at most budget_s "
          "seconds (<= 10 ms per call); returns the last value read.");

    m.def(
        "cas_wake",
        [](nb::handle buffer, long long offset, long long waiters_offset, long long expected,
           long long desired, const WaitEvents* events) -> uint32_t {
            const uint32_t e = checked_u32(expected, "expected");
            const uint32_t d = checked_u32(desired, "desired");
            WritableBuffer buf(buffer);
            uint32_t* word = buf.word(offset);
            uint32_t* waiters = buf.word(waiters_offset);
            const uint32_t found = atomic_cas(word, e, d);
            // R-WAIT-3: after a successful change read `waiters` (seq_cst, as a fetch_add of 0)
            // and wake everybody blocked on the word if somebody counted themselves in.
            if (found == e && atomic_fetch_add(waiters, 0) != 0) os_wake_all(word, events);
            return found;
        },
        nb::arg("buffer"), nb::arg("offset"), nb::arg("waiters_offset"), nb::arg("expected"),
        nb::arg("desired"), nb::arg("events").none() = nb::none(),
        "compare_exchange and, on success, the R-WAIT-3 wake of the waiters counted at "
        "`waiters_offset`, in one call; returns the value found (== expected on success).");

    m.attr("MAX_SPIN_SLICE_S") = kMaxSpinSliceSeconds;
    m.attr("WAIT_CAS_CHANGED") = static_cast<uint64_t>(kChanged);
    m.attr("WAIT_CAS_LEFT") = static_cast<uint64_t>(kLeft);
    m.attr("WAIT_CAS_WAITING") = static_cast<uint64_t>(kWaiting);
    m.def("wait_cas", &wait_cas, nb::arg("buffer"), nb::arg("offset"), nb::arg("waiters_offset"),
          nb::arg("match_mask"), nb::arg("match_value"), nb::arg("keep_mask"), nb::arg("set_bits"),
          nb::arg("wait_mask"), nb::arg("wait_a"), nb::arg("wait_b"), nb::arg("spin_s"),
          nb::arg("block_s"), nb::arg("events").none() = nb::none(),
          "Wait while (word & wait_mask) is wait_a or wait_b (spin <= spin_s, then at most one OS "
          "wait <= block_s), and once (word & match_mask) == match_value CAS it to (word & "
          "keep_mask) | set_bits and wake the waiters counted at waiters_offset. Returns "
          "status | word: WAIT_CAS_CHANGED (0) with the replaced word (so a result < 2**32 is "
          "that word), WAIT_CAS_LEFT (neither matched nor waited in) or WAIT_CAS_WAITING (still "
          "waited in) with the last word read.");

    m.def("wait", &wait_while_equal, nb::arg("buffer"), nb::arg("offset"), nb::arg("expected"),
          nb::arg("timeout_s"), nb::arg("events").none() = nb::none(),
          "Block while the u32 at `offset` equals `expected`, at most timeout_s seconds (GIL "
          "released, sliced <= 50 ms, Ctrl-C aware). True if it changed, False on timeout.");

    m.def(
        "wake_all",
        [](nb::handle buffer, long long offset, const WaitEvents* events) -> int {
            WritableBuffer buf(buffer);
            return os_wake_all(buf.word(offset), events);
        },
        nb::arg("buffer"), nb::arg("offset"), nb::arg("events").none() = nb::none(),
        "Wake every process blocked on the u32 at `offset`; returns how many were woken (Linux).");
}
