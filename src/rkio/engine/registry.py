"""The models directory: which models exist, where their files are, and their ``model.toml`` settings.

Layout: ``<dir>/<name>/`` holding one ``*.rkllm`` or ``*.gguf`` file and optionally ``model.toml``, or a
single file ``<dir>/<name>.rkllm`` / ``<dir>/<name>.gguf``. The directory is re-read on every call (a few
``stat`` calls); a model's ``model.toml`` is parsed again only when it or the model file changed.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import re
import tomllib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rkio.engine.types import ModelSpec, RuntimeKind
from rkio.errors import LoadFailed, ModelNotFound
from rkio.runtime.base import LoadParams, Sampling
from rkio.units import parse_duration

log = logging.getLogger("rkio.registry")

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
EXTENSIONS: dict[str, RuntimeKind] = {".rkllm": "rkllm", ".gguf": "llamacpp"}
CONFIG_FILE = "model.toml"
MAX_DOMAIN = 15  # 16 IOMMU domains on RK3588


class ModelConfigError(LoadFailed):
    """A ``model.toml`` that cannot be used; the message names the file and the key."""

    kind = "model_config_error"


def _int(low: int, high: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        if value < low or (high is not None and value > high):
            limit = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ValueError(f"must be {limit}, got {value}")
        return value
    return check


def _float(low: float, high: float) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"must be between {low:g} and {high:g}, got {value}")
        return float(value)
    return check


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _duration(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a duration such as \"10m\" or -1, got {value!r}")
    return parse_duration(value)


def _cpus(value: Any) -> int:
    """A CPU mask from 0xF0, [4, 5, 6, 7] or "4-7" / "4,5,6,7"."""
    if isinstance(value, int) and not isinstance(value, bool):
        cpus = [i for i in range(64) if value >> i & 1] if value >= 0 else [-1]
    elif isinstance(value, list):
        cpus = value
    elif isinstance(value, str):
        cpus = []
        for part in value.replace(" ", "").split(","):
            first, _, last = part.partition("-")
            if not first.isdigit() or (last and not last.isdigit()):
                raise ValueError(f"expected CPU numbers such as \"4-7\", got {value!r}")
            cpus.extend(range(int(first), int(last or first) + 1))
    else:
        raise ValueError(f"expected a mask, a list of CPU numbers or \"4-7\", got {value!r}")
    if not cpus or any(isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < 64 for c in cpus):
        raise ValueError(f"expected CPU numbers 0-63, got {value!r}")
    return sum(1 << c for c in set(cpus))


SAMPLING_KEYS: dict[str, Callable[[Any], Any]] = {
    "temperature": _float(0.0, 100.0), "top_k": _int(0), "top_p": _float(0.0, 1.0),
    "repeat_penalty": _float(0.0, 100.0), "frequency_penalty": _float(-100.0, 100.0),
    "presence_penalty": _float(-100.0, 100.0), "mirostat": _int(0, 2), "mirostat_tau": _float(0.0, 100.0),
    "mirostat_eta": _float(0.0, 100.0), "seed": _int(0, (1 << 32) - 1),
}
LOAD_KEYS: dict[str, Callable[[Any], Any]] = {
    "max_context_len": _int(1, 1 << 20), "max_new_tokens": _int(1, 1 << 20), "n_keep": _int(-1),
    "embed_flash": _bool, "n_batch": _int(1, 64), "n_threads": _int(0, 1024), "cpus": _cpus,
}


def _pooling(value: Any) -> str:
    if value not in ("last", "mean"):
        raise ValueError(f'expected "last" or "mean", got {value!r}')
    return str(value)


def _rerank_template(value: Any) -> str:
    if not isinstance(value, str) or "{query}" not in value or "{document}" not in value:
        raise ValueError("expected a string with {query} and {document} in it")
    return value


# ``sampling = "reinit"`` (or ``policy`` in [sampling]): what applies when the runtime has no per-run
# sampling: the loaded sampling (default), or a re-init of the idle model for the request's sampling
SAMPLING_POLICIES = ("loaded", "reinit")
SPEC_KEYS: dict[str, Callable[[Any], Any]] = {
    "system_prompt": _str, "chat_template": _str, "keep_alive": _duration, "pinned": _bool,
    "base_domain_id": _int(0, MAX_DOMAIN), "abi": _str, "kv_reuse": _bool,
    # embeddings and rerank (rkio.engine.embedding): how hidden states are pooled; which token ids of the
    # logits mean yes / no for a reranker, and the prompt it scores
    "pooling": _pooling, "rerank_yes_token": _int(0), "rerank_no_token": _int(0),
    "rerank_template": _rerank_template,
}


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """The validated contents of one ``model.toml``."""

    load: dict[str, Any] = field(default_factory=dict)
    sampling: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    lora: tuple[tuple[str, str, float], ...] = ()


def parse_config(text: str, where: Path, models_dir: Path) -> ModelConfig:
    """Validate ``model.toml`` text; errors name ``where`` and the offending key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelConfigError(f"{where}: not valid TOML: {exc}") from exc
    config = ModelConfig()
    sampling_table = data.pop("sampling", {})
    if isinstance(sampling_table, str):  # ``sampling = "reinit"``: the policy, not the parameters
        sampling_table = {"policy": sampling_table}
    if not isinstance(sampling_table, dict):
        raise ModelConfigError(f"{where}: sampling: expected a table or \"loaded\" / \"reinit\"")
    if "policy" in sampling_table:
        policy = sampling_table.pop("policy")
        if policy not in SAMPLING_POLICIES:
            raise ModelConfigError(f"{where}: sampling: expected \"loaded\" or \"reinit\", got {policy!r}")
        config.spec["sampling_policy"] = policy
    for key, value in sampling_table.items():
        if key in data:
            raise ModelConfigError(f"{where}: {key}: given both at the top level and in [sampling]")
        data[key] = value
    for key, value in data.items():
        if key == "lora":
            config = replace(config, lora=_lora(value, where, models_dir))
            continue
        for table, checks in ((config.sampling, SAMPLING_KEYS), (config.load, LOAD_KEYS),
                              (config.spec, SPEC_KEYS)):
            if key in checks:
                try:
                    table[key] = checks[key](value)
                except ValueError as exc:
                    raise ModelConfigError(f"{where}: {key}: {exc}") from exc
                break
        else:
            known = ", ".join(sorted([*SAMPLING_KEYS, *LOAD_KEYS, *SPEC_KEYS, "lora", "sampling"]))
            raise ModelConfigError(f"{where}: {key}: unknown key (known keys: {known})")
    return config


