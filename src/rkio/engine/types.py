"""Leaf types shared by the engine's parts and its callers (the API layers).

Everything here is a frozen dataclass: no I/O, no behaviour beyond trivial properties.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import msgspec

from rkio.engine.vision_spec import VisionSpec
from rkio.runtime.base import (
    ChatMessage,
    ChatTemplateOverride,
    CrossAttnParams,
    FunctionTools,
    GenerateParams,
    LoadParams,
    Perf,
    RunOutputs,
    RuntimeKind,
    Sampling,
)

if TYPE_CHECKING:
    from rkio.engine.chunk_push import ChunkPush
    from rkio.engine.run_plan import RunPlan

__all__ = ["ChatMessage", "RuntimeKind"]  # defined in the runtime layer, re-exported for the engine's callers


# ---------------------------------------------------------------------------------------------- models


@dataclass(frozen=True, slots=True)
class PrefixCacheSettings:
    """Prompt-cache files for shared prompt prefixes (``rkio.engine.runner.prefix_cache``).

    ``mode`` "on" always uses them; "auto" only once ``rkio probe --kv-reuse`` confirmed on this board
    that loading one skips the prefix's prefill (a file ``<directory>/confirmed/<runtime name>``).
    """

    directory: str
    mode: Literal["auto", "on"]
    max_bytes: int
    max_age_s: float


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model resolved from the models directory, with its configuration (model.toml) applied."""

    name: str
    path: str  # absolute path of the .rkllm / .gguf file
    runtime: RuntimeKind
    size_bytes: int  # the model file's size (sparse files count their apparent size)
    mtime_ns: int
    load: LoadParams  # defaults for init; max_context_len etc.
    system_prompt: str | None = None
    chat_template: str | None = None  # jinja source or preset name; None = backend default / ChatML
    keep_alive: float | None = None  # seconds; None = server default; < 0 = forever
    pinned: bool = False
    base_domain_id: int | None = None  # user-pinned domain; None = planner decides
    abi: str | None = None  # rkllm ABI override for this model ("1.2.1", ...)
    lora_adapters: tuple[tuple[str, str, float], ...] = ()  # (name, path, scale)
    max_context_limit: int | None = None  # when known from the file (GGUF n_ctx_train)
    kv_reuse: bool = True  # HTTP chats continue from the KV cache when the prompt extends it (kv_reuse.py)
    prefix_caches: PrefixCacheSettings | None = None  # set by the engine; None = no prefix caches
    # model.toml ``sampling = "reinit"``: where the runtime has no per-run sampling, re-init the idle model
    # for a request's sampling instead of running it with the loaded one (rkio.engine.sampling_groups)
    sampling_policy: Literal["loaded", "reinit"] = "loaded"
    pooling: Literal["last", "mean"] = "last"  # embeddings: last token (Qwen3-Embedding) or mean of tokens
    rerank_yes_token: int | None = None  # a reranker's "yes" / "no" token ids (scored from the logits)
    rerank_no_token: int | None = None
    rerank_template: str | None = None  # the reranker's prompt with {query} and {document}
    vision: VisionSpec | None = None  # model.toml [vision]: the model's RKNN image encoder


# ---------------------------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What an API layer asks the engine for. Either ``messages`` (chat) or ``prompt`` (completion)."""

    model: str
    messages: tuple[ChatMessage, ...] | None = None
    prompt: str | None = None
    raw: bool = False  # prompt is sent verbatim, no chat template
    tools: tuple[dict[str, Any], ...] = ()
    max_tokens: int | None = None
    sampling: Sampling | None = None  # fully resolved per-request sampling, or None = model defaults
    stop: tuple[str, ...] = ()
    num_ctx: int | None = None  # a different max_context_len: may need a managed re-init
    keep_alive: float | None = None  # seconds; None = model/server default; < 0 forever; 0 unload after
    enable_thinking: bool = False
    lease: str | None = None  # JSON-RPC handle lease id
    request_id: str = ""
    runtime_input: GenerateParams | None = None  # a raw rkllm input, sent as is (no chat rendering)
    handle_state: HandleState | None = None  # the lease's handle state to apply before this run
    json_schema: str | None = None  # JSON text of a schema to enforce while decoding where the runtime can
    lora: str | None = None  # the [[lora]] adapter of a model variant ``base:adapter`` (set by the engine)


