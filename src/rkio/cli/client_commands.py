"""``rkio run | list | ps | load | unload``: clients of a running server, over its Ollama-compatible API.

They speak only HTTP (httpx), so they work against a server on another machine too, and never load a
model themselves. Output is a rich table on a terminal, plain tab-separated lines otherwise, and the
server's JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TextIO

import httpx

from rkio.cli.progress import Waiting
from rkio.units import format_size, parse_duration

DEFAULT_PORT = 8080


class ClientError(Exception):
    """A failure to show the user as one line (server unreachable, HTTP error with its message)."""


def server_url(host: str | None, port: int | None) -> str:
    """Where the server listens: flags, then RKIO_HOST / RKIO_PORT, then 127.0.0.1:8080."""
    host = host or os.environ.get("RKIO_HOST") or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):  # a bind-all address is not a place to connect to
        host = "127.0.0.1"
    port = port or int(os.environ.get("RKIO_PORT") or DEFAULT_PORT)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


class Client:
    """Thin Ollama-API client; every failure becomes a ``ClientError`` with a readable message."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url
        self._http = httpx.Client(base_url=base_url, headers=headers, transport=transport,
                                  timeout=httpx.Timeout(timeout, connect=5.0))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def get(self, path: str) -> Any:
        with self._request("GET", path) as response:
            return json.loads(response.read())

    def post(self, path: str, body: dict[str, Any]) -> Any:
        with self._request("POST", path, body) as response:
            return json.loads(response.read())

    def send(self, method: str, path: str, body: dict[str, Any]) -> None:
        """A request whose answer has no body to read (``DELETE /api/delete``, ``/api/copy``)."""
        with self._request(method, path, body):
            pass

    def stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The NDJSON objects of a streaming endpoint; an ``error`` object mid-stream raises."""
        with self._request("POST", path, body) as response:
            for line in response.iter_lines():
                if not line.strip():
                    continue
                item = json.loads(line)
                if "error" in item:
                    raise ClientError(str(item["error"]))
                yield item

    @contextmanager
    def _request(self, method: str, path: str,
                 body: dict[str, Any] | None = None) -> Iterator[httpx.Response]:
        try:
            with self._http.stream(method, path, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ClientError(_error_message(response))
                yield response
        except httpx.ConnectError as exc:
            raise ClientError(
                f"cannot reach the rkio server at {self.base_url} (is `rkio serve` running?)") from exc
        except httpx.HTTPError as exc:
            raise ClientError(f"request to {self.base_url} failed: {exc}") from exc


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text.strip()[:200]}"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):  # OpenAI-shaped
        error = error.get("message")
    return str(error or f"HTTP {response.status_code}")


def _client(args: argparse.Namespace, timeout: float | None = 30.0) -> Client:
    return Client(server_url(args.host, args.port), os.environ.get("RKIO_API_KEY"), timeout)


def _is_tty(stream: TextIO) -> bool:
    return hasattr(stream, "isatty") and stream.isatty()


def _print_table(headers: list[str], rows: list[list[str]], out: TextIO) -> None:
    if _is_tty(out):
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, header_style="bold")
        for header in headers:
            table.add_column(header)
        for row in rows:
            table.add_row(*row)
        Console(file=out).print(table)
        return
    for row in [headers, *rows]:
        out.write("\t".join(row) + "\n")


def _when(text: str | None) -> str:
    if not text:
        return "-"
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


# ------------------------------------------------------------------------------------------- commands


def cmd_list(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    with _client(args) as client:
        data = client.get("/api/tags")
    if args.json:
        out.write(json.dumps(data, indent=2) + "\n")
        return 0
    rows = [[m.get("name", ""), format_size(int(m.get("size", 0))),
             str(m.get("details", {}).get("format", "")), _when(m.get("modified_at"))]
            for m in data.get("models", [])]
    _print_table(["NAME", "SIZE", "FORMAT", "MODIFIED"], rows, out)
    return 0


def cmd_ps(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    with _client(args) as client:
        data = client.get("/api/ps")
    if args.json:
        out.write(json.dumps(data, indent=2) + "\n")
        return 0
    rows = [[m.get("name", ""), format_size(int(m.get("size", 0))),
             "NPU" if m.get("size_vram") else "CPU", _when(m.get("expires_at"))]
            for m in data.get("models", [])]
    _print_table(["NAME", "SIZE", "PROCESSOR", "UNTIL"], rows, out)
    return 0


def _keep_alive(value: str | None) -> float | None:
    return None if value is None else parse_duration(value)


def cmd_load(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    body: dict[str, Any] = {"model": args.model}
    if args.keepalive is not None:
        body["keep_alive"] = _keep_alive(args.keepalive)
    with _client(args, timeout=None) as client, Waiting(f"loading {args.model}", sys.stderr):
        client.post("/api/generate", body)  # no timeout: a big model takes long to load
    out.write(f"loaded {args.model}\n")
    return 0


def cmd_unload(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    with _client(args, timeout=None) as client, Waiting(f"unloading {args.model}", sys.stderr):
        client.post("/api/generate", {"model": args.model, "keep_alive": 0})
    out.write(f"unloaded {args.model}\n")
    return 0


def _chat_body(args: argparse.Namespace, messages: list[dict[str, str]]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.temperature is not None:
        options["temperature"] = args.temperature
    if args.max_tokens is not None:
        options["num_predict"] = args.max_tokens
    body: dict[str, Any] = {"model": args.model, "messages": messages, "stream": True}
    if options:
        body["options"] = options
    if args.keepalive is not None:
        body["keep_alive"] = _keep_alive(args.keepalive)
    return body


def _answer(client: Client, args: argparse.Namespace, messages: list[dict[str, str]], out: TextIO,
            err: TextIO) -> str:
    """Stream one reply to ``out``; returns its text."""
    parts: list[str] = []
    final: dict[str, Any] = {}
    with Waiting(f"{args.model} is thinking (loading it first if needed)", err) as spinner:
        for item in client.stream("/api/chat", _chat_body(args, messages)):
            text = item.get("message", {}).get("content", "")
            if text:
                spinner.stop()
                parts.append(text)
                out.write(text)
                out.flush()
            if item.get("done"):
                final = item
    out.write("\n")
    if args.verbose and final:
        count, duration = final.get("eval_count", 0), final.get("eval_duration", 0)
        rate = f", {count / (duration / 1e9):.1f} tokens/s" if duration else ""
        err.write(f"[{count} tokens{rate}; prompt {final.get('prompt_eval_count', 0)} tokens; "
                  f"{final.get('done_reason', '')}]\n")
    return "".join(parts)


def cmd_run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
            stdin: TextIO = sys.stdin) -> int:
    system = [{"role": "system", "content": args.system}] if args.system else []
    prompt = " ".join(args.prompt) if args.prompt else None
    if prompt is None and not _is_tty(stdin):
        prompt = stdin.read()  # `echo question | rkio run model`
    with _client(args, timeout=None) as client:
        if prompt is not None:
            _answer(client, args, [*system, {"role": "user", "content": prompt}], out, err)
            return 0
        return _interactive(client, args, system, out, err, stdin)


def _interactive(client: Client, args: argparse.Namespace, system: list[dict[str, str]], out: TextIO,
                 err: TextIO, stdin: TextIO) -> int:
    history: list[dict[str, str]] = list(system)
    err.write(f"Chatting with {args.model}. /clear forgets the conversation, /bye (or Ctrl-D) ends it.\n")
    while True:
        out.write(">>> ")
        out.flush()
        line = stdin.readline()
        if not line or line.strip() == "/bye":
            return 0
        text = line.strip()
        if not text:
            continue
        if text == "/clear":
            history = list(system)
            continue
        history.append({"role": "user", "content": text})
        try:
            reply = _answer(client, args, history, out, err)
        except KeyboardInterrupt:
            history.pop()
            out.write("\n")
            continue
        history.append({"role": "assistant", "content": reply})


def _guard(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except ClientError as exc:
            sys.stderr.write(f"rkio: {exc}\n")
            return 1

    return run


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="server address (default $RKIO_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help=f"server port (default $RKIO_PORT or {DEFAULT_PORT})")


def register(subparsers: Any) -> None:
    """Add run, list, ps, load and unload."""
    run = subparsers.add_parser("run", help="chat with a model (one answer, or interactive without PROMPT)")
    run.add_argument("model")
    run.add_argument("prompt", nargs="*", help="the question; without it an interactive chat starts")
    run.add_argument("--system", help="system prompt")
    run.add_argument("--temperature", type=float)
    run.add_argument("--max-tokens", type=int, help="upper bound on the answer's tokens")
    run.add_argument("--keepalive", help="how long the model stays loaded afterwards (5m, 1h, -1)")
    run.add_argument("--verbose", action="store_true", help="print token counts and speed to stderr")
    _connection_flags(run)
    run.set_defaults(func=_guard(cmd_run))

    for name, func, text in (("list", cmd_list, "models in the models directory"),
                             ("ps", cmd_ps, "models loaded now")):
        parser = subparsers.add_parser(name, help=text)
        parser.add_argument("--json", action="store_true", help="print the server's JSON")
        _connection_flags(parser)
        parser.set_defaults(func=_guard(func))

    load = subparsers.add_parser("load", help="load a model now (returns when it is ready)")
    load.add_argument("model")
    load.add_argument("--keepalive", help="how long it stays loaded when idle (5m, 1h, -1 = forever)")
    _connection_flags(load)
    load.set_defaults(func=_guard(cmd_load))

    unload = subparsers.add_parser("unload", help="unload a model now")
    unload.add_argument("model")
    _connection_flags(unload)
    unload.set_defaults(func=_guard(cmd_unload))
