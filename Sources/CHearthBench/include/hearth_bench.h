/// Helpers for hearth-bench that must be C: the memory roofline, a cache flush, and the
/// table-layout experiment of `hearth-bench scoring-layout` (layout.c).
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

/// Bytes of the interleaved copy of a table of `rows` rows (a multiple of 8): per block of 8
/// rows, its `8 * dim_padded` packed bytes, then its 8 float row scales, then its 8 float biases.
size_t hearth_bench_interleaved_size(int32_t rows, int32_t dim_padded);

/// Writes the interleaved copy (`hearth_bench_interleaved_size` bytes) of a packed table and its
/// row scales and biases (`rows` a multiple of 8).
void hearth_bench_interleave(const int8_t *packed, const float *row_scale, const float *bias, int32_t rows,
                             int32_t dim_padded, uint8_t *out);

/// Top-K without exclusions over the shipped (separate) layout, with the benchmark's own copy
/// of the AVX2 scan and top-K. Writes up to `k` indices and scores, best first (higher score,
/// then lower index), and returns how many; -1 without AVX2, for `rows` not a multiple of 8 or
/// `k <= 0`.
int32_t hearth_bench_topk_separate(const int8_t *packed, const float *row_scale, const float *bias, int32_t rows,
                                   int32_t dim_padded, const int8_t *query, float query_scale, int32_t k,
                                   int32_t *index, float *score);

/// The same scan and top-K over the interleaved layout (`hearth_bench_interleave`).
int32_t hearth_bench_topk_interleaved(const uint8_t *table, int32_t rows, int32_t dim_padded, const int8_t *query,
                                      float query_scale, int32_t k, int32_t *index, float *score);
#endif
