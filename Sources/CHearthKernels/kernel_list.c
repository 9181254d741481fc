/// The single kernel list: dispatch, tests and benchmarks all read it. CPU features are
/// detected once (cpuid/xgetbv on x86-64, getauxval(AT_HWCAP) on arm64) and cached.
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "hearth_kernels.h"
#include "kernels_internal.h"

#if defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

static const hearth_kernel kernels[] = {
    {HEARTH_ISA_SCALAR, "scalar", hearth_dot_scalar, hearth_scan_scalar},
#if defined(__x86_64__)
    {HEARTH_ISA_AVX2, "avx2", hearth_dot_avx2, hearth_scan_avx2},
    {HEARTH_ISA_AVXVNNI, "avxvnni", hearth_dot_avxvnni, hearth_scan_avxvnni},
#endif
#if defined(__aarch64__)
    {HEARTH_ISA_NEON, "neon", hearth_dot_neon, hearth_scan_neon},
    {HEARTH_ISA_NEONDOT, "neondot", hearth_dot_neondot, hearth_scan_neondot},
#endif
};

static pthread_once_t detect_once = PTHREAD_ONCE_INIT;
static uint32_t supported_mask; /* bit per hearth_isa */

#if defined(__x86_64__)
#include <cpuid.h>
static uint64_t read_xcr0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}
#endif

static void detect(void) {
    uint32_t mask = 1u << HEARTH_ISA_SCALAR;
#if defined(__x86_64__)
    unsigned eax, ebx, ecx, edx;
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
        const int osxsave = (ecx >> 27) & 1;
        const int avx = (ecx >> 28) & 1;
        /* The OS must save the YMM state (XCR0 bits 1 and 2) before AVX may be used. */
        const int ymm_enabled = osxsave && avx && ((read_xcr0() & 0x6) == 0x6);
        if (ymm_enabled && __get_cpuid_max(0, NULL) >= 7) {
            __cpuid_count(7, 0, eax, ebx, ecx, edx);
            const unsigned max_subleaf = eax;
            const int avx2 = (ebx >> 5) & 1;
            if (avx2) mask |= 1u << HEARTH_ISA_AVX2;
            if (max_subleaf >= 1) {
                __cpuid_count(7, 1, eax, ebx, ecx, edx);
                const int avxvnni = (eax >> 4) & 1;
                if (avx2 && avxvnni) mask |= 1u << HEARTH_ISA_AVXVNNI;
            }
        }
    }
#elif defined(__aarch64__) && defined(__linux__)
    const unsigned long hwcap = getauxval(AT_HWCAP);
    if (hwcap & HWCAP_ASIMD) mask |= 1u << HEARTH_ISA_NEON;
    if ((hwcap & HWCAP_ASIMD) && (hwcap & HWCAP_ASIMDDP)) mask |= 1u << HEARTH_ISA_NEONDOT;
#elif defined(__aarch64__) && defined(__APPLE__)
    /* Every Apple arm64 CPU has Advanced SIMD; dotprod is reported by sysctl. */
    mask |= 1u << HEARTH_ISA_NEON;
    int dotprod = 0;
    size_t size = sizeof dotprod;
    if (sysctlbyname("hw.optional.arm.FEAT_DotProd", &dotprod, &size, NULL, 0) == 0 && dotprod) {
        mask |= 1u << HEARTH_ISA_NEONDOT;
    }
#endif
    supported_mask = mask;
}

int32_t hearth_kernel_count(void) {
    return (int32_t)(sizeof(kernels) / sizeof(kernels[0]));
}

const hearth_kernel *hearth_kernel_at(int32_t index) {
    if (index < 0 || index >= hearth_kernel_count()) return NULL;
    return &kernels[index];
}

int32_t hearth_kernel_is_supported(const hearth_kernel *kernel) {
    pthread_once(&detect_once, detect);
    return kernel != NULL && ((supported_mask >> kernel->isa) & 1u);
}

const hearth_kernel *hearth_kernel_named(const char *name) {
    if (name == NULL) return NULL;
    for (int32_t i = 0; i < hearth_kernel_count(); i++) {
        if (strcmp(kernels[i].name, name) == 0) return &kernels[i];
    }
    return NULL;
}

const hearth_kernel *hearth_kernel_best(void) {
    for (int32_t i = hearth_kernel_count() - 1; i >= 0; i--) {
        if (hearth_kernel_is_supported(&kernels[i])) return &kernels[i];
    }
    return &kernels[0];
}

const hearth_kernel *hearth_kernel_scalar(void) {
    return &kernels[0];
}

const char *hearth_kernel_env_override(void) {
    const char *value = getenv("HEARTH_KERNEL_ISA");
    return (value != NULL && value[0] != '\0') ? value : NULL;
}
