// CHECK for the libFuzzer targets: a failed invariant traps, which libFuzzer reports as a crash
// with the input that caused it.
#pragma once

#define CHECK(c)                \
  do {                          \
    if (!(c)) __builtin_trap(); \
  } while (0)
