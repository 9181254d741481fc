/// Baseline NEON kernel (Armv8.0-A Advanced SIMD, e.g. Cortex-A53/A72): no dotprod instructions.
///
/// A packed group (8 rows x 4 bytes) is two 16-byte registers: rows 0-3 and rows 4-7. The
/// query's 4 bytes of the group are broadcast to every 4-byte lane. Each 8-byte half (two rows)
/// is multiplied with `smull` (`vmull_s8`) into eight int16 products; the next group's products
/// for the same rows are added with `smlal` (`vmlal_s8`). Each int16 lane then holds the sum of
/// two products of values in [-127, 127], so |lane| <= 2 * 127 * 127 = 32258 < 32767: no int16
/// overflow, exact. (-128 is excluded by contract; 2 * 128 * 128 = 32768 would overflow.)
/// `sadalp` (`vpadalq_s16`) then widens and adds adjacent int16 pairs into int32 accumulators, so
/// each row owns two int32 lanes; a final pairwise add (`addp`) leaves one int32 lane per row, in
/// row order. All integer arithmetic, so the result equals the scalar oracle bit for bit.
#if defined(__aarch64__)
#include <arm_neon.h>
#include <string.h>
#include "kernels_internal.h"

/// The query bytes `query[4g .. 4g+4)` repeated in all four 32-bit lanes.
static inline int8x16_t broadcast_group(const int8_t *query, int32_t g) {
    int32_t q;
    memcpy(&q, query + (size_t)g * HEARTH_GROUP_BYTES, sizeof q);
    return vreinterpretq_s8_s32(vdupq_n_s32(q));
}

/// The int32 dot products of one block: rows 0-3 in `*lo`, rows 4-7 in `*hi`.
static inline void block_dot(const int8_t *base, const int8_t *query, int32_t groups, int32x4_t *lo, int32x4_t *hi) {
    const size_t group_bytes = (size_t)HEARTH_BLOCK_ROWS * HEARTH_GROUP_BYTES; /* 32 */
    /* Four independent chains: rows 0-1, 2-3, 4-5, 6-7; two int32 lanes per row. */
    int32x4_t acc01 = vdupq_n_s32(0);
    int32x4_t acc23 = vdupq_n_s32(0);
    int32x4_t acc45 = vdupq_n_s32(0);
    int32x4_t acc67 = vdupq_n_s32(0);
    int32_t g = 0;
    /* Two groups per step: one smull + one smlal per int16 lane, then sadalp. */
    for (; g + 2 <= groups; g += 2) {
        const int8_t *p = base + (size_t)g * group_bytes;
        const int8x16_t q0 = broadcast_group(query, g);
        const int8x16_t q1 = broadcast_group(query, g + 1);
        const int8x16_t a0 = vld1q_s8(p);      /* group g, rows 0-3 */
        const int8x16_t b0 = vld1q_s8(p + 16); /* group g, rows 4-7 */
        const int8x16_t a1 = vld1q_s8(p + 32); /* group g+1, rows 0-3 */
        const int8x16_t b1 = vld1q_s8(p + 48); /* group g+1, rows 4-7 */
        int16x8_t p01 = vmull_s8(vget_low_s8(a0), vget_low_s8(q0));
        int16x8_t p23 = vmull_high_s8(a0, q0);
        int16x8_t p45 = vmull_s8(vget_low_s8(b0), vget_low_s8(q0));
        int16x8_t p67 = vmull_high_s8(b0, q0);
        p01 = vmlal_s8(p01, vget_low_s8(a1), vget_low_s8(q1));
        p23 = vmlal_high_s8(p23, a1, q1);
        p45 = vmlal_s8(p45, vget_low_s8(b1), vget_low_s8(q1));
        p67 = vmlal_high_s8(p67, b1, q1);
        acc01 = vpadalq_s16(acc01, p01);
        acc23 = vpadalq_s16(acc23, p23);
        acc45 = vpadalq_s16(acc45, p45);
        acc67 = vpadalq_s16(acc67, p67);
    }
    if (g < groups) { /* odd group count: the last group alone */
        const int8_t *p = base + (size_t)g * group_bytes;
        const int8x16_t q0 = broadcast_group(query, g);
        const int8x16_t a0 = vld1q_s8(p);
        const int8x16_t b0 = vld1q_s8(p + 16);
        acc01 = vpadalq_s16(acc01, vmull_s8(vget_low_s8(a0), vget_low_s8(q0)));
        acc23 = vpadalq_s16(acc23, vmull_high_s8(a0, q0));
        acc45 = vpadalq_s16(acc45, vmull_s8(vget_low_s8(b0), vget_low_s8(q0)));
        acc67 = vpadalq_s16(acc67, vmull_high_s8(b0, q0));
    }
    /* acc01 = {r0, r0, r1, r1}, acc23 = {r2, r2, r3, r3}: addp gives {r0, r1, r2, r3}. */
    *lo = vpaddq_s32(acc01, acc23);
    *hi = vpaddq_s32(acc45, acc67);
}

void hearth_dot_neon(const int8_t *packed, const int8_t *query, int32_t dim_padded,
                     int32_t block_count, int32_t *out) {
    const int32_t groups = dim_padded / HEARTH_GROUP_BYTES;
    const size_t block_bytes = (size_t)HEARTH_BLOCK_ROWS * (size_t)dim_padded;
    for (int32_t block = 0; block < block_count; block++) {
        int32x4_t lo, hi;
        block_dot(packed + (size_t)block * block_bytes, query, groups, &lo, &hi);
        vst1q_s32(out + (size_t)block * HEARTH_BLOCK_ROWS, lo);
        vst1q_s32(out + (size_t)block * HEARTH_BLOCK_ROWS + 4, hi);
    }
}

int32_t hearth_scan_neon(HEARTH_SCAN_PARAMS) {
    const int32_t groups = dim_padded / HEARTH_GROUP_BYTES;
    const size_t block_bytes = (size_t)HEARTH_BLOCK_ROWS * (size_t)dim_padded;
    int32_t flagged = 0;
    for (int32_t block = 0; block < block_count; block++) {
        int32x4_t lo, hi;
        block_dot(packed + (size_t)block * block_bytes, query, groups, &lo, &hi);
        const int32_t row = block * HEARTH_BLOCK_ROWS;
        const uint32_t mask =
            hearth_epilogue_quad_neon(lo, row_scale + row, bias + row, query_scale, threshold, scores + row)
            | hearth_epilogue_quad_neon(hi, row_scale + row + 4, bias + row + 4, query_scale, threshold, scores + row + 4) << 4;
        masks[block] = (uint8_t)mask;
        flagged += mask != 0;
    }
    return flagged;
}
#endif
