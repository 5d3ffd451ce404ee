/* Where a handle's NPU memory lives on the simulated machine, and what perf.memory_usage_mb reports about it
 * (RKLLM_SIM_NPU_MEMORY; see npu_buffers.c and docs/simulator.md "NPU buffers and RSS"). */
#ifndef RKSIM_NPU_BUFFERS_H
#define RKSIM_NPU_BUFFERS_H

/* 1 in the "dma" mode: buffers are really allocated, outside the process's RSS. */
int sim_npu_buffers_outside_rss(void);
/* Allocates the handle's NPU buffers of `bytes` in the dma mode: returns a descriptor to keep until destroy,
 * -1 in the ledger mode (nothing to hold), or -2 when the machine cannot give them (err is filled). */
int sim_npu_buffers_hold(long long bytes, char* err, unsigned long errlen);
void sim_npu_buffers_release(int fd);
/* perf.memory_usage_mb for a handle whose footprint is `footprint` bytes. */
float sim_memory_usage_mb(long long footprint);

#endif
