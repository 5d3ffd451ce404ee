"""Server settings: defaults, then an optional TOML file, then RKIO_* environment variables, then flags."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rkio.units import parse_duration, parse_size


def default_home() -> Path:
    return Path(os.environ.get("RKIO_HOME", Path.home() / ".rkio"))


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of ``rkio serve``; field names are the TOML keys and, upper-cased, RKIO_<NAME>."""

    host: str = "127.0.0.1"
    port: int = 8080
    models_dir: Path = field(default_factory=lambda: default_home() / "models")
    state_dir: Path = field(default_factory=lambda: default_home() / "state")
    runtime: str = "auto"  # auto | rkllm | llamacpp
    memory_budget: int | None = None  # bytes; None = derived from MemAvailable
    memory_reserve: int = 512 << 20  # kept free for the OS and rkio itself when deriving the budget
    max_queue: int = 64
    queue_timeout: float = 300.0
    keep_alive: float = 300.0  # Ollama's default 5m; negative = forever
    api_key: str | None = None
    npu_lanes: int = 1
    load_timeout: float = 120.0  # without load progress (stall-based)
    first_token_timeout: float = 120.0
    token_stall_timeout: float = 30.0
    abort_grace: float = 5.0  # abort not returning in time -> kill the runner
    stop_grace: float = 10.0
    preload: tuple[str, ...] = ()
    reserved_domains: tuple[int, ...] = ()  # IOMMU domains left for e.g. an RKNN vision encoder
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 8 << 20
    default_model: str | None = None
    log_level: str = "info"
    rpc_unix: str = "auto"  # JSON-RPC Unix socket: auto = <state_dir>/rpc.sock, off, or a path
    rpc_tcp: str | None = None  # HOST:PORT
    rpc_udp: str | None = None  # HOST:PORT
    rpc_lease_ttl: float = 600.0  # idle expiry of HTTP/UDP handles
    rpc_stream_ttl: float = 60.0  # expiry of an undrained HTTP pull stream
    rpc_stream_default: str = "push"  # push | callbacks: how rkllm.run streams without a stream param
    rpc_max_frame: int = 16 << 20

    @classmethod
    def load(cls, config_file: Path | None = None, overrides: dict[str, Any] | None = None,
             environ: dict[str, str] | None = None) -> Settings:
        """Build settings from (lowest to highest precedence) defaults, TOML, environment, overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        path = config_file or (Path(env["RKIO_CONFIG"]) if env.get("RKIO_CONFIG") else None)
        if path is not None:
            with path.open("rb") as fh:
                values.update(tomllib.load(fh))
        for f in fields(cls):
            key = f"RKIO_{f.name.upper()}"
            if key in env:
                values[f.name] = env[key]
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return replace(cls(), **{k: _coerce(k, v) for k, v in values.items()})


_PATHS = {"models_dir", "state_dir"}
_SIZES = {"memory_budget", "memory_reserve", "max_body_bytes", "rpc_max_frame"}
_DURATIONS = {"queue_timeout", "keep_alive", "load_timeout", "first_token_timeout", "token_stall_timeout",
              "abort_grace", "stop_grace", "rpc_lease_ttl", "rpc_stream_ttl"}
_INTS = {"port", "max_queue", "npu_lanes"}
_LISTS = {"preload", "cors_origins"}


def _coerce(name: str, value: Any) -> Any:
    try:
        if name in _PATHS:
            return Path(value).expanduser()
        if name in _SIZES:
            return parse_size(value)
        if name in _DURATIONS:
            return parse_duration(value)
        if name in _INTS:
            return int(value)
        if name in _LISTS:
            items = value.split(",") if isinstance(value, str) else value
            return tuple(str(v).strip() for v in items if str(v).strip())
        if name == "runtime":
            if value not in ("auto", "rkllm", "llamacpp"):
                raise ValueError(f"{value!r} is not one of auto, rkllm, llamacpp")
            return value
        if name == "rpc_stream_default":
            if value not in ("push", "callbacks"):
                raise ValueError(f"{value!r} is not one of push, callbacks")
            return value
        if name == "reserved_domains":
            items = value.split(",") if isinstance(value, str) else value
            return tuple(int(v) for v in items if str(v).strip())
        return value
    except ValueError as exc:
        raise ValueError(f"setting {name}: {exc}") from exc
