/* rkllm_run_async: the run happens on a detached thread that owns deep copies of the arguments. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handle.h"
#include "npu_jobs.h"
#include "strbuf.h"

#if !SIM_RUN_ASYNC_BROKEN
typedef struct {
    sim_handle* h;
    RKLLMInput in;
    RKLLMInferParam infer;
    int has_infer;
    RKLLMLoraParam lora;
    RKLLMPromptCacheParam cache;
#if SIM_ABI >= 130
    RKLLMSamplingParam sampling;
#endif
    void* userdata;
    char* strings[8];
    void* arrays[2];
} async_job;

static const char* keep(async_job* j, int slot, const char* s) {
    j->strings[slot] = sim_strdup(s);
    return j->strings[slot];
}

static void* async_main(void* arg) {
    async_job* j = arg;
    long long job = sim_npu_job_enter(j->h->model_path, &j->in);
    sim_run_impl(j->h, &j->in, j->has_infer ? &j->infer : NULL, j->userdata, 1);
    sim_npu_job_leave(job);
    atomic_store(&j->h->running, 0);
    for (int i = 0; i < 8; i++) free(j->strings[i]);
    free(j->arrays[0]);
    free(j->arrays[1]);
    free(j);
    return NULL;
}
#endif

SIM_API int rkllm_run_async(LLMHandle handle, RKLLMInput* rkllm_input, RKLLMInferParam* rkllm_infer_params,
                            void* userdata) {
    sim_handle* h = sim_handle_check(handle, "rkllm_run_async");
    if (!h || !rkllm_input) return -1;
#if SIM_RUN_ASYNC_BROKEN
    /* rkllm-runtime.md §1.2 table: broken in 1.2.1, "hangs / no callbacks" (#320, #321). */
    (void)rkllm_infer_params;
    (void)userdata;
    return 0;
#else
    int expected = 0;
    if (!atomic_compare_exchange_strong(&h->running, &expected, 1)) {
        fprintf(stderr, "E rkllm: rkllm_run_async: the model is already running\n");
        return -1;
    }
    atomic_store(&h->generating, 1);
    atomic_store(&h->abort_requested, 0);
    async_job* j = sim_xcalloc(1, sizeof(async_job));
    j->h = h;
    j->userdata = userdata;
    j->in = *rkllm_input;
#if SIM_ABI >= 121
    j->in.role = keep(j, 0, rkllm_input->role);
#endif
    switch (rkllm_input->input_type) {
    case RKLLM_INPUT_PROMPT: j->in.prompt_input = keep(j, 1, rkllm_input->prompt_input); break;
    case RKLLM_INPUT_MULTIMODAL:
        j->in.multimodal_input.prompt = (char*)keep(j, 1, rkllm_input->multimodal_input.prompt);
        break;
    case RKLLM_INPUT_TOKEN: {
        size_t n = rkllm_input->token_input.n_tokens;
        int32_t* ids = sim_xcalloc(n ? n : 1, sizeof(int32_t));
        if (n && rkllm_input->token_input.input_ids) memcpy(ids, rkllm_input->token_input.input_ids, n * 4);
        j->in.token_input.input_ids = ids;
        j->arrays[0] = ids;
        break;
    }
    default: break;
    }
    if (rkllm_infer_params) {
        j->has_infer = 1;
        j->infer = *rkllm_infer_params;
        if (rkllm_infer_params->lora_params) {
            j->lora.lora_adapter_name = keep(j, 2, rkllm_infer_params->lora_params->lora_adapter_name);
            j->infer.lora_params = &j->lora;
        }
        if (rkllm_infer_params->prompt_cache_params) {
            j->cache = *rkllm_infer_params->prompt_cache_params;
            j->cache.prompt_cache_path = keep(j, 3, rkllm_infer_params->prompt_cache_params->prompt_cache_path);
            j->infer.prompt_cache_params = &j->cache;
        }
#if SIM_ABI >= 130
        if (rkllm_infer_params->sampling_params) {
            j->sampling = *rkllm_infer_params->sampling_params;
            j->infer.sampling_params = &j->sampling;
        }
#endif
    }
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, async_main, j) != 0) {
        pthread_attr_destroy(&attr);
        atomic_store(&h->running, 0);
        for (int i = 0; i < 8; i++) free(j->strings[i]);
        free(j->arrays[0]);
        free(j);
        return -1;
    }
    pthread_attr_destroy(&attr);
    return 0;
#endif
}
