"""The gateway's reading of runner output (runtime error lines, sync markers) and error reconstruction."""

from __future__ import annotations

import asyncio

import pytest

from loop_steps import run_ready_callbacks
from rkio.engine.runner.frames import Error
from rkio.engine.runner.memory import parse_status
from rkio.engine.runner.output import RunnerOutput
from rkio.engine.runner.wire_errors import to_exception
from rkio.errors import ContextLengthExceeded, LoadFailed, RuntimeFailure, Unsupported


async def feed(lines: list[str]) -> RunnerOutput:
    output = RunnerOutput("runner test [1]")
    stream = asyncio.StreamReader()
    stream.feed_data("".join(lines).encode())
    stream.feed_eof()
    await output.run(stream)
    return output


async def test_last_error_line_and_marker_pairing() -> None:
    output = await feed([
        "I rkllm: rkllm-runtime version: 1.2.3\n",
        "E rkllm: first problem\n",
        "rkio-runner: sync 1\n",
        "E rkllm: failed to malloc npu memory, size: 4022272000\n",
        "rkio-runner: sync 2\n",
        "I rkllm: later info\n",
    ])
    assert output.marker == 2
    assert await output.error_at(2) == "E rkllm: failed to malloc npu memory, size: 4022272000"
    assert output.last_error == "E rkllm: failed to malloc npu memory, size: 4022272000"
    assert output.exit_detail(failed=False) == output.last_error


async def test_marker_without_error_line_gives_none() -> None:
    output = await feed(["E rkllm: old\n", "rkio-runner: sync 1\n", "rkio-runner: sync 2\n"])
    assert await output.error_at(2) is None


async def test_error_at_waits_for_the_marker_line() -> None:
    output = RunnerOutput("runner test [1]")
    stream = asyncio.StreamReader()
    task = asyncio.ensure_future(output.run(stream))
    waiting = asyncio.ensure_future(output.error_at(1))
    stream.feed_data(b"E rkllm: late line\n")
    await run_ready_callbacks()
    assert not waiting.done()
    stream.feed_data(b"rkio-runner: sync 1\n")
    assert await waiting == "E rkllm: late line"
    stream.feed_eof()
    await task


async def test_python_traceback_tail_explains_a_failed_exit_without_error_lines() -> None:
    output = await feed(["Traceback (most recent call last):\n", "ModuleNotFoundError: No module named 'x'"])
    assert output.exit_detail(failed=True) == "ModuleNotFoundError: No module named 'x'"
    assert output.exit_detail(failed=False) is None


def test_error_frames_become_the_right_exceptions() -> None:
    exc = to_exception(Error("LoadFailed", "rkllm_init failed", 1), "E rkllm: bad model", default=LoadFailed)
    assert isinstance(exc, LoadFailed) and exc.message == "rkllm_init failed: E rkllm: bad model"
    same = to_exception(Error("RuntimeFailure", "x: E rkllm: y", 1), "E rkllm: y")
    assert same.message == "x: E rkllm: y"  # not repeated
    too_long = to_exception(Error("ContextLengthExceeded", "too long", 1), None)
    assert isinstance(too_long, ContextLengthExceeded)
    overflow = to_exception(Error("RuntimeFailure", "rkllm_run failed", 2),
                            "E rkllm: the input tokens[5000] exceed the max context length[4096]")
    assert isinstance(overflow, ContextLengthExceeded) and "5000" in overflow.message
    unsupported = to_exception(Error("Unsupported", "m", 1, "LoRA adapters", "rkllm-1.1.4"), None)
    assert isinstance(unsupported, Unsupported)
    assert unsupported.message == "LoRA adapters is not supported by runtime rkllm-1.1.4"
    assert isinstance(to_exception(Error("Weird", "m", 1), None), RuntimeFailure)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Name:\tpython\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n", (1 << 20, 2 << 20)),
        ("Name:\tkthread\n", (0, 0)),
    ],
)
def test_proc_status_parsing(text: str, expected: tuple[int, int]) -> None:
    assert parse_status(text) == expected
