/// Helpers for hearth-bench that must be C: the memory roofline and a cache flush.
#ifndef HEARTH_BENCH_H
#define HEARTH_BENCH_H
#include <stddef.h>
#include <stdint.h>

/// Reads every byte of `data` once with the widest loads this CPU has and returns a value that
/// depends on all of them (so the reads cannot be elided). The time it takes is the roofline:
/// no scoring kernel can touch the same bytes faster.
uint64_t hearth_bench_stream(const void *data, size_t bytes);

/// Evicts `bytes` from `data` on out of every cache level (clflush on x86-64, `dc civac` on
/// arm64), so the next read streams from memory as it does when a query arrives after the
/// device did other work. Returns 0, or -1 where this architecture has no way to do it.
int hearth_bench_evict(const void *data, size_t bytes);

/// Monotonic clock in nanoseconds.
uint64_t hearth_bench_now_ns(void);
#endif
