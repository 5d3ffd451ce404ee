"""Three simulated boards behind the real ``litellm`` Router, configured exactly as docs/scale-out.md says.

Each board is an ``rkio serve`` with its own models directory, simulator state and NPU lock, so they behave
as separate machines. The doc's ``python`` and ``yaml`` blocks are run with the board addresses and model
names replaced by the test's: concurrent clients are all served, the work spreads over the boards, a board
SIGKILLed mid-run (its whole process group, runners included) loses no request, a board whose queue is
full answers 429 at once and the router serves the request elsewhere, and a model partitioned onto one
board is served there.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from live_server import LiveServer

pytestmark = pytest.mark.timeout(240)

DOC = Path(__file__).parents[3] / "docs" / "scale-out.md"
KEY = "board-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
DOC_BOARDS = ("http://opi5-1.local:8080", "http://opi5-2.local:8080", "http://opi5-3.local:8080")
DOC_MODELS = {"qwen2.5-1.5b": "sim-slow", "gemma3-4b": "sim-echo"}  # the doc's names -> the sim's
MAX_QUEUE = 4


def doc_block(language: str, containing: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)
    return next(b for b in blocks if containing in b)


def localise(text: str, boards: list[LiveServer]) -> str:
    """The doc's configuration, pointed at the test's boards and simulated models."""
    for doc_url, board in zip(DOC_BOARDS, boards, strict=True):
        text = text.replace(doc_url, board.url)
    for doc_model, sim_model in DOC_MODELS.items():
        text = text.replace(f"openai/{doc_model}", f"openai/{sim_model}")
    return text


CONNECTIONS: list[str] = []  # every address this process connects to or looks up (an audit hook, below)


def _record(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect" and isinstance(args[1], tuple):
        CONNECTIONS.append(str(args[1][0]))
    elif event == "socket.getaddrinfo":
        CONNECTIONS.append(str(args[0]))


sys.addaudithook(_record)  # hooks cannot be removed; it only appends to a list


@pytest.fixture(autouse=True)
def nothing_leaves_the_machine() -> Iterator[None]:
    """LiteLLM is configured never to fetch anything (its model cost map, telemetry): every connection the
    test process makes, LiteLLM's included, goes to the boards on the loopback."""
    CONNECTIONS.clear()
    yield
    assert CONNECTIONS and set(CONNECTIONS) <= {"127.0.0.1", "localhost", "::1"}, set(CONNECTIONS)


@pytest.fixture(autouse=True)
async def litellm_clients_closed() -> AsyncIterator[None]:
    """LiteLLM caches its HTTP clients process-wide; close them with this test's event loop (else they are
    finalised after it closed, and log errors at interpreter exit)."""
    yield
    import litellm
    from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

    await close_litellm_async_clients()
    litellm.in_memory_llm_clients_cache.flush_cache()


@pytest.fixture
def boards(start_server: Callable[..., LiveServer], monkeypatch: pytest.MonkeyPatch) -> list[LiveServer]:
    # LiteLLM must never fetch anything (no internet on a board's network, nor in CI)
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    monkeypatch.setenv("LITELLM_TELEMETRY", "False")
    monkeypatch.setenv("RKIO_API_KEY", KEY)  # the doc's configs read it; the boards get it as a flag
    servers = [start_server("--api-key", KEY, "--board-name", f"opi5-{n}", "--max-queue", str(MAX_QUEUE))
               for n in (1, 2, 3)]
    for board in servers:
        assert httpx.get(board.url + "/ready", headers=AUTH).json()["status"] == "ready"
    return servers


def python_router(boards: list[LiveServer]) -> Any:
    namespace: dict[str, Any] = {}
    exec(localise(doc_block("python", "Router("), boards), namespace)  # the doc's own code
    return namespace["router"]


def yaml_router(boards: list[LiveServer]) -> Any:
    from litellm import Router

    config = yaml.safe_load(localise(doc_block("yaml", "model_list"), boards))
    return Router(model_list=config["model_list"], **config["router_settings"])  # what the proxy does


async def ask(router: Any, model: str, text: str) -> tuple[str, str]:
    """(reply, board) or (error class, "") for one chat completion through the router."""
    try:
        reply = await router.acompletion(model=model, messages=[{"role": "user", "content": text}])
    except Exception as exc:  # what a client of the router would see
        return f"{type(exc).__name__}: {exc}"[-400:].replace("\n", " "), ""
    board = reply._hidden_params["additional_headers"].get("llm_provider-x-rkio-board", "?")
    return reply.choices[0].message.content or "", board


