#include "run_faults.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define DIRECTIVE "[[fault="

void sim_run_faults(const sim_faults* model_faults, const char* templated, sim_faults* out) {
    *out = *model_faults;
    for (const char* p = templated ? strstr(templated, DIRECTIVE) : NULL; p; p = strstr(p, DIRECTIVE)) {
        p += strlen(DIRECTIVE);
        const char* end = strstr(p, "]]");
        if (!end) break;
        char spec[256];
        size_t n = (size_t)(end - p) < sizeof(spec) - 1 ? (size_t)(end - p) : sizeof(spec) - 1;
        memcpy(spec, p, n);
        spec[n] = '\0';
        sim_faults_parse(spec, out);
        p = end;
    }
}

void sim_slow_prefill(const sim_faults* f) {
    /* [inference] A prefill is submitted to the NPU as whole jobs and the driver waits for each to complete
     * (rkllm-runtime.md §2.1, job submission; memory-analysis.md §1.2: a running job holds the domain), so
     * rkllm_abort can only act once the prefill has ended; a long prompt on a big model keeps the NPU busy
     * for seconds after the client has gone. The run then stops before its first token. */
    if (f->slow_prefill_ms <= 0) return;
    struct timespec ts = {(time_t)(f->slow_prefill_ms / 1000), (long)(f->slow_prefill_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}
