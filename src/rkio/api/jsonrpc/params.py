"""What the three nano generations sent, turned into one canonical form per method.

Names: ``rkllm.run`` (latest), ``rkllm_run`` (before), ``run`` (first) all mean ``rkllm.run``.
Params: an object with named fields (nano's latest and first generations), an object keyed by the C
parameter names (``param``, ``rkllm_input``, ``rkllm_infer_params``, ``lora_adapter``), the same fields flat
at the top level, or a positional array that mirrors the C signature (``[null, {RKLLMParam}, null]``). The
structs themselves are validated by the models in ``rkio.api.jsonrpc.structs``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import pydantic

from rkio.api.jsonrpc.protocol import InvalidParams

RKLLM_FUNCTIONS = (
    "createDefaultParam",
    "init",
    "load_lora",
    "load_prompt_cache",
    "release_prompt_cache",
    "destroy",
    "run",
    "run_async",
    "abort",
    "is_running",
    "clear_kv_cache",
    "get_kv_cache_size",
    "set_chat_template",
    "set_function_tools",
    "set_cross_attn_params",
    "get_constants",
)
RKIO_METHODS = ("rkio.auth", "rkio.chat", "rkio.generate", "rkio.list_models", "rkio.status")
_ALIASES = {"create_default_param": "createDefaultParam", "createdefaultparam": "createDefaultParam"}

# positional arrays mirror the C signature; ``handle`` / ``callback`` / ``userdata`` slots are ignored
SIGNATURES: dict[str, tuple[str, ...]] = {
    "rkllm.createDefaultParam": (),
    "rkllm.get_constants": (),
    "rkllm.init": ("handle", "param", "callback"),
    "rkllm.load_lora": ("handle", "lora_adapter"),
    "rkllm.load_prompt_cache": ("handle", "prompt_cache_path"),
    "rkllm.release_prompt_cache": ("handle",),
    "rkllm.destroy": ("handle",),
    "rkllm.run": ("handle", "rkllm_input", "rkllm_infer_params", "userdata"),
    "rkllm.run_async": ("handle", "rkllm_input", "rkllm_infer_params", "userdata"),
    "rkllm.abort": ("handle",),
    "rkllm.is_running": ("handle",),
    "rkllm.clear_kv_cache": ("handle", "keep_system_prompt", "start_pos", "end_pos"),
    "rkllm.get_kv_cache_size": ("handle",),
    "rkllm.set_chat_template": ("handle", "system_prompt", "prompt_prefix", "prompt_postfix"),
    "rkllm.set_function_tools": ("handle", "system_prompt", "tools", "tool_response_str"),
    "rkllm.set_cross_attn_params": ("handle", "cross_attn_params"),
}
IGNORED_SLOTS = frozenset({"handle", "callback", "userdata"})


def canonical_method(name: str) -> str | None:
    """``rkllm.<fn>`` for any of the three spellings, the ``rkio.*`` names as they are, else None."""
    if name in RKIO_METHODS:
        return name
    for prefix in ("rkllm.", "rkllm_", ""):
        if name.startswith(prefix):
            function = name[len(prefix) :]
            function = _ALIASES.get(function, function)
            if function in RKLLM_FUNCTIONS:
                return f"rkllm.{function}"
    return None


def named_params(method: str, params: dict[str, Any] | list[Any] | None) -> dict[str, Any]:
    """Params as an object: positional arrays are matched to the C signature of ``method``."""
    if params is None:
        return {}
    if isinstance(params, dict):
        return params
    signature = SIGNATURES.get(method)
    if signature is None:
        raise InvalidParams(f"{method} takes named params (an object), not an array", "params")
    if len(params) > len(signature) and any(p is not None for p in params[len(signature) :]):
        raise InvalidParams(
            f"{method} takes at most {len(signature)} positional params ({', '.join(signature) or 'none'})",
            "params",
        )
    named: dict[str, Any] = {}
    for slot, value in zip(signature, params, strict=False):
        if slot == "handle":
            if isinstance(value, int) and not isinstance(value, bool):
                named["handle_id"] = value  # the first generation's integer handles
        elif slot not in IGNORED_SLOTS and value is not None:
            named[slot] = value
    return named


ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


def validate(model: type[ModelT], params: dict[str, Any], prefix: str = "") -> ModelT:
    """Validate ``params`` against ``model``; the first error becomes -32602 naming its field."""
    try:
        return model.model_validate(params)
    except pydantic.ValidationError as exc:
        raise invalid_params(exc, prefix) from None


def validate_member(model: type[ModelT], params: dict[str, Any], key: str) -> ModelT:
    """A struct sent under ``key`` (the C parameter name) or with its fields flat in ``params``."""
    if key not in params:
        return validate(model, params)
    member = params[key]
    if not isinstance(member, dict):
        raise InvalidParams(f"{key} must be an object", key)
    return validate(model, member, key)


def invalid_params(exc: pydantic.ValidationError, prefix: str = "") -> InvalidParams:
    errors = exc.errors(include_url=False)
    first = errors[0] if errors else {"loc": (), "msg": "invalid"}
    loc = [str(p) for p in first.get("loc", ()) if not str(p).startswith("function-")]
    field = ".".join(([prefix] if prefix else []) + loc) or None
    message = (
        f"invalid params: {field}: {first.get('msg')}" if field else f"invalid params: {first.get('msg')}"
    )
    return InvalidParams(message, field)


def pop_common(params: dict[str, Any]) -> tuple[dict[str, Any], Any, Any]:
    """Split off the fields every method accepts: ``handle_id`` and ``stream``."""
    rest = dict(params)
    return rest, rest.pop("handle_id", None), rest.pop("stream", None)


def inside(root: Path, value: str, field: str) -> Path:
    """``value`` (absolute, or relative to ``root``) as a path that stays inside ``root``; else -32602.

    The check is lexical (``..`` removed, symlinks kept): a model the user linked into the models directory
    is theirs to use, and a client cannot name anything outside it."""
    root = Path(os.path.abspath(root.expanduser()))
    if "\0" in value:
        raise InvalidParams(f"{field} must not contain NUL", field)
    candidate = Path(value)
    resolved = Path(os.path.normpath(candidate if candidate.is_absolute() else root / candidate))
    if not resolved.is_relative_to(root):
        raise InvalidParams(f"{field} must name a file inside {root}", field)
    return resolved
