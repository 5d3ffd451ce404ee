"""SIGTERM with requests in flight: after the stop grace, each one still ends in its protocol's shape (the
streaming one with a final error event, the ones still waiting with a 503 "shutting down" body), and the
server exits 0. Found by the chaos soak (tests/soak): requests still queued got uvicorn's plain-text 500."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from live_server import LiveServer


def _wait_for(live: LiveServer, condition: Callable[[dict[str, Any]], bool]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if condition(httpx.get(live.url + "/rkio/status").json()):
            return
        time.sleep(0.02)
    raise AssertionError("engine never reached the expected state")


def test_requests_in_flight_at_sigterm_end_in_their_protocols_shape(
        start_server: Callable[..., LiveServer]) -> None:
    live = start_server("--stop-grace", "1")
    results: dict[str, tuple[int, list[str]]] = {}

    def stream(name: str, path: str, body: dict[str, Any]) -> None:
        with httpx.stream("POST", live.url + path, json=body, timeout=60) as r:
            results[name] = (r.status_code, [line for line in r.iter_lines() if line])

    long = {"model": "sim-slow", "stream": True, "messages": [{"role": "user", "content": "x [[n=2000]]"}]}
    queued = {"model": "sim-a", "messages": [{"role": "user", "content": "y [[n=3]]"}]}  # Ollama: streamed
    clients = [threading.Thread(target=stream, args=("running", "/v1/chat/completions", long))]
    clients[0].start()
    _wait_for(live, lambda s: s["running"] == 1)
    clients += [threading.Thread(target=stream, args=("ollama", "/api/chat", queued)),
                threading.Thread(target=stream, args=("openai", "/v1/chat/completions", queued))]  # whole
    for client in clients[1:]:
        client.start()
    _wait_for(live, lambda s: s["queue_length"] == 2)
    live.process.send_signal(signal.SIGTERM)
    for client in clients:
        client.join(timeout=30)
    assert live.process.wait(timeout=30) == 0, live.log()
    status, lines = results["running"]
    assert status == 200 and json.loads(lines[-1].removeprefix("data: "))["error"]["code"] == "shutting_down"
    status, lines = results["ollama"]
    assert (status, [json.loads(line) for line in lines]) == (503, [{"error": "server is shutting down"}])
    status, lines = results["openai"]
    assert status == 503 and json.loads("".join(lines))["error"]["code"] == "shutting_down"
