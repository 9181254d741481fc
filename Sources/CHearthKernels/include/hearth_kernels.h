/// Hearth int8 scoring kernels.
///
/// Scoring is `score[i] = (float)dot(item[i], query) * row_scale[i] * query_scale + bias[i]`
/// with int8 items and query in [-127, 127] and int32 accumulation. The item table is stored in
/// the *packed* layout below, which the model file stores as is, so loading is a read.
///
/// Packed layout: rows are grouped in blocks of `HEARTH_BLOCK_ROWS` (8) rows and the dimension
/// is padded to a multiple of `HEARTH_GROUP_BYTES` (4). A block is `dim_padded / 4` groups;
/// group `g` of a block holds, for each of its 8 rows `r`, the 4 bytes `row[r][4g ..< 4g+4]`
/// (32 bytes). Padding rows and padding dimensions are zero. One group is exactly one AVX2
/// register or two NEON registers, and a 4-byte dot per lane is what `vpdpbusd` and `sdot` do,
/// so every kernel accumulates 8 rows at once with no horizontal reduction.
///
/// Kernels: one scalar oracle written for clarity (`scalar.c`), one file per ISA with
/// per-function `__attribute__((target(...)))`, and one kernel list (`kernel_list.c`) that
/// feeds dispatch, tests and benchmarks.
#ifndef HEARTH_KERNELS_H
#define HEARTH_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Nullability for Swift's importer (clang only; GCC ignores it).
/// Only the functions that can never return NULL are annotated; the rest stay unspecified.
#if defined(__clang__)
#define HEARTH_NONNULL _Nonnull
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wnullability-completeness"
#else
#define HEARTH_NONNULL
#endif

#define HEARTH_BLOCK_ROWS 8
#define HEARTH_GROUP_BYTES 4

/// Instruction-set families a kernel can be written for.
typedef enum hearth_isa {
    HEARTH_ISA_SCALAR = 0,
    HEARTH_ISA_NEON = 1,
    HEARTH_ISA_NEONDOT = 2,
    HEARTH_ISA_AVX2 = 3,
    HEARTH_ISA_AVXVNNI = 4,
} hearth_isa;

/// Computes int32 dot products of `block_count` packed blocks with a padded query.
///
/// `packed` points at the first block; `query` has `dim_padded` int8 values (padding zero);
/// `out` receives `block_count * HEARTH_BLOCK_ROWS` int32 values, row order.
/// Inputs must lie in [-127, 127].
typedef void (*hearth_dot_fn)(const int8_t *packed, const int8_t *query, int32_t dim_padded,
                              int32_t block_count, int32_t *out);

/// Scores `block_count` packed blocks whose rows are all real (no padding rows) and flags the
/// rows that reach `threshold`: the dot product and the float epilogue fused in one pass.
///
/// `row_scale` and `bias` point at the first block's first row; `scores` receives
/// `block_count * HEARTH_BLOCK_ROWS` values computed exactly as `hearth_score_from_dot`; `masks`
/// receives one byte per block whose bit `r` is set when row `r` scored `>= threshold`. Returns
/// the number of blocks with a non-zero mask, so a top-K scan skips a chunk in one test.
/// Fusing keeps the memory stream going: no int32 round trip and no second pass per chunk.
typedef int32_t (*hearth_scan_fn)(const int8_t *packed, const int8_t *query, int32_t dim_padded,
                                  int32_t block_count, const float *row_scale, const float *bias,
                                  float query_scale, float threshold, float *scores, uint8_t *masks);

/// One entry of the kernel list.
typedef struct hearth_kernel {
    hearth_isa isa;
    /// Stable lower-case name, also the value of `HEARTH_KERNEL_ISA` that selects it.
    const char *name;
    hearth_dot_fn dot;
    hearth_scan_fn scan;
} hearth_kernel;

