/// kernel-check: a stand-alone C driver that checks every Hearth kernel the CPU supports
/// bit-exactly against the scalar oracle and an independent row-major reference. No Swift, so it
/// runs under qemu-user on any architecture the C compiler targets.
///
/// Build (see cross/check-kernels-aarch64.sh):
///   cc -O2 -ffp-contract=off -ISources/CHearthKernels/include -ISources/CHearthKernels
///      cross/kernel_check.c Sources/CHearthKernels/*.c -lpthread -o kernel-check
/// Usage: kernel-check [--expect NAME] [--force NAME] [--quiet]
///   Checks every kernel the CPU supports (scalar included) against the row-major reference.
///   HEARTH_KERNEL_ISA=NAME selects the kernel that is reported as chosen (it must exist and be
///   supported, else exit 2); --expect NAME fails unless the chosen kernel is NAME (after any
///   override); --force NAME also checks NAME when the CPU does not report it (used with an
///   emulated-intrinsic build; on real hardware that lacks it this dies with SIGILL).
/// Exit status: 0 all checks passed, 1 a check failed, 2 usage / selection error; a crash
/// (SIGSEGV from the guard pages, SIGILL from an instruction the CPU lacks) prints the case.
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hearth_kernels.h"

/* ----------------------------------------------------------------------------------------- */
/* Bookkeeping */

static long passed, failed;
static char current_case[256] = "start-up";
static int quiet;

static void set_case(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(current_case, sizeof current_case, fmt, ap);
    va_end(ap);
}

static void pass(void) { passed++; }

static void check(int ok, const char *fmt, ...) {
    if (ok) {
        passed++;
        return;
    }
    failed++;
    if (failed <= 40) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "kernel-check: FAIL [%s]: ", current_case);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    } else if (failed == 41) {
        fprintf(stderr, "kernel-check: (further failures not printed)\n");
    }
}

static void on_signal(int sig) {
    /* Only async-signal-safe calls. */
    const char *name = sig == SIGSEGV ? "SIGSEGV (out-of-bounds access hit a guard page?)"
                       : sig == SIGBUS ? "SIGBUS"
                       : sig == SIGILL ? "SIGILL (instruction not supported by this CPU)"
                                       : "signal";
    const char prefix[] = "kernel-check: CRASH ";
    ssize_t r = write(2, prefix, sizeof prefix - 1);
    r = write(2, name, strlen(name));
    r = write(2, " in case [", 10);
    r = write(2, current_case, strnlen(current_case, sizeof current_case));
    r = write(2, "]\n", 2);
    (void)r;
    _exit(3);
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kernel-check: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* ----------------------------------------------------------------------------------------- */
/* Fixed-seed PRNG (SplitMix64) */

static uint64_t rng_state;

static uint64_t next_u64(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/// Uniform in [-127, 127].
static int8_t next_i8(void) { return (int8_t)((int)(next_u64() % 255u) - 127); }
/// Uniform in [lo, hi).
static float next_float(float lo, float hi) {
    return lo + (hi - lo) * (float)((double)(next_u64() >> 40) / (double)(1ull << 24));
}

/* ----------------------------------------------------------------------------------------- */
/* Guarded buffers: the buffer ends exactly at an inaccessible page, so any read or write past
   its end faults. */

typedef struct guarded {
    unsigned char *map;
    size_t map_len;
    void *ptr;
} guarded;

static void *guarded_alloc(guarded *g, size_t size) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t data = (size + page - 1) / page * page;
    g->map_len = data + page;
    void *m = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) die("mmap failed");
    g->map = m;
    if (mprotect(g->map + data, page, PROT_NONE) != 0) die("mprotect failed");
    g->ptr = g->map + data - size;
    return g->ptr;
}

static void guarded_free(guarded *g) { munmap(g->map, g->map_len); }

/* ----------------------------------------------------------------------------------------- */
/* Kernels under test */

static const hearth_kernel *tested[16];
static int tested_count;
static long kernel_checks[16];

/* ----------------------------------------------------------------------------------------- */
/* Dot-product checks */

static const int32_t sizes[] = {1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 127, 129, 255, 257};
#define SIZE_COUNT ((int)(sizeof sizes / sizeof sizes[0]))

