/* Simulated model files: any file is a model; an optional text header tunes the simulation.
 * Format: "RKSIM\n" then "key=value" lines, ended by an empty line (the rest of the file is ignored,
 * usually a sparse hole so a "7 GB model" costs no disk). */
#ifndef RKSIM_MODEL_FILE_H
#define RKSIM_MODEL_FILE_H

#include <stddef.h>

#define SIM_NO_VALUE (-1LL)

typedef struct {
    int init_fail;
    int init_segv;
    long long segv_at_token; /* SIM_NO_VALUE when unset */
    long long hang_at_token;
    long long exit_at_token;
    long long slow_init_ms;
    int hang_init;
    long long slow_prefill_ms; /* run_faults.h */
} sim_faults;

typedef struct {
    long long file_size;
    int has_header;
    int max_context_limit;
    long long kv_bytes_per_token;
    long long buffer_bytes;
    int reply_tokens;
    long long token_us;   /* header value or SIM_NO_VALUE */
    long long prefill_us;
    long long init_ms;
    int npu_cores;
    int vocab_size;
    int embd_size;
    int context_reply; /* 1: the reply is a function of the whole KV context (kv_context.h) */
    char fault[256];
} sim_model;

/* 0 on success; -1 with a message in err when the file cannot be opened. */
int sim_model_read(const char* path, sim_model* m, char* err, size_t errlen);
/* Parses a comma-separated fault list ("segv_at_token:3,slow_init:200") into f (adding to it). */
void sim_faults_parse(const char* spec, sim_faults* f);
void sim_faults_clear(sim_faults* f);
/* Integer environment variable, or dflt when unset/empty/invalid. */
long long sim_env_ll(const char* name, long long dflt);
/* Header value if present, else env, else 0: per-model headers are more specific than the environment. */
long long sim_knob(long long header_value, const char* env_name);

#endif
