"""The runner's outgoing side: tokens leave at once when the pipe has room, batched when it has not.

The runtime's callback appends each token to a buffer and, when nobody else is writing, writes everything
buffered right away with a non-blocking write. Only when the pipe is full (the gateway is slower than
the runtime) does a blocking write happen, on the writer thread, which then keeps writing whatever piled
up meanwhile in one frame per write. So the runtime never waits for the gateway, a fast gateway sees each
token immediately, and a slow one gets ever larger frames. Nothing polls or sleeps.

The output is a pipe rather than a socket on purpose: a pipe packs small writes into its pages (a 1 MiB
pipe holds ~50k one-token frames), while a Unix socket spends a ~1 KiB buffer per write and fills after a
few hundred, which would hand the stream to the writer thread and cost a GIL hand-off per batch.

A token is not written on its own while the gateway has not read the previous frame yet (FIONREAD on
the pipe, asked within ``UNREAD_CHECK_S`` of that write), nor within ``COALESCE_S`` of the previous
write: it rides along with the next write, so a fast stream costs one frame and one gateway wake-up per
batch instead of per token. So that such tokens never wait for a next token that may be long in coming
(a slow NPU, a runtime that hangs), the writer thread flushes them after ``COALESCE_S`` if nobody did
before. A token is thus delayed by at most half a millisecond, and only when tokens come faster than
2000 per second: never at NPU speeds, where each token leaves at once.

Whoever holds ``_busy`` owns the pipe: the callback (non-blocking writes), the writer thread (blocking
write of a backlog) or ``send`` (a control frame after every token pushed before it).

While the gateway has lent the client's socket (``relay``; ``rkio.engine.chunk_push``), the callback
writes each token there instead (``DirectSocket``), under the lock, and the pipe carries only a report
every few seconds and, when the relay ends, a RelayEnd before any later frame.
"""

from __future__ import annotations

import array
import fcntl
import os
import select
import termios
import threading
import time

from rkio.engine.runner.direct_socket import DirectSocket
from rkio.engine.runner.frames import FromRunner, Relay, Relayed, RelayEnd, Tokens, encode

COALESCE_S = 0.0005  # seconds a token may wait for company before it is written alone
# Whether the gateway has read the last frame is asked only this soon after writing it: a frame unread for
# longer means a stuck gateway, not a busy one, and at an NPU's pace it saves a system call per token.
UNREAD_CHECK_S = 0.005