def served(results: list[tuple[str, str]], prompts: list[str]) -> collections.Counter[str]:
    """Every reply is its own prompt's words (the simulator echoes them); the count per board."""
    for (reply, board), prompt in zip(results, prompts, strict=True):
        assert board and set(reply.split()) <= set(prompt.split()[:2]) and reply, (reply, board, prompt)
    return collections.Counter(board for _, board in results)


def status(board: LiveServer) -> dict[str, Any]:
    return dict(httpx.get(board.url + "/rkio/status", headers=AUTH).json())


def running(board: LiveServer) -> int:
    return int(status(board)["running"])


async def until(condition: Callable[[], bool], failure: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, failure
        await asyncio.sleep(0.02)


async def test_replicated_boards_serve_everyone_and_survive_a_killed_board(boards: list[LiveServer]) -> None:
    router = python_router(boards)
    prompts = [f"a{i} b{i} [[n=10]]" for i in range(12)]  # 10 tokens of 20 ms each per reply
    counts = served(await asyncio.gather(*(ask(router, "qwen2.5-1.5b", p) for p in prompts)), prompts)
    assert set(counts) == {"opi5-1", "opi5-2", "opi5-3"}, counts  # the work spreads over the boards

    # within what two boards hold (1 running + MAX_QUEUE waiting each) once opi5-1 is gone: beyond that they
    # answer 429 and the client gets a RateLimitError, as it should
    prompts = [f"c{i} d{i} [[n=25]]" for i in range(9)]
    tasks = [asyncio.create_task(ask(router, "qwen2.5-1.5b", p)) for p in prompts]
    await until(lambda: running(boards[0]) > 0, "opi5-1 never got a request")  # kill it while generating
    os.killpg(boards[0].process.pid, signal.SIGKILL)
    counts = served(await asyncio.gather(*tasks), prompts)  # nobody lost a request
    assert boards[0].process.wait(timeout=10) == -signal.SIGKILL
    assert counts["opi5-2"] and counts["opi5-3"], counts


async def test_a_full_board_sheds_load_with_429_and_the_router_serves_elsewhere(
        boards: list[LiveServer]) -> None:
    full = boards[1]
    async with httpx.AsyncClient(base_url=full.url, headers=AUTH, timeout=60) as client:
        body = {"model": "sim-slow", "messages": [{"role": "user", "content": "x y [[n=60]]"}]}
        hogs = [asyncio.create_task(client.post("/v1/chat/completions", json=body))]  # 1.2 s each
        await until(lambda: running(full) == 1, "the first request never ran")
        hogs += [asyncio.create_task(client.post("/v1/chat/completions", json=body))
                 for _ in range(MAX_QUEUE)]
        await until(lambda: status(full)["queue_length"] == MAX_QUEUE, "the queue never filled")
        refused = await client.post("/v1/chat/completions", json=body)
        assert not any(h.done() for h in hogs)  # answered at once, not after waiting its turn
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert refused.headers["x-rkio-board"] == "opi5-2"
        assert refused.json()["error"]["type"] == "rate_limit_error"

        router = yaml_router(boards)
        echoed, board = await ask(router, "gemma3-4b", "only on board3 [[n=3]]")
        assert (echoed.split(), board) == (["only", "on", "board3"], "opi5-3")  # the partitioned model
        # what the two other boards hold even when every request refused by opi5-2 goes to the same one (a
        # board that overflows too answers 429, and a client whose retries all meet full boards gets a 429)
        prompts = [f"e{i} f{i} [[n=10]]" for i in range(6)]
        counts = served(await asyncio.gather(*(ask(router, "qwen2.5-1.5b", p) for p in prompts)), prompts)

        assert all(r.status_code == 200 for r in await asyncio.gather(*hogs))
        metrics = (await client.get("/metrics")).text
    rejected = re.search(r'rkio_http_requests_total\{endpoint="/v1/chat/completions",status="429"\} (\d+)',
                         metrics)
    assert rejected and int(rejected.group(1)) >= 2, counts  # the router was refused too, and went elsewhere
