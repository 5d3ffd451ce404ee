"""The rkllm.h structs as clients send them, spelled as in the header (snake_case, same nesting).

Enum fields take the number or the enum name (``"RKLLM_INPUT_PROMPT"``); booleans take true/false or 0/1.
Fields nano's clients sent that rkio decides itself (``is_async``, ``img_*``, ``reserved``) are accepted and
ignored. Float arrays may come as JSON numbers or base64 of little-endian float32 (``*_base64``).
"""

from __future__ import annotations

import base64
import binascii
import struct
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rkio.api.jsonrpc.protocol import InvalidParams

INPUT_TYPES = {
    "RKLLM_INPUT_PROMPT": 0,
    "RKLLM_INPUT_TOKEN": 1,
    "RKLLM_INPUT_EMBED": 2,
    "RKLLM_INPUT_MULTIMODAL": 3,
}
INFER_MODES = {"RKLLM_INFER_GENERATE": 0, "RKLLM_INFER_GET_LAST_HIDDEN_LAYER": 1, "RKLLM_INFER_GET_LOGITS": 2}
MODE_NAMES = {0: "generate", 1: "hidden", 2: "logits"}


def enum_value(value: Any, names: dict[str, int], what: str) -> int:
    if isinstance(value, str):
        if value in names:
            return names[value]
        if value.strip().isdigit():
            value = int(value)
        else:
            raise ValueError(f"{what} must be one of {', '.join(names)} or its number")
    if isinstance(value, bool) or not isinstance(value, int) or value not in names.values():
        raise ValueError(f"{what} must be one of {sorted(names.values())} (or {', '.join(names)})")
    return value


class Struct(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExtendParam(Struct):
    base_domain_id: int | None = Field(default=None, ge=0, le=15)
    embed_flash: bool | None = None
    enabled_cpus_num: int | None = Field(default=None, ge=0, le=8)
    enabled_cpus_mask: int | None = Field(default=None, ge=0, le=255)
    n_batch: int | None = Field(default=None, ge=1, le=100)
    use_cross_attn: bool | None = None
    reserved: Any = None


class RKLLMParam(Struct):
    model_path: str | None = None
    max_context_len: int | None = Field(default=None, ge=1, le=1 << 20)
    max_new_tokens: int | None = Field(default=None, ge=-1, le=1 << 20)
    top_k: int | None = Field(default=None, ge=0)
    n_keep: int | None = None
    top_p: float | None = Field(default=None, ge=0, le=1)
    temperature: float | None = Field(default=None, ge=0)
    repeat_penalty: float | None = Field(default=None, ge=0)
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    mirostat: int | None = Field(default=None, ge=0, le=2)
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    skip_special_token: bool | None = None
    ignore_eos_token: bool | None = None
    is_async: bool | None = None  # rkio always runs the blocking rkllm_run; accepted and ignored
    img_start: str | None = None  # the model's own markers are used; accepted and ignored
    img_end: str | None = None
    img_content: str | None = None
    extend_param: ExtendParam | None = None


class TokenInput(Struct):
    input_ids: list[int] = Field(min_length=1)
    n_tokens: int | None = None  # recomputed from input_ids


class EmbedInput(Struct):
    embed: list[float] | None = None
    embed_base64: str | None = None
    n_tokens: int = Field(ge=1)


class MultimodalInput(Struct):
    prompt: str
    image_embed: list[float] | None = None
    image_embed_base64: str | None = None
    n_image_tokens: int = Field(ge=1)
    n_image: int = Field(default=1, ge=1)
    image_width: int = Field(default=0, ge=0)
    image_height: int = Field(default=0, ge=0)


class RKLLMInput(Struct):
    role: str = "user"
    enable_thinking: bool = False
    input_type: int | None = None
    prompt: str | None = None  # nano's latest and the C-parameter-keyed form
    prompt_input: str | None = None  # the header's union member
    token_input: TokenInput | None = None
    embed_input: EmbedInput | None = None
    multimodal_input: MultimodalInput | None = None
    multimodal: MultimodalInput | None = None  # nano's latest spelling

    @field_validator("input_type", mode="before")
    @classmethod
    def _input_type(cls, value: Any) -> int | None:
        return None if value is None else enum_value(value, INPUT_TYPES, "input_type")


class LoraParams(Struct):
    lora_adapter_name: str = Field(min_length=1)


class PromptCacheParams(Struct):
    save_prompt_cache: bool = False
    prompt_cache_path: str = Field(min_length=1)


class RKLLMInferParam(Struct):
    mode: int = 0
    keep_history: bool = False
    lora_params: LoraParams | None = None
    prompt_cache_params: PromptCacheParams | None = None
    # 1.3.0's per-run fields
    max_new_tokens: int | None = Field(default=None, ge=1)
    top_k: int | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, ge=0, le=1)
    temperature: float | None = Field(default=None, ge=0)
    repeat_penalty: float | None = Field(default=None, ge=0)
    frequency_penalty: float | None = None
    presence_penalty: float | None = None

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> int:
        return enum_value(0 if value is None else value, INFER_MODES, "mode")


class LoraAdapter(Struct):
    lora_adapter_path: str = Field(min_length=1)
    lora_adapter_name: str = Field(min_length=1)
    scale: float = 1.0


class ChatTemplate(Struct):
    system_prompt: str | None = None
    prompt_prefix: str | None = None
    prompt_postfix: str | None = None
    chat_template: str | None = None  # nano's latest: taken as the system prompt


class FunctionTools(Struct):
    system_prompt: str = ""
    tools: str | list[Any] | dict[str, Any]
    tool_response_str: str = ""


class CrossAttn(Struct):
    num_tokens: int = Field(ge=1)
    encoder_k_cache: Any = None
    encoder_v_cache: Any = None
    encoder_mask: Any = None
    encoder_pos: Any = None


class ClearKv(Struct):
    keep_system_prompt: bool = True
    start_pos: list[int] | None = None
    end_pos: list[int] | None = None


def float32_bytes(values: list[float] | None, encoded: str | None, field: str) -> bytes:
    """A float array as little-endian float32 bytes, from JSON numbers or base64."""
    if encoded is not None:
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidParams(f"{field}_base64 is not valid base64", f"{field}_base64") from None
        if len(data) % 4:
            raise InvalidParams(f"{field}_base64 is not a whole number of float32 values", f"{field}_base64")
        return data
    if values is None:
        raise InvalidParams(f"{field} (or {field}_base64) is required", field)
    return struct.pack(f"<{len(values)}f", *values)


def flat_floats(value: Any, field: str) -> bytes:
    """Nested or flat JSON number arrays (nano sent 4-D caches) as little-endian float32 bytes."""
    out: list[float] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, int | float) and not isinstance(item, bool):
            out.append(float(item))
        elif item is not None:
            raise InvalidParams(f"{field} must be an array of numbers", field)
    return struct.pack(f"<{len(out)}f", *out)
