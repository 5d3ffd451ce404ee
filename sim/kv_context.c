/* The simulated KV cache's content (kv_context.h). rkllm-runtime.md §1.1: keep_history=1 makes a run
 * continue from the cache (the prompt is appended, then the reply); keep_history=0 and clear_kv_cache
 * empty it. The simulator's assumption for the reply's end: every token delivered to the callback is in
 * the cache and the end-of-turn token that ended generation is not (it is sampled, never fed back);
 * `rkio probe` checks the real runtime against a fresh prefill. */
#include "kv_context.h"

#include <stdlib.h>
#include <string.h>

#include "handle.h"
#include "strbuf.h"

void sim_kv_reset(struct sim_handle* h) {
    free(h->kv_text);
    free(h->kv_lora);
    h->kv_text = NULL;
    h->kv_lora = NULL;
    h->kv_mixed = 0;
    h->kv_opaque = 0;
}

static int same_lora(const char* a, const char* b) {
    if (!a || !b) return a == b;
    return !strcmp(a, b);
}

void sim_kv_append(struct sim_handle* h, const char* text, const char* lora) {
    if (!h->kv_text) {
        h->kv_text = sim_strdup("");
        h->kv_lora = sim_strdup(lora);
    } else if (!same_lora(h->kv_lora, lora)) {
        h->kv_mixed = 1;
    }
    if (!text || !*text) return;
    size_t a = strlen(h->kv_text), b = strlen(text);
    char* grown = sim_xmalloc(a + b + 1);
    memcpy(grown, h->kv_text, a);
    memcpy(grown + a, text, b + 1);
    free(h->kv_text);
    h->kv_text = grown;
}

void sim_kv_mark_opaque(struct sim_handle* h) {
    if (!h->kv_text) h->kv_text = sim_strdup("");
    h->kv_opaque = 1;
}

void sim_kv_keep_system(struct sim_handle* h, const char* system) {
    size_t n = system ? strlen(system) : 0;
    if (!h->kv_text || !n || strncmp(h->kv_text, system, n) != 0 || h->kv_opaque) {
        sim_kv_reset(h);
        return;
    }
    h->kv_text[n] = '\0';
}

char* sim_kv_context(const struct sim_handle* h, const char* input) {
    strbuf sb;
    sb_init(&sb);
    sb_puts(&sb, h->kv_text ? h->kv_text : "");
    sb_puts(&sb, input ? input : "");
    return sb_take(&sb);
}

static uint32_t fnv(uint32_t hash, const char* s) {
    for (const unsigned char* p = (const unsigned char*)s; *p; p++) hash = (hash ^ *p) * 16777619u;
    return hash;
}

uint32_t sim_kv_digest(const struct sim_handle* h, const char* context, const char* lora) {
    int mixed = h->kv_mixed || (h->kv_text && !same_lora(h->kv_lora, lora));
    uint32_t hash = fnv(2166136261u, mixed ? "\x01mixed" : (lora ? lora : ""));
    hash = fnv(hash, "\x02");
    hash = fnv(hash, context ? context : "");
    if (h->kv_opaque) hash = fnv(hash, "\x03opaque");
    return hash;
}
