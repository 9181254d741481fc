/// Declarations of the per-ISA kernels; each lives in its own file with per-function
/// `__attribute__((target(...)))`, so no file is built for a CPU that lacks the feature.
#ifndef HEARTH_KERNELS_INTERNAL_H
#define HEARTH_KERNELS_INTERNAL_H
#include "hearth_kernels.h"

#define HEARTH_SCAN_PARAMS                                                                         \
    const int8_t *packed, const int8_t *query, int32_t dim_padded, int32_t block_count,           \
        const float *row_scale, const float *bias, float query_scale, float threshold, float *scores, \
        uint8_t *masks

#if defined(__x86_64__)
#include <immintrin.h>
void hearth_dot_avx2(const int8_t *packed, const int8_t *query, int32_t dim_padded,
                     int32_t block_count, int32_t *out);
int32_t hearth_scan_avx2(HEARTH_SCAN_PARAMS);
void hearth_dot_avxvnni(const int8_t *packed, const int8_t *query, int32_t dim_padded,
                        int32_t block_count, int32_t *out);
int32_t hearth_scan_avxvnni(HEARTH_SCAN_PARAMS);

/// The float epilogue of one block (8 rows) in AVX registers: the same IEEE operations in the
/// same order as `hearth_score_from_dot` (convert, x row scale, x query scale, + bias; no FMA),
/// so the scores are bit-identical. Stores them and returns the mask of rows `>= threshold`.
__attribute__((target("avx2")))
static inline uint8_t hearth_epilogue_block_avx2(__m256i acc, const float *row_scale, const float *bias,
                                                 __m256 query_scale, __m256 threshold, float *scores) {
    __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_loadu_ps(row_scale));
    t = _mm256_mul_ps(t, query_scale);
    t = _mm256_add_ps(t, _mm256_loadu_ps(bias));
    _mm256_storeu_ps(scores, t);
    return (uint8_t)_mm256_movemask_ps(_mm256_cmp_ps(t, threshold, _CMP_GE_OQ));
}
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
void hearth_dot_neon(const int8_t *packed, const int8_t *query, int32_t dim_padded,
                     int32_t block_count, int32_t *out);
int32_t hearth_scan_neon(HEARTH_SCAN_PARAMS);
void hearth_dot_neondot(const int8_t *packed, const int8_t *query, int32_t dim_padded,
                        int32_t block_count, int32_t *out);
int32_t hearth_scan_neondot(HEARTH_SCAN_PARAMS);

/// The float epilogue of four rows in NEON registers: the same IEEE operations in the same
/// order as `hearth_score_from_dot` (no FMA), so the scores are bit-identical. Stores them and
/// returns the 4-bit mask of rows `>= threshold`.
static inline uint32_t hearth_epilogue_quad_neon(int32x4_t acc, const float *row_scale, const float *bias,
                                                 float query_scale, float threshold, float *scores) {
    float32x4_t t = vmulq_f32(vcvtq_f32_s32(acc), vld1q_f32(row_scale));
    t = vmulq_f32(t, vdupq_n_f32(query_scale));
    t = vaddq_f32(t, vld1q_f32(bias));
    vst1q_f32(scores, t);
    const uint32_t bits[4] = {1, 2, 4, 8};
    return vaddvq_u32(vandq_u32(vcgeq_f32(t, vdupq_n_f32(threshold)), vld1q_u32(bits)));
}
#endif
#endif
