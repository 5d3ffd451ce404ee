"""The librknnrt C API's structs and constants as ctypes declarations.

Field order and types follow rknn_api.h of airockchip/rknn-toolkit2 (``rknpu2/runtime/Linux/librknn_api/
include/rknn_api.h``, the 2.x releases; the struct layouts have not changed across them): rknn_context is a
uint64 on aarch64, rknn_tensor_attr is 376 bytes (the int8 ``fl`` before the int32 ``zp`` takes padding the
compiler inserts and ctypes reproduces, so nothing is packed). ``EXPECTED_SIZES`` pins them; the simulator
reports its own sizes through ``rknn_sim_layout`` and ``library.load_library`` compares.
"""

from __future__ import annotations

import ctypes
from ctypes import Structure, c_char, c_float, c_int, c_int8, c_int32, c_uint8, c_uint32, c_uint64, c_void_p

MAX_DIMS = 16
MAX_NAME_LEN = 256

Context = c_uint64

# rknn_query_cmd
QUERY_IN_OUT_NUM, QUERY_INPUT_ATTR, QUERY_OUTPUT_ATTR = 0, 1, 2
QUERY_SDK_VERSION = 5
QUERY_NATIVE_INPUT_ATTR, QUERY_NATIVE_OUTPUT_ATTR = 8, 9
# rknn_tensor_type
TENSOR_FLOAT32, TENSOR_FLOAT16, TENSOR_INT8, TENSOR_UINT8, TENSOR_INT16 = 0, 1, 2, 3, 4
# rknn_tensor_format
TENSOR_NCHW, TENSOR_NHWC, TENSOR_NC1HWC2, TENSOR_UNDEFINED = 0, 1, 2, 3

# rknn_api.h error codes
ERRORS: dict[int, str] = {
    0: "RKNN_SUCC", -1: "RKNN_ERR_FAIL", -2: "RKNN_ERR_TIMEOUT", -3: "RKNN_ERR_DEVICE_UNAVAILABLE",
    -4: "RKNN_ERR_MALLOC_FAIL", -5: "RKNN_ERR_PARAM_INVALID", -6: "RKNN_ERR_MODEL_INVALID",
    -7: "RKNN_ERR_CTX_INVALID", -8: "RKNN_ERR_INPUT_INVALID", -9: "RKNN_ERR_OUTPUT_INVALID",
    -10: "RKNN_ERR_DEVICE_UNMATCH", -11: "RKNN_ERR_INCOMPATILE_PRE_COMPILE_MODEL",
    -12: "RKNN_ERR_INCOMPATILE_OPTIMIZATION_LEVEL_VERSION", -13: "RKNN_ERR_TARGET_PLATFORM_UNMATCH",
}
TENSOR_TYPES = {"RKNN_TENSOR_FLOAT32": 0, "RKNN_TENSOR_FLOAT16": 1, "RKNN_TENSOR_INT8": 2,
                "RKNN_TENSOR_UINT8": 3, "RKNN_TENSOR_INT16": 4}
TENSOR_FORMATS = {"RKNN_TENSOR_NCHW": 0, "RKNN_TENSOR_NHWC": 1, "RKNN_TENSOR_NC1HWC2": 2,
                  "RKNN_TENSOR_UNDEFINED": 3}
QUERIES = {"RKNN_QUERY_IN_OUT_NUM": 0, "RKNN_QUERY_INPUT_ATTR": 1, "RKNN_QUERY_OUTPUT_ATTR": 2,
           "RKNN_QUERY_SDK_VERSION": 5, "RKNN_QUERY_NATIVE_INPUT_ATTR": 8, "RKNN_QUERY_NATIVE_OUTPUT_ATTR": 9}


class InputOutputNum(Structure):
    _fields_ = [("n_input", c_uint32), ("n_output", c_uint32)]


class TensorAttr(Structure):
    _fields_ = [
        ("index", c_uint32), ("n_dims", c_uint32), ("dims", c_uint32 * MAX_DIMS),
        ("name", c_char * MAX_NAME_LEN), ("n_elems", c_uint32), ("size", c_uint32), ("fmt", c_int),
        ("type", c_int), ("qnt_type", c_int), ("fl", c_int8), ("zp", c_int32), ("scale", c_float),
        ("w_stride", c_uint32), ("size_with_stride", c_uint32), ("pass_through", c_uint8),
        ("h_stride", c_uint32),
    ]


class SdkVersion(Structure):
    _fields_ = [("api_version", c_char * 256), ("drv_version", c_char * 256)]


class Input(Structure):
    _fields_ = [("index", c_uint32), ("buf", c_void_p), ("size", c_uint32), ("pass_through", c_uint8),
                ("type", c_int), ("fmt", c_int)]


class Output(Structure):
    _fields_ = [("want_float", c_uint8), ("is_prealloc", c_uint8), ("index", c_uint32), ("buf", c_void_p),
                ("size", c_uint32)]


STRUCTS: dict[str, type[Structure]] = {
    "rknn_input_output_num": InputOutputNum, "rknn_tensor_attr": TensorAttr, "rknn_sdk_version": SdkVersion,
    "rknn_input": Input, "rknn_output": Output,
}
# LP64 sizes of the header's structs
EXPECTED_SIZES = {"rknn_input_output_num": 8, "rknn_tensor_attr": 376, "rknn_sdk_version": 512,
                  "rknn_input": 32, "rknn_output": 24}


def declared_sizes() -> dict[str, int]:
    """``sizeof`` of every struct as declared here."""
    return {name: ctypes.sizeof(struct) for name, struct in STRUCTS.items()}


def error_name(code: int) -> str:
    return ERRORS.get(code, f"error {code}")
