"""Behaviour that is process-wide in the runtime, each case in a fresh interpreter."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest

import simkit
from rkio.runtime.base import Feature, GenerateParams, LoadParams
from rkio.runtime.rkllm import RkllmRuntime

TWO_HANDLES = r"""
import json, sys, threading
from rkio.runtime.base import GenerateParams, LoadParams
from rkio.runtime.rkllm import RkllmRuntime

library, model, threaded = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
runtimes = [RkllmRuntime(library) for _ in range(2)]
for rt in runtimes:
    rt.load(LoadParams(model_path=model, max_context_len=256, max_new_tokens=32))
prompts = ["apple banana cherry", "xray yankee zulu"]
texts = [[], []]

def run(i):
    params = GenerateParams(prompt=prompts[i] + " [[n=20]]")
    runtimes[i].generate(params, lambda t: texts[i].append(t.text) or True)

workers = [threading.Thread(target=run, args=(i,)) for i in range(2)]
for w in workers:
    w.start()
    if not threaded:
        w.join()
for w in workers:
    w.join()
for rt in runtimes:
    rt.destroy()
print(json.dumps({"texts": ["".join(t) for t in texts], "multi": [str(f) for f in runtimes[0].features]}))
"""


def run_python(script: str, *args: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("threaded", [False, True], ids=["sequential", "threaded"])
def test_two_handles_in_one_process_get_their_own_tokens_or_the_known_garbage(
    library: Path, flavour: str, model: Callable[..., Path], threaded: bool
) -> None:
    out = run_python(TWO_HANDLES, str(library), str(model()), "1" if threaded else "0")
    texts = out["texts"]
    assert isinstance(texts, list)
    if Feature.MULTI_INSTANCE.value in (out["multi"] or []):
        prompts = ("apple banana cherry", "xray yankee zulu")
        assert texts == ["".join(simkit.expected_reply(prompt, 20)) for prompt in prompts]
    else:
        # before 1.2.2 the runtime itself breaks with two live handles (rknn-llm #367); the binding says so
        assert set("".join(texts)) == {","}


def test_a_destroyed_runtime_and_its_callback_are_freed(library: Path, model: Callable[..., Path]) -> None:
    runtime = RkllmRuntime(str(library))
    runtime.load(LoadParams(model_path=str(model()), max_context_len=256))
    runtime.generate(GenerateParams(prompt="x [[n=3]]"), lambda t: True)
    # the C callback is a closure over the runtime: were it registered anywhere global, this would stay alive
    ref = weakref.ref(runtime)
    runtime.destroy()
    del runtime
    gc.collect()
    assert ref() is None
