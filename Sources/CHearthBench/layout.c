/// The table-layout experiment of `hearth-bench scoring-layout`: the shipped layout (packed
/// blocks, row scales and biases in two separate arrays: three streams) against an interleaved
/// one (each block's 8 row scales and 8 biases stored right after its packed bytes: one stream).
/// Both go through the same AVX2 scan and top-K written here, which follow the library's
/// `hearth_scan_avx2` and `hearth_score_topk` line for line except for where the floats are read,
/// so the comparison isolates the layout. Bench-only: the library keeps the separate layout.
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <string.h>
#include "hearth_bench.h"

#pragma STDC FP_CONTRACT OFF

#define BLOCK_ROWS 8
#define GROUP_BYTES 4
#define CHUNK_BLOCKS 64
#define PREFETCH_BLOCKS 16

size_t hearth_bench_interleaved_size(int32_t rows, int32_t dim_padded) {
    return (size_t)(rows / BLOCK_ROWS) * ((size_t)BLOCK_ROWS * (size_t)dim_padded + 2 * BLOCK_ROWS * sizeof(float));
}

void hearth_bench_interleave(const int8_t *packed, const float *row_scale, const float *bias, int32_t rows,
                             int32_t dim_padded, uint8_t *out) {
    const size_t packed_block = (size_t)BLOCK_ROWS * (size_t)dim_padded;
    const size_t stride = packed_block + 2 * BLOCK_ROWS * sizeof(float);
    for (int32_t block = 0; block < rows / BLOCK_ROWS; block++) {
        uint8_t *target = out + (size_t)block * stride;
        memcpy(target, packed + (size_t)block * packed_block, packed_block);
        memcpy(target + packed_block, row_scale + block * BLOCK_ROWS, BLOCK_ROWS * sizeof(float));
        memcpy(target + packed_block + BLOCK_ROWS * sizeof(float), bias + block * BLOCK_ROWS, BLOCK_ROWS * sizeof(float));
    }
}

/// A table in either layout: `blocks` with `stride` bytes per block; the floats either in the
/// block after its packed bytes (`row_scale == NULL`) or in the two arrays.
typedef struct layout_view {
    const uint8_t *blocks;
    size_t stride;
    const float *row_scale;
    const float *bias;
    int32_t rows;
    int32_t dim_padded;
} layout_view;

/// `a` ranks before `b`: higher score, then lower index (as in the library).
static int ranks_before(float score_a, int32_t index_a, float score_b, int32_t index_b) {
    return score_a > score_b || (score_a == score_b && index_a < index_b);
}

static void sift_down(int32_t *index, float *score, int32_t size, int32_t i) {
    for (;;) {
        int32_t worst = i;
        const int32_t left = 2 * i + 1, right = 2 * i + 2;
        if (left < size && ranks_before(score[worst], index[worst], score[left], index[left])) worst = left;
        if (right < size && ranks_before(score[worst], index[worst], score[right], index[right])) worst = right;
        if (worst == i) return;
        const int32_t ti = index[i]; index[i] = index[worst]; index[worst] = ti;
        const float ts = score[i]; score[i] = score[worst]; score[worst] = ts;
        i = worst;
    }
}

static void sift_up(int32_t *index, float *score, int32_t i) {
    while (i > 0) {
        const int32_t parent = (i - 1) / 2;
        if (!ranks_before(score[parent], index[parent], score[i], index[i])) return;
        const int32_t ti = index[i]; index[i] = index[parent]; index[parent] = ti;
        const float ts = score[i]; score[i] = score[parent]; score[parent] = ts;
        i = parent;
    }
}

