"""The runtime layer stands alone: nothing under ``rkio.runtime`` imports the engine or the API, not even for
type checking (a runner process loads the runtime without the server's dependencies)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import rkio

SRC = Path(rkio.__file__).resolve().parent.parent
RUNTIME_DIR = SRC / "rkio" / "runtime"
FORBIDDEN = ("rkio.engine", "rkio.api")


def imported_modules(source: str, path: Path) -> list[str]:
    """Every module an ``import`` or ``from ... import`` in ``source`` (the text of ``path``) names, relative
    ones made absolute; ``from a import b`` yields both ``a`` and ``a.b`` (b may be a submodule)."""
    package = list(path.relative_to(SRC).with_suffix("").parts[:-1])
    names: list[str] = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.append(module)
            names.extend(f"{module}.{alias.name}" for alias in node.names)
    return names


def offending(names: list[str]) -> list[str]:
    return [n for n in names if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)]


def test_no_runtime_module_imports_the_engine_or_the_api() -> None:
    files = sorted(RUNTIME_DIR.rglob("*.py"))
    assert len(files) > 5, f"no runtime sources found under {RUNTIME_DIR}"
    bad = {str(f.relative_to(SRC)): offending(imported_modules(f.read_text(), f)) for f in files}
    assert {f: names for f, names in bad.items() if names} == {}


@pytest.mark.parametrize("source", [
    "from rkio.engine.types import ChatMessage\n",
    "import rkio.api.app\n",
    "from ...engine import types\n",
    "from ... import api\n",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rkio.engine import engine\n",
    "def late():\n    import rkio.engine.types\n",
])
def test_every_spelling_of_an_engine_or_api_import_is_caught(source: str) -> None:
    # the check above would pass vacuously if the detector missed a spelling
    assert offending(imported_modules(source, RUNTIME_DIR / "rkllm" / "session.py"))


def test_runtime_imports_are_not_flagged() -> None:
    source = ("from rkio.runtime.base import ChatMessage\nfrom .. import chat\nfrom . import cparams\n"
              "import rkio.errors\n")
    assert offending(imported_modules(source, RUNTIME_DIR / "rkllm" / "session.py")) == []
