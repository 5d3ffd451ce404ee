"""Pulling a model file from Hugging Face (``hf.co/<owner>/<repo>:<file>``) through ``huggingface_hub``.

The hub answers ``HEAD <endpoint>/<repo>/resolve/<revision>/<file>`` with the commit (``X-Repo-Commit``),
the file's ETag (``X-Linked-Etag`` for LFS files: their sha256; else the git blob sha1) and its size
(``X-Linked-Size`` / ``Content-Length``); ``huggingface_hub.get_hf_file_metadata`` reads those and follows
the redirect to the storage. We download with ``huggingface_hub.file_download.http_get`` into
``<models_dir>/.partial/<etag>.partial``, which survives an interrupted pull: the next pull of the same file
resumes it with a ``Range`` request (``hf_hub_download`` itself restarts from zero). The whole file is
then checked against the ETag's hash and only then renamed into ``<models_dir>/<name>/<file>``.
``HF_ENDPOINT`` points the client at a mirror (or, in tests, at a local stand-in).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rkio.engine.registry import EXTENSIONS
from rkio.errors import InvalidRequest, ModelNotFound, RkioError, Unauthorized
from rkio.models.store import ModelStore, check_name

HF_PREFIXES = ("hf.co/", "huggingface.co/")
REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ +-]{0,200}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
SHA1 = re.compile(r"^[0-9a-f]{40}$")
PARTIAL_DIR = ".partial"
SPLIT = re.compile(r"-\d{5}-of-\d{5}\.gguf$")
DEFAULT_TAG = "Q4_K_M"  # Ollama pulls this quantization when a hf.co reference names none

Progress = Callable[[str, int, int], None]
"""(status, completed bytes, total bytes): called from the downloading thread."""


class PullFailed(RkioError):
    """The hub could not be reached or sent something other than what it announced."""

    status = 502
    kind = "pull_failed"


class PullCancelled(Exception):
    """Raised inside the download when the caller gave up; the partial file stays for a resume."""


@dataclass(frozen=True, slots=True)
class HubFile:
    """A parsed ``hf.co/<repo>:<path-or-tag>[@revision]`` reference."""

    repo: str
    path: str  # inside the repo, may have folders; "" until a ``tag`` is resolved
    revision: str
    tag: str | None = None  # a quantization such as Q4_K_M naming one .gguf of the repo (Ollama's way)

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def default_name(self) -> str:
        """The local model name when none is given: the file name without its extension, or for a tag
        ``<repo>-<tag>`` (known before the repository is listed)."""
        if self.tag is not None:
            return check_name(f"{self.repo.split('/', 1)[1]}-{self.tag}")
        return check_name(self.filename.rsplit(".", 1)[0])


def parse_reference(reference: str) -> HubFile:
    """``hf.co/<owner>/<repo>:<file>`` or ``…:<quantization>`` (default Q4_K_M, as Ollama), also
    ``huggingface.co/…``, with an optional ``@revision`` at the end."""
    rest = next((reference[len(p):] for p in HF_PREFIXES if reference.startswith(p)), None)
    if rest is None:
        raise InvalidRequest(f"cannot pull {reference!r}: rkio pulls model files from Hugging Face, "
                             "named hf.co/<owner>/<repo>:<file>.gguf or hf.co/<owner>/<repo>:<quantization>")
    rest, _, revision = rest.partition("@")
    repo, _, path = rest.partition(":")
    if not REPO.match(repo):
        raise InvalidRequest(f"cannot pull {reference!r}: expected hf.co/<owner>/<repo>:<file>")
    if revision and not re.fullmatch(r"[A-Za-z0-9._/-]{1,128}", revision):
        raise InvalidRequest(f"cannot pull {reference!r}: invalid revision {revision!r}")
    path = path or DEFAULT_TAG
    parts = path.split("/")
    if any(not FILE.match(part) or part in (".", "..") for part in parts):
        raise InvalidRequest(f"cannot pull {reference!r}: {path!r} is not a file name in the repository")
    if Path(parts[-1]).suffix not in EXTENSIONS:
        if len(parts) > 1 or "." in path:
            raise InvalidRequest(f"cannot pull {reference!r}: rkio serves .gguf and .rkllm files only")
        return HubFile(repo, "", revision or "main", tag=path)
    return HubFile(repo, path, revision or "main")


def resolve_tag(ref: HubFile, endpoint: str) -> HubFile:
    """The one .gguf of the repository whose name carries the tag (case-insensitive; vision projectors
    and split files, which rkio cannot serve as one file, left out)."""
    from huggingface_hub import HfApi

    if ref.tag is None:
        return ref
    try:
        files = HfApi(endpoint=endpoint).list_repo_files(ref.repo, revision=ref.revision)
    except Exception as exc:
        raise _hub_error(exc, ref) from None
    # whole-word match on the file name: Q4_K matches "x-Q4_K.gguf" but not "x-Q4_K_M.gguf"
    word = re.compile(rf"(^|[^a-z0-9]){re.escape(ref.tag.lower())}(\.gguf$|[^a-z0-9_])")
    ggufs = [f for f in files if f.endswith(".gguf") and "mmproj" not in f.lower() and not SPLIT.search(f)]
    found = [f for f in ggufs if word.search(f.rsplit("/", 1)[-1].lower())]
    if len(found) != 1:
        names = ", ".join(f.rsplit("/", 1)[-1] for f in (found or ggufs)[:12]) or "no .gguf files"
        error = InvalidRequest if found else ModelNotFound
        raise error(f"{ref.repo}: {len(found) or 'no'} .gguf files match {ref.tag!r} ({names}); "
                    "name the file: hf.co/<owner>/<repo>:<file>.gguf")
    return HubFile(ref.repo, found[0], ref.revision)


def _hub_error(exc: Exception, ref: HubFile) -> RkioError:
    from huggingface_hub.errors import (
        GatedRepoError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{ref.repo}:{ref.path}@{ref.revision}"
    if isinstance(exc, GatedRepoError):
        return Unauthorized(f"{ref.repo} is gated: accept its terms on Hugging Face and set HF_TOKEN")
    if isinstance(exc, RepositoryNotFoundError):
        return ModelNotFound(f"repository {ref.repo} not found on Hugging Face (or it is private)")
    if isinstance(exc, RevisionNotFoundError | RemoteEntryNotFoundError):
        return ModelNotFound(f"{where} not found on Hugging Face")
    return PullFailed(f"pulling {where} failed: {exc}")


def _matches(path: Path, etag: str) -> bool:
    """Whether ``path`` hashes to the hub's ETag: sha256 (LFS files) or the git blob sha1 (small files)."""
    if SHA256.match(etag):
        digest = hashlib.sha256()
    elif SHA1.match(etag):
        digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())  # git's object id, not security
    else:
        raise PullFailed(f"the hub sent no checksum for this file (ETag {etag!r}); an unverified file is "
                         "not used")
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest() == etag