/// Number of kernels compiled into this binary (for every architecture, only its own).
int32_t hearth_kernel_count(void);
/// The kernel at `index` in [0, hearth_kernel_count()), in order of preference (worst first).
const hearth_kernel *hearth_kernel_at(int32_t index);
/// Whether the CPU running this process can execute `kernel` (detected once, then cached).
int32_t hearth_kernel_is_supported(const hearth_kernel *kernel);
/// The kernel with this name, or NULL when it is not compiled in.
const hearth_kernel *hearth_kernel_named(const char *name);
/// The best kernel this CPU supports (detection runs once).
const hearth_kernel *HEARTH_NONNULL hearth_kernel_best(void);
/// The scalar reference kernel (always present and supported).
const hearth_kernel *HEARTH_NONNULL hearth_kernel_scalar(void);
/// The value of the `HEARTH_KERNEL_ISA` environment variable, or NULL.
const char *hearth_kernel_env_override(void);

/// A view of a packed, quantised item table.
typedef struct hearth_table {
    const int8_t *packed;    ///< `block_count * (dim_padded / 4) * 32` bytes
    const float *row_scale;  ///< per row, `rows` values
    const float *bias;       ///< per row, `rows` values
    int32_t rows;            ///< real rows (N); the last block may hold padding rows
    int32_t dim_padded;      ///< multiple of HEARTH_GROUP_BYTES
} hearth_table;

/// Number of blocks that hold `rows` rows.
static inline int32_t hearth_block_count(int32_t rows) {
    return (rows + HEARTH_BLOCK_ROWS - 1) / HEARTH_BLOCK_ROWS;
}
/// `dim` rounded up to the group size.
static inline int32_t hearth_dim_padded(int32_t dim) {
    return (dim + HEARTH_GROUP_BYTES - 1) / HEARTH_GROUP_BYTES * HEARTH_GROUP_BYTES;
}
/// Bytes of a packed table.
static inline size_t hearth_packed_size(int32_t rows, int32_t dim) {
    return (size_t)hearth_block_count(rows) * HEARTH_BLOCK_ROWS * (size_t)hearth_dim_padded(dim);
}

/// Packs a row-major `[rows x dim]` int8 matrix into the packed layout (`hearth_packed_size` bytes).
void hearth_pack(const int8_t *row_major, int32_t rows, int32_t dim, int8_t *packed);
/// Reads row `row` of a packed table back into `dim` int8 values.
void hearth_unpack_row(const int8_t *packed, int32_t dim, int32_t row, int8_t *out);

/// One ranked result.
typedef struct hearth_scored {
    int32_t index;
    float score;
} hearth_scored;

/// The float epilogue shared by every kernel: `(float)acc * row_scale * query_scale + bias`,
/// evaluated in exactly that order without contraction.
static inline float hearth_score_from_dot(int32_t acc, float row_scale, float query_scale, float bias) {
    float t = (float)acc * row_scale;
    t = t * query_scale;
    return t + bias;
}

/// Scores every row of `table` with `kernel` and returns the best `k` (fewer when fewer rows are
/// eligible) in `out`, best first. Rows whose bit is set in `excluded` (`(rows + 63) / 64`
/// words, may be NULL) are skipped. Ties go to the lower index. Returns the number written.
int32_t hearth_score_topk(const hearth_kernel *kernel, const hearth_table *table,
                          const int8_t *query, float query_scale, const uint64_t *excluded,
                          int32_t k, hearth_scored *out);

/// Scores every row of `table` with `kernel` into `scores` (`rows` floats).
void hearth_score_all(const hearth_kernel *kernel, const hearth_table *table, const int8_t *query,
                      float query_scale, float *scores);

/// Scores the listed rows (any order, each in [0, rows)) with the scalar reference into `scores`.
void hearth_score_rows(const hearth_table *table, const int8_t *query, float query_scale,
                       const int32_t *rows, int32_t count, float *scores);

/// Reference dot-product kernel: the oracle every other kernel is tested against.
void hearth_dot_scalar(const int8_t *packed, const int8_t *query, int32_t dim_padded,
                       int32_t block_count, int32_t *out);
/// Reference fused scan (`hearth_scan_fn`): the oracle dot, then `hearth_score_from_dot` per row.
int32_t hearth_scan_scalar(const int8_t *packed, const int8_t *query, int32_t dim_padded,
                           int32_t block_count, const float *row_scale, const float *bias,
                           float query_scale, float threshold, float *scores, uint8_t *masks);

#ifdef __cplusplus
}
#endif
#if defined(__clang__)
#pragma clang diagnostic pop
#endif
#endif
