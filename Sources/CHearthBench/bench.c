#define _POSIX_C_SOURCE 200809L
#include <string.h>
#include <time.h>
#include "hearth_bench.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <cpuid.h>

__attribute__((target("avx2")))
static uint64_t stream_avx2(const uint8_t *p, size_t bytes) {
    __m256i a = _mm256_setzero_si256(), b = _mm256_setzero_si256();
    __m256i c = _mm256_setzero_si256(), d = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 128 <= bytes; i += 128) {
        a = _mm256_xor_si256(a, _mm256_loadu_si256((const __m256i *)(p + i)));
        b = _mm256_xor_si256(b, _mm256_loadu_si256((const __m256i *)(p + i + 32)));
        c = _mm256_xor_si256(c, _mm256_loadu_si256((const __m256i *)(p + i + 64)));
        d = _mm256_xor_si256(d, _mm256_loadu_si256((const __m256i *)(p + i + 96)));
    }
    a = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, a);
    uint64_t acc = lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3];
    for (; i < bytes; i++) acc ^= p[i];
    return acc;
}

static int has_avx2(void) {
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    return (ebx >> 5) & 1;
}
#endif

static uint64_t stream_generic(const uint8_t *p, size_t bytes) {
    uint64_t a = 0, b = 0, c = 0, d = 0;
    size_t i = 0;
    for (; i + 32 <= bytes; i += 32) {
        uint64_t w[4];
        memcpy(w, p + i, sizeof w);
        a ^= w[0]; b ^= w[1]; c ^= w[2]; d ^= w[3];
    }
    uint64_t acc = a ^ b ^ c ^ d;
    for (; i < bytes; i++) acc ^= p[i];
    return acc;
}

uint64_t hearth_bench_stream(const void *data, size_t bytes) {
#if defined(__x86_64__)
    static int avx2 = -1;
    if (avx2 < 0) avx2 = has_avx2();
    if (avx2) return stream_avx2((const uint8_t *)data, bytes);
#endif
    return stream_generic((const uint8_t *)data, bytes);
}

int hearth_bench_evict(const void *data, size_t bytes) {
    const uint8_t *p = (const uint8_t *)data;
#if defined(__x86_64__)
    for (size_t i = 0; i < bytes; i += 64) _mm_clflush(p + i);
    if (bytes > 0) _mm_clflush(p + bytes - 1);
    _mm_mfence();
    return 0;
#elif defined(__aarch64__)
    for (size_t i = 0; i < bytes; i += 64) __asm__ volatile("dc civac, %0" : : "r"(p + i) : "memory");
    __asm__ volatile("dsb ish" : : : "memory");
    return 0;
#else
    (void)p; (void)bytes;
    return -1;
#endif
}

uint64_t hearth_bench_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
