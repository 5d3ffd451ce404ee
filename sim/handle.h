/* One simulated model handle (what rkllm_init hands out as LLMHandle) and helpers shared by the
 * API sources. */
#ifndef RKSIM_HANDLE_H
#define RKSIM_HANDLE_H

#include <pthread.h>
#include <stdatomic.h>

#include "model_file.h"
#include "rkllm_abi.h"

#define SIM_HANDLE_MAGIC 0x524b53494dULL
#define SIM_MAX_LORAS 16

typedef struct {
    char* name;
    char* path;
    float scale;
} sim_lora;

typedef struct sim_handle {
    unsigned long long magic;
    RKLLMParam param;  /* copy of what rkllm_init received (pointers not owned) */
    char* model_path;
    sim_model model;
    sim_faults faults;
    LLMResultCallback callback;
    void* result_userdata; /* 1.3.0 RKLLMCallback.result_userdata */
    long long footprint;
    long long reservation_id;
    int npu_fd; /* RKLLM_SIM_NPU_MEMORY=dma: the memfd holding the NPU buffers, else -1 */
    int max_context_len;
    long long token_us;
    long long prefill_us;

    pthread_mutex_t lock; /* guards the fields below that other threads read */
    atomic_int running;
    atomic_int generating; /* 1 from the start of a run until it stops producing (before FINISH/ERROR) */
    atomic_int abort_requested;
    int kv_len;
    int system_tokens;
    int template_set;
    char* tmpl_system;
    char* tmpl_prefix;
    char* tmpl_postfix;
    char* tools_system;
    char* tools_json;
    char* tools_response;
    char* tool_name;
    sim_lora loras[SIM_MAX_LORAS];
    int n_loras;
    char* prompt_cache_path;
    char* prompt_cache_text;
    char* kv_text;  /* the cache's content as text (kv_context.c); NULL = empty */
    char* kv_lora;  /* the adapter its first piece was computed under */
    int kv_mixed;   /* pieces were computed under different adapters */
    int kv_opaque;  /* holds content no text prefill reproduces */
    int n_clear_kv;
    int last_clear_keep_system;
    int cross_attn_tokens;
    int n_runs;
    int n_aborts;
    int n_idle_aborts;   /* rkllm_abort with no inference in progress (see rkllm_abort) */
    int n_unused_aborts; /* runs that ended by themselves although rkllm_abort was called during them */

    char* init_json;
    char* run_json_in;   /* everything the last run received */
    char run_finish[16]; /* how the last run ended */
    int run_generated;
    int run_prompt_tokens;
    int run_prefilled;
    char* run_templated;
    char* run_json_out;  /* composed by rkllm_sim_last_run */
    char* handle_json;
} sim_handle;

/* The handle behind an LLMHandle, or NULL (with an "E rkllm:" line) for NULL/foreign pointers. */
sim_handle* sim_handle_check(LLMHandle handle, const char* fn);
/* Number of handles alive in this process (rkllm-runtime.md §3, #367). */
int sim_live_handles(void);
/* Monotonic time in microseconds. */
long long sim_now_us(void);
/* Sleeps total_us in slices, returning early (1) if *abort_flag becomes set; 0 sleeps not at all. */
int sim_sleep_us(long long total_us, atomic_int* abort_flag);
/* Sets *abort_flag and wakes every sim_sleep_us waiting on it. */
void sim_abort_wake(atomic_int* abort_flag);
void sim_load_work(long long total_ms);
/* Builds the JSON describing the RKLLMParam of an init (caller frees). */
char* sim_init_json(const sim_handle* h, const RKLLMParam* p, const void* callback_struct);
/* The body of rkllm_run / rkllm_run_async; the caller has set h->running and h->generating. */
int sim_run_impl(sim_handle* h, RKLLMInput* in, RKLLMInferParam* infer, void* userdata, int is_async);
/* Builds the JSON describing an rkllm_run call (caller frees). */
char* sim_run_json(const RKLLMInput* in, const RKLLMInferParam* infer, const void* userdata, int is_async);

#endif
