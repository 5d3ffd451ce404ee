"""Ollama model management on a live server, with the official ``ollama`` package, raw HTTP and the CLI:
pull from a local stand-in for Hugging Face (``HF_ENDPOINT``), create, copy, delete, and their errors."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import ollama
import pytest
from live_server import LiveServer

from hubkit import StandInHub

REPO = "someone/sim-GGUF"
MODEL_BYTES = b"RKSIM\n\n" + bytes(3 << 20)  # a simulated .rkllm model the server can load


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInHub]:
    server = StandInHub().start()
    server.add(REPO, "pulled-sim.rkllm", MODEL_BYTES)
    monkeypatch.setenv("HF_ENDPOINT", server.url)  # the server's environment: it never reaches the network
    yield server
    server.stop()


@pytest.fixture
def hub_server(hub: StandInHub, start_server: Callable[..., LiveServer]) -> Iterator[LiveServer]:
    live = start_server()
    yield live
    assert live.stop() == 0, live.log()


def _models_dir(server: LiveServer) -> Path:
    return server.log_path.parent / "models"


def _system(server: LiveServer, model: str) -> str:
    return str(httpx.post(server.url + "/api/show", json={"model": model}, timeout=10).json()["system"])


def test_ollama_pull_streamed_then_chat_with_the_pulled_model(hub_server: LiveServer) -> None:
    client = ollama.Client(host=hub_server.url)
    events = list(client.pull(f"hf.co/{REPO}:pulled-sim.rkllm", stream=True))
    statuses = [e.status for e in events]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert "verifying digest" in statuses
    assert any(e.total == len(MODEL_BYTES) and e.completed == len(MODEL_BYTES) for e in events)
    assert (_models_dir(hub_server) / "pulled-sim" / "pulled-sim.rkllm").read_bytes() == MODEL_BYTES
    assert "pulled-sim" in {m.model for m in client.list().models}
    reply = client.chat(model="pulled-sim", messages=[{"role": "user", "content": "hello [[n=3]]"}])
    assert reply.eval_count == 3


def test_ollama_pull_not_streamed_and_pull_errors(hub_server: LiveServer) -> None:
    client = ollama.Client(host=hub_server.url)
    done = client.pull(f"hf.co/{REPO}:pulled-sim.rkllm")
    assert done.status == "success"
    with pytest.raises(ollama.ResponseError) as info:
        client.pull("llama3.2")  # not a Hugging Face reference: rkio has no registry of its own
    assert info.value.status_code == 400 and "hf.co/" in info.value.error
    with pytest.raises(ollama.ResponseError) as info:
        client.pull(f"hf.co/{REPO}:missing.rkllm", stream=False)
    assert info.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as info:  # streamed: the status is known before the stream
        list(client.pull(f"hf.co/{REPO}:missing.rkllm", stream=True))
    assert info.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as info:
        client.pull(f"hf.co/{REPO}:../../etc/passwd.rkllm")
    assert info.value.status_code == 400
    raw = httpx.post(hub_server.url + "/api/pull", timeout=10,
                     json={"model": f"hf.co/{REPO}:pulled-sim.rkllm", "name": "../escape", "stream": False})
    assert raw.status_code == 400 and "invalid model name" in raw.json()["error"]


def test_ollama_create_copy_delete(server: LiveServer) -> None:
    client = ollama.Client(host=server.url)
    progress = list(client.create(
        model="sim-custom", from_="sim-a/sim-a.rkllm", stream=True, system="Be brief.",
        parameters={"temperature": 0.2, "num_ctx": 1024, "stop": ["###"]},
        template="{{ .System }} {{ .Prompt }}"))
    statuses = [p.status for p in progress]
    assert statuses[-1] == "success"
    assert any("parameter stop" in s for s in statuses) and any("Go template" in s for s in statuses)
    toml = (_models_dir(server) / "sim-custom" / "model.toml").read_text()
    assert "temperature = 0.2" in toml and "max_context_len = 1024" in toml
    assert 'system_prompt = "Be brief."' in toml
    shown = client.show("sim-custom")
    assert shown.parameters and "num_ctx 1024" in shown.parameters and "temperature 0.2" in shown.parameters
    client.copy("sim-custom", "sim-copy")
    assert _system(server, "sim-copy") == "Be brief."
    reply = client.chat(model="sim-copy", messages=[{"role": "user", "content": "hi [[n=2]]"}])
    assert reply.eval_count == 2
    client.delete("sim-copy")  # it was loaded: unloaded first, then removed
    names = {m.model for m in client.list().models}
    assert "sim-copy" not in names and "sim-custom" in names and "sim-copy" not in {
        m.model for m in client.ps().models}
    assert not (_models_dir(server) / "sim-copy").exists()
    assert (_models_dir(server) / "sim-custom" / "sim-a.rkllm").exists()  # the source keeps its file


def test_modelfile_create_and_management_errors(server: LiveServer) -> None:
    client = ollama.Client(host=server.url)
    modelfile = 'FROM sim-echo\nPARAMETER top_k 7\nSYSTEM """two\nlines"""\n'
    raw = httpx.post(server.url + "/api/create", timeout=10,
                     json={"model": "sim-mf", "modelfile": modelfile, "stream": False})
    assert raw.status_code == 200 and raw.json() == {"status": "success"}
    toml = (_models_dir(server) / "sim-mf" / "model.toml").read_text()
    assert "top_k = 7" in toml and "max_context_len = 512" in toml  # sim-echo's settings are kept
    assert _system(server, "sim-mf") == "two\nlines"
    for call, status in ((lambda: client.delete("no-such"), 404),
                         (lambda: client.copy("no-such", "x"), 404),
                         (lambda: client.copy("sim-a", "sim-echo"), 400),  # never overwrites
                         (lambda: client.create(model="bad", from_="/etc/hostname"), 400),
                         (lambda: client.create(model="bad", from_="../outside.rkllm"), 400),
                         (lambda: client.create(model="../bad", from_="sim-a"), 400),
                         (lambda: client.create(model="bad", from_="sim-a", quantize="q4_0"), 400),
                         (lambda: client.create(model="bad", files={"m.gguf": "sha256:00"}), 400)):
        with pytest.raises(ollama.ResponseError) as info:
            call()
        assert info.value.status_code == status, info.value.error
    assert not (_models_dir(server) / "bad").exists()
    bad = httpx.post(server.url + "/api/create", timeout=10,
                     json={"model": "bad", "modelfile": "FROM sim-a\nPARAMETER temperature hot\n"})
    assert bad.status_code == 400 and "temperature" in bad.json()["error"]


def test_ollama_create_from_an_uploaded_file(server: LiveServer, tmp_path: Path) -> None:
    client = ollama.Client(host=server.url)
    local = tmp_path / "mine.rkllm"
    local.write_bytes(MODEL_BYTES)  # bigger than the server's body limit would allow for JSON
    digest = client.create_blob(local)
    assert httpx.head(f"{server.url}/api/blobs/{digest}", timeout=10).status_code == 200
    progress = list(client.create(model="uploaded", files={"mine.rkllm": digest, "README.md": digest},
                                  parameters={"top_k": 3}, stream=True))
    assert progress[-1].status == "success" and any("ignored: README.md" in p.status for p in progress)
    assert (_models_dir(server) / "uploaded" / "mine.rkllm").read_bytes() == MODEL_BYTES
    reply = client.chat(model="uploaded", messages=[{"role": "user", "content": "hi [[n=2]]"}])
    assert reply.eval_count == 2
    other = "sha256:" + "0" * 64
    assert httpx.head(f"{server.url}/api/blobs/{other}", timeout=10).status_code == 404
    wrong = httpx.post(f"{server.url}/api/blobs/{other}", content=b"not that", timeout=10)
    assert wrong.status_code == 400 and "sha256" in wrong.json()["error"]
    assert httpx.head(f"{server.url}/api/blobs/{other}", timeout=10).status_code == 404  # nothing kept
    with pytest.raises(ollama.ResponseError) as info:
        client.create(model="bad", files={"m.gguf": other})
    assert info.value.status_code == 400 and "no uploaded blob" in info.value.error


def test_cli_pull_cp_rm(hub_server: LiveServer) -> None:
    port = hub_server.url.rsplit(":", 1)[1]
    env = {**os.environ, "RKIO_PORT": port}

    def rkio(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "rkio", *args], env=env, capture_output=True,
                              text=True, timeout=60)

    pulled = rkio("pull", f"hf.co/{REPO}:pulled-sim.rkllm", "--name", "cli-sim")
    assert pulled.returncode == 0, pulled.stderr
    assert "pulled" in pulled.stdout and "cli-sim" in pulled.stdout and "verifying digest" in pulled.stderr
    assert rkio("cp", "cli-sim", "cli-sim2").returncode == 0
    listed = rkio("list").stdout
    assert "cli-sim\t" in listed and "cli-sim2\t" in listed
    assert rkio("rm", "cli-sim", "cli-sim2").returncode == 0
    assert "cli-sim" not in rkio("list").stdout
    missing = rkio("rm", "cli-sim")
    assert missing.returncode == 1 and "not found" in missing.stderr
