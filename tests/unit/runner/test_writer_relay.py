"""TokenWriter with a lent client socket (rkio.engine.chunk_push): tokens go to the socket as HTTP chunks,
only when no token is in flight to the gateway, and the gateway always hears when the socket is back."""

from __future__ import annotations

import json
import os
import socket

import pytest

from rkio.engine.chunk_push import RelayFormat
from rkio.engine.runner.frames import (
    Done,
    FrameSplitter,
    Relay,
    Relayed,
    RelayEnd,
    Tokens,
    decode_from_runner,
)
from rkio.engine.runner.writer import TokenWriter

pytestmark = pytest.mark.timeout(20)

FORMAT = RelayFormat(b'data: {"t":', b"}\n\n")


def frames_from(fd: int) -> list[object]:
    os.set_blocking(fd, False)
    splitter = FrameSplitter()
    out: list[object] = []
    while True:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return out
        out.extend(decode_from_runner(body) for body in splitter.feed(data))


def chunks_of(data: bytes) -> list[str]:
    """The texts of the HTTP chunks in ``data`` (each ``data: {"t": <json>}``)."""
    texts = []
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line, 16)
        body, data = rest[:size], rest[size + 2:]
        assert rest[size:size + 2] == b"\r\n"
        assert body.startswith(b"data: ") and body.endswith(b"\n\n")
        texts.append(json.loads(body[len(b"data: "):-2])["t"])
    return texts


def push_until_relay_end(writer: TokenWriter, pipe: int, text: str, first: int) -> tuple[RelayEnd, int]:
    """Push ``text`` as tokens ``first``, ``first + 1``, ... until the gateway hears a RelayEnd; returns it
    and the id of the next token."""
    n = first
    seen: list[object] = []
    while not any(isinstance(f, RelayEnd) for f in seen):
        writer.push(text, n)
        n += 1
        seen += frames_from(pipe)
        assert n < first + 10_000, "the relay never ended"
    end = next(f for f in seen if isinstance(f, RelayEnd))
    assert isinstance(end, RelayEnd)
    return end, n


def lent_pair() -> tuple[socket.socket, int]:
    """(the client's end, a descriptor of the server's end as the runner gets it)."""
    server, client = socket.socketpair()
    server.setblocking(False)
    fd = os.dup(server.fileno())
    server.close()  # the runner's copy keeps the connection, as the gateway's would
    return client, fd


def test_a_lent_socket_gets_each_token_as_a_chunk_and_the_gateway_hears_the_end_first() -> None:
    theirs, ours = os.pipe()
    writer = TokenWriter(ours)
    client, fd = lent_pair()
    writer.first_token_next()
    writer.push("Hello", 1)  # the first token goes the usual way, Tokens frame 1
    assert frames_from(theirs) == [Tokens("Hello", [1])]
    writer.relay(Relay(FORMAT, 1, 1, 1.0), fd)
    for i, word in enumerate([' "quoted"', " wörld", "", "\n"]):
        writer.push(word, 2 + i)
    done = Done("stop", 3, 5, None, None)
    writer.send(done)
    assert chunks_of(client.recv(1 << 16)) == [' "quoted"', " wörld", "\n"]  # no empty chunk: it ends HTTP
    frames = frames_from(theirs)
    assert [type(f) for f in frames] == [RelayEnd, Done]
    end = frames[0]
    assert isinstance(end, RelayEnd)
    assert (end.why, end.residue, len(end.gaps)) == ("over", b"", 4)
    client.close()
    writer.close()


def test_a_relay_is_refused_while_a_token_is_in_flight_or_outside_a_generation() -> None:
    theirs, ours = os.pipe()
    writer = TokenWriter(ours)
    client, fd = lent_pair()
    writer.relay(Relay(FORMAT, 0, 1, 1.0), fd)  # no generation running
    writer.first_token_next()
    writer.push("a", 1)
    writer.push("b", 2)
    client2, fd2 = lent_pair()
    writer.relay(Relay(FORMAT, 1, 2, 1.0), fd2)  # the gateway wrote one frame; the runner sent two
    writer.push("c", 3)
    writer.send(Done("stop", 1, 3, None, None))  # whatever the writer still held goes out before it
    frames = frames_from(theirs)
    ends = [f for f in frames if isinstance(f, RelayEnd)]
    assert [e.why for e in ends] == ["refused", "refused"]
    assert "".join(f.text for f in frames if isinstance(f, Tokens)) == "abc"
    # nothing was written to either socket, and the runner gave up its copies (the only ones): EOF
    assert client.recv(16) == b"" and client2.recv(16) == b""
    writer.close()
    client.close()
    client2.close()


def test_a_full_socket_ends_the_relay_with_the_rest_of_the_chunk_and_tokens_go_back_to_the_pipe() -> None:
    theirs, ours = os.pipe()
    writer = TokenWriter(ours)
    server, client = socket.socketpair()
    for s in (server, client):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server.setblocking(False)
    writer.first_token_next()
    writer.relay(Relay(FORMAT, 0, 1, 1.0), os.dup(server.fileno()))
    word = "x" * 1000
    end, n = push_until_relay_end(writer, theirs, word, 0)  # the client reads nothing
    assert end.why == "full" and end.residue
    writer.push("after", n)
    assert frames_from(theirs) == [Tokens("after", [n])]
    # what the client gets, then the residue, is every relayed token whole
    client.setblocking(False)
    got = b""
    with pytest.raises(BlockingIOError):
        while True:
            got += client.recv(1 << 16)
    assert chunks_of(got + end.residue) == [word] * n
    writer.close()
    server.close()
    client.close()


def test_reports_come_about_once_a_second_with_every_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("rkio.engine.runner.writer.time.monotonic", lambda: clock[0])
    theirs, ours = os.pipe()
    writer = TokenWriter(ours, coalesce_s=0.0)
    client, fd = lent_pair()
    writer.first_token_next()
    writer.push("a", 0)
    frames_from(theirs)
    writer.relay(Relay(FORMAT, 1, 1, 1.0), fd)
    for i in range(1, 40):  # 40 ms per token: a report at 1 s
        clock[0] += 0.04
        writer.push("t", i)
    reports = [f for f in frames_from(theirs) if isinstance(f, Relayed)]
    assert len(reports) == 1 and len(reports[0].gaps) == 25
    assert all(g == pytest.approx(0.04) for g in reports[0].gaps)
    writer.send(Done("stop", 1, 40, None, None))
    end = next(f for f in frames_from(theirs) if isinstance(f, RelayEnd))
    assert isinstance(end, RelayEnd) and len(end.gaps) == 39 - 25
    writer.close()
    client.close()


def test_a_client_gone_mid_relay_ends_it_and_the_tokens_go_back_to_the_pipe() -> None:
    theirs, ours = os.pipe()
    writer = TokenWriter(ours)
    client, fd = lent_pair()
    writer.first_token_next()
    writer.relay(Relay(FORMAT, 0, 1, 1.0), fd)
    writer.push("seen", 0)
    assert chunks_of(client.recv(1 << 16)) == ["seen"]
    client.close()  # the client hangs up while the runner holds the socket
    # the first send after the hang-up may still go into the void
    end, n = push_until_relay_end(writer, theirs, "lost", 1)
    assert end.why == "broken" and n < 100
    writer.push("after", n)  # the runner carries on through the gateway, which aborts it
    assert frames_from(theirs) == [Tokens("after", [n])]
    writer.close()
