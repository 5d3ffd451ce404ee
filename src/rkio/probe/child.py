"""The probe's child process: owns one or two rkllm handles and obeys JSON-line commands.

Run as ``python -m rkio.probe.child``. Each request is one JSON object on stdin, each reply one on the
protocol stream. The runtime prints its own log lines ("I rkllm: ...", "E rkllm: ...") with printf, so the
child moves fd 1 to stderr first and keeps a private copy of the original stdout for replies: a stray
printf can then never corrupt the protocol, and the parent finds the runtime's error lines in stderr.

Requests (``slot`` names a handle; two slots in one child is the "two handles in one process" case):
    {"op": "load", "slot": "a", "path": ..., "max_context_len": 512, "base_domain_id": 0,
     "max_new_tokens": 16, "library": null, "abi": null}
    {"op": "generate", "slot": "a", "prompt": "hello"}
    {"op": "destroy", "slot": "a"}
    {"op": "exit"}
    and a vision model's encoder ops (``rkio.probe.vision_child``): encoder_load, generate_image
Replies: {"ok": true, ...} or {"ok": false, "error": "..."}; a crash shows up as the child's exit status.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from typing import IO, Any

from rkio.probe import vision_child
from rkio.runtime.base import GenerateParams, LoadParams, Runtime, Sampling, Token

GREEDY = Sampling(top_k=1, top_p=1.0, temperature=1.0, repeat_penalty=1.0)


def _raise_fd_limit() -> None:
    # Every NPU buffer is a dma-buf file descriptor; big models exhaust the default 1024 ("Too many open
    # files", rknn-llm #17/#62), so take the hard limit as the official servers do.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _open_runtime(library: str | None, abi: str | None) -> Runtime:
    from rkio.runtime.rkllm import RkllmRuntime

    return RkllmRuntime(library=library, abi=abi)


class Child:
    """The handles of this process, by slot name."""

    def __init__(self) -> None:
        self.handles: dict[str, Runtime] = {}
        self.encoders: dict[str, Any] = {}  # RKNN encoders by slot (rkio.probe.vision_child)

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        slot = str(request.get("slot", "a"))
        if op in vision_child.OPS:
            return vision_child.handle(self.handles, self.encoders, request)
        if op == "load":
            runtime = _open_runtime(request.get("library"), request.get("abi"))
            runtime.load(
                LoadParams(
                    model_path=str(request["path"]),
                    max_context_len=int(request.get("max_context_len", 512)),
                    max_new_tokens=int(request.get("max_new_tokens", 16)),
                    sampling=GREEDY,
                    base_domain_id=int(request.get("base_domain_id", 0)),
                )
            )
            self.handles[slot] = runtime
            return {"ok": True, "runtime": runtime.name}
        if op == "generate":
            pieces: list[str] = []

            def collect(token: Token) -> bool:
                pieces.append(token.text)
                return True

            result = self.handles[slot].generate(GenerateParams(prompt=str(request["prompt"])), collect)
            perf = result.perf
            return {
                "ok": True,
                "text": "".join(pieces),
                "finish": result.finish,
                "memory_usage_mb": perf.memory_usage_mb if perf else None,
            }
        if op == "destroy":
            self.handles.pop(slot).destroy()
            return {"ok": True}
        return {"ok": False, "error": f"unknown op {op!r}"}


def serve(requests: IO[str], replies: IO[str]) -> None:
    """Answer requests until ``exit`` or end of input."""
    child = Child()
    for line in requests:
        if not line.strip():
            continue
        request = json.loads(line)
        if request.get("op") == "exit":
            break
        try:
            reply = child.handle(request)
        except Exception as exc:  # every runtime refusal becomes a reply; crashes end the process instead
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
    for encoder in child.encoders.values():
        encoder.close()
    for runtime in child.handles.values():
        # Destroy explicitly so the NPU memory is returned before the next step's load, not at exit.
        runtime.destroy()


def main() -> None:
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _raise_fd_limit()
    serve(sys.stdin, protocol)


if __name__ == "__main__":
    main()