def _progress_class(report: Progress, cancelled: Callable[[], bool]) -> type[Any]:
    """A tqdm class for ``http_get`` that reports bytes and stops the download once ``cancelled()``."""
    from huggingface_hub.utils.tqdm import tqdm

    class Reporting(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True  # no terminal output from the server; progress goes to ``report``
            super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
            self.done_bytes = int(kwargs.get("initial") or 0)
            self.total_bytes = int(kwargs.get("total") or 0)

        def update(self, n: float | None = 1) -> bool | None:
            if cancelled():
                raise PullCancelled()
            self.done_bytes += int(n or 0)
            report("downloading", self.done_bytes, self.total_bytes)
            return None

    return Reporting


def pull(store: ModelStore, ref: HubFile, name: str, report: Progress,
         cancelled: Callable[[], bool] = lambda: False, endpoint: str | None = None) -> Path:
    """Download ``ref`` as the model ``name``; blocking (run it in a thread). Returns the model file."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get

    name = check_name(name)
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    ref = resolve_tag(ref, endpoint)
    url = hf_hub_url(ref.repo, ref.path, revision=ref.revision, endpoint=endpoint)
    try:
        meta = get_hf_file_metadata(url, endpoint=endpoint)
    except Exception as exc:
        raise _hub_error(exc, ref) from None
    if meta.etag is None or meta.commit_hash is None or meta.size is None:
        raise PullFailed(f"{endpoint} did not answer like a Hugging Face hub (no ETag, commit or size)")
    etag, size = meta.etag, meta.size
    report("pulling manifest", 0, 0)  # after the metadata: a missing file fails before any progress line
    existing = store.models_dir / name / ref.filename
    if existing.is_file() and existing.stat().st_size == size and _matches(existing, etag):
        report("success", size, size)  # already there, verified: nothing to download
        return existing
    partial_dir = store.models_dir / PARTIAL_DIR
    partial_dir.mkdir(parents=True, exist_ok=True)
    partial = partial_dir / f"{re.sub(r'[^0-9A-Za-z]', '_', etag)}.partial"
    with partial.open("ab") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InvalidRequest(f"{ref.repo}:{ref.path} is being pulled already") from None
        have = fh.tell()
        if have > size:
            fh.truncate(0)
            have = 0
        if shutil.disk_usage(partial_dir).free < size - have:
            raise PullFailed(f"not enough disk space in {store.models_dir}: {size - have} bytes needed")
        report("downloading", have, size)
        try:
            http_get(meta.location, fh, resume_size=have, expected_size=size, displayed_filename=ref.filename,
                     tqdm_class=_progress_class(report, cancelled))
        except PullCancelled:
            raise
        except Exception as exc:
            raise _hub_error(exc, ref) from None
        fh.flush()
        os.fsync(fh.fileno())
        report("verifying digest", size, size)
        if not _matches(partial, etag):
            partial.unlink()
            raise PullFailed(f"{ref.filename}: checksum mismatch (expected {etag}); the partial file was "
                             "removed, pull again")
        report("writing model", size, size)
        target = store.place(name, partial, ref.filename)
    report("success", size, size)
    return target
