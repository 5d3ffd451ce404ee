"""Failures surface as typed rkio errors with the runtime's reason; what is unsupported never reaches it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

import simkit
from rkio.errors import LoadFailed, RuntimeFailure, Unsupported
from rkio.runtime.base import Feature, GenerateParams, LoadParams, LoraAdapter, Sampling
from rkio.runtime.rkllm import AbiMismatch, RkllmRuntime, RkllmSetupError
from simkit.introspect import Sim


def test_context_longer_than_the_model_allows_fails_the_load(runtime: RkllmRuntime,
                                                             model: Callable[..., Path]) -> None:
    path = str(model(max_context_limit=1024))
    with pytest.raises(LoadFailed, match=re.escape(f"rkllm_init failed for {path} (returned -1)")):
        runtime.load(LoadParams(model_path=path, max_context_len=4096))
    assert runtime.handle is None
    runtime.load(LoadParams(model_path=path, max_context_len=1024))  # the runtime object stays usable
    assert runtime.handle is not None


def test_an_init_fault_is_a_load_failure(runtime: RkllmRuntime, model: Callable[..., Path]) -> None:
    with pytest.raises(LoadFailed):
        runtime.load(LoadParams(model_path=str(model(fault="init_fail"))))


def test_loading_twice_is_refused(loaded: RkllmRuntime, model: Callable[..., Path]) -> None:
    with pytest.raises(LoadFailed, match="already loaded"):
        loaded.load(LoadParams(model_path=str(model())))


def test_prompt_beyond_the_context_is_a_runtime_failure(runtime: RkllmRuntime,
                                                        model: Callable[..., Path]) -> None:
    runtime.load(LoadParams(model_path=str(model()), max_context_len=32))
    with pytest.raises(RuntimeFailure, match=r"rkllm_run failed \(returned -1"):
        runtime.generate(GenerateParams(prompt=" ".join(["word"] * 64)), lambda t: True)
    assert runtime.generate(GenerateParams(prompt="short [[n=2]]"), lambda t: True).finish == "stop"


def test_missing_lora_file_is_a_runtime_failure(loaded: RkllmRuntime, tmp_path: Path) -> None:
    with pytest.raises(RuntimeFailure, match="rkllm_load_lora failed"):
        loaded.load_lora(LoraAdapter(path=str(tmp_path / "none.rkllm"), name="x"))


def test_calls_without_a_model_fail_cleanly(runtime: RkllmRuntime) -> None:
    with pytest.raises(RuntimeFailure, match="no model is loaded"):
        runtime.generate(GenerateParams(prompt="x"), lambda t: True)
    assert not runtime.is_running()
    runtime.abort()  # nothing to abort: a no-op
    runtime.destroy()


def test_destroy_is_idempotent_and_ends_the_handle(loaded: RkllmRuntime) -> None:
    loaded.destroy()
    loaded.destroy()
    assert loaded.handle is None
    with pytest.raises(RuntimeFailure, match="no model is loaded"):
        loaded.generate(GenerateParams(prompt="x"), lambda t: True)


def test_per_run_features_the_abi_lacks_never_reach_the_library(loaded: RkllmRuntime, sim: Sim) -> None:
    asks = {
        Feature.PER_RUN_SAMPLING: GenerateParams(prompt="x", sampling=Sampling(top_k=1)),
        Feature.PER_RUN_MAX_NEW_TOKENS: GenerateParams(prompt="x", max_new_tokens=3),
        Feature.ROLE: GenerateParams(prompt="x", role="tool"),
        Feature.ENABLE_THINKING: GenerateParams(prompt="x", enable_thinking=True),
        Feature.KEEP_HISTORY: GenerateParams(prompt="x", keep_history=True),
    }
    missing = {feature: params for feature, params in asks.items() if feature not in loaded.features}
    for feature, params in missing.items():
        expected = f"^{re.escape(feature.value)} is not supported by runtime rkllm-"
        with pytest.raises(Unsupported, match=expected):
            loaded.generate(params, lambda t: True)
    assert sim.handle(loaded)["runs"] == 0


def test_a_library_lacking_the_forced_abi_functions_is_refused(sim_env: Path) -> None:
    with pytest.raises(AbiMismatch, match="rkllm_get_kv_cache_size"):
        RkllmRuntime(str(simkit.sim_library("1.1.4")), abi="1.2.1")


def test_environment_selects_library_and_abi(library: Path, monkeypatch: pytest.MonkeyPatch,
                                             flavour: str) -> None:
    monkeypatch.setenv("RKIO_RKLLM_LIB", str(library))
    assert RkllmRuntime().library_path == library
    monkeypatch.setenv("RKIO_RKLLM_ABI", "2.0")
    with pytest.raises(RkllmSetupError, match="RKIO_RKLLM_ABI"):
        RkllmRuntime()
    monkeypatch.setenv("RKIO_RKLLM_ABI", flavour)  # a release number names its generation
    assert RkllmRuntime().version == flavour
