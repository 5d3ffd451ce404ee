/* Inference: rkllm_run, rkllm_abort, rkllm_is_running (rkllm_run_async is in api_async.c). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "handle.h"
#include "kv_context.h"
#include "multimodal.h"
#include "npu_buffers.h"
#include "npu_jobs.h"
#include "npu_memory.h"
#include "reply.h"
#include "run_faults.h"
#include "strbuf.h"

/* The template used when rkllm_set_chat_template was never called. The real runtime takes it from the
 * model's tokenizer_config (rkllm-runtime.md §1.2 table, set_chat_template); the simulator's models are
 * ChatML with an empty system prompt, so the reply echoes exactly the caller's words. */
#define DEFAULT_SYSTEM ""
#define DEFAULT_PREFIX "<|im_start|>user\n"
#define DEFAULT_POSTFIX "<|im_end|>\n<|im_start|>assistant\n"

static int deliver(sim_handle* h, void* userdata, RKLLMResult* r, LLMCallState state) {
    if (!h->callback) return 0;
#if SIM_CALLBACK_RETURNS_INT
    return h->callback(r, userdata, state);
#else
    h->callback(r, userdata, state);
    return 0;
#endif
}

static void set_finish(sim_handle* h, const char* how, int generated) {
    pthread_mutex_lock(&h->lock);
    snprintf(h->run_finish, sizeof(h->run_finish), "%s", how);
    h->run_generated = generated;
    pthread_mutex_unlock(&h->lock);
}

static int count_ws_words(const char* s) {
    sim_prompt p;
    sim_prompt_parse(s, &p);
    int n = p.prompt_tokens;
    sim_prompt_free(&p);
    return s && *s ? n : 0;
}

/* Builds the model's view of the input: text after templating, echo words, prompt token count. */
static char* build_prompt(sim_handle* h, const RKLLMInput* in, sim_prompt* p, int* extra_tokens) {
    *extra_tokens = 0;
    const char* text = NULL;
    char* multimodal_text = NULL;
    switch (in->input_type) {
    case RKLLM_INPUT_PROMPT: text = in->prompt_input; break;
    case RKLLM_INPUT_MULTIMODAL:
        multimodal_text = sim_multimodal_prompt(&in->multimodal_input, h->model.embd_size);
        text = multimodal_text;
#if SIM_ABI >= 130
        *extra_tokens = (int)(in->multimodal_input.image.n_image_tokens +
                              in->multimodal_input.video.n_frame_tokens * in->multimodal_input.video.n_video);
#else
        *extra_tokens = (int)in->multimodal_input.n_image_tokens;
#endif
        break;
    case RKLLM_INPUT_TOKEN: {
        size_t n = in->token_input.n_tokens;
        char** words = sim_xcalloc(n ? n : 1, sizeof(char*));
        for (size_t i = 0; i < n; i++) {
            char w[32];
            snprintf(w, sizeof(w), "tok%d", in->token_input.input_ids ? in->token_input.input_ids[i] : 0);
            words[i] = sim_strdup(w);
        }
        if (!n) words[n++] = sim_strdup("ok");
        sim_prompt_from_words(p, words, (int)n, (int)in->token_input.n_tokens);
        return sim_strdup("");
    }
    case RKLLM_INPUT_EMBED: {
        char** words = sim_xcalloc(1, sizeof(char*));
        words[0] = sim_strdup("embed");
        sim_prompt_from_words(p, words, 1, (int)in->embed_input.n_tokens);
        return sim_strdup("");
    }
    default:
        return NULL;
    }
    pthread_mutex_lock(&h->lock);
    const char* sys = h->template_set ? h->tmpl_system : DEFAULT_SYSTEM;
    const char* pre = h->template_set ? h->tmpl_prefix : DEFAULT_PREFIX;
    const char* post = h->template_set ? h->tmpl_postfix : DEFAULT_POSTFIX;
    strbuf sb;
    sb_init(&sb);
    /* rkllm-runtime.md §1.2 table, set_chat_template(system_prompt, prompt_prefix, prompt_postfix). The system
     * prompt is only sent at the start of a conversation (empty KV cache). */
    if (h->kv_len == 0) sb_puts(&sb, sys);
    sb_puts(&sb, pre);
    sb_puts(&sb, text ? text : "");
    sb_puts(&sb, post);
    h->system_tokens = count_ws_words(sys);
    pthread_mutex_unlock(&h->lock);
    free(multimodal_text);
    char* templated = sb_take(&sb);
    sim_prompt_parse(templated, p);
    return templated;
}

