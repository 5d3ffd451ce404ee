"""The MCP tools' backend on a running ``rkio serve``: its JSON-RPC Unix socket (``rkio mcp`` over stdio).

Each tool call opens its own connection and sends one request (newline-delimited JSON-RPC 2.0, the
``rkio.chat`` / ``rkio.generate`` / ``rkio.list_models`` / ``rkio.status`` methods). Generations are asked
with ``stream: true``: the pushed chunks drive MCP progress. Cancelling the call closes its connection, and
the server cancels what runs on a closed connection (the generation is aborted, the lane freed). So the
stdio process holds no engine and no state: admission, queueing and crash isolation stay in the server.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from rkio.mcp.backend import (
    ChatCall,
    Completion,
    GenerateCall,
    ModelList,
    Options,
    Progress,
    RemoteError,
    StatusReport,
)

MAX_LINE = 64 << 20  # the longest message accepted from the server (a whole reply is one line)
REQUEST_ID = 1


def remote_error(error: Any) -> RemoteError:
    """A JSON-RPC ``error`` member as the error a tool reports: the server's message, its retry hint."""
    if not isinstance(error, dict):
        return RemoteError(f"the rkio server answered with a malformed error: {error!r}")
    data = error.get("data")
    if not isinstance(data, dict):
        data = {}
    err = RemoteError(str(error.get("message") or f"error {error.get('code')}"),
                      str(data.get("kind") or "server_error"))
    retry = data.get("retry_after")
    if isinstance(retry, int | float):
        err.retry_after = float(retry)
    return err


def _generation_params(options: Options) -> dict[str, Any]:
    params: dict[str, Any] = {"stream": True}
    for name in ("max_tokens", "temperature", "top_p", "top_k"):
        value = getattr(options, name)
        if value is not None:
            params[name] = value
    if options.stop:
        params["stop"] = list(options.stop)
    return params


class RpcBackend:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    async def _call(self, method: str, params: dict[str, Any], progress: Progress | None = None) -> Any:
        try:
            reader, writer = await asyncio.open_unix_connection(str(self.socket_path), limit=MAX_LINE)
        except OSError as exc:
            raise RemoteError(f"cannot reach the rkio server at {self.socket_path}: "
                              f"{exc.strerror or exc} (is `rkio serve` running?)", "unavailable") from None
        try:
            request = {"jsonrpc": "2.0", "id": REQUEST_ID, "method": method, "params": params}
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            chunks = 0
            while True:
                line = await reader.readline()
                if not line.endswith(b"\n"):
                    raise RemoteError("the rkio server closed the connection before answering "
                                      "(it may be shutting down)", "unavailable")
                message = json.loads(line)
                if message.get("id") == REQUEST_ID:
                    if "error" in message:
                        raise remote_error(message["error"])
                    return message.get("result")
                pushed = message.get("params")
                if progress is not None and isinstance(pushed, dict) and pushed.get("delta"):
                    chunks += 1  # each pushed chunk holds at least one token
                    await progress(chunks, None)
        except (ConnectionError, ValueError) as exc:  # ValueError: a line that is not JSON, or too long
            raise RemoteError(f"lost the connection to the rkio server: {exc}", "unavailable") from None
        finally:
            writer.close()  # on cancellation too: the server aborts what ran on this connection

    async def _completion(self, method: str, params: dict[str, Any], progress: Progress) -> Completion:
        result = await self._call(method, params, progress)
        return Completion.model_validate(result)

    async def chat(self, call: ChatCall, progress: Progress) -> Completion:
        params = {"model": call.model, "messages": [m.model_dump() for m in call.messages],
                  **_generation_params(call.options)}
        return await self._completion("rkio.chat", params, progress)

    async def generate(self, call: GenerateCall, progress: Progress) -> Completion:
        params = {"model": call.model, "prompt": call.prompt, "raw": call.raw,
                  **_generation_params(call.options)}
        return await self._completion("rkio.generate", params, progress)

    async def list_models(self) -> ModelList:
        return ModelList.model_validate(await self._call("rkio.list_models", {}))

    async def status(self) -> StatusReport:
        return StatusReport.model_validate(await self._call("rkio.status", {}))
