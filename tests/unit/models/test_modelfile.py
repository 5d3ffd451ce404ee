"""Modelfile parsing and the model.toml it becomes (pure)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from rkio.engine.registry import parse_config
from rkio.errors import InvalidRequest
from rkio.models.hub import parse_reference
from rkio.models.modelfile import ModelDefinition, base_keys, model_toml, parse_modelfile


def test_instructions_quotes_and_triple_quoted_values() -> None:
    text = '''# comment
FROM ./incoming/model.gguf
parameter temperature 0.3
PARAMETER num_ctx 2048
PARAMETER stop "<|im_end|>"
PARAMETER num_predict -1
SYSTEM """You are
a "helpful" pirate."""
TEMPLATE "{% for m in messages %}{{ m.content }}{% endfor %}"
LICENSE MIT
'''
    d = parse_modelfile(text)
    assert d.source == "./incoming/model.gguf"
    assert d.parameters == {"temperature": 0.3, "max_context_len": 2048}
    assert d.system == 'You are\na "helpful" pirate.'
    assert d.template == "{% for m in messages %}{{ m.content }}{% endfor %}"
    assert any("stop" in n for n in d.notes) and any("num_predict" in n for n in d.notes)
    assert any("LICENSE" in n for n in d.notes)


def test_go_templates_are_dropped_with_a_note() -> None:
    d = parse_modelfile("FROM x\nTEMPLATE \"\"\"{{ if .System }}{{ .System }}{{ end }}{{ .Prompt }}\"\"\"\n")
    assert d.template is None and any("Go template" in n for n in d.notes)


@pytest.mark.parametrize("text, where", [
    ("FROM x\nPARAMETER temperature warm\n", "temperature"),
    ("FROM x\nPARAMETER top_k\n", "line 2"),
    ("FROM x\nFOO bar\n", "line 2"),
    ('FROM x\nSYSTEM """never closed\n', "line 2"),
])
def test_errors_name_the_line_or_parameter(text: str, where: str) -> None:
    with pytest.raises(InvalidRequest, match=where):
        parse_modelfile(text)


def test_model_toml_round_trips_through_the_registry_parser(tmp_path: Path) -> None:
    d = ModelDefinition(source="x", parameters={"top_k": 5, "temperature": 0.5},
                        system='quote " backslash \\ tab \t del \x7f', template="chatml")
    base = base_keys('max_context_len = 512\n[sampling]\ntop_k = 9\ntop_p = 0.5\n')
    text = model_toml(base, d, [("style", "adapter-0.bin", 0.5)])
    data = tomllib.loads(text)
    assert data["system_prompt"] == d.system and data["top_k"] == 5 and data["top_p"] == 0.5
    assert data["max_context_len"] == 512 and data["lora"] == [
        {"name": "style", "path": "adapter-0.bin", "scale": 0.5}]
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "adapter-0.bin").write_bytes(b"x")
    config = parse_config(text, tmp_path / "m" / "model.toml", tmp_path)
    assert config.sampling["top_k"] == 5 and config.spec["chat_template"] == "chatml"


@pytest.mark.parametrize("ref", ["llama3.2", "hf.co/owner:file.gguf", "hf.co/o/r:../x.gguf", "hf.co/o/r:a/Q4",
                                 "hf.co/o/r:file.safetensors", "hf.co/o/r:a/../../b.gguf"])
def test_references_that_are_not_a_hub_model_file(ref: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_reference(ref)


def test_reference_parts() -> None:
    ref = parse_reference("hf.co/bartowski/SmolLM2-GGUF:sub/SmolLM2-Q4_K_M.gguf@v1.0")
    assert (ref.repo, ref.path, ref.revision, ref.filename) == (
        "bartowski/SmolLM2-GGUF", "sub/SmolLM2-Q4_K_M.gguf", "v1.0", "SmolLM2-Q4_K_M.gguf")
    assert ref.default_name() == "SmolLM2-Q4_K_M"
