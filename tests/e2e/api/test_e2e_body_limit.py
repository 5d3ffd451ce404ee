"""A body over ``--max-body-bytes`` is answered with a 413 in the protocol's error shape that the client can
read even while it is still sending: the server answers at once and reads the rest of the body away instead of
closing the connection under the client (which makes the kernel send a TCP reset, and the client sees
"connection reset" instead of the answer)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from live_server import LiveServer

LIMIT = 64 << 10
OVER = 8 << 20  # far over the limit and over what the kernel's socket buffers hold
CHUNK = 64 << 10
PATHS = ["/v1/chat/completions", "/api/chat"]
CLOSE = "Connection: close\r\n"  # as simple clients send: the server closes right after its answer


@pytest.fixture
def small_limit(start_server: Callable[..., LiveServer]) -> Iterator[LiveServer]:
    live = start_server("--max-body-bytes", f"{LIMIT}")
    yield live
    assert live.stop() == 0, live.log()


def body_prefix() -> bytes:
    return b'{"model": "sim-a", "messages": [{"role": "user", "content": "'


def raw_exchange(url: str, head: bytes, chunks: Iterator[bytes]) -> bytes:
    """Send the request like a client that writes its whole body before reading, then read the reply."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head)
        for chunk in chunks:
            sock.sendall(chunk)  # a reset here (or in recv) is the defect
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while data := sock.recv(65536):
            reply += data
        return reply


def parse(reply: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def assert_protocol_413(path: str, status: int, body: bytes) -> None:
    assert status == 413
    error = json.loads(body)["error"]
    message = error["message"] if path.startswith("/v1/") else error
    assert isinstance(message, str) and str(LIMIT) in message


@pytest.mark.parametrize("path", PATHS)
def test_raw_client_still_sending_a_declared_oversized_body_reads_the_413(small_limit: LiveServer,
                                                                         path: str) -> None:
    head = (f"POST {path} HTTP/1.1\r\nHost: localhost\r\n{CLOSE}Content-Type: application/json\r\n"
            f"Content-Length: {OVER}\r\n\r\n").encode()
    chunks = (b"x" * CHUNK for _ in range(OVER // CHUNK))
    status, headers, body = parse(raw_exchange(small_limit.url, head, chunks))
    assert_protocol_413(path, status, body[: int(headers["content-length"])])
    assert headers.get("connection") == "close"


@pytest.mark.parametrize("path", PATHS)
def test_raw_client_sending_an_oversized_chunked_body_reads_the_413(small_limit: LiveServer,
                                                                     path: str) -> None:
    head = (f"POST {path} HTTP/1.1\r\nHost: localhost\r\n{CLOSE}Content-Type: application/json\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n").encode()
    piece = b"x" * CHUNK
    chunks = iter([*(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(OVER // CHUNK)), b"0\r\n\r\n"])
    status, headers, body = parse(raw_exchange(small_limit.url, head, chunks))
    assert_protocol_413(path, status, body[: int(headers["content-length"])])


@pytest.mark.parametrize("path", PATHS)
def test_httpx_with_a_large_or_streamed_body_gets_the_413(small_limit: LiveServer, path: str) -> None:
    content = body_prefix() + b"x" * OVER + b'"}]}'

    def streamed() -> Iterator[bytes]:  # no Content-Length: chunked
        for start in range(0, len(content), CHUNK):
            yield content[start:start + CHUNK]

    with httpx.Client(base_url=small_limit.url, timeout=30) as client:
        for body, connection in ((content, "keep-alive"), (streamed(), "keep-alive"), (content, "close"),
                                 (streamed(), "close")):
            r = client.post(path, content=body, headers={"Content-Type": "application/json",
                                                         "Connection": connection})
            assert_protocol_413(path, r.status_code, r.content)
        ok = client.post(path, json={"model": "sim-a", "messages": [{"role": "user", "content": "hi"}],
                                     "stream": False})
        assert ok.status_code == 200, ok.text
