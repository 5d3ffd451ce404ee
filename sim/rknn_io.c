/* rknn_inputs_set, rknn_run, rknn_outputs_get, rknn_outputs_release of the simulated librknnrt.so.
 *
 * The encoder's "embedding" is a deterministic function of the input bytes (a splitmix64 stream seeded by
 * their FNV-1a hash), so the same image always yields the same embedding and different images different ones;
 * the simulated librkllmrt folds the embedding it receives into its reply (api_run.c), so tests can tell which
 * image an answer was about. The call sequence and buffer ownership follow rknn_api.h: outputs_get allocates
 * unless is_prealloc, and outputs_release frees what outputs_get allocated. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rknn_context.h"

static unsigned long long fnv1a(const unsigned char* p, size_t n) {
    unsigned long long h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

static unsigned long long splitmix64(unsigned long long x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static int element_bytes(rknn_tensor_type t) {
    switch (t) {
    case RKNN_TENSOR_FLOAT32: return 4;
    case RKNN_TENSOR_FLOAT16:
    case RKNN_TENSOR_INT16: return 2;
    case RKNN_TENSOR_INT8:
    case RKNN_TENSOR_UINT8: return 1;
    default: return 0;
    }
}

RKSIM_API int rknn_inputs_set(rknn_context context, uint32_t n_inputs, rknn_input inputs[]) {
    rknn_sim_ctx* c = rknn_sim_lookup(context);
    if (!c) return RKNN_ERR_CTX_INVALID;
    if (n_inputs != 1 || !inputs || inputs[0].index != 0 || !inputs[0].buf) {
        fprintf(stderr, "E RKNN: rknn_inputs_set, the model has 1 input (index 0)\n");
        return RKNN_ERR_PARAM_INVALID;
    }
    int side = c->model.image_size;
    int eb = element_bytes(inputs[0].type);
    unsigned long long want = (unsigned long long)side * side * 3 * (unsigned)eb;
    if (!eb || inputs[0].size != want ||
        (inputs[0].fmt != RKNN_TENSOR_NHWC && inputs[0].fmt != RKNN_TENSOR_NCHW)) {
        /* The runtime converts type/format itself but refuses a buffer whose size does not match. */
        fprintf(stderr, "E RKNN: rknn_inputs_set, input size %u does not match %llu (type %d, fmt %d)\n",
                inputs[0].size, want, (int)inputs[0].type, (int)inputs[0].fmt);
        return RKNN_ERR_PARAM_INVALID;
    }
    pthread_mutex_lock(&c->lock);
    c->input_hash = fnv1a(inputs[0].buf, inputs[0].size);
    c->input_set = 1;
    pthread_mutex_unlock(&c->lock);
    return RKNN_SUCC;
}

RKSIM_API int rknn_run(rknn_context context, void* extend) {
    rknn_sim_ctx* c = rknn_sim_lookup(context);
    if (!c) return RKNN_ERR_CTX_INVALID;
    if (c->model.run_segv) {
        fflush(stderr);
        raise(SIGSEGV);
    }
    pthread_mutex_lock(&c->lock);
    if (!c->input_set) {
        pthread_mutex_unlock(&c->lock);
        fprintf(stderr, "E RKNN: rknn_run, inputs not set\n");
        return RKNN_ERR_INPUT_INVALID;
    }
    size_t n = (size_t)c->model.image_tokens * (size_t)c->model.embed_dim;
    if (!c->output) c->output = malloc(n * sizeof(float));
    if (!c->output) abort();
    for (size_t i = 0; i < n; i++) {
        unsigned long long r = splitmix64(c->input_hash + i);
        c->output[i] = (float)((double)(r >> 40) / (double)(1ULL << 24) * 2.0 - 1.0);
    }
    c->has_output = 1;
    long long ms = c->model.image_ms;
    pthread_mutex_unlock(&c->lock);
    if (ms > 0) {
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0) {
        }
    }
    return RKNN_SUCC;
}

RKSIM_API int rknn_outputs_get(rknn_context context, uint32_t n_outputs, rknn_output outputs[], void* extend) {
    rknn_sim_ctx* c = rknn_sim_lookup(context);
    if (!c) return RKNN_ERR_CTX_INVALID;
    if (n_outputs != 1 || !outputs || outputs[0].index != 0) return RKNN_ERR_PARAM_INVALID;
    pthread_mutex_lock(&c->lock);
    if (!c->has_output) {
        pthread_mutex_unlock(&c->lock);
        fprintf(stderr, "E RKNN: rknn_outputs_get, no output: call rknn_run first\n");
        return RKNN_ERR_OUTPUT_INVALID;
    }
    size_t bytes = (size_t)c->model.image_tokens * (size_t)c->model.embed_dim * sizeof(float);
    /* The output tensor is float32 already, so want_float changes nothing. */
    if (outputs[0].is_prealloc) {
        if (!outputs[0].buf || outputs[0].size < bytes) {
            pthread_mutex_unlock(&c->lock);
            return RKNN_ERR_PARAM_INVALID;
        }
        memcpy(outputs[0].buf, c->output, bytes);
    } else {
        outputs[0].buf = malloc(bytes);
        if (!outputs[0].buf) abort();
        memcpy(outputs[0].buf, c->output, bytes);
    }
    outputs[0].size = (uint32_t)bytes;
    pthread_mutex_unlock(&c->lock);
    return RKNN_SUCC;
}

RKSIM_API int rknn_outputs_release(rknn_context context, uint32_t n_outputs, rknn_output outputs[]) {
    rknn_sim_ctx* c = rknn_sim_lookup(context);
    if (!c) return RKNN_ERR_CTX_INVALID;
    if (!outputs) return RKNN_ERR_PARAM_INVALID;
    for (uint32_t i = 0; i < n_outputs; i++) {
        if (!outputs[i].is_prealloc) {
            free(outputs[i].buf);
            outputs[i].buf = NULL;
        }
    }
    return RKNN_SUCC;
}
