"""Typed parameters -> C structures per generation; what a generation cannot express is refused."""

from __future__ import annotations

import re
import struct

import pytest

from rkio.errors import InvalidRequest, Unsupported
from rkio.runtime.base import GenerateParams, LoadParams, MultimodalInput, PromptCacheParams, Sampling
from rkio.runtime.rkllm.cparams import Marshaller
from rkio.runtime.rkllm.features import features_of
from rkio.runtime.rkllm.layouts import INPUT_MULTIMODAL, INPUT_TOKEN, Generation, build_layout

LOAD = LoadParams(model_path="/m/model.rkllm")


def marshaller(generation: Generation, version: str | None = None) -> Marshaller:
    return Marshaller(build_layout(generation), features_of(generation, version), f"rkllm-{generation.label}")


def test_load_params_fill_every_field_the_generation_has() -> None:
    m = marshaller(Generation.V1_3_0)
    load = LoadParams(model_path="/m/x.rkllm", max_context_len=1024, max_new_tokens=99, n_keep=7,
                      sampling=Sampling(top_k=3, top_p=0.5, mirostat=2), base_domain_id=2, embed_flash=False,
                      enabled_cpus_mask=0xF0, n_batch=2, use_cross_attn=True, ignore_eos_token=True)
    param = m.load_param(m.layout.param(), load)
    assert (param.model_path, param.max_context_len, param.max_new_tokens, param.n_keep) == (
        b"/m/x.rkllm", 1024, 99, 7)
    assert (param.top_k, param.top_p, param.mirostat, param.ignore_eos_token) == (3, 0.5, 2, True)
    extend = param.extend_param
    assert (extend.base_domain_id, extend.embed_flash, extend.enabled_cpus_mask, extend.enabled_cpus_num) == (
        2, 0, 0xF0, 4)
    assert (extend.n_batch, extend.use_cross_attn) == (2, 1)


def test_cpu_mask_zero_keeps_the_runtime_default() -> None:
    m = marshaller(Generation.V1_2_0)
    default = m.layout.param()
    default.extend_param.enabled_cpus_num = 4
    default.extend_param.enabled_cpus_mask = 0x0F
    param = m.load_param(default, LOAD)
    assert (param.extend_param.enabled_cpus_num, param.extend_param.enabled_cpus_mask) == (4, 0x0F)


@pytest.mark.parametrize(
    ("generation", "load", "feature"),
    [
        (Generation.V1_1, LoadParams("/m", enabled_cpus_mask=0x10), "CPU mask"),
        (Generation.V1_1, LoadParams("/m", n_keep=16), "n_keep"),
        (Generation.V1_2_0, LoadParams("/m", n_batch=2), "n_batch"),
        (Generation.V1_2_0, LoadParams("/m", use_cross_attn=True), "use_cross_attn"),
        (Generation.V1_2_1, LoadParams("/m", ignore_eos_token=True), "ignore_eos_token"),
    ],
)
def test_load_options_a_generation_lacks_are_unsupported(generation: Generation, load: LoadParams,
                                                         feature: str) -> None:
    m = marshaller(generation)
    with pytest.raises(Unsupported, match=f"{feature} is not supported by runtime rkllm-{generation.label}"):
        m.load_param(m.layout.param(), load)


def test_hints_1_1_cannot_express_are_dropped_not_refused() -> None:
    m = marshaller(Generation.V1_1)
    param = m.load_param(m.layout.param(), LoadParams("/m", embed_flash=True))
    assert param.extend_param.base_domain_id == 0


@pytest.mark.parametrize(
    ("generation", "params", "feature"),
    [
        (Generation.V1_2_1, GenerateParams(prompt="x", sampling=Sampling()), "per-request sampling"),
        (Generation.V1_2_1, GenerateParams(prompt="x", max_new_tokens=5), "per-request max_new_tokens"),
        (Generation.V1_2_0, GenerateParams(prompt="x", role="tool"), "input role"),
        (Generation.V1_2_0, GenerateParams(prompt="x", enable_thinking=True), "enable_thinking"),
        (Generation.V1_1, GenerateParams(prompt="x", keep_history=True), "keep_history"),
    ],
)
def test_per_run_options_a_generation_lacks_are_unsupported(generation: Generation, params: GenerateParams,
                                                            feature: str) -> None:
    expected = f"{feature} is not supported by runtime rkllm-{generation.label}"
    with pytest.raises(Unsupported, match=f"^{re.escape(expected)}$"):
        marshaller(generation).run(params, LOAD)