/* context_reply=1: the model's view is the whole KV context (the cache's text, then this run's input), so
 * the echo words and the leading digest word come from it; the prompt token count stays this run's own. */
static void context_view(sim_handle* h, const char* templated, int text_input, const char* lora, sim_prompt* p) {
    pthread_mutex_lock(&h->lock);
    char* context = sim_kv_context(h, templated);
    uint32_t digest = sim_kv_digest(h, context, lora);
    pthread_mutex_unlock(&h->lock);
    if (text_input) { /* token / embedding input keeps its own echo words; the digest covers the cache */
        int tokens = p->prompt_tokens;
        sim_prompt_free(p);
        sim_prompt_parse(context, p);
        p->prompt_tokens = tokens;
    }
    p->has_digest = 1;
    p->digest = digest;
    free(context);
}

static const char* find_lora(sim_handle* h, const RKLLMInferParam* infer) {
    if (!infer || !infer->lora_params || !infer->lora_params->lora_adapter_name) return NULL;
    for (int i = 0; i < h->n_loras; i++)
        if (!strcmp(h->loras[i].name, infer->lora_params->lora_adapter_name)) return h->loras[i].name;
    return NULL;
}

static void save_prompt_cache(const RKLLMInferParam* infer, const char* templated) {
    if (!infer || !infer->prompt_cache_params || !infer->prompt_cache_params->save_prompt_cache) return;
    const char* path = infer->prompt_cache_params->prompt_cache_path;
    FILE* f = path ? fopen(path, "wb") : NULL;
    if (!f) {
        fprintf(stderr, "E rkllm: failed to save prompt cache to %s\n", path ? path : "(null)");
        return;
    }
    fprintf(f, "RKSIM-PROMPT-CACHE\n%s", templated);
    fclose(f);
}

/* The simulator's own hidden state of a token (rkllm.h fixes only the shape): a hash of the token id and
 * the column, in [-1, 1]. One row per prompt token, so the same text always gives the same rows, rows of
 * different words differ, and pooling (last token, mean) can be checked exactly from Python
 * (tests/simkit/replies.py hidden_row mirrors this). */
static float hidden_value(int32_t token, int column) {
    uint32_t x = (uint32_t)token * 2654435761u ^ (uint32_t)(column + 1) * 40503u;
    x ^= x >> 13;
    x *= 0x5bd1e995u;
    x ^= x >> 15;
    return (float)(x % 2001u) / 1000.0f - 1.0f;
}

/* Special modes: one result carrying hidden states or logits, then FINISH. Shapes follow rkllm.h:
 * RKLLMResultLastHiddenLayer is num_tokens x embd_size floats (one row per prompt token), RKLLMResultLogits
 * num_tokens x vocab_size; logits are only filled in GET_LOGITS mode (rkllm-runtime.md §1.2, "Callback
 * payload rules"). The values themselves are the simulator's own deterministic pattern. */
