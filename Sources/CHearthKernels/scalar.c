/// The scalar reference kernel: the oracle. Written for clarity, never optimised.
#include "hearth_kernels.h"

void hearth_dot_scalar(const int8_t *packed, const int8_t *query, int32_t dim_padded,
                       int32_t block_count, int32_t *out) {
    const int32_t groups = dim_padded / HEARTH_GROUP_BYTES;
    for (int32_t block = 0; block < block_count; block++) {
        const int8_t *base = packed + (size_t)block * HEARTH_BLOCK_ROWS * (size_t)dim_padded;
        for (int32_t r = 0; r < HEARTH_BLOCK_ROWS; r++) {
            int32_t acc = 0;
            for (int32_t g = 0; g < groups; g++) {
                const int8_t *item = base + (size_t)g * HEARTH_BLOCK_ROWS * HEARTH_GROUP_BYTES
                                     + (size_t)r * HEARTH_GROUP_BYTES;
                for (int32_t j = 0; j < HEARTH_GROUP_BYTES; j++) {
                    acc += (int32_t)item[j] * (int32_t)query[g * HEARTH_GROUP_BYTES + j];
                }
            }
            out[block * HEARTH_BLOCK_ROWS + r] = acc;
        }
    }
}

int32_t hearth_scan_scalar(const int8_t *packed, const int8_t *query, int32_t dim_padded,
                           int32_t block_count, const float *row_scale, const float *bias,
                           float query_scale, float threshold, float *scores, uint8_t *masks) {
    int32_t flagged = 0;
    for (int32_t block = 0; block < block_count; block++) {
        int32_t acc[HEARTH_BLOCK_ROWS];
        hearth_dot_scalar(packed + (size_t)block * HEARTH_BLOCK_ROWS * (size_t)dim_padded, query, dim_padded, 1, acc);
        uint8_t mask = 0;
        for (int32_t r = 0; r < HEARTH_BLOCK_ROWS; r++) {
            const int32_t row = block * HEARTH_BLOCK_ROWS + r;
            scores[row] = hearth_score_from_dot(acc[r], row_scale[row], query_scale, bias[row]);
            if (scores[row] >= threshold) mask |= (uint8_t)(1u << r);
        }
        masks[block] = mask;
        flagged += mask != 0;
    }
    return flagged;
}
