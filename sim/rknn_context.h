/* A simulated rknn_context: the encoder model's header values, its NPU reservation and its I/O state. */
#ifndef RKSIM_RKNN_CONTEXT_H
#define RKSIM_RKNN_CONTEXT_H

#include <pthread.h>
#include <stddef.h>

#include "rknn_abi.h"

#define RKNN_SIM_MAGIC 0x524b4e4e53494d31ULL /* "RKNNSIM1" */

typedef struct {
    long long file_size;
    int image_size;     /* the encoder's square input side, pixels */
    int image_tokens;   /* rows of the output embedding */
    int embed_dim;      /* columns of the output embedding (the LLM's hidden size) */
    long long npu_bytes;
    long long image_ms; /* simulated encoder time per image */
    int init_fail;
    int init_segv;
    int run_segv;
} rknn_sim_model;

typedef struct {
    unsigned long long magic;
    pthread_mutex_t lock;
    rknn_sim_model model;
    char path[4096];
    long long reservation_id;
    int npu_fd;
    unsigned long long input_hash; /* FNV-1a of the last rknn_inputs_set bytes */
    int input_set;
    int has_output;                /* rknn_run produced an output not yet fetched */
    float* output;                 /* image_tokens * embed_dim floats */
} rknn_sim_ctx;

/* Parses the "RKSIM\n" key=value header of an encoder file (or buffer); 0 or -1 with err filled. */
int rknn_sim_model_parse(const char* head, size_t n, long long file_size, rknn_sim_model* m);
/* The context behind a handle, or NULL when it is not one of ours (checked by its magic). */
rknn_sim_ctx* rknn_sim_lookup(rknn_context context);

#endif
