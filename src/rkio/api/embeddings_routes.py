"""Embeddings and rerank: OpenAI ``/v1/embeddings``, Ollama ``/api/embed`` and ``/api/embeddings``, and the
Jina/Cohere-shaped ``/v1/rerank`` (also ``/rerank``, as llama.cpp's server offers it).

Vectors come from ``rkio.engine.embedding`` (hidden states pooled per model.toml, L2-normalised). OpenAI's
``encoding_format: base64`` is the little-endian float32 bytes in base64, which the ``openai`` package
asks for by default. Token-id inputs are refused: OpenAI clients tokenize with tiktoken, whose ids are not
the model's.
"""

from __future__ import annotations

import base64
import struct
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from rkio.api.access import record_of
from rkio.api.engine_request import keep_alive_seconds, model_name, parse_body
from rkio.api.errors import BadParameter
from rkio.api.ollama_routes import ollama_name
from rkio.config import Settings
from rkio.engine import embedding
from rkio.engine.types import Engine

MAX_INPUTS = 2048  # OpenAI's limit on inputs per embeddings request
MAX_DOCUMENTS = 1000


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class OpenAIEmbeddingsBody(_Body):
    model: str | None = None
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)


class OllamaEmbedBody(_Body):
    model: str
    input: str | list[str]
    dimensions: int | None = Field(default=None, ge=1)
    keep_alive: str | float | None = None
    truncate: bool | None = None


class OllamaEmbeddingsBody(_Body):
    model: str
    prompt: str
    keep_alive: str | float | None = None


class RerankDocument(_Body):
    text: str


class RerankBody(_Body):
    model: str | None = None
    query: str
    documents: list[str | RerankDocument]
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = False


def _texts(value: str | list[str] | list[int] | list[list[int]], param: str) -> list[str]:
    items = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(item, str) for item in items):
        raise BadParameter(f"{param}: token ids are not accepted (they would have to be this model's own); "
                           "send text (LangChain: OpenAIEmbeddings(check_embedding_ctx_length=False))", param)
    if not 0 < len(items) <= MAX_INPUTS:
        raise BadParameter(f"{param}: between 1 and {MAX_INPUTS} inputs per request", param)
    return [str(item) for item in items]


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


class EmbeddingRoutes:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    def routes(self) -> list[Route]:
        return [Route("/v1/embeddings", self.openai_embeddings, methods=["POST"]),
                Route("/api/embed", self.ollama_embed, methods=["POST"]),
                Route("/api/embeddings", self.ollama_embeddings, methods=["POST"]),
                Route("/v1/rerank", self.rerank, methods=["POST"]),
                Route("/rerank", self.rerank, methods=["POST"])]

    async def openai_embeddings(self, request: Request) -> JSONResponse:
        body = await parse_body(request, OpenAIEmbeddingsBody)
        model = model_name(body.model, self.settings)
        texts = _texts(body.input, "input")
        record_of(request.scope).model = model
        result = await embedding.embed(self.engine, model, texts, dimensions=body.dimensions)
        data = [{"object": "embedding", "index": i, "embedding": _encode(v, body.encoding_format)}
                for i, v in enumerate(result.vectors)]
        usage = {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}
        return JSONResponse({"object": "list", "data": data, "model": model, "usage": usage})

    async def ollama_embed(self, request: Request) -> JSONResponse:
        started = time.perf_counter()
        body = await parse_body(request, OllamaEmbedBody)
        model = ollama_name(body.model)
        texts = _texts(body.input, "input")
        record_of(request.scope).model = model
        result = await embedding.embed(self.engine, model, texts, dimensions=body.dimensions,
                                       keep_alive=keep_alive_seconds(body.keep_alive))
        load = result.done.timings.load_s or 0.0
        return JSONResponse({"model": model, "embeddings": result.vectors,
                             "total_duration": int((time.perf_counter() - started) * 1e9),
                             "load_duration": int(load * 1e9), "prompt_eval_count": result.prompt_tokens})

    async def ollama_embeddings(self, request: Request) -> JSONResponse:
        body = await parse_body(request, OllamaEmbeddingsBody)
        model = ollama_name(body.model)
        record_of(request.scope).model = model
        if not body.prompt:  # Ollama answers an empty prompt with an empty embedding (a load)
            self.engine.model(model)
            return JSONResponse({"embedding": []})
        result = await embedding.embed(self.engine, model, [body.prompt],
                                       keep_alive=keep_alive_seconds(body.keep_alive))
        return JSONResponse({"embedding": result.vectors[0]})

    async def rerank(self, request: Request) -> JSONResponse:
        body = await parse_body(request, RerankBody)
        model = model_name(body.model, self.settings)
        if not 0 < len(body.documents) <= MAX_DOCUMENTS:
            raise BadParameter(f"documents: between 1 and {MAX_DOCUMENTS} documents per request", "documents")
        texts = [d if isinstance(d, str) else d.text for d in body.documents]
        record_of(request.scope).model = model
        ranked, tokens = await embedding.rerank(self.engine, model, body.query, texts)
        results: list[dict[str, Any]] = []
        for item in ranked[: body.top_n]:
            entry: dict[str, Any] = {"index": item.index, "relevance_score": item.score}
            if body.return_documents:
                entry["document"] = {"text": texts[item.index]}
            results.append(entry)
        return JSONResponse({"object": "list", "model": model, "results": results,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
