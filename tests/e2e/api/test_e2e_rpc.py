"""The IO API's scenario suite over every transport, against a real ``rkio serve`` on the simulator.

One server (module scope) listens on a Unix socket, TCP, UDP, ``/ws`` and ``/rpc`` with an API key; stdio
goes through ``rkio rpc --stdio``. Each scenario runs once per transport.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from live_server import LiveServer, free_port, launch
from rpc_clients import Conn, HttpConn, LineConn, RpcError, StdioConn, UdpConn, WsConn

import simkit

FLAVOUR = "1.2.3"
KEY = "e2e-key"
TRANSPORTS = ("unix", "tcp", "stdio", "ws", "http", "udp")
CONNECTED = ("unix", "tcp", "stdio", "ws")  # transports whose handles belong to a connection
SLOW = "[[n=2000]] slow words go on"  # sim-slow: 20 ms per token, so about 40 s unless aborted


def start_rpc_server(home: Path, *flags: str) -> LiveServer:
    (home / "models" / "sim-a").mkdir(parents=True)
    (home / "models" / "sim-a" / "style.lora").write_bytes(b"lora adapter")  # the simulator only opens it
    simkit.make_model(home / "models" / "sim-crash" / "sim-crash.rkllm", 32 << 20, fault="segv_at_token:2")
    return launch(home, simkit.sim_library(FLAVOUR), FLAVOUR, *flags)


class Endpoints:
    def __init__(self, server: LiveServer, unix: str, tcp: int, udp: int) -> None:
        self.server, self.unix, self.tcp, self.udp = server, unix, tcp, udp
        self.opened: list[Conn] = []

    def connect(self, transport: str) -> Conn:
        conn: Conn
        if transport == "unix":
            conn = LineConn.unix(self.unix)
        elif transport == "tcp":
            conn = LineConn.tcp("127.0.0.1", self.tcp)
            conn.call("rkio.auth", {"api_key": KEY})
        elif transport == "stdio":
            conn = StdioConn(self.unix)
        elif transport == "ws":
            conn = WsConn(self.server.url.replace("http", "ws") + "/ws", KEY)
        elif transport == "http":
            conn = HttpConn(self.server.url, KEY)
        else:
            conn = UdpConn("127.0.0.1", self.udp, KEY)
        self.opened.append(conn)
        return conn


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    home = tmp_path_factory.mktemp("rpc")
    unix = f"/tmp/rkio-e2e-{os.getpid()}.sock"
    tcp, udp = free_port(), free_port()
    server = start_rpc_server(
        home,
        "--api-key",
        KEY,
        "--rpc-unix",
        unix,
        "--rpc-tcp",
        f"127.0.0.1:{tcp}",
        "--rpc-udp",
        f"127.0.0.1:{udp}",
        "--rpc-stream-ttl",
        "2s",
    )
    ends = Endpoints(server, unix, tcp, udp)
    try:
        yield ends
    finally:
        for conn in ends.opened:
            with contextlib.suppress(Exception):
                conn.close()
        assert server.stop() == 0, server.log()
        assert not Path(unix).exists()


@pytest.fixture(params=TRANSPORTS)
def conn(request: pytest.FixtureRequest, endpoints: Endpoints) -> Iterator[Conn]:
    c = endpoints.connect(request.param)
    yield c
    if c.name not in CONNECTED:  # shared handles outlive the client until they expire: destroy them
        for handle in list(getattr(c, "handles", ())):
            with contextlib.suppress(RpcError):
                c.call("rkllm.destroy", {"handle_id": handle})
    c.close()
    endpoints.opened.remove(c)


def init(conn: Conn, model: str = "sim-a", **param: Any) -> dict[str, Any]:
    result = conn.call("rkllm.init", {"model_path": model, "param": param})
    conn.handles = [*getattr(conn, "handles", ()), result["handle_id"]]  # type: ignore[attr-defined]
    return dict(result)


def h(conn: Conn, result: dict[str, Any], **params: Any) -> dict[str, Any]:
    """Params with the handle: omitted on connections that hold one handle (nano's way), else given."""
    return (
        params
        if conn.name in CONNECTED and len(getattr(conn, "handles", ())) == 1
        else {"handle_id": result["handle_id"], **params}
    )


def status(endpoints: Endpoints) -> dict[str, Any]:
    return dict(
        httpx.get(endpoints.server.url + "/rkio/status", headers={"Authorization": f"Bearer {KEY}"}).json()
    )


def test_lifecycle_run_forms_and_kv(conn: Conn) -> None:
    assert conn.call("rkllm.createDefaultParam", [])["max_context_len"] == 512
    consts = conn.call("rkllm.get_constants")
    assert (
        consts["LLM_CALL_STATES"]["RKLLM_RUN_FINISH"] == 2 and consts["INPUT_TYPES"]["RKLLM_INPUT_TOKEN"] == 1
    )
    handle = init(conn, max_context_len=1024)
    assert handle["success"] and handle["param"]["max_context_len"] >= 1024  # a larger loaded context fits
    plain = conn.call("rkllm.run", h(conn, handle, prompt="[[n=3]] alpha beta gamma"))
    assert plain["text"].split() == ["alpha", "beta", "gamma"] and len(plain["token_ids"]) == 3
    assert plain["finish_reason"] == "stop" and plain["perf"]["generate_tokens"] == 3
    chunks, final = conn.stream("rkllm.run", h(conn, handle, prompt="[[n=2]] delta epsilon"))
    assert "".join(c["delta"] for c in chunks).split() == ["delta", "epsilon"] and chunks[-1]["end"]
    assert [c["seq"] for c in chunks] == list(range(len(chunks)))
    if conn.push:
        assert final["text"].split() == ["delta", "epsilon"]
        states = conn.callbacks("rkllm.run", h(conn, handle, prompt="[[n=2]] zeta eta", stream="callbacks"))
        # tokens that became ready together arrive in one callback message (the runner batches them)
        assert [s["_callback_state"] for s in states[:-1]] == [0] * (len(states) - 1) and len(states) >= 2
        assert states[-1]["_callback_state"] == 2
        assert "".join(s["text"] for s in states).split() == ["zeta", "eta"]
    else:
        with pytest.raises(RpcError) as caught:
            conn.call("rkllm.run", h(conn, handle, prompt="x", stream="callbacks"))
        assert caught.value.code == -32602
    conn.call("rkllm.run", h(conn, handle, prompt="[[n=2]] keep this", keep_history=1))
    assert conn.call("rkllm.get_kv_cache_size", h(conn, handle))["cache_sizes"][0] > 0
    assert conn.call("rkllm.clear_kv_cache", h(conn, handle, keep_system_prompt=0))["success"]
    assert conn.call("rkllm.get_kv_cache_size", h(conn, handle))["cache_sizes"] in ([], [0])
    assert conn.call("rkllm.destroy", h(conn, handle))["success"]
    with pytest.raises(RpcError) as caught:
        conn.call("rkllm.destroy", {"handle_id": handle["handle_id"]})
    assert caught.value.code == -32002
    conn.handles = []  # type: ignore[attr-defined]


def test_abort_from_a_second_request(conn: Conn) -> None:
    handle = init(conn, "sim-slow")
    if conn.push:
        run = conn.send("rkllm.run", h(conn, handle, prompt=SLOW, stream=True))
        first = conn.receive()
        assert first.get("method") == "rkllm.run" and first["params"]["end"] is False
        assert conn.call("rkllm.is_running", h(conn, handle))["is_running"] is True
        assert conn.call("rkllm.abort", h(conn, handle))["message"] == "Task aborted successfully"
        _, reply = conn.wait(run)
        assert reply["result"]["finish_reason"] == "abort"
    else:
        assert isinstance(conn, HttpConn)
        stream_id = conn.call("rkllm.run", h(conn, handle, prompt=SLOW, stream=True))["stream_id"]
        assert conn.call("rkllm.is_running", h(conn, handle))["is_running"] is True
        conn.call("rkllm.abort", h(conn, handle))
        assert conn.pull("rkllm.run", stream_id)[-1]["finish_reason"] == "abort"
    assert conn.call("rkllm.is_running", h(conn, handle))["is_running"] is False
    conn.call("rkllm.destroy", h(conn, handle))
    conn.handles = []  # type: ignore[attr-defined]


def test_lora_and_prompt_cache(conn: Conn) -> None:
    handle = init(conn)
    conn.call(
        "rkllm.load_lora",
        h(
            conn,
            handle,
            lora_adapter={
                "lora_adapter_path": "sim-a/style.lora",
                "lora_adapter_name": "style",
                "scale": 1.0,
            },
        ),
    )
    styled = conn.call(
        "rkllm.run",
        h(
            conn,
            handle,
            rkllm_input={"prompt": "[[n=2]] one two"},
            rkllm_infer_params={"lora_params": {"lora_adapter_name": "style"}},
        ),
    )
    assert styled["text"].split() == ["style:one", "style:two"]
    cache = f"{conn.name}.cache"
    conn.call(
        "rkllm.run",
        h(
            conn,
            handle,
            prompt="[[n=1]] cached prefix",
            prompt_cache_params={"save_prompt_cache": 1, "prompt_cache_path": cache},
        ),
    )
    longer = "[[n=1]] cached prefix and more words"
    uncached = conn.call("rkllm.run", h(conn, handle, prompt=longer))["perf"]["prefill_tokens"]
    assert conn.call("rkllm.load_prompt_cache", h(conn, handle, prompt_cache_path=cache))["success"]
    cached = conn.call("rkllm.run", h(conn, handle, prompt=longer))["perf"]["prefill_tokens"]
    assert 0 < cached < uncached  # the loaded cache covered the prefix: only the rest was prefilled
    assert conn.call("rkllm.release_prompt_cache", h(conn, handle))["success"]
    assert conn.call("rkllm.run", h(conn, handle, prompt=longer))["perf"]["prefill_tokens"] == uncached
    with pytest.raises(RpcError) as caught:
        conn.call("rkllm.load_prompt_cache", h(conn, handle, prompt_cache_path="../../../etc/passwd"))
    assert caught.value.code == -32602
    conn.call("rkllm.destroy", h(conn, handle))
    conn.handles = []  # type: ignore[attr-defined]


def test_two_clients_share_isolate_and_never_leak(endpoints: Endpoints, conn: Conn) -> None:
    other = endpoints.connect(conn.name)
    mine, theirs = init(conn, "sim-echo"), init(other, "sim-echo")
    loaded = [m for m in status(endpoints)["loaded"] if m["name"] == "sim-echo"]
    assert len(loaded) == 1 and loaded[0]["leases"] >= 2  # one instance, shared
    conn.call(
        "rkllm.set_chat_template",
        h(conn, mine, template_config={"system_prompt": "", "prompt_prefix": "ZULU ", "prompt_postfix": ""}),
    )
    assert "ZULU" in conn.call("rkllm.run", h(conn, mine, prompt="[[n=3]] mine words"))["text"]
    assert "ZULU" not in other.call("rkllm.run", h(other, theirs, prompt="[[n=3]] their words"))["text"]
    other.call("rkllm.run", h(other, theirs, prompt="[[n=2]] remember me", keep_history=1))
    other.call("rkllm.clear_kv_cache", h(other, theirs, keep_system_prompt=0))
    if conn.name in CONNECTED:  # ids are per connection: the other's id means nothing here
        assert mine["handle_id"] == theirs["handle_id"] == 1
        with pytest.raises(RpcError) as caught:
            conn.call("rkllm.run", {"handle_id": 2, "prompt": "x"})
    else:  # ids are random and unguessable
        assert mine["handle_id"] != theirs["handle_id"]
        with pytest.raises(RpcError) as caught:
            conn.call("rkllm.run", {"handle_id": mine["handle_id"] ^ 1, "prompt": "x"})
    assert caught.value.code == -32002
    for c, result in ((conn, mine), (other, theirs)):
        c.call("rkllm.destroy", {"handle_id": result["handle_id"]})
        c.handles = []  # type: ignore[attr-defined]
    other.close()
    endpoints.opened.remove(other)


@pytest.mark.parametrize("transport", CONNECTED)
def test_lease_released_on_disconnect(endpoints: Endpoints, transport: str) -> None:
    conn = endpoints.connect(transport)
    init(conn, "sim-slow")
    conn.send("rkllm.run", {"prompt": SLOW, "stream": True})
    assert conn.receive()["params"]["end"] is False  # generating when the client goes away
    before = status(endpoints)
    conn.close()
    endpoints.opened.remove(conn)
    deadline = time.monotonic() + 20
    while any(
        m["name"] == "sim-slow" and (m["leases"] or m["state"] == "busy") for m in status(endpoints)["loaded"]
    ):
        assert time.monotonic() < deadline, status(endpoints)
        time.sleep(0.05)
    unloaded = httpx.post(
        endpoints.server.url + "/api/generate",
        headers={"Authorization": f"Bearer {KEY}"},
        json={"model": "sim-slow", "keep_alive": 0},
        timeout=30,
    )
    assert unloaded.status_code == 200, unloaded.text
    after = status(endpoints)
    assert all(m["name"] != "sim-slow" for m in after["loaded"])
    assert after["used_bytes"] < before["used_bytes"]


def test_http_pull_stream_expires(endpoints: Endpoints) -> None:
    conn = endpoints.connect("http")
    handle = init(conn, "sim-slow")
    stream_id = conn.call("rkllm.run", {"handle_id": handle["handle_id"], "prompt": SLOW, "stream": True})[
        "stream_id"
    ]
    deadline = time.monotonic() + 15  # --rpc-stream-ttl 2s; the sweeper aborts the generation
    while conn.call("rkllm.is_running", {"handle_id": handle["handle_id"]})["is_running"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    with pytest.raises(RpcError) as caught:
        conn.call("rkllm.run", {"stream_id": stream_id})
    assert (
        caught.value.code == -32001
        and caught.value.error["message"] == "stream session not exists or expired"
    )
    conn.call("rkllm.destroy", {"handle_id": handle["handle_id"]})


def test_high_level_chat(conn: Conn) -> None:
    reply = conn.call(
        "rkio.chat", {"model": "sim-echo", "messages": [{"role": "user", "content": "[[n=2]] hi you"}]}
    )
    assert reply["text"].split() == ["hi", "you"] and reply["usage"]["completion_tokens"] == 2
    names = [m["name"] for m in conn.call("rkio.list_models")["models"]]
    assert names == sorted(names) and "sim-echo" in names


def test_a_nano_latest_client_works_unchanged(tmp_path: Path) -> None:
    """Written like nano's sandbox clients: Unix socket, JSON + newline, named params, no handle_id,
    callbacks until _callback_state 2, against a server that stands in for nano."""
    sock = f"/tmp/rkllm-e2e-{os.getpid()}.sock"
    server = start_rpc_server(tmp_path, "--rpc-unix", sock, "--rpc-stream-default", "callbacks")
    try:
        client = LineConn.unix(sock)
        init_reply = client.call(
            "rkllm.init",
            {
                "model_path": "sim-a/sim-a.rkllm",
                "param": {
                    "max_context_len": 512,
                    "max_new_tokens": 100,
                    "temperature": 0.7,
                    "top_k": 1,
                    "top_p": 0.9,
                    "skip_special_token": True,
                    "extend_param": {"base_domain_id": 0},
                },
            },
        )
        assert init_reply["success"] is True
        results = client.callbacks(
            "rkllm.run",
            {"input_type": "RKLLM_INPUT_PROMPT", "role": "user", "prompt": "[[n=4]] Hello, what is 2+2?"},
        )
        assert results[-1]["_callback_state"] == 2 and len(results) >= 2
        assert len("".join(r["text"] for r in results).split()) == 4
        assert all({"text", "token_id", "_callback_state"} <= set(r) for r in results)
        assert client.call("rkllm.is_running", [None])["is_running"] is False
        assert client.call("rkllm.destroy", {})["success"] is True
        client.close()
    finally:
        assert server.stop() == 0, server.log()


@pytest.mark.parametrize("transport", ["unix", "http"])
def test_a_crashed_runner_leaves_a_dead_handle(endpoints: Endpoints, transport: str) -> None:
    conn = endpoints.connect(transport)
    handle = init(conn, "sim-crash")
    with pytest.raises(RpcError) as caught:
        conn.call("rkllm.run", h(conn, handle, prompt="[[n=5]] one two three"))
    assert caught.value.code == -32005 and "SIGSEGV" in caught.value.error["message"]
    with pytest.raises(RpcError) as caught:
        conn.call("rkllm.run", h(conn, handle, prompt="again"))
    assert caught.value.code == -32005 and "is dead" in caught.value.error["message"]
    assert conn.call("rkllm.destroy", h(conn, handle))["success"]
    conn.close()
    endpoints.opened.remove(conn)
