"""The backend-neutral runtime interface, in typed Python values (no ctypes above this line).

A ``Runtime`` owns at most one loaded model. It is used from exactly one runner process; ``generate`` blocks
the calling thread until the generation ends, and ``abort`` may be called from another thread meanwhile.
Features an ABI generation lacks are listed in ``features``; calling them raises ``Unsupported``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any, Literal, Protocol

import msgspec

from rkio.errors import Unsupported

if TYPE_CHECKING:
    from rkio.runtime.chat import ChatTemplate


RuntimeKind = Literal["rkllm", "llamacpp"]

CONSTRAINED_DECODING: frozenset[RuntimeKind] = frozenset({"llamacpp"})
"""Backends that enforce ``GenerateParams.json_schema`` while decoding (``Feature.JSON_SCHEMA``); rkllm has no
constrained decoding in any ABI generation, so callers validate its output instead."""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a conversation, as the chat template renders it."""

    role: str  # system | user | assistant | tool
    content: str
    tool_calls: tuple[dict[str, Any], ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    images: tuple[bytes, ...] = ()


class Feature(StrEnum):
    """Capabilities that differ between runtime generations and backends."""

    TOKEN_INPUT = "token input"
    EMBED_INPUT = "embedding input"
    MULTIMODAL_INPUT = "multimodal input"
    MULTIPLE_IMAGES = "several images per multimodal input"
    ROLE = "input role"
    ENABLE_THINKING = "enable_thinking"
    KEEP_HISTORY = "keep_history"
    PER_RUN_SAMPLING = "per-request sampling"
    PER_RUN_MAX_NEW_TOKENS = "per-request max_new_tokens"
    SAMPLING_SEED = "sampling seed"
    PERF_STATS = "performance statistics"
    LORA = "LoRA adapters"
    PROMPT_CACHE = "prompt cache"
    CLEAR_KV_CACHE = "clear_kv_cache"
    CLEAR_KV_CACHE_RANGES = "clear_kv_cache ranges"
    KV_CACHE_SIZE = "get_kv_cache_size"
    CHAT_TEMPLATE = "set_chat_template"
    FUNCTION_TOOLS = "set_function_tools"
    CROSS_ATTN = "set_cross_attn_params"
    RUN_ASYNC = "rkllm_run_async"
    IGNORE_EOS = "ignore_eos_token"
    EMBED_FLASH = "embed_flash"
    CPU_MASK = "CPU mask"
    N_BATCH = "n_batch"
    PAUSE = "pause from callback"
    MULTI_INSTANCE = "several handles in one process"
    LAST_HIDDEN_LAYER = "last hidden layer output"
    LOGITS = "logits output"
    JSON_SCHEMA = "JSON schema enforced during decoding"


class CallState(Enum):
    """Mirrors rkllm's LLMCallState (after UTF-8 reassembly WAITING never reaches callers)."""

    NORMAL = 0
    WAITING = 1
    FINISH = 2
    ERROR = 3


@dataclass(frozen=True, slots=True)
class Sampling:
    """Sampling parameters; defaults are rkllm_createDefaultParam's documented ones."""

    top_k: int = 40
    top_p: float = 0.9
    temperature: float = 0.8
    repeat_penalty: float = 1.1
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class LoraAdapter:
    path: str
    name: str
    scale: float = 1.0


@dataclass(frozen=True, slots=True)
class ChatTemplateOverride:
    """Arguments of rkllm_set_chat_template."""

    system_prompt: str
    prompt_prefix: str
    prompt_postfix: str


@dataclass(frozen=True, slots=True)
class LoadParams:
    """Everything fixed when a model is loaded (rkllm_init's RKLLMParam, llama.cpp's Llama())."""

    model_path: str
    max_context_len: int = 4096
    max_new_tokens: int = 2048
    sampling: Sampling = field(default_factory=Sampling)
    n_keep: int = -1
    base_domain_id: int = 0
    embed_flash: bool = True
    enabled_cpus_mask: int = 0  # 0 = the runtime's default
    n_batch: int = 1
    use_cross_attn: bool = False
    skip_special_token: bool = True
    ignore_eos_token: bool = False
    is_async: bool = False
    n_threads: int = 0  # CPU backends; 0 = backend default
    # a vision model's image tags; RKLLMParam.img_* before rkllm 1.3.0, per run (MultimodalInput) since
    img_start: str = ""
    img_end: str = ""
    img_content: str = ""


@dataclass(frozen=True, slots=True)
class PromptCacheParams:
    save: bool
    path: str


@dataclass(frozen=True, slots=True)
class MultimodalInput:
    prompt: str
    image_embed: bytes  # float32 array, n_image_tokens * embed_dim
    n_image_tokens: int
    n_image: int = 1
    image_width: int = 0
    image_height: int = 0
    # the model's image tags, taken per run by rkllm 1.3.0 (older runtimes take LoadParams.img_*)
    image_start: str = ""
    image_end: str = ""
    image_content: str = ""


@dataclass(frozen=True, slots=True)
class CrossAttnParams:
    encoder_k_cache: bytes
    encoder_v_cache: bytes
    encoder_mask: bytes
    encoder_pos: tuple[int, ...]
    num_tokens: int


InferMode = Literal["generate", "hidden", "logits"]
"""rkllm's RKLLMInferMode: GENERATE, GET_LAST_HIDDEN_LAYER, GET_LOGITS (the last one from 1.2.0)."""


@dataclass(frozen=True, slots=True)
class FunctionTools:
    """Arguments of rkllm_set_function_tools (1.2.1+)."""

    system_prompt: str
    tools_json: str
    tool_response_str: str


@dataclass(frozen=True, slots=True)
class RunOutputs:
    """What a hidden-layer or logits run returns instead of text.

    ``data`` is little-endian float32, row-major in ``shape``: (num_tokens, embd_size) for ``hidden``,
    (num_tokens, vocab_size) for ``logits``.
    """

    kind: Literal["hidden", "logits"]
    data: bytes
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class GenerateParams:
    """One generation. Exactly one of prompt / tokens / embed / multimodal is set."""

    prompt: str | None = None
    tokens: tuple[int, ...] | None = None
    embed: bytes | None = None  # float32 array, n_embed_tokens * embed_dim
    n_embed_tokens: int = 0
    multimodal: MultimodalInput | None = None
    role: str = "user"
    enable_thinking: bool = False
    keep_history: bool = False
    lora: str | None = None
    prompt_cache: PromptCacheParams | None = None
    sampling: Sampling | None = None  # per-run override (Feature.PER_RUN_SAMPLING)
    max_new_tokens: int | None = None  # per-run override (Feature.PER_RUN_MAX_NEW_TOKENS)
    mode: InferMode = "generate"  # hidden: Feature.LAST_HIDDEN_LAYER, logits: Feature.LOGITS
    json_schema: str | None = None  # JSON text of a schema the output must match (Feature.JSON_SCHEMA)


class Token(msgspec.Struct, frozen=True, gc=False):
    """One runtime callback after UTF-8 reassembly: whole characters only (a msgspec struct: its
    ``__init__`` is C, and one is made per token)."""

    text: str
    token_id: int


@dataclass(frozen=True, slots=True)
class Perf:
    prefill_ms: float
    prefill_tokens: int
    generate_ms: float
    generate_tokens: int
    memory_usage_mb: float | None


FinishReason = Literal["stop", "length", "abort", "paused"]


@dataclass(frozen=True, slots=True)
class GenerationResult:
    finish: FinishReason
    n_tokens: int
    perf: Perf | None = None
    outputs: RunOutputs | None = None  # set by runs in mode hidden / logits


TokenSink = Callable[[Token], bool]
"""Called once per token from the generating thread. Return False to stop (abort) the generation."""


class Runtime(Protocol):
    """One model handle. Lifecycle: load -> (generate | ...)* -> destroy."""

    name: str  # e.g. "rkllm-1.2.1", "llamacpp-0.3.16"
    features: frozenset[Feature]

    def load(self, params: LoadParams) -> None: ...
    def generate(self, params: GenerateParams, on_token: TokenSink) -> GenerationResult: ...
    def abort(self) -> None: ...
    def is_running(self) -> bool: ...
    def destroy(self) -> None: ...
    def load_lora(self, adapter: LoraAdapter) -> None: ...
    def load_prompt_cache(self, path: str) -> None: ...
    def release_prompt_cache(self) -> None: ...
    def clear_kv_cache(
        self, keep_system_prompt: bool, ranges: Sequence[tuple[int, int]] | None = None
    ) -> None: ...
    def kv_cache_size(self) -> list[int]: ...
    def set_chat_template(self, template: ChatTemplateOverride) -> None: ...
    def set_function_tools(self, system_prompt: str, tools_json: str, tool_response_str: str) -> None: ...
    def set_cross_attn_params(self, params: CrossAttnParams) -> None: ...
    def chat_template(self) -> ChatTemplate | None:
        """The model's own chat template when the backend knows it (GGUF metadata), else None."""
        ...
    def count_tokens(self, text: str) -> int | None:
        """Token count of ``text`` when the backend can tokenize, else None."""
        ...


def require_mode(runtime: Runtime, mode: InferMode) -> None:
    """Raise ``Unsupported`` when ``runtime`` cannot run in infer ``mode`` (generate always works)."""
    if mode == "hidden":
        require(runtime, Feature.LAST_HIDDEN_LAYER)
    elif mode == "logits":
        require(runtime, Feature.LOGITS)


def require(runtime: Runtime, feature: Feature) -> None:
    """Raise ``Unsupported`` naming the runtime when it lacks ``feature``."""
    if feature not in runtime.features:
        raise Unsupported(feature.value, runtime.name)
