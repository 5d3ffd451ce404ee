"""KV reuse and LoRA variants through the HTTP APIs, as clients use them: a multi-turn chat replies exactly
as a model without reuse does while prefilling only the new messages, and ``model:adapter`` is listed and
runs on the loaded base."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import openai
from live_server import LiveServer

import simkit


def add_models(server: LiveServer) -> None:
    models = server.log_path.parent / "models"  # the registry reads the directory on demand
    for name, toml in (("sim-ctx", '[[lora]]\nname = "style"\npath = "style.lora"\n'),
                       ("sim-fresh", "kv_reuse = false\n")):
        simkit.make_model(models / name / f"{name}.rkllm", 32 << 20, context_reply=1)
        (models / name / "model.toml").write_text(toml)
    (models / "sim-ctx" / "style.lora").write_bytes(b"adapter")


def test_a_chat_reuses_the_cache_and_replies_as_without(start_server: Callable[..., LiveServer]) -> None:
    server = start_server()
    add_models(server)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none")
    histories: dict[str, list[dict[str, str]]] = {"sim-ctx": [], "sim-fresh": []}
    prompt_tokens: dict[str, list[int]] = {"sim-ctx": [], "sim-fresh": []}
    for turn in range(5):
        replies = []
        for model, messages in histories.items():
            messages.append({"role": "user", "content": f"question number {turn} about the weather"})
            reply = client.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]
            text = reply.choices[0].message.content or ""
            messages.append({"role": "assistant", "content": text})
            assert reply.usage is not None
            prompt_tokens[model].append(reply.usage.prompt_tokens)
            replies.append(text)
        assert replies[0] == replies[1] and replies[0].startswith(" ctx")  # the sim's context digest
    assert prompt_tokens["sim-ctx"][0] == prompt_tokens["sim-fresh"][0]
    reused, full = prompt_tokens["sim-ctx"][1:], prompt_tokens["sim-fresh"][1:]
    assert all(a < b for a, b in zip(reused, full, strict=True))


def test_lora_variants_are_listed_and_run_on_the_base(start_server: Callable[..., LiveServer]) -> None:
    server = start_server()
    add_models(server)
    ids = [m["id"] for m in httpx.get(server.url + "/v1/models").json()["data"]]
    assert ids.index("sim-ctx:style") == ids.index("sim-ctx") + 1
    assert "sim-ctx:style" in [m["name"] for m in httpx.get(server.url + "/api/tags").json()["models"]]
    assert httpx.get(server.url + "/v1/models/sim-ctx:style").json()["id"] == "sim-ctx:style"
    for model in ("sim-ctx:style", "sim-ctx", "sim-ctx:style"):
        body = {"model": model, "messages": [{"role": "user", "content": "[[n=3]] one two"}]}
        reply = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=30).json()
        assert reply["model"] == model
        words = reply["choices"][0]["message"]["content"].split()
        assert all(w.startswith("style:") for w in words[1:]) == model.endswith(":style")
    assert [m["name"] for m in httpx.get(server.url + "/api/ps").json()["models"]] == ["sim-ctx"]
