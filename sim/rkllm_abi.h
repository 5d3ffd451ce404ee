/* The public types and functions of librkllmrt, one definition per ABI generation (SIM_ABI from
 * flavour.h). Layouts follow the tables in tests/data/rkllm-abi/; layout_asserts.h checks every size and offset.
 * Written in C: the vendor header is C++-only (rkllm-runtime.md §1.2: "<cstdint>, bare bool"), but
 * C bool/int types have the same sizes and alignment on LP64. */
#ifndef RKSIM_RKLLM_ABI_H
#define RKSIM_RKLLM_ABI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "flavour.h"

typedef void* LLMHandle;

/* rkllm-runtime.md §1.2 enums; §1.3: GET_LAST_HIDDEN_LAYER=4 exists only in 1.1.x. */
typedef enum {
    RKLLM_RUN_NORMAL = 0,
    RKLLM_RUN_WAITING = 1,
    RKLLM_RUN_FINISH = 2,
    RKLLM_RUN_ERROR = 3,
#if SIM_ABI == 110
    RKLLM_RUN_GET_LAST_HIDDEN_LAYER = 4,
#endif
} LLMCallState;

typedef enum {
    RKLLM_INPUT_PROMPT = 0,
    RKLLM_INPUT_TOKEN = 1,
    RKLLM_INPUT_EMBED = 2,
    RKLLM_INPUT_MULTIMODAL = 3,
} RKLLMInputType;

typedef enum {
    RKLLM_INFER_GENERATE = 0,
    RKLLM_INFER_GET_LAST_HIDDEN_LAYER = 1,
    RKLLM_INFER_GET_LOGITS = 2, /* 1.2.0+ */
} RKLLMInferMode;

typedef struct {
    int32_t base_domain_id;
#if SIM_ABI == 110
    uint8_t reserved[112];
#else
    int8_t embed_flash;
    int8_t enabled_cpus_num;
    uint32_t enabled_cpus_mask;
#if SIM_ABI == 120
    uint8_t reserved[106];
#else
    uint8_t n_batch;
    int8_t use_cross_attn;
    uint8_t reserved[104];
#endif
#endif
} RKLLMExtendParam;

typedef struct {
    const char* model_path;
    int32_t max_context_len;
    int32_t max_new_tokens;
    int32_t top_k;
#if SIM_ABI >= 120
    int32_t n_keep;
#endif
    float top_p;
    float temperature;
    float repeat_penalty;
    float frequency_penalty;
    float presence_penalty;
    int32_t mirostat;
    float mirostat_tau;
    float mirostat_eta;
    bool skip_special_token;
#if SIM_ABI >= 130
    bool ignore_eos_token;
#endif
    bool is_async;
#if SIM_ABI < 130
    const char* img_start;
    const char* img_end;
    const char* img_content;
#endif
    RKLLMExtendParam extend_param;
} RKLLMParam;

typedef struct {
    const char* lora_adapter_path;
    const char* lora_adapter_name;
    float scale;
} RKLLMLoraAdapter;

typedef struct {
    float* embed;
    size_t n_tokens;
} RKLLMEmbedInput;

typedef struct {
    int32_t* input_ids;
    size_t n_tokens;
} RKLLMTokenInput;

#if SIM_ABI >= 130
typedef struct {
    char* prompt;
    struct {
        float* image_embed;
        size_t n_image_tokens;
        size_t n_image;
        const char* image_start;
        const char* image_end;
        const char* image_content;
        size_t image_width;
        size_t image_height;
    } image;
    struct {
        float* video_embed;
        size_t n_frame_tokens;
        size_t n_frame_per_video;
        size_t n_video;
        const char* video_start;
        const char* video_end;
        const char* video_content;
        size_t frame_width;
        size_t frame_height;
    } video;
} RKLLMMultiModalInput;
#else
typedef struct {
    char* prompt;
    float* image_embed;
    size_t n_image_tokens;
#if SIM_ABI >= 121
    size_t n_image;
    size_t image_width;
    size_t image_height;
#endif
} RKLLMMultiModelInput;
/* rkllm-runtime.md §1.1: 1.2.3 renamed the type without an ABI change. */
typedef RKLLMMultiModelInput RKLLMMultiModalInput;
#endif

typedef struct {
#if SIM_ABI >= 121
    const char* role;
    bool enable_thinking;
#endif
    RKLLMInputType input_type;
    union {
        const char* prompt_input;
        RKLLMEmbedInput embed_input;
        RKLLMTokenInput token_input;
        RKLLMMultiModalInput multimodal_input;
    };
} RKLLMInput;

typedef struct {
    const char* lora_adapter_name;
} RKLLMLoraParam;

typedef struct {
    int save_prompt_cache;
    const char* prompt_cache_path;
} RKLLMPromptCacheParam;

#if SIM_ABI >= 121
typedef struct {
    float* encoder_k_cache;
    float* encoder_v_cache;
    float* encoder_mask;
    int32_t* encoder_pos;
    int num_tokens;
} RKLLMCrossAttnParam;
#endif

