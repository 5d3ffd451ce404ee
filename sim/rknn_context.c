/* rknn_init, rknn_destroy, rknn_query of the simulated librknnrt.so.
 *
 * An encoder file is any file; an optional "RKSIM\n" key=value header (the format of sim/model_file.h) tunes it:
 *   image_size=392 image_tokens=196 embed_dim=1536   rkllm-runtime.md / issue #195 and the rknn-llm multimodal
 *                                                    demo: Qwen2-VL-2B's encoder takes a 392x392 RGB image and
 *                                                    yields 196 tokens of width 1536
 *   npu_bytes=N       NPU memory the context holds (default: file size + 64 MiB of activations; #195's 1.34 GB
 *                     encoder failed a 1427746880-byte allocation, about 6% over the file)
 *   image_ms=N        time of one rknn_run (default RKNN_SIM_IMAGE_MS, else 0; ~3300 on RK3588 per the issue)
 *   fault=init_fail,init_segv,run_segv
 * Its NPU memory is reserved in IOMMU domain 0 of the machine-wide state file shared with the simulated
 * librkllmrt (npu_memory.c): librknnrt cannot choose a domain (rkllm-runtime.md §2.2, #262), so it always
 * lives in domain 0, and an LLM loaded there first makes it fail as in #195. */
#include "rknn_context.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model_file.h"
#include "npu_buffers.h"
#include "npu_memory.h"

#define DEFAULT_ACTIVATION_BYTES (64LL * 1024 * 1024)
#define SDK_API_VERSION "2.3.0 (rkio simulator)"
#define SDK_DRV_VERSION "0.9.8"

static void apply(rknn_sim_model* m, const char* key, const char* value) {
    long long v = strtoll(value, NULL, 0);
    if (!strcmp(key, "image_size")) m->image_size = (int)v;
    else if (!strcmp(key, "image_tokens")) m->image_tokens = (int)v;
    else if (!strcmp(key, "embed_dim")) m->embed_dim = (int)v;
    else if (!strcmp(key, "npu_bytes")) m->npu_bytes = v;
    else if (!strcmp(key, "image_ms")) m->image_ms = v;
    else if (!strcmp(key, "fault")) {
        m->init_fail = strstr(value, "init_fail") != NULL;
        m->init_segv = strstr(value, "init_segv") != NULL;
        m->run_segv = strstr(value, "run_segv") != NULL;
    }
}

int rknn_sim_model_parse(const char* head, size_t n, long long file_size, rknn_sim_model* m) {
    memset(m, 0, sizeof(*m));
    m->file_size = file_size;
    m->image_size = 392;
    m->image_tokens = 196;
    m->embed_dim = 1536;
    m->npu_bytes = SIM_NO_VALUE;
    m->image_ms = SIM_NO_VALUE;
    if (n >= 6 && !memcmp(head, "RKSIM\n", 6)) {
        char buf[4096];
        size_t len = n < sizeof(buf) - 1 ? n : sizeof(buf) - 1;
        memcpy(buf, head, len);
        buf[len] = '\0';
        char* line = buf + 6;
        while (line && *line && *line != '\n') {
            char* next = strchr(line, '\n');
            if (next) *next++ = '\0';
            char* eq = strchr(line, '=');
            if (!eq) break;
            *eq = '\0';
            apply(m, line, eq + 1);
            line = next;
        }
    }
    if (m->npu_bytes == SIM_NO_VALUE) m->npu_bytes = file_size + DEFAULT_ACTIVATION_BYTES;
    if (m->image_ms == SIM_NO_VALUE) m->image_ms = sim_env_ll("RKNN_SIM_IMAGE_MS", 0);
    if (m->image_size <= 0 || m->image_tokens <= 0 || m->embed_dim <= 0) return -1;
    return 0;
}

