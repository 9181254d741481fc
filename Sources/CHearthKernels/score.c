/// Scoring and top-K shared by every kernel: the ISA kernels only compute int32 dot products;
/// the float epilogue and the selection below are the same code for all of them, so results are
/// bit-exact whenever the dot products are.
#include <string.h>
#include "hearth_kernels.h"

/// Rows scored per chunk: the int32 and float scratch stay in L1.
#define CHUNK_BLOCKS 32
#define CHUNK_ROWS (CHUNK_BLOCKS * HEARTH_BLOCK_ROWS)

static size_t block_bytes(int32_t dim_padded) {
    return (size_t)HEARTH_BLOCK_ROWS * (size_t)dim_padded;
}

/* The epilogue is built for the baseline and, on x86-64, also for AVX2 (picked once by the
   loader through an ifunc). Both builds evaluate the same IEEE operations in the same order
   (no contraction: -ffp-contract=off), so the scores are identical; AVX2 only does 8 at once. */
#if defined(__x86_64__) && defined(__linux__) && (defined(__clang__) || defined(__GNUC__))
#define HEARTH_EPILOGUE_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define HEARTH_EPILOGUE_CLONES
#endif

/// Writes the scores of `count` rows from their dot products and returns the largest.
HEARTH_EPILOGUE_CLONES
static float epilogue(const hearth_table *table, int32_t first_row, int32_t count, const int32_t *acc,
                      float query_scale, float *scores) {
    const float *row_scale = table->row_scale + first_row;
    const float *bias = table->bias + first_row;
    for (int32_t i = 0; i < count; i++) {
        scores[i] = hearth_score_from_dot(acc[i], row_scale[i], query_scale, bias[i]);
    }
    /* Eight running maxima, one per lane, so the loop vectorises without reassociating;
       the maximum of finite floats does not depend on the order anyway. */
    float lane_max[8];
    for (int32_t j = 0; j < 8; j++) lane_max[j] = scores[0];
    int32_t i = 0;
    for (; i + 8 <= count; i += 8) {
        for (int32_t j = 0; j < 8; j++) lane_max[j] = scores[i + j] > lane_max[j] ? scores[i + j] : lane_max[j];
    }
    for (; i < count; i++) lane_max[0] = scores[i] > lane_max[0] ? scores[i] : lane_max[0];
    float best = lane_max[0];
    for (int32_t j = 1; j < 8; j++) best = lane_max[j] > best ? lane_max[j] : best;
    return best;
}

void hearth_score_all(const hearth_kernel *kernel, const hearth_table *table, const int8_t *query,
                      float query_scale, float *scores) {
    int32_t acc[CHUNK_ROWS];
    const int32_t blocks = hearth_block_count(table->rows);
    for (int32_t block = 0; block < blocks; block += CHUNK_BLOCKS) {
        const int32_t count = blocks - block < CHUNK_BLOCKS ? blocks - block : CHUNK_BLOCKS;
        kernel->dot(table->packed + (size_t)block * block_bytes(table->dim_padded), query,
                    table->dim_padded, count, acc);
        const int32_t first_row = block * HEARTH_BLOCK_ROWS;
        int32_t rows = count * HEARTH_BLOCK_ROWS;
        if (first_row + rows > table->rows) rows = table->rows - first_row;
        (void)epilogue(table, first_row, rows, acc, query_scale, scores + first_row);
    }
}

/// `a` ranks before `b`: higher score, then lower index.
static int ranks_before(hearth_scored a, hearth_scored b) {
    return a.score > b.score || (a.score == b.score && a.index < b.index);
}

/// Min-heap on rank order: the root is the worst of the current top-K.
static void sift_down(hearth_scored *heap, int32_t size, int32_t i) {
    for (;;) {
        int32_t worst = i;
        const int32_t left = 2 * i + 1, right = 2 * i + 2;
        if (left < size && ranks_before(heap[worst], heap[left])) worst = left;
        if (right < size && ranks_before(heap[worst], heap[right])) worst = right;
        if (worst == i) return;
        const hearth_scored t = heap[i];
        heap[i] = heap[worst];
        heap[worst] = t;
        i = worst;
    }
}

