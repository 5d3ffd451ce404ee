"""The simulated librkllmrt behaves as docs/simulator.md says, in every flavour."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

import simkit
from simkit import SimEnv

GiB = simkit.GiB


@pytest.mark.parametrize("flavour", simkit.FLAVOURS)
def test_each_flavour_prints_its_version_and_echoes_the_prompt(flavour, sim_driver, tmp_path):
    sim = SimEnv.fresh(tmp_path)
    model = simkit.make_model(tmp_path / "m.rkllm", GiB)
    prompt = "Hello there world"
    res = sim_driver(flavour)(model, "init:1024:0", f"run:{prompt}", env=sim.env())
    assert res.rcs() == [0, 0]
    assert f"I rkllm: rkllm-runtime version: {flavour}, rknpu driver version: 0.9.8" in res.stderr
    assert res.texts() == simkit.expected_reply(prompt, 12)
    assert res.callbacks()[-1]["state"] == 2  # FINISH
    ids = [cb["token_id"] for cb in res.callbacks()[:-1]]
    assert ids == [simkit.token_id(t) for t in res.texts()]
    init = res.docs("init")[0]
    assert init["footprint_bytes"] == simkit.footprint(GiB, 1024)


def test_library_has_the_version_string_in_rodata():
    data = simkit.sim_library("1.2.3").read_bytes()
    assert b"rkllm-runtime version: 1.2.3, rknpu driver version" in data


def test_layout_asserts_header_matches_the_golden_tables():
    gen = simkit.SIM_SOURCES / "gen_layout_asserts.py"
    committed = (simkit.SIM_SOURCES / "layout_asserts.h").read_text()
    sys.path.insert(0, str(gen.parent))
    try:
        import gen_layout_asserts
    finally:
        sys.path.pop(0)
    assert gen_layout_asserts.render(simkit.REPO / "tests" / "data" / "rkllm-abi") == committed


def test_utf8_pieces_arrive_as_waiting_and_perf_reports_the_footprint(sim_driver, tmp_path):
    sim = SimEnv.fresh(tmp_path)
    model = simkit.make_model(tmp_path / "m.rkllm", GiB, reply_tokens=9)
    prompt = "snow falls [[utf8]]"
    res = sim_driver("1.2.1")(model, "init:2048:0", f"run:{prompt}", env=sim.env())
    raw = [(bytes.fromhex(c["text_hex"]), c["state"]) for c in res.callbacks()[:-1]]
    assert raw == simkit.expected_callbacks(prompt, 9)
    assert res.texts() == simkit.expected_reply(prompt, 9) == [" snow", "é", " falls", "中", " snow"]
    perf = res.callbacks()[-1]["perf"]
    assert perf["generate_tokens"] == 9
    assert perf["prefill_tokens"] == simkit.prompt_tokens(prompt)
    assert perf["memory_usage_mb"] == pytest.approx(simkit.footprint(GiB, 2048) / simkit.MiB)


def test_max_context_above_model_limit_fails_init(sim_driver, tmp_path):
    sim = SimEnv.fresh(tmp_path)
    model = simkit.make_model(tmp_path / "m.rkllm", GiB, max_context_limit=4096)
    res = sim_driver("1.2.1")(model, "init:16384:0", env=sim.env())
    assert res.rcs() == [-1]
    assert "E rkllm: max_context[16384] must be less than the model's max_context_limit[4096]" in res.stderr


def test_two_handles_in_one_process_print_commas_before_1_2_2(sim_driver, tmp_path):
    sim = SimEnv.fresh(tmp_path)
    model = simkit.make_model(tmp_path / "m.rkllm", GiB)
    steps = ("init:512:0", "init:512:0:1", "run:Hello world")
    broken = sim_driver("1.2.1")(model, *steps, env=sim.env())
    assert set(broken.texts()) == {simkit.MULTI_INSTANCE_GARBAGE}
    fixed = sim_driver("1.2.3")(model, *steps, env=sim.env())
    assert fixed.texts() == simkit.expected_reply("Hello world", 12)


def test_memory_state_tracks_domains_and_counts_overcommits(sim_driver, tmp_path):
    sim = SimEnv.fresh(tmp_path)
    model = simkit.make_model(tmp_path / "big.rkllm", int(3.5 * GiB))
    # Two 3.75 GiB models in domain 0 overcommit it (#437); domain 0 + domain 1 is fine.
    res = sim_driver("1.2.3")(model, "init:4096:0", "init:4096:0", "init:4096:0:1", "state", env=sim.env())
    assert res.rcs()[:3] == [0, -1, 0]
    assert "E rkllm: failed to malloc npu memory, size: " in res.stderr
    state = res.docs("state")[0]
    assert [r["base_domain"] for r in state["reservations"]] == [0, 1]
    assert state["overcommits"] == 1
    assert state["overcommit_log"][0]["kind"] == "domain"
    # The driver exited: its reservations are gone, the overcommit record stays.
    after = sim.read_state()
    assert after["reservations"] == [] and after["overcommits"] == 1


def test_large_model_spills_into_following_domains(sim_driver, tmp_path):
    sim = SimEnv.fresh(tmp_path)
    model = simkit.make_model(tmp_path / "huge.rkllm", 7 * GiB)
    res = sim_driver("1.2.3")(model, "init:4096:0:2", "state", env=sim.env())
    doms = res.docs("state")[0]["reservations"][0]["domains"]
    assert doms == {"2": 4 * GiB, "3": simkit.footprint(7 * GiB, 4096) - 4 * GiB}


def test_segv_overcommit_is_the_1_3_0_default(sim_driver, tmp_path):
    sim = SimEnv.fresh(tmp_path, ram_bytes=2 * GiB)
    model = simkit.make_model(tmp_path / "m.rkllm", 3 * GiB)
    res = sim_driver("1.3.0")(model, "init:512:0", env=sim.env())
    assert res.returncode == -signal.SIGSEGV
    assert sim.read_state()["overcommits"] == 1
    res = sim_driver("1.2.1")(model, "init:512:0", env=sim.env())
    assert res.rcs() == [-1]


def test_oom_mode_kills_the_process_holding_most_memory(sim_driver, tmp_path):
    sim = SimEnv.fresh(tmp_path, ram_bytes=4 * GiB, overcommit="oom")
    big = simkit.make_model(tmp_path / "big.rkllm", 3 * GiB)
    small = simkit.make_model(tmp_path / "small.rkllm", GiB)
    driver = sim_driver("1.2.3")
    holder = subprocess.Popen(
        [str(driver.executable), str(big), "init:512:0", "sleep:20000"], env=sim.env(), stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        holder.stdout.readline()  # the init document: the big model is loaded
        res = driver(small, "init:512:0:1", env=sim.env())
        # The small load exceeds the 4 GiB of RAM: the kernel kills the biggest holder, not the loader.
        assert res.rcs() == [0]
        assert holder.wait(timeout=10) == -signal.SIGKILL
        state = sim.read_state()
        assert state["overcommits"] == 1
        assert [(k["victim_pid"], k["killer_pid"]) for k in state["oom_kills"]] == [(holder.pid, res.pid)]
    finally:
        holder.kill()
        holder.wait()


def test_fault_exit_at_token_from_the_model_header(sim_driver, tmp_path):
    sim = SimEnv.fresh(tmp_path)
    model = simkit.make_model(tmp_path / "m.rkllm", GiB, fault="exit_at_token:3")
    res = sim_driver("1.2.0")(model, "init:512:0", "run:one two three four", env=sim.env())
    assert res.returncode == 3
    assert res.texts() == simkit.expected_reply("one two three four", 3)


def test_pause_keeps_kv_and_keep_history_accumulates(sim_driver, tmp_path):
    sim = SimEnv.fresh(tmp_path)
    model = simkit.make_model(tmp_path / "m.rkllm", GiB)
    env = sim.env() | {"DRIVER_PAUSE_AT": "2", "DRIVER_KEEP": "1"}
    res = sim_driver("1.2.1")(model, "init:512:0", "run:a b c", "run:d e", env=env)
    runs = res.docs("run")
    assert runs[0]["finish"] == "paused" and runs[0]["generated_tokens"] == 2
    first = simkit.prompt_tokens("a b c") + 2
    # keep_history=1: the second turn has no system prompt and adds to the KV cache.
    assert runs[1]["kv_cache_len"] == first + runs[1]["prompt_tokens"] + 2


def test_context_overflow_reports_error(sim_driver, tmp_path):
    sim = SimEnv.fresh(tmp_path)
    model = simkit.make_model(tmp_path / "m.rkllm", GiB)
    words = " ".join(f"w{i}" for i in range(40))
    res = sim_driver("1.2.3")(model, "init:32:0", f"run:{words}", env=sim.env())
    assert res.rcs() == [0, -1]
    assert res.callbacks()[-1]["state"] == 3  # ERROR


def test_run_async_works_except_in_1_2_1(sim_driver, tmp_path):
    sim = SimEnv.fresh(tmp_path)
    model = simkit.make_model(tmp_path / "m.rkllm", GiB)
    ok = sim_driver("1.2.3")(model, "init:512:0", "async:hi there", env=sim.env())
    assert ok.texts() == simkit.expected_reply("hi there", 12)
    broken = sim_driver("1.2.1")(model, "init:512:0", "async:hi there", env=sim.env())
    assert broken.rcs() == [0, 0] and broken.callbacks() == []


def test_lora_template_and_tools_are_reflected(sim_driver, tmp_path):
    sim = SimEnv.fresh(tmp_path)
    model = simkit.make_model(tmp_path / "m.rkllm", GiB)
    adapter = tmp_path / "a.rkllm"
    adapter.write_bytes(b"x")
    env = sim.env() | {"DRIVER_LORA": "sql"}
    res = sim_driver("1.2.1")(
        model,
        "init:512:0",
        f"lora:sql:{adapter}",
        "template:You are terse.|[U] |[A]",
        "run:pick rows",
        env=env,
    )
    assert res.texts() == simkit.expected_reply("You are terse.[U] pick rows[A]", 12, lora="sql")
    tools = '[{"type":"function","function":{"name":"get_weather","parameters":{}}}]'
    res = sim_driver("1.2.1")(model, "init:512:0", f"tools:{tools}", "run:weather? [[tool]]", env=sim.env())
    assert res.texts() == simkit.expected_tool_call("get_weather")
    assert "".join(res.texts()) == '<tool_call>\n{"name": "get_weather", "arguments": {}}\n</tool_call>'


def test_oracle_drops_template_markers_and_roles():
    rendered = (
        "<|im_start|>system\nBe nice<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    )
    assert simkit.parse_prompt(rendered).words == ("Be", "nice", "Hi", "there")
    gemma = "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n"
    assert simkit.parse_prompt(gemma).words == ("Hi", "there")
    llama3 = (
        "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>"
    )
    assert simkit.parse_prompt(llama3).words == ("Hi", "there")
    think = simkit.expected_reply("a b [[think]] [[n=7]]", 7)
    assert think == ["<think>", " a", " b", "</think>", " a", " b", " a"]
    assert simkit.reply_length("x [[n=30]]", max_new_tokens=5) == 5


def test_state_of_a_missing_file_is_empty(tmp_path: Path):
    state = simkit.read_state(tmp_path / "none.txt")
    assert state["reservations"] == [] and state["overcommits"] == 0


def test_garbage_overcommit_spoils_every_model_in_the_domain(sim_driver, tmp_path):
    sim = SimEnv.fresh(tmp_path, overcommit="garbage")
    model = simkit.make_model(tmp_path / "m.rkllm", 3 * GiB)
    res = sim_driver("1.2.3")(
        model, "init:512:0", "run:fine words", "init:512:0", "run:fine words", env=sim.env()
    )
    assert res.rcs() == [0, 0, 0, 0]
    assert res.texts()[:12] == simkit.expected_reply("fine words", 12)
    assert set(res.texts()[12:]) == {simkit.OVERCOMMIT_GARBAGE}
    assert sim.read_state()["overcommits"] == 1


def test_prompt_cache_save_then_load_and_missing_file(sim_driver, tmp_path):
    sim = SimEnv.fresh(tmp_path)
    model = simkit.make_model(tmp_path / "m.rkllm", GiB)
    cache = tmp_path / "cache.bin"
    saved = sim_driver("1.2.0")(
        model, "init:512:0", "run:alpha beta", env=sim.env() | {"DRIVER_SAVE_CACHE": str(cache)}
    )
    assert saved.rcs() == [0, 0] and cache.exists()
    res = sim_driver("1.2.0")(
        model,
        "init:512:0",
        f"loadcache:{cache}",
        "run:alpha beta",
        "handle",
        f"loadcache:{tmp_path / 'missing.bin'}",
        env=sim.env(),
    )
    assert res.rcs() == [0, 0, 0, 0, -1]
    assert res.docs("handle")[0]["prompt_cache_loaded"] == str(cache)
    assert res.docs("run")[0]["prefilled_tokens"] == 0  # the whole prompt came from the cache


def test_per_run_max_new_tokens_and_kv_size_in_1_3_0(sim_driver, tmp_path):
    sim = SimEnv.fresh(tmp_path)
    model = simkit.make_model(tmp_path / "m.rkllm", GiB)
    res = sim_driver("1.3.0")(
        model, "init:512:0", "run:a b c", "kvsize", env=sim.env() | {"DRIVER_MAX_NEW": "4"}
    )
    assert res.texts() == simkit.expected_reply("a b c", 4)
    assert res.docs("run")[0]["finish"] == "length"
    assert res.rcs()[-1] == simkit.prompt_tokens("a b c") + 4
    assert all(cb["userdata"] == 7 for cb in res.callbacks())  # RKLLMCallback.result_userdata / run userdata


@pytest.mark.parametrize(("fault", "expect"), [("init_fail", "rc"), ("init_segv", "segv")])
def test_init_faults_from_the_environment(fault, expect, sim_driver, tmp_path):
    sim = SimEnv.fresh(tmp_path, fault=fault)
    model = simkit.make_model(tmp_path / "m.rkllm", GiB)
    res = sim_driver("1.1.4")(model, "init:512:0", env=sim.env())
    if expect == "rc":
        assert res.rcs() == [-1] and "E rkllm:" in res.stderr
    else:
        assert res.returncode == -signal.SIGSEGV
    assert sim.read_state()["reservations"] == []