rknn_sim_ctx* rknn_sim_lookup(rknn_context context) {
    rknn_sim_ctx* c = (rknn_sim_ctx*)(uintptr_t)context;
    if (!c || c->magic != RKNN_SIM_MAGIC) return NULL;
    return c;
}

/* rknn_api.h: "size: the size of rknn model, 0 if model is a path" - the runtime takes a file path or the
 * model's bytes. Reads the first 4 KiB (the header) and the total size. */
static int read_model(void* model, uint32_t size, rknn_sim_model* m, char* path, size_t path_len) {
    if (!model) return RKNN_ERR_PARAM_INVALID;
    if (size == 0) {
        snprintf(path, path_len, "%s", (const char*)model);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            if (fd >= 0) close(fd);
            fprintf(stderr, "E RKNN: failed to open rknn model file: %s\n", path);
            return RKNN_ERR_MODEL_INVALID;
        }
        char head[4096];
        ssize_t n = pread(fd, head, sizeof(head), 0);
        close(fd);
        if (n < 0 || rknn_sim_model_parse(head, (size_t)n, (long long)st.st_size, m)) return RKNN_ERR_MODEL_INVALID;
        return RKNN_SUCC;
    }
    snprintf(path, path_len, "(model in memory)");
    if (rknn_sim_model_parse(model, size < 4096 ? size : 4096, size, m)) return RKNN_ERR_MODEL_INVALID;
    return RKNN_SUCC;
}

RKSIM_API int rknn_init(rknn_context* context, void* model, uint32_t size, uint32_t flag, void* extend) {
    if (!context) return RKNN_ERR_PARAM_INVALID;
    *context = 0;
    rknn_sim_model m;
    char path[4096];
    int ret = read_model(model, size, &m, path, sizeof(path));
    if (ret != RKNN_SUCC) {
        fprintf(stderr, "E RKNN: rknn_init, load model failed, ret = %d\n", ret);
        return ret;
    }
    if (m.init_segv) {
        fflush(stderr);
        raise(SIGSEGV);
    }
    if (m.init_fail) {
        fprintf(stderr, "E RKNN: rknn_init, simulated init failure\n");
        return RKNN_ERR_FAIL;
    }
    sim_reserve_request req = {path, m.npu_bytes, 0, "fail"};
    sim_reserve_result res;
    sim_reserve_outcome outcome = sim_state_reserve(&req, &res);
    if (outcome != SIM_RESERVE_OK && outcome != SIM_RESERVE_GARBAGE) {
        /* #195: "failed to allocate memory, size: 1427746880" once an LLM filled domain 0. */
        fprintf(stderr, "E RKNN: failed to allocate memory, size: %lld\n",
                res.failed_size ? res.failed_size : m.npu_bytes);
        return RKNN_ERR_MALLOC_FAIL;
    }
    char err[256];
    int npu_fd = sim_npu_buffers_hold(m.npu_bytes, err, sizeof(err));
    if (npu_fd == -2) {
        sim_state_release(res.id);
        fprintf(stderr, "E RKNN: %s\n", err);
        return RKNN_ERR_MALLOC_FAIL;
    }
    rknn_sim_ctx* c = calloc(1, sizeof(*c));
    if (!c) abort();
    c->magic = RKNN_SIM_MAGIC;
    pthread_mutex_init(&c->lock, NULL);
    c->model = m;
    snprintf(c->path, sizeof(c->path), "%s", path);
    c->reservation_id = res.id;
    c->npu_fd = npu_fd;
    *context = (rknn_context)(uintptr_t)c;
    return RKNN_SUCC;
}

RKSIM_API int rknn_destroy(rknn_context context) {
    rknn_sim_ctx* c = rknn_sim_lookup(context);
    if (!c) return RKNN_ERR_CTX_INVALID;
    c->magic = 0;
    sim_state_release(c->reservation_id);
    sim_npu_buffers_release(c->npu_fd);
    free(c->output);
    pthread_mutex_destroy(&c->lock);
    free(c);
    return RKNN_SUCC;
}

