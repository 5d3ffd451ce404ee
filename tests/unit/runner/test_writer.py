"""TokenWriter: the runtime's callback never blocks; order is kept; a slow reader gets batched frames."""

from __future__ import annotations

import fcntl
import os
import threading

import pytest

from rkio.engine.runner.frames import Done, FrameSplitter, Tokens, decode_from_runner
from rkio.engine.runner.writer import TokenWriter

pytestmark = pytest.mark.timeout(20)


def read_until_done(fd: int) -> list[object]:
    splitter = FrameSplitter()
    frames: list[object] = []
    while not frames or not isinstance(frames[-1], Done):
        data = os.read(fd, 1 << 16)
        assert data, "EOF before Done"
        frames.extend(decode_from_runner(body) for body in splitter.feed(data))
    return frames


def test_pushes_never_block_on_a_full_pipe_and_arrive_in_order_before_control_frames() -> None:
    theirs, ours = os.pipe()
    fcntl.fcntl(ours, fcntl.F_SETPIPE_SZ, 4096)
    writer = TokenWriter(ours)
    n = 20_000
    for i in range(n):  # nobody reads yet: this only finishes if push never waits for the socket
        writer.push(f" w{i}", i)
    done = Done("stop", 1, n, None, None)
    sender = threading.Thread(target=writer.send, args=(done,))
    sender.start()
    frames = read_until_done(theirs)
    sender.join()
    tokens = [f for f in frames if isinstance(f, Tokens)]
    assert "".join(t.text for t in tokens) == "".join(f" w{i}" for i in range(n))
    assert [i for t in tokens for i in t.ids] == list(range(n))
    assert frames[-1] == done
    assert len(tokens) < n // 10  # the backlog went out in big frames, not one per token
    writer.close()


def test_a_reader_that_keeps_up_gets_each_token_at_once() -> None:
    theirs, ours = os.pipe()
    writer = TokenWriter(ours)
    splitter = FrameSplitter()
    for i in range(5):
        writer.push(f"t{i}", i)
        frames = [decode_from_runner(b) for b in splitter.feed(os.read(theirs, 1 << 16))]
        assert frames == [Tokens(f"t{i}", [i])]
    writer.close()


def test_a_vanished_gateway_does_not_raise_in_the_callback() -> None:
    theirs, ours = os.pipe()
    writer = TokenWriter(ours)
    os.close(theirs)
    for i in range(100):
        writer.push("x", i)
    writer.send(Done("stop", 0, 0, None, None))
    assert writer.broken
    writer.close()


def test_tokens_ride_along_while_the_gateway_has_not_read_the_last_frame() -> None:
    theirs, ours = os.pipe()
    writer = TokenWriter(ours, coalesce_s=60.0)  # the writer thread's flush never fires during the test
    splitter = FrameSplitter()
    writer.push("a", 1)  # the first token of a stream leaves at once
    writer.push("b", 2)  # "a" is still unread: "b" waits for company
    writer.push("c", 3)
    writer.send(Done("stop", 0, 3, None, None))  # the closing frame carries what waited
    frames = [decode_from_runner(b) for b in splitter.feed(os.read(theirs, 1 << 16))]
    assert frames == [Tokens("a", [1]), Tokens("bc", [2, 3]), Done("stop", 0, 3, None, None)]
    writer.close()


def test_held_back_tokens_leave_by_themselves_when_no_token_follows() -> None:
    theirs, ours = os.pipe()
    writer = TokenWriter(ours, coalesce_s=0.001)
    splitter = FrameSplitter()
    writer.push("a", 1)
    writer.push("b", 2)  # held back ("a" unread); no token and no Done follows: the writer thread sends it
    frames: list[object] = []
    while len(frames) < 2:
        frames += [decode_from_runner(b) for b in splitter.feed(os.read(theirs, 1 << 16))]
    assert frames == [Tokens("a", [1]), Tokens("b", [2])]
    writer.close()