static int run_special(sim_handle* h, void* userdata, const RKLLMInferParam* infer, const sim_prompt* p) {
    RKLLMResult r;
    memset(&r, 0, sizeof(r));
    r.text = "";
    float* buf = NULL;
    LLMCallState state = RKLLM_RUN_NORMAL;
    if (infer->mode == RKLLM_INFER_GET_LAST_HIDDEN_LAYER) {
        int e = h->model.embd_size > 0 ? h->model.embd_size : 64;
        int t = p->prompt_tokens;
        buf = sim_xcalloc((size_t)e * (size_t)t, sizeof(float));
        for (int row = 0; row < t; row++) {
            int32_t token = sim_token_id(p->words[row % p->n_words]);
            for (int k = 0; k < e; k++) buf[(size_t)row * (size_t)e + (size_t)k] = hidden_value(token, k);
        }
        r.last_hidden_layer.hidden_states = buf;
        r.last_hidden_layer.embd_size = e;
        r.last_hidden_layer.num_tokens = t;
#if SIM_ABI == 110
        /* rkllm-runtime.md §1.3: 1.1.x reports hidden states with state GET_LAST_HIDDEN_LAYER=4. */
        state = RKLLM_RUN_GET_LAST_HIDDEN_LAYER;
#endif
    }
#if SIM_ABI >= 120
    else if (infer->mode == RKLLM_INFER_GET_LOGITS) {
        int v = h->model.vocab_size > 0 ? h->model.vocab_size : 32000;
        buf = sim_xcalloc((size_t)v, sizeof(float));
        char first[1024];
        snprintf(first, sizeof(first), " %s", p->words[0]);
        buf[sim_token_id(first) % v] = 10.0f;
        r.logits.logits = buf;
        r.logits.vocab_size = v;
        r.logits.num_tokens = 1;
    }
#endif
    deliver(h, userdata, &r, state);
    free(buf);
    memset(&r, 0, sizeof(r));
    atomic_store(&h->generating, 0);
    deliver(h, userdata, &r, RKLLM_RUN_FINISH);
    set_finish(h, "stop", 0);
    return 0;
}

static int run_body(sim_handle* h, RKLLMInput* in, RKLLMInferParam* infer, void* userdata, int is_async);

int sim_run_impl(sim_handle* h, RKLLMInput* in, RKLLMInferParam* infer, void* userdata, int is_async) {
    int rc = run_body(h, in, infer, userdata, is_async);
    atomic_store(&h->generating, 0);
    return rc;
}

