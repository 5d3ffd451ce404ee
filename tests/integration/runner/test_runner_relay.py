"""RunnerProcess lends a consumer's client socket to the runner (rkio.engine.chunk_push): the runner writes
the tokens there itself, the reply arrives whole and in order as the client reads it, a client that stops
reading gets the rest through the gateway, and a crash gives the socket back."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable, Sequence

import pytest

import simkit
from rkio.engine.chunk_push import RelayFormat
from rkio.engine.runner import RunnerProcess
from rkio.engine.runner.messages import RunnerDone, RunnerGeneration
from rkio.engine.types import ModelSpec, TokenChunk
from rkio.errors import RunnerCrashed
from rkio.runtime.base import GenerateParams

pytestmark = pytest.mark.timeout(60)

SpecMaker = Callable[..., ModelSpec]
FORMAT = RelayFormat(b'data: {"t":', b"}\n\n")


def chunk(text: str) -> bytes:
    """What the consumer writes for a chunk of its own: the same bytes the runner writes."""
    text_json = json.dumps(text, ensure_ascii=False, separators=(",", ":")).encode()
    body = FORMAT.prefix + text_json + FORMAT.suffix
    return b"%x\r\n%b\r\n" % (len(body), body)


def texts_of(data: bytes) -> list[str]:
    texts = []
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line, 16)
        assert rest[size:size + 2] == b"\r\n", "a chunk was cut"
        texts.append(json.loads(rest[:size][len(b"data: "):-2])["t"])
        data = rest[size + 2:]
    return texts


class Consumer:
    """An HTTP stream's part, on a real socket with an asyncio transport (as uvicorn's)."""

    def __init__(self, transport: asyncio.WriteTransport, sock: socket.socket) -> None:
        self.format = FORMAT
        self.report_s = 0.05
        self.transport = transport
        self.fd = sock.fileno()
        self.lent = False
        self.back = asyncio.Event()
        self.was_lent = asyncio.Event()
        self.reclaim: Callable[[], None] | None = None
        self.wrote = 0  # chunks it wrote itself
        self.gaps = 0
        self.residues = 0

    def write(self, item: TokenChunk) -> None:
        # tokens that come while an offer is out were in flight: the runner refuses that offer
        if item.text:
            self.transport.write(chunk(item.text))
        self.wrote += 1

    def ready_fd(self, reclaim: Callable[[], None]) -> int | None:
        if self.transport.get_write_buffer_size():
            return None
        self.lent, self.reclaim = True, reclaim
        self.back.clear()
        self.was_lent.set()
        return self.fd

    def relayed(self, gaps: Sequence[float]) -> None:
        assert self.lent
        self.gaps += len(gaps)

    def ended(self, residue: bytes) -> None:
        self.lent = False
        self.back.set()
        if residue:
            self.residues += 1
            self.transport.write(residue)


async def connection(buffer: int | None = None) -> tuple[Consumer, socket.socket]:
    ours, client = socket.socketpair()
    if buffer is not None:
        for s in (ours, client):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, sock=ours)
    client.setblocking(False)
    return Consumer(transport, ours), client


async def read_along() -> tuple[Consumer, socket.socket, asyncio.Future[bytes]]:
    """A connection whose client reads everything as it comes."""
    consumer, client = await connection()
    return consumer, client, asyncio.ensure_future(read_all(client))


async def started(make_spec: SpecMaker, sim_env: dict[str, str], runners: list[RunnerProcess],
                  **header: object) -> RunnerProcess:
    """A runner on a sim model with ``header`` (its pace, its fault), killed after the test."""
    spec = make_spec(**header)
    runner = await RunnerProcess.start(spec, spec.load, env=sim_env)
    runners.append(runner)
    return runner


async def read_all(client: socket.socket) -> bytes:
    """Everything the client receives until the connection closes."""
    loop = asyncio.get_running_loop()
    data = b""
    while chunk_ := await loop.sock_recv(client, 1 << 16):
        data += chunk_
    return data


async def generate(runner: RunnerProcess, prompt: str, consumer: Consumer,
                   push: bool = True) -> RunnerDone:
    def take(item: TokenChunk) -> bool:
        consumer.write(item)
        return True

    gen = RunnerGeneration(params=GenerateParams(prompt=prompt))
    done = None
    async for item in runner.generate(gen, take if push else None, consumer):
        if isinstance(item, TokenChunk):
            consumer.write(item)
        else:
            done = item
    assert done is not None
    assert not consumer.lent, "the generation ended with the socket still lent"
    return done


async def test_the_runner_writes_the_tokens_and_the_client_reads_the_reply_whole(
        make_spec: SpecMaker, sim_env: dict[str, str], runners: list[RunnerProcess]) -> None:
    runner = await started(make_spec, sim_env, runners, token_us=5000)
    for prompt, n in (("[[n=40]] the quick brown fox", 40), ("[[n=12]] and again", 12)):
        consumer, client, reading = await read_along()
        done = await generate(runner, prompt, consumer)
        consumer.transport.close()
        got = await reading
        assert "".join(texts_of(got)) == "".join(simkit.expected_reply(prompt, n))
        assert (done.finish, done.completion_tokens) == ("stop", n)
        # the first token went the usual way; the runner wrote the rest and reported every one
        assert consumer.wrote < 3 and consumer.gaps == n - consumer.wrote
        client.close()


async def test_a_client_that_stops_reading_gets_the_rest_through_the_gateway_in_order(
        make_spec: SpecMaker, sim_env: dict[str, str], runners: list[RunnerProcess]) -> None:
    runner = await started(make_spec, sim_env, runners, token_us=2000)
    consumer, client = await connection(buffer=4096)
    prompt = "[[n=600]] long words for a full socket"
    done = await generate(runner, prompt, consumer)  # the client reads only afterwards
    assert consumer.residues == 1 and consumer.wrote > 10  # the socket filled: the gateway took over
    reading = asyncio.ensure_future(read_all(client))
    consumer.transport.close()  # after what it still buffers has gone out
    assert "".join(texts_of(await reading)) == "".join(simkit.expected_reply(prompt, 600))
    assert done.completion_tokens == 600
    client.close()


async def test_a_crash_while_the_socket_is_lent_gives_it_back_with_the_crash(
        make_spec: SpecMaker, sim_env: dict[str, str], runners: list[RunnerProcess]) -> None:
    runner = await started(make_spec, sim_env, runners, token_us=5000, fault="segv_at_token:8")
    consumer, client, reading = await read_along()
    prompt = "[[n=20]] a b c"
    with pytest.raises(RunnerCrashed, match="SIGSEGV"):
        await generate(runner, prompt, consumer)
    assert not consumer.lent and consumer.wrote < 3  # the runner wrote the tokens after the first
    consumer.transport.close()
    # every chunk before the crash arrived whole
    assert "".join(texts_of(await reading)) == "".join(simkit.expected_reply(prompt, 20)[:8])
    client.close()


async def test_a_hung_runtime_gives_the_socket_back_when_the_gateway_reclaims_it(
        make_spec: SpecMaker, sim_env: dict[str, str], runners: list[RunnerProcess]) -> None:
    # at shutdown the gateway must write its error event even if the runtime hangs inside the run
    runner = await started(make_spec, sim_env, runners, token_us=5000, fault="hang_at_token:6")
    consumer, client, reading = await read_along()
    prompt = "[[n=20]] one two three"
    generating = asyncio.ensure_future(generate(runner, prompt, consumer))
    await asyncio.wait_for(consumer.was_lent.wait(), 5)
    await asyncio.sleep(0.3)  # past the hang
    assert consumer.lent and not generating.done() and consumer.reclaim is not None
    consumer.reclaim()
    await asyncio.wait_for(consumer.back.wait(), 5)
    consumer.transport.write(b"0\r\n\r\n")  # the gateway's own end of the response, now safe
    consumer.transport.close()
    got = await reading
    assert got.endswith(b"0\r\n\r\n")
    assert "".join(texts_of(got[:-5])) == "".join(simkit.expected_reply(prompt, 20)[:6])
    runner.kill()
    with pytest.raises(RunnerCrashed):
        await generating
    client.close()
