#include "core/cpu.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static lmc_cpu_info g_info;
static lmc_cpu_path g_max, g_active;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static unsigned long long xgetbv0(void) {
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

/* Linux hands out AMX tile state only to processes that ask for it. */
static bool request_amx(void) {
#ifdef SYS_arch_prctl
    enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
    return false;
#endif
}

static lmc_cpu_path parse_path(const char *s, lmc_cpu_path fallback) {
    if (!s) return fallback;
    if (!strcmp(s, "scalar")) return LMC_PATH_SCALAR;
    if (!strcmp(s, "avx2")) return LMC_PATH_AVX2;
    if (!strcmp(s, "avx512")) return LMC_PATH_AVX512;
    if (!strcmp(s, "amx")) return LMC_PATH_AMX;
    return fallback;
}

static void detect(void) {
    unsigned a, b, c, d;
    bool osxsave = false, os_avx = false, os_avx512 = false, os_amx = false;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        g_info.fma = c & (1u << 12);
        g_info.f16c = c & (1u << 29);
        osxsave = c & (1u << 27);
    }
    if (osxsave) {
        unsigned long long xcr0 = xgetbv0();
        os_avx = (xcr0 & 0x6) == 0x6;
        os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;
        os_amx = (xcr0 & 0x60000) == 0x60000;
    }
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        g_info.avx2 = os_avx && (b & (1u << 5));
        g_info.avx512f = os_avx512 && (b & (1u << 16));
        g_info.avx512bw = os_avx512 && (b & (1u << 30));
        g_info.avx512vl = os_avx512 && (b & (1u << 31));
        g_info.avx512_vnni = os_avx512 && (c & (1u << 11));
        g_info.avx512_fp16 = os_avx512 && (d & (1u << 23));
        g_info.amx_bf16 = os_amx && (d & (1u << 22));
        g_info.amx_tile = os_amx && (d & (1u << 24));
        g_info.amx_int8 = os_amx && (d & (1u << 25));
    }
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) g_info.avx512_bf16 = os_avx512 && (a & (1u << 5));
    g_info.fma = g_info.fma && os_avx;
    g_info.f16c = g_info.f16c && os_avx;

    g_max = LMC_PATH_SCALAR;
    if (g_info.avx2 && g_info.fma && g_info.f16c) g_max = LMC_PATH_AVX2;
    if (g_max == LMC_PATH_AVX2 && g_info.avx512f && g_info.avx512bw && g_info.avx512vl && g_info.avx512_bf16 &&
        g_info.avx512_vnni)
        g_max = LMC_PATH_AVX512;
    if (g_max == LMC_PATH_AVX512 && g_info.amx_tile && g_info.amx_bf16 && g_info.amx_int8 && request_amx())
        g_max = LMC_PATH_AMX;
    g_active = parse_path(getenv("LMC_CPU_PATH"), g_max);
    if (g_active > g_max) g_active = g_max;
    g_info.path = lmc_cpu_path_name(g_active);
}

const char *lmc_cpu_path_name(lmc_cpu_path p) {
    static const char *names[] = {"scalar", "avx2", "avx512", "amx"};
    return (unsigned)p <= LMC_PATH_AMX ? names[p] : "invalid";
}

lmc_cpu_path lmc_cpu_path_active(void) {
    pthread_once(&g_once, detect);
    return g_active;
}

lmc_cpu_path lmc_cpu_path_max(void) {
    pthread_once(&g_once, detect);
    return g_max;
}

lmc_cpu_path lmc_cpu_path_set(lmc_cpu_path p) {
    pthread_once(&g_once, detect);
    g_active = p > g_max ? g_max : p;
    g_info.path = lmc_cpu_path_name(g_active);
    return g_active;
}

lmc_cpu_info lmc_cpu(void) {
    pthread_once(&g_once, detect);
    return g_info;
}

const char *lmc_version(void) { return "0.1.0"; }
