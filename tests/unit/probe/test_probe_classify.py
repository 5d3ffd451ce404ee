"""Step classification, measurement parsing and the child's protocol, without a runtime."""

from __future__ import annotations

import io
import json
import os
import signal
from pathlib import Path
from typing import ClassVar

import pytest

from rkio.probe import child as child_module
from rkio.probe.measure import mem_available, process_memory, rknpu_state
from rkio.probe.outcomes import Outcome, exit_outcome, is_degenerate, output_outcome, signal_name, worst
from rkio.runtime.base import GenerateParams, GenerationResult, LoadParams, Perf, Token


@pytest.mark.parametrize("text", ["", "   ", ",,,,,,,,,,,,", "&&&&&&&&&&&&&&", ", , , , , , , ,", "!?.,;"])
def test_degenerate_outputs_are_corruption(text: str) -> None:
    assert is_degenerate(text)
    assert output_outcome(None, text) is Outcome.CORRUPTION


@pytest.mark.parametrize("text", ["Hello! How can I help?", "42", "a,b,c", "ok..."])
def test_language_is_not_degenerate(text: str) -> None:
    assert not is_degenerate(text)


def test_greedy_reply_must_match_the_solo_reference() -> None:
    assert output_outcome("hello there", "hello there") is Outcome.OK
    assert output_outcome("hello there", "hello where") is Outcome.CORRUPTION


def test_exit_codes_distinguish_oom_kill_from_crash() -> None:
    assert exit_outcome(None) is None
    assert exit_outcome(-signal.SIGKILL) is Outcome.KILLED
    assert exit_outcome(-signal.SIGSEGV) is Outcome.CRASHED
    assert exit_outcome(1) is Outcome.CRASHED
    assert signal_name(-signal.SIGSEGV) == "SIGSEGV"
    assert signal_name(3) == "exit status 3"


def test_worst_orders_by_severity() -> None:
    assert worst([Outcome.OK, Outcome.REFUSED, Outcome.CORRUPTION]) is Outcome.CORRUPTION
    assert worst([Outcome.CRASHED, Outcome.KILLED]) is Outcome.KILLED
    assert worst([]) is Outcome.OK


def test_meminfo_and_process_memory_are_read_in_bytes(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n")
    assert mem_available(meminfo) == 8000000 * 1024
    mine = process_memory(os.getpid())
    assert mine is not None and 0 < mine.rss_bytes <= mine.hwm_bytes
    assert process_memory(2**22 + 12345, proc=tmp_path) is None


def test_rknpu_debugfs_reads_only_what_exists(tmp_path: Path) -> None:
    (tmp_path / "version").write_text("RKNPU driver: v0.9.8\n")
    assert rknpu_state(tmp_path) == {"version": "RKNPU driver: v0.9.8"}


class ScriptedRuntime:
    """A Runtime that refuses models whose path contains "refuse" and echoes the prompt otherwise."""

    name = "scripted"
    destroyed: ClassVar[list[str]] = []

    def __init__(self) -> None:
        self.path = ""

    def load(self, params: LoadParams) -> None:
        if "refuse" in params.model_path:
            raise RuntimeError("E rkllm: failed to malloc npu memory")
        assert params.sampling.top_k == 1  # greedy: replies must be comparable
        self.path = params.model_path

    def generate(self, params: GenerateParams, on_token: object) -> GenerationResult:
        for word in (params.prompt or "").split():
            on_token(Token(word + " ", 1))  # type: ignore[operator]
        return GenerationResult("stop", 2, Perf(1.0, 1, 1.0, 2, 123.5))

    def destroy(self) -> None:
        ScriptedRuntime.destroyed.append(self.path)


def test_child_protocol_replies_per_request_and_destroys_handles_at_exit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(child_module, "_open_runtime", lambda library, abi: ScriptedRuntime())
    ScriptedRuntime.destroyed = []
    requests = "\n".join(json.dumps(r) for r in [
        {"op": "load", "slot": "a", "path": "/m/good"},
        {"op": "load", "slot": "b", "path": "/m/refuse"},
        {"op": "generate", "slot": "a", "prompt": "hello world"},
        {"op": "exit"},
    ]) + "\n"
    out = io.StringIO()
    child_module.serve(io.StringIO(requests), out)
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert replies[0] == {"ok": True, "runtime": "scripted"}
    assert replies[1]["ok"] is False and "failed to malloc npu memory" in replies[1]["error"]
    assert replies[2]["text"] == "hello world " and replies[2]["memory_usage_mb"] == 123.5
    assert ScriptedRuntime.destroyed == ["/m/good"]
