"""A faithful in-memory implementation of ``rkio.engine.types.Engine`` for API tests.

It behaves like the real engine at its boundary: unknown models raise ``ModelNotFound`` on the first
``__anext__``, a full queue raises ``Busy`` with ``retry_after``, events come queued -> loading -> tokens ->
exactly one ``Done``, errors are raised mid-stream, and closing the iterator early is recorded as a
cancellation (the real engine aborts the runtime there).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

from rkio.engine.chunk_push import ChunkPush
from rkio.engine.run_plan import RunPlan, plan_for
from rkio.engine.session import runner_generation
from rkio.engine.types import (
    Done,
    EngineEvent,
    EngineStatus,
    GenerationRequest,
    LeaseInfo,
    LoadedModel,
    Loading,
    LoadOverrides,
    ModelSpec,
    Queued,
    RuntimeCall,
    Timings,
    TokenChunk,
    Usage,
)
from rkio.errors import Busy, InvalidRequest, ModelNotFound
from rkio.runtime.base import LoadParams, Perf
from rkio.runtime.llamacpp import FEATURES
from rkio.runtime.rkllm.features import features_of
from rkio.runtime.rkllm.layouts import Generation

RKLLM_1_2_3 = frozenset(f.value for f in features_of(Generation.V1_2_1, "1.2.3"))
RKLLM_1_3_0 = frozenset(f.value for f in features_of(Generation.V1_3_0, "1.3.0"))
LLAMA_FEATURES = frozenset(f.value for f in FEATURES)

Step = EngineEvent | BaseException | asyncio.Event
"""A scripted step: an event to yield, an exception to raise, or a gate to wait on."""


def spec(name: str, runtime: str = "rkllm") -> ModelSpec:
    suffix = "rkllm" if runtime == "rkllm" else "gguf"
    return ModelSpec(
        name=name,
        path=f"/models/{name}.{suffix}",
        runtime=runtime,  # type: ignore[arg-type]
        size_bytes=1 << 30,
        mtime_ns=1_700_000_000 * 10**9,
        load=LoadParams(model_path=f"/models/{name}.{suffix}", max_context_len=4096),
    )


def prompt_words(request: GenerationRequest) -> list[str]:
    if request.runtime_input is not None:
        return (request.runtime_input.prompt or "").split()
    if request.messages is not None:
        users = [m.content for m in request.messages if m.role == "user"]
        return (users[-1] if users else "").split()
    return (request.prompt or "").split()


def token_chunks(text_pieces: Sequence[str], first_id: int = 100) -> list[TokenChunk]:
    return [TokenChunk(piece, (first_id + i,)) for i, piece in enumerate(text_pieces)]


def done(
    prompt_tokens: int, completion_tokens: int, reason: str = "stop", load_s: float | None = None
) -> Done:
    return Done(
        finish_reason=reason,
        usage=Usage(prompt_tokens, completion_tokens),  # type: ignore[arg-type]
        timings=Timings(queue_s=0.25, load_s=load_s, ttft_s=0.5, total_s=2.0, prefill_s=0.4, generate_s=1.5),
        perf=Perf(
            prefill_ms=400.0,
            prefill_tokens=prompt_tokens,
            generate_ms=1500.0,
            generate_tokens=completion_tokens,
            memory_usage_mb=None,
        ),
    )


def echo_reply(request: GenerationRequest) -> list[Step]:
    """Default behaviour: queued, then the last user message's words echoed one token each."""
    words = prompt_words(request) or ["empty"]
    limit = request.max_tokens or len(words)
    reply = words[:limit]
    prompt_tokens = sum(len(m.content.split()) for m in request.messages or ()) + len(
        (request.prompt or "").split()
    )
    pieces = [w if i == 0 else " " + w for i, w in enumerate(reply)]
    reason = "length" if limit < len(words) else "stop"
    return [Queued(0), *token_chunks(pieces), done(prompt_tokens, len(reply), reason)]


