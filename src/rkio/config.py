"""Server settings: defaults, then an optional TOML file, then RKIO_* environment variables, then flags.

``Settings(...)`` is exactly the values it is given (validated); ``Settings.load`` reads the outside world.
A bad value is a ``ConfigError`` naming where it came from: the flag, the environment variable, the TOML key.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from rkio.engine.domains import WINDOWS
from rkio.errors import ConfigError
from rkio.units import parse_duration, parse_size

ENV_PREFIX = "RKIO_"
# how a layer (TOML file, environment, flags) names a setting in an error: the name, then where (or "")
Origin = Callable[[str], tuple[str, str]]


BOARD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")  # a host name: safe in a response header


def default_board_name() -> str:
    """The host name, else ``rkio`` when it has characters a response header should not carry."""
    name = socket.gethostname()
    return name if BOARD_NAME.fullmatch(name) else "rkio"


def default_home() -> Path:
    return Path(os.environ.get("RKIO_HOME", Path.home() / ".rkio"))


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def _items(value: Any) -> Any:
    """``a,b`` (flag, environment) or a TOML list; blanks dropped."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ValueError(f"not a comma-separated list: {value!r}")
    return tuple(str(v).strip() for v in items if str(v).strip())


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


Size = Annotated[int, BeforeValidator(parse_size)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
Names = Annotated[tuple[str, ...], BeforeValidator(_items)]
Domain = Annotated[int, Field(ge=0, lt=WINDOWS)]  # the NPU's IOMMU domains (rkio.engine.domains)
UserPath = Annotated[Path, AfterValidator(Path.expanduser)]


class Settings(BaseSettings):
    """Every knob of ``rkio serve``; field names are the TOML keys and, upper-cased, RKIO_<NAME>."""

    # frozen: shared by every part of the server; enable_decoding off: lists are "a,b", not JSON
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid",
                                      enable_decoding=False, validate_default=True)

    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    models_dir: UserPath = Field(default_factory=lambda: default_home() / "models")
    state_dir: UserPath = Field(default_factory=lambda: default_home() / "state")
    runtime: Annotated[Literal["auto", "rkllm", "llamacpp"], BeforeValidator(_lower)] = "auto"
    memory_budget: Annotated[Size, Field(gt=0)] | None = None  # bytes; None = derived from MemAvailable
    memory_reserve: Annotated[Size, Field(ge=0)] = 512 << 20  # kept free for the OS and rkio itself
    max_queue: Annotated[int, Field(ge=1)] = 64  # a request joins the queue even when a lane is free
    queue_timeout: Annotated[Duration, Field(gt=0)] = 300.0
    keep_alive: Duration = 300.0  # Ollama's default 5m; 0 = unload at once; negative = forever
    api_key: str | None = None
    npu_lanes: Annotated[int, Field(ge=1)] = 1
    load_timeout: Annotated[Duration, Field(gt=0)] = 120.0  # without load progress (stall-based)
    first_token_timeout: Annotated[Duration, Field(gt=0)] = 120.0
    token_stall_timeout: Annotated[Duration, Field(gt=0)] = 30.0
    abort_grace: Annotated[Duration, Field(ge=0)] = 5.0  # abort not returning in time -> kill the runner
    stop_grace: Annotated[Duration, Field(ge=0)] = 10.0
    preload: Names = ()
    reserved_domains: Annotated[tuple[Domain, ...], BeforeValidator(_items)] = ()  # e.g. for RKNN vision
    cors_origins: Names = ()
    max_body_bytes: Annotated[Size, Field(ge=1)] = 8 << 20
    image_urls: bool = False  # fetch http(s) image URLs in OpenAI requests (off: only data URLs)
    # the runner writes a plain streamed reply to the client's socket itself (rkio.engine.chunk_push)
    stream_relay: bool = True
    default_model: str | None = None
    log_level: Annotated[LogLevel, BeforeValidator(_lower)] = LogLevel.INFO
    npu_lock: UserPath | None = None  # None = rkio.engine.npu_lock.default_lock_path()
    board_name: Annotated[str, Field(pattern=f"^{BOARD_NAME.pattern}$")] = Field(
        default_factory=default_board_name)  # the X-Rkio-Board response header
    # prompt-cache files for shared prompt prefixes: auto = once `rkio probe --kv-reuse` confirmed them
    prompt_caches: Annotated[Literal["auto", "on", "off"], BeforeValidator(_lower)] = "auto"
    prompt_cache_bytes: Annotated[Size, Field(ge=0)] = 2 << 30
    prompt_cache_max_age: Annotated[Duration, Field(gt=0)] = 7 * 86400.0
    rpc_unix: str = "auto"  # JSON-RPC Unix socket: auto = <state dir>/rpc.sock, off, or a path
    rpc_tcp: str | None = None  # HOST:PORT
    rpc_udp: str | None = None  # HOST:PORT
    rpc_lease_ttl: Annotated[Duration, Field(gt=0)] = 600.0  # idle expiry of HTTP/UDP handles
    rpc_stream_ttl: Annotated[Duration, Field(gt=0)] = 60.0  # expiry of an undrained HTTP pull stream
    rpc_stream_default: Annotated[Literal["push", "callbacks"], BeforeValidator(_lower)] = "push"
    rpc_max_frame: Annotated[Size, Field(ge=1024)] = 16 << 20  # largest JSON-RPC message

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the constructor's arguments: the outside world is read by ``load`` alone, which keeps track
        of where each value came from (and ``Settings()`` in a test is not changed by the shell's RKIO_*)."""
        return (init_settings,)

    @classmethod
    def load(cls, config_file: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
        """Build settings from (lowest to highest precedence) defaults, TOML, environment, overrides (flags:
        ``None`` means not given). Raises ``ConfigError`` naming the origin of each bad value."""
        path = config_file or (Path(os.environ["RKIO_CONFIG"]) if os.environ.get("RKIO_CONFIG") else None)
        layers: list[tuple[dict[str, Any], Origin]] = []
        if path is not None:
            layers.append((_read_toml(cls, path), lambda name: (f"TOML key {name}", f" in {path}")))
        layers.append((EnvSettingsSource(cls)(), lambda name: (f"{ENV_PREFIX}{name.upper()}", "")))
        flags = {k: v for k, v in (overrides or {}).items() if v is not None}
        layers.append((flags, lambda name: (f"--{name.replace('_', '-')}", "")))
        values: dict[str, Any] = {}
        origins: dict[str, tuple[str, str]] = {}
        for layer, origin in layers:
            values.update(layer)
            origins.update({name: origin(name) for name in layer})
        try:
            return cls(**values)
        except pydantic.ValidationError as exc:
            raise ConfigError(describe(exc, origins, values)) from None


def _read_toml(cls: type[BaseSettings], path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        return dict(TomlConfigSettingsSource(cls, toml_file=path)())
    except (OSError, ValueError) as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise ConfigError(f"config file {path}: {exc}") from None


def describe(exc: pydantic.ValidationError, origins: Mapping[str, tuple[str, str]],
             values: Mapping[str, Any]) -> str:
    """One line: ``--npu-lanes='0': Input should be greater than or equal to 1; TOML key port='x' in
    /etc/rkio.toml: ...``."""
    parts = []
    for error in exc.errors(include_url=False):
        loc = error.get("loc", ())
        name = str(loc[0]) if loc else ""
        label, place = origins.get(name, (name or "settings", ""))
        if error.get("type") == "extra_forbidden":
            parts.append(f"{label}{place}: unknown setting")
            continue
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        items = [p for p in loc[1:] if isinstance(p, int)]  # which element of a list
        item = f" (item {items[0] + 1})" if items else ""
        value = f"={values[name]!r}" if name in values else ""
        parts.append(f"{label}{value}{place}{item}: {message}")
    return "invalid setting: " + "; ".join(parts)