static int run_body(sim_handle* h, RKLLMInput* in, RKLLMInferParam* infer, void* userdata, int is_async) {
    if (!in) {
        fprintf(stderr, "E rkllm: rkllm_run: input is NULL\n");
        return -1;
    }
#if SIM_ABI >= 130
    /* rkllm-runtime.md §1.2 table, rkllm_run: "userdata non-NULL overrides result_userdata (v1.3.0)". */
    if (!userdata) userdata = h->result_userdata;
#endif
    char* json_in = sim_run_json(in, infer, userdata, is_async);
    pthread_mutex_lock(&h->lock);
    free(h->run_json_in);
    h->run_json_in = json_in;
    h->n_runs++;
    /* rkllm-runtime.md §1.1: keep_history exists from 1.2.0; 0 = the run starts from an empty KV cache.
     * Before 1.2.0 every run was independent ("multi-turn" arrived in 1.2.0, §5). */
#if SIM_HAS_KEEP_HISTORY
    int keep_history = infer ? infer->keep_history : 0;
#else
    int keep_history = 0;
#endif
    if (!keep_history) {
        h->kv_len = 0;
        sim_kv_reset(h);
    }
    pthread_mutex_unlock(&h->lock);

    sim_prompt prompt;
    int extra = 0;
    char* templated = build_prompt(h, in, &prompt, &extra);
    if (!templated) {
        fprintf(stderr, "E rkllm: unsupported input type %d\n", (int)in->input_type);
        set_finish(h, "error", 0);
        return -1;
    }
    sim_faults faults;
    sim_run_faults(&h->faults, templated, &faults);
    const char* lora = find_lora(h, infer);
    int text_input = in->input_type == RKLLM_INPUT_PROMPT || in->input_type == RKLLM_INPUT_MULTIMODAL;
    if (h->model.context_reply) context_view(h, templated, text_input, lora, &prompt);
    int prompt_tokens = prompt.prompt_tokens + extra;
    int cache_hit = 0;
    pthread_mutex_lock(&h->lock);
    if (h->prompt_cache_text && in->input_type == RKLLM_INPUT_PROMPT && h->kv_len == 0 &&
        !strncmp(templated, h->prompt_cache_text, strlen(h->prompt_cache_text)))
        cache_hit = count_ws_words(h->prompt_cache_text);
    free(h->run_templated);
    h->run_templated = sim_strdup(templated);
    h->run_prompt_tokens = prompt_tokens;
    h->run_prefilled = prompt_tokens - cache_hit;
    int kv = h->kv_len;
    pthread_mutex_unlock(&h->lock);

    RKLLMResult r;
    memset(&r, 0, sizeof(r));
    if (kv + prompt_tokens > h->max_context_len) {
        fprintf(stderr, "E rkllm: the input tokens[%d] exceed the max context length[%d]\n", kv + prompt_tokens,
                h->max_context_len);
        atomic_store(&h->generating, 0);
        deliver(h, userdata, &r, RKLLM_RUN_ERROR);
        set_finish(h, "error", 0);
        sim_prompt_free(&prompt);
        free(templated);
        return -1;
    }

    /* How many tokens: the reply length ([[n=]] or the header's reply_tokens), cut by max_new_tokens. */
    long long limit = prompt.n_directive >= 0 ? prompt.n_directive : h->model.reply_tokens;
    long long max_new = h->param.max_new_tokens;
#if SIM_ABI >= 130
    /* rkllm-runtime.md §1.2: RKLLMInferParam.max_new_tokens "<=0 = use init value". */
    if (infer && infer->max_new_tokens > 0) max_new = infer->max_new_tokens;
#endif
    if (max_new > 0 && limit > max_new) limit = max_new;

    /* A run that will hang is deaf to rkllm_abort from its start, so "abort before the hang point" cannot
     * race with the fault and tests see the same hang every time. */
    int deaf = faults.hang_at_token >= 0 && faults.hang_at_token < limit;
    atomic_int never_abort = 0;
    atomic_int* abort_flag = deaf ? &never_abort : &h->abort_requested;
    long long t0 = sim_now_us();
    sim_slow_prefill(&faults);
    int aborted = sim_sleep_us(h->prefill_us * (prompt_tokens - cache_hit), abort_flag);
    long long t1 = sim_now_us();
    pthread_mutex_lock(&h->lock);
    h->kv_len = kv = kv + prompt_tokens;
    if (text_input && !extra) sim_kv_append(h, templated, lora);
    else sim_kv_mark_opaque(h);
    pthread_mutex_unlock(&h->lock);
    save_prompt_cache(infer, templated);

    if (infer && infer->mode != RKLLM_INFER_GENERATE && !aborted) {
        int rc = run_special(h, userdata, infer, &prompt);
        sim_prompt_free(&prompt);
        free(templated);
        return rc;
    }

    sim_stream_kind kind = SIM_STREAM_ECHO;
    const char* garbage = NULL;
#if SIM_MULTI_INSTANCE_BROKEN
    /* rkllm-runtime.md §3: before 1.2.2 two handles in one process output only commas (#367). */
    if (sim_live_handles() > 1) {
        kind = SIM_STREAM_GARBAGE;
        garbage = ",";
    }
#endif
    if (kind == SIM_STREAM_ECHO && sim_state_is_overcommitted(h->reservation_id)) {
        /* rkllm-runtime.md §6: degenerate "&&&&" output (rkllama#102); here caused by RKLLM_SIM_OVERCOMMIT=garbage. */
        kind = SIM_STREAM_GARBAGE;
        garbage = "&&&&";
    }
    pthread_mutex_lock(&h->lock);
    char* tool_name = sim_strdup(h->tool_name);
    pthread_mutex_unlock(&h->lock);
    if (kind == SIM_STREAM_ECHO && prompt.tool && tool_name) kind = SIM_STREAM_TOOL;
    sim_stream stream;
    sim_stream_init(&stream, &prompt, kind, lora, tool_name, garbage);

    int generated = 0;
    const char* finish = "stop";
    int paused = 0;
    sim_token tok;
    while (!aborted && generated < limit) {
        if (generated == faults.hang_at_token) {
            /* Fault hang_at_token: stuck inside the NPU, deaf to rkllm_abort. */
            for (;;) pause();
        }
        if (generated == faults.segv_at_token) {
            fflush(stderr);
            raise(SIGSEGV);
        }
        if (generated == faults.exit_at_token) _exit(3);
        if (kv >= h->max_context_len) {
            finish = "context";
            break;
        }
        if (h->token_us > 0 && sim_sleep_us(h->token_us, abort_flag)) {
            aborted = 1;
            break;
        }
        if (atomic_load(abort_flag)) {
            aborted = 1;
            break;
        }
        if (!sim_stream_next(&stream, &tok)) break;
        r.text = tok.text;
        r.token_id = tok.token_id;
        int ret = deliver(h, userdata, &r, tok.waiting ? RKLLM_RUN_WAITING : RKLLM_RUN_NORMAL);
        generated++;
        pthread_mutex_lock(&h->lock);
        h->kv_len = ++kv;
        sim_kv_append(h, tok.text, lora);
        pthread_mutex_unlock(&h->lock);
        if (ret == 1) {
            /* rkllm-runtime.md §1.2: callback return 1 = pause, KV cache kept (1.2.1+). */
            paused = 1;
            break;
        }
    }
    long long t2 = sim_now_us();
    /* Inference is over from here on: the FINISH callback reports a finished run, a paused run has returned
     * its last token (rkllm-runtime.md §1.2 table: rkllm_abort interrupts *ongoing* inference). */
    atomic_store(&h->generating, 0);
    if (aborted) finish = "abort";
    else if (atomic_load(&h->abort_requested)) {
        /* the run ended by itself although it was asked to abort: that abort interrupted nothing */
        pthread_mutex_lock(&h->lock);
        h->n_unused_aborts++;
        pthread_mutex_unlock(&h->lock);
    }
    else if (!paused && generated >= limit && max_new > 0 && generated == max_new) finish = "length";
    if (paused) {
        set_finish(h, "paused", generated);
    } else {
        memset(&r, 0, sizeof(r));
#if SIM_HAS_PERF
        /* rkllm-runtime.md §1.2: perf is only filled at RKLLM_RUN_FINISH; memory_usage_mb (VmHWM,
         * MB; what it covers depends on RKLLM_SIM_NPU_MEMORY, npu_buffers.c). */
        r.perf.prefill_time_ms = (float)(t1 - t0) / 1000.0f;
        r.perf.prefill_tokens = prompt_tokens - cache_hit;
        r.perf.generate_time_ms = (float)(t2 - t1) / 1000.0f;
        r.perf.generate_tokens = generated;
        r.perf.memory_usage_mb = sim_memory_usage_mb(h->footprint);
#else
        (void)t0;
        (void)t1;
        (void)t2;
#endif
        set_finish(h, finish, generated);
        deliver(h, userdata, &r, RKLLM_RUN_FINISH);
    }
    free(tool_name);
    sim_prompt_free(&prompt);
    free(templated);
    return 0;
}

