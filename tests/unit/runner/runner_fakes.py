"""Test doubles for the runner loop: an in-memory Runtime, and the gateway's end of a RunnerService."""

from __future__ import annotations

import os
import re
import select
import socket
import threading
from collections.abc import Sequence

from rkio.engine.runner.frames import (
    FrameSplitter,
    FromRunner,
    Load,
    Progress,
    ToRunner,
    decode_from_runner,
    encode,
)
from rkio.engine.runner.service import RunnerService
from rkio.engine.types import ModelSpec
from rkio.errors import LoadFailed, RuntimeFailure
from rkio.runtime.base import (
    ChatTemplateOverride,
    Feature,
    GenerateParams,
    GenerationResult,
    LoadParams,
    LoraAdapter,
    Perf,
    Token,
    TokenSink,
)


class FakeRuntime:
    """Behaviour is steered by the prompt: ``[[n=N]]`` reply length, ``[[fail]]`` raises mid-run,
    ``[[block]]`` blocks after the first token until aborted."""

    name = "fake-1"

    def __init__(self, features: Sequence[Feature] = (Feature.CHAT_TEMPLATE,), fail_load: bool = False,
                 prefill_tokens: int = 0) -> None:
        self.features = frozenset(features)
        self.fail_load = fail_load
        self.prefill_tokens = prefill_tokens
        self.calls: list[str] = []
        self.prompts: list[str] = []
        self.kept: list[bool] = []  # keep_history of each run
        self._abort = threading.Event()
        self._running = False

    def load(self, params: LoadParams) -> None:
        self.calls.append("load")
        if self.fail_load:
            raise LoadFailed("rkllm_init failed")

    def generate(self, params: GenerateParams, on_token: TokenSink) -> GenerationResult:
        prompt = params.prompt or ""
        self.prompts.append(prompt)
        self.kept.append(params.keep_history)
        self._abort.clear()
        self._running = True
        try:
            match = re.search(r"\[\[n=(\d+)\]\]", prompt)
            count = int(match.group(1)) if match else 5
            words = re.sub(r"\[\[[^]]*\]\]", " ", prompt).split() or ["x"]
            emitted = 0
            for i in range(count):
                if self._abort.is_set():
                    return GenerationResult("abort", emitted)
                if "[[fail]]" in prompt and i == 2:
                    raise RuntimeFailure("rkllm_run failed")
                emitted += 1
                if not on_token(Token((" " if i else "") + words[i % len(words)], i)):
                    return GenerationResult("abort", emitted)
                if "[[block]]" in prompt:
                    self._abort.wait()
            perf = Perf(1.0, self.prefill_tokens, 2.0, emitted, 123.5) if self.prefill_tokens else None
            return GenerationResult("stop", emitted, perf)
        finally:
            self._running = False

    def abort(self) -> None:
        self.calls.append("abort")
        self._abort.set()

    def is_running(self) -> bool:
        return self._running

    def destroy(self) -> None:
        self.calls.append("destroy")

    def load_lora(self, adapter: LoraAdapter) -> None:
        self.calls.append(f"lora {adapter.name}")

    def set_chat_template(self, template: ChatTemplateOverride) -> None:
        self.calls.append(f"template {template.system_prompt!r} {template.prompt_prefix!r}")

    def chat_template(self) -> None:
        return None

    def count_tokens(self, text: str) -> int | None:
        return None

    def load_prompt_cache(self, path: str) -> None: ...
    def release_prompt_cache(self) -> None: ...
    def clear_kv_cache(self, keep_system_prompt: bool, ranges: object = None) -> None:
        self.calls.append("clear_kv")
    def kv_cache_size(self) -> list[int]:
        return []
    def set_function_tools(self, system_prompt: str, tools_json: str, tool_response_str: str) -> None: ...
    def set_cross_attn_params(self, params: object) -> None: ...


def make_spec(name: str = "fake", **changes: object) -> ModelSpec:
    values: dict[str, object] = {
        "name": name, "path": f"/models/{name}.rkllm", "runtime": "rkllm", "size_bytes": 1, "mtime_ns": 0,
        "load": LoadParams(f"/models/{name}.rkllm"),
    }
    values.update(changes)
    return ModelSpec(**values)  # type: ignore[arg-type]


class Peer:
    """The gateway's end, synchronous: send frames, receive frames (5 s timeout so a bug fails, not hangs)."""

    def __init__(self, runtime: FakeRuntime, **service_kw: object) -> None:
        self.runtime = runtime
        self.sock, theirs = socket.socketpair()
        self.frames_r, frames_w = os.pipe()
        self.err_r, err_w = os.pipe()
        self.service = RunnerService(theirs, frames_w, lambda spec: runtime, stderr_fd=err_w,
                                     **service_kw)  # type: ignore[arg-type]
        self.exit_code: int | None = None
        self._splitter = FrameSplitter()
        self._pending: list[FromRunner] = []
        self._err_w = err_w
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.exit_code = self.service.serve()

    def send(self, message: ToRunner) -> None:
        self.sock.sendall(encode(message))

    def recv(self) -> FromRunner:
        while not self._pending:
            ready, _, _ = select.select([self.frames_r], [], [], 5)
            assert ready, "no frame from the runner within 5 s"
            data = os.read(self.frames_r, 1 << 16)
            if not data:
                raise EOFError("runner closed its output")
            self._pending.extend(decode_from_runner(b) for b in self._splitter.feed(data))
        return self._pending.pop(0)

    def recv_until(self, kind: type) -> list[FromRunner]:
        frames = [self.recv()]
        while not isinstance(frames[-1], kind):
            frames.append(self.recv())
        return frames

    def stderr(self) -> str:
        os.close(self._err_w)
        chunks = []
        while chunk := os.read(self.err_r, 4096):
            chunks.append(chunk)
        return b"".join(chunks).decode()

    def load(self, spec: ModelSpec | None = None) -> FromRunner:
        spec = spec or make_spec()
        self.send(Load(spec, spec.load))
        first = self.recv()
        assert isinstance(first, Progress), "a load starts with a heartbeat"
        frame = self.recv()
        while isinstance(frame, Progress):
            frame = self.recv()
        return frame