def test_exactly_one_input_kind() -> None:
    with pytest.raises(InvalidRequest):
        marshaller(Generation.V1_3_0).run(GenerateParams(prompt="a", tokens=(1,)), LOAD)
    with pytest.raises(InvalidRequest):
        marshaller(Generation.V1_3_0).run(GenerateParams(), LOAD)


def test_per_run_overrides_land_in_the_1_3_infer_params() -> None:
    run = marshaller(Generation.V1_3_0).run(
        GenerateParams(prompt="hi", role="tool", enable_thinking=True, keep_history=True, lora="ad",
                       prompt_cache=PromptCacheParams(save=True, path="/c.bin"),
                       sampling=Sampling(temperature=0.25), max_new_tokens=9), LOAD)
    assert (run.input.role, run.input.enable_thinking, run.input.prompt_input) == (b"tool", True, b"hi")
    infer = run.infer
    assert infer.lora_params.contents.lora_adapter_name == b"ad"
    cache = infer.prompt_cache_params.contents
    assert (cache.save_prompt_cache, cache.prompt_cache_path) == (1, b"/c.bin")
    assert infer.sampling_params.contents.temperature == 0.25
    assert (infer.max_new_tokens, infer.keep_history, run.max_new_tokens) == (9, 1, 9)


def test_no_overrides_leave_null_pointers_and_the_load_limit() -> None:
    run = marshaller(Generation.V1_3_0).run(GenerateParams(prompt="hi"), LoadParams("/m", max_new_tokens=77))
    assert not run.infer.sampling_params and not run.infer.lora_params and not run.infer.prompt_cache_params
    assert (run.infer.max_new_tokens, run.max_new_tokens) == (0, 77)


def test_token_input_points_at_the_ids() -> None:
    run = marshaller(Generation.V1_1).run(GenerateParams(tokens=(5, 6, 7)), LOAD)
    assert run.input.input_type == INPUT_TOKEN
    assert run.input.token_input.input_ids[:3] == [5, 6, 7]
    assert run.input.token_input.n_tokens == 3


@pytest.mark.parametrize("generation", [Generation.V1_2_1, Generation.V1_3_0], ids=lambda g: g.label)
def test_multimodal_input_uses_the_generation_layout(generation: Generation) -> None:
    embed = struct.pack("4f", 1.0, 2.0, 3.0, 4.0)
    value = MultimodalInput(prompt="<image>what", image_embed=embed, n_image_tokens=2, n_image=1,
                            image_width=448, image_height=336)
    run = marshaller(generation).run(GenerateParams(multimodal=value), LOAD)
    assert run.input.input_type == INPUT_MULTIMODAL
    target = run.input.multimodal_input
    image = target.image if generation is Generation.V1_3_0 else target
    assert target.prompt == b"<image>what"
    assert image.image_embed[:4] == [1.0, 2.0, 3.0, 4.0]
    assert (image.n_image_tokens, image.image_width, image.image_height) == (2, 448, 336)


def test_image_size_cannot_be_expressed_before_1_2_1b1() -> None:
    value = MultimodalInput(prompt="p", image_embed=b"\0" * 8, n_image_tokens=1, image_width=10)
    with pytest.raises(Unsupported, match=r"rkllm-1\.2\.0"):
        marshaller(Generation.V1_2_0).run(GenerateParams(multimodal=value), LOAD)


def test_generation_with_several_batches_is_refused() -> None:
    with pytest.raises(Unsupported, match="n_batch > 1"):
        marshaller(Generation.V1_2_1).run(GenerateParams(prompt="x"), LoadParams("/m", n_batch=2))


@pytest.mark.parametrize(("mode", "value"), [("generate", 0), ("hidden", 1), ("logits", 2)])
def test_infer_mode_reaches_rkllm_infer_param(mode: str, value: int) -> None:
    run = marshaller(Generation.V1_2_0).run(GenerateParams(prompt="x", mode=mode), LOAD)  # type: ignore[arg-type]
    assert run.infer.mode == value


def test_logits_mode_is_unsupported_before_1_2_0_but_hidden_is_not() -> None:
    v11 = marshaller(Generation.V1_1)
    assert v11.run(GenerateParams(prompt="x", mode="hidden"), LOAD).infer.mode == 1
    with pytest.raises(Unsupported, match=r"logits output is not supported by runtime rkllm-1\.1"):
        v11.run(GenerateParams(prompt="x", mode="logits"), LOAD)