enum fill {
    FILL_RANDOM,      /* uniform [-127, 127] */
    FILL_POS,         /* items +127, query +127: largest positive sums */
    FILL_NEG,         /* items -127, query -127: same magnitude via negative operands */
    FILL_POS_NEG,     /* items +127, query -127: most negative sums */
    FILL_ALTERNATING, /* checkerboard ±127: even rows +127² per term, odd rows -127² */
    FILL_RANDOM_SIGN, /* random ±127 */
    FILL_COUNT
};
static const char *fill_names[FILL_COUNT] = {"random", "all+127", "all-127", "+127x-127", "alternating", "random±127"};

static int8_t item_value(enum fill fill, int32_t row, int32_t column) {
    switch (fill) {
    case FILL_RANDOM: return next_i8();
    case FILL_POS: case FILL_POS_NEG: return 127;
    case FILL_NEG: return -127;
    case FILL_ALTERNATING: return ((row + column) & 1) ? -127 : 127;
    case FILL_RANDOM_SIGN: return (next_u64() & 1) ? 127 : -127;
    default: return 0;
    }
}

static int8_t query_value(enum fill fill, int32_t column) {
    switch (fill) {
    case FILL_RANDOM: return next_i8();
    case FILL_POS: return 127;
    case FILL_NEG: case FILL_POS_NEG: return -127;
    case FILL_ALTERNATING: return (column & 1) ? -127 : 127;
    case FILL_RANDOM_SIGN: return (next_u64() & 1) ? 127 : -127;
    default: return 0;
    }
}

/// Independent reference: row-major, no packing involved.
static int32_t reference_dot(const int8_t *row_major, const int8_t *query, int32_t dim, int32_t row) {
    int64_t acc = 0;
    for (int32_t c = 0; c < dim; c++) acc += (int64_t)row_major[(size_t)row * dim + c] * query[c];
    return (int32_t)acc;
}

#define CANARY ((int32_t)0x5A5A5A5A)

static void check_dot_case(enum fill fill, int32_t rows, int32_t dim) {
    const int32_t dim_padded = hearth_dim_padded(dim);
    const int32_t blocks = hearth_block_count(rows);
    const int32_t outputs = blocks * HEARTH_BLOCK_ROWS;

    int8_t *row_major = malloc((size_t)rows * dim);
    for (int32_t r = 0; r < rows; r++)
        for (int32_t c = 0; c < dim; c++) row_major[(size_t)r * dim + c] = item_value(fill, r, c);

    guarded gq, gp, gs, go;
    int8_t *query = guarded_alloc(&gq, (size_t)dim_padded);
    memset(query, 0, (size_t)dim_padded);
    for (int32_t c = 0; c < dim; c++) query[c] = query_value(fill, c);
    int8_t *packed = guarded_alloc(&gp, hearth_packed_size(rows, dim));
    hearth_pack(row_major, rows, dim, packed);

    /* The oracle itself against the row-major reference; padding rows must be zero. */
    int32_t *oracle = guarded_alloc(&gs, (size_t)outputs * sizeof(int32_t));
    set_case("oracle %s N=%d d=%d", fill_names[fill], rows, dim);
    hearth_dot_scalar(packed, query, dim_padded, blocks, oracle);
    int ok = 1;
    int32_t bad = -1;
    for (int32_t i = 0; i < outputs && ok; i++) {
        const int32_t want = i < rows ? reference_dot(row_major, query, dim, i) : 0;
        if (oracle[i] != want) { ok = 0; bad = i; }
    }
    check(ok, "scalar oracle disagrees with the row-major reference at row %d: %d vs %d", bad,
          bad >= 0 ? oracle[bad] : 0, bad >= 0 ? (bad < rows ? reference_dot(row_major, query, dim, bad) : 0) : 0);

    /* Every kernel: all blocks at once, then from block 1 on (a chunk that does not start at
       the table's first byte, as hearth_score_* calls it). Output has canaries after the end. */
    int32_t *out = guarded_alloc(&go, ((size_t)outputs + HEARTH_BLOCK_ROWS) * sizeof(int32_t));
    for (int k = 0; k < tested_count; k++) {
        const hearth_kernel *kernel = tested[k];
        for (int attempt = 0; attempt < 2; attempt++) {
            const int32_t first = attempt == 0 ? 0 : 1;
            if (first >= blocks) break;
            const int32_t count = blocks - first;
            set_case("dot %s %s N=%d d=%d first_block=%d", kernel->name, fill_names[fill], rows, dim, first);
            for (int32_t i = 0; i < outputs + HEARTH_BLOCK_ROWS; i++) out[i] = CANARY;
            kernel->dot(packed + (size_t)first * HEARTH_BLOCK_ROWS * dim_padded, query, dim_padded, count, out);
            int32_t mismatch = -1;
            for (int32_t i = 0; i < count * HEARTH_BLOCK_ROWS; i++) {
                if (out[i] != oracle[first * HEARTH_BLOCK_ROWS + i]) { mismatch = i; break; }
            }
            int32_t overrun = -1;
            for (int32_t i = count * HEARTH_BLOCK_ROWS; i < outputs + HEARTH_BLOCK_ROWS; i++) {
                if (out[i] != CANARY) { overrun = i; break; }
            }
            if (mismatch >= 0) {
                const int32_t row = first * HEARTH_BLOCK_ROWS + mismatch;
                check(0, "row %d%s: %s gave %d, oracle %d", row, row >= rows ? " (padding row)" : "",
                      kernel->name, out[mismatch], oracle[row]);
            } else {
                pass();
            }
            check(overrun < 0, "%s wrote past its %d outputs (index %d)", kernel->name,
                  count * HEARTH_BLOCK_ROWS, overrun);
            kernel_checks[k] += 2;
        }
    }
    guarded_free(&go);
    guarded_free(&gs);
    guarded_free(&gp);
    guarded_free(&gq);
    free(row_major);
}

