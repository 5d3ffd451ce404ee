"""The C structures of rkllm.h, for every ABI generation, built from one annotated field list each.

Every structure is declared once: its fields are listed in header order and the fields a generation added or
removed are switched on the generation, so the differences between generations read like the header diffs
(rkllm-runtime.md §1.3). Offsets are pinned by tests against tables computed from the vendor headers.
"""

from __future__ import annotations

import ctypes
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    Union,
    c_bool,
    c_char_p,
    c_float,
    c_int,
    c_int8,
    c_int32,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Any

Fields = list[tuple[str, Any]]


class Generation(IntEnum):
    """ABI generations in release order; layouts are identical within one generation."""

    V1_1 = 0  # 1.1.0 - 1.1.4
    V1_2_0 = 1
    V1_2_1B1 = 2  # the 1.2.1 beta: multimodal input grew, nothing else changed yet
    V1_2_1 = 3  # 1.2.1 - 1.2.3
    V1_3_0 = 4

    @property
    def label(self) -> str:
        return _LABELS[self]

    @classmethod
    def from_label(cls, label: str) -> Generation:
        for generation, text in _LABELS.items():
            if text == label:
                return generation
        raise ValueError(f"unknown rkllm ABI {label!r} (known: {', '.join(_LABELS.values())})")


_LABELS = {
    Generation.V1_1: "1.1",
    Generation.V1_2_0: "1.2.0",
    Generation.V1_2_1B1: "1.2.1b1",
    Generation.V1_2_1: "1.2.1",
    Generation.V1_3_0: "1.3.0",
}

# enum values shared by every generation since 1.1
RUN_NORMAL, RUN_WAITING, RUN_FINISH, RUN_ERROR = 0, 1, 2, 3
INPUT_PROMPT, INPUT_TOKEN, INPUT_EMBED, INPUT_MULTIMODAL = 0, 1, 2, 3
INFER_GENERATE, INFER_GET_LAST_HIDDEN_LAYER, INFER_GET_LOGITS = 0, 1, 2  # RKLLMInferMode (LOGITS: 1.2.0+)
RUN_GET_LAST_HIDDEN_LAYER = 4  # 1.1.x only: the LLMCallState of a hidden-layer result (rkllm-runtime.md §1.3)

SAMPLING_FIELDS: Fields = [
    ("top_k", c_int32),
    ("top_p", c_float),
    ("temperature", c_float),
    ("repeat_penalty", c_float),
    ("frequency_penalty", c_float),
    ("presence_penalty", c_float),
    ("mirostat", c_int32),
    ("mirostat_tau", c_float),
    ("mirostat_eta", c_float),
]


def _struct(name: str, fields: Fields, *, anonymous: tuple[str, ...] = ()) -> type[Structure]:
    namespace: dict[str, Any] = {"_fields_": fields}
    if anonymous:
        namespace["_anonymous_"] = anonymous
    return type(name, (Structure,), namespace)


@dataclass(frozen=True)
class Layout:
    """The structures and callback types of one generation; ``None`` where the generation lacks one."""

    generation: Generation
    extend_param: type[Structure]
    param: type[Structure]
    lora_adapter: type[Structure]
    embed_input: type[Structure]
    token_input: type[Structure]
    multimodal_input: type[Structure]
    input: type[Structure]
    lora_param: type[Structure]
    prompt_cache_param: type[Structure]
    infer_param: type[Structure]
    last_hidden_layer: type[Structure]
    result: type[Structure]
    result_callback: Any  # CFUNCTYPE(void | int, RKLLMResult*, void*, LLMCallState)
    logits: type[Structure] | None = None
    perf: type[Structure] | None = None
    cross_attn_param: type[Structure] | None = None
    sampling_param: type[Structure] | None = None
    callback: type[Structure] | None = None  # RKLLMCallback (1.3.0)
    tokenizer_callback: Any = None
    embed_callback: Any = None

    def by_c_name(self) -> dict[str, type[Structure]]:
        """Every structure under its name in that generation's header."""
        return {cls.__name__: cls for cls in vars(self).values() if isinstance(cls, type)
                and issubclass(cls, Structure)}


