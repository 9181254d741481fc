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

HEARTH_TARGET_DOTPROD
void hearth_dot_neondot(const int8_t *packed, const int8_t *query, int32_t dim_padded,
                        int32_t block_count, int32_t *out) {
    const int32_t groups = dim_padded / HEARTH_GROUP_BYTES;
    const size_t block_bytes = (size_t)HEARTH_BLOCK_ROWS * (size_t)dim_padded;
    const size_t group_bytes = (size_t)HEARTH_BLOCK_ROWS * HEARTH_GROUP_BYTES; /* 32 */
    int32_t block = 0;
    /* Two blocks per iteration: four independent accumulator chains. */
    for (; block + 2 <= block_count; block += 2) {
        const int8_t *a = packed + (size_t)block * block_bytes;
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
        int32_t *o = out + (size_t)block * HEARTH_BLOCK_ROWS;
        vst1q_s32(o, acc_a_lo);
        vst1q_s32(o + 4, acc_a_hi);
        vst1q_s32(o + 8, acc_b_lo);
        vst1q_s32(o + 12, acc_b_hi);
    }
    for (; block < block_count; block++) {
        const int8_t *a = packed + (size_t)block * block_bytes;
        int32x4_t acc_lo = vdupq_n_s32(0), acc_hi = vdupq_n_s32(0);
        for (int32_t g = 0; g < groups; g++) {
            int32_t q;
            memcpy(&q, query + (size_t)g * HEARTH_GROUP_BYTES, sizeof q);
            const int8x16_t query4 = vreinterpretq_s8_s32(vdupq_n_s32(q));
            const size_t offset = (size_t)g * group_bytes;
            acc_lo = vdotq_s32(acc_lo, vld1q_s8(a + offset), query4);
            acc_hi = vdotq_s32(acc_hi, vld1q_s8(a + offset + 16), query4);
        }
        vst1q_s32(out + (size_t)block * HEARTH_BLOCK_ROWS, acc_lo);
        vst1q_s32(out + (size_t)block * HEARTH_BLOCK_ROWS + 4, acc_hi);
    }
}
#endif
