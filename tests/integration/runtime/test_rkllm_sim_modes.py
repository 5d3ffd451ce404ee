"""The GET_LAST_HIDDEN_LAYER and GET_LOGITS infer modes through the binding, on every simulator flavour."""

from __future__ import annotations

import array
import sys

import pytest
from rkllm_sim_helpers import Sim, collect

import simkit
from rkio.errors import Unsupported
from rkio.runtime.base import Feature, GenerateParams, Token
from rkio.runtime.rkllm import RkllmRuntime


def _floats(data: bytes) -> list[float]:
    values = array.array("f", data)
    if sys.byteorder != "little":
        values.byteswap()
    return list(values)


def test_hidden_mode_returns_the_last_layer_with_its_shape_and_no_text(loaded: RkllmRuntime,
                                                                       sim: Sim) -> None:
    tokens: list[Token] = []
    result = loaded.generate(GenerateParams(prompt="alpha beta gamma", mode="hidden"), collect(tokens))
    assert tokens == [] and result.finish == "stop"
    assert result.outputs is not None and result.outputs.kind == "hidden"
    prompt_tokens = sim.last_run(loaded)["prompt_tokens"]
    assert result.outputs.shape == (prompt_tokens, 64)  # the simulator's default embd_size
    values = _floats(result.outputs.data)
    assert len(values) == prompt_tokens * 64
    # one row per prompt token (the runtime's template included), a function of the token alone
    # (sim/api_run.c hidden_value)
    words = simkit.parse_prompt(simkit.apply_default_template("alpha beta gamma")).words
    expected = [v for row in range(prompt_tokens) for v in simkit.hidden_row(words[row % len(words)])]
    assert values == pytest.approx(expected, abs=1e-6)
    assert values[-64:] != values[-128:-64]
    assert sim.last_run(loaded)["input"]["mode"] == 1


def test_logits_peak_at_the_token_a_generation_would_start_with(loaded: RkllmRuntime, sim: Sim) -> None:
    params = GenerateParams(prompt="delta epsilon", mode="logits")
    if Feature.LOGITS not in loaded.features:
        with pytest.raises(Unsupported, match=r"logits output is not supported by runtime rkllm-1\.1"):
            loaded.generate(params, collect([]))
        return
    result = loaded.generate(params, collect([]))
    assert result.outputs is not None and result.outputs.shape == (1, 32000)
    values = _floats(result.outputs.data)
    peak = max(range(len(values)), key=values.__getitem__)
    first = simkit.expected_reply("delta epsilon", 1)[0]
    assert peak == simkit.token_id(first)
    tokens: list[Token] = []
    loaded.generate(GenerateParams(prompt="delta epsilon"), collect(tokens))
    assert tokens[0].token_id == peak
    assert sim.last_run(loaded)["input"]["mode"] == 0
