"""``rkio probe --vision FOLDER``: the encoder + LLM co-load experiment and the consecutive-images check.

Co-load (#195, #262): the LLM is loaded at ``base_domain_id`` 0 and then at 1, each time followed by the
RKNN encoder in the same child process (as rkio's runner does it); librknnrt cannot choose a domain, so
the encoder only fits when the LLM left domain 0. Consecutive images (rkllama #175: 1.3.0 answered the
second image with garbage): with the LLM at base 1, three generations with greedy sampling on image A,
image B, image A again; the check passes when A's two answers agree and B's differs.
"""

from __future__ import annotations

import base64
import io
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rkio.probe.session import ChildProcess

PROMPT = "<image>What is in this picture?"
COLOURS = ((200, 30, 30), (30, 30, 200))


def synthetic_images() -> tuple[bytes, bytes]:
    """Two pictures that no encoder can confuse: a red square on white and a blue disc on black."""
    from PIL import Image, ImageDraw

    out = []
    for i, colour in enumerate(COLOURS):
        image = Image.new("RGB", (448, 448), (255, 255, 255) if i == 0 else (0, 0, 0))
        draw = ImageDraw.Draw(image)
        (draw.rectangle if i == 0 else draw.ellipse)((96, 96, 352, 352), fill=colour)
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out[0], out[1]


def vision_files(folder: Path) -> tuple[Path, Path]:
    """The folder's .rkllm file and its encoder (model.toml [vision] encoder, else the only .rknn)."""
    llms = sorted(folder.glob("*.rkllm"))
    if len(llms) != 1:
        raise ValueError(f"{folder} must hold exactly one .rkllm file")
    config = folder / "model.toml"
    table = tomllib.loads(config.read_text()).get("vision", {}) if config.is_file() else {}
    if table.get("encoder"):
        return llms[0], folder / str(table["encoder"])
    encoders = sorted(folder.glob("*.rknn"))
    if len(encoders) != 1:
        raise ValueError(f"{folder} must hold exactly one .rknn file, or name it in model.toml [vision]")
    return llms[0], encoders[0]


def _step(child: ChildProcess, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
    answer = child.request(payload, timeout)
    if answer.reply is None:
        return {"ok": False, "error": f"{answer.outcome}: {answer.detail}", "stderr": child.runtime_errors()}
    reply = dict(answer.reply)
    if not reply.get("ok"):
        reply["stderr"] = child.runtime_errors()
    return reply


def coload(llm: Path, encoder: Path, base: int, env: Mapping[str, str] | None, timeout: float,
           ctx: int, images: tuple[bytes, bytes] | None = None) -> dict[str, Any]:
    """Load the LLM at ``base``, then the encoder, in one child; optionally run the consecutive images."""
    child = ChildProcess(f"vision-base{base}", env)
    try:
        result: dict[str, Any] = {"base_domain_id": base}
        result["llm"] = _step(child, {"op": "load", "slot": "a", "path": str(llm), "base_domain_id": base,
                                      "max_context_len": ctx}, timeout)
        if not result["llm"].get("ok"):
            return result
        result["encoder"] = _step(child, {"op": "encoder_load", "slot": "e", "path": str(encoder)}, timeout)
        if images is not None and result["encoder"].get("ok"):
            runs = []
            for image in (images[0], images[1], images[0]):
                payload = {"op": "generate_image", "slot": "a", "encoder": "e", "prompt": PROMPT,
                           "image_b64": base64.b64encode(image).decode()}
                runs.append(_step(child, payload, timeout))
            result["images"] = runs
        return result
    finally:
        child.kill()


def consecutive_verdict(runs: list[dict[str, Any]]) -> str:
    if len(runs) != 3 or not all(r.get("ok") for r in runs):
        return "failed: a generation did not complete"
    first, second, again = (r.get("text") for r in runs)
    if first != again:
        return "FAILED: the same image got a different answer after another image (rkllama #175)"
    if second == first:
        return "FAILED: two different images got the same answer"
    return "ok: each answer depends on its own image"


def probe_vision(folder: Path, env: Mapping[str, str] | None, *, timeout: float = 300.0, ctx: int = 512,
                 log: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Both experiments on the vision model in ``folder``; a JSON-able report."""
    llm, encoder = vision_files(folder)
    images = synthetic_images()
    report: dict[str, Any] = {"model": str(folder), "llm": llm.name, "encoder": encoder.name}
    log(f"co-load: {llm.name} at base_domain_id 0, then {encoder.name}")
    report["base0"] = coload(llm, encoder, 0, env, timeout, ctx)
    log(f"co-load: {llm.name} at base_domain_id 1, then {encoder.name}; three images")
    report["base1"] = coload(llm, encoder, 1, env, timeout, ctx, images)
    runs = report["base1"].get("images", [])
    report["consecutive_images"] = consecutive_verdict(runs)
    times = [r["encode_s"] for r in runs if r.get("ok")]
    report["encode_s_per_image"] = sum(times) / len(times) if times else None
    return report


def summary(report: dict[str, Any]) -> str:
    def state(step: dict[str, Any] | None) -> str:
        if step is None:
            return "not tried"
        return "ok" if step.get("ok") else f"failed ({step.get('stderr') or step.get('error')})"

    lines = [f"# vision probe: {report['model']}", ""]
    for key in ("base0", "base1"):
        run = report[key]
        lines.append(f"- LLM at base_domain_id {run['base_domain_id']}: load {state(run.get('llm'))}; "
                     f"encoder {state(run.get('encoder'))}")
    lines.append(f"- consecutive images: {report['consecutive_images']}")
    if report["encode_s_per_image"] is not None:
        lines.append(f"- encoder time per image: {report['encode_s_per_image']:.3f} s")
    return "\n".join(lines) + "\n"


def sim_vision_model(folder: Path) -> Path:
    """A simulated vision model of #195's sizes: a 3.48 GB LLM and a 1.34 GB encoder (sparse files)."""
    from rkio.probe.simulated import write_sim_model

    write_sim_model(folder / "sim-vl.rkllm", 3_480_000_000, {"embd_size": 1536})
    write_sim_model(folder / "vision.rknn", 1_340_000_000,
                    {"image_size": 392, "image_tokens": 196, "embed_dim": 1536})
    (folder / "model.toml").write_text("[vision]\nencoder = \"vision.rknn\"\n")
    return folder