static void offer_block(int32_t first_row, uint8_t mask, const float *scores, int32_t k, int32_t *index,
                        float *score, int32_t *size) {
    for (int32_t r = 0; r < BLOCK_ROWS; r++) {
        if (!((mask >> r) & 1u)) continue;
        if (*size < k) {
            index[*size] = first_row + r;
            score[*size] = scores[r];
            sift_up(index, score, *size);
            (*size)++;
        } else if (ranks_before(scores[r], first_row + r, score[0], index[0])) {
            index[0] = first_row + r;
            score[0] = scores[r];
            sift_down(index, score, *size, 0);
        }
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
#include <cpuid.h>

__attribute__((target("avx2")))
static inline __m256i group_dot(__m256i items, __m256i query4) {
    const __m256i products = _mm256_maddubs_epi16(_mm256_abs_epi8(items), _mm256_sign_epi8(query4, items));
    return _mm256_madd_epi16(products, _mm256_set1_epi16(1));
}

/// The library's epilogue: convert, x row scale, x query scale, + bias (no FMA).
__attribute__((target("avx2")))
static inline uint8_t epilogue(__m256i acc, const float *row_scale, const float *bias, __m256 query_scale,
                               __m256 threshold, float *scores) {
    __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_loadu_ps(row_scale));
    t = _mm256_mul_ps(t, query_scale);
    t = _mm256_add_ps(t, _mm256_loadu_ps(bias));
    _mm256_storeu_ps(scores, t);
    return (uint8_t)_mm256_movemask_ps(_mm256_cmp_ps(t, threshold, _CMP_GE_OQ));
}

/// `hearth_scan_avx2` for `count` blocks from `first_block`: one block at a time, prefetching
/// the block `PREFETCH_BLOCKS` ahead; only where the row scales and biases are read differs.
__attribute__((target("avx2")))
static int32_t scan(const layout_view *view, int32_t first_block, int32_t count, const int8_t *query,
                    float query_scale, float threshold, float *scores, uint8_t *masks) {
    const int32_t groups = view->dim_padded / GROUP_BYTES;
    const size_t packed_block = (size_t)BLOCK_ROWS * (size_t)view->dim_padded;
    const __m256 scale = _mm256_set1_ps(query_scale);
    const __m256 limit = _mm256_set1_ps(threshold);
    int32_t flagged = 0;
    for (int32_t i = 0; i < count; i++) {
        const uint8_t *a = view->blocks + (size_t)(first_block + i) * view->stride;
        const uint8_t *ahead = a + (size_t)PREFETCH_BLOCKS * view->stride;
        for (size_t offset = 0; offset < view->stride; offset += 64) {
            _mm_prefetch((const char *)(ahead + offset), _MM_HINT_T0);
        }
        __m256i acc = _mm256_setzero_si256();
        for (int32_t g = 0; g < groups; g++) {
            int32_t q;
            memcpy(&q, query + g * GROUP_BYTES, sizeof q);
            acc = _mm256_add_epi32(acc, group_dot(_mm256_loadu_si256((const __m256i *)(a + g * 32)), _mm256_set1_epi32(q)));
        }
        const int32_t row = (first_block + i) * BLOCK_ROWS;
        const float *row_scale = view->row_scale == NULL ? (const float *)(a + packed_block) : view->row_scale + row;
        const float *bias = view->row_scale == NULL ? row_scale + BLOCK_ROWS : view->bias + row;
        masks[i] = epilogue(acc, row_scale, bias, scale, limit, scores + i * BLOCK_ROWS);
        flagged += masks[i] != 0;
    }
    return flagged;
}

static int has_avx2(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    return (ebx >> 5) & 1;
}

/// `hearth_score_topk` without exclusions over full blocks.
static int32_t topk(const layout_view *view, const int8_t *query, float query_scale, int32_t k, int32_t *index,
                    float *score) {
    if (!has_avx2()) return -1;
    float scores[CHUNK_BLOCKS * BLOCK_ROWS];
    uint8_t masks[CHUNK_BLOCKS];
    int32_t size = 0;
    float threshold = -INFINITY;
    const int32_t blocks = view->rows / BLOCK_ROWS;
    for (int32_t block = 0; block < blocks; block += CHUNK_BLOCKS) {
        const int32_t count = blocks - block < CHUNK_BLOCKS ? blocks - block : CHUNK_BLOCKS;
        if (scan(view, block, count, query, query_scale, threshold, scores, masks) == 0) continue;
        for (int32_t b = 0; b < count; b++) {
            if (masks[b] != 0) {
                offer_block((block + b) * BLOCK_ROWS, masks[b], scores + b * BLOCK_ROWS, k, index, score, &size);
            }
        }
        if (size == k) threshold = score[0];
    }
    for (int32_t end = size - 1; end > 0; end--) {
        const int32_t ti = index[0]; index[0] = index[end]; index[end] = ti;
        const float ts = score[0]; score[0] = score[end]; score[end] = ts;
        sift_down(index, score, end, 0);
    }
    return size;
}
#else
static int32_t topk(const layout_view *view, const int8_t *query, float query_scale, int32_t k, int32_t *index,
                    float *score) {
    (void)view; (void)query; (void)query_scale; (void)k; (void)index; (void)score;
    (void)offer_block;
    return -1;
}
#endif

int32_t hearth_bench_topk_separate(const int8_t *packed, const float *row_scale, const float *bias, int32_t rows,
                                   int32_t dim_padded, const int8_t *query, float query_scale, int32_t k,
                                   int32_t *index, float *score) {
    if (rows % BLOCK_ROWS != 0 || k <= 0) return -1;
    const layout_view view = {(const uint8_t *)packed, (size_t)BLOCK_ROWS * (size_t)dim_padded, row_scale, bias, rows,
                              dim_padded};
    return topk(&view, query, query_scale, k, index, score);
}

int32_t hearth_bench_topk_interleaved(const uint8_t *table, int32_t rows, int32_t dim_padded, const int8_t *query,
                                      float query_scale, int32_t k, int32_t *index, float *score) {
    if (rows % BLOCK_ROWS != 0 || k <= 0) return -1;
    const layout_view view = {table, (size_t)BLOCK_ROWS * (size_t)dim_padded + 2 * BLOCK_ROWS * sizeof(float), NULL,
                              NULL, rows, dim_padded};
    return topk(&view, query, query_scale, k, index, score);
}
