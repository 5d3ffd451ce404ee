"""The runner's outgoing side: tokens leave at once when the socket has room, batched when it has not.

The runtime's callback appends each token to a buffer and, when nobody else is writing, sends everything
buffered right away with a non-blocking send. Only when the socket is full (the gateway is slower than
the runtime) does a blocking send happen, on the writer thread, which then keeps sending whatever piled
up meanwhile in one frame per send. So the runtime never waits for the gateway, a fast gateway sees each
token immediately, and a slow one gets ever larger frames. Nothing polls or sleeps.

Whoever holds ``_busy`` owns the socket: the callback (non-blocking sends), the writer thread (blocking
send of a backlog) or ``send`` (a control frame after every token pushed before it).
"""

from __future__ import annotations

import socket
import threading

from rkio.engine.runner.frames import FromRunner, Tokens, encode


class TokenWriter:
    """Owns the runner's socket for writing. Thread-safe."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._cond = threading.Condition(threading.Lock())  # guards every field below
        self._texts: list[str] = []
        self._ids: list[int] = []
        self._busy = False
        self._waiters = 0  # threads waiting for _busy to clear
        self._backlog = b""  # bytes the writer thread must send before anything else
        self._closed = False
        self.broken = False  # the gateway went away
        self._thread = threading.Thread(target=self._run, name="rkio-runner-writer", daemon=True)
        self._thread.start()

    def push(self, text: str, token_id: int) -> None:
        """Called from the runtime's callback for each token; never blocks on the socket."""
        with self._cond:
            self._texts.append(text)
            self._ids.append(token_id)
            if self._busy:
                return
            self._busy = True
        self._drain_nonblocking()

    def push_many(self, text: str, ids: list[int]) -> None:
        with self._cond:
            self._texts.append(text)
            self._ids.extend(ids)
            if self._busy:
                return
            self._busy = True
        self._drain_nonblocking()

    def send(self, message: FromRunner) -> None:
        """Send a control frame after every token pushed before it (blocking)."""
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
        """Own the socket; returns the frame of the tokens buffered so far."""
        self._acquire_only()
        return self._take()

    def _take(self) -> bytes:
        with self._cond:
            if not self._texts:
                return b""
            texts, ids = self._texts, self._ids
            self._texts, self._ids = [], []
        return encode(Tokens("".join(texts), ids))

    def _release(self) -> bool:
        """Give up the socket unless tokens arrived meanwhile (then the caller keeps it and sends them)."""
        with self._cond:
            if self._texts and not self.broken:
                return False
            self._busy = False
            if self._waiters:
                self._cond.notify_all()
            return True

    def _drain_nonblocking(self) -> None:
        while True:
            data = self._take()
            try:
                sent = self._sock.send(data, socket.MSG_DONTWAIT) if data and not self.broken else len(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.broken, sent = True, len(data)
            if sent < len(data):
                with self._cond:  # the writer thread takes over ownership and the rest
                    self._backlog = data[sent:]
                    self._cond.notify_all()
                return
            if self._release():
                return

    def _finish_blocking(self) -> None:
        while not self._release():
            self._sendall(self._take())

    def _sendall(self, data: bytes) -> None:
        if not data or self.broken:
            return
        try:
            self._sock.sendall(data)
        except OSError:
            # the reader sees the same EOF and shuts the runner down
            self.broken = True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._backlog and not self._closed:
                    self._cond.wait()
                if not self._backlog:
                    return
                data, self._backlog = self._backlog, b""
            self._sendall(data)
            self._finish_blocking()
