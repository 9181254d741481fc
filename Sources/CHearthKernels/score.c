/// Scoring and top-K shared by every kernel. Each ISA kernel scans whole blocks (dot products and
/// the float epilogue fused, with the same IEEE operations in the same order as
/// `hearth_score_from_dot`); the selection below is the same code for all of them, so results
/// are bit-exact whenever the dot products are.
#include <math.h>
#include <string.h>
#include "hearth_kernels.h"

/// Blocks scanned per chunk: the scores and masks scratch stay in L1, and the top-K heap is
/// consulted once per chunk (usually not at all, once it is full).
#define CHUNK_BLOCKS 64
#define CHUNK_ROWS (CHUNK_BLOCKS * HEARTH_BLOCK_ROWS)

static size_t block_bytes(int32_t dim_padded) {
    return (size_t)HEARTH_BLOCK_ROWS * (size_t)dim_padded;
}

/// Scores the last block when it holds padding rows (the ISA scan needs every row real, because
/// `row_scale` and `bias` have only `rows` entries): the dot kernel, then the epilogue per row.
/// Returns the block's mask of real rows `>= threshold`; `scores` gets its real rows.
static uint8_t score_partial_block(const hearth_kernel *kernel, const hearth_table *table, int32_t block,
                                   const int8_t *query, float query_scale, float threshold, float *scores) {
    int32_t acc[HEARTH_BLOCK_ROWS];
    kernel->dot(table->packed + (size_t)block * block_bytes(table->dim_padded), query, table->dim_padded, 1, acc);
    const int32_t first_row = block * HEARTH_BLOCK_ROWS;
    uint8_t mask = 0;
    for (int32_t r = 0; r < HEARTH_BLOCK_ROWS && first_row + r < table->rows; r++) {
        const int32_t row = first_row + r;
        scores[r] = hearth_score_from_dot(acc[r], table->row_scale[row], query_scale, table->bias[row]);
        if (scores[r] >= threshold) mask |= (uint8_t)(1u << r);
    }
    return mask;
}

void hearth_score_all(const hearth_kernel *kernel, const hearth_table *table, const int8_t *query,
                      float query_scale, float *scores) {
    uint8_t masks[CHUNK_BLOCKS];
    const int32_t full_blocks = table->rows / HEARTH_BLOCK_ROWS;
    for (int32_t block = 0; block < full_blocks; block += CHUNK_BLOCKS) {
        const int32_t count = full_blocks - block < CHUNK_BLOCKS ? full_blocks - block : CHUNK_BLOCKS;
        const int32_t first_row = block * HEARTH_BLOCK_ROWS;
        (void)kernel->scan(table->packed + (size_t)block * block_bytes(table->dim_padded), query, table->dim_padded,
                           count, table->row_scale + first_row, table->bias + first_row, query_scale, 0.0f,
                           scores + first_row, masks);
    }
    if (full_blocks * HEARTH_BLOCK_ROWS < table->rows) {
        (void)score_partial_block(kernel, table, full_blocks, query, query_scale, 0.0f,
                                  scores + full_blocks * HEARTH_BLOCK_ROWS);
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

/// Offers the rows of one block whose bit is set in `mask` to the top-K heap `out` of `*size`
/// entries (capacity `k`); excluded rows are skipped.
static void offer_block(int32_t first_row, uint8_t mask, const float *scores, const uint64_t *excluded,
                        int32_t k, hearth_scored *out, int32_t *size) {
    for (int32_t r = 0; r < HEARTH_BLOCK_ROWS; r++) {
        if (!((mask >> r) & 1u)) continue;
        const int32_t row = first_row + r;
        if (is_excluded(excluded, row)) continue;
        const hearth_scored candidate = {row, scores[r]};
        if (*size < k) {
            out[*size] = candidate;
            sift_up(out, *size);
            (*size)++;
        } else if (ranks_before(candidate, out[0])) {
            out[0] = candidate;
            sift_down(out, *size, 0);
        }
    }
}

int32_t hearth_score_topk(const hearth_kernel *kernel, const hearth_table *table,
                          const int8_t *query, float query_scale, const uint64_t *excluded,
                          int32_t k, hearth_scored *out) {
    if (k <= 0 || table->rows <= 0) return 0;
    float scores[CHUNK_ROWS];
    uint8_t masks[CHUNK_BLOCKS];
    int32_t size = 0;
    /* Rows below the heap's worst entry can never enter it. Until the heap is full every row is
       a candidate; a row equal to the worst may still win on its lower index, hence `>=`. */
    float threshold = -INFINITY;
    const int32_t full_blocks = table->rows / HEARTH_BLOCK_ROWS;
    for (int32_t block = 0; block < full_blocks; block += CHUNK_BLOCKS) {
        const int32_t count = full_blocks - block < CHUNK_BLOCKS ? full_blocks - block : CHUNK_BLOCKS;
        const int32_t first_row = block * HEARTH_BLOCK_ROWS;
        const int32_t flagged = kernel->scan(table->packed + (size_t)block * block_bytes(table->dim_padded), query,
                                             table->dim_padded, count, table->row_scale + first_row,
                                             table->bias + first_row, query_scale, threshold, scores, masks);
        if (flagged == 0) continue;  // the common case once the heap is full
        for (int32_t b = 0; b < count; b++) {
            if (masks[b] == 0) continue;
            offer_block(first_row + b * HEARTH_BLOCK_ROWS, masks[b], scores + b * HEARTH_BLOCK_ROWS, excluded, k, out,
                        &size);
        }
        if (size == k) threshold = out[0].score;
    }
    if (full_blocks * HEARTH_BLOCK_ROWS < table->rows) {
        const uint8_t mask = score_partial_block(kernel, table, full_blocks, query, query_scale, threshold, scores);
        offer_block(full_blocks * HEARTH_BLOCK_ROWS, mask, scores, excluded, k, out, &size);
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
