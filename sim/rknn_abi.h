/* The librknnrt (RKNPU2) C API the simulated librknnrt.so exports: the subset rkio binds.
 *
 * Every type, constant and prototype follows rknn_api.h of airockchip/rknn-toolkit2
 * (rknpu2/runtime/Linux/librknn_api/include/rknn_api.h, the 2.x releases): the field order and types of
 * rknn_input_output_num, rknn_tensor_attr, rknn_sdk_version, rknn_input and rknn_output, the
 * rknn_query_cmd / rknn_tensor_type / rknn_tensor_format numbering and the error codes. rkio's ctypes
 * binding (src/rkio/runtime/rknn/layouts.py) declares the same layouts and checks their sizes against
 * rknn_sim_layout() below; docs/vision.md has the table. On aarch64 (LP64) rknn_context is uint64_t. */
#ifndef RKSIM_RKNN_ABI_H
#define RKSIM_RKNN_ABI_H

#include <stdint.h>

#define RKNN_MAX_DIMS 16
#define RKNN_MAX_NAME_LEN 256

#define RKNN_SUCC 0
#define RKNN_ERR_FAIL -1
#define RKNN_ERR_TIMEOUT -2
#define RKNN_ERR_DEVICE_UNAVAILABLE -3
#define RKNN_ERR_MALLOC_FAIL -4
#define RKNN_ERR_PARAM_INVALID -5
#define RKNN_ERR_MODEL_INVALID -6
#define RKNN_ERR_CTX_INVALID -7
#define RKNN_ERR_INPUT_INVALID -8
#define RKNN_ERR_OUTPUT_INVALID -9

typedef uint64_t rknn_context;

typedef enum {
    RKNN_QUERY_IN_OUT_NUM = 0,
    RKNN_QUERY_INPUT_ATTR = 1,
    RKNN_QUERY_OUTPUT_ATTR = 2,
    RKNN_QUERY_PERF_DETAIL = 3,
    RKNN_QUERY_PERF_RUN = 4,
    RKNN_QUERY_SDK_VERSION = 5,
    RKNN_QUERY_MEM_SIZE = 6,
    RKNN_QUERY_CUSTOM_STRING = 7,
    RKNN_QUERY_NATIVE_INPUT_ATTR = 8,
    RKNN_QUERY_NATIVE_OUTPUT_ATTR = 9,
} rknn_query_cmd;

typedef enum {
    RKNN_TENSOR_FLOAT32 = 0,
    RKNN_TENSOR_FLOAT16 = 1,
    RKNN_TENSOR_INT8 = 2,
    RKNN_TENSOR_UINT8 = 3,
    RKNN_TENSOR_INT16 = 4,
} rknn_tensor_type;

typedef enum {
    RKNN_TENSOR_NCHW = 0,
    RKNN_TENSOR_NHWC = 1,
    RKNN_TENSOR_NC1HWC2 = 2,
    RKNN_TENSOR_UNDEFINED = 3,
} rknn_tensor_format;

typedef enum {
    RKNN_TENSOR_QNT_NONE = 0,
    RKNN_TENSOR_QNT_DFP = 1,
    RKNN_TENSOR_QNT_AFFINE_ASYMMETRIC = 2,
} rknn_tensor_qnt_type;

typedef struct {
    uint32_t n_input;
    uint32_t n_output;
} rknn_input_output_num;

typedef struct {
    uint32_t index;
    uint32_t n_dims;
    uint32_t dims[RKNN_MAX_DIMS];
    char name[RKNN_MAX_NAME_LEN];
    uint32_t n_elems;
    uint32_t size;
    rknn_tensor_format fmt;
    rknn_tensor_type type;
    rknn_tensor_qnt_type qnt_type;
    int8_t fl;
    int32_t zp;
    float scale;
    uint32_t w_stride;
    uint32_t size_with_stride;
    uint8_t pass_through;
    uint32_t h_stride;
} rknn_tensor_attr;

typedef struct {
    char api_version[256];
    char drv_version[256];
} rknn_sdk_version;

typedef struct {
    uint32_t index;
    void* buf;
    uint32_t size;
    uint8_t pass_through;
    rknn_tensor_type type;
    rknn_tensor_format fmt;
} rknn_input;

typedef struct {
    uint8_t want_float;
    uint8_t is_prealloc;
    uint32_t index;
    void* buf;
    uint32_t size;
} rknn_output;

#define RKSIM_API __attribute__((visibility("default")))

/* The rknn_api.h entry points (extend/opt arguments are accepted and ignored by the simulator). */
RKSIM_API int rknn_init(rknn_context* context, void* model, uint32_t size, uint32_t flag, void* extend);
RKSIM_API int rknn_destroy(rknn_context context);
RKSIM_API int rknn_query(rknn_context context, rknn_query_cmd cmd, void* info, uint32_t size);
RKSIM_API int rknn_inputs_set(rknn_context context, uint32_t n_inputs, rknn_input inputs[]);
RKSIM_API int rknn_run(rknn_context context, void* extend);
RKSIM_API int rknn_outputs_get(rknn_context context, uint32_t n_outputs, rknn_output outputs[], void* extend);
RKSIM_API int rknn_outputs_release(rknn_context context, uint32_t n_outputs, rknn_output outputs[]);

/* Simulator only: "name=size" pairs for the structs above, for the binding's layout check. */
RKSIM_API const char* rknn_sim_layout(void);

#endif