SIM_API int rkllm_run(LLMHandle handle, RKLLMInput* rkllm_input, RKLLMInferParam* rkllm_infer_params,
                      void* userdata) {
    sim_handle* h = sim_handle_check(handle, "rkllm_run");
    if (!h) return -1;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&h->running, &expected, 1)) {
        fprintf(stderr, "E rkllm: rkllm_run: the model is already running\n");
        return -1;
    }
    atomic_store(&h->generating, 1);
    atomic_store(&h->abort_requested, 0);
    long long job = sim_npu_job_enter(h->model_path, rkllm_input);
    int rc = sim_run_impl(h, rkllm_input, rkllm_infer_params, userdata, 0);
    sim_npu_job_leave(job);
    atomic_store(&h->running, 0);
    return rc;
}

/* rkllm-runtime.md §1.2 table and §3: rkllm_abort is documented as "interrupt ongoing inference" and nothing
 * else; what it does to a handle with no inference in progress is undocumented. The simulator keeps its
 * flag (the next rkllm_run clears it, as the binding assumes) and counts such calls, so tests can assert
 * that none ever happens: before a run started, after it returned, or once it reported FINISH/ERROR. */
SIM_API int rkllm_abort(LLMHandle handle) {
    sim_handle* h = sim_handle_check(handle, "rkllm_abort");
    if (!h) return -1;
    int idle = !atomic_load(&h->running) || !atomic_load(&h->generating);
    sim_abort_wake(&h->abort_requested);
    pthread_mutex_lock(&h->lock);
    h->n_aborts++;
    if (idle) h->n_idle_aborts++;
    pthread_mutex_unlock(&h->lock);
    return 0;
}

/* rkllm-runtime.md §1.2 table: returns 1 during prefill/decode, 0 idle (#502; the 1.1-1.2.3 header comment
 * says the opposite and is wrong). */
SIM_API int rkllm_is_running(LLMHandle handle) {
    sim_handle* h = sim_handle_check(handle, "rkllm_is_running");
    if (!h) return 0;
    return atomic_load(&h->running) ? 1 : 0;
}