/* ----------------------------------------------------------------------------------------- */
/* Scoring and top-K checks */

static int rank_compare(const void *pa, const void *pb) {
    const hearth_scored *a = pa, *b = pb;
    if (a->score > b->score) return -1;
    if (a->score < b->score) return 1;
    return (a->index > b->index) - (a->index < b->index);
}

static int same_float(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

enum data_kind {
    DATA_RANDOM,      /* random rows, scales and biases */
    DATA_TIES,        /* rows, scales and biases drawn from a pool of 3: many exact ties */
    DATA_ALL_EQUAL,   /* every row identical (+127): the ranking is by index only */
    DATA_NEGATIVE,    /* all scores negative (bias -1000): a leaked zero padding row would win */
    DATA_KIND_COUNT
};
static const char *data_names[DATA_KIND_COUNT] = {"random", "ties", "all-equal", "negative"};

enum exclusion { EXCL_NONE_NULL, EXCL_EMPTY_SET, EXCL_RANDOM, EXCL_ALL_BUT_ONE, EXCL_ALL, EXCL_COUNT };
static const char *excl_names[EXCL_COUNT] = {"NULL", "empty", "random", "all-but-one", "all"};

static void check_topk_case(enum data_kind kind, int32_t rows, int32_t dim) {
    const int32_t dim_padded = hearth_dim_padded(dim);
    int8_t *row_major = malloc((size_t)rows * dim);
    guarded gs, gb, gq, gp, ge, gsc;
    float *row_scale = guarded_alloc(&gs, (size_t)rows * sizeof(float));
    float *bias = guarded_alloc(&gb, (size_t)rows * sizeof(float));

    enum { POOL = 3 };
    int8_t pool_rows[POOL][257];
    float pool_scale[POOL], pool_bias[POOL];
    for (int p = 0; p < POOL; p++) {
        for (int32_t c = 0; c < dim; c++) pool_rows[p][c] = next_i8();
        pool_scale[p] = next_float(0.001f, 0.05f);
        pool_bias[p] = next_float(-1.0f, 1.0f);
    }
    for (int32_t r = 0; r < rows; r++) {
        int8_t *row = row_major + (size_t)r * dim;
        switch (kind) {
        case DATA_RANDOM:
        case DATA_NEGATIVE:
            for (int32_t c = 0; c < dim; c++) row[c] = next_i8();
            row_scale[r] = next_float(0.001f, 0.05f);
            bias[r] = kind == DATA_NEGATIVE ? next_float(-1001.0f, -1000.0f) : next_float(-1.0f, 1.0f);
            break;
        case DATA_TIES: {
            const int p = (int)(next_u64() % POOL);
            memcpy(row, pool_rows[p], (size_t)dim);
            row_scale[r] = pool_scale[p];
            bias[r] = pool_bias[p];
            break;
        }
        case DATA_ALL_EQUAL:
            memset(row, 127, (size_t)dim);
            row_scale[r] = 0.01f;
            bias[r] = 0.25f;
            break;
        default: break;
        }
    }
    int8_t *query = guarded_alloc(&gq, (size_t)dim_padded);
    memset(query, 0, (size_t)dim_padded);
    for (int32_t c = 0; c < dim; c++) query[c] = kind == DATA_ALL_EQUAL ? 127 : next_i8();
    const float query_scale = next_float(0.001f, 0.05f);
    int8_t *packed = guarded_alloc(&gp, hearth_packed_size(rows, dim));
    hearth_pack(row_major, rows, dim, packed);
    const hearth_table table = {packed, row_scale, bias, rows, dim_padded};

    /* Expected scores: row-major reference dot + the shared epilogue. */
    float *expected = malloc((size_t)rows * sizeof(float));
    for (int32_t r = 0; r < rows; r++) {
        expected[r] = hearth_score_from_dot(reference_dot(row_major, query, dim, r), row_scale[r], query_scale, bias[r]);
    }

    /* hearth_score_all and hearth_score_rows, bit-exact. */
    float *scores = guarded_alloc(&gsc, (size_t)rows * sizeof(float));
    for (int k = 0; k < tested_count; k++) {
        set_case("score_all %s %s N=%d d=%d", tested[k]->name, data_names[kind], rows, dim);
        memset(scores, 0xFF, (size_t)rows * sizeof(float));
        hearth_score_all(tested[k], &table, query, query_scale, scores);
        int32_t bad = -1;
        for (int32_t r = 0; r < rows && bad < 0; r++) if (!same_float(scores[r], expected[r])) bad = r;
        check(bad < 0, "score of row %d: %.9g, expected %.9g", bad, bad >= 0 ? scores[bad] : 0.0, bad >= 0 ? expected[bad] : 0.0);
        kernel_checks[k]++;
    }
    {
        set_case("score_rows %s N=%d d=%d", data_names[kind], rows, dim);
        int32_t *order = malloc((size_t)rows * sizeof(int32_t));
        for (int32_t r = 0; r < rows; r++) order[r] = rows - 1 - r; /* reversed order */
        hearth_score_rows(&table, query, query_scale, order, rows, scores);
        int32_t bad = -1;
        for (int32_t i = 0; i < rows && bad < 0; i++) if (!same_float(scores[i], expected[order[i]])) bad = i;
        check(bad < 0, "hearth_score_rows entry %d (row %d) differs", bad, bad >= 0 ? order[bad] : -1);
        free(order);
    }

    const int32_t words = (rows + 63) / 64;
    uint64_t *excluded = guarded_alloc(&ge, (size_t)words * sizeof(uint64_t));
    hearth_scored *eligible = malloc((size_t)rows * sizeof(hearth_scored));
    const int32_t ks_raw[] = {0, 1, 2, 3, 8, rows / 2, rows - 1, rows, rows + 1, rows + 9};
    for (int e = 0; e < EXCL_COUNT; e++) {
        memset(excluded, 0, (size_t)words * sizeof(uint64_t));
        const int32_t keep = (int32_t)(next_u64() % (uint64_t)rows);
        for (int32_t r = 0; r < rows; r++) {
            int set = 0;
            if (e == EXCL_RANDOM) set = (next_u64() % 100u) < 30u;
            if (e == EXCL_ALL_BUT_ONE) set = r != keep;
            if (e == EXCL_ALL) set = 1;
            if (set) excluded[r >> 6] |= 1ull << (r & 63);
        }
        const uint64_t *mask = e == EXCL_NONE_NULL ? NULL : excluded;
        /* Expected: a full sort of the eligible rows by (score desc, index asc). */
        int32_t n_eligible = 0;
        for (int32_t r = 0; r < rows; r++) {
            if (mask != NULL && ((mask[r >> 6] >> (r & 63)) & 1u)) continue;
            eligible[n_eligible].index = r;
            eligible[n_eligible].score = expected[r];
            n_eligible++;
        }
        qsort(eligible, (size_t)n_eligible, sizeof(hearth_scored), rank_compare);

        for (size_t ki = 0; ki < sizeof ks_raw / sizeof ks_raw[0]; ki++) {
            const int32_t k = ks_raw[ki];
            int seen = k < 0;
            for (size_t kj = 0; kj < ki; kj++) seen |= ks_raw[kj] == k; /* duplicates for tiny N */
            if (seen) continue;
            const int32_t want = k < n_eligible ? k : n_eligible;
            for (int kk = 0; kk < tested_count; kk++) {
                const hearth_kernel *kernel = tested[kk];
                set_case("topk %s %s N=%d d=%d k=%d excluded=%s", kernel->name, data_names[kind], rows, dim, k,
                         excl_names[e]);
                guarded go;
                /* Exactly k slots (none for k = 0): a write past k faults. */
                hearth_scored *out = guarded_alloc(&go, (size_t)k * sizeof(hearth_scored));
                for (int32_t i = 0; i < k; i++) { out[i].index = -7; out[i].score = -7.0f; }
                const int32_t got = hearth_score_topk(kernel, &table, query, query_scale, mask, k, out);
                if (got != want) {
                    check(0, "returned %d results, expected %d (eligible %d)", got, want, n_eligible);
                } else {
                    int32_t bad = -1;
                    for (int32_t i = 0; i < got && bad < 0; i++) {
                        if (out[i].index < 0 || out[i].index >= rows) bad = i; /* padding row or garbage */
                        else if (out[i].index != eligible[i].index || !same_float(out[i].score, eligible[i].score)) bad = i;
                    }
                    if (bad >= 0) {
                        check(0, "result %d is (row %d, %.9g), full sort says (row %d, %.9g)", bad, out[bad].index,
                              out[bad].score, eligible[bad].index, eligible[bad].score);
                    } else {
                        pass();
                    }
                }
                kernel_checks[kk]++;
                guarded_free(&go);
            }
        }
    }
    free(eligible);
    guarded_free(&ge);
    guarded_free(&gsc);
    free(expected);
    guarded_free(&gp);
    guarded_free(&gq);
    guarded_free(&gb);
    guarded_free(&gs);
    free(row_major);
}

/* ----------------------------------------------------------------------------------------- */

static void check_pack_roundtrip(void) {
    for (int ni = 0; ni < SIZE_COUNT; ni++) {
        for (int di = 0; di < SIZE_COUNT; di += 3) {
            const int32_t rows = sizes[ni], dim = sizes[di];
            set_case("pack round trip N=%d d=%d", rows, dim);
            int8_t *row_major = malloc((size_t)rows * dim);
            for (size_t i = 0; i < (size_t)rows * dim; i++) row_major[i] = next_i8();
            const size_t size = hearth_packed_size(rows, dim);
            int8_t *packed = malloc(size);
            hearth_pack(row_major, rows, dim, packed);
            int8_t *row = malloc((size_t)dim);
            int ok = 1;
            for (int32_t r = 0; r < rows && ok; r++) {
                hearth_unpack_row(packed, dim, r, row);
                ok = memcmp(row, row_major + (size_t)r * dim, (size_t)dim) == 0;
            }
            /* Padding bytes are zero: the packed table has exactly rows*dim nonzero-able bytes. */
            size_t nonzero = 0, nonzero_source = 0;
            for (size_t i = 0; i < size; i++) nonzero += packed[i] != 0;
            for (size_t i = 0; i < (size_t)rows * dim; i++) nonzero_source += row_major[i] != 0;
            check(ok && nonzero == nonzero_source, "pack/unpack round trip or zero padding failed");
            free(row);
            free(packed);
            free(row_major);
        }
    }
}

int main(int argc, char **argv) {
    const char *expect = NULL;
    const char *force = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--expect") == 0 && i + 1 < argc) {
            expect = argv[++i];
        } else if (strcmp(argv[i], "--force") == 0 && i + 1 < argc) {
            force = argv[++i];
        } else if (strcmp(argv[i], "--quiet") == 0) {
            quiet = 1;
        } else {
            die("usage: %s [--expect KERNEL] [--force KERNEL] [--quiet]   (env HEARTH_KERNEL_ISA=KERNEL selects a kernel)",
                argv[0]);
        }
    }
    signal(SIGSEGV, on_signal);
    signal(SIGBUS, on_signal);
    signal(SIGILL, on_signal);
    setvbuf(stdout, NULL, _IOLBF, 0);

    printf("kernel-check: kernels compiled in:");
    for (int32_t i = 0; i < hearth_kernel_count(); i++) {
        const hearth_kernel *kernel = hearth_kernel_at(i);
        printf(" %s(%s)", kernel->name, hearth_kernel_is_supported(kernel) ? "supported" : "not supported");
    }
    printf("\n");
    const hearth_kernel *best = hearth_kernel_best();
    printf("kernel-check: hearth_kernel_best() = %s\n", best->name);
    const hearth_kernel *chosen = best;
    const char *override = hearth_kernel_env_override();
    if (override != NULL) {
        const hearth_kernel *named = hearth_kernel_named(override);
        if (named == NULL) die("HEARTH_KERNEL_ISA=%s names no kernel compiled into this binary", override);
        if (!hearth_kernel_is_supported(named)) die("HEARTH_KERNEL_ISA=%s: this CPU does not support it", override);
        chosen = named;
        printf("kernel-check: HEARTH_KERNEL_ISA=%s overrides the detected kernel\n", override);
    }
    printf("kernel-check: chosen kernel: %s\n", chosen->name);
    if (expect != NULL && strcmp(expect, chosen->name) != 0) {
        fprintf(stderr, "kernel-check: FAIL: expected kernel %s, chosen %s\n", expect, chosen->name);
        printf("kernel-check: %ld passed, 1 failed\n", passed);
        return 1;
    }
    if (expect != NULL) passed++;

    for (int32_t i = 0; i < hearth_kernel_count(); i++) {
        const hearth_kernel *kernel = hearth_kernel_at(i);
        if (hearth_kernel_is_supported(kernel)) {
            tested[tested_count++] = kernel;
        } else if (force != NULL && strcmp(force, kernel->name) == 0) {
            printf("kernel-check: --force %s: checking it although this CPU does not report it\n", kernel->name);
            tested[tested_count++] = kernel;
        } else {
            printf("kernel-check: skipping %s: not supported by this CPU\n", kernel->name);
        }
    }

    if (force != NULL && hearth_kernel_named(force) == NULL) die("--force %s: no such kernel in this binary", force);

    rng_state = 0x4845415254480001ull; /* "HEARTH" + 1: fixed seed, reproducible */
    check_pack_roundtrip();
    for (int fill = 0; fill < FILL_COUNT; fill++)
        for (int ni = 0; ni < SIZE_COUNT; ni++)
            for (int di = 0; di < SIZE_COUNT; di++) check_dot_case((enum fill)fill, sizes[ni], sizes[di]);
    if (!quiet) printf("kernel-check: dot products done (%ld passed, %ld failed so far)\n", passed, failed);

    /* Top-K: every N (plus sizes spanning several 256-row scoring chunks) x a subset of d. */
    const int32_t topk_dims[] = {1, 3, 8, 17, 64, 129};
    const int32_t extra_rows[] = {511, 512, 513, 1000, 2051};
    for (int kind = 0; kind < DATA_KIND_COUNT; kind++) {
        for (int ni = 0; ni < SIZE_COUNT + 5; ni++) {
            const int32_t rows = ni < SIZE_COUNT ? sizes[ni] : extra_rows[ni - SIZE_COUNT];
            for (size_t di = 0; di < sizeof topk_dims / sizeof topk_dims[0]; di++) {
                if (rows > 257 && di % 2 == 1) continue; /* keep emulated runs quick */
                check_topk_case((enum data_kind)kind, rows, topk_dims[di]);
            }
        }
    }

    for (int k = 0; k < tested_count; k++) {
        printf("kernel-check: %-8s %ld checks\n", tested[k]->name, kernel_checks[k]);
    }
    printf("kernel-check: %ld passed, %ld failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
