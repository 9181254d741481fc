/// Measures how far glibc's libm results differ between two builds of this program (x86-64
/// native and aarch64 under qemu), for the functions the core calls through CHearthMath: the
/// evidence behind the float tolerances of the cross smoke comparison (docs/cross.md).
///
///   cc -O2 -ffp-contract=off cross/libm_ulps.c -lm -o /tmp/libm-x86
///   aarch64-linux-gnu-gcc -O2 -ffp-contract=off cross/libm_ulps.c -lm -o /tmp/libm-arm
///   /tmp/libm-x86 write /tmp/libm-x86.bin
///   qemu-aarch64 -L /usr/aarch64-linux-gnu /tmp/libm-arm compare /tmp/libm-x86.bin
///
/// Both builds evaluate every function at the same seeded arguments (ranges as the core uses
/// them); `compare` reports per function how many results differ and by how many ulps at most.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SAMPLES = 200000, DOUBLES = 6, FLOATS = 2 };
static const char *const names[DOUBLES + FLOATS] = {"exp", "log", "log1p", "expm1", "erfc", "lgamma", "expf", "logf"};

static uint64_t state = 88172645463325252ull;
static uint64_t next(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}
static double uniform(double low, double high) { return low + (high - low) * ((double)(next() >> 11) * 0x1p-53); }

/// One sample: the bit patterns of every function at this sample's arguments.
struct sample {
    uint64_t d[DOUBLES];
    uint32_t f[FLOATS];
};

static struct sample evaluate(void) {
    double a = uniform(-30, 30), b = uniform(1e-9, 100), c = uniform(-0.999, 50), d = uniform(-30, 5);
    double e = uniform(-6, 30), f = uniform(0.5, 200);
    float g = (float)uniform(-30, 10), h = (float)uniform(1e-6, 10);
    double r[DOUBLES] = {exp(a), log(b), log1p(c), expm1(d), erfc(e), lgamma(f)};
    float q[FLOATS] = {expf(g), logf(h)};
    struct sample s;
    memcpy(s.d, r, sizeof s.d);
    memcpy(s.f, q, sizeof s.f);
    return s;
}

/// Distance in ulps between two finite values of the same sign (the bit patterns' difference).
static uint64_t ulps(uint64_t a, uint64_t b) { return a > b ? a - b : b - a; }

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "write") != 0 && strcmp(argv[1], "compare") != 0)) {
        fprintf(stderr, "usage: %s write FILE | compare FILE\n", argv[0]);
        return 2;
    }
    int writing = strcmp(argv[1], "write") == 0;
    FILE *file = fopen(argv[2], writing ? "wb" : "rb");
    if (file == NULL) {
        perror(argv[2]);
        return 1;
    }
    uint64_t differing[DOUBLES + FLOATS] = {0}, worst[DOUBLES + FLOATS] = {0};
    for (int i = 0; i < SAMPLES; i++) {
        struct sample mine = evaluate(), theirs;
        if (writing) {
            if (fwrite(&mine, sizeof mine, 1, file) != 1) return perror("write"), 1;
            continue;
        }
        if (fread(&theirs, sizeof theirs, 1, file) != 1) return fprintf(stderr, "%s: short file\n", argv[2]), 1;
        for (int k = 0; k < DOUBLES + FLOATS; k++) {
            uint64_t x = k < DOUBLES ? mine.d[k] : mine.f[k - DOUBLES];
            uint64_t y = k < DOUBLES ? theirs.d[k] : theirs.f[k - DOUBLES];
            if (x == y) continue;
            differing[k]++;
            if (ulps(x, y) > worst[k]) worst[k] = ulps(x, y);
        }
    }
    fclose(file);
    if (writing) return 0;
    for (int k = 0; k < DOUBLES + FLOATS; k++) {
        printf("%-7s %6llu of %d differ (%.2f%%), at most %llu ulp\n", names[k], (unsigned long long)differing[k],
               SAMPLES, 100.0 * (double)differing[k] / SAMPLES, (unsigned long long)worst[k]);
    }
    return 0;
}
