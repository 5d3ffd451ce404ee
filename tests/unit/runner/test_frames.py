"""Frame encoding, decoding and incremental splitting."""

from __future__ import annotations

import pytest
from runner_fakes import make_spec

from rkio.engine.runner.frames import (
    HEADER,
    MAX_FRAME,
    Abort,
    Done,
    Error,
    FrameError,
    FrameSplitter,
    Generate,
    Load,
    MemoryReport,
    Tokens,
    decode_all_from_runner,
    decode_from_runner,
    decode_to_runner,
    encode,
)
from rkio.engine.runner.messages import RunnerGeneration
from rkio.engine.types import ChatMessage
from rkio.runtime.base import GenerateParams, Perf, Sampling


def split_all(data: bytes, step: int) -> list[bytes]:
    splitter = FrameSplitter()
    out: list[bytes] = []
    for i in range(0, len(data), step):
        out.extend(bytes(b) for b in splitter.feed(data[i : i + step]))
    assert splitter.pending == 0
    return out


def body(frame: bytes) -> bytes:
    return frame[HEADER.size :]


def test_gateway_messages_round_trip_with_nested_dataclasses() -> None:
    spec = make_spec(lora_adapters=(("a", "/m/a", 0.5),))
    gen = RunnerGeneration(
        params=GenerateParams(prompt="hi", sampling=Sampling(temperature=0.1, seed=7), max_new_tokens=3),
        messages=(ChatMessage("user", "hé", images=(b"\x00\xff",)),),
        tools=({"type": "function", "function": {"name": "f"}},),
        stop=("\n\n",),
    )
    for message in (Load(spec, spec.load), Generate(gen), Abort()):
        assert decode_to_runner(body(encode(message))) == message


def test_runner_messages_round_trip() -> None:
    done = Done("length", 4, 9, Perf(1.5, 4, 2.5, 9, None), MemoryReport(10, 20, 1.5))
    unsupported = Error("Unsupported", "no", 3, "LoRA adapters", "rkllm-1.1.4")
    for message in (Tokens("a😀", [1, 2]), done, unsupported):
        assert decode_from_runner(body(encode(message))) == message


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_splitter_reassembles_frames_cut_anywhere(step: int) -> None:
    frames = [encode(Tokens("x" * n, list(range(n)))) for n in (0, 1, 50, 300)]
    assert split_all(b"".join(frames), step) == [body(f) for f in frames]


def test_splitter_keeps_an_incomplete_frame_until_it_is_complete() -> None:
    frame = encode(Tokens("hello", [1]))
    splitter = FrameSplitter()
    assert splitter.feed(frame[:-1]) == []
    assert splitter.pending == len(frame) - 1
    assert [bytes(b) for b in splitter.feed(frame[-1:])] == [body(frame)]


def test_oversized_length_prefix_is_rejected() -> None:
    with pytest.raises(FrameError, match="exceeds"):
        FrameSplitter().feed(HEADER.pack(MAX_FRAME + 1) + b"x")


def test_garbage_and_wrong_direction_frames_are_rejected() -> None:
    with pytest.raises(FrameError):
        decode_from_runner(b"\xc1garbage")
    with pytest.raises(FrameError):
        decode_from_runner(body(encode(Abort())))  # a gateway message is not valid from a runner
    with pytest.raises(FrameError):
        decode_to_runner(body(encode(Tokens("a", [1]))))


def test_a_batch_of_frames_decodes_at_once_and_a_bad_one_is_a_frame_error() -> None:
    frames = [Tokens("a", [1]), Tokens("b", [2])]
    assert decode_all_from_runner([memoryview(body(encode(f))) for f in frames]) == frames
    with pytest.raises(FrameError, match="bad frame from the runner"):
        decode_all_from_runner([memoryview(body(encode(frames[0]))), memoryview(b"\xc1garbage")])
