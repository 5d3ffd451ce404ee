"""``rkio probe --vision`` on the simulators: #195 reproduced (the encoder fails after an LLM in domain 0),
the fix confirmed (base_domain_id 1), and the consecutive-images check passing on the echoing sim model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rkio.cli.main import main


@pytest.mark.timeout(120)
def test_probe_vision_on_the_simulator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["probe", "--simulate", "1.2.3", "--vision", "sim", "--out", str(out)]) == 0
    report = json.loads((out / "vision.json").read_text())
    assert report["base0"]["llm"]["ok"] and not report["base0"]["encoder"]["ok"]
    assert "failed to allocate memory" in report["base0"]["encoder"]["stderr"]
    assert report["base1"]["llm"]["ok"] and report["base1"]["encoder"]["ok"]
    assert report["consecutive_images"].startswith("ok")
    texts = [run["text"] for run in report["base1"]["images"]]
    assert texts[0] == texts[2] != texts[1]
    assert "consecutive images: ok" in (out / "vision.md").read_text()


def test_probe_vision_refuses_a_folder_without_an_encoder(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "m.rkllm").write_bytes(b"x")
    assert main(["probe", "--simulate", "1.2.3", "--vision", str(tmp_path / "m"), "--out",
                 str(tmp_path / "out")]) == 2
