/* The NPU as one machine-wide job slot: every rkllm_run / rkllm_run_async execution, of any process, enters a
 * shared record when it starts and leaves it when it returns, so tests can see two runs on the NPU at once.
 *
 * rkllm-runtime.md §3 (#383, maintainer): NPU resources are limited, threads and processes "block waiting";
 * tmp/researches/memory-analysis.md §1.2 and §3.1: the driver attaches one IOMMU domain at a time and a running
 * job holds it, so NPU jobs never truly run at once. The real runtime serialises them silently (or times out
 * with "switch iommu domain time out"); the simulator lets them run and counts each overlap, because a server
 * that overlaps runs is what the count is there to catch.
 *
 * File: "<RKLLM_SIM_STATE>.npu-jobs", flock-protected, one record per line:
 *   "next_job N", "jobs N" (runs entered), "overlaps N" (runs that started while another was inside),
 *   "max_active N", "active JOB PID START_TIME T_MS TAG MODEL",
 *   "overlap T_MS PID JOB TAG MODEL" then "  with T_MS PID JOB TAG MODEL" (a run that was inside then, and
 *   when it had entered), for the first SIM_NPU_OVERLAP_LOG overlaps only.
 * TAG is the prompt's first word (up to 31 bytes; "-" for token/embedding input), so a test that starts
 * each prompt with a request id knows which request every run served.
 * Active jobs of dead processes are dropped on every access: a killed process's job ends with it.
 * tests/simkit/npu_jobs.py parses the same format. */
#ifndef RKSIM_NPU_JOBS_H
#define RKSIM_NPU_JOBS_H

#include "rkllm_abi.h"

#define SIM_NPU_OVERLAP_LOG 20

/* Records a run entering the NPU; returns its job id (0 if the record could not be written). */
long long sim_npu_job_enter(const char* model_path, const RKLLMInput* input);
/* Records the run's end. */
void sim_npu_job_leave(long long job);

#endif
