"""The GGUF header reader gives doctor and the registry a model's facts without loading it."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from rkio.runtime.gguf import ArrayInfo, GgufError, read_gguf


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def write_gguf(path: Path, version: int = 3) -> Path:
    kvs = [
        (_string("general.architecture"), 8, _string("gemma3")),
        (_string("gemma3.context_length"), 4, struct.pack("<I", 32768)),
        (_string("gemma3.block_count"), 4, struct.pack("<I", 18)),
        (_string("gemma3.attention.head_count"), 4, struct.pack("<I", 4)),
        (_string("gemma3.attention.head_count_kv"), 4, struct.pack("<I", 1)),
        (_string("gemma3.attention.key_length"), 4, struct.pack("<I", 256)),
        (_string("gemma3.attention.value_length"), 4, struct.pack("<I", 256)),
        (_string("gemma3.rope.freq_base"), 6, struct.pack("<f", 10000.0)),
        (_string("tokenizer.ggml.tokens"), 9,
         struct.pack("<IQ", 8, 3) + _string("<pad>") + _string("<eos>") + _string("<bos>")),
        (_string("tokenizer.ggml.scores"), 9, struct.pack("<IQ", 6, 2) + struct.pack("<ff", 0.0, 1.0)),
        (_string("tokenizer.chat_template"), 8, _string("{{ bos_token }}ünï")),
        (_string("general.size_label"), 8, _string("270M")),
    ]
    body = b"".join(key + struct.pack("<I", kind) + value for key, kind, value in kvs)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", version, 7, len(kvs)) + body + b"\0" * 64)
    return path


def test_reads_scalars_strings_and_skips_arrays(tmp_path: Path) -> None:
    info = read_gguf(write_gguf(tmp_path / "m.gguf"))
    assert info.version == 3 and info.tensor_count == 7
    assert info.architecture == "gemma3"
    assert info.context_length == 32768
    assert info.chat_template == "{{ bos_token }}ünï"
    assert info.metadata["tokenizer.ggml.tokens"] == ArrayInfo(item_type=8, length=3)
    assert info.metadata["general.size_label"] == "270M"  # parsing continued past the arrays
    assert info.metadata["gemma3.rope.freq_base"] == pytest.approx(10000.0)


def test_kv_cache_cost_per_token(tmp_path: Path) -> None:
    info = read_gguf(write_gguf(tmp_path / "m.gguf"))
    assert info.kv_bytes_per_token() == 18 * 1 * (256 + 256) * 2


def test_not_a_gguf(tmp_path: Path) -> None:
    path = tmp_path / "x.gguf"
    path.write_bytes(b"RKSIM\n\n")
    with pytest.raises(GgufError, match="not a GGUF"):
        read_gguf(path)


def test_truncated_header(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf")
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(GgufError, match="truncated"):
        read_gguf(path)


def test_old_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(GgufError, match="version 1"):
        read_gguf(write_gguf(tmp_path / "m.gguf", version=1))
