"""The simulated librknnrt.so through rkio's binding: deterministic embeddings, domain-0 memory in the
state file shared with the rkllm simulator, #195's failure when an LLM filled domain 0 first, and faults.

Each case runs in a child process (a fault may crash it, and the state file prunes a dead owner's memory).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import simkit
from simkit import SimEnv

MiB = simkit.MiB
SIDE, TOKENS, DIM = 8, 4, 6

CHILD = r"""
import hashlib, json, sys
from rkio.runtime.rknn import RknnEncoder, load_library
from rkio.runtime.rknn.layouts import TENSOR_UINT8
library, model, images, llm = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
out = {}
if llm:
    from rkio.runtime.base import LoadParams
    from rkio.runtime.rkllm import RkllmRuntime
    rt = RkllmRuntime(library=llm.split("|")[0], abi="1.2.3")
    rt.load(LoadParams(model_path=llm.split("|")[1], max_context_len=256, base_domain_id=0))
    out["llm"] = "loaded"
try:
    enc = RknnEncoder(load_library(library), model)
except Exception as exc:
    out["error"] = str(exc)
    print(json.dumps(out)); sys.exit(0)
out["info"] = [enc.info.height, enc.info.image_tokens, enc.info.embed_dim, enc.info.api_version]
out["state"] = open(sys.argv[5]).read()
side = enc.info.height
import time
started = time.monotonic()
rows = [enc.encode(bytes([v]) * (3 * side * side), TENSOR_UINT8, True) for v in images]
out["seconds"] = time.monotonic() - started
out["embeddings"] = [hashlib.sha256(r).hexdigest() for r in rows]
enc.close()
out["after_close"] = open(sys.argv[5]).read()
print(json.dumps(out))
"""


def encoder_file(path: Path, size: int = 0, **header: object) -> Path:
    values = {"image_size": SIDE, "image_tokens": TOKENS, "embed_dim": DIM, **header}
    text = "RKSIM\n" + "".join(f"{k}={v}\n" for k, v in values.items())
    with open(path, "wb") as f:
        f.write((text + "\n").encode())
        f.truncate(max(size, len(text) + 1))
    return path


def run_child(tmp_path: Path, model: Path, images: list[int], llm: str = "",
              **sim_settings: object) -> subprocess.CompletedProcess[str]:
    sim = SimEnv.fresh(tmp_path, **sim_settings)  # type: ignore[arg-type]
    sim.state_path.touch()
    env = sim.env()
    env["PYTHONPATH"] = str(simkit.REPO / "src")
    library = simkit.sim_library("1.2.3").parent.parent / "rknn" / "librknnrt.so"
    argv = [sys.executable, "-c", CHILD, str(library), str(model), json.dumps(images), llm,
            str(sim.state_path)]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def result(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert proc.returncode == 0, proc.stderr
    out: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return out


def test_embeddings_are_a_function_of_the_image_bytes(tmp_path: Path) -> None:
    out = result(run_child(tmp_path, encoder_file(tmp_path / "v.rknn"), [1, 2, 1]))
    assert out["info"] == [SIDE, TOKENS, DIM, "2.3.0 (rkio simulator)"]
    first, second, again = out["embeddings"]  # type: ignore[misc]
    assert first == again and first != second


def test_the_encoder_holds_its_memory_in_domain_0_until_destroyed(tmp_path: Path) -> None:
    out = result(run_child(tmp_path, encoder_file(tmp_path / "v.rknn", 200 * MiB), [1]))
    held = [line for line in str(out["state"]).splitlines() if line.startswith("res ")]
    assert len(held) == 1
    fields = held[0].split()
    assert fields[4] == "0" and fields[6] == f"0:{200 * MiB + 64 * MiB}"  # base domain 0, all of it there
    assert not [line for line in str(out["after_close"]).splitlines() if line.startswith("res ")]


def test_an_llm_filling_domain_0_first_makes_the_encoder_fail_as_in_issue_195(tmp_path: Path) -> None:
    llm = simkit.make_model(tmp_path / "llm.rkllm", int(3.48 * 1024) * MiB, buffer_bytes=64 * MiB,
                            kv_bytes_per_token=1024)
    encoder = encoder_file(tmp_path / "v.rknn", 1340 * MiB)
    out = result(run_child(tmp_path, encoder, [1], llm=f"{simkit.sim_library('1.2.3')}|{llm}",
                           ram_bytes=16 << 30))
    assert out["llm"] == "loaded"
    assert "rknn_init failed" in str(out["error"]) and "RKNN_ERR_MALLOC_FAIL" in str(out["error"])
    state = SimEnv.fresh(tmp_path).state_path.read_text()
    assert "oc " in state and " domain " in state  # the simulator recorded the overcommit it refused


def test_init_failure_is_a_load_error(tmp_path: Path) -> None:
    out = result(run_child(tmp_path, encoder_file(tmp_path / "v.rknn", fault="init_fail"), [1]))
    assert "rknn_init failed" in str(out["error"])


def test_a_segfault_in_run_kills_the_process(tmp_path: Path) -> None:
    proc = run_child(tmp_path, encoder_file(tmp_path / "v.rknn", fault="run_segv"), [1])
    assert proc.returncode == -signal.SIGSEGV


def test_each_run_takes_the_configured_time_per_image(tmp_path: Path) -> None:
    # image_ms is a sleep inside rknn_run: a lower bound, whatever the machine's load
    out = result(run_child(tmp_path, encoder_file(tmp_path / "v.rknn", image_ms=150), [1, 2]))
    assert float(out["seconds"]) >= 0.3  # type: ignore[arg-type]
