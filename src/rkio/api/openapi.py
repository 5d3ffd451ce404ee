"""The OpenAPI document served at ``GET /openapi.json``, built from the pydantic request models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from rkio import __version__
from rkio.api.anthropic_schema import CountTokensRequest, MessagesRequest
from rkio.api.ollama_schema import ChatRequest, GenerateRequest, ShowRequest
from rkio.api.openai_schema import ChatCompletionRequest, CompletionRequest

_REF = "#/components/schemas/{model}"
_POST: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/completions": CompletionRequest,
    "/api/chat": ChatRequest,
    "/api/generate": GenerateRequest,
    "/api/show": ShowRequest,
    "/v1/messages": MessagesRequest,
    "/v1/messages/count_tokens": CountTokensRequest,
}
_GET = ("/v1/models", "/api/tags", "/api/ps", "/api/version", "/health", "/ready", "/metrics", "/rkio/status")


def _responses(streams: bool) -> dict[str, Any]:
    json_object = {"application/json": {"schema": {"type": "object"}}}
    ok: dict[str, Any] = {"description": "OK", "content": dict(json_object)}
    if streams:
        ok["content"]["text/event-stream"] = {"schema": {"type": "string"}}
        ok["content"]["application/x-ndjson"] = {"schema": {"type": "string"}}
    return {"200": ok, "default": {"description": "error in the protocol's JSON shape",
                                   "content": {"application/json": {"schema": {"type": "object"}}}}}


def build_openapi() -> dict[str, Any]:
    refs, defs = models_json_schema([(m, "validation") for m in _POST.values()], ref_template=_REF)
    paths: dict[str, Any] = {}
    for path, model in _POST.items():
        schema = refs[(model, "validation")]
        paths[path] = {"post": {
            "operationId": path.strip("/").replace("/", "_"),
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "responses": _responses(streams=path not in ("/api/show", "/v1/messages/count_tokens"))}}
    for path in _GET:
        paths[path] = {"get": {"operationId": path.strip("/").replace("/", "_") + "_get",
                               "responses": _responses(streams=False)}}
    paths["/v1/models/{model_id}"] = {"get": {
        "operationId": "v1_models_get_one",
        "parameters": [{"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": _responses(streams=False)}}
    return {"openapi": "3.1.0", "info": {"title": "rkio", "version": __version__},
            "paths": paths, "components": {"schemas": defs.get("$defs", {})}}
