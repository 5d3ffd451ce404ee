"""Bad input against a live server: always a 4xx in the protocol's own error shape, never a 5xx, and the
server keeps serving afterwards."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from live_server import LiveServer

OPENAI = "/v1/chat/completions"
OLLAMA = "/api/chat"
MESSAGES = [{"role": "user", "content": "hi [[n=2]]"}]

CASES = [
    ("bad json", b'{"model": "sim-a", "messages": [', 400),
    ("not an object", b'[1, 2, 3]', 400),
    ("wrong types", b'{"model": "sim-a", "messages": "hello", "max_tokens": "many"}', 400),
    # OpenAI rejects max_tokens -5, Ollama (which ignores max_tokens) the non-numeric num_predict
    ("bad limits", b'{"model": "sim-a", "messages": [{"role": "user", "content": "x"}], '
                   b'"max_tokens": -5, "options": {"num_predict": "x"}}', 400),
    ("unknown model", b'{"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}', 404),
    ("path traversal", b'{"model": "../../etc/passwd", "messages": [{"role": "user", "content": "x"}]}', 404),
    ("absolute path", b'{"model": "/etc/passwd", "messages": [{"role": "user", "content": "x"}]}', 404),
    ("encoded traversal", b'{"model": "..%2F..%2Fetc", "messages": [{"role": "user", "content": "x"}]}', 404),
    ("nul byte", b'{"model": "sim-a\\u0000x", "messages": [{"role": "user", "content": "x"}]}', 404),
]


def error_message(path: str, response: httpx.Response) -> str:
    body = response.json()
    if path == OPENAI:
        assert set(body["error"]) >= {"message", "type"}
        return str(body["error"]["message"])
    assert isinstance(body["error"], str)
    return str(body["error"])


@pytest.mark.parametrize("path", [OPENAI, OLLAMA])
def test_bad_requests_get_protocol_shaped_4xx(server: LiveServer, path: str) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for name, body, status in CASES:
            r = client.post(path, content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == status, (name, r.status_code, r.text)
            assert error_message(path, r), name
        # still serving
        ok = client.post(path, json={"model": "sim-a", "messages": MESSAGES, "stream": False})
        assert ok.status_code == 200, ok.text


def test_huge_body_is_413_and_url_model_names_stay_inside(start_server: Callable[..., LiveServer]) -> None:
    live = start_server("--max-body-bytes", "64KiB")
    try:
        with httpx.Client(base_url=live.url, timeout=30) as client:
            huge = {"model": "sim-a", "messages": [{"role": "user", "content": "x" * 200_000}]}
            for path in (OPENAI, OLLAMA):
                r = client.post(path, json=huge)
                assert r.status_code == 413, r.text
                assert error_message(path, r)
            for name in ("..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "sim-a%00"):
                r = client.get(f"/v1/models/{name}")
                assert r.status_code == 404, (name, r.status_code, r.text)
            r = client.post("/api/show", json={"model": "../sim-a"})
            assert r.status_code == 404 and "error" in r.json()
            assert client.get("/health").status_code == 200
    finally:
        assert live.stop() == 0, live.log()
