"""Runtime calls on a lease's handle (``Engine.runtime_call``): load_lora, get_kv_cache_size, clear_kv_cache.

A call needs the handle idle, so it is queued and granted exactly like a generation (same admission,
queue deadline, lane and crash handling), then runs in the runner (``rkio.engine.runner.calls``) instead
of a generation. The lease id is the KV owner the runner checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rkio.engine.events import Cancel, GenerationDone, Request
from rkio.engine.session import _unread_grant
from rkio.engine.supervisor import Finished, Grant, Supervisor
from rkio.engine.types import ModelSpec, RuntimeCall
from rkio.errors import InvalidRequest, RkioError, RunnerCrashed, RuntimeFailure

OPS = ("load_lora", "get_kv_cache_size", "clear_kv_cache")


def call_args(call: RuntimeCall, models_dir: Path) -> dict[str, Any]:
    """The arguments the runner gets: a LoRA path resolved inside ``models_dir`` (never outside it)."""
    if call.op not in OPS:
        raise InvalidRequest(f"unknown runtime call {call.op!r} (known: {', '.join(OPS)})")
    args = dict(call.args)
    if call.op == "load_lora":
        given = args.get("lora_adapter_path")
        if not isinstance(given, str) or not given:
            raise InvalidRequest("load_lora needs lora_adapter_path (a file in the models directory)")
        root = models_dir.resolve()
        path = (root / given).resolve()
        if not path.is_relative_to(root):
            raise InvalidRequest("lora_adapter_path must name a file inside the models directory")
        if not path.is_file():
            raise InvalidRequest(f"LoRA adapter {given!r} does not exist in the models directory")
        args["lora_adapter_path"] = str(path)
    return args


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
            item = await box.items.get()
            if type(item) is Grant:
                grant = item
            elif type(item) is Finished:
                ended = True
                raise item.error or RuntimeFailure("request finished without a grant")
        try:
            value = await grant.runner.call(call.op, args, lease)
        except RkioError as exc:
            ended = True
            sup.post(GenerationDone(rid, "crashed" if isinstance(exc, RunnerCrashed) else "error"))
            raise
        ended = True
        sup.post(GenerationDone(rid, "ok"))
        return value
    finally:
        grant = grant or _unread_grant(box)
        sup.close_mailbox(rid)
        if not ended:
            if grant is None:
                sup.post(Cancel(rid))
            else:
                sup.abandon(rid, None, grant.runner)