@dataclass(frozen=True, slots=True)
class HandleState:
    """The runtime state one lease wants its handle in for a run (the runner applies only differences).

    ``owner`` keys the KV cache: when the handle's KV content belongs to another owner it is cleared before
    the run, so no client's context reaches another. HTTP requests have owner "": among them a conversation
    is identified by its content (``rkio.engine.runner.kv_reuse``), and a lease's cache is never theirs.
    ``chat_template`` None means rkio's own empty template (the prompt reaches the model verbatim);
    ``function_tools`` / ``cross_attn`` / ``prompt_cache_path`` None mean none set. ``clear_kv`` asks for
    an empty KV cache before the run even when the owner did not change.
    """

    owner: str
    chat_template: ChatTemplateOverride | None = None
    function_tools: FunctionTools | None = None
    cross_attn: CrossAttnParams | None = None
    prompt_cache_path: str | None = None
    clear_kv: bool = False


RuntimeOp = Literal["load_lora", "get_kv_cache_size", "clear_kv_cache",
                    "encode_image", "rknn_query", "rknn_run"]


@dataclass(frozen=True, slots=True)
class RuntimeCall:
    """A call on a lease's handle that is not a generation (``Engine.runtime_call``).

    ``args``: load_lora ``{lora_adapter_path, lora_adapter_name, scale}`` (the path relative to the
    models directory), get_kv_cache_size ``{}``, clear_kv_cache ``{keep_system_prompt, ranges?}`` with
    ``ranges`` a list of ``[start, end)`` pairs, one per batch; a vision model's encoder calls
    (``rkio.engine.runner.vision.perform``): encode_image ``{image}``, rknn_query ``{}``,
    rknn_run ``{tensor, type, channels_last}``.
    """

    op: RuntimeOp
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LoadOverrides:
    """The RKLLMParam fields a client may set when it opens a lease; None keeps the model's value.

    ``base_domain_id`` is a wish: the planner decides the domain.
    """

    max_context_len: int | None = None
    max_new_tokens: int | None = None
    top_k: int | None = None
    top_p: float | None = None
    temperature: float | None = None
    repeat_penalty: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    mirostat: int | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    n_keep: int | None = None
    base_domain_id: int | None = None
    embed_flash: bool | None = None
    enabled_cpus_mask: int | None = None
    n_batch: int | None = None
    use_cross_attn: bool | None = None
    skip_special_token: bool | None = None
    ignore_eos_token: bool | None = None


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """What a lease holds: its model instance's runtime, features and the load parameters in effect."""

    lease: str
    model: str
    runtime: str  # Runtime.name, e.g. "rkllm-1.2.1"
    features: frozenset[str]
    load: LoadParams


# ---------------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Queued:
    """The request waits; ``position`` 0 means next in line."""

    position: int


@dataclass(frozen=True, slots=True)
class Loading:
    model: str


class TokenChunk(msgspec.Struct, frozen=True, gc=False):
    """One or more tokens that became ready together (batched across the process boundary).

    A msgspec struct, not a dataclass: one is made per token at an NPU's pace, and a frozen dataclass's
    ``__init__`` is Python code, this one is C (the board-pace issue: CPU per token)."""

    text: str
    token_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class Timings:
    """Seconds; ``None`` where a phase did not happen (e.g. no load)."""

    queue_s: float
    load_s: float | None
    ttft_s: float | None
    total_s: float
    prefill_s: float | None = None
    generate_s: float | None = None


