"""doctor reports the machine, the runtime, the models and every problem with a fix (fake /proc, /sys)."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from rkio.cli import doctor
from rkio.config import Settings
from rkio.engine.types import ModelSpec
from rkio.runtime.base import LoadParams
from rkio.units import GiB, MiB

LIB = Path("/usr/lib/librkllmrt.so")


def fake_root(tmp_path: Path, *, soc: str | None = None, driver: str | None = None,
              available: int = 8 * GiB, device: bool = False) -> Path:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/meminfo").write_text(
        f"MemTotal:       {16 * GiB // 1024} kB\nMemFree:  1000 kB\nMemAvailable:   {available // 1024} kB\n")
    if soc:
        (tmp_path / "proc/device-tree").mkdir()
        (tmp_path / "proc/device-tree/compatible").write_bytes(f"radxa,rock-5b\0rockchip,{soc}\0".encode())
    if driver:
        (tmp_path / "sys/kernel/debug/rknpu").mkdir(parents=True)
        (tmp_path / "sys/kernel/debug/rknpu/version").write_text(f"RKNPU driver: {driver}\n")
    if device:
        (tmp_path / "dev").mkdir()
        (tmp_path / "dev/rknpu0").write_bytes(b"")
    return tmp_path


def spec(name: str, size: int, runtime: str = "rkllm", ctx: int = 4096) -> ModelSpec:
    path = f"/models/{name}/model.{'rkllm' if runtime == 'rkllm' else 'gguf'}"
    return ModelSpec(name=name, path=path, runtime=runtime,  # type: ignore[arg-type]
                     size_bytes=size, mtime_ns=0, load=LoadParams(model_path=path, max_context_len=ctx))


def env(root: Path, library: Path | None = None, abi: str = "1.2.1",
        nofile: tuple[int, int] = (1 << 20, 1 << 20), llama: str | None = "0.3.16") -> doctor.Environment:
    def detect(path: Path) -> str:
        if abi == "?":
            raise ValueError("exports fit 1.2.1 and 1.2.1b1. Set RKIO_RKLLM_ABI")
        return abi

    return doctor.Environment(root=root, find_library=lambda: library, detect_abi=detect, nofile=nofile,
                              llama_cpp_version=lambda: llama)


def problems(report: dict[str, object]) -> list[str]:
    return [p["problem"] for p in report["problems"]]  # type: ignore[attr-defined, index]


def test_pc_without_models_uses_the_cpu_and_says_how_to_get_a_model(tmp_path: Path) -> None:
    settings = Settings(models_dir=tmp_path / "models", memory_reserve=512 * MiB)
    report = doctor.collect(settings, [], env(fake_root(tmp_path)))
    json.dumps(report)  # --json must be able to print it
    assert report["runtime"]["selected"] == "llamacpp"
    assert report["npu"]["present"] is False
    assert report["memory"]["available_bytes"] == 8 * GiB
    assert report["memory"]["budget_bytes"] == 8 * GiB - 512 * MiB
    [no_models] = report["problems"]
    assert no_models["severity"] == "error" and "no models" in no_models["problem"]
    assert "make run" in no_models["fix"]


def test_board_with_old_driver_and_low_fd_limit(tmp_path: Path) -> None:
    root = fake_root(tmp_path, soc="rk3588", driver="v0.9.6")
    report = doctor.collect(Settings(), [spec("qwen", GiB)], env(root, LIB, nofile=(1024, 4096)))
    assert report["platform"]["soc"] == "rk3588"
    assert report["runtime"]["selected"] == "rkllm" and report["runtime"]["abi"] == "1.2.1"
    assert report["npu"]["driver_version"] == [0, 9, 6]
    found = {p["problem"].split(" ")[0]: p for p in report["problems"]}
    assert found["RKNPU"]["severity"] == "error" and "0.9.8" in found["RKNPU"]["fix"]
    assert "ulimit -n 102400" in found["open-file"]["fix"]


def test_current_driver_and_fd_limit_are_fine(tmp_path: Path) -> None:
    root = fake_root(tmp_path, soc="rk3588", driver="v0.9.8")
    report = doctor.collect(Settings(), [spec("qwen", GiB)], env(root, LIB))
    assert report["problems"] == []


def test_unreadable_driver_version_on_a_board_asks_for_root(tmp_path: Path) -> None:
    report = doctor.collect(Settings(), [spec("qwen", GiB)], env(fake_root(tmp_path, device=True), LIB))
    assert any("debugfs needs root" in p for p in problems(report))


def test_board_without_runtime_library(tmp_path: Path) -> None:
    report = doctor.collect(Settings(), [spec("qwen", GiB)], env(fake_root(tmp_path, soc="rk3576")))
    assert report["runtime"]["selected"] == "llamacpp"
    fixes = " ".join(p["fix"] for p in report["problems"])
    assert "RKIO_RKLLM_LIB" in fixes


def test_undetectable_abi_points_at_the_override(tmp_path: Path) -> None:
    root = fake_root(tmp_path, soc="rk3588", driver="v0.9.8")
    report = doctor.collect(Settings(), [spec("qwen", GiB)], env(root, LIB, abi="?"))
    [problem] = report["problems"]
    assert "ABI" in problem["problem"] and "RKIO_RKLLM_ABI" in problem["fix"]


def test_model_larger_than_the_budget_is_named_with_a_fix(tmp_path: Path) -> None:
    settings = Settings(memory_budget=4 * GiB)
    report = doctor.collect(settings, [spec("big", 6 * GiB), spec("small", GiB)],
                            env(fake_root(tmp_path, soc="rk3588", driver="v0.9.8"), LIB))
    rows = {r["name"]: r for r in report["models"]["models"]}
    assert rows["big"]["footprint_bytes"] > 6 * GiB and not rows["big"]["fits_alone"]
    assert rows["small"]["fits_alone"]
    assert [p["name"] for p in report["models"]["fit_together"]] == ["small"]
    [problem] = report["problems"]
    assert problem["problem"].startswith("big needs about") and "max_context_len" in problem["fix"]
    assert report["memory"]["budget_source"] == "configured"


def test_models_that_fit_together_get_domain_windows(tmp_path: Path) -> None:
    settings = Settings(memory_budget=64 * GiB, reserved_domains=(0,))
    models = [spec("a", 2 * GiB), spec("b", 2 * GiB), spec("c", 5 * GiB)]
    report = doctor.collect(settings, models, env(fake_root(tmp_path, soc="rk3588", driver="v0.9.8"), LIB))
    plan = {p["name"]: p for p in report["models"]["fit_together"]}
    assert plan["a"]["domains"] == [1]
    assert plan["b"]["domains"] == [2]  # ~3 GiB loaded each: two cannot share a 4 GiB window
    assert plan["c"]["domains"] == [3, 4]
    assert report["models"]["fit_together_bytes"] == sum(p["bytes"] for p in plan.values())


def test_gguf_models_without_llama_cpp(tmp_path: Path) -> None:
    report = doctor.collect(Settings(), [spec("gemma3-270m", 250 * MiB, "llamacpp", 2048)],
                            env(fake_root(tmp_path), llama=None))
    [problem] = report["problems"]
    assert "llama-cpp-python" in problem["problem"] and "rkio[cpu]" in problem["fix"]
    assert report["models"]["fit_together"][0]["domains"] == []


def test_plain_output_lists_sections_and_fixes(tmp_path: Path) -> None:
    report = doctor.collect(Settings(memory_budget=GiB), [spec("big", 2 * GiB)], env(fake_root(tmp_path)))
    out = io.StringIO()
    doctor.render(report, out)
    text = out.getvalue()
    for heading in ("platform", "runtime", "memory", "models dir", "fit together"):
        assert heading in text
    assert "error: big needs about" in text and "fix: lower max_context_len" in text


@pytest.mark.parametrize("problem_models,code", [([], 1), ([spec("m", 100 * MiB, "llamacpp", 2048)], 0)])
def test_cli_json_and_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                problem_models: list[ModelSpec], code: int) -> None:
    monkeypatch.setattr(doctor, "_registry_models", lambda settings: problem_models)
    args = argparse.Namespace(json=True, models_dir=str(tmp_path / "models"), runtime="llamacpp",
                              memory_budget="2GiB")
    out = io.StringIO()
    assert doctor.cmd_doctor(args, out, env(fake_root(tmp_path))) == code
    report = json.loads(out.getvalue())
    assert report["models_dir"] == str(tmp_path / "models")
    assert report["memory"]["budget_bytes"] == 2 * GiB
    assert report["runtime"]["selected"] == "llamacpp"
