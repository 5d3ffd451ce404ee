/* Simulator-only symbols: JSON views of what the library received, so binding tests can assert that
 * every field crossed the ABI intact. Not part of any real librkllmrt. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handle.h"
#include "npu_memory.h"
#include "strbuf.h"

static void put_sampling_fields(strbuf* sb, int* f, int top_k, float top_p, float temperature, float repeat,
                                float freq, float presence, int mirostat, float tau, float eta) {
    sb_kv_int(sb, f, "top_k", top_k);
    sb_kv_num(sb, f, "top_p", top_p);
    sb_kv_num(sb, f, "temperature", temperature);
    sb_kv_num(sb, f, "repeat_penalty", repeat);
    sb_kv_num(sb, f, "frequency_penalty", freq);
    sb_kv_num(sb, f, "presence_penalty", presence);
    sb_kv_int(sb, f, "mirostat", mirostat);
    sb_kv_num(sb, f, "mirostat_tau", tau);
    sb_kv_num(sb, f, "mirostat_eta", eta);
}

char* sim_init_json(const sim_handle* h, const RKLLMParam* p, const void* callback) {
    strbuf sb;
    sb_init(&sb);
    int f = 1;
    sb_puts(&sb, "{");
    sb_kv_str(&sb, &f, "runtime_version", SIM_VERSION_STRING);
    sb_kv_str(&sb, &f, "model_path", p->model_path);
    sb_kv_int(&sb, &f, "max_context_len", p->max_context_len);
    sb_kv_int(&sb, &f, "max_new_tokens", p->max_new_tokens);
#if SIM_ABI >= 120
    sb_kv_int(&sb, &f, "n_keep", p->n_keep);
#endif
    put_sampling_fields(&sb, &f, p->top_k, p->top_p, p->temperature, p->repeat_penalty, p->frequency_penalty,
                        p->presence_penalty, p->mirostat, p->mirostat_tau, p->mirostat_eta);
    sb_kv_bool(&sb, &f, "skip_special_token", p->skip_special_token);
#if SIM_ABI >= 130
    sb_kv_bool(&sb, &f, "ignore_eos_token", p->ignore_eos_token);
#endif
    sb_kv_bool(&sb, &f, "is_async", p->is_async);
#if SIM_ABI < 130
    sb_kv_str(&sb, &f, "img_start", p->img_start);
    sb_kv_str(&sb, &f, "img_end", p->img_end);
    sb_kv_str(&sb, &f, "img_content", p->img_content);
#endif
    const RKLLMExtendParam* e = &p->extend_param;
    sb_key(&sb, &f, "extend_param");
    sb_puts(&sb, "{");
    int g = 1;
    sb_kv_int(&sb, &g, "base_domain_id", e->base_domain_id);
#if SIM_ABI >= 120
    sb_kv_int(&sb, &g, "embed_flash", e->embed_flash);
    sb_kv_int(&sb, &g, "enabled_cpus_num", e->enabled_cpus_num);
    sb_kv_int(&sb, &g, "enabled_cpus_mask", e->enabled_cpus_mask);
#endif
#if SIM_ABI >= 121
    sb_kv_int(&sb, &g, "n_batch", e->n_batch);
    sb_kv_int(&sb, &g, "use_cross_attn", e->use_cross_attn);
#endif
    int nonzero = 0;
    for (size_t i = 0; i < sizeof(e->reserved); i++) nonzero += e->reserved[i] != 0;
    sb_kv_int(&sb, &g, "reserved_nonzero_bytes", nonzero);
    sb_puts(&sb, "}");
#if SIM_ABI >= 130
    const RKLLMCallback* cb = callback;
    sb_kv_bool(&sb, &f, "callback_struct", cb != NULL);
    sb_kv_bool(&sb, &f, "result_callback", cb && cb->result_callback);
    sb_kv_bool(&sb, &f, "result_userdata", cb && cb->result_userdata);
    sb_kv_bool(&sb, &f, "tokenizer_callback", cb && cb->tokenizer_callback);
    sb_kv_bool(&sb, &f, "tokenizer_userdata", cb && cb->tokenizer_userdata);
    sb_kv_bool(&sb, &f, "embed_callback", cb && cb->embed_callback);
    sb_kv_bool(&sb, &f, "embed_userdata", cb && cb->embed_userdata);
#else
    sb_kv_bool(&sb, &f, "result_callback", callback != NULL);
#endif
    sb_kv_int(&sb, &f, "effective_max_context_len", h->max_context_len);
    sb_kv_int(&sb, &f, "footprint_bytes", h->footprint);
    sb_kv_int(&sb, &f, "reservation_id", h->reservation_id);
    sb_kv_int(&sb, &f, "model_file_bytes", h->model.file_size);
    sb_kv_int(&sb, &f, "max_context_limit", h->model.max_context_limit);
    sb_puts(&sb, "}");
    return sb_take(&sb);
}

static const char* input_type_name(int t) {
    switch (t) {
    case RKLLM_INPUT_PROMPT: return "prompt";
    case RKLLM_INPUT_TOKEN: return "token";
    case RKLLM_INPUT_EMBED: return "embed";
    case RKLLM_INPUT_MULTIMODAL: return "multimodal";
    default: return "unknown";
    }
}

static void put_multimodal(strbuf* sb, const RKLLMMultiModalInput* m) {
    int g = 1;
    sb_puts(sb, "{");
    sb_kv_str(sb, &g, "prompt", m->prompt);
#if SIM_ABI >= 130
    sb_kv_bool(sb, &g, "image_embed", m->image.image_embed != NULL);
    sb_kv_int(sb, &g, "n_image_tokens", (long long)m->image.n_image_tokens);
    sb_kv_int(sb, &g, "n_image", (long long)m->image.n_image);
    sb_kv_str(sb, &g, "image_start", m->image.image_start);
    sb_kv_str(sb, &g, "image_end", m->image.image_end);
    sb_kv_str(sb, &g, "image_content", m->image.image_content);
    sb_kv_int(sb, &g, "image_width", (long long)m->image.image_width);
    sb_kv_int(sb, &g, "image_height", (long long)m->image.image_height);
    sb_kv_bool(sb, &g, "video_embed", m->video.video_embed != NULL);
    sb_kv_int(sb, &g, "n_frame_tokens", (long long)m->video.n_frame_tokens);
    sb_kv_int(sb, &g, "n_frame_per_video", (long long)m->video.n_frame_per_video);
    sb_kv_int(sb, &g, "n_video", (long long)m->video.n_video);
    sb_kv_str(sb, &g, "video_start", m->video.video_start);
    sb_kv_str(sb, &g, "video_end", m->video.video_end);
    sb_kv_str(sb, &g, "video_content", m->video.video_content);
    sb_kv_int(sb, &g, "frame_width", (long long)m->video.frame_width);
    sb_kv_int(sb, &g, "frame_height", (long long)m->video.frame_height);
#else
    sb_kv_bool(sb, &g, "image_embed", m->image_embed != NULL);
    sb_kv_int(sb, &g, "n_image_tokens", (long long)m->n_image_tokens);
#if SIM_ABI >= 121
    sb_kv_int(sb, &g, "n_image", (long long)m->n_image);
    sb_kv_int(sb, &g, "image_width", (long long)m->image_width);
    sb_kv_int(sb, &g, "image_height", (long long)m->image_height);
#endif
#endif
    sb_puts(sb, "}");
}

char* sim_run_json(const RKLLMInput* in, const RKLLMInferParam* infer, const void* userdata, int is_async) {
    strbuf sb;
    sb_init(&sb);
    int f = 1;
    sb_puts(&sb, "{");
    sb_kv_bool(&sb, &f, "async", is_async);
    sb_kv_bool(&sb, &f, "userdata", userdata != NULL);
#if SIM_ABI >= 121
    sb_kv_str(&sb, &f, "role", in->role);
    sb_kv_bool(&sb, &f, "enable_thinking", in->enable_thinking);
#endif
    sb_kv_str(&sb, &f, "input_type", input_type_name(in->input_type));
    switch (in->input_type) {
    case RKLLM_INPUT_PROMPT: sb_kv_str(&sb, &f, "prompt", in->prompt_input); break;
    case RKLLM_INPUT_TOKEN:
        sb_key(&sb, &f, "token_ids");
        sb_puts(&sb, "[");
        for (size_t i = 0; i < in->token_input.n_tokens && in->token_input.input_ids; i++)
            sb_printf(&sb, "%s%d", i ? "," : "", in->token_input.input_ids[i]);
        sb_puts(&sb, "]");
        sb_kv_int(&sb, &f, "n_tokens", (long long)in->token_input.n_tokens);
        break;
    case RKLLM_INPUT_EMBED:
        sb_kv_int(&sb, &f, "n_tokens", (long long)in->embed_input.n_tokens);
        sb_kv_bool(&sb, &f, "embed", in->embed_input.embed != NULL);
        if (in->embed_input.embed && in->embed_input.n_tokens) sb_kv_num(&sb, &f, "embed_first", in->embed_input.embed[0]);
        break;
    case RKLLM_INPUT_MULTIMODAL:
        sb_key(&sb, &f, "multimodal");
        put_multimodal(&sb, &in->multimodal_input);
        break;
    default: break;
    }
    sb_kv_bool(&sb, &f, "infer_params", infer != NULL);
    if (infer) {
        sb_kv_int(&sb, &f, "mode", infer->mode);
        sb_kv_str(&sb, &f, "lora_adapter_name", infer->lora_params ? infer->lora_params->lora_adapter_name : NULL);
        sb_key(&sb, &f, "prompt_cache");
        if (infer->prompt_cache_params) {
            int g = 1;
            sb_puts(&sb, "{");
            sb_kv_int(&sb, &g, "save_prompt_cache", infer->prompt_cache_params->save_prompt_cache);
            sb_kv_str(&sb, &g, "prompt_cache_path", infer->prompt_cache_params->prompt_cache_path);
            sb_puts(&sb, "}");
        } else {
            sb_puts(&sb, "null");
        }
#if SIM_ABI >= 120
        sb_kv_int(&sb, &f, "keep_history", infer->keep_history);
#endif
#if SIM_ABI >= 130
        sb_kv_int(&sb, &f, "max_new_tokens", infer->max_new_tokens);
        sb_key(&sb, &f, "sampling");
        if (infer->sampling_params) {
            const RKLLMSamplingParam* s = infer->sampling_params;
            int g = 1;
            sb_puts(&sb, "{");
            put_sampling_fields(&sb, &g, s->top_k, s->top_p, s->temperature, s->repeat_penalty, s->frequency_penalty,
                                s->presence_penalty, s->mirostat, s->mirostat_tau, s->mirostat_eta);
            sb_puts(&sb, "}");
        } else {
            sb_puts(&sb, "null");
        }
#endif
    }
    sb_puts(&sb, "}");
    return sb_take(&sb);
}

SIM_API const char* rkllm_sim_last_init(void* handle) {
    sim_handle* h = sim_handle_check(handle, "rkllm_sim_last_init");
    return h ? h->init_json : NULL;
}

SIM_API const char* rkllm_sim_last_run(void* handle) {
    sim_handle* h = sim_handle_check(handle, "rkllm_sim_last_run");
    if (!h) return NULL;
    pthread_mutex_lock(&h->lock);
    strbuf sb;
    sb_init(&sb);
    int f = 1;
    sb_puts(&sb, "{");
    sb_key(&sb, &f, "input");
    sb_puts(&sb, h->run_json_in ? h->run_json_in : "null");
    sb_kv_str(&sb, &f, "templated_prompt", h->run_templated);
    sb_kv_int(&sb, &f, "prompt_tokens", h->run_prompt_tokens);
    sb_kv_int(&sb, &f, "prefilled_tokens", h->run_prefilled);
    sb_kv_str(&sb, &f, "finish", h->run_finish);
    sb_kv_int(&sb, &f, "generated_tokens", h->run_generated);
    sb_kv_int(&sb, &f, "kv_cache_len", h->kv_len);
    sb_kv_int(&sb, &f, "runs", h->n_runs);
    sb_puts(&sb, "}");
    free(h->run_json_out);
    h->run_json_out = sb_take(&sb);
    pthread_mutex_unlock(&h->lock);
    return h->run_json_out;
}

SIM_API const char* rkllm_sim_handle(void* handle) {
    sim_handle* h = sim_handle_check(handle, "rkllm_sim_handle");
    if (!h) return NULL;
    pthread_mutex_lock(&h->lock);
    strbuf sb;
    sb_init(&sb);
    int f = 1;
    sb_puts(&sb, "{");
    sb_kv_str(&sb, &f, "runtime_version", SIM_VERSION_STRING);
    sb_kv_str(&sb, &f, "model_path", h->model_path);
    sb_kv_int(&sb, &f, "footprint_bytes", h->footprint);
    sb_kv_int(&sb, &f, "reservation_id", h->reservation_id);
    sb_kv_bool(&sb, &f, "running", atomic_load(&h->running));
    sb_kv_int(&sb, &f, "kv_cache_len", h->kv_len);
    sb_kv_int(&sb, &f, "system_tokens", h->system_tokens);
    sb_key(&sb, &f, "chat_template");
    if (h->template_set) {
        int g = 1;
        sb_puts(&sb, "{");
        sb_kv_str(&sb, &g, "system_prompt", h->tmpl_system);
        sb_kv_str(&sb, &g, "prompt_prefix", h->tmpl_prefix);
        sb_kv_str(&sb, &g, "prompt_postfix", h->tmpl_postfix);
        sb_puts(&sb, "}");
    } else {
        sb_puts(&sb, "null");
    }
    sb_key(&sb, &f, "function_tools");
    if (h->tools_json || h->tools_system || h->tools_response) {
        int g = 1;
        sb_puts(&sb, "{");
        sb_kv_str(&sb, &g, "system_prompt", h->tools_system);
        sb_kv_str(&sb, &g, "tools", h->tools_json);
        sb_kv_str(&sb, &g, "tool_response_str", h->tools_response);
        sb_kv_str(&sb, &g, "first_tool_name", h->tool_name);
        sb_puts(&sb, "}");
    } else {
        sb_puts(&sb, "null");
    }
    sb_key(&sb, &f, "loras");
    sb_puts(&sb, "[");
    for (int i = 0; i < h->n_loras; i++) {
        int g = 1;
        sb_puts(&sb, i ? ",{" : "{");
        sb_kv_str(&sb, &g, "name", h->loras[i].name);
        sb_kv_str(&sb, &g, "path", h->loras[i].path);
        sb_kv_num(&sb, &g, "scale", h->loras[i].scale);
        sb_puts(&sb, "}");
    }
    sb_puts(&sb, "]");
    sb_kv_str(&sb, &f, "prompt_cache_loaded", h->prompt_cache_path);
    sb_kv_int(&sb, &f, "clear_kv_cache_calls", h->n_clear_kv);
    sb_kv_int(&sb, &f, "last_clear_keep_system_prompt", h->last_clear_keep_system);
    sb_kv_int(&sb, &f, "cross_attn_num_tokens", h->cross_attn_tokens);
    sb_kv_int(&sb, &f, "runs", h->n_runs);
    sb_kv_int(&sb, &f, "aborts", h->n_aborts);
    sb_kv_int(&sb, &f, "aborts_while_idle", h->n_idle_aborts);
    sb_kv_int(&sb, &f, "aborts_without_effect", h->n_unused_aborts);
    sb_kv_int(&sb, &f, "live_handles_in_process", sim_live_handles());
    sb_puts(&sb, "}");
    free(h->handle_json);
    h->handle_json = sb_take(&sb);
    pthread_mutex_unlock(&h->lock);
    return h->handle_json;
}

SIM_API const char* rkllm_sim_state(void) {
    static __thread char* last;
    free(last);
    last = sim_state_json();
    return last;
}

SIM_API const char* rkllm_sim_version(void) { return SIM_VERSION_STRING; }
