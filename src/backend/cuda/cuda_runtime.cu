/* The CUDA runtime side of the backend: one device (0), one stream that
 * every launch and copy goes on (so operations run in the order lmc issues
 * them and the host only waits where it reads a result), the cuBLAS handle
 * bound to it, and one growable scratch buffer for kernels that need
 * temporary device memory. */
#include <mutex>
#include <stdio.h>

#include "backend/cuda/cuda_common.cuh"

static std::once_flag g_once;
static cudaStream_t g_stream;
static cublasHandle_t g_cublas;
static int g_count = -1;

static void init_once() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n <= 0) {
        cudaGetLastError(); /* clear the sticky "no device" error */
        g_count = 0;
        return;
    }
    if (cudaSetDevice(0) != cudaSuccess || cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking) != cudaSuccess) {
        g_count = 0;
        return;
    }
    /* Stream-ordered allocations from the device's pool: freeing an
     * intermediate never waits for the GPU, and the pool keeps freed memory
     * for the next step instead of giving it back to the driver. */
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool(&pool, 0) == cudaSuccess) {
        uint64_t keep = UINT64_MAX;
        cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
    }
    if (cublasCreate(&g_cublas) == CUBLAS_STATUS_SUCCESS) {
        cublasSetStream(g_cublas, g_stream);
        /* Full f32 arithmetic for f32 products (no TF32): the CPU is the oracle. */
        cublasSetMathMode(g_cublas, CUBLAS_DEFAULT_MATH);
    } else {
        g_cublas = NULL;
    }
    g_count = n;
}

extern "C" int lmc_cuda_device_count(void) {
    std::call_once(g_once, init_once);
    return g_count;
}

cudaStream_t lmc_cuda_stream(void) {
    std::call_once(g_once, init_once);
    return g_stream;
}

cublasHandle_t lmc_cuda_cublas(void) {
    std::call_once(g_once, init_once);
    return g_cublas;
}

/* Scratch: one growable block per host thread (threads may drive
 * generations concurrently on the one stream, and a block must not be
 * reused by another thread's kernels between its producer and consumer);
 * regrown when too small, freed in stream order, released at thread exit. */
namespace {
struct scratch_block {
    void *p = nullptr;
    size_t bytes = 0;
    ~scratch_block() {
        if (p) cudaFreeAsync(p, lmc_cuda_stream());
    }
};
thread_local scratch_block t_scratch;
} // namespace

void *lmc_cuda_scratch(size_t n) {
    scratch_block &b = t_scratch;
    if (n <= b.bytes) return b.p;
    if (b.p) {
        cudaFreeAsync(b.p, lmc_cuda_stream());
        b.p = nullptr;
        b.bytes = 0;
    }
    size_t want = n < ((size_t)1 << 20) ? ((size_t)1 << 20) : n;
    if (cudaMallocAsync(&b.p, want, lmc_cuda_stream()) != cudaSuccess) {
        cudaGetLastError();
        b.p = nullptr;
        return nullptr;
    }
    b.bytes = want;
    return b.p;
}

extern "C" int lmc_cuda_malloc(void **p, size_t n) {
    if (lmc_cuda_device_count() <= 0) return (int)cudaErrorNoDevice;
    cudaError_t e = cudaMallocAsync(p, n ? n : 1, lmc_cuda_stream());
    if (e != cudaSuccess) cudaGetLastError();
    return (int)e;
}

extern "C" int lmc_cuda_free(void *p) {
    /* Ordered after the work already queued that may still read p. */
    return (int)cudaFreeAsync(p, lmc_cuda_stream());
}

extern "C" int lmc_cuda_memcpy(void *dst, const void *src, size_t n, int kind) {
    if (!n) return 0;
    static const cudaMemcpyKind kinds[3] = {cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice};
    cudaStream_t s = lmc_cuda_stream();
    cudaError_t e = cudaMemcpyAsync(dst, src, n, kinds[kind], s);
    /* The host memory of a copy in either direction may be pageable or
     * reused at once by the caller: wait for it. Device to device stays queued. */
    if (e == cudaSuccess && kind != 2) e = cudaStreamSynchronize(s);
    return (int)e;
}

extern "C" int lmc_cuda_synchronize(void) { return (int)cudaStreamSynchronize(lmc_cuda_stream()); }

/* The profiler's GPU clock: events around one entry's launches. */
static cudaEvent_t g_timer[2];

extern "C" int lmc_cuda_timer_start(void) {
    cudaError_t e = cudaSuccess;
    for (int i = 0; i < 2 && e == cudaSuccess; i++)
        if (!g_timer[i]) e = cudaEventCreate(&g_timer[i]);
    return (int)(e == cudaSuccess ? cudaEventRecord(g_timer[0], lmc_cuda_stream()) : e);
}

extern "C" int lmc_cuda_timer_stop(double *ms) {
    float f = 0;
    cudaError_t e = cudaEventRecord(g_timer[1], lmc_cuda_stream());
    if (e == cudaSuccess) e = cudaEventSynchronize(g_timer[1]);
    if (e == cudaSuccess) e = cudaEventElapsedTime(&f, g_timer[0], g_timer[1]);
    *ms = e == cudaSuccess ? f : 0.0;
    return (int)e;
}

extern "C" const char *lmc_cuda_error_string(int err) { return cudaGetErrorString((cudaError_t)err); }

extern "C" int lmc_cuda_last_launch_error(void) { return (int)cudaGetLastError(); }

extern "C" int lmc_cuda_device_name(char *out, size_t cap) {
    if (lmc_cuda_device_count() <= 0) return (int)cudaErrorNoDevice;
    cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, 0);
    if (e == cudaSuccess) snprintf(out, cap, "%s (%d SMs, %.1f GiB)", p.name, p.multiProcessorCount,
                                   (double)p.totalGlobalMem / (1 << 30));
    return (int)e;
}

/* Device memory bandwidth as a large device-to-device copy moves it, bytes
 * read plus bytes written per second (the ceiling a memory-bound kernel
 * such as decode's matrix-vector products is measured against). */
extern "C" int lmc_cuda_copy_bandwidth(double *gbps) {
    const size_t n = (size_t)1 << 30;
    void *a = NULL, *b = NULL;
    cudaStream_t s = lmc_cuda_stream();
    cudaEvent_t e0 = NULL, e1 = NULL;
    cudaError_t e = cudaMalloc(&a, n);
    if (e == cudaSuccess) e = cudaMalloc(&b, n);
    if (e == cudaSuccess) e = cudaMemsetAsync(a, 1, n, s);
    if (e == cudaSuccess) e = cudaEventCreate(&e0);
    if (e == cudaSuccess) e = cudaEventCreate(&e1);
    float best_ms = 0;
    for (int r = 0; e == cudaSuccess && r < 6; r++) {
        cudaEventRecord(e0, s);
        cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, s);
        cudaEventRecord(e1, s);
        e = cudaEventSynchronize(e1);
        float ms = 0;
        if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, e0, e1);
        if (r > 0 && (best_ms == 0 || ms < best_ms)) best_ms = ms; /* the first is a warm-up */
    }
    if (e == cudaSuccess) *gbps = 2.0 * (double)n / (best_ms * 1e-3) / 1e9;
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    return (int)e;
}
