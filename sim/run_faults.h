/* The faults that act on one run: the model's (header fault= and RKLLM_SIM_FAULT, read at init) plus any
 * "[[fault=LIST]]" directive words in the prompt, so a test can make one request out of many crash, hang or
 * stall while the model's other requests stay healthy. LIST uses the fault syntax of docs/simulator.md. */
#ifndef RKSIM_RUN_FAULTS_H
#define RKSIM_RUN_FAULTS_H

#include "model_file.h"

/* *out = *model_faults plus the [[fault=...]] directives found in the templated prompt. */
void sim_run_faults(const sim_faults* model_faults, const char* templated, sim_faults* out);
/* Fault slow_prefill:MS: the prefill takes MS ms more and does not react to rkllm_abort meanwhile. */
void sim_slow_prefill(const sim_faults* f);

#endif
