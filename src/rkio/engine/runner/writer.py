"""The runner's outgoing side: tokens are batched into frames without ever blocking the runtime.

The runtime's callback only appends to a buffer (and wakes the writer thread if it sleeps). The writer
sends everything buffered in one ``Tokens`` frame per wakeup, so while the gateway is slower than the
runtime, tokens pile up and cross in ever larger frames; when it keeps up, each token goes at once.
Control frames go through ``send``, which first flushes buffered tokens so the order is kept.
"""

from __future__ import annotations

import socket
import threading

from rkio.engine.runner.frames import FromRunner, Tokens, encode


class TokenWriter:
    """Owns the runner's socket for writing. Thread-safe."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._send_lock = threading.Lock()  # frame order on the wire
        self._cond = threading.Condition(threading.Lock())  # guards the buffer
        self._texts: list[str] = []
        self._ids: list[int] = []
        self._waiting = False
        self._closed = False
        self.broken = False  # the gateway went away
        self._thread = threading.Thread(target=self._run, name="rkio-runner-writer", daemon=True)
        self._thread.start()

    def push(self, text: str, token_id: int) -> None:
        """Called from the runtime's callback: O(1), never blocks on the socket."""
        with self._cond:
            self._texts.append(text)
            self._ids.append(token_id)
            if self._waiting:
                self._waiting = False
                self._cond.notify()

    def push_many(self, text: str, ids: list[int]) -> None:
        with self._cond:
            self._texts.append(text)
            self._ids.extend(ids)
            if self._waiting:
                self._waiting = False
                self._cond.notify()

    def send(self, message: FromRunner) -> None:
        """Send a control frame after every token pushed before it."""
        with self._send_lock:
            self._sendall(self._take() + encode(message))

    def close(self) -> None:
        """Flush and stop the writer thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _take(self) -> bytes:
        with self._cond:
            if not self._texts:
                return b""
            texts, ids = self._texts, self._ids
            self._texts, self._ids = [], []
        return encode(Tokens("".join(texts), ids))

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
                while not self._texts and not self._closed:
                    self._waiting = True
                    self._cond.wait()
                if self._closed and not self._texts:
                    return
            with self._send_lock:
                self._sendall(self._take())
