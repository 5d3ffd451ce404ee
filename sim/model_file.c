#include "model_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* rkllm-runtime.md §2.5: max_context_len must be <= the model's max_context_limit set at conversion;
 * 4096 is the converter's usual value. */
#define DEFAULT_MAX_CONTEXT_LIMIT 4096
/* rkllm-runtime.md §2.5 [inference]: Qwen2.5-1.5B fp16 KV = 28 KiB per token. */
#define DEFAULT_KV_BYTES_PER_TOKEN 28672LL
#define DEFAULT_BUFFER_BYTES (256LL * 1024 * 1024)
#define DEFAULT_REPLY_TOKENS 12

long long sim_env_ll(const char* name, long long dflt) {
    const char* v = getenv(name);
    if (!v || !*v) return dflt;
    char* end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 0);
    if (errno || !end || *end) return dflt;
    return x;
}

long long sim_knob(long long header_value, const char* env_name) {
    if (header_value != SIM_NO_VALUE) return header_value;
    long long v = sim_env_ll(env_name, 0);
    return v < 0 ? 0 : v;
}

void sim_faults_clear(sim_faults* f) {
    memset(f, 0, sizeof(*f));
    f->segv_at_token = SIM_NO_VALUE;
    f->hang_at_token = SIM_NO_VALUE;
    f->exit_at_token = SIM_NO_VALUE;
    f->slow_init_ms = 0;
}

void sim_faults_parse(const char* spec, sim_faults* f) {
    if (!spec) return;
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", spec);
    char* save = NULL;
    for (char* item = strtok_r(buf, ", ", &save); item; item = strtok_r(NULL, ", ", &save)) {
        char* colon = strchr(item, ':');
        long long arg = 0;
        if (colon) {
            *colon = '\0';
            arg = strtoll(colon + 1, NULL, 10);
        }
        if (!strcmp(item, "init_fail")) f->init_fail = 1;
        else if (!strcmp(item, "init_segv")) f->init_segv = 1;
        else if (!strcmp(item, "segv_at_token")) f->segv_at_token = arg;
        else if (!strcmp(item, "hang_at_token")) f->hang_at_token = arg;
        else if (!strcmp(item, "exit_at_token")) f->exit_at_token = arg;
        else if (!strcmp(item, "slow_init")) f->slow_init_ms += arg;
        else if (!strcmp(item, "hang_init")) f->hang_init = 1;
        else if (!strcmp(item, "slow_prefill")) f->slow_prefill_ms += arg;
        else fprintf(stderr, "W rkllm-sim: unknown fault '%s' ignored\n", item);
    }
}

static void apply_header_line(sim_model* m, const char* key, const char* value) {
    long long v = strtoll(value, NULL, 0);
    if (!strcmp(key, "max_context_limit")) m->max_context_limit = (int)v;
    else if (!strcmp(key, "kv_bytes_per_token")) m->kv_bytes_per_token = v;
    else if (!strcmp(key, "buffer_bytes")) m->buffer_bytes = v;
    else if (!strcmp(key, "reply_tokens")) m->reply_tokens = (int)v;
    else if (!strcmp(key, "token_us")) m->token_us = v;
    else if (!strcmp(key, "prefill_us")) m->prefill_us = v;
    else if (!strcmp(key, "init_ms")) m->init_ms = v;
    else if (!strcmp(key, "npu_cores")) m->npu_cores = (int)v;
    else if (!strcmp(key, "vocab_size")) m->vocab_size = (int)v;
    else if (!strcmp(key, "embd_size")) m->embd_size = (int)v;
    else if (!strcmp(key, "context_reply")) m->context_reply = (int)v;
    else if (!strcmp(key, "fault")) snprintf(m->fault, sizeof(m->fault), "%s", value);
}

int sim_model_read(const char* path, sim_model* m, char* err, size_t errlen) {
    memset(m, 0, sizeof(*m));
    m->max_context_limit = DEFAULT_MAX_CONTEXT_LIMIT;
    m->kv_bytes_per_token = DEFAULT_KV_BYTES_PER_TOKEN;
    m->buffer_bytes = DEFAULT_BUFFER_BYTES;
    m->reply_tokens = DEFAULT_REPLY_TOKENS;
    m->token_us = m->prefill_us = m->init_ms = SIM_NO_VALUE;
    m->vocab_size = 32000;
    m->embd_size = 64;
    if (!path) {
        snprintf(err, errlen, "model_path is NULL");
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "failed to open rkllm model file: %s (%s)", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        snprintf(err, errlen, "invalid rkllm model file: %s", path);
        return -1;
    }
    m->file_size = (long long)st.st_size;
    char head[4096];
    ssize_t n = pread(fd, head, sizeof(head) - 1, 0);
    close(fd);
    if (n < 6 || memcmp(head, "RKSIM\n", 6) != 0) return 0;
    head[n] = '\0';
    m->has_header = 1;
    char* save = NULL;
    for (char* line = strtok_r(head + 6, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        /* strtok_r skips empty lines, so detect the blank terminator by looking behind the token. */
        char* eq = strchr(line, '=');
        if (!eq) break;
        *eq = '\0';
        apply_header_line(m, line, eq + 1);
        if (save && *save == '\n') break; /* "\n\n": end of header */
    }
    return 0;
}
