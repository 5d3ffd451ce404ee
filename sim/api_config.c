/* Per-handle conversation configuration: chat template, KV-cache management, function tools, cross
 * attention (1.2.0+ / 1.2.1+ only). */
#include <stdio.h>
#include <stdlib.h>

#include "handle.h"
#include "kv_context.h"
#include "reply.h"
#include "strbuf.h"

#if SIM_HAS_CHAT_TEMPLATE
SIM_API int rkllm_set_chat_template(LLMHandle handle, const char* system_prompt, const char* prompt_prefix,
                                    const char* prompt_postfix) {
    sim_handle* h = sim_handle_check(handle, "rkllm_set_chat_template");
    if (!h) return -1;
    pthread_mutex_lock(&h->lock);
    free(h->tmpl_system);
    free(h->tmpl_prefix);
    free(h->tmpl_postfix);
    h->tmpl_system = sim_strdup(system_prompt ? system_prompt : "");
    h->tmpl_prefix = sim_strdup(prompt_prefix ? prompt_prefix : "");
    h->tmpl_postfix = sim_strdup(prompt_postfix ? prompt_postfix : "");
    h->template_set = 1;
    pthread_mutex_unlock(&h->lock);
    return 0;
}

static int clear_kv(sim_handle* h, int keep_system_prompt) {
    pthread_mutex_lock(&h->lock);
    h->kv_len = keep_system_prompt ? (h->kv_len < h->system_tokens ? h->kv_len : h->system_tokens) : 0;
    if (keep_system_prompt && h->kv_len) sim_kv_keep_system(h, h->template_set ? h->tmpl_system : "");
    else sim_kv_reset(h);
    h->n_clear_kv++;
    h->last_clear_keep_system = keep_system_prompt;
    pthread_mutex_unlock(&h->lock);
    return 0;
}
#endif

#if SIM_ABI == 120
/* rkllm-runtime.md §1.2 table: "1.2.0 signature was (LLMHandle, int keep_system_prompt)". */
SIM_API int rkllm_clear_kv_cache(LLMHandle handle, int keep_system_prompt) {
    sim_handle* h = sim_handle_check(handle, "rkllm_clear_kv_cache");
    if (!h) return -1;
    return clear_kv(h, keep_system_prompt);
}
#elif SIM_ABI >= 121
/* rkllm-runtime.md §1.2 table: NULL/NULL clears everything; ranges are per batch. The simulator keeps one
 * sequence, so a range [start, end) of batch 0 drops those positions. */
SIM_API int rkllm_clear_kv_cache(LLMHandle handle, int keep_system_prompt, int* start_pos, int* end_pos) {
    sim_handle* h = sim_handle_check(handle, "rkllm_clear_kv_cache");
    if (!h) return -1;
    if (start_pos && end_pos) {
        pthread_mutex_lock(&h->lock);
        int s = start_pos[0] < 0 ? 0 : start_pos[0];
        int e = end_pos[0] > h->kv_len ? h->kv_len : end_pos[0];
        if (e > s) {
            h->kv_len -= e - s;
            sim_kv_mark_opaque(h);
        }
        h->n_clear_kv++;
        h->last_clear_keep_system = keep_system_prompt;
        pthread_mutex_unlock(&h->lock);
        return 0;
    }
    return clear_kv(h, keep_system_prompt);
}

SIM_API int rkllm_get_kv_cache_size(LLMHandle handle, int* cache_sizes) {
    sim_handle* h = sim_handle_check(handle, "rkllm_get_kv_cache_size");
    if (!h || !cache_sizes) return -1;
    pthread_mutex_lock(&h->lock);
    int n = h->param.extend_param.n_batch > 0 ? h->param.extend_param.n_batch : 1;
    for (int i = 0; i < n; i++) cache_sizes[i] = h->kv_len;
    pthread_mutex_unlock(&h->lock);
    return 0;
}

SIM_API int rkllm_set_function_tools(LLMHandle handle, const char* system_prompt, const char* tools,
                                     const char* tool_response_str) {
    sim_handle* h = sim_handle_check(handle, "rkllm_set_function_tools");
    if (!h) return -1;
    pthread_mutex_lock(&h->lock);
    free(h->tools_system);
    free(h->tools_json);
    free(h->tools_response);
    free(h->tool_name);
    h->tools_system = sim_strdup(system_prompt);
    h->tools_json = sim_strdup(tools);
    h->tools_response = sim_strdup(tool_response_str);
    h->tool_name = sim_first_tool_name(tools);
    pthread_mutex_unlock(&h->lock);
    return 0;
}

SIM_API int rkllm_set_cross_attn_params(LLMHandle handle, RKLLMCrossAttnParam* cross_attn_params) {
    sim_handle* h = sim_handle_check(handle, "rkllm_set_cross_attn_params");
    if (!h || !cross_attn_params) return -1;
    /* rkllm-runtime.md §1.2 table: "requires extend_param.use_cross_attn=1". */
    if (!h->param.extend_param.use_cross_attn) {
        fprintf(stderr, "E rkllm: cross attention is not enabled (extend_param.use_cross_attn=0)\n");
        return -1;
    }
    pthread_mutex_lock(&h->lock);
    h->cross_attn_tokens = cross_attn_params->num_tokens;
    pthread_mutex_unlock(&h->lock);
    return 0;
}
#endif
