/* Register-only loops that measure how much of a core's AMX and AVX-512
 * throughput a thread gets, alone and beside others (`lmc bench ops --only
 * cores`). Nothing is read from memory inside the loops, so when two threads
 * together do less than twice the work of one, the threads share the unit
 * (hyperthreads of one core, or a host that places vCPUs so), not
 * bandwidth. The kernels' scaling with threads can be no better than this. */
#include <immintrin.h>

#include "backend/cpu/amx_tiles.h"
#include "backend/cpu/probe.h"

/* Four independent 16 x 16 accumulators, so the products are limited by the
 * unit's throughput, not by one accumulator's latency. */
static float tiles(int64_t iters, bool int8) {
    lmc_amx_configure_uniform();
    static const uint8_t src[1024] __attribute__((aligned(64))) = {1};
    float out[256] __attribute__((aligned(64)));
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, src, 64);
    _tile_loadd(5, src, 64);
    _tile_loadd(6, src, 64);
    _tile_loadd(7, src, 64);
    if (int8) {
        for (int64_t i = 0; i < iters; i += 4) {
            _tile_dpbusd(0, 4, 6);
            _tile_dpbusd(1, 4, 7);
            _tile_dpbusd(2, 5, 6);
            _tile_dpbusd(3, 5, 7);
        }
    } else {
        for (int64_t i = 0; i < iters; i += 4) {
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        }
    }
    _tile_stored(0, out, 64);
    _tile_release();
    return out[0];
}

/* Eight independent chains: two FMA ports with four cycles of latency. */
static float fmas(int64_t iters) {
    __m512 a[8], b = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(0.001f);
    for (int i = 0; i < 8; i++) a[i] = _mm512_set1_ps((float)i);
    for (int64_t i = 0; i < iters; i += 8)
        for (int j = 0; j < 8; j++) a[j] = _mm512_fmadd_ps(a[j], b, c);
    __m512 s = a[0];
    for (int i = 1; i < 8; i++) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s);
}

float lmc_cpu_probe(lmc_probe_kind kind, int64_t iters) {
    switch (kind) {
    case LMC_PROBE_AMX_BF16: return tiles(iters, false);
    case LMC_PROBE_AMX_INT8: return tiles(iters, true);
    default: return fmas(iters);
    }
}
