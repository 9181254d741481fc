/// NEON dot-product kernel (FEAT_DotProd, e.g. Cortex-A55/A76, Neoverse N1, Apple M1):
/// `sdot` (`vdotq_s32`) adds four signed byte products into each int32 lane, which is exactly
/// one row's 4 bytes of a packed group, so a group is two `sdot`s (rows 0-3, rows 4-7) against
/// the query's 4 bytes broadcast to every lane, and the accumulators are already in row order.
/// Signed x signed, no widening tricks: exact for any int8 input.
///
/// Only the kernel function is compiled for dotprod (per-function target attribute); the rest of
/// the library stays baseline Armv8.0-A. Never build a whole file with +dotprod: GCC would then
/// auto-vectorise ordinary loops into `sdot`, which raises SIGILL on a Cortex-A53/A72.
///
/// Attribute spelling: clang accepts `target("dotprod")`. GCC 12's arm_neon.h defines
/// `vdotq_s32` under `#pragma GCC target("arch=armv8.2-a+dotprod")`, and GCC only inlines an
/// always_inline intrinsic into a function whose ISA flags include the intrinsic's, so
/// `target("+dotprod")` fails there with "inlining failed ... target specific option mismatch";
/// `arch=armv8.2-a+dotprod` works with GCC 12 and later (every dotprod core is Armv8.2+).
#if defined(__aarch64__)
#include <arm_neon.h>
#include <string.h>
#include "kernels_internal.h"

#if defined(__clang__)
#define HEARTH_TARGET_DOTPROD __attribute__((target("dotprod")))
#else
#define HEARTH_TARGET_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#endif

/// The int32 dot products of the two blocks at `a` and `a + block_bytes`: four independent chains.
HEARTH_TARGET_DOTPROD
static inline void block_pair_dot(const int8_t *a, size_t block_bytes, const int8_t *query, int32_t groups,
                                  int32x4_t acc[4]) {
    const size_t group_bytes = (size_t)HEARTH_BLOCK_ROWS * HEARTH_GROUP_BYTES; /* 32 */
    const int8_t *b = a + block_bytes;
    int32x4_t acc_a_lo = vdupq_n_s32(0), acc_a_hi = vdupq_n_s32(0);
    int32x4_t acc_b_lo = vdupq_n_s32(0), acc_b_hi = vdupq_n_s32(0);
    for (int32_t g = 0; g < groups; g++) {
        int32_t q;
        memcpy(&q, query + (size_t)g * HEARTH_GROUP_BYTES, sizeof q);
        const int8x16_t query4 = vreinterpretq_s8_s32(vdupq_n_s32(q));
        const size_t offset = (size_t)g * group_bytes;
        acc_a_lo = vdotq_s32(acc_a_lo, vld1q_s8(a + offset), query4);
        acc_a_hi = vdotq_s32(acc_a_hi, vld1q_s8(a + offset + 16), query4);
        acc_b_lo = vdotq_s32(acc_b_lo, vld1q_s8(b + offset), query4);
        acc_b_hi = vdotq_s32(acc_b_hi, vld1q_s8(b + offset + 16), query4);
    }
    acc[0] = acc_a_lo;
    acc[1] = acc_a_hi;
    acc[2] = acc_b_lo;
    acc[3] = acc_b_hi;
}

/// The int32 dot products of one block: rows 0-3 in `acc[0]`, rows 4-7 in `acc[1]`.
HEARTH_TARGET_DOTPROD
static inline void block_dot(const int8_t *a, const int8_t *query, int32_t groups, int32x4_t acc[2]) {
    const size_t group_bytes = (size_t)HEARTH_BLOCK_ROWS * HEARTH_GROUP_BYTES; /* 32 */
    int32x4_t acc_lo = vdupq_n_s32(0), acc_hi = vdupq_n_s32(0);
    for (int32_t g = 0; g < groups; g++) {
        int32_t q;
        memcpy(&q, query + (size_t)g * HEARTH_GROUP_BYTES, sizeof q);
        const int8x16_t query4 = vreinterpretq_s8_s32(vdupq_n_s32(q));
        const size_t offset = (size_t)g * group_bytes;
        acc_lo = vdotq_s32(acc_lo, vld1q_s8(a + offset), query4);
        acc_hi = vdotq_s32(acc_hi, vld1q_s8(a + offset + 16), query4);
    }
    acc[0] = acc_lo;
    acc[1] = acc_hi;
}

HEARTH_TARGET_DOTPROD
void hearth_dot_neondot(const int8_t *packed, const int8_t *query, int32_t dim_padded,
                        int32_t block_count, int32_t *out) {
    const int32_t groups = dim_padded / HEARTH_GROUP_BYTES;
    const size_t block_bytes = (size_t)HEARTH_BLOCK_ROWS * (size_t)dim_padded;
    int32_t block = 0;
    for (; block + 2 <= block_count; block += 2) {
        int32x4_t acc[4];
        block_pair_dot(packed + (size_t)block * block_bytes, block_bytes, query, groups, acc);
        int32_t *o = out + (size_t)block * HEARTH_BLOCK_ROWS;
        for (int32_t i = 0; i < 4; i++) vst1q_s32(o + 4 * i, acc[i]);
    }
    for (; block < block_count; block++) {
        int32x4_t acc[2];
        block_dot(packed + (size_t)block * block_bytes, query, groups, acc);
        vst1q_s32(out + (size_t)block * HEARTH_BLOCK_ROWS, acc[0]);
        vst1q_s32(out + (size_t)block * HEARTH_BLOCK_ROWS + 4, acc[1]);
    }
}

HEARTH_TARGET_DOTPROD
int32_t hearth_scan_neondot(HEARTH_SCAN_PARAMS) {
    const int32_t groups = dim_padded / HEARTH_GROUP_BYTES;
    const size_t block_bytes = (size_t)HEARTH_BLOCK_ROWS * (size_t)dim_padded;
    int32_t flagged = 0;
    int32_t block = 0;
    for (; block + 2 <= block_count; block += 2) {
        int32x4_t acc[4];
        block_pair_dot(packed + (size_t)block * block_bytes, block_bytes, query, groups, acc);
        for (int32_t half = 0; half < 2; half++) {
            const int32_t row = (block + half) * HEARTH_BLOCK_ROWS;
            const uint32_t mask =
                hearth_epilogue_quad_neon(acc[2 * half], row_scale + row, bias + row, query_scale, threshold, scores + row)
                | hearth_epilogue_quad_neon(acc[2 * half + 1], row_scale + row + 4, bias + row + 4, query_scale, threshold,
                                            scores + row + 4) << 4;
            masks[block + half] = (uint8_t)mask;
            flagged += mask != 0;
        }
    }
    for (; block < block_count; block++) {
        int32x4_t acc[2];
        block_dot(packed + (size_t)block * block_bytes, query, groups, acc);
        const int32_t row = block * HEARTH_BLOCK_ROWS;
        const uint32_t mask =
            hearth_epilogue_quad_neon(acc[0], row_scale + row, bias + row, query_scale, threshold, scores + row)
            | hearth_epilogue_quad_neon(acc[1], row_scale + row + 4, bias + row + 4, query_scale, threshold, scores + row + 4) << 4;
        masks[block] = (uint8_t)mask;
        flagged += mask != 0;
    }
    return flagged;
}
#endif
