/* Model lifecycle and per-handle configuration: createDefaultParam, init, destroy, LoRA, prompt cache,
 * chat template, function tools, KV-cache management, cross attention. */
#include <errno.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "handle.h"
#include "layout_asserts.h"
#include "npu_buffers.h"
#include "npu_memory.h"
#include "reply.h"
#include "strbuf.h"

static atomic_int live_handles;

int sim_live_handles(void) { return atomic_load(&live_handles); }

long long sim_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* One futex wait on the abort flag per sleep, woken at once by sim_abort_wake: the simulated NPU job
 * costs the process one wake-up per token, as a real wait on the NPU does, not a wake-up per time slice
 * (which would be the simulator's own CPU, charged to the runner in board-pace benchmarks). */
int sim_sleep_us(long long total_us, atomic_int* abort_flag) {
    long long end = sim_now_us() + total_us;
    while (total_us > 0) {
        long long left = end - sim_now_us();
        if (left <= 0) break;
        if (abort_flag && atomic_load(abort_flag)) return 1;
        struct timespec ts = {left / 1000000, (left % 1000000) * 1000};
        if (abort_flag)
            syscall(SYS_futex, (int*)abort_flag, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
        else
            nanosleep(&ts, NULL);
    }
    return abort_flag && atomic_load(abort_flag);
}

void sim_abort_wake(atomic_int* abort_flag) {
    atomic_store(abort_flag, 1);
    syscall(SYS_futex, (int*)abort_flag, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

/* A slow init that is still working, as a real one is while it reads weights into NPU buffers
 * (rkllm-runtime.md §2.1: buffers are shmem pages faulted in by the driver): every 50 ms another 1 MiB is
 * touched, so the process's RSS and page faults grow until init returns and frees the scratch memory. */
void sim_load_work(long long total_ms) {
    long long end = sim_now_us() + total_ms * 1000;
    size_t n = 0, cap = (size_t)(total_ms / 50 + 2);
    char** pages = calloc(cap, sizeof(char*));
    while (pages && sim_now_us() < end) {
        if (n < cap && (pages[n] = malloc(1 << 20)) != NULL) memset(pages[n++], 1, 1 << 20);
        long long left = end - sim_now_us();
        long long slice = left < 50000 ? left : 50000;
        if (slice > 0) {
            struct timespec ts = {slice / 1000000, (slice % 1000000) * 1000};
            nanosleep(&ts, NULL);
        }
    }
    for (size_t i = 0; i < n; i++) free(pages[i]);
    free(pages);
}

sim_handle* sim_handle_check(LLMHandle handle, const char* fn) {
    sim_handle* h = handle;
    if (!h || h->magic != SIM_HANDLE_MAGIC) {
        fprintf(stderr, "E rkllm: %s: invalid handle\n", fn);
        return NULL;
    }
    return h;
}

/* rkllm-runtime.md §1.2 table: "Documented defaults: top_k 40, top_p 0.9, temperature 0.8,
 * repeat_penalty 1.1, frequency/presence 0, mirostat 0, tau 5.0, eta 0.1, enabled_cpus_num 4".
 * The remaining fields are not documented; the simulator's choices are listed in docs/simulator.md. */
SIM_API RKLLMParam rkllm_createDefaultParam(void) {
    RKLLMParam p;
    memset(&p, 0, sizeof(p));
    p.model_path = NULL;
    p.max_context_len = 512;
    p.max_new_tokens = -1;
    p.top_k = 40;
#if SIM_ABI >= 120
    p.n_keep = 0;
#endif
    p.top_p = 0.9f;
    p.temperature = 0.8f;
    p.repeat_penalty = 1.1f;
    p.frequency_penalty = 0.0f;
    p.presence_penalty = 0.0f;
    p.mirostat = 0;
    p.mirostat_tau = 5.0f;
    p.mirostat_eta = 0.1f;
    p.skip_special_token = true;
    p.is_async = false;
    p.extend_param.base_domain_id = 0;
#if SIM_ABI >= 120
    p.extend_param.embed_flash = 0;
    p.extend_param.enabled_cpus_num = 4;
    p.extend_param.enabled_cpus_mask = 0;
#endif
#if SIM_ABI >= 121
    p.extend_param.n_batch = 1;
    p.extend_param.use_cross_attn = 0;
#endif
    return p;
}

static const char* overcommit_mode(void) {
    const char* m = getenv("RKLLM_SIM_OVERCOMMIT");
    if (m && (!strcmp(m, "fail") || !strcmp(m, "segv") || !strcmp(m, "garbage") || !strcmp(m, "oom"))) return m;
    if (m && *m) fprintf(stderr, "W rkllm-sim: unknown RKLLM_SIM_OVERCOMMIT '%s', using default\n", m);
    return SIM_DEFAULT_OVERCOMMIT;
}

static void free_handle(sim_handle* h) {
    free(h->model_path);
    free(h->tmpl_system);
    free(h->tmpl_prefix);
    free(h->tmpl_postfix);
    free(h->tools_system);
    free(h->tools_json);
    free(h->tools_response);
    free(h->tool_name);
    for (int i = 0; i < h->n_loras; i++) {
        free(h->loras[i].name);
        free(h->loras[i].path);
    }
    free(h->prompt_cache_path);
    free(h->prompt_cache_text);
    free(h->kv_text);
    free(h->kv_lora);
    free(h->init_json);
    free(h->run_json_in);
    free(h->run_json_out);
    free(h->run_templated);
    free(h->handle_json);
    pthread_mutex_destroy(&h->lock);
    h->magic = 0;
    free(h);
}

#if SIM_ABI >= 130
SIM_API int rkllm_init(LLMHandle* handle, RKLLMParam* param, RKLLMCallback* callback) {
#else
SIM_API int rkllm_init(LLMHandle* handle, RKLLMParam* param, LLMResultCallback callback) {
#endif
    /* rkllm-runtime.md §1.1: "the runtime prints `I rkllm: rkllm-runtime version: X, rknpu driver version: Y,
     * platform: Z` to the log at init". One literal, so the version is findable in .rodata. */
    fputs("I rkllm: rkllm-runtime version: " SIM_VERSION_STRING ", rknpu driver version: 0.9.8, platform: RK3588\n",
          stderr);
    if (!handle || !param) {
        fprintf(stderr, "E rkllm: rkllm_init: handle or param is NULL\n");
        return -1;
    }
    *handle = NULL;
    sim_model model;
    char err[512];
    if (sim_model_read(param->model_path, &model, err, sizeof(err)) != 0) {
        fprintf(stderr, "E rkllm: %s\n", err);
        return -1;
    }
    sim_faults faults;
    sim_faults_clear(&faults);
    sim_faults_parse(model.fault, &faults);
    sim_faults_parse(getenv("RKLLM_SIM_FAULT"), &faults);

    sim_sleep_us(sim_knob(model.init_ms, "RKLLM_SIM_INIT_MS") * 1000, NULL);
    sim_load_work(faults.slow_init_ms);
    /* An init that never returns and does no work: e.g. the driver's IOMMU domain switch waiting for a
     * domain that never becomes free (rkllm-runtime.md §2.1, "switch iommu domain time out"). */
    while (faults.hang_init) pause();
    if (faults.init_segv) {
        fflush(stderr);
        raise(SIGSEGV);
    }
    if (faults.init_fail) {
        fprintf(stderr, "E rkllm: Load model failed! (simulated fault init_fail)\n");
        return -1;
    }
    int ctx = param->max_context_len;
    if (ctx <= 0) ctx = model.max_context_limit;
    /* rkllm-runtime.md §2.5 and §1.2 table: exceeding the conversion-time limit fails init (rkllama#60). */
    if (ctx > model.max_context_limit) {
        fprintf(stderr, "E rkllm: max_context[%d] must be less than the model's max_context_limit[%d]\n", ctx,
                model.max_context_limit);
        return -1;
    }
#if SIM_ABI >= 120
    /* rkllm-runtime.md §2.5: "The number of enabled CPUs must be greater than or equal to the number of NPU
     * cores" (#271); checked only when the model header declares npu_cores. */
    if (model.npu_cores > 0 && param->extend_param.enabled_cpus_num < model.npu_cores) {
        fprintf(stderr,
                "E rkllm: The number of enabled CPUs must be greater than or equal to the number of NPU cores\n");
        return -1;
    }
#endif
    int base = param->extend_param.base_domain_id;
    if (base < 0 || base >= SIM_DOMAINS) {
        /* rkllm-runtime.md §2.1: the driver knows 16 domains. */
        fprintf(stderr, "E rkllm: invalid base_domain_id[%d], must be in [0, %d)\n", base, SIM_DOMAINS);
        return -1;
    }
    /* Footprint: weights (file size) + KV cache for max_context_len + runtime buffers; rkllm-runtime.md §2.3
     * (benchmark memory close to file size) and §2.5 (KV bytes per token estimate). */
    long long footprint = model.file_size + model.kv_bytes_per_token * (long long)ctx + model.buffer_bytes;
    sim_reserve_request req = {param->model_path, footprint, base, overcommit_mode()};
    sim_reserve_result res;
    sim_reserve_outcome outcome = sim_state_reserve(&req, &res);
    switch (outcome) {
    case SIM_RESERVE_OK:
    case SIM_RESERVE_GARBAGE:
        break;
    case SIM_RESERVE_FAIL:
        /* rkllm-runtime.md §2.3: "failed to malloc npu memory, size: 4022272000" (#437). */
        fprintf(stderr, "E rkllm: failed to malloc npu memory, size: %lld\n", res.failed_size);
        fprintf(stderr, "E rkllm: rkllm init failed\n");
        return -1;
    case SIM_RESERVE_SEGV:
        /* rkllm-runtime.md §1.2 table: #522, 1.3.0 segfaults on an init that fails for NPU memory. */
        fprintf(stderr, "E rkllm: failed to malloc npu memory, size: %lld\n", res.failed_size);
        fflush(stderr);
        raise(SIGSEGV);
        return -1;
    case SIM_RESERVE_OOM_SELF:
        /* rkllm-runtime.md §2.3: #229, OOM-killed when the model does not fit in RAM. */
        kill(getpid(), SIGKILL);
        return -1;
    case SIM_RESERVE_STATE_ERROR:
        fprintf(stderr, "E rkllm: failed to malloc npu memory, size: %lld (simulator state unavailable)\n",
                footprint);
        return -1;
    }
    int npu_fd = sim_npu_buffers_hold(footprint, err, sizeof(err));
    if (npu_fd == -2) {
        sim_state_release(res.id);
        fprintf(stderr, "E rkllm: %s\nE rkllm: rkllm init failed\n", err);
        return -1;
    }

    sim_handle* h = sim_xcalloc(1, sizeof(sim_handle));
    h->magic = SIM_HANDLE_MAGIC;
    h->param = *param;
    h->model_path = sim_strdup(param->model_path);
    h->model = model;
    h->faults = faults;
#if SIM_ABI >= 130
    h->callback = callback ? callback->result_callback : NULL;
    h->result_userdata = callback ? callback->result_userdata : NULL;
#else
    h->callback = callback;
#endif
    h->footprint = footprint;
    h->reservation_id = res.id;
    h->npu_fd = npu_fd;
    h->max_context_len = ctx;
    h->token_us = sim_knob(model.token_us, "RKLLM_SIM_TOKEN_US");
    h->prefill_us = sim_knob(model.prefill_us, "RKLLM_SIM_PREFILL_US");
    pthread_mutex_init(&h->lock, NULL);
    snprintf(h->run_finish, sizeof(h->run_finish), "none");
    h->init_json = sim_init_json(h, param, (const void*)callback);
    atomic_fetch_add(&live_handles, 1);
    *handle = h;
    return 0;
}

SIM_API int rkllm_destroy(LLMHandle handle) {
    sim_handle* h = sim_handle_check(handle, "rkllm_destroy");
    if (!h) return -1;
    if (atomic_load(&h->running)) {
        /* rkllm-runtime.md §2.4: destroying during inference gives "failed to submit!" (#289). */
        fprintf(stderr, "E rkllm: failed to submit!\n");
        sim_abort_wake(&h->abort_requested);
        while (atomic_load(&h->running)) sim_sleep_us(1000, NULL);
    }
    sim_state_release(h->reservation_id);
    sim_npu_buffers_release(h->npu_fd);
    atomic_fetch_sub(&live_handles, 1);
    free_handle(h);
    return 0;
}

SIM_API int rkllm_load_lora(LLMHandle handle, RKLLMLoraAdapter* lora_adapter) {
    sim_handle* h = sim_handle_check(handle, "rkllm_load_lora");
    if (!h) return -1;
    if (!lora_adapter || !lora_adapter->lora_adapter_path || !lora_adapter->lora_adapter_name) {
        fprintf(stderr, "E rkllm: lora adapter path or name is NULL\n");
        return -1;
    }
    if (access(lora_adapter->lora_adapter_path, R_OK) != 0) {
        fprintf(stderr, "E rkllm: failed to open lora file: %s\n", lora_adapter->lora_adapter_path);
        return -1;
    }
    pthread_mutex_lock(&h->lock);
    if (h->n_loras >= SIM_MAX_LORAS) {
        pthread_mutex_unlock(&h->lock);
        fprintf(stderr, "E rkllm: too many lora adapters\n");
        return -1;
    }
    sim_lora* l = &h->loras[h->n_loras++];
    l->name = sim_strdup(lora_adapter->lora_adapter_name);
    l->path = sim_strdup(lora_adapter->lora_adapter_path);
    l->scale = lora_adapter->scale;
    pthread_mutex_unlock(&h->lock);
    return 0;
}

SIM_API int rkllm_load_prompt_cache(LLMHandle handle, const char* prompt_cache_path) {
    sim_handle* h = sim_handle_check(handle, "rkllm_load_prompt_cache");
    if (!h) return -1;
    FILE* f = prompt_cache_path ? fopen(prompt_cache_path, "rb") : NULL;
    if (!f) {
        fprintf(stderr, "E rkllm: failed to open prompt cache file: %s\n",
                prompt_cache_path ? prompt_cache_path : "(null)");
        return -1;
    }
    strbuf sb;
    sb_init(&sb);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) sb_putn(&sb, buf, n);
    fclose(f);
    char* text = sb_take(&sb);
    static const char magic[] = "RKSIM-PROMPT-CACHE\n";
    if (strncmp(text, magic, sizeof(magic) - 1) != 0) {
        free(text);
        fprintf(stderr, "E rkllm: invalid prompt cache file: %s\n", prompt_cache_path);
        return -1;
    }
    pthread_mutex_lock(&h->lock);
    free(h->prompt_cache_path);
    free(h->prompt_cache_text);
    h->prompt_cache_path = sim_strdup(prompt_cache_path);
    h->prompt_cache_text = sim_strdup(text + sizeof(magic) - 1);
    pthread_mutex_unlock(&h->lock);
    free(text);
    return 0;
}

SIM_API int rkllm_release_prompt_cache(LLMHandle handle) {
    sim_handle* h = sim_handle_check(handle, "rkllm_release_prompt_cache");
    if (!h) return -1;
    pthread_mutex_lock(&h->lock);
    free(h->prompt_cache_path);
    free(h->prompt_cache_text);
    h->prompt_cache_path = NULL;
    h->prompt_cache_text = NULL;
    pthread_mutex_unlock(&h->lock);
    return 0;
}
