"""run / list / ps / load / unload against a fake Ollama API (httpx mock transport)."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from rkio.cli import client_commands as cc

TAGS = {"models": [{"name": "gemma3-270m", "model": "gemma3-270m", "size": 253 * 1024 * 1024,
                    "modified_at": "2025-01-02T03:04:05Z", "details": {"format": "gguf"}}]}
PS = {"models": [{"name": "qwen", "model": "qwen", "size": 3 << 30, "size_vram": 3 << 30,
                  "expires_at": "2025-01-02T03:09:05Z"}]}


def streamed(status: int, body: Any = None, text: str | None = None) -> httpx.Response:
    """A response whose body still has to be read, as a real server's is when the client streams."""
    raw = text.encode() if text is not None else json.dumps(body).encode()
    return httpx.Response(status, stream=httpx.ByteStream(raw))


class FakeServer:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.reply = ["Hel", "lo", " there"]
        self.status = 200
        self.error_body: dict[str, Any] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, request.url.path, body))
        if self.status >= 400:
            return streamed(self.status, self.error_body)
        if request.url.path == "/api/tags":
            return streamed(200, TAGS)
        if request.url.path == "/api/ps":
            return streamed(200, PS)
        if request.url.path == "/api/generate":
            return streamed(200, {"model": body["model"], "done": True, "response": ""})
        if request.url.path == "/api/chat":
            lines: list[dict[str, Any]] = [
                {"message": {"role": "assistant", "content": part}, "done": False} for part in self.reply]
            lines.append({"message": {"role": "assistant", "content": ""}, "done": True,
                          "done_reason": "stop", "eval_count": 3, "eval_duration": 500_000_000,
                          "prompt_eval_count": 9})
            return streamed(200, text="".join(json.dumps(x) + "\n" for x in lines))
        return streamed(404, {"error": "not found"})


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    fake = FakeServer()

    def client(args: Any, timeout: float | None = 30.0) -> cc.Client:
        return cc.Client("http://rkio.test", transport=httpx.MockTransport(fake))

    monkeypatch.setattr(cc, "_client", client)
    return fake


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cc.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def run(func: Callable[..., int], *argv: str, **streams: Any) -> tuple[int, str]:
    out = io.StringIO()
    code = func(parse(*argv), out, **streams)
    return code, out.getvalue()


def test_list_plain_output_is_tab_separated(server: FakeServer) -> None:
    code, out = run(cc.cmd_list, "list")
    assert code == 0
    header, row = out.splitlines()
    assert header.split("\t") == ["NAME", "SIZE", "FORMAT", "MODIFIED"]
    assert row.split("\t")[:3] == ["gemma3-270m", "253.0 MiB", "gguf"]


def test_list_json_is_the_servers_json(server: FakeServer) -> None:
    _, out = run(cc.cmd_list, "list", "--json")
    assert json.loads(out) == TAGS


def test_ps_shows_processor_and_json(server: FakeServer) -> None:
    _, out = run(cc.cmd_ps, "ps")
    assert out.splitlines()[1].split("\t")[:3] == ["qwen", "3.0 GiB", "NPU"]
    _, out = run(cc.cmd_ps, "ps", "--json")
    assert json.loads(out) == PS


def test_load_and_unload_use_keep_alive(server: FakeServer) -> None:
    assert run(cc.cmd_load, "load", "gemma3-270m", "--keepalive", "10m")[1] == "loaded gemma3-270m\n"
    assert run(cc.cmd_unload, "unload", "gemma3-270m")[1] == "unloaded gemma3-270m\n"
    assert server.requests == [("POST", "/api/generate", {"model": "gemma3-270m", "keep_alive": 600.0}),
                               ("POST", "/api/generate", {"model": "gemma3-270m", "keep_alive": 0})]


def test_run_streams_one_answer(server: FakeServer) -> None:
    err = io.StringIO()
    code, out = run(cc.cmd_run, "run", "gemma3-270m", "Say", "hi", "--system", "Be brief", "--temperature",
                    "0", "--max-tokens", "20", "--verbose", err=err, stdin=io.StringIO(""))
    assert code == 0 and out == "Hello there\n"
    method, path, body = server.requests[0]
    assert (method, path) == ("POST", "/api/chat")
    assert body["messages"] == [{"role": "system", "content": "Be brief"},
                                {"role": "user", "content": "Say hi"}]
    assert body["options"] == {"temperature": 0.0, "num_predict": 20} and body["stream"] is True
    assert "3 tokens, 6.0 tokens/s" in err.getvalue()


def test_run_reads_the_prompt_from_piped_stdin(server: FakeServer) -> None:
    run(cc.cmd_run, "run", "m", err=io.StringIO(), stdin=io.StringIO("question from a pipe\n"))
    assert server.requests[0][2]["messages"] == [{"role": "user", "content": "question from a pipe\n"}]


def test_interactive_chat_keeps_history_until_clear(server: FakeServer) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stdin = Terminal("first\nsecond\n/clear\nthird\n/bye\n")
    code, out = run(cc.cmd_run, "run", "m", err=io.StringIO(), stdin=stdin)
    assert code == 0 and out.count("Hello there") == 3
    sent = [body["messages"] for _, _, body in server.requests]
    assert [m["content"] for m in sent[1]] == ["first", "Hello there", "second"]
    assert [m["content"] for m in sent[2]] == ["third"]


def test_server_errors_are_one_line_and_exit_1(server: FakeServer,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    server.status, server.error_body = 404, {"error": "model 'nope' not found"}
    args = parse("run", "nope", "hi")
    assert args.func(args) == 1
    assert capsys.readouterr().err == "rkio: model 'nope' not found\n"


def test_unreachable_server_says_how_to_start_one(capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(cc.ClientError, match="is `rkio serve` running"), \
            cc.Client("http://127.0.0.1:9", transport=httpx.MockTransport(refuse)) as client:
        client.get("/api/tags")


@pytest.mark.parametrize("host,port,env,url", [
    (None, None, {}, "http://127.0.0.1:8080"),
    (None, None, {"RKIO_HOST": "0.0.0.0", "RKIO_PORT": "9000"}, "http://127.0.0.1:9000"),
    ("board.local", 1234, {"RKIO_HOST": "x"}, "http://board.local:1234"),
    ("::1", 8080, {}, "http://[::1]:8080"),
])
def test_server_url(monkeypatch: pytest.MonkeyPatch, host: str | None, port: int | None, env: dict[str, str],
                    url: str) -> None:
    monkeypatch.delenv("RKIO_HOST", raising=False)
    monkeypatch.delenv("RKIO_PORT", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cc.server_url(host, port) == url


def test_list_on_a_terminal_is_a_table(server: FakeServer) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    assert cc.cmd_list(parse("list"), out) == 0
    text = out.getvalue()
    assert "\t" not in text
    assert "NAME" in text and "gemma3-270m" in text and "253.0 MiB" in text
