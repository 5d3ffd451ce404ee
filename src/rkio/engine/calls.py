"""Runtime calls on a lease's handle (``Engine.runtime_call``): load_lora, get_kv_cache_size, clear_kv_cache.

A call needs the handle idle, so it is queued and granted exactly like a generation (same admission,
queue deadline, lane and crash handling), then runs in the runner (``rkio.engine.runner.calls``) instead
of a generation. The lease id is the KV owner the runner checks.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from rkio.engine.events import GenerationDone, Request, TokenStall
from rkio.engine.session import end_request
from rkio.engine.supervisor import Grant, Supervisor
from rkio.engine.types import GenerationRequest, ModelSpec, RuntimeCall
from rkio.engine.watchdog import Watchdog
from rkio.errors import InvalidRequest, RkioError, RunnerCrashed

# and a vision model's encoder calls (rkio.engine.runner.vision.perform)
OPS = ("load_lora", "get_kv_cache_size", "clear_kv_cache", "encode_image", "rknn_query", "rknn_run")


def call_args(call: RuntimeCall, models_dir: Path) -> dict[str, Any]:
    """The arguments the runner gets: a LoRA path resolved inside ``models_dir`` (never outside it)."""
    if call.op not in OPS:
        raise InvalidRequest(f"unknown runtime call {call.op!r} (known: {', '.join(OPS)})")
    args = dict(call.args)
    if call.op == "load_lora":
        given = args.get("lora_adapter_path")
        if not isinstance(given, str) or not given:
            raise InvalidRequest("load_lora needs lora_adapter_path (a file in the models directory)")
        path = inside_models_dir(given, models_dir, "lora_adapter_path")
        if not Path(path).is_file():
            raise InvalidRequest(f"LoRA adapter {given!r} does not exist in the models directory")
        args["lora_adapter_path"] = path
    return args


def inside_models_dir(given: str, models_dir: Path, what: str) -> str:
    """``given`` (relative to the models directory, or absolute) as an absolute path inside it."""
    root = models_dir.resolve()
    path = (root / given).resolve()
    if not path.is_relative_to(root):
        raise InvalidRequest(f"{what} must name a file inside the models directory")
    return str(path)


def prompt_cache_dir(state_dir: Path) -> Path:
    """Where the runtime saves and loads prompt caches (a relative path is taken relative to it)."""
    return state_dir / "prompt-cache"


def prompt_cache_path(given: str, models_dir: Path, state_dir: Path) -> str:
    """A prompt-cache file the runtime may read or write: in the prompt-cache directory or the models
    directory, never elsewhere (a saved cache is written by the runtime itself)."""
    caches = prompt_cache_dir(state_dir).resolve()
    path = (caches / given).resolve()
    if not (path.is_relative_to(caches) or path.is_relative_to(models_dir.resolve())):
        raise InvalidRequest(f"prompt_cache_path must name a file in {caches} or the models directory")
    return str(path)


def with_checked_paths(request: GenerationRequest, models_dir: Path, state_dir: Path) -> GenerationRequest:
    """A lease's prompt-cache paths (loaded or saved by the runtime) checked and made absolute."""
    state, params = request.handle_state, request.runtime_input
    if state is not None and state.prompt_cache_path is not None:
        state = replace(state, prompt_cache_path=prompt_cache_path(
            state.prompt_cache_path, models_dir, state_dir))
    if params is not None and params.prompt_cache is not None:
        cache = replace(params.prompt_cache, path=prompt_cache_path(
            params.prompt_cache.path, models_dir, state_dir))
        if cache.save:
            prompt_cache_dir(state_dir).mkdir(parents=True, exist_ok=True)
        params = replace(params, prompt_cache=cache)
    return replace(request, handle_state=state, runtime_input=params)


def kv_effect(call: RuntimeCall) -> bool | None:
    """A full clear_kv_cache releases the lease's hold on the KV cache; other calls leave it."""
    full_clear = (call.op == "clear_kv_cache" and not call.args.get("keep_system_prompt")
                  and call.args.get("ranges") is None)
    return False if full_clear else None


async def runtime_call(sup: Supervisor, spec: ModelSpec, lease: str, call: RuntimeCall) -> object:
    """Queue ``call`` on ``lease``'s instance, run it in the runner once granted, return its value."""
    args = call_args(call, sup.settings.models_dir)
    rid, box = sup.open_mailbox()
    sup.post(Request(rid, spec, "generate", None, None, lease, keep_history=kv_effect(call)))
    grant: Grant | None = None
    ended = False
    try:
        while grant is None:
            item = await box.until_grant()
            if type(item) is Grant:
                grant = item
        # a runtime that hangs in a call is handled like a generation without a first token: the
        # scheduler aborts, and kills the runner when the abort does not help (calls cannot be aborted)
        settings = sup.settings
        watchdog = Watchdog(asyncio.get_running_loop(), settings.first_token_timeout,
                            settings.token_stall_timeout, lambda first: sup.post(TokenStall(rid, first)))
        watchdog.start()
        try:
            value = await grant.runner.call(call.op, args, lease)
        except RkioError as exc:
            ended = True
            sup.post(GenerationDone(rid, "crashed" if isinstance(exc, RunnerCrashed) else "error"))
            raise box.error or exc from None
        finally:
            watchdog.cancel()
        ended = True
        sup.post(GenerationDone(rid, "ok"))
        return value
    finally:
        end_request(sup, rid, box, grant, None, ended or box.finished)
