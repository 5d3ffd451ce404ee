"""One ``generate`` call, from queueing to ``Done``, running in the caller's task.

Tokens go from the runner's stream straight to the caller: per chunk this does two clock marks for the
watchdog and a ``yield``, nothing else; a chunk the caller takes through ``ChunkPush`` (from the runner
client's read callback) costs one clock mark and never resumes this generator. The scheduler only hears
about the request when it is queued, granted, cancelled, stalled, or done.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any, Literal

from rkio.engine.chunk_push import ChunkPush, WatchedRelay
from rkio.engine.events import Cancel, GenerationDone, Outcome, Request, TokenStall
from rkio.engine.mailbox import Grant, Mailbox
from rkio.engine.run_plan import plan_generation
from rkio.engine.runner.messages import RunnerDone, RunnerGeneration
from rkio.engine.supervisor import Supervisor
from rkio.engine.types import (
    ChatMessage,
    Done,
    EngineEvent,
    GenerationRequest,
    ModelSpec,
    Timings,
    TokenChunk,
    Usage,
)
from rkio.engine.watchdog import Watchdog
from rkio.errors import InvalidRequest, RkioError, RunnerCrashed, RuntimeFailure
from rkio.runtime.base import GenerateParams


def runner_generation(spec: ModelSpec, request: GenerationRequest) -> RunnerGeneration:
    """What the runner gets: chat messages to render with the model's template, or a raw prompt.

    A completion prompt is wrapped as one user message unless ``raw``. Per-request sampling is passed
    on; the runner applies it only where the runtime supports per-run sampling and otherwise keeps the
    sampling the model was loaded with (``rkio.engine.run_plan`` says which, and ``sampling = "reinit"``
    models are loaded with the request's sampling instead).
    A ``runtime_input`` (the JSON-RPC IO API's raw rkllm input) is sent as it is.
    """
    if request.runtime_input is not None:
        return RunnerGeneration(params=request.runtime_input, stop=request.stop,
                                handle_state=request.handle_state, exact=True)
    prompt: str | None = None
    messages = request.messages
    if messages is None:
        if request.prompt is None:
            raise InvalidRequest("a request needs messages or a prompt")
        if request.raw:
            prompt = request.prompt
        else:
            messages = (ChatMessage("user", request.prompt),)
    elif not messages:
        raise InvalidRequest("messages must not be empty")
    params = GenerateParams(prompt=prompt, enable_thinking=request.enable_thinking,
                            sampling=request.sampling, max_new_tokens=request.max_tokens,
                            json_schema=request.json_schema, lora=request.lora)
    return RunnerGeneration(params=params, messages=messages, tools=request.tools, stop=request.stop,
                            system_prompt=None if request.raw else spec.system_prompt,
                            handle_state=request.handle_state)


def kv_effect(request: GenerationRequest) -> bool | None:
    """How a lease's run changes its hold on the KV cache (``rkio.engine.kv_exclusive``)."""
    if request.lease is None:
        return None
    return request.runtime_input is not None and request.runtime_input.keep_history


async def generate(
    prepare: Callable[[], tuple[Supervisor, ModelSpec, GenerationRequest]], push: ChunkPush | None = None,
) -> AsyncGenerator[EngineEvent, None]:
    """Queue the request ``prepare()`` resolves, wait for its grant, stream the runner's chunks, end with
    ``Done``. ``prepare`` (the engine's checks) runs when the iteration starts, so its errors come from
    the first ``__anext__`` like every other. Chunks the consumer takes through ``push`` are not yielded."""
    sup, spec, request = prepare()
    gen = runner_generation(spec, request)
    # sampling = "reinit" models without per-run sampling are served loaded with the request's sampling
    entry = sup.scheduler.models.get(spec.name)
    plan = plan_generation(spec, gen, entry.features if entry is not None else frozenset())
    wish = gen.params.sampling if plan.reinit else None
    rid, box = sup.open_mailbox()
    clock = sup.clock
    arrived = clock()
    sup.post(Request(rid, spec, "generate", request.num_ctx, request.keep_alive, request.lease,
                     keep_history=kv_effect(request), sampling=wish))
    grant: Grant | None = None
    ended = False  # the scheduler already knows this request is over (finished or GenerationDone posted)
    stream: AsyncGenerator[Any, None] | None = None
    watchdog: Watchdog | None = None
    try:
        while grant is None:
            item = await box.until_grant()
            if type(item) is Grant:
                grant = item
            else:
                yield item  # type: ignore[misc]
        if box.error is not None:
            raise box.error
        loop = asyncio.get_running_loop()
        settings = sup.settings
        watchdog = dog = Watchdog(loop, settings.first_token_timeout, settings.token_stall_timeout,
                                  lambda first: sup.post(TokenStall(rid, first)))
        dog.start()
        first_at: float | None = None

        def pushed(chunk: TokenChunk) -> bool:
            nonlocal first_at
            take = push.take if push is not None else None
            if take is None or not take(chunk):
                return False
            dog.passed()
            if first_at is None:
                first_at = clock()
            return True

        relay = (WatchedRelay(push, dog.passed, settings.token_stall_timeout)
                 if push is not None and settings.stream_relay else None)
        stream = grant.runner.generate(gen, pushed if push is not None else None, relay)
        next_item = stream.__anext__
        while True:
            watchdog.waiting()
            try:
                out = await next_item()
            except StopAsyncIteration:
                stream, ended = None, True
                sup.post(GenerationDone(rid, "error"))
                raise RuntimeFailure("the runner's stream ended without a result") from None
            except RkioError as exc:
                stream, ended = None, True
                outcome: Outcome = "crashed" if isinstance(exc, RunnerCrashed) else "error"
                sup.post(GenerationDone(rid, outcome))
                raise box.error or exc from None
            watchdog.got()
            if type(out) is TokenChunk:
                if first_at is None:
                    first_at = clock()
                yield out
                continue
            break
        watchdog.cancel()
        # Close the finished stream now, not at garbage collection: until then the runner still counts
        # as consumed and the next grant on this lane would find it "already generating".
        await stream.aclose()
        stream, ended = None, True
        done = out
        assert isinstance(done, RunnerDone)
        sup.post(GenerationDone(rid, "ok" if done.finish != "abort" else "error", done.memory))
        if done.finish == "abort":
            raise box.error or RuntimeFailure("the runtime aborted the generation")
        yield _done(done, arrived, grant, first_at, clock())
    finally:
        if watchdog is not None:
            watchdog.cancel()
        end_request(sup, rid, box, grant, stream, ended or box.finished)


def end_request(sup: Supervisor, rid: int, box: Mailbox, grant: Grant | None,
                stream: AsyncGenerator[Any, None] | None, ended: bool) -> None:
    """Stop listening; a request the scheduler does not know is over is cancelled or its runner freed."""
    grant = grant or box.unread_grant()
    sup.close_mailbox(rid)
    if not ended:
        if grant is None:
            sup.post(Cancel(rid))
        else:
            sup.abandon(rid, stream, grant.runner)


def _done(result: RunnerDone, arrived: float, grant: Grant, first_at: float | None, now: float) -> Done:
    perf = result.perf
    timings = Timings(
        queue_s=grant.granted_at - arrived,
        load_s=grant.load_s,
        ttft_s=None if first_at is None else first_at - arrived,
        total_s=now - arrived,
        prefill_s=perf.prefill_ms / 1000 if perf else None,
        generate_s=perf.generate_ms / 1000 if perf else None,
    )
    finish: Literal["stop", "length"] = "length" if result.finish == "length" else "stop"
    return Done(finish, Usage(result.prompt_tokens, result.completion_tokens), timings, perf, result.outputs,
                result.stop_sequence)
