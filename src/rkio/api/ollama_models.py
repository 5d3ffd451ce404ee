"""Ollama model management: /api/pull, /api/create, /api/copy, /api/delete, /api/blobs/<digest>.

As in Ollama, pull and create stream NDJSON progress (``{"status", "digest"?, "total"?, "completed"?}``)
unless ``stream`` is false, and end with ``{"status": "success"}``. Requests are checked before the stream
starts, so a bad name or reference keeps its real HTTP status; a failure later is the stream's last line,
``{"error": "..."}``. A client that goes away mid-pull stops the download; the partial file stays and the
next pull resumes it. rkio extension: pull takes ``name``, the local model name (default: the file name
without its extension), and its last line carries the name the model is served under.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from rkio.api.access import record_of
from rkio.api.engine_request import parse_body
from rkio.api.errors import BadParameter, as_rkio_error, error_response, ollama_error_body
from rkio.config import Settings
from rkio.engine.registry import EXTENSIONS
from rkio.engine.types import Engine
from rkio.models.blobs import BlobWriter, blob_path
from rkio.models.hub import HubFile, parse_reference, pull
from rkio.models.modelfile import ModelDefinition, parse_modelfile
from rkio.models.store import ModelStore, check_name

BLOBS_PREFIX = "/api/blobs/"  # uploads: bounded by free disk (rkio.models.blobs), not the body limit
PROGRESS_STEP = 1 << 20  # bytes between two "downloading" lines (and every change of status)

Event = dict[str, Any]
Work = Callable[[Callable[[Event], None], Callable[[], bool]], None]
"""``work(emit, cancelled)``: blocking work that reports events and stops once ``cancelled()``."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class PullBody(_Body):
    model: str | None = None
    name: str | None = None  # Ollama's old field for model; for rkio also the local name when model is set
    stream: bool = True


class CreateBody(_Body):
    model: str | None = None
    name: str | None = None
    from_: str | None = Field(default=None, alias="from")
    modelfile: str | None = None
    parameters: dict[str, Any] | None = None
    system: str | None = None
    template: str | None = None
    adapters: dict[str, str] | None = None
    files: dict[str, str] | None = None
    quantize: str | None = None
    stream: bool = True


class CopyBody(_Body):
    source: str
    destination: str


class DeleteBody(_Body):
    model: str | None = None
    name: str | None = None


def _model_name(name: str | None) -> str:
    if not name:
        raise BadParameter("model is required", "model")
    return check_name(name)


def _uploaded(definition: ModelDefinition, body: CreateBody, store: ModelStore) -> None:
    """``files`` / ``adapters`` name uploaded blobs by digest: the one model file, and LoRA adapters."""
    files = body.files or {}
    models = [(name, digest) for name, digest in files.items() if Path(name).suffix in EXTENSIONS]
    if body.files is not None:
        if len(models) != 1:
            raise BadParameter("files: rkio needs exactly one .gguf or .rkllm file", "files")
        others = sorted(set(body.files) - {models[0][0]})
        if others:
            definition.notes.append(f"only the model file is used; ignored: {', '.join(others)}")
        name, digest = models[0]
        definition.source, definition.file_name = str(_blob(store, digest, "files")), Path(name).name
    for name, digest in (body.adapters or {}).items():
        definition.adapters.append((Path(name).stem, str(_blob(store, digest, "adapters"))))


def _blob(store: ModelStore, digest: str, param: str) -> Path:
    path = blob_path(store.models_dir, digest)
    if not path.is_file():
        raise BadParameter(f"{param}: no uploaded blob {digest} (POST it to /api/blobs/{digest} first)",
                           param)
    return path


def _definition(body: CreateBody, store: ModelStore) -> ModelDefinition:
    if body.quantize:
        raise BadParameter("rkio does not quantize models; create the quantized file elsewhere", "quantize")
    definition = parse_modelfile(body.modelfile) if body.modelfile else ModelDefinition()
    if body.from_:
        definition.source = body.from_
    _uploaded(definition, body, store)
    for key, value in (body.parameters or {}).items():
        for item in value if isinstance(value, list) and key == "stop" else [value]:
            definition.add_parameter(key, item)
    if body.system is not None:
        definition.system = body.system
    if body.template is not None:
        definition.set_template(body.template)
    if not definition.source:
        raise BadParameter("a model needs a source: \"from\" or FROM in the modelfile", "from")
    return definition


