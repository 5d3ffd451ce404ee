/* What the simulated KV cache holds, as text: the templated prompts prefilled since the cache was last
 * empty plus every token generated since. With the model header `context_reply=1` the reply is a function
 * of this whole context, so a caller that reuses the cache wrongly (stale or foreign content, a piece
 * computed under another LoRA adapter) gets a different reply than a fresh full prefill would give. */
#ifndef RKSIM_KV_CONTEXT_H
#define RKSIM_KV_CONTEXT_H

#include <stdint.h>

struct sim_handle;

/* The caller holds h->lock for all of these. */
void sim_kv_reset(struct sim_handle* h);
/* Appends text the runtime fed through the model under adapter `lora` (NULL: none). */
void sim_kv_append(struct sim_handle* h, const char* text, const char* lora);
/* The cache now holds something that no text prefill reproduces (token input, a range removed). */
void sim_kv_mark_opaque(struct sim_handle* h);
/* clear_kv_cache(keep_system_prompt=1): only the template's system prompt is left, if it was there. */
void sim_kv_keep_system(struct sim_handle* h, const char* system);
/* The whole context a run sees: the cache's text followed by `input` (caller frees). */
char* sim_kv_context(const struct sim_handle* h, const char* input);
/* FNV-1a of the context, the adapter it was computed under ("mixed" when pieces disagree) and whether
 * it is opaque: equal digests mean the model would be in the same state. */
uint32_t sim_kv_digest(const struct sim_handle* h, const char* context, const char* lora);

#endif