def _extend_param_fields(g: Generation) -> Fields:
    fields: Fields = [("base_domain_id", c_int32)]
    if g < Generation.V1_2_0:
        return [*fields, ("reserved", c_uint8 * 112)]
    fields += [("embed_flash", c_int8), ("enabled_cpus_num", c_int8), ("enabled_cpus_mask", c_uint32)]
    if g < Generation.V1_2_1:
        return [*fields, ("reserved", c_uint8 * 106)]
    return [*fields, ("n_batch", c_uint8), ("use_cross_attn", c_int8), ("reserved", c_uint8 * 104)]


def _param_fields(g: Generation, extend_param: type[Structure]) -> Fields:
    fields: Fields = [("model_path", c_char_p), ("max_context_len", c_int32), ("max_new_tokens", c_int32)]
    fields.append(SAMPLING_FIELDS[0])  # top_k
    if g >= Generation.V1_2_0:
        fields.append(("n_keep", c_int32))
    fields += SAMPLING_FIELDS[1:]
    fields.append(("skip_special_token", c_bool))
    if g >= Generation.V1_3_0:
        fields.append(("ignore_eos_token", c_bool))
    fields.append(("is_async", c_bool))
    if g < Generation.V1_3_0:
        fields += [("img_start", c_char_p), ("img_end", c_char_p), ("img_content", c_char_p)]
    return [*fields, ("extend_param", extend_param)]


def _multimodal_input(g: Generation) -> type[Structure]:
    if g >= Generation.V1_3_0:
        image = _struct("image", [
            ("image_embed", POINTER(c_float)), ("n_image_tokens", c_size_t), ("n_image", c_size_t),
            ("image_start", c_char_p), ("image_end", c_char_p), ("image_content", c_char_p),
            ("image_width", c_size_t), ("image_height", c_size_t),
        ])
        video = _struct("video", [
            ("video_embed", POINTER(c_float)), ("n_frame_tokens", c_size_t), ("n_frame_per_video", c_size_t),
            ("n_video", c_size_t), ("video_start", c_char_p), ("video_end", c_char_p),
            ("video_content", c_char_p), ("frame_width", c_size_t), ("frame_height", c_size_t),
        ])
        return _struct("RKLLMMultiModalInput", [("prompt", c_char_p), ("image", image), ("video", video)])
    fields: Fields = [("prompt", c_char_p), ("image_embed", POINTER(c_float)), ("n_image_tokens", c_size_t)]
    if g >= Generation.V1_2_1B1:
        fields += [("n_image", c_size_t), ("image_width", c_size_t), ("image_height", c_size_t)]
    return _struct("RKLLMMultiModelInput", fields)


def _infer_param_fields(g: Generation, lora: type[Structure], cache: type[Structure],
                        sampling: type[Structure] | None) -> Fields:
    fields: Fields = [("mode", c_int), ("lora_params", POINTER(lora))]
    fields.append(("prompt_cache_params", POINTER(cache)))
    if sampling is not None:
        fields.append(("sampling_params", POINTER(sampling)))
    if g >= Generation.V1_2_0:
        fields.append(("keep_history", c_int))
    if g >= Generation.V1_3_0:
        fields.append(("max_new_tokens", c_int32))
    return fields