def _lora(value: Any, where: Path, models_dir: Path) -> tuple[tuple[str, str, float], ...]:
    """``[[lora]]`` tables: name, path (relative to the model's directory, inside the models dir), scale."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ModelConfigError(f"{where}: lora: expected [[lora]] tables with name, path and scale")
    adapters = []
    for i, item in enumerate(value):
        key = f"lora[{i}]"
        name, path, scale = item.get("name"), item.get("path"), item.get("scale", 1.0)
        extra = set(item) - {"name", "path", "scale"}
        if extra:
            unknown = sorted(extra)[0]
            raise ModelConfigError(f"{where}: {key}.{unknown}: unknown key (known: name, path, scale)")
        if not isinstance(name, str) or not name:
            raise ModelConfigError(f"{where}: {key}.name: expected a non-empty string")
        if not isinstance(path, str) or not path:
            raise ModelConfigError(f"{where}: {key}.path: expected a file path")
        if isinstance(scale, bool) or not isinstance(scale, int | float):
            raise ModelConfigError(f"{where}: {key}.scale: expected a number, got {scale!r}")
        resolved = (where.parent / path).resolve()
        if not resolved.is_relative_to(models_dir.resolve()):
            raise ModelConfigError(f"{where}: {key}.path: {path} is outside the models directory")
        if not resolved.is_file():
            raise ModelConfigError(f"{where}: {key}.path: {resolved} does not exist")
        adapters.append((name, str(resolved), float(scale)))
    return tuple(adapters)


def build_spec(name: str, path: Path, st: os.stat_result, config: ModelConfig) -> ModelSpec:
    """A ModelSpec for the model file ``path`` with ``config`` applied over the runtime defaults."""
    load_values = dict(config.load)
    cpus = load_values.pop("cpus", None)
    if cpus is not None:
        load_values["enabled_cpus_mask"] = cpus
    if "base_domain_id" in config.spec:
        load_values["base_domain_id"] = config.spec["base_domain_id"]
    load = LoadParams(model_path=str(path), sampling=Sampling(**config.sampling), **load_values)
    return ModelSpec(
        name=name, path=str(path), runtime=EXTENSIONS[path.suffix], size_bytes=st.st_size,
        mtime_ns=st.st_mtime_ns, load=load, lora_adapters=config.lora, **config.spec,
    )


class ModelRegistry:
    """Reads the models directory on demand; ``get`` and ``list`` always see the current contents."""

    def __init__(self, models_dir: Path, runtimes: Collection[RuntimeKind] | None = None) -> None:
        """``runtimes`` limits the models served to those kinds (``rkio serve --runtime``); None = all."""
        self.models_dir = Path(models_dir)
        self.runtimes = frozenset(runtimes) if runtimes is not None else None
        self._cache: dict[str, tuple[tuple[Any, ...], ModelSpec]] = {}

    def list(self) -> list[ModelSpec]:
        """Every valid model, sorted by name. Broken ones are logged and left out (``get`` explains them)."""
        try:
            entries = sorted(os.scandir(self.models_dir), key=lambda e: e.name)
        except OSError:
            return []
        names: dict[str, None] = {}
        for entry in entries:
            stem, ext = os.path.splitext(entry.name)
            name = stem if ext in EXTENSIONS else entry.name
            if NAME.match(name) and ".." not in name and not name.startswith("."):
                names[name] = None
        specs = []
        for name in names:
            try:
                spec = self._find(name)
            except (ModelNotFound, ModelConfigError) as exc:
                log.warning("skipping model %s: %s", name, exc.message)
                continue
            if spec is not None and (self.runtimes is None or spec.runtime in self.runtimes):
                specs.append(spec)
        return specs

    def get(self, name: str) -> ModelSpec:
        """The model called ``name`` (``name:latest`` also finds ``name``; a LoRA variant ``base:adapter``
        finds its base).

        Raises ModelNotFound for unknown or invalid names, ModelConfigError for a broken model.toml.
        """
        return self.resolve(name)[0]

    def variants(self) -> builtins.list[tuple[str, ModelSpec]]:
        """Every model id served: each model, then its ``[[lora]]`` adapters as ``base:adapter``."""
        return [(id_, spec) for spec in self.list()
                for id_ in (spec.name, *(f"{spec.name}:{a[0]}" for a in spec.lora_adapters))]

    def resolve(self, name: str) -> tuple[ModelSpec, str | None]:
        """The model ``name`` runs on and the LoRA adapter it selects (None: the base model)."""
        try:
            return self._get(name), None
        except ModelNotFound:
            base, sep, adapter = name.rpartition(":") if isinstance(name, str) else ("", "", "")
            if sep and base and adapter:
                with contextlib.suppress(ModelNotFound):
                    spec = self._get(base)
                    if any(a[0] == adapter for a in spec.lora_adapters):
                        return spec, adapter
            raise

    def _get(self, name: str) -> ModelSpec:
        if not isinstance(name, str) or not NAME.match(name) or ".." in name:
            raise ModelNotFound(f"invalid model name {name!r}: use letters, digits and . _ : - "
                                "(at most 128 characters, no '..', no '/')")
        spec = self._find(name)
        if spec is None and name.endswith(":latest"):
            spec = self._find(name.removesuffix(":latest"))
        if spec is None:
            raise ModelNotFound(f"model {name!r} not found in {self.models_dir}")
        if self.runtimes is not None and spec.runtime not in self.runtimes:
            raise ModelNotFound(f"model {name!r} needs the {spec.runtime} runtime, but this server runs "
                                f"with --runtime {', '.join(sorted(self.runtimes))}")
        return spec

    def _find(self, name: str) -> ModelSpec | None:
        folder = self.models_dir / name
        if folder.is_dir():
            files = sorted(p for p in folder.iterdir() if p.suffix in EXTENSIONS and p.is_file())
            if len(files) > 1:
                raise ModelNotFound(f"model {name!r}: {folder} holds several model files "
                                    f"({', '.join(p.name for p in files)}); keep exactly one")
            if files:
                return self._load(name, files[0], folder / CONFIG_FILE)
        for ext in EXTENSIONS:
            single = self.models_dir / f"{name}{ext}"
            if single.is_file():
                return self._load(name, single, None)
        return None

    def _load(self, name: str, path: Path, config_path: Path | None) -> ModelSpec:
        root = self.models_dir.resolve()
        real = path.resolve()
        if not real.is_relative_to(root):
            raise ModelNotFound(f"model {name!r}: {path} points outside the models directory {root}")
        st = real.stat()
        config_st = _stat(config_path)
        key = (str(real), st.st_mtime_ns, st.st_size, config_st)
        cached = self._cache.get(name)
        if cached is not None and cached[0] == key:
            return cached[1]
        config = ModelConfig()
        if config_path is not None and config_st is not None:
            if not config_path.resolve().is_relative_to(root):
                raise ModelConfigError(f"{config_path}: points outside the models directory {root}")
            config = parse_config(config_path.read_text(encoding="utf-8"), config_path, root)
        spec = build_spec(name, real, st, config)
        self._cache[name] = (key, spec)
        return spec


def _stat(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size)
