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
 *   "max_active N", "active JOB PID START_TIME T_MS MODEL",
 *   "overlap T_MS PID JOB OTHER_PID OTHER_JOB OTHER_T_MS MODEL<tab>OTHER_MODEL" (the first SIM_NPU_OVERLAP_LOG
 *   only; OTHER_* is a run that was inside when this one entered, OTHER_T_MS when it had entered).
 * Active jobs of dead processes are dropped on every access: a killed process's job ends with it.
 * tests/simkit/npu_jobs.py parses the same format. */
#ifndef RKSIM_NPU_JOBS_H
#define RKSIM_NPU_JOBS_H

#define SIM_NPU_OVERLAP_LOG 20

/* Records a run entering the NPU; returns its job id (0 if the record could not be written). */
long long sim_npu_job_enter(const char* model_path);
/* Records the run's end. */
void sim_npu_job_leave(long long job);

#endif
