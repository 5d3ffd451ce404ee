"""Per-run settings a runtime lacks are left out and named, never refused (issue 11), on every rkllm
generation and on llama.cpp. The fitted params must pass the generation's own marshaller, which still
refuses anything it cannot express."""

from __future__ import annotations

import pytest

from rkio.runtime.base import GenerateParams, LoadParams, Sampling
from rkio.runtime.fit import fit_to_runtime
from rkio.runtime.llamacpp import FEATURES as LLAMA
from rkio.runtime.rkllm.cparams import Marshaller
from rkio.runtime.rkllm.features import features_of
from rkio.runtime.rkllm.layouts import Generation, build_layout

EVERYTHING = GenerateParams(prompt="hi", sampling=Sampling(temperature=0.1, seed=5), max_new_tokens=7,
                            enable_thinking=True, role="tool", keep_history=True)

# generation -> (not applied for a raw prompt, the runner enforces max_new_tokens)
RKLLM = {
    Generation.V1_1: (("sampling", "seed", "enable_thinking", "role", "keep_history"), True),
    Generation.V1_2_0: (("sampling", "seed", "enable_thinking", "role"), True),
    Generation.V1_2_1B1: (("sampling", "seed", "enable_thinking", "role"), True),
    Generation.V1_2_1: (("sampling", "seed"), True),
    Generation.V1_3_0: (("seed",), False),
}


def _values(features: object) -> frozenset[str]:
    return frozenset(f.value for f in features)  # type: ignore[attr-defined]


@pytest.mark.parametrize("generation", list(RKLLM), ids=lambda g: g.label)
def test_every_rkllm_generation_runs_what_it_can_and_names_the_rest(generation: Generation) -> None:
    features = features_of(generation, "1.2.3" if generation is Generation.V1_2_1 else None)
    fitted = fit_to_runtime(EVERYTHING, _values(features), rendered=False)
    assert (fitted.not_applied, fitted.runner_limit) == RKLLM[generation]
    marshaller = Marshaller(build_layout(generation), features, f"rkllm-{generation.label}")
    run = marshaller.run(fitted.params, LoadParams(model_path="/m.rkllm"))  # would raise Unsupported
    assert fitted.params.prompt == "hi"
    if generation is Generation.V1_3_0:
        assert run.infer.sampling_params.contents.temperature == pytest.approx(0.1)
        assert run.max_new_tokens == 7


def test_llama_cpp_takes_everything_but_role_and_history() -> None:
    fitted = fit_to_runtime(EVERYTHING, _values(LLAMA), rendered=False)
    assert fitted.not_applied == ("role", "keep_history") and not fitted.runner_limit
    assert fitted.params.sampling == EVERYTHING.sampling and fitted.params.max_new_tokens == 7


def test_thinking_of_a_rendered_chat_is_in_the_template_not_left_out() -> None:
    fitted = fit_to_runtime(GenerateParams(prompt="x", enable_thinking=True), frozenset(), rendered=True)
    assert fitted.not_applied == () and fitted.params.enable_thinking is False


def test_nothing_asked_nothing_left_out_and_params_untouched() -> None:
    params = GenerateParams(prompt="x")
    fitted = fit_to_runtime(params, frozenset(), rendered=False)
    assert fitted.params is params and fitted.not_applied == () and not fitted.runner_limit
