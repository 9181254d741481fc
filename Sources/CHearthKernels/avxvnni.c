/// AVX-VNNI kernel: `vpdpbusd` accumulates four unsigned x signed byte products per int32 lane,
/// which is exactly one row's share of a packed group.
///
/// The item bytes are made unsigned with `item ^ 0x80` (= item + 128), so each lane gains
/// 128 * sum(query group); the kernel subtracts 128 * sum(query) at the end. (The |a|, sign(b)
/// trick is not used: it is wrong for -128.)
#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>
#include "kernels_internal.h"

/// Dot products of the two blocks at `a` (and the next one), before the query-sum correction.
__attribute__((target("avx2,avxvnni")))
static inline void block_pair_dot(const int8_t *a, size_t block_bytes, const int8_t *query, int32_t groups,
                                  __m256i *out_a, __m256i *out_b) {
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    const int8_t *b = a + block_bytes;
    __m256i acc_a = _mm256_setzero_si256();
    __m256i acc_b = _mm256_setzero_si256();
    for (int32_t g = 0; g < groups; g++) {
        int32_t q;
        memcpy(&q, query + g * HEARTH_GROUP_BYTES, sizeof q);
        const __m256i query4 = _mm256_set1_epi32(q);
        const __m256i items_a = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(a + g * 32)), flip);
        const __m256i items_b = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(b + g * 32)), flip);
        acc_a = _mm256_dpbusd_avx_epi32(acc_a, items_a, query4);
        acc_b = _mm256_dpbusd_avx_epi32(acc_b, items_b, query4);
    }
    *out_a = acc_a;
    *out_b = acc_b;
}

__attribute__((target("avx2,avxvnni")))
static inline __m256i block_dot(const int8_t *a, const int8_t *query, int32_t groups) {
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    __m256i acc = _mm256_setzero_si256();
    for (int32_t g = 0; g < groups; g++) {
        int32_t q;
        memcpy(&q, query + g * HEARTH_GROUP_BYTES, sizeof q);
        const __m256i items = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(a + g * 32)), flip);
        acc = _mm256_dpbusd_avx_epi32(acc, items, _mm256_set1_epi32(q));
    }
    return acc;
}

/// `128 * sum(query)` in every lane: what the `item ^ 0x80` offset added to each row's sum.
__attribute__((target("avx2,avxvnni")))
static inline __m256i offset_correction(const int8_t *query, int32_t dim_padded) {
    int32_t query_sum = 0;
    for (int32_t i = 0; i < dim_padded; i++) query_sum += query[i];
    return _mm256_set1_epi32(128 * query_sum);
}

__attribute__((target("avx2,avxvnni")))
void hearth_dot_avxvnni(const int8_t *packed, const int8_t *query, int32_t dim_padded,
                        int32_t block_count, int32_t *out) {
    const int32_t groups = dim_padded / HEARTH_GROUP_BYTES;
    const size_t block_bytes = (size_t)HEARTH_BLOCK_ROWS * (size_t)dim_padded;
    const __m256i correction = offset_correction(query, dim_padded);
    int32_t block = 0;
    for (; block + 2 <= block_count; block += 2) {
        __m256i acc_a, acc_b;
        block_pair_dot(packed + (size_t)block * block_bytes, block_bytes, query, groups, &acc_a, &acc_b);
        _mm256_storeu_si256((__m256i *)(out + block * HEARTH_BLOCK_ROWS), _mm256_sub_epi32(acc_a, correction));
        _mm256_storeu_si256((__m256i *)(out + (block + 1) * HEARTH_BLOCK_ROWS), _mm256_sub_epi32(acc_b, correction));
    }
    for (; block < block_count; block++) {
        const __m256i acc = block_dot(packed + (size_t)block * block_bytes, query, groups);
        _mm256_storeu_si256((__m256i *)(out + block * HEARTH_BLOCK_ROWS), _mm256_sub_epi32(acc, correction));
    }
}

__attribute__((target("avx2,avxvnni")))
int32_t hearth_scan_avxvnni(HEARTH_SCAN_PARAMS) {
    const int32_t groups = dim_padded / HEARTH_GROUP_BYTES;
    const size_t block_bytes = (size_t)HEARTH_BLOCK_ROWS * (size_t)dim_padded;
    const __m256i correction = offset_correction(query, dim_padded);
    const __m256 scale = _mm256_set1_ps(query_scale);
    const __m256 limit = _mm256_set1_ps(threshold);
    int32_t flagged = 0;
    int32_t block = 0;
    for (; block + 2 <= block_count; block += 2) {
        __m256i acc_a, acc_b;
        block_pair_dot(packed + (size_t)block * block_bytes, block_bytes, query, groups, &acc_a, &acc_b);
        const int32_t row = block * HEARTH_BLOCK_ROWS;
        masks[block] = hearth_epilogue_block_avx2(_mm256_sub_epi32(acc_a, correction), row_scale + row, bias + row,
                                                  scale, limit, scores + row);
        masks[block + 1] = hearth_epilogue_block_avx2(_mm256_sub_epi32(acc_b, correction), row_scale + row + 8,
                                                      bias + row + 8, scale, limit, scores + row + 8);
        flagged += (masks[block] != 0) + (masks[block + 1] != 0);
    }
    for (; block < block_count; block++) {
        const int32_t row = block * HEARTH_BLOCK_ROWS;
        const __m256i acc = block_dot(packed + (size_t)block * block_bytes, query, groups);
        masks[block] = hearth_epilogue_block_avx2(_mm256_sub_epi32(acc, correction), row_scale + row, bias + row,
                                                  scale, limit, scores + row);
        flagged += masks[block] != 0;
    }
    return flagged;
}
#endif
