// macOS os_sync_wait_on_address API (macOS 14.4+, <os/os_sync_wait_on_address.h>), for both wait
// paths: the C++ library (cpp/src/wait_darwin.cpp) and the Python helper (_native.cpp).
//
// SDKs older than 14.4, and the macOS headers zig ships (the cross build in ci/test-macos.sh),
// lack that header: the few declarations used are then given here, with the values and the
// availability of Apple's header, so that the calls stay behind __builtin_available(macOS 14.4)
// and are weakly linked when the deployment target is older.
#pragma once
#if defined(__APPLE__)
#if defined(__has_include) && __has_include(<os/os_sync_wait_on_address.h>)
#include <os/clock.h>
#include <os/os_sync_wait_on_address.h>
#else
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
typedef uint32_t os_sync_wait_on_address_flags_t;
typedef uint32_t os_sync_wake_by_address_flags_t;
typedef uint32_t os_clockid_t;
#define OS_SYNC_WAIT_ON_ADDRESS_SHARED ((os_sync_wait_on_address_flags_t)0x00000001)
#define OS_SYNC_WAKE_BY_ADDRESS_SHARED ((os_sync_wake_by_address_flags_t)0x00000001)
#define OS_CLOCK_MACH_ABSOLUTE_TIME ((os_clockid_t)32)
__attribute__((availability(macos, introduced = 14.4), weak_import)) int
os_sync_wait_on_address_with_timeout(void* addr, uint64_t value, size_t size,
                                     os_sync_wait_on_address_flags_t flags, os_clockid_t clockid,
                                     uint64_t timeout_ns);
__attribute__((availability(macos, introduced = 14.4), weak_import)) int
os_sync_wake_by_address_all(void* addr, size_t size, os_sync_wake_by_address_flags_t flags);
#ifdef __cplusplus
}
#endif
#endif
#endif