static void fill_attr(const rknn_sim_ctx* c, int output, rknn_tensor_attr* a) {
    uint32_t index = a->index;
    memset(a, 0, sizeof(*a));
    a->index = index;
    a->qnt_type = RKNN_TENSOR_QNT_NONE;
    a->scale = 1.0f;
    if (!output) {
        /* The rknn-llm multimodal demo feeds the encoder uint8 NHWC RGB; normalisation is inside the model. */
        uint32_t side = (uint32_t)c->model.image_size;
        a->n_dims = 4;
        a->dims[0] = 1, a->dims[1] = side, a->dims[2] = side, a->dims[3] = 3;
        snprintf(a->name, sizeof(a->name), "pixel_values");
        a->n_elems = side * side * 3;
        a->size = a->n_elems;
        a->fmt = RKNN_TENSOR_NHWC;
        a->type = RKNN_TENSOR_UINT8;
        a->w_stride = side;
    } else {
        a->n_dims = 3;
        a->dims[0] = 1, a->dims[1] = (uint32_t)c->model.image_tokens, a->dims[2] = (uint32_t)c->model.embed_dim;
        snprintf(a->name, sizeof(a->name), "image_embeds");
        a->n_elems = a->dims[1] * a->dims[2];
        a->size = a->n_elems * 4;
        a->fmt = RKNN_TENSOR_UNDEFINED;
        a->type = RKNN_TENSOR_FLOAT32;
    }
    a->size_with_stride = a->size;
}

RKSIM_API int rknn_query(rknn_context context, rknn_query_cmd cmd, void* info, uint32_t size) {
    rknn_sim_ctx* c = rknn_sim_lookup(context);
    if (!c) return RKNN_ERR_CTX_INVALID;
    if (!info) return RKNN_ERR_PARAM_INVALID;
    switch (cmd) {
    case RKNN_QUERY_IN_OUT_NUM: {
        if (size < sizeof(rknn_input_output_num)) return RKNN_ERR_PARAM_INVALID;
        rknn_input_output_num* io = info;
        io->n_input = 1;
        io->n_output = 1;
        return RKNN_SUCC;
    }
    case RKNN_QUERY_INPUT_ATTR:
    case RKNN_QUERY_OUTPUT_ATTR:
    case RKNN_QUERY_NATIVE_INPUT_ATTR:
    case RKNN_QUERY_NATIVE_OUTPUT_ATTR: {
        if (size < sizeof(rknn_tensor_attr)) return RKNN_ERR_PARAM_INVALID;
        rknn_tensor_attr* a = info;
        if (a->index != 0) return RKNN_ERR_PARAM_INVALID;
        fill_attr(c, cmd == RKNN_QUERY_OUTPUT_ATTR || cmd == RKNN_QUERY_NATIVE_OUTPUT_ATTR, a);
        return RKNN_SUCC;
    }
    case RKNN_QUERY_SDK_VERSION: {
        if (size < sizeof(rknn_sdk_version)) return RKNN_ERR_PARAM_INVALID;
        rknn_sdk_version* v = info;
        snprintf(v->api_version, sizeof(v->api_version), "%s", SDK_API_VERSION);
        snprintf(v->drv_version, sizeof(v->drv_version), "%s", SDK_DRV_VERSION);
        return RKNN_SUCC;
    }
    default:
        return RKNN_ERR_PARAM_INVALID;
    }
}

RKSIM_API const char* rknn_sim_layout(void) {
    static char buf[256];
    snprintf(buf, sizeof(buf), "rknn_input_output_num=%zu rknn_tensor_attr=%zu rknn_sdk_version=%zu "
             "rknn_input=%zu rknn_output=%zu", sizeof(rknn_input_output_num), sizeof(rknn_tensor_attr),
             sizeof(rknn_sdk_version), sizeof(rknn_input), sizeof(rknn_output));
    return buf;
}
