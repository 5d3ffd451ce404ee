"""The typed messages between the gateway and a runner process, and their length-prefixed framing.

Each frame is a 4-byte little-endian length followed by a msgpack-encoded tagged ``msgspec.Struct``.
Gateway -> runner: ``Load``, ``Generate``, ``Call``, ``Abort``, ``Stop``, ``Relay``, ``Reclaim``.
Runner -> gateway: ``Loaded``, ``Progress``, ``Tokens``, ``Done``, ``CallResult``, ``Error``, ``Memory``,
``Stopped``, ``Relayed``, ``RelayEnd``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import msgspec

from rkio.engine.chunk_push import RelayFormat
from rkio.engine.runner.messages import RunnerGeneration
from rkio.engine.runner.progress import LoadWork
from rkio.engine.types import ModelSpec
from rkio.runtime.base import LoadParams, Perf, RunOutputs

HEADER = struct.Struct("<I")
MAX_FRAME = 256 << 20  # embeddings and images travel in Generate frames; anything bigger is corruption


class FrameError(Exception):
    """The byte stream is not a valid frame sequence (a bug or a corrupted peer, never user input)."""


# ------------------------------------------------------------------------------------- gateway -> runner


class Load(msgspec.Struct, tag=True, array_like=True):
    spec: ModelSpec
    params: LoadParams


class Generate(msgspec.Struct, tag=True, array_like=True):
    gen: RunnerGeneration


class Call(msgspec.Struct, tag=True, array_like=True):
    """A runtime call on the idle handle (``RuntimeCall``) for ``owner``: answered by CallResult or Error."""

    op: str
    args: dict[str, Any]
    owner: str


class Abort(msgspec.Struct, tag=True, array_like=True):
    pass


class Stop(msgspec.Struct, tag=True, array_like=True):
    """Abort if running, wait for the runtime to go idle, destroy the handle, exit."""


class Relay(msgspec.Struct, tag=True, array_like=True):
    """Write the running generation's tokens to the client's socket (``rkio.engine.chunk_push``).

    The socket's descriptor comes on the relay socket, just before. ``after``: how many Tokens frames the
    gateway has written to the client; the runner accepts only if that is every one it sent, so no token
    in flight can be overtaken. It answers with RelayEnd (of the same ``offer``), at once if it refuses.
    """

    format: RelayFormat
    after: int
    offer: int  # numbers the gateway's offers, so that a late answer is never taken for a newer one's
    report_s: float  # how often to send Relayed while tokens go out


class Reclaim(msgspec.Struct, tag=True, array_like=True):
    """Give the lent socket back now (the gateway must write to it: shutdown, an error), even while the
    runtime hangs: answered by RelayEnd, which the answer to an outstanding Relay precedes."""


# ------------------------------------------------------------------------------------- runner -> gateway


class MemoryReport(msgspec.Struct, array_like=True):
    rss_bytes: int
    hwm_bytes: int
    runtime_mb: float | None = None
    available_drop_bytes: int | None = None  # see RunnerMemory


class Loaded(msgspec.Struct, tag=True, array_like=True):
    runtime: str  # Runtime.name
    features: list[str]
    load_s: float
    memory: MemoryReport | None


class Progress(msgspec.Struct, tag=True, array_like=True):
    """Sent about once a second while loading, with what the load did so far (see ``progress``)."""

    elapsed_s: float
    work: LoadWork


class Tokens(msgspec.Struct, tag=True, array_like=True):
    """Every token that was ready when the runner's writer woke up, concatenated."""

    text: str
    ids: list[int]


class Done(msgspec.Struct, tag=True, array_like=True):
    finish: str  # stop | length | abort
    prompt_tokens: int
    completion_tokens: int
    perf: Perf | None
    memory: MemoryReport | None
    outputs: RunOutputs | None = None  # hidden states / logits of a run in that infer mode
    stop_sequence: str | None = None  # the stop string that ended the generation, if one did


class CallResult(msgspec.Struct, tag=True, array_like=True):
    value: Any


class Error(msgspec.Struct, tag=True, array_like=True):
    """A failed load or generation. ``kind`` names an ``rkio.errors`` class.

    ``marker`` is the number of a sync line the runner wrote to its stderr just before this frame, so the
    gateway can wait until it has read every line the runtime printed up to the failure.
    """

    kind: str
    message: str
    marker: int
    feature: str | None = None  # for Unsupported
    runtime: str | None = None


class Memory(msgspec.Struct, tag=True, array_like=True):
    memory: MemoryReport


class Stopped(msgspec.Struct, tag=True, array_like=True):
    """The handle is destroyed; the process exits right after."""


class Relayed(msgspec.Struct, tag=True, array_like=True):
    """Sent every ``Relay.report_s`` while relaying: the gaps between the tokens written since the last."""

    gaps: list[float]


class RelayEnd(msgspec.Struct, tag=True, array_like=True):
    """The runner no longer writes to the client's socket (refused, generation over, socket full or gone).

    ``residue``: the end of a chunk the socket did not take, for the gateway to send before anything else.
    Later tokens come as Tokens frames again.
    """

    gaps: list[float]
    residue: bytes
    why: str  # refused | over | full | broken | reclaimed
    offer: int  # the Relay's


ToRunner = Load | Generate | Call | Abort | Stop | Relay | Reclaim
FromRunner = Loaded | Progress | Tokens | Done | CallResult | Error | Memory | Stopped | Relayed | RelayEnd

_encoder = msgspec.msgpack.Encoder()
_to_runner = msgspec.msgpack.Decoder(ToRunner)
_from_runner = msgspec.msgpack.Decoder(FromRunner)


def encode(message: ToRunner | FromRunner) -> bytes:
    """One complete frame (length prefix included)."""
    body = _encoder.encode(message)
    return HEADER.pack(len(body)) + body


def decode_to_runner(body: bytes | memoryview) -> ToRunner:
    try:
        return _to_runner.decode(body)
    except msgspec.DecodeError as exc:
        raise FrameError(f"bad frame for the runner: {exc}") from exc


def decode_from_runner(body: bytes | memoryview) -> FromRunner:
    return decode_all_from_runner([body])[0]


def decode_all_from_runner(bodies: Sequence[bytes | memoryview]) -> list[FromRunner]:
    """Each body decoded, in one call for all the frames of a read (not one Python call per frame)."""
    try:
        return list(map(_from_runner.decode, bodies))
    except msgspec.DecodeError as exc:
        raise FrameError(f"bad frame from the runner: {exc}") from exc


class FrameSplitter:
    """Incremental framing: feed raw bytes, get complete frame bodies out (no copies of finished ones)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[memoryview]:
        frames: list[memoryview] = []
        buffer = self._buffer
        if buffer:
            buffer += data
            view = memoryview(bytes(buffer))
            buffer.clear()
        else:
            view = memoryview(data)
        pos, end = 0, len(view)
        while end - pos >= 4:
            (size,) = HEADER.unpack_from(view, pos)
            if size > MAX_FRAME:
                raise FrameError(f"frame of {size} bytes exceeds the {MAX_FRAME} byte limit")
            if end - pos - 4 < size:
                break
            frames.append(view[pos + 4 : pos + 4 + size])
            pos += 4 + size
        if pos < end:
            self._buffer += view[pos:]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buffer)
