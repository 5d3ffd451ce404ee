"""Embeddings from the real default model (llama.cpp, embedding output switched on for the run) through a
live server and the official ``openai`` and ``ollama`` packages."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import ollama
import openai
import pytest
from cpu_server import MODEL, Server

pytestmark = pytest.mark.model

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def _answer(client: openai.OpenAI) -> str:
    reply = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0,  # type: ignore
                                           max_tokens=12)
    return reply.choices[0].message.content or ""


def test_openai_embeddings_batch_matches_singles_and_chat_is_unchanged(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    before = _answer(client)
    texts = ["The cat sat on the mat.", "Quarterly revenue grew by twelve percent."]
    batch = client.embeddings.create(model=MODEL, input=texts)
    assert batch.usage.prompt_tokens > 0 and len(batch.data) == 2
    width = len(batch.data[0].embedding)
    assert width >= 256  # the model's hidden size, not a stand-in
    for text, item in zip(texts, batch.data, strict=True):
        assert math.isclose(math.fsum(v * v for v in item.embedding), 1.0, abs_tol=1e-6)
        alone = client.embeddings.create(model=MODEL, input=text, encoding_format="float")
        assert alone.data[0].embedding == pytest.approx(item.embedding, abs=1e-5)
    assert batch.data[0].embedding != batch.data[1].embedding
    short = client.embeddings.create(model=MODEL, input=texts[0], dimensions=64)
    assert len(short.data[0].embedding) == 64
    assert _answer(client) == before  # the KV cache was cleared around the embedding runs


def test_ollama_embed_and_rerank_refused_without_yes_no_tokens(server: Server) -> None:
    client = ollama.Client(host=server.url)
    reply = client.embed(model=MODEL, input=["alpha", "beta"])
    assert len(reply.embeddings) == 2 and reply.embeddings[0] != reply.embeddings[1]
    legacy = client.embeddings(model=MODEL, prompt="alpha")
    assert list(legacy.embedding) == pytest.approx(list(reply.embeddings[0]), abs=1e-5)
    refused = httpx.post(f"{server.url}/v1/rerank", timeout=60,
                         json={"model": MODEL, "query": "q", "documents": ["a"]})
    assert refused.status_code == 400 and "rerank_yes_token" in refused.json()["error"]["message"]


def test_rerank_from_llama_cpp_logits_on_a_copy_set_up_as_reranker(server: Server) -> None:
    """The yes/no scoring path on llama.cpp's last-position logits (the default model is no reranker, so
    only the mechanics are checked: scores are probabilities, sorted, the same on every call)."""
    client = ollama.Client(host=server.url)
    client.copy(MODEL, "rerank-probe")
    try:
        shown = httpx.post(f"{server.url}/api/show", json={"model": "rerank-probe"}, timeout=30).json()
        toml = Path(shown["model_info"]["rkio.path"]).parent / "model.toml"
        toml.write_text(toml.read_text() + "rerank_yes_token = 1\nrerank_no_token = 2\n")
        body = {"model": "rerank-probe", "query": "capital of France",
                "documents": ["Paris is the capital of France.", "Bananas are yellow.", "France"],
                "return_documents": True}
        first = httpx.post(f"{server.url}/v1/rerank", json=body, timeout=120).json()
        scores = [r["relevance_score"] for r in first["results"]]
        assert sorted(r["index"] for r in first["results"]) == [0, 1, 2]
        assert scores == sorted(scores, reverse=True) and all(0.0 < s < 1.0 for s in scores)
        again = httpx.post(f"{server.url}/v1/rerank", json=body, timeout=120).json()
        assert again["results"] == first["results"]
    finally:
        client.delete("rerank-probe")
    assert "rerank-probe" not in {m.model for m in client.list().models}