class TokenWriter:
    """Owns the runner's output pipe (a file descriptor; made non-blocking). Thread-safe."""

    def __init__(self, fd: int, coalesce_s: float = COALESCE_S) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._coalesce_s = coalesce_s
        # ``_lock`` guards every field below; ``_cond`` (on the same lock) is for waiting. Sections that do
        # not wait take the lock itself: a Condition's ``with`` costs two Python calls, paid per token.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._texts: list[str] = []
        self._ids: list[int] = []
        self._busy = False
        self._waiters = 0  # threads waiting for _busy to clear
        self._backlog = b""  # bytes the writer thread must send before anything else
        self._closed = False
        self._deferred = False  # tokens were held back: the writer thread flushes them after COALESCE_S
        self._last_write = 0.0
        self._unread_bytes = array.array("i", [0])
        self._generation = False  # between first_token_next and the frame that ends the generation
        self._frames_sent = 0  # Tokens frames of this generation handed to the pipe
        self._relay: DirectSocket | None = None
        self.broken = False  # the gateway went away
        self._thread = threading.Thread(target=self._run, name="rkio-runner-writer", daemon=True)
        self._thread.start()

    def first_token_next(self) -> None:
        """A new generation starts: its first token leaves at once, however recent the last write."""
        with self._lock:
            self._last_write = 0.0
            self._deferred = False  # the previous generation's Done frame carried everything held back
            self._generation, self._frames_sent = True, 0

    def push(self, text: str, token_id: int) -> None:
        """Called from the runtime's callback for each token; never blocks on the pipe."""
        with self._lock:
            relay = self._relay
            if relay is None:
                self._texts.append(text)
                self._ids.append(token_id)
                if self._busy or self._deferred:  # the writer thread's timer will take this one along
                    return
                self._busy = True
            else:
                frame = self._relayed(relay, text, 1)
        if relay is None:
            self._drain_nonblocking()
        elif frame is not None:
            self._send_frame(frame)

    def push_many(self, text: str, ids: list[int]) -> None:
        with self._lock:
            relay = self._relay
            if relay is None:
                self._texts.append(text)
                self._ids.extend(ids)
                if self._busy or self._deferred:
                    return
                self._busy = True
            else:
                frame = self._relayed(relay, text, len(ids))
        if relay is None:
            self._drain_nonblocking()
        elif frame is not None:
            self._send_frame(frame)

    def send(self, message: FromRunner) -> None:
        """Send a control frame after every token pushed before it (blocking); it ends the generation,
        and with it a relay (whose RelayEnd goes first)."""
        with self._lock:
            self._generation = False
            relay, self._relay = self._relay, None
        if relay is not None:
            self._send_frame(relay.end("over"))
        self._send_frame(message)

    def relay(self, command: Relay, fd: int | None) -> None:
        """Write the generation's tokens to the client's socket ``fd`` from now on, if no token is in
        flight to the gateway (``command.after``); else refuse. Either way the gateway hears a RelayEnd
        (at once when refused). Called from the runner's reader thread."""
        with self._lock:
            ok = (fd is not None and self._generation and self._relay is None and not self._busy
                  and not self._texts and not self._deferred and not self.broken
                  and command.after == self._frames_sent)
            if ok:
                assert fd is not None
                self._relay = DirectSocket(fd, command.format, self._last_write or time.monotonic(),
                                           command.offer, command.report_s)
        if not ok:
            if fd is not None:
                os.close(fd)
            self._send_frame(RelayEnd([], b"", "refused", command.offer))

    def reclaim(self) -> None:
        """The gateway wants the socket back: no write to it after this (from the reader thread)."""
        with self._lock:
            relay, self._relay = self._relay, None
        if relay is not None:
            self._send_frame(relay.end("reclaimed"))

    def _relayed(self, relay: DirectSocket, text: str, n_tokens: int) -> FromRunner | None:
        """Write a token to the relay (the lock held); returns the frame the gateway must hear now, if
        any: a report, or the relay's end."""
        now = time.monotonic()
        why = relay.write(text, n_tokens, now)
        if why is None:
            gaps = relay.report(now)
            return None if gaps is None else Relayed(gaps)
        self._relay = None
        return relay.end(why)

    def _send_frame(self, message: FromRunner) -> None:
        data = self._acquire() + encode(message)
        self._sendall(data)
        self._finish_blocking()

    def close(self) -> None:
        """Wait for the backlog to go out, then stop the writer thread."""
        self._acquire_only()
        with self._cond:
            self._closed = True
            self._busy = False
            self._cond.notify_all()
        self._thread.join()

    # ------------------------------------------------------------------------------------------ ownership

    def _acquire_only(self) -> None:
        with self._cond:
            self._waiters += 1
            while self._busy:
                self._cond.wait()
            self._waiters -= 1
            self._busy = True

    def _acquire(self) -> bytes:
        """Own the pipe; returns the frame of the tokens buffered so far."""
        self._acquire_only()
        return self._take()

    def _take(self) -> bytes:
        with self._lock:
            if not self._texts:
                return b""
            texts, ids = self._texts, self._ids
            self._texts, self._ids = [], []
            self._frames_sent += 1
        return encode(Tokens("".join(texts), ids))

    def _release(self) -> bool:
        """Give up the pipe unless tokens arrived meanwhile (then the caller keeps it and sends them)."""
        with self._lock:
            if self._texts and not self.broken:
                return False
            self._busy = False
            if self._waiters:
                self._cond.notify_all()
            return True

    def _unread(self) -> bool:
        """True while the gateway has not yet read the last frame (FIONREAD works on a pipe's write end)."""
        try:
            fcntl.ioctl(self._fd, termios.FIONREAD, self._unread_bytes)
        except OSError:
            return False
        return self._unread_bytes[0] > 0

    def _drain_nonblocking(self) -> None:
        while True:
            now = time.monotonic()
            since = now - self._last_write
            if since < self._coalesce_s or (since < UNREAD_CHECK_S and self._unread()):
                # the gateway is behind: these tokens join the next write instead of making a frame of
                # their own (the next token or the closing Done frame carries them)
                with self._lock:
                    self._busy = False
                    if not self._deferred:  # the writer thread is not counting down yet: start it
                        self._deferred = True
                        self._cond.notify_all()
                    elif self._waiters:
                        self._cond.notify_all()
                return
            data = self._take()
            self._last_write = now
            try:
                sent = os.write(self._fd, data) if data and not self.broken else len(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.broken, sent = True, len(data)
            if sent < len(data):
                with self._lock:  # the writer thread takes over ownership and the rest
                    self._backlog = data[sent:]
                    self._cond.notify_all()
                return
            if self._release():
                return

    def _finish_blocking(self) -> None:
        while not self._release():
            self._sendall(self._take())

    def _sendall(self, data: bytes) -> None:
        view = memoryview(data)
        poller: select.poll | None = None
        while view and not self.broken:
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                if poller is None:
                    poller = select.poll()
                    poller.register(self._fd, select.POLLOUT)
                poller.poll()  # blocks until the gateway has read some
            except OSError:
                # the gateway is gone; the reader sees EOF too and shuts the runner down
                self.broken = True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._backlog and not self._deferred and not self._closed:
                    self._cond.wait()
                if self._backlog:  # handed over by _drain_nonblocking, which kept _busy for us
                    data, self._backlog = self._backlog, b""
                elif self._deferred and not self._closed:
                    self._cond.wait(self._coalesce_s)  # a next token may still take them along
                    self._deferred = False
                    if not self._texts or self._busy or self.broken:
                        continue
                    self._busy = True
                    data = b""
                else:
                    return
            self._sendall(data or self._take())
            self._finish_blocking()