async def _in_thread(work: Work) -> AsyncIterator[Event]:
    """Run ``work(emit, cancelled)`` in a thread and yield what it emits; closing the iterator cancels it."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event | BaseException | None] = asyncio.Queue()
    stop = False

    def emit(event: Event) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    def run() -> None:
        try:
            work(emit, lambda: stop)
        except BaseException as exc:
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        else:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    task = asyncio.ensure_future(asyncio.to_thread(run))
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop = True  # the download raises at its next chunk; the thread ends soon after
        with contextlib.suppress(BaseException):
            await asyncio.shield(task)


def _throttled(emit: Callable[[Event], None]) -> Callable[[str, int, int], None]:
    """Progress lines at status changes and every ``PROGRESS_STEP`` bytes, not per network chunk."""
    last: list[Any] = ["", -PROGRESS_STEP]

    def report(status: str, completed: int, total: int) -> None:
        if status == last[0] and completed - last[1] < PROGRESS_STEP and completed != total:
            return
        last[:] = [status, completed]
        event: Event = {"status": status}
        if total:
            event.update(total=total, completed=completed)
        emit(event)

    return report


async def _respond(events: AsyncIterator[Event], stream: bool) -> Response:
    """The first event decides the status (errors before it keep theirs); later errors end the stream."""
    try:
        first = await events.__anext__()
    except StopAsyncIteration:
        first = {"status": "success"}
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            await events.aclose()  # type: ignore[attr-defined]
        if isinstance(exc, asyncio.CancelledError):
            raise
        return error_response(as_rkio_error(exc), "ollama")
    if not stream:
        last = first
        try:
            async for event in events:
                last = event
        except Exception as exc:
            return error_response(as_rkio_error(exc), "ollama")
        return JSONResponse(last)

    async def lines() -> AsyncIterator[bytes]:
        yield json.dumps(first).encode() + b"\n"
        try:
            async for event in events:
                yield json.dumps(event).encode() + b"\n"
        except Exception as exc:
            yield json.dumps(ollama_error_body(as_rkio_error(exc))).encode() + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


class OllamaModelRoutes:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.store = ModelStore(settings.models_dir)

    def routes(self) -> list[Route]:
        return [Route("/api/pull", self.pull, methods=["POST"]),
                Route("/api/create", self.create, methods=["POST"]),
                Route("/api/copy", self.copy, methods=["POST"]),
                Route("/api/delete", self.delete, methods=["DELETE", "POST"]),
                Route(BLOBS_PREFIX + "{digest}", self.blob, methods=["HEAD", "POST"])]

    async def pull(self, request: Request) -> Response:
        body = await parse_body(request, PullBody)
        reference = body.model or body.name
        if not reference:
            raise BadParameter("model is required", "model")
        ref: HubFile = parse_reference(reference)
        name = check_name(body.name) if body.model and body.name else ref.default_name()
        record_of(request.scope).model = name

        def work(emit: Callable[[Event], None], cancelled: Callable[[], bool]) -> None:
            report = _throttled(emit)

            def progress(status: str, completed: int, total: int) -> None:
                if status != "success":  # the last line, with the name, is this route's
                    report(status, completed, total)

            path = pull(self.store, ref, name, progress, cancelled)
            emit({"status": "success", "name": name, "path": str(path)})

        return await _respond(_in_thread(work), body.stream)

    async def create(self, request: Request) -> Response:
        body = await parse_body(request, CreateBody)
        name = _model_name(body.model or body.name)
        definition = _definition(body, self.store)
        record_of(request.scope).model = name

        def work(emit: Callable[[Event], None], cancelled: Callable[[], bool]) -> None:
            emit({"status": f"using {definition.source}"})
            for note in definition.notes:
                emit({"status": note})
            emit({"status": "writing model.toml"})
            self.store.create(name, definition)
            emit({"status": "success"})

        return await _respond(_in_thread(work), body.stream)

    async def copy(self, request: Request) -> Response:
        body = await parse_body(request, CopyBody)
        await asyncio.to_thread(self.store.copy, body.source, body.destination)
        return Response(status_code=200)

    async def delete(self, request: Request) -> Response:
        body = await parse_body(request, DeleteBody)
        name = _model_name(body.model or body.name)
        if self.store.exists(name):
            with contextlib.suppress(Exception):  # a model the server does not serve is not loaded either
                self.engine.model(name)
                await self.engine.unload(name)  # its runner stops and its memory is back first
        await asyncio.to_thread(self.store.delete, name)
        return Response(status_code=200)

    async def blob(self, request: Request) -> Response:
        """HEAD: 200 when the blob exists, else 404. POST: store the body as that blob (201)."""
        digest = request.path_params["digest"]
        if request.method == "HEAD":
            return Response(status_code=200 if blob_path(self.store.models_dir, digest).is_file() else 404)
        declared = request.headers.get("content-length")
        writer = await asyncio.to_thread(BlobWriter, self.store.models_dir, digest,
                                         int(declared) if declared and declared.isdigit() else None)
        try:
            async for chunk in request.stream():
                await asyncio.to_thread(writer.write, chunk)
            await asyncio.to_thread(writer.finish)
        except BaseException:
            writer.abort()
            raise
        return Response(status_code=201)
