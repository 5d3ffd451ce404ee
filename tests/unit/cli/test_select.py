"""``--runtime auto`` picks the NPU only when both the runtime library and an RKNPU are present."""

from __future__ import annotations

from pathlib import Path

import pytest

from rkio.runtime.select import choose_runtime, npu_soc, runtime_decision

LIB = Path("/usr/lib/librkllmrt.so")


def board(root: Path, compatible: bytes = b"", device: bool = False, debugfs: bool = False) -> Path:
    if compatible:
        (root / "proc/device-tree").mkdir(parents=True)
        (root / "proc/device-tree/compatible").write_bytes(compatible)
    if device:
        (root / "dev").mkdir()
        (root / "dev/rknpu0").write_bytes(b"")
    if debugfs:
        (root / "sys/kernel/debug/rknpu").mkdir(parents=True)
    return root


def test_pc_without_library_uses_the_cpu(tmp_path: Path) -> None:
    decision = runtime_decision(root=board(tmp_path), find_library=lambda: None)
    assert decision.kind == "llamacpp"
    assert "librkllmrt.so" in decision.reason


def test_library_without_npu_uses_the_cpu(tmp_path: Path) -> None:
    decision = runtime_decision(root=board(tmp_path), find_library=lambda: LIB)
    assert decision.kind == "llamacpp"
    assert "no RKNPU" in decision.reason


@pytest.mark.parametrize("evidence", [
    {"compatible": b"radxa,rock-5b\0rockchip,rk3588\0"},
    {"compatible": b"rockchip,rk3576-evb\0rockchip,rk3576\0"},
    {"device": True},
    {"debugfs": True},
])
def test_library_and_npu_use_rkllm(tmp_path: Path, evidence: dict[str, object]) -> None:
    root = board(tmp_path, **evidence)  # type: ignore[arg-type]
    assert choose_runtime(root=root, find_library=lambda: LIB) == "rkllm"


def test_other_rockchip_socs_have_no_rkllm_npu(tmp_path: Path) -> None:
    root = board(tmp_path, compatible=b"pine64,rockpro64\0rockchip,rk3399\0")
    assert npu_soc(root) is None
    assert choose_runtime(root=root, find_library=lambda: LIB) == "llamacpp"


def test_explicit_choice_wins(tmp_path: Path) -> None:
    root = board(tmp_path, device=True)
    assert choose_runtime("llamacpp", root=root, find_library=lambda: LIB) == "llamacpp"
    assert choose_runtime("rkllm", root=tmp_path, find_library=lambda: None) == "rkllm"


def test_unknown_choice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown runtime 'npu'"):
        choose_runtime("npu", root=tmp_path, find_library=lambda: None)
