"""Embeddings and rerank on a live server over the simulator, with the official ``openai`` and ``ollama``
packages (and raw HTTP for rerank, which neither package has a method for).

The simulator's hidden state of a prompt token is ``simkit.hidden_row(word)``, so the expected vectors are
computed exactly: last-token pooling of "alpha beta" is beta's row, mean pooling the mean of both rows,
each L2-normalised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import httpx
import ollama
import openai
import pytest
from live_server import LiveServer

import simkit


def _unit(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


def _last(text: str) -> list[float]:
    return _unit(simkit.hidden_row(text.split()[-1]))


def _mean(text: str) -> list[float]:
    rows = [simkit.hidden_row(w) for w in text.split()]
    return _unit([sum(c) / len(rows) for c in zip(*rows, strict=True)])


def _add_models(server: LiveServer) -> None:
    """sim-embed (last-token pooling), sim-mean (mean pooling), sim-rerank (yes/no scoring)."""
    models = server.log_path.parent / "models"
    for name, toml in (
        ("sim-embed", 'pooling = "last"\n'),
        ("sim-mean", 'pooling = "mean"\n'),
        ("sim-rerank", f'rerank_yes_token = {simkit.token_id("yes")}\n'
                       f'rerank_no_token = {simkit.token_id("no")}\n'
                       'rerank_template = "{document} {query}"\n'),
    ):
        simkit.make_model(models / name / f"{name}.rkllm", 32 << 20)
        (Path(models / name) / "model.toml").write_text(toml)


def test_openai_embeddings_single_batch_base64_float_and_dimensions(server: LiveServer) -> None:
    _add_models(server)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    single = client.embeddings.create(model="sim-embed", input="alpha beta")  # base64 on the wire
    assert single.data[0].embedding == pytest.approx(_last("alpha beta"), abs=1e-6)
    assert single.usage.prompt_tokens > 0 and single.model == "sim-embed"
    texts = ["alpha beta", "gamma", "delta epsilon zeta"]
    batch = client.embeddings.create(model="sim-embed", input=texts, encoding_format="float")
    assert [d.index for d in batch.data] == [0, 1, 2]
    tokens = 0
    for text, item in zip(texts, batch.data, strict=True):
        assert item.embedding == pytest.approx(_last(text), abs=1e-6)
        assert math.isclose(math.fsum(v * v for v in item.embedding), 1.0, abs_tol=1e-9)
        alone = client.embeddings.create(model="sim-embed", input=text, encoding_format="float")
        assert alone.data[0].embedding == item.embedding  # a batch gives exactly the single vectors
        tokens += alone.usage.prompt_tokens
    assert batch.usage.prompt_tokens == tokens
    short = client.embeddings.create(model="sim-embed", input="alpha beta", dimensions=8)
    assert short.data[0].embedding == pytest.approx(_unit(simkit.hidden_row("beta")[:8]), abs=1e-6)


def test_openai_embedding_errors(server: LiveServer) -> None:
    _add_models(server)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such", input="x")
    for kwargs in ({"input": [[1, 2, 3]]}, {"input": ""}, {"input": []},
                   {"input": "x", "dimensions": 65}, {"input": "x", "encoding_format": "int8"}):
        with pytest.raises(openai.BadRequestError) as info:
            client.embeddings.create(model="sim-embed", **kwargs)  # type: ignore[arg-type]
        assert info.value.status_code == 400
    with pytest.raises(openai.BadRequestError, match="token ids"):
        client.embeddings.create(model="sim-embed", input=[[1, 2, 3]])
    with pytest.raises(openai.BadRequestError) as info:  # sim-echo has 512 tokens of context
        client.embeddings.create(model="sim-echo", input="w " * 2000)
    assert info.value.code == "context_length_exceeded"


def test_ollama_embed_and_legacy_embeddings(server: LiveServer) -> None:
    _add_models(server)
    client = ollama.Client(host=server.url)
    reply = client.embed(model="sim-mean", input=["alpha beta", "gamma delta"])
    assert [list(v) for v in reply.embeddings] == [pytest.approx(_mean("alpha beta"), abs=1e-6),
                                                    pytest.approx(_mean("gamma delta"), abs=1e-6)]
    assert reply.prompt_eval_count and reply.total_duration and reply.total_duration > 0
    one = client.embed(model="sim-mean:latest", input="alpha beta", dimensions=4)
    assert list(one.embeddings[0]) == pytest.approx(_unit(_mean_raw("alpha beta")[:4]), abs=1e-6)
    legacy = client.embeddings(model="sim-embed", prompt="alpha beta")
    assert list(legacy.embedding) == pytest.approx(_last("alpha beta"), abs=1e-6)
    with pytest.raises(ollama.ResponseError) as info:
        client.embed(model="no-such", input="x")
    assert info.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as info:
        client.embed(model="sim-mean", input=["ok", ""])
    assert info.value.status_code == 400


def _mean_raw(text: str) -> list[float]:
    rows = [simkit.hidden_row(w) for w in text.split()]
    return [sum(c) / len(rows) for c in zip(*rows, strict=True)]


def test_rerank_scores_sorts_and_limits(server: LiveServer) -> None:
    _add_models(server)
    documents = ["maybe later", "yes indeed", "no way", "yes again"]
    reply = httpx.post(server.url + "/v1/rerank", timeout=30, json={
        "model": "sim-rerank", "query": "is it?", "documents": documents, "top_n": 3,
        "return_documents": True})
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    # the simulator's logits peak at the first word: "yes" documents score sigmoid(10), "no" sigmoid(-10)
    assert [r["index"] for r in results] == [1, 3, 0]
    assert results[0]["relevance_score"] == pytest.approx(1 / (1 + math.exp(-10)))
    assert results[2]["relevance_score"] == pytest.approx(0.5)
    assert results[0]["document"] == {"text": "yes indeed"}
    plain = httpx.post(server.url + "/rerank", timeout=30, json={
        "model": "sim-rerank", "query": "q", "documents": [{"text": "no"}, {"text": "yes"}]}).json()
    assert [r["index"] for r in plain["results"]] == [1, 0] and "document" not in plain["results"][0]
    assert plain["results"][1]["relevance_score"] == pytest.approx(1 / (1 + math.exp(10)))
    not_a_reranker = httpx.post(server.url + "/v1/rerank", timeout=30,
                                json={"model": "sim-embed", "query": "q", "documents": ["a"]})
    assert not_a_reranker.status_code == 400
    assert "rerank_yes_token" in not_a_reranker.json()["error"]["message"]
    missing = httpx.post(server.url + "/v1/rerank", timeout=30, json={"model": "sim-rerank", "query": "q"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "documents"
