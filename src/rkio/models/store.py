"""Changing the models directory: create (from a model or a file inside it), copy, delete, and placing a
downloaded file. Every change is atomic: a new model is built in a hidden directory beside the others
(the registry skips dot-names) and renamed into place, so a reader sees all of it or none of it.

Names are checked like the registry checks them, and every path a request gives must resolve inside the
models directory: nothing is read from, linked from or written to anywhere else.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rkio.engine.registry import CONFIG_FILE, EXTENSIONS, NAME, ModelConfigError, ModelRegistry, parse_config
from rkio.errors import InvalidRequest, ModelNotFound
from rkio.models.modelfile import ModelDefinition, base_keys, model_toml


class ModelExists(InvalidRequest):
    kind = "model_exists"


def check_name(name: str) -> str:
    """``name`` without a trailing ``:latest``; InvalidRequest for names the registry would refuse."""
    name = name.removesuffix(":latest") if isinstance(name, str) else name
    if not isinstance(name, str) or not NAME.match(name) or ".." in name:
        raise InvalidRequest(f"invalid model name {name!r}: use letters, digits and . _ : - "
                             "(at most 128 characters, no '..', no '/')")
    return name


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link (no second copy of gigabytes) where the filesystem allows it, else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


class ModelStore:
    """Writes to one models directory; reads models through a ``ModelRegistry`` of the same directory."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = Path(models_dir)
        self.root = self.models_dir.resolve()
        self.registry = ModelRegistry(self.models_dir)

    def inside(self, path: Path) -> Path:
        """``path`` resolved; InvalidRequest when it lies outside the models directory."""
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise InvalidRequest(f"{path} is outside the models directory {self.root}")
        return resolved

    def entries(self, name: str) -> list[Path]:
        """What the model ``name`` occupies: its directory and/or single files ``name.rkllm|.gguf``."""
        found = [self.models_dir / f"{name}{ext}" for ext in EXTENSIONS]
        found = [p for p in found if p.is_file() or p.is_symlink()]
        folder = self.models_dir / name
        if folder.is_symlink() or folder.is_dir():
            found.insert(0, folder)
        return found

    def exists(self, name: str) -> bool:
        return bool(self.entries(name))

    # ---------------------------------------------------------------------------------------- delete

    def delete(self, name: str) -> None:
        """Remove the model ``name`` (its directory with everything in it, or its single file)."""
        name = check_name(name)
        entries = self.entries(name)
        if not entries:
            raise ModelNotFound(f"model {name!r} not found in {self.models_dir}")
        for entry in entries:
            if entry.is_symlink() or entry.is_file():
                entry.unlink()
            else:
                # rename first: the model disappears at once, even if removing its files takes a while
                trash = self.models_dir / f".delete-{uuid.uuid4().hex}"
                entry.rename(trash)
                shutil.rmtree(trash, ignore_errors=True)

    # ---------------------------------------------------------------------------------------- create

    def resolve_source(self, source: str, file_name: str | None = None,
                       ) -> tuple[Path, dict[str, object], list[tuple[str, Path, float]]]:
        """FROM: a model name (its file, settings and adapters) or a model file inside the directory
        (``file_name`` names it when the file is an uploaded blob, whose own name has no extension)."""
        if file_name is not None or "/" in source or Path(source).suffix in EXTENSIONS:
            path = Path(source).expanduser()
            path = self.inside(path if path.is_absolute() else self.models_dir / path)
            suffix = Path(file_name or path.name).suffix
            if suffix not in EXTENSIONS or not path.is_file() or (file_name and "/" in file_name):
                raise InvalidRequest(f"FROM {file_name or source}: not a .rkllm or .gguf file in the models "
                                     "directory")
            return path, {}, []
        spec = self.registry.get(check_name(source))
        config = Path(spec.path).parent / CONFIG_FILE
        keys = base_keys(config.read_text(encoding="utf-8")) if (
            config.parent != self.root and config.is_file()) else {}
        return Path(spec.path), keys, [(n, Path(p), s) for n, p, s in spec.lora_adapters]

    def create(self, name: str, definition: ModelDefinition) -> None:
        """A new model directory ``name``: the FROM file linked in, ``model.toml`` from the definition."""
        name = check_name(name)
        if not definition.source:
            raise InvalidRequest("a model needs a source: FROM in the modelfile, or \"from\"")
        if self.exists(name):
            raise ModelExists(f"model {name!r} already exists; delete it first")
        model_file, keys, adapters = self.resolve_source(definition.source, definition.file_name)
        for adapter_name, path in definition.adapters:
            adapter = Path(path).expanduser()
            adapter = self.inside(adapter if adapter.is_absolute() else self.models_dir / adapter)
            if not adapter.is_file():
                raise InvalidRequest(f"ADAPTER {path}: no such file in the models directory")
            adapters.append((adapter_name, adapter, 1.0))
        with self._building(name) as folder:
            _link_or_copy(model_file, folder / (definition.file_name or model_file.name))
            placed: list[tuple[str, str, float]] = []
            for adapter_name, adapter_path, scale in adapters:
                target = folder / f"adapter-{len(placed)}{adapter_path.suffix}"
                _link_or_copy(adapter_path, target)
                placed.append((adapter_name, target.name, scale))
            text = model_toml(keys, definition, placed)
            config = folder / CONFIG_FILE
            try:  # checked where the adapters are now (they move with the directory)
                parse_config(text, config, self.models_dir)
            except ModelConfigError as exc:
                raise InvalidRequest(exc.message.replace(str(folder), str(self.models_dir / name))) from None
            config.write_text(text, encoding="utf-8")

    def copy(self, source: str, destination: str) -> None:
        """``destination`` becomes a model with ``source``'s file (linked), settings and adapters."""
        self.create(destination, ModelDefinition(source=check_name(source)))

    # ---------------------------------------------------------------------------------------- pull

    def place(self, name: str, downloaded: Path, filename: str) -> Path:
        """Move a verified download into ``<name>/<filename>`` atomically; returns the model file's path.

        An existing model of that name is updated only when it holds the same file name (a newer revision
        of the same file); any other model of that name is left alone (ModelExists).
        """
        name = check_name(name)
        folder = self.models_dir / name
        target = folder / filename
        if folder.is_dir() and not folder.is_symlink():
            others = [p.name for p in folder.iterdir() if p.suffix in EXTENSIONS and p.name != filename]
            if others:
                raise ModelExists(f"model {name!r} already exists with {', '.join(others)}; delete it first "
                                  "or pull under another name")
            os.replace(downloaded, target)
            return target
        if self.exists(name):
            raise ModelExists(f"model {name!r} already exists; delete it first or pull under another name")
        with self._building(name) as building:
            os.replace(downloaded, building / filename)
        return target

    @contextmanager
    def _building(self, name: str) -> Iterator[Path]:
        """A hidden directory to fill; renamed to ``name`` when the block succeeds, removed otherwise."""
        self.models_dir.mkdir(parents=True, exist_ok=True)
        building = self.models_dir / f".create-{uuid.uuid4().hex}"
        building.mkdir()
        try:
            yield building
            if self.exists(name):
                raise ModelExists(f"model {name!r} already exists; delete it first")
            building.rename(self.models_dir / name)
        finally:
            if building.exists():
                shutil.rmtree(building, ignore_errors=True)
