/// Declarations of the per-ISA kernels; each lives in its own file with per-function
/// `__attribute__((target(...)))`, so no file is built for a CPU that lacks the feature.
#ifndef HEARTH_KERNELS_INTERNAL_H
#define HEARTH_KERNELS_INTERNAL_H
#include "hearth_kernels.h"

#if defined(__x86_64__)
void hearth_dot_avx2(const int8_t *packed, const int8_t *query, int32_t dim_padded,
                     int32_t block_count, int32_t *out);
void hearth_dot_avxvnni(const int8_t *packed, const int8_t *query, int32_t dim_padded,
                        int32_t block_count, int32_t *out);
#endif
#if defined(__aarch64__)
void hearth_dot_neon(const int8_t *packed, const int8_t *query, int32_t dim_padded,
                     int32_t block_count, int32_t *out);
void hearth_dot_neondot(const int8_t *packed, const int8_t *query, int32_t dim_padded,
                        int32_t block_count, int32_t *out);
#endif
#endif
