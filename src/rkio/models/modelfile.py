"""Ollama Modelfiles and ``/api/create`` fields, turned into an rkio ``model.toml``.

A Modelfile is a list of ``INSTRUCTION arguments`` lines (case-insensitive instructions, ``#`` comments,
values in ``"..."`` or multi-line ``\"\"\"...\"\"\"``), as Ollama's docs/modelfile.md describes. rkio uses
FROM, PARAMETER, SYSTEM, TEMPLATE and ADAPTER; what it cannot use (MESSAGE, LICENSE, REQUIRES, Ollama-only
parameters, Go-syntax templates) is dropped with a note the caller shows, never silently.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rkio.errors import InvalidRequest

# Ollama parameter name -> (model.toml key, type). Sampling keys keep their names.
PARAMETERS: dict[str, tuple[str, type]] = {
    "temperature": ("temperature", float), "top_k": ("top_k", int), "top_p": ("top_p", float),
    "repeat_penalty": ("repeat_penalty", float), "frequency_penalty": ("frequency_penalty", float),
    "presence_penalty": ("presence_penalty", float), "mirostat": ("mirostat", int),
    "mirostat_tau": ("mirostat_tau", float), "mirostat_eta": ("mirostat_eta", float), "seed": ("seed", int),
    "num_ctx": ("max_context_len", int), "num_predict": ("max_new_tokens", int), "num_keep": ("n_keep", int),
    "num_batch": ("n_batch", int), "num_thread": ("n_threads", int),
}
INSTRUCTIONS = ("from", "parameter", "template", "system", "adapter", "license", "message", "requires")
# Ollama templates are Go text/template ({{ .Prompt }}, {{ if .System }}, {{ range .Messages }});
# rkio renders Jinja, so such a template cannot be used as is.
GO_TEMPLATE = re.compile(r"\{\{-?\s*(\.|if\s|range\s|end\b|else\b|with\s|template\s|block\s)")


@dataclass
class ModelDefinition:
    """What a create request asks for, before it is checked against the models directory."""

    source: str | None = None  # FROM: a model name or a path inside the models directory
    parameters: dict[str, Any] = field(default_factory=dict)  # model.toml key -> value
    system: str | None = None
    template: str | None = None
    adapters: list[tuple[str, str]] = field(default_factory=list)  # (name, path inside the models dir)
    file_name: str | None = None  # the model file's name when ``source`` is an uploaded blob
    notes: list[str] = field(default_factory=list)  # what was dropped and why

    def add_parameter(self, name: str, value: Any) -> None:
        """One Ollama parameter (a Modelfile string or a JSON value); unknown ones become a note."""
        key = name.lower()
        if key not in PARAMETERS:
            self.notes.append(f"parameter {name} is not used by rkio; ignored")
            return
        target, kind = PARAMETERS[key]
        if key == "num_predict" and _number(value, int, name) <= 0:
            self.notes.append("num_predict <= 0 (no limit) keeps the model's max_new_tokens")
            return
        self.parameters[target] = _number(value, kind, name)

    def set_template(self, template: str) -> None:
        if GO_TEMPLATE.search(template):
            self.notes.append("TEMPLATE is in Ollama's Go template syntax, which rkio cannot render; ignored "
                              "(the model's own chat template is used; set a Jinja template or a preset "
                              "name such as chatml in model.toml instead)")
            return
        self.template = template


def _number(value: Any, kind: type, name: str) -> Any:
    if isinstance(value, bool):
        raise InvalidRequest(f"parameter {name}: expected a number, got {value!r}")
    try:
        number = float(value) if kind is float else int(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"parameter {name}: expected {'a number' if kind is float else 'an integer'}, "
                             f"got {value!r}") from None
    return number


def _tokens(text: str) -> list[tuple[int, str, str]]:
    """(line number, instruction, argument) per instruction, with quoted and triple-quoted values joined."""
    out: list[tuple[int, str, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        number = i + 1
        i += 1
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        rest = rest.strip()
        if rest.startswith('"""'):
            body = rest[3:]
            while '"""' not in body:
                if i >= len(lines):
                    raise InvalidRequest(f"modelfile line {number}: unterminated \"\"\" value")
                body += "\n" + lines[i]
                i += 1
            rest = body[: body.index('"""')]
        elif len(rest) >= 2 and rest[0] == rest[-1] == '"':
            rest = rest[1:-1]
        out.append((number, instruction.lower(), rest))
    return out


def parse_modelfile(text: str) -> ModelDefinition:
    """A Modelfile's instructions; raises InvalidRequest naming the line for what cannot be parsed."""
    definition = ModelDefinition()
    for number, instruction, argument in _tokens(text):
        if instruction not in INSTRUCTIONS:
            raise InvalidRequest(f"modelfile line {number}: unknown instruction {instruction.upper()}")
        if instruction == "from":
            definition.source = argument
        elif instruction == "parameter":
            name, _, value = argument.partition(" ")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if not name or not value:
                raise InvalidRequest(f"modelfile line {number}: PARAMETER needs a name and a value")
            definition.add_parameter(name, value)
        elif instruction == "system":
            definition.system = argument
        elif instruction == "template":
            definition.set_template(argument)
        elif instruction == "adapter":
            definition.adapters.append((Path(argument).stem, argument))
        else:
            definition.notes.append(f"{instruction.upper()} is not used by rkio; ignored")
    return definition


def toml_string(value: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, except DEL, which TOML wants escaped too."""
    return json.dumps(value).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise InvalidRequest(f"cannot write {value!r} to model.toml")


def base_keys(text: str) -> dict[str, Any]:
    """A base model's ``model.toml`` settings as flat keys (``[sampling]`` merged, ``[[lora]]`` left out:
    adapters are carried over by path, see ``model_toml``)."""
    data = tomllib.loads(text)
    sampling = data.pop("sampling", {})
    data.pop("lora", None)
    return {**data, **sampling}


def model_toml(keys: dict[str, Any], definition: ModelDefinition,
               adapters: Sequence[tuple[str, str, float]] = ()) -> str:
    """The ``model.toml`` text: ``keys`` (a base model's), then this definition's keys over them.

    ``adapters`` are (name, path relative to the new model's directory, scale) for ``[[lora]]`` tables.
    """
    merged = dict(keys)
    merged.update(definition.parameters)
    if definition.system is not None:
        merged["system_prompt"] = definition.system
    if definition.template is not None:
        merged["chat_template"] = definition.template
    lines = ["# Written by rkio (create / copy). Edit freely."]
    lines.extend(f"{key} = {_toml_value(value)}" for key, value in merged.items())
    for name, path, scale in adapters:
        lines.extend(["", "[[lora]]", f"name = {toml_string(name)}", f"path = {toml_string(path)}",
                      f"scale = {scale!r}"])
    return "\n".join(lines) + "\n"
