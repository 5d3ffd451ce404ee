"""Driving an in-process RunnerService (the ``served`` fixture) with Generate frames."""

from __future__ import annotations

from rkio.engine.runner.frames import Abort, Done, Generate, Tokens
from rkio.engine.runner.messages import RunnerGeneration
from rkio.engine.types import ChatMessage
from rkio.runtime.base import GenerateParams, Sampling
from unit.runner.runner_fakes import Peer


def run(peer: Peer, prompt: str | None = None, *, messages: tuple[ChatMessage, ...] | None = None,
        max_tokens: int | None = None, sampling: Sampling | None = None,
        stop: tuple[str, ...] = (), abort: bool = False) -> tuple[str, Done]:
    params = GenerateParams(prompt=prompt, max_new_tokens=max_tokens, sampling=sampling)
    peer.send(Generate(RunnerGeneration(params=params, messages=messages, stop=stop)))
    frames = [peer.recv()]
    if abort:
        assert isinstance(frames[0], Tokens)
        peer.send(Abort())
    while not isinstance(frames[-1], Done):
        frames.append(peer.recv())
    done = frames[-1]
    assert isinstance(done, Done)
    return "".join(f.text for f in frames if isinstance(f, Tokens)), done
