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
