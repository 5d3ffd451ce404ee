"""Reading a GGUF file's metadata header without llama.cpp (for doctor, the registry and footprints).

Layout (GGUF v2/v3, little-endian): magic ``GGUF``, u32 version, u64 tensor count, u64 key/value count,
then the key/value pairs: u64-length UTF-8 key, u32 value type, value. Arrays (the vocabulary) are
skipped and reported by their length only, so reading stays fast and small.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCALARS: dict[int, struct.Struct] = {
    0: struct.Struct("<B"), 1: struct.Struct("<b"), 2: struct.Struct("<H"), 3: struct.Struct("<h"),
    4: struct.Struct("<I"), 5: struct.Struct("<i"), 6: struct.Struct("<f"), 7: struct.Struct("<?"),
    10: struct.Struct("<Q"), 11: struct.Struct("<q"), 12: struct.Struct("<d"),
}
_STRING, _ARRAY = 8, 9
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")


class GgufError(ValueError):
    """Not a GGUF file, or a truncated / unsupported one."""


@dataclass(frozen=True, slots=True)
class ArrayInfo:
    """A metadata array that was skipped: its element type and length."""

    item_type: int
    length: int


@dataclass(frozen=True, slots=True)
class GgufInfo:
    version: int
    tensor_count: int
    metadata: dict[str, Any]

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None

    def _arch_int(self, suffix: str) -> int | None:
        value = self.metadata.get(f"{self.architecture}.{suffix}")
        return int(value) if isinstance(value, int) else None

    @property
    def context_length(self) -> int | None:
        """The context the model was trained with (``n_ctx_train``)."""
        return self._arch_int("context_length")

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    def kv_bytes_per_token(self, bytes_per_value: int = 2) -> int | None:
        """KV-cache bytes one context position costs (f16 K and V over every layer), when derivable."""
        layers = self._arch_int("block_count")
        heads = self._arch_int("attention.head_count")
        kv_heads = self._arch_int("attention.head_count_kv") or heads
        embedding = self._arch_int("embedding_length")
        key_length = self._arch_int("attention.key_length")
        value_length = self._arch_int("attention.value_length")
        if layers is None or kv_heads is None:
            return None
        if key_length is None or value_length is None:
            if embedding is None or not heads:
                return None
            key_length = value_length = embedding // heads
        return layers * kv_heads * (key_length + value_length) * bytes_per_value


class _Reader:
    def __init__(self, data: mmap.mmap | bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: struct.Struct) -> Any:
        if self.pos + fmt.size > len(self.data):
            raise GgufError("truncated GGUF header")
        (value,) = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return value

    def string(self) -> str:
        length = self.take(_U64)
        if self.pos + length > len(self.data):
            raise GgufError("truncated GGUF string")
        raw = self.data[self.pos:self.pos + length]
        self.pos += length
        return bytes(raw).decode("utf-8", "replace")

    def skip_string(self) -> None:
        length = self.take(_U64)  # not ``pos += take()``: that would add to the pos read before take
        self.pos += length

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_type, length = self.take(_U32), self.take(_U64)
            if item_type in _SCALARS:
                self.pos += _SCALARS[item_type].size * length
            elif item_type == _STRING:
                for _ in range(length):
                    self.skip_string()
            else:
                raise GgufError(f"unsupported GGUF array element type {item_type}")
            return ArrayInfo(item_type, length)
        raise GgufError(f"unsupported GGUF value type {kind}")


def read_gguf(path: str | Path) -> GgufInfo:
    """The metadata of a GGUF file; raises ``GgufError`` when it is not one."""
    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise GgufError(f"{path} is not a GGUF file")
        fh.seek(0)
        try:
            data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError as exc:  # empty file
            raise GgufError(f"{path} is empty") from exc
    with data:
        reader = _Reader(data)
        reader.pos = 4
        version = reader.take(_U32)
        if version not in (2, 3):
            raise GgufError(f"{path}: GGUF version {version} is not supported")
        tensor_count = reader.take(_U64)
        metadata: dict[str, Any] = {}
        for _ in range(reader.take(_U64)):
            key = reader.string()
            metadata[key] = reader.value(reader.take(_U32))
        return GgufInfo(version=version, tensor_count=tensor_count, metadata=metadata)
