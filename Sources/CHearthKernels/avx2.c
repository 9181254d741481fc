/// AVX2 kernel: one packed group (8 rows x 4 bytes) is one YMM register.
///
/// `vpmaddubsw` multiplies unsigned by signed bytes, so the item bytes go in as |item| and the
/// query as sign(item)*query (`vpsignb`). This is exact because the values are in [-127, 127]:
/// |item| fits an unsigned byte and two products (at most 2 * 127 * 127 = 32258) never saturate
/// the int16 pair sum. `vpmaddwd` with ones then gives one int32 per row and group.
#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>
#include "kernels_internal.h"

/// How far ahead, in blocks, the kernel prefetches (8 KiB at d = 64; 4 to 32 blocks measured
/// the same).
#define PREFETCH_BLOCKS 16

__attribute__((target("avx2")))
static inline __m256i group_dot(__m256i items, __m256i query4) {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i products = _mm256_maddubs_epi16(_mm256_abs_epi8(items), _mm256_sign_epi8(query4, items));
    return _mm256_madd_epi16(products, ones);
}

/// Requests the block `PREFETCH_BLOCKS` ahead of `a`. The table is streamed once per query, so
/// many cache misses must be in flight while this block is multiplied. This deliberately runs
/// past the end of the caller's range (a prefetch never faults, even past the end of the table).
static inline void prefetch_ahead(const int8_t *a, size_t block_bytes) {
    const int8_t *ahead = a + (size_t)PREFETCH_BLOCKS * block_bytes;
    for (size_t offset = 0; offset < block_bytes; offset += 64) {
        _mm_prefetch((const char *)(ahead + offset), _MM_HINT_T0);
    }
}

/// Dot products of the 8 rows of the block at `a`.
///
/// One block at a time, its groups in address order: the loads form a single sequential stream,
/// which the hardware prefetcher follows. Two blocks side by side (two accumulator chains, one
/// query broadcast for both) interleave two streams 1 block apart; cold, that measured 4-9%
/// slower, hot (table in L3) 5-20% faster (docs/benchmarks.md).
__attribute__((target("avx2")))
static inline __m256i block_dot(const int8_t *a, const int8_t *query, int32_t groups) {
    __m256i acc = _mm256_setzero_si256();
    for (int32_t g = 0; g < groups; g++) {
        int32_t q;
        memcpy(&q, query + g * HEARTH_GROUP_BYTES, sizeof q);
        acc = _mm256_add_epi32(acc, group_dot(_mm256_loadu_si256((const __m256i *)(a + g * 32)), _mm256_set1_epi32(q)));
    }
    return acc;
}

__attribute__((target("avx2")))
void hearth_dot_avx2(const int8_t *packed, const int8_t *query, int32_t dim_padded,
                     int32_t block_count, int32_t *out) {
    const int32_t groups = dim_padded / HEARTH_GROUP_BYTES;
    const size_t block_bytes = (size_t)HEARTH_BLOCK_ROWS * (size_t)dim_padded;
    for (int32_t block = 0; block < block_count; block++) {
        const int8_t *a = packed + (size_t)block * block_bytes;
        prefetch_ahead(a, block_bytes);
        _mm256_storeu_si256((__m256i *)(out + block * HEARTH_BLOCK_ROWS), block_dot(a, query, groups));
    }
}

__attribute__((target("avx2")))
int32_t hearth_scan_avx2(HEARTH_SCAN_PARAMS) {
    const int32_t groups = dim_padded / HEARTH_GROUP_BYTES;
    const size_t block_bytes = (size_t)HEARTH_BLOCK_ROWS * (size_t)dim_padded;
    const __m256 scale = _mm256_set1_ps(query_scale);
    const __m256 limit = _mm256_set1_ps(threshold);
    int32_t flagged = 0;
    for (int32_t block = 0; block < block_count; block++) {
        const int8_t *a = packed + (size_t)block * block_bytes;
        prefetch_ahead(a, block_bytes);
        const int32_t row = block * HEARTH_BLOCK_ROWS;
        const __m256i acc = block_dot(a, query, groups);
        masks[block] = hearth_epilogue_block_avx2(acc, row_scale + row, bias + row, scale, limit, scores + row);
        flagged += masks[block] != 0;
    }
    return flagged;
}
#endif
