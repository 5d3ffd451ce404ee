/* NPU buffers and the process's RSS.
 *
 * rkllm-runtime.md §2.1: the NPU has no memory of its own; every buffer is an rknpu DRM GEM object whose pages
 * come from shmem (drm_gem_get_pages) and are mapped into the NPU's address space through its IOMMU. Those pages
 * are taken from the machine (#229's OOM trace goes through shmem_read_mapping_page_gfp) but are in a process's
 * VmRSS only while the process maps them, which nothing documents. The runtime's own figure,
 * RKLLMPerfStat.memory_usage_mb, is documented as the process's VmHWM in MB (§1.2 struct table), so it may miss
 * them too, and runtimes before 1.2.1 report nothing. RKLLM_SIM_NPU_MEMORY chooses between the two boards:
 *
 *   ledger (default)  the footprint exists only in the state file (npu_memory.c); memory_usage_mb reports the
 *                     whole footprint: a board on which the runtime's figure covers the NPU buffers.
 *   dma               the footprint is also allocated for real in a memfd that is never mapped: it lowers the
 *                     machine's MemAvailable and raises Shmem, is in neither VmRSS nor VmHWM, and returns when
 *                     the handle is destroyed or the process dies (the kernel closes the descriptor); and
 *                     memory_usage_mb is this process's VmHWM, as documented, so it misses the buffers.
 *
 * The dma mode really takes host memory, so it refuses (as a failed allocation, "failed to malloc npu memory")
 * to leave the host with less than RKLLM_SIM_HOST_RESERVE bytes (default 1 GiB) of MemAvailable. */
#define _GNU_SOURCE
#include "npu_buffers.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model_file.h"

#define DEFAULT_HOST_RESERVE (1LL << 30)

int sim_npu_buffers_outside_rss(void) {
    const char* m = getenv("RKLLM_SIM_NPU_MEMORY");
    if (m && !strcmp(m, "dma")) return 1;
    if (m && *m && strcmp(m, "ledger")) fprintf(stderr, "W rkllm-sim: unknown RKLLM_SIM_NPU_MEMORY '%s', using ledger\n", m);
    return 0;
}

/* A "kB" field of a /proc text file, in bytes; -1 when missing. */
static long long proc_kib_field(const char* path, const char* name) {
    FILE* f = fopen(path, "re");
    if (!f) return -1;
    char line[256];
    size_t n = strlen(name);
    long long value = -1;
    while (fgets(line, sizeof(line), f)) {
        if (!strncmp(line, name, n) && line[n] == ':') {
            value = strtoll(line + n + 1, NULL, 10) * 1024;
            break;
        }
    }
    fclose(f);
    return value;
}

int sim_npu_buffers_hold(long long bytes, char* err, unsigned long errlen) {
    if (!sim_npu_buffers_outside_rss()) return -1;
    long long available = proc_kib_field("/proc/meminfo", "MemAvailable");
    long long reserve = sim_env_ll("RKLLM_SIM_HOST_RESERVE", DEFAULT_HOST_RESERVE);
    if (available >= 0 && bytes > available - reserve) {
        snprintf(err, errlen, "failed to malloc npu memory, size: %lld (simulator: the host keeps %lld bytes)",
                 bytes, reserve);
        return -2;
    }
    int fd = memfd_create("rknpu-sim-buffers", MFD_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "failed to malloc npu memory, size: %lld (memfd: %s)", bytes, strerror(errno));
        return -2;
    }
    /* fallocate gives the memfd its pages without mapping them: Shmem, not RSS. */
    int rc = bytes > 0 ? posix_fallocate(fd, 0, (off_t)bytes) : 0;
    if (rc != 0) {
        close(fd);
        snprintf(err, errlen, "failed to malloc npu memory, size: %lld (%s)", bytes, strerror(rc));
        return -2;
    }
    return fd;
}

void sim_npu_buffers_release(int fd) {
    if (fd >= 0) close(fd);
}

float sim_memory_usage_mb(long long footprint) {
    if (!sim_npu_buffers_outside_rss()) return (float)((double)footprint / (1024.0 * 1024.0));
    long long hwm = proc_kib_field("/proc/self/status", "VmHWM");
    return hwm < 0 ? 0.0f : (float)((double)hwm / (1024.0 * 1024.0));
}
