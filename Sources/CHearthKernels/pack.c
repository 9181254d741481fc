/// Packing to and from the blocked layout described in hearth_kernels.h.
#include <string.h>
#include "hearth_kernels.h"

static size_t packed_offset(int32_t dim_padded, int32_t row, int32_t column) {
    const int32_t block = row / HEARTH_BLOCK_ROWS;
    const int32_t r = row % HEARTH_BLOCK_ROWS;
    const int32_t g = column / HEARTH_GROUP_BYTES;
    const int32_t j = column % HEARTH_GROUP_BYTES;
    return (size_t)block * HEARTH_BLOCK_ROWS * (size_t)dim_padded
           + (size_t)g * HEARTH_BLOCK_ROWS * HEARTH_GROUP_BYTES
           + (size_t)r * HEARTH_GROUP_BYTES + (size_t)j;
}

void hearth_pack(const int8_t *row_major, int32_t rows, int32_t dim, int8_t *packed) {
    const int32_t dim_padded = hearth_dim_padded(dim);
    memset(packed, 0, hearth_packed_size(rows, dim));
    for (int32_t row = 0; row < rows; row++) {
        for (int32_t column = 0; column < dim; column++) {
            packed[packed_offset(dim_padded, row, column)] = row_major[(size_t)row * dim + column];
        }
    }
}

void hearth_unpack_row(const int8_t *packed, int32_t dim, int32_t row, int8_t *out) {
    const int32_t dim_padded = hearth_dim_padded(dim);
    for (int32_t column = 0; column < dim; column++) {
        out[column] = packed[packed_offset(dim_padded, row, column)];
    }
}
