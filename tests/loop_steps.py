"""Letting an event loop run its ready callbacks a given number of times, without any timing."""

from __future__ import annotations

import asyncio


async def run_ready_callbacks(times: int = 1) -> None:
    """Give every task that is ready ``times`` turns: each turn is one pass of the loop's ready queue."""
    loop = asyncio.get_running_loop()
    for _ in range(times):
        turn: asyncio.Future[None] = loop.create_future()
        loop.call_soon(turn.set_result, None)
        await turn
