"""The plan the API reports before a request runs: whose sampling applies, what is left out."""

from __future__ import annotations

from dataclasses import replace

import pytest
from engine_fakes import spec

from rkio.engine.run_plan import plan_run, runtime_features
from rkio.runtime.base import Feature, GenerateParams, Sampling

NO_PER_RUN = frozenset({Feature.ENABLE_THINKING.value})
PER_RUN = frozenset({Feature.PER_RUN_SAMPLING.value, Feature.ENABLE_THINKING.value})
HOT = GenerateParams(prompt="p", sampling=Sampling(temperature=1.5))


def test_sampling_sources() -> None:
    m = spec("m")
    assert plan_run(m, GenerateParams(prompt="p"), rendered=True, features=NO_PER_RUN).sampling == "loaded"
    assert plan_run(m, HOT, rendered=True, features=PER_RUN).sampling == "request"
    loaded = plan_run(m, HOT, rendered=True, features=NO_PER_RUN)
    assert (loaded.sampling, loaded.not_applied, loaded.reinit) == ("loaded", ("sampling",), False)


def test_reinit_policy_applies_the_request_sampling_by_re_init_only_where_needed() -> None:
    r = spec("r", sampling_policy="reinit")
    plan = plan_run(r, HOT, rendered=True, features=NO_PER_RUN)
    assert (plan.sampling, plan.not_applied, plan.reinit) == ("reinit", (), True)
    assert plan_run(r, HOT, rendered=True, features=PER_RUN).sampling == "request"  # per run: no re-init
    assert not plan_run(r, GenerateParams(prompt="p"), rendered=True, features=NO_PER_RUN).reinit


def test_unknown_features_assume_nothing_optional() -> None:
    plan = plan_run(spec("m"), replace(HOT, enable_thinking=True), rendered=False, features=None)
    assert plan.not_applied == ("sampling", "enable_thinking")


def test_llama_cpp_features_are_known_without_loading_anything() -> None:
    name, features = runtime_features(spec("g", runtime="llamacpp"))
    assert name == "llamacpp" and features is not None
    assert Feature.PER_RUN_SAMPLING.value in features and Feature.SAMPLING_SEED.value in features


def test_rkllm_without_a_library_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RKIO_RKLLM_LIB", "/nonexistent/librkllmrt.so")  # the load will fail and say why
    assert runtime_features(spec("m")) == (None, None)
