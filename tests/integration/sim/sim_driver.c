/* Test driver for the simulated librkllmrt: compiled against sim/rkllm_abi.h for one flavour (the same
 * -DSIM_V_* macros as the library) and linked to that flavour's .so. Each command-line word is a step:
 *   init:CTX:MAXNEW[:DOMAIN]   load argv[1] into a new handle (becomes the current one)
 *   run:PROMPT                 rkllm_run on the current handle (keep_history from DRIVER_KEEP)
 *   async:PROMPT               rkllm_run_async, then wait up to 2 s for FINISH
 *   lora:NAME:PATH             load a LoRA adapter; DRIVER_LORA selects one per run
 *   template:SYS|PRE|POST      rkllm_set_chat_template (1.2.0+)
 *   tools:JSON                 rkllm_set_function_tools (1.2.1+)
 *   destroy                    destroy the current handle
 *   sleep:MS                   sleep (to hold a model while another process loads)
 *   loadcache:PATH             rkllm_load_prompt_cache; DRIVER_SAVE_CACHE=path saves one per run
 *   kvsize                     rkllm_get_kv_cache_size (1.2.1+), printed as an rc
 * DRIVER_MAX_NEW sets RKLLMInferParam.max_new_tokens (1.3.0).
 * Every callback is printed as one JSON line; so are return codes and the rkllm_sim_* documents. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rkllm_abi.h"

static volatile int finished;
static int pause_at = -1;
static int seen;

static void print_hex(const char* s) {
    for (const unsigned char* p = (const unsigned char*)s; p && *p; p++) printf("%02x", *p);
}

#if SIM_CALLBACK_RETURNS_INT
static int on_result(RKLLMResult* r, void* userdata, LLMCallState state) {
#else
static void on_result(RKLLMResult* r, void* userdata, LLMCallState state) {
#endif
    printf("{\"event\":\"callback\",\"state\":%d,\"userdata\":%d,\"text_hex\":\"", (int)state,
           userdata ? *(int*)userdata : -1);
    print_hex(r ? r->text : NULL);
    printf("\",\"token_id\":%d", r ? r->token_id : -1);
#if SIM_HAS_PERF
    if (state == RKLLM_RUN_FINISH)
        printf(",\"perf\":{\"prefill_tokens\":%d,\"generate_tokens\":%d,\"memory_usage_mb\":%.3f}",
               r->perf.prefill_tokens, r->perf.generate_tokens, r->perf.memory_usage_mb);
#endif
    printf("}\n");
    fflush(stdout);
    if (state == RKLLM_RUN_FINISH || state == RKLLM_RUN_ERROR) finished = 1;
    int ret = 0;
    if (state == RKLLM_RUN_NORMAL && ++seen == pause_at) ret = 1;
#if SIM_CALLBACK_RETURNS_INT
    return ret;
#else
    (void)ret;
#endif
}

static void print_doc(const char* name, const char* json) {
    printf("{\"event\":\"%s\",\"doc\":%s}\n", name, json ? json : "null");
    fflush(stdout);
}

int main(int argc, char** argv) {
    if (argc < 2) return 2;
    const char* model = argv[1];
    LLMHandle h = NULL;
    int userdata_value = 7;
    const char* keep = getenv("DRIVER_KEEP");
    const char* lora = getenv("DRIVER_LORA");
    if (getenv("DRIVER_PAUSE_AT")) pause_at = atoi(getenv("DRIVER_PAUSE_AT"));
    for (int i = 2; i < argc; i++) {
        char* step = argv[i];
        int rc = 0;
        if (!strncmp(step, "init:", 5)) {
            RKLLMParam p = rkllm_createDefaultParam();
            p.model_path = model;
            int domain = 0;
            sscanf(step + 5, "%d:%d:%d", &p.max_context_len, &p.max_new_tokens, &domain);
            p.extend_param.base_domain_id = domain;
#if SIM_HAS_CALLBACK_STRUCT
            RKLLMCallback cb = {on_result, &userdata_value, NULL, NULL, NULL, NULL};
            rc = rkllm_init(&h, &p, &cb);
#else
            rc = rkllm_init(&h, &p, on_result);
#endif
            if (rc == 0) print_doc("init", rkllm_sim_last_init(h));
        } else if (!strncmp(step, "run:", 4) || !strncmp(step, "async:", 6)) {
            int is_async = step[0] == 'a';
            RKLLMInput in;
            memset(&in, 0, sizeof(in));
            in.input_type = RKLLM_INPUT_PROMPT;
            in.prompt_input = strchr(step, ':') + 1;
#if SIM_ABI >= 121
            in.role = "user";
#endif
            RKLLMInferParam infer;
            memset(&infer, 0, sizeof(infer));
            infer.mode = RKLLM_INFER_GENERATE;
            RKLLMLoraParam lp = {lora};
            if (lora) infer.lora_params = &lp;
            RKLLMPromptCacheParam cp = {1, getenv("DRIVER_SAVE_CACHE")};
            if (cp.prompt_cache_path) infer.prompt_cache_params = &cp;
#if SIM_ABI >= 130
            if (getenv("DRIVER_MAX_NEW")) infer.max_new_tokens = atoi(getenv("DRIVER_MAX_NEW"));
#endif
#if SIM_HAS_KEEP_HISTORY
            infer.keep_history = keep ? atoi(keep) : 0;
#else
            (void)keep;
#endif
            finished = 0;
            seen = 0;
            if (is_async) {
                rc = rkllm_run_async(h, &in, &infer, &userdata_value);
                for (int t = 0; t < 200 && !finished; t++) usleep(10000);
            } else {
                rc = rkllm_run(h, &in, &infer, &userdata_value);
            }
            print_doc("run", rkllm_sim_last_run(h));
        } else if (!strncmp(step, "lora:", 5)) {
            char* name = step + 5;
            char* path = strchr(name, ':');
            *path++ = '\0';
            RKLLMLoraAdapter a = {path, name, 1.0f};
            rc = rkllm_load_lora(h, &a);
#if SIM_HAS_CHAT_TEMPLATE
        } else if (!strncmp(step, "template:", 9)) {
            char* sys = step + 9;
            char* pre = strchr(sys, '|');
            *pre++ = '\0';
            char* post = strchr(pre, '|');
            *post++ = '\0';
            rc = rkllm_set_chat_template(h, sys, pre, post);
#endif
#if SIM_HAS_TOOLS
        } else if (!strncmp(step, "tools:", 6)) {
            rc = rkllm_set_function_tools(h, "", step + 6, "");
#endif
        } else if (!strcmp(step, "destroy")) {
            rc = rkllm_destroy(h);
            h = NULL;
        } else if (!strncmp(step, "sleep:", 6)) {
            usleep((useconds_t)atoi(step + 6) * 1000);
        } else if (!strncmp(step, "loadcache:", 10)) {
            rc = rkllm_load_prompt_cache(h, step + 10);
#if SIM_ABI >= 121
        } else if (!strcmp(step, "kvsize")) {
            int sizes[8] = {0};
            rkllm_get_kv_cache_size(h, sizes);
            rc = sizes[0];
#endif
        } else if (!strcmp(step, "handle")) {
            print_doc("handle", rkllm_sim_handle(h));
        } else if (!strcmp(step, "state")) {
            print_doc("state", rkllm_sim_state());
        } else {
            fprintf(stderr, "unknown step %s\n", step);
            return 2;
        }
        printf("{\"event\":\"rc\",\"step\":%d,\"rc\":%d}\n", i - 2, rc);
        fflush(stdout);
    }
    return 0;
}
