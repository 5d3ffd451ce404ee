"""Starting a runner process: its command socket, its frame pipe, its relay socket, its own session."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
from collections.abc import Mapping, Sequence

PIPE_BYTES = 1 << 20  # the default /proc/sys/fs/pipe-max-size: room for ~50k one-token frames


async def spawn_runner(argv: Sequence[str], env: Mapping[str, str] | None
                       ) -> tuple[asyncio.subprocess.Process, socket.socket, int, socket.socket]:
    """Start ``argv`` as a runner; returns (process, our end of the command socket, read end of the frames,
    our end of the relay socket, on which client sockets are lent: ``rkio.engine.chunk_push``).

    The runner gets its own session, so its whole process group can be killed; its stdout and stderr
    come back merged on ``process.stdout``. EOF on the command socket tells the runner the gateway is gone.
    """
    parent, child = socket.socketpair()
    relay, relay_child = socket.socketpair()
    relay.setblocking(False)
    frames_in, frames_out = os.pipe()  # a pipe, not a socket: see writer.py
    with contextlib.suppress(OSError):
        fcntl.fcntl(frames_out, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, "--fd", str(child.fileno()), "--out-fd", str(frames_out),
            "--relay-fd", str(relay_child.fileno()),
            pass_fds=(child.fileno(), frames_out, relay_child.fileno()), start_new_session=True,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env={**os.environ, **(env or {})},
        )
    except BaseException:
        parent.close()
        relay.close()
        os.close(frames_in)
        raise
    finally:
        child.close()
        relay_child.close()
        os.close(frames_out)
    return proc, parent, frames_in, relay