def build_layout(g: Generation) -> Layout:
    """Create the ctypes structures of generation ``g`` (fresh classes on every call)."""
    extend_param = _struct("RKLLMExtendParam", _extend_param_fields(g))
    embed_input = _struct("RKLLMEmbedInput", [("embed", POINTER(c_float)), ("n_tokens", c_size_t)])
    token_input = _struct("RKLLMTokenInput", [("input_ids", POINTER(c_int32)), ("n_tokens", c_size_t)])
    multimodal_input = _multimodal_input(g)
    payload = type("RKLLMInputPayload", (Union,), {"_fields_": [
        ("prompt_input", c_char_p), ("embed_input", embed_input), ("token_input", token_input),
        ("multimodal_input", multimodal_input),
    ]})
    input_fields: Fields = [("role", c_char_p), ("enable_thinking", c_bool)] if g >= Generation.V1_2_1 else []
    input_fields += [("input_type", c_int), ("payload", payload)]
    lora_param = _struct("RKLLMLoraParam", [("lora_adapter_name", c_char_p)])
    cache_param = _struct("RKLLMPromptCacheParam", [
        ("save_prompt_cache", c_int), ("prompt_cache_path", c_char_p)])
    sampling = _struct("RKLLMSamplingParam", SAMPLING_FIELDS) if g >= Generation.V1_3_0 else None
    hidden = _struct("RKLLMResultLastHiddenLayer", [
        ("hidden_states", POINTER(c_float)), ("embd_size", c_int), ("num_tokens", c_int)])
    logits = perf = None
    # text reads as bytes up to its NUL (a c_char_p never gives str): a token can end inside a UTF-8
    # character, so the reassembler decodes it
    result_fields: Fields = [("text", c_char_p), ("token_id", c_int32), ("last_hidden_layer", hidden)]
    if g >= Generation.V1_2_0:
        logits = _struct("RKLLMResultLogits", [
            ("logits", POINTER(c_float)), ("vocab_size", c_int), ("num_tokens", c_int)])
        result_fields.append(("logits", logits))
    if g >= Generation.V1_2_1:
        perf = _struct("RKLLMPerfStat", [
            ("prefill_time_ms", c_float), ("prefill_tokens", c_int), ("generate_time_ms", c_float),
            ("generate_tokens", c_int), ("memory_usage_mb", c_float)])
        result_fields.append(("perf", perf))
    result = _struct("RKLLMResult", result_fields)
    returns = c_int if g >= Generation.V1_2_1 else None
    result_callback = CFUNCTYPE(returns, POINTER(result), c_void_p, c_int)
    layout = Layout(
        generation=g,
        extend_param=extend_param,
        param=_struct("RKLLMParam", _param_fields(g, extend_param)),
        lora_adapter=_struct("RKLLMLoraAdapter", [
            ("lora_adapter_path", c_char_p), ("lora_adapter_name", c_char_p), ("scale", c_float)]),
        embed_input=embed_input,
        token_input=token_input,
        multimodal_input=multimodal_input,
        input=_struct("RKLLMInput", input_fields, anonymous=("payload",)),
        lora_param=lora_param,
        prompt_cache_param=cache_param,
        infer_param=_struct("RKLLMInferParam", _infer_param_fields(g, lora_param, cache_param, sampling)),
        last_hidden_layer=hidden,
        result=result,
        result_callback=result_callback,
        logits=logits,
        perf=perf,
        sampling_param=sampling,
    )
    if g < Generation.V1_2_1:
        return layout
    cross_attn = _struct("RKLLMCrossAttnParam", [
        ("encoder_k_cache", POINTER(c_float)), ("encoder_v_cache", POINTER(c_float)),
        ("encoder_mask", POINTER(c_float)), ("encoder_pos", POINTER(c_int32)), ("num_tokens", c_int)])
    if g < Generation.V1_3_0:
        return replace(layout, cross_attn_param=cross_attn)
    tokenizer_callback = CFUNCTYPE(c_int, c_void_p, c_char_p, c_int32, POINTER(c_int32), c_int32)
    embed_callback = CFUNCTYPE(c_int, c_void_p, POINTER(c_int32), c_uint64, c_void_p, c_uint64)
    callback = _struct("RKLLMCallback", [
        ("result_callback", result_callback), ("result_userdata", c_void_p),
        ("tokenizer_callback", tokenizer_callback), ("tokenizer_userdata", c_void_p),
        ("embed_callback", embed_callback), ("embed_userdata", c_void_p)])
    return replace(layout, cross_attn_param=cross_attn, callback=callback,
                    tokenizer_callback=tokenizer_callback, embed_callback=embed_callback)


def float_buffer(data: bytes) -> ctypes.Array[c_float]:
    """A C float array holding ``data`` (float32 values in native byte order)."""
    if len(data) % 4:
        raise ValueError(f"float32 data must be a multiple of 4 bytes, got {len(data)}")
    buffer = (c_float * (len(data) // 4))()
    ctypes.memmove(buffer, data, len(data))
    return buffer
