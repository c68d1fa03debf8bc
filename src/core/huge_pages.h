/* Weights on 2 MiB pages: a read-only file mapping moved, piece by piece,
 * onto anonymous transparent huge pages by one background thread.
 *
 * Why: decode reads every weight once a token. Through a file mapping of
 * 4 KiB pages that is a TLB miss and a page walk every 4 KiB, and the
 * hardware prefetchers stop at each page's end; on 2 MiB pages 4-bit decode ran
 * 7-18 % faster (bench/RESULTS.md, sixteenth round). Linux maps page-cache
 * pages of ordinary files 4 KiB at a time, so the bytes have to move to
 * anonymous memory to get there.
 *
 * Why in the background: a copy at load would add its time (~0.2 s for
 * 700 MB) to the time to first token. The model starts on the file mapping
 * and speeds up as pieces move.
 *
 * How: each piece (PIECE bytes, 2 MiB-aligned) is copied into a fresh
 * anonymous mapping advised MADV_HUGEPAGE, made read-only, and mremap'd onto
 * the piece's own addresses. The kernel swaps the page tables under the
 * mapping's lock, so threads reading the weights meanwhile see the same bytes
 * at the same addresses throughout; pointers into the mapping stay valid. At
 * most one piece is held twice at a time, so RSS grows by at most PIECE. */
#ifndef LMC_CORE_HUGE_PAGES_H
#define LMC_CORE_HUGE_PAGES_H

#include <stdbool.h>
#include <stddef.h>

typedef struct lmc_huge_region lmc_huge_region;

/* Whether promotion would gain anything here: transparent huge pages are
 * enabled ("always" or "madvise" in /sys/kernel/mm/transparent_hugepage/enabled). */
bool lmc_huge_pages_available(void);

/* Whether `bytes` more may be held as anonymous memory: at most half of
 * MemAvailable and of this process's cgroup memory limit (a container's
 * /proc/meminfo shows the host's memory), so a model near the memory it may
 * use stays on its file mapping, whose pages the kernel can drop and read
 * again. */
bool lmc_huge_pages_affordable(size_t bytes);

/* The smallest memory limit on the cgroup that `cgroup_file` (in the format
 * of /proc/self/cgroup) names, or on its ancestors, read under the cgroup
 * file system at `root` (/sys/fs/cgroup): v2 memory.max, v1
 * memory/.../memory.limit_in_bytes. 0 when none is set or readable. */
unsigned long long lmc_huge_pages_cgroup_limit(const char *cgroup_file, const char *root);

/* Queues the whole 2 MiB pages inside [addr, addr + len), a read-only
 * private mapping the caller keeps, for promotion. NULL when there is
 * nothing to do (not available, no whole 2 MiB page inside) or no memory for
 * the record; neither is an error. */
lmc_huge_region *lmc_huge_pages_adopt(void *addr, size_t len);

/* Stops promoting r, waiting for a piece in flight, and frees r. The
 * mapping stays valid (partly moved) and is unmapped by its owner as before
 * (munmap takes the moved and unmoved parts alike). NULL is ignored. */
void lmc_huge_pages_forget(lmc_huge_region *r);

/* Bytes of r moved so far (0 for NULL). */
size_t lmc_huge_pages_moved(const lmc_huge_region *r);

/* Waits until no region is queued (every one done or forgotten). */
void lmc_huge_pages_wait(void);

/* Advises the kernel to back the whole 2 MiB pages inside [p, p + n) of an
 * allocation with huge pages as they are first touched (MADV_HUGEPAGE), where
 * transparent huge pages are enabled. For large buffers read in full every
 * token (KV caches): a fault per 2 MiB instead of per 4 KiB, and no TLB miss
 * per 4 KiB when attention streams them. */
void lmc_huge_pages_advise(void *p, size_t n);

#endif