#if SIM_ABI >= 130
typedef struct {
    int32_t top_k;
    float top_p;
    float temperature;
    float repeat_penalty;
    float frequency_penalty;
    float presence_penalty;
    int32_t mirostat;
    float mirostat_tau;
    float mirostat_eta;
} RKLLMSamplingParam;
#endif

typedef struct {
    RKLLMInferMode mode;
    RKLLMLoraParam* lora_params;
    RKLLMPromptCacheParam* prompt_cache_params;
#if SIM_ABI >= 130
    RKLLMSamplingParam* sampling_params;
#endif
#if SIM_ABI >= 120
    int keep_history;
#endif
#if SIM_ABI >= 130
    int32_t max_new_tokens;
#endif
} RKLLMInferParam;

typedef struct {
    const float* hidden_states;
    int embd_size;
    int num_tokens;
} RKLLMResultLastHiddenLayer;

#if SIM_ABI >= 120
typedef struct {
    const float* logits;
    int vocab_size;
    int num_tokens;
} RKLLMResultLogits;
#endif

#if SIM_ABI >= 121
typedef struct {
    float prefill_time_ms;
    int prefill_tokens;
    float generate_time_ms;
    int generate_tokens;
    float memory_usage_mb;
} RKLLMPerfStat;
#endif

typedef struct {
    const char* text;
    int32_t token_id;
    RKLLMResultLastHiddenLayer last_hidden_layer;
#if SIM_ABI >= 120
    RKLLMResultLogits logits;
#endif
#if SIM_ABI >= 121
    RKLLMPerfStat perf;
#endif
} RKLLMResult;

/* rkllm-runtime.md §1.3: the callback returns void before 1.2.1, int from 1.2.1 on. */
#if SIM_CALLBACK_RETURNS_INT
typedef int (*LLMResultCallback)(RKLLMResult* result, void* userdata, LLMCallState state);
#else
typedef void (*LLMResultCallback)(RKLLMResult* result, void* userdata, LLMCallState state);
#endif

#if SIM_ABI >= 130
typedef int (*LLMTokenizerCallback)(void* userdata, const char* text, int32_t text_len, int32_t* tokens,
                                    int32_t n_tokens_max);
typedef int (*LLMGetEmbedCallback)(void* userdata, int32_t* tokens, uint64_t num_tokens, void* embed,
                                   uint64_t len);
typedef struct {
    LLMResultCallback result_callback;
    void* result_userdata;
    LLMTokenizerCallback tokenizer_callback;
    void* tokenizer_userdata;
    LLMGetEmbedCallback embed_callback;
    void* embed_userdata;
} RKLLMCallback;
#endif

/* ---- exported functions (rkllm-runtime.md §1.2 function table) ---- */
SIM_API RKLLMParam rkllm_createDefaultParam(void);
#if SIM_ABI >= 130
SIM_API int rkllm_init(LLMHandle* handle, RKLLMParam* param, RKLLMCallback* callback);
#else
SIM_API int rkllm_init(LLMHandle* handle, RKLLMParam* param, LLMResultCallback callback);
#endif
SIM_API int rkllm_load_lora(LLMHandle handle, RKLLMLoraAdapter* lora_adapter);
SIM_API int rkllm_load_prompt_cache(LLMHandle handle, const char* prompt_cache_path);
SIM_API int rkllm_release_prompt_cache(LLMHandle handle);
SIM_API int rkllm_destroy(LLMHandle handle);
SIM_API int rkllm_run(LLMHandle handle, RKLLMInput* rkllm_input, RKLLMInferParam* rkllm_infer_params,
                      void* userdata);
SIM_API int rkllm_run_async(LLMHandle handle, RKLLMInput* rkllm_input, RKLLMInferParam* rkllm_infer_params,
                            void* userdata);
SIM_API int rkllm_abort(LLMHandle handle);
SIM_API int rkllm_is_running(LLMHandle handle);
#if SIM_ABI == 120
SIM_API int rkllm_clear_kv_cache(LLMHandle handle, int keep_system_prompt);
#elif SIM_ABI >= 121
SIM_API int rkllm_clear_kv_cache(LLMHandle handle, int keep_system_prompt, int* start_pos, int* end_pos);
SIM_API int rkllm_get_kv_cache_size(LLMHandle handle, int* cache_sizes);
SIM_API int rkllm_set_function_tools(LLMHandle handle, const char* system_prompt, const char* tools,
                                     const char* tool_response_str);
SIM_API int rkllm_set_cross_attn_params(LLMHandle handle, RKLLMCrossAttnParam* cross_attn_params);
#endif
#if SIM_HAS_CHAT_TEMPLATE
SIM_API int rkllm_set_chat_template(LLMHandle handle, const char* system_prompt, const char* prompt_prefix,
                                    const char* prompt_postfix);
#endif

/* Simulator-only introspection (not in any real librkllmrt). Strings stay valid until the next call
 * of the same function on the same handle (state: same thread). */
SIM_API const char* rkllm_sim_last_init(void* handle);
SIM_API const char* rkllm_sim_last_run(void* handle);
SIM_API const char* rkllm_sim_handle(void* handle);
SIM_API const char* rkllm_sim_state(void);
SIM_API const char* rkllm_sim_version(void);

#endif
