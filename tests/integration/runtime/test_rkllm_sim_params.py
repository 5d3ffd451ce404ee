"""Every parameter crosses the ABI intact: the simulator reports what it received (rkllm_sim_* JSON)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from rkllm_sim_helpers import collect

import simkit
from rkio.errors import RuntimeFailure, Unsupported
from rkio.runtime.base import (
    ChatTemplateOverride,
    CrossAttnParams,
    Feature,
    GenerateParams,
    LoadParams,
    LoraAdapter,
    MultimodalInput,
    PromptCacheParams,
    Sampling,
    Token,
)
from rkio.runtime.rkllm import RkllmRuntime
from simkit.introspect import Sim

# float32-exact values, none of them a default
SAMPLING = Sampling(top_k=7, top_p=0.5, temperature=0.25, repeat_penalty=1.5, frequency_penalty=0.125,
                    presence_penalty=0.375, mirostat=2, mirostat_tau=3.5, mirostat_eta=0.25)


def test_load_params_round_trip(runtime: RkllmRuntime, model: Callable[..., Path], sim: Sim) -> None:
    has = runtime.features.__contains__
    path = str(model())
    params = LoadParams(
        model_path=path, max_context_len=2048, max_new_tokens=77, sampling=SAMPLING,
        n_keep=16 if has(Feature.CPU_MASK) else -1, base_domain_id=3, embed_flash=False,
        enabled_cpus_mask=0xF0 if has(Feature.CPU_MASK) else 0, use_cross_attn=has(Feature.CROSS_ATTN),
        skip_special_token=False, ignore_eos_token=has(Feature.IGNORE_EOS),
    )
    runtime.load(params)
    got = sim.last_init(runtime)
    expected = {"model_path": path, "max_context_len": 2048, "max_new_tokens": 77, "top_k": 7, "top_p": 0.5,
                "temperature": 0.25, "repeat_penalty": 1.5, "frequency_penalty": 0.125,
                "presence_penalty": 0.375, "mirostat": 2, "mirostat_tau": 3.5, "mirostat_eta": 0.25,
                "skip_special_token": False, "is_async": False}
    extend = {"base_domain_id": 3, "reserved_nonzero_bytes": 0}
    if has(Feature.CPU_MASK):
        expected["n_keep"] = 16
        extend |= {"embed_flash": 0, "enabled_cpus_mask": 0xF0, "enabled_cpus_num": 4}
    if has(Feature.N_BATCH):
        extend |= {"n_batch": 1, "use_cross_attn": 1}
    if has(Feature.IGNORE_EOS):
        expected["ignore_eos_token"] = True
        expected |= {"callback_struct": True, "tokenizer_callback": False, "embed_callback": False}
    assert {key: got[key] for key in expected} == expected
    assert {key: got["extend_param"][key] for key in extend} == extend
    assert got["result_callback"] is True


def test_prompt_run_params_round_trip(loaded: RkllmRuntime, sim: Sim, tmp_path: Path) -> None:
    has = loaded.features.__contains__
    lora_file = tmp_path / "adapter.rkllm"
    lora_file.write_bytes(b"lora")
    loaded.load_lora(LoraAdapter(path=str(lora_file), name="style", scale=0.5))
    assert sim.handle(loaded)["loras"] == [{"name": "style", "path": str(lora_file), "scale": 0.5}]
    cache = tmp_path / "cache.bin"
    params = GenerateParams(
        prompt="red green blue", role="tool" if has(Feature.ROLE) else "user",
        enable_thinking=has(Feature.ENABLE_THINKING), keep_history=has(Feature.KEEP_HISTORY), lora="style",
        prompt_cache=PromptCacheParams(save=True, path=str(cache)),
        sampling=SAMPLING if has(Feature.PER_RUN_SAMPLING) else None,
        max_new_tokens=6 if has(Feature.PER_RUN_MAX_NEW_TOKENS) else None,
    )
    tokens: list[Token] = []
    result = loaded.generate(params, collect(tokens))
    n = 6 if has(Feature.PER_RUN_MAX_NEW_TOKENS) else 12
    expected_text = "".join(simkit.expected_reply("red green blue", n, lora="style"))
    assert "".join(t.text for t in tokens) == expected_text
    assert result.n_tokens == n
    got = sim.last_run(loaded)["input"]
    expected: dict[str, object] = {"input_type": "prompt", "prompt": "red green blue", "userdata": True,
                                   "mode": 0, "lora_adapter_name": "style",
                                   "prompt_cache": {"save_prompt_cache": 1, "prompt_cache_path": str(cache)}}
    if has(Feature.ROLE):
        expected |= {"role": "tool", "enable_thinking": True}
    if has(Feature.KEEP_HISTORY):
        expected["keep_history"] = 1
    if has(Feature.PER_RUN_SAMPLING):
        expected["max_new_tokens"] = 6
        expected["sampling"] = {name: getattr(SAMPLING, name) for name in got["sampling"]}
        assert len(got["sampling"]) == 9
    assert {key: got[key] for key in expected} == expected
    assert cache.is_file()


def test_defaults_send_no_overrides(loaded: RkllmRuntime, sim: Sim) -> None:
    loaded.generate(GenerateParams(prompt="plain"), lambda t: True)
    got = sim.last_run(loaded)["input"]
    assert got["lora_adapter_name"] is None and got["prompt_cache"] is None
    if Feature.PER_RUN_SAMPLING in loaded.features:
        assert (got["sampling"], got["max_new_tokens"]) == (None, 0)
    if Feature.ROLE in loaded.features:
        assert (got["role"], got["enable_thinking"]) == ("user", False)


def test_token_embed_and_multimodal_inputs(loaded: RkllmRuntime, sim: Sim) -> None:
    tokens: list[Token] = []
    loaded.generate(GenerateParams(tokens=(5, 6, 7)), collect(tokens))
    got = sim.last_run(loaded)["input"]
    assert (got["input_type"], got["token_ids"], got["n_tokens"]) == ("token", [5, 6, 7], 3)
    assert "".join(t.text for t in tokens).split()[:3] == ["tok5", "tok6", "tok7"]

    embed = struct.pack("6f", 1.5, 0, 0, 0, 0, 0)
    loaded.generate(GenerateParams(embed=embed, n_embed_tokens=2), lambda t: True)
    got = sim.last_run(loaded)["input"]
    assert (got["input_type"], got["n_tokens"], got["embed_first"]) == ("embed", 2, 1.5)

    image = MultimodalInput(prompt="<image> describe", image_embed=struct.pack("8f", *range(8)),
                            n_image_tokens=4)
    loaded.generate(GenerateParams(multimodal=image), lambda t: True)
    got = sim.last_run(loaded)["input"]["multimodal"]
    assert (got["prompt"], got["image_embed"], got["n_image_tokens"]) == ("<image> describe", True, 4)
    if "n_image" in got:
        assert got["n_image"] == 1
    assert sim.last_run(loaded)["prompt_tokens"] >= 4


def test_multimodal_image_geometry_from_1_2_1(loaded: RkllmRuntime, sim: Sim) -> None:
    image = MultimodalInput(prompt="<image>", image_embed=b"\0" * 16, n_image_tokens=2, n_image=2,
                            image_width=448, image_height=224)
    if Feature.ROLE not in loaded.features:  # 1.1 / 1.2.0 headers have no fields for these
        with pytest.raises(Unsupported):
            loaded.generate(GenerateParams(multimodal=image), lambda t: True)
        return
    loaded.generate(GenerateParams(multimodal=image), lambda t: True)
    got = sim.last_run(loaded)["input"]["multimodal"]
    assert (got["n_image"], got["image_width"], got["image_height"]) == (2, 448, 224)


def test_prompt_cache_save_load_release(loaded: RkllmRuntime, sim: Sim, tmp_path: Path) -> None:
    cache = tmp_path / "prefix.cache"
    prompt = "shared prefix words"
    loaded.generate(GenerateParams(prompt=prompt, prompt_cache=PromptCacheParams(True, str(cache))),
                    lambda t: True)
    loaded.load_prompt_cache(str(cache))
    assert sim.handle(loaded)["prompt_cache_loaded"] == str(cache)
    loaded.generate(GenerateParams(prompt=prompt), lambda t: True)
    run = sim.last_run(loaded)
    assert run["prefilled_tokens"] < run["prompt_tokens"]
    loaded.release_prompt_cache()
    assert sim.handle(loaded)["prompt_cache_loaded"] is None
    with pytest.raises(RuntimeFailure, match="rkllm_load_prompt_cache failed"):
        loaded.load_prompt_cache(str(tmp_path / "missing.cache"))


def test_chat_template_override(loaded: RkllmRuntime, sim: Sim) -> None:
    template = ChatTemplateOverride("SYS ", "<<", ">> answer:")
    if Feature.CHAT_TEMPLATE not in loaded.features:
        with pytest.raises(Unsupported, match=f"set_chat_template is not supported by runtime {loaded.name}"):
            loaded.set_chat_template(template)
        return
    loaded.set_chat_template(template)
    assert sim.handle(loaded)["chat_template"] == {"system_prompt": "SYS ", "prompt_prefix": "<<",
                                                   "prompt_postfix": ">> answer:"}
    loaded.generate(GenerateParams(prompt="hi"), lambda t: True)
    assert sim.last_run(loaded)["templated_prompt"] == "SYS <<hi>> answer:"


def test_function_tools(loaded: RkllmRuntime, sim: Sim) -> None:
    tools = '[{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]'
    if Feature.FUNCTION_TOOLS not in loaded.features:
        expected = f"set_function_tools is not supported by runtime {loaded.name}"
        with pytest.raises(Unsupported, match=expected):
            loaded.set_function_tools("sys", tools, "<tool_response>")
        return
    loaded.set_function_tools("You may call tools.", tools, "<tool_response>")
    got = sim.handle(loaded)["function_tools"]
    assert (got["system_prompt"], got["tools"], got["tool_response_str"]) == (
        "You may call tools.", tools, "<tool_response>")
    tokens: list[Token] = []
    loaded.generate(GenerateParams(prompt="weather? [[tool]]"), collect(tokens))
    assert '"name": "get_weather"' in "".join(t.text for t in tokens)


def test_kv_cache_clear_and_size(loaded: RkllmRuntime, sim: Sim) -> None:
    if Feature.CLEAR_KV_CACHE not in loaded.features:
        with pytest.raises(Unsupported, match=f"clear_kv_cache is not supported by runtime {loaded.name}"):
            loaded.clear_kv_cache(True)
        return
    loaded.generate(GenerateParams(prompt="remember this", keep_history=True), lambda t: True)
    before = sim.handle(loaded)["kv_cache_len"]
    assert before > 0
    if Feature.KV_CACHE_SIZE in loaded.features:
        assert loaded.kv_cache_size() == [before]
        loaded.clear_kv_cache(False, [(0, 3)])
        assert loaded.kv_cache_size() == [before - 3]
    else:
        with pytest.raises(Unsupported, match="clear_kv_cache ranges"):
            loaded.clear_kv_cache(False, [(0, 3)])
        with pytest.raises(Unsupported, match="get_kv_cache_size"):
            loaded.kv_cache_size()
    loaded.clear_kv_cache(True)
    handle = sim.handle(loaded)
    assert (handle["kv_cache_len"], handle["last_clear_keep_system_prompt"]) == (0, 1)


def test_cross_attention_params(runtime: RkllmRuntime, model: Callable[..., Path], sim: Sim) -> None:
    params = CrossAttnParams(encoder_k_cache=b"\0" * 32, encoder_v_cache=b"\0" * 32, encoder_mask=b"\0" * 8,
                             encoder_pos=(0, 1), num_tokens=2)
    if Feature.CROSS_ATTN not in runtime.features:
        runtime.load(LoadParams(model_path=str(model()), max_context_len=512))
        with pytest.raises(Unsupported, match="set_cross_attn_params"):
            runtime.set_cross_attn_params(params)
        return
    runtime.load(LoadParams(model_path=str(model()), max_context_len=512, use_cross_attn=True))
    runtime.set_cross_attn_params(params)
    assert sim.handle(runtime)["cross_attn_num_tokens"] == 2


def test_n_batch_reaches_the_runtime_but_batched_generation_is_refused(
    runtime: RkllmRuntime, model: Callable[..., Path], sim: Sim
) -> None:
    if Feature.N_BATCH not in runtime.features:
        with pytest.raises(Unsupported, match="n_batch"):
            runtime.load(LoadParams(model_path=str(model()), n_batch=2))
        return
    runtime.load(LoadParams(model_path=str(model()), max_context_len=512, n_batch=2))
    assert sim.last_init(runtime)["extend_param"]["n_batch"] == 2
    assert runtime.kv_cache_size() == [0, 0]
    with pytest.raises(Unsupported, match="n_batch > 1"):
        runtime.generate(GenerateParams(prompt="x"), lambda t: True)