@dataclass(frozen=True, slots=True)
class Done:
    finish_reason: Literal["stop", "length"]
    usage: Usage
    timings: Timings
    perf: Perf | None = None
    outputs: RunOutputs | None = None  # hidden states / logits of a run in that mode
    stop_sequence: str | None = None  # the stop string (request's or chat template's) that ended the reply


EngineEvent = Queued | Loading | TokenChunk | Done
"""``Engine.generate`` yields these; errors are raised as ``RkioError`` subclasses instead."""


# ---------------------------------------------------------------------------------------------- status


@dataclass(frozen=True, slots=True)
class LoadedModel:
    name: str
    runtime: RuntimeKind
    state: Literal["loading", "idle", "busy", "stopping"]
    pid: int | None
    bytes: int  # planner's figure (learned or estimated)
    rss_bytes: int | None  # last measured
    domains: tuple[int, ...]  # IOMMU domains (empty for CPU)
    max_context_len: int
    loaded_at: float  # wall clock (time.time())
    last_used: float
    expires_at: float | None  # None = never (pinned / negative keep_alive)
    queue_length: int
    pinned: bool
    leases: int
    # what a request's sampling gets on this model: the sampling it was loaded with, whether the runtime
    # takes sampling per run (None: unknown), and model.toml's policy when it does not ("loaded"/"reinit")
    sampling: Sampling | None = None
    per_request_sampling: bool | None = None
    sampling_policy: str = "loaded"


@dataclass(frozen=True, slots=True)
class Cooldown:
    model: str
    until: float
    reason: str
    failures: int


@dataclass(frozen=True, slots=True)
class EngineStatus:
    loaded: tuple[LoadedModel, ...]
    budget_bytes: int
    used_bytes: int
    free_bytes: int
    queue_length: int
    running: int
    npu_lanes: int
    cooldowns: tuple[Cooldown, ...] = ()
    quarantined: tuple[str, ...] = ()
    counters: dict[str, int] = field(default_factory=dict)  # loads, load_failures, evictions, crashes...


class Engine(Protocol):
    """What the HTTP / JSON-RPC layers call. Implemented by ``rkio.engine.engine.ModelEngine``."""

    def generate(self, request: GenerationRequest,
                 push: ChunkPush | None = None) -> AsyncIterator[EngineEvent]:
        """Queue, load if needed, run. Raises RkioError subclasses; closing the iterator cancels.

        Token chunks the consumer takes through ``push`` (``rkio.engine.chunk_push``) are not yielded."""
        ...

    def plan(self, request: GenerationRequest) -> RunPlan:
        """What ``request`` will get from its runtime (``rkio.engine.run_plan``); raises like generate."""
        ...

    async def load(self, model: str, keep_alive: float | None = None) -> None: ...
    async def unload(self, model: str) -> None: ...
    def status(self) -> EngineStatus: ...
    def models(self) -> list[ModelSpec]: ...
    def model_ids(self) -> list[tuple[str, ModelSpec]]:
        """Every model id served (LoRA variants ``base:adapter`` after their base) with its model."""
        ...
    def model(self, name: str) -> ModelSpec:
        """Raises ModelNotFound."""
        ...

    async def open_lease(self, model: str, load: LoadOverrides | None = None) -> str:
        """Load ``model`` (with ``load`` applied) and keep it resident until the lease is closed.

        Raises InvalidRequest when another lease holds the instance with conflicting parameters."""
        ...

    async def close_lease(self, lease: str) -> None: ...
    def lease_info(self, lease: str) -> LeaseInfo:
        """Raises InvalidRequest for an unknown lease, RunnerCrashed when its runner died."""
        ...

    async def runtime_call(self, lease: str, call: RuntimeCall) -> object:
        """Run ``call`` in the lease's runner once its handle is idle (queued like a generation).

        Raises Unsupported, RunnerCrashed, InvalidRequest."""
        ...

    async def start(self) -> None: ...
    async def stop(self, grace: float = 10.0) -> None: ...
