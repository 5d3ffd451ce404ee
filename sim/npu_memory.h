/* NPU memory as every process on the simulated board sees it: a flock-protected state file holding the
 * reservations of all live handles, plus a record of every overcommit and simulated OOM kill. */
#ifndef RKSIM_NPU_MEMORY_H
#define RKSIM_NPU_MEMORY_H

#include <limits.h>

/* rkllm-runtime.md §2.1: RKNPU_MAX_IOMMU_DOMAIN_NUM 16; each domain's aperture is DMA_BIT_MASK(32) = 4 GiB. */
#define SIM_DOMAINS 16
#define SIM_DOMAIN_BYTES (4LL * 1024 * 1024 * 1024)
#define SIM_DEFAULT_RAM (16LL * 1024 * 1024 * 1024)

typedef enum {
    SIM_RESERVE_OK = 0,
    SIM_RESERVE_FAIL,     /* overcommit, mode fail: nothing reserved */
    SIM_RESERVE_SEGV,     /* overcommit, mode segv: nothing reserved, caller crashes */
    SIM_RESERVE_GARBAGE,  /* overcommit, mode garbage: reserved, output will be garbage */
    SIM_RESERVE_OOM_SELF, /* overcommit, mode oom: this process was chosen; caller must die by SIGKILL */
    SIM_RESERVE_STATE_ERROR,
} sim_reserve_outcome;

typedef struct {
    const char* model_path;
    long long bytes;
    int base_domain;
    const char* mode; /* fail | segv | garbage | oom */
} sim_reserve_request;

typedef struct {
    long long id;          /* reservation id when something was reserved */
    long long failed_size; /* the allocation that did not fit */
    const char* kind;      /* "ram" or "domain" when overcommitted, else NULL */
    int victim_pid;        /* oom mode: the process killed */
} sim_reserve_result;

const char* sim_state_path(char* buf, unsigned long len);
long long sim_ram_bytes(void);
sim_reserve_outcome sim_state_reserve(const sim_reserve_request* req, sim_reserve_result* out);
void sim_state_release(long long id);
/* 1 when a domain holding this reservation is over 4 GiB or the board's RAM is overcommitted. */
int sim_state_is_overcommitted(long long id);
/* JSON document of the whole state (caller frees). */
char* sim_state_json(void);

#endif
