"""Embeddings and rerank scores from a model's hidden states and logits, through the engine's scheduler.

Each input is one run in an rkllm infer mode (``GenerateParams.mode``): ``hidden``
(RKLLM_INFER_GET_LAST_HIDDEN_LAYER, one row of ``embd_size`` floats per prompt token) for embeddings,
``logits`` (RKLLM_INFER_GET_LOGITS) for rerank. Runs are queued like any generation (same lanes, same
FIFO), with the prompt sent verbatim (no chat template) and the KV cache cleared before the run
(``HandleState.clear_kv``) and not kept after it (``keep_history`` false), so one input never sees
another's context and a batch gives the same vectors as single calls.

Pooling follows the model's ``pooling`` (model.toml): ``last`` takes the last token's row (what
Qwen3-Embedding is trained for), ``mean`` averages the rows. Vectors are L2-normalised; ``dimensions``
keeps the first n components and normalises again (Matryoshka truncation, as OpenAI's ``dimensions``).
A reranker scores a document by P(yes) = sigmoid(logit[yes] - logit[no]) at the last position, the
two-way softmax Qwen3-Reranker's model card computes; model.toml names the two token ids.
"""

from __future__ import annotations

import array
import math
import re
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from rkio.engine.types import Done, Engine, GenerationRequest, HandleState, ModelSpec
from rkio.errors import InvalidRequest, RuntimeFailure
from rkio.runtime.base import GenerateParams, InferMode, RunOutputs

# Qwen3-Reranker's prompt (its model card's format_instruction with the default instruction).
DEFAULT_RERANK_TEMPLATE = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
    "Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n"
    "<Instruct>: Given a web search query, retrieve relevant passages that answer the query\n"
    "<Query>: {query}\n<Document>: {document}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
CLEAN_HANDLE = HandleState(owner="", clear_kv=True)
PLACEHOLDER = re.compile(r"\{query\}|\{document\}")


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: list[list[float]]
    prompt_tokens: int
    done: Done  # the last run's (timings for Ollama's durations)


@dataclass(frozen=True, slots=True)
class Ranked:
    index: int
    score: float


def rows(outputs: RunOutputs) -> list[list[float]]:
    """The float32 rows of a run's output block."""
    values = array.array("f", outputs.data)
    if sys.byteorder != "little":
        values.byteswap()
    n_rows, width = outputs.shape[0], outputs.shape[-1]
    if len(values) != n_rows * width or n_rows == 0:
        raise RuntimeFailure(f"the runtime returned {len(values)} floats for a block of {outputs.shape}")
    return [values[i * width:(i + 1) * width].tolist() for i in range(n_rows)]


def pool(block: Sequence[Sequence[float]], pooling: str) -> list[float]:
    """One vector from per-token rows: the last row, or their mean."""
    if pooling == "last":
        return list(block[-1])
    n = len(block)
    return [sum(column) / n for column in zip(*block, strict=True)]


def normalise(vector: Sequence[float], dimensions: int | None = None) -> list[float]:
    """L2-normalised, optionally truncated to its first ``dimensions`` components first."""
    if dimensions is not None:
        if not 0 < dimensions <= len(vector):
            raise InvalidRequest(f"dimensions must be between 1 and {len(vector)} for this model")
        vector = vector[:dimensions]
    norm = math.sqrt(math.fsum(v * v for v in vector))
    return [v / norm for v in vector] if norm > 0 else [0.0 for _ in vector]


def rerank_prompt(spec: ModelSpec, query: str, document: str) -> str:
    """The reranker's prompt; one pass, so a query that contains "{document}" stays as it is."""
    template = spec.rerank_template or DEFAULT_RERANK_TEMPLATE
    values = {"{query}": query, "{document}": document}
    return PLACEHOLDER.sub(lambda m: values[m.group(0)], template)


def rerank_tokens(spec: ModelSpec) -> tuple[int, int]:
    if spec.rerank_yes_token is None or spec.rerank_no_token is None:
        raise InvalidRequest(f"model {spec.name!r} is not set up as a reranker: its model.toml needs "
                             "rerank_yes_token and rerank_no_token (the token ids of \"yes\" and \"no\")")
    return spec.rerank_yes_token, spec.rerank_no_token


def score(outputs: RunOutputs, yes: int, no: int) -> float:
    """P(yes) at the last position from the two logits (the two-way softmax)."""
    last = rows(outputs)[-1]
    if max(yes, no) >= len(last):
        raise InvalidRequest(f"rerank token ids {yes}/{no} are outside the model's vocabulary of {len(last)}")
    return 1.0 / (1.0 + math.exp(-(last[yes] - last[no])))


async def run_mode(engine: Engine, model: str, text: str, mode: InferMode,
                   keep_alive: float | None = None) -> tuple[RunOutputs, Done]:
    """One scheduled run of ``text`` in ``mode``; its output block and its Done."""
    request = GenerationRequest(model=model, runtime_input=GenerateParams(prompt=text, mode=mode),
                                handle_state=CLEAN_HANDLE, keep_alive=keep_alive,
                                request_id=f"{mode}-{secrets.token_hex(8)}")
    done: Done | None = None
    events = engine.generate(request)
    try:
        async for event in events:
            if isinstance(event, Done):
                done = event
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
    if done is None or done.outputs is None or done.outputs.kind != mode:
        raise RuntimeFailure(f"the runtime returned no {mode} output for {model}")
    return done.outputs, done


async def embed(engine: Engine, model: str, texts: Sequence[str], *, dimensions: int | None = None,
                keep_alive: float | None = None) -> Embeddings:
    """One normalised vector per text, pooled as the model's ``pooling`` says."""
    if not texts:
        raise InvalidRequest("input must not be empty")
    if any(not text for text in texts):
        raise InvalidRequest("input must not contain empty strings")
    spec = engine.model(model)
    vectors, tokens = [], 0
    done: Done | None = None
    for text in texts:
        outputs, done = await run_mode(engine, spec.name, text, "hidden", keep_alive)
        vectors.append(normalise(pool(rows(outputs), spec.pooling), dimensions))
        tokens += done.usage.prompt_tokens
    assert done is not None
    return Embeddings(vectors, tokens, done)


async def rerank(engine: Engine, model: str, query: str, documents: Sequence[str],
                 keep_alive: float | None = None) -> tuple[list[Ranked], int]:
    """Every document's relevance to ``query``, best first (ties keep their order); and prompt tokens."""
    spec = engine.model(model)
    yes, no = rerank_tokens(spec)
    ranked, tokens = [], 0
    for index, document in enumerate(documents):
        outputs, done = await run_mode(engine, spec.name, rerank_prompt(spec, query, document), "logits",
                                       keep_alive)
        ranked.append(Ranked(index, score(outputs, yes, no)))
        tokens += done.usage.prompt_tokens
    ranked.sort(key=lambda r: -r.score)
    return ranked, tokens