@dataclass
class FakeEngine:
    names: tuple[str, ...] = ("qwen", "llama")
    script: Callable[[GenerationRequest], list[Step]] = echo_reply
    queue_full: bool = False
    requests: list[GenerationRequest] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    loads: list[tuple[str, float | None]] = field(default_factory=list)
    unloads: list[str] = field(default_factory=list)
    loaded: dict[str, float | None] = field(default_factory=dict)
    quarantined: tuple[str, ...] = ()
    counters: dict[str, int] = field(
        default_factory=lambda: {"loads": 3, "load_failures": 1, "evictions": 2, "runner_crashes": 0}
    )
    started: bool = False
    stopped: bool = False
    rkllm_features: frozenset[str] = RKLLM_1_2_3
    leases: dict[str, tuple[str, LoadOverrides | None]] = field(default_factory=dict)
    closed_leases: list[str] = field(default_factory=list)
    lease_counter: int = 0
    runtime_calls: list[tuple[str, RuntimeCall]] = field(default_factory=list)
    pushed: int = 0  # token chunks the consumer took through its ChunkPush
    cancel_seen: asyncio.Event = field(default_factory=asyncio.Event)  # set at each cancellation
    request_seen: asyncio.Event = field(default_factory=asyncio.Event)  # set at each request
    runtime_name: str = "rkllm-1.2.1"
    features: frozenset[str] = field(default_factory=lambda: frozenset(
        features_of(Generation.V1_2_1, "1.2.1")))

    def model(self, name: str) -> ModelSpec:
        if name not in self.names:
            raise ModelNotFound(f'model "{name}" not found')
        return spec(name, "llamacpp" if name == "llama" else "rkllm")

    def models(self) -> list[ModelSpec]:
        return [self.model(n) for n in self.names]

    def model_ids(self) -> list[tuple[str, ModelSpec]]:
        return [(s.name, s) for s in self.models()]

    def generate(self, request: GenerationRequest,
                 push: ChunkPush | None = None) -> AsyncIterator[EngineEvent]:
        return self._run(request, push)

    def plan(self, request: GenerationRequest) -> RunPlan:
        """The real planning over ``rkllm_features`` (rkllm models) or llama.cpp's features."""
        model = self.model(request.model)
        features = LLAMA_FEATURES if model.runtime == "llamacpp" else self.rkllm_features
        return plan_for(model, runner_generation(model, request), features)

    async def _run(self, request: GenerationRequest, push: ChunkPush | None) -> AsyncIterator[EngineEvent]:
        self.requests.append(request)
        self.request_seen.set()
        self.model(request.model)
        if self.queue_full:
            raise Busy("server busy: maximum pending requests exceeded", retry_after=2.5)
        finished = False
        try:
            for step in self.script(request):
                if isinstance(step, asyncio.Event):
                    await step.wait()
                elif isinstance(step, BaseException):
                    raise step
                else:
                    if isinstance(step, Loading | TokenChunk):
                        self.loaded.setdefault(request.model, time.time() + 300)
                    # as the runner client does: a chunk the waiting consumer takes is not yielded
                    take = push.take if push is not None else None
                    if isinstance(step, TokenChunk) and take is not None and take(step):
                        self.pushed += 1
                        continue
                    yield step
            finished = True
            self.completed.append(request.request_id)
        finally:
            if not finished:
                self.cancelled.append(request.request_id)
                self.cancel_seen.set()

    async def load(self, model: str, keep_alive: float | None = None) -> None:
        self.model(model)
        self.loads.append((model, keep_alive))
        self.loaded[model] = None if keep_alive is not None and keep_alive < 0 else time.time() + 300

    async def unload(self, model: str) -> None:
        self.unloads.append(model)
        self.loaded.pop(model, None)

    def status(self) -> EngineStatus:
        now = time.time()
        loaded = tuple(
            LoadedModel(
                name=n,
                runtime="rkllm",
                state="idle",
                pid=4242,
                bytes=1_500_000_000,
                rss_bytes=1_400_000_000,
                domains=(0,),
                max_context_len=4096,
                loaded_at=now - 60,
                last_used=now - 5,
                expires_at=exp,
                queue_length=0,
                pinned=False,
                leases=0,
            )
            for n, exp in self.loaded.items()
        )
        used = sum(m.bytes for m in loaded)
        return EngineStatus(
            loaded=loaded,
            budget_bytes=8 << 30,
            used_bytes=used,
            free_bytes=(8 << 30) - used,
            queue_length=1,
            running=0,
            npu_lanes=1,
            quarantined=self.quarantined,
            counters=dict(self.counters),
        )

    async def open_lease(self, model: str, load: LoadOverrides | None = None) -> str:
        self.model(model)
        self.lease_counter += 1
        lease = f"lease-{model}-{self.lease_counter}"
        self.leases[lease] = (model, load)
        return lease

    async def close_lease(self, lease: str) -> None:
        self.leases.pop(lease, None)
        self.closed_leases.append(lease)

    def lease_info(self, lease: str) -> LeaseInfo:
        model, load = self.leases[lease]
        params = spec(model).load
        if load is not None:
            params = replace(params, **{k: v for k, v in asdict(load).items()
                                        if v is not None and hasattr(params, k)})
        return LeaseInfo(lease, model, self.runtime_name, self.features, params)

    async def runtime_call(self, lease: str, call: RuntimeCall) -> object:
        if lease not in self.leases:
            raise InvalidRequest(f"lease {lease} is not open")
        self.runtime_calls.append((lease, call))
        if call.op == "get_kv_cache_size":
            return [7]
        return None

    async def start(self) -> None:
        self.started = True

    async def stop(self, grace: float = 10.0) -> None:
        self.stopped = True