static void sift_up(hearth_scored *heap, int32_t i) {
    while (i > 0) {
        const int32_t parent = (i - 1) / 2;
        if (!ranks_before(heap[parent], heap[i])) return;
        const hearth_scored t = heap[i];
        heap[i] = heap[parent];
        heap[parent] = t;
        i = parent;
    }
}

static int is_excluded(const uint64_t *excluded, int32_t row) {
    return excluded != NULL && ((excluded[row >> 6] >> (row & 63)) & 1u);
}

int32_t hearth_score_topk(const hearth_kernel *kernel, const hearth_table *table,
                          const int8_t *query, float query_scale, const uint64_t *excluded,
                          int32_t k, hearth_scored *out) {
    if (k <= 0 || table->rows <= 0) return 0;
    int32_t acc[CHUNK_ROWS];
    float scores[CHUNK_ROWS];
    int32_t size = 0;
    const int32_t blocks = hearth_block_count(table->rows);
    for (int32_t block = 0; block < blocks; block += CHUNK_BLOCKS) {
        const int32_t count = blocks - block < CHUNK_BLOCKS ? blocks - block : CHUNK_BLOCKS;
        const int32_t first_row = block * HEARTH_BLOCK_ROWS;
        kernel->dot(table->packed + (size_t)block * block_bytes(table->dim_padded), query,
                    table->dim_padded, count, acc);
        int32_t rows = count * HEARTH_BLOCK_ROWS;
        if (first_row + rows > table->rows) rows = table->rows - first_row;
        const float chunk_max = epilogue(table, first_row, rows, acc, query_scale, scores);
        /* Once the heap is full almost every chunk is below its worst entry: skip it whole. */
        if (size == k && chunk_max < out[0].score) continue;
        for (int32_t i = 0; i < rows; i++) {
            const int32_t row = first_row + i;
            if (size == k && scores[i] < out[0].score) continue;  // cheap reject, the common case
            if (is_excluded(excluded, row)) continue;
            const hearth_scored candidate = {row, scores[i]};
            if (size < k) {
                out[size] = candidate;
                sift_up(out, size);
                size++;
            } else if (ranks_before(candidate, out[0])) {
                out[0] = candidate;
                sift_down(out, size, 0);
            }
        }
    }
    // Heap sort the survivors into rank order, best first.
    for (int32_t end = size - 1; end > 0; end--) {
        const hearth_scored t = out[0];
        out[0] = out[end];
        out[end] = t;
        sift_down(out, end, 0);
    }
    return size;
}

void hearth_score_rows(const hearth_table *table, const int8_t *query, float query_scale,
                       const int32_t *rows, int32_t count, float *scores) {
    const int32_t groups = table->dim_padded / HEARTH_GROUP_BYTES;
    for (int32_t i = 0; i < count; i++) {
        const int32_t row = rows[i];
        const int8_t *base = table->packed + (size_t)(row / HEARTH_BLOCK_ROWS) * block_bytes(table->dim_padded)
                             + (size_t)(row % HEARTH_BLOCK_ROWS) * HEARTH_GROUP_BYTES;
        int32_t acc = 0;
        for (int32_t g = 0; g < groups; g++) {
            const int8_t *item = base + (size_t)g * HEARTH_BLOCK_ROWS * HEARTH_GROUP_BYTES;
            for (int32_t j = 0; j < HEARTH_GROUP_BYTES; j++) {
                acc += (int32_t)item[j] * (int32_t)query[g * HEARTH_GROUP_BYTES + j];
            }
        }
        scores[i] = hearth_score_from_dot(acc, table->row_scale[row], query_scale, table->bias[row]);
    }
}
