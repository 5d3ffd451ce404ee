"""A local stand-in for the Hugging Face hub's file endpoints, for pull tests that never touch the network.

It serves what ``huggingface_hub.get_hf_file_metadata`` and ``http_get`` use (huggingface_hub
file_download.py): ``HEAD /<repo>/resolve/<revision>/<path>`` answers with ``X-Repo-Commit``, an ``ETag``
(for LFS files, as on the hub, a redirect to the storage with ``X-Linked-Etag`` = sha256 and
``X-Linked-Size``), and ``GET`` of the storage URL honours ``Range: bytes=N-`` with 206 and
``Content-Range``. ``GET /api/models/<repo>/tree/<revision>`` lists the repo's files
(``HfApi.list_repo_files``, what a quantization tag is resolved with). Unknown repos answer 404 with
``X-Error-Code: RepoNotFound``, unknown files 404 with ``X-Error-Code: EntryNotFound``, as the hub does
(huggingface_hub utils/_http.py maps those codes). Every request is recorded, and a test can have
corrupted bytes served (``corrupt``).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubFile:
    data: bytes
    lfs: bool = True  # LFS files: ETag = sha256, served through a redirect; else ETag = git blob sha1

    @property
    def etag(self) -> str:
        if self.lfs:
            return hashlib.sha256(self.data).hexdigest()
        return hashlib.sha1(f"blob {len(self.data)}\0".encode() + self.data).hexdigest()


@dataclass
class StandInHub:
    files: dict[tuple[str, str], HubFile] = field(default_factory=dict)  # (repo, path) -> file
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range)
    corrupt: bool = False  # flip the first byte of every body
    url: str = ""
    _server: ThreadingHTTPServer | None = None

    def add(self, repo: str, path: str, data: bytes, lfs: bool = True) -> HubFile:
        item = HubFile(data, lfs)
        self.files[(repo, path)] = item
        return item

    def start(self) -> StandInHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                hub._serve(self, body=False)

            def do_GET(self) -> None:
                hub._serve(self, body=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _find(self, path: str) -> tuple[str, HubFile | None, bool] | None:
        """(repo, file, is_storage_url) for /<owner>/<repo>/resolve/<rev>/<path> or /storage/<etag>."""
        if path.startswith("/storage/"):
            etag = path.removeprefix("/storage/")
            match = next((f for f in self.files.values() if f.etag == etag), None)
            return ("", match, True)
        parts = path.lstrip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return None
        repo, file_path = "/".join(parts[:2]), "/".join(parts[4:])
        if not any(r == repo for r, _ in self.files):
            return (repo, None, False)
        return (repo, self.files.get((repo, file_path)), False)

    def _tree(self, handler: BaseHTTPRequestHandler, path: str) -> None:
        parts = path.removeprefix("/api/models/").split("/")
        repo = "/".join(parts[:2])
        listing = [{"type": "file", "path": p, "size": len(f.data), "oid": f.etag}
                   for (r, p), f in self.files.items() if r == repo]
        data = json.dumps(listing).encode()
        handler.send_response(200 if listing else 404)
        if not listing:
            handler.send_header("X-Error-Code", "RepoNotFound")
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _serve(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(handler.path.split("?", 1)[0])
        rng = handler.headers.get("Range")
        self.requests.append((handler.command, path, rng))
        if path.startswith("/api/models/") and "/tree/" in path:
            self._tree(handler, path)
            return
        found = self._find(path)
        if found is None or found[1] is None:
            code = "EntryNotFound" if found is not None and (found[0] or found[2]) and any(
                r == found[0] for r, _ in self.files) else "RepoNotFound"
            handler.send_response(404)
            handler.send_header("X-Error-Code", code)
            handler.send_header("X-Repo-Commit", COMMIT)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        _, item, storage = found
        if item.lfs and not storage:  # the hub redirects LFS files to its storage
            handler.send_response(302)
            handler.send_header("Location", f"{self.url}/storage/{item.etag}")
            handler.send_header("X-Repo-Commit", COMMIT)
            handler.send_header("X-Linked-Etag", f'"{item.etag}"')
            handler.send_header("X-Linked-Size", str(len(item.data)))
            handler.send_header("ETag", '"git-object-of-the-pointer"')
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        data = bytes([item.data[0] ^ 0xFF]) + item.data[1:] if self.corrupt and item.data else item.data
        start = int(rng.removeprefix("bytes=").split("-", 1)[0]) if rng else 0
        handler.send_response(206 if rng else 200)
        if rng:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        handler.send_header("Content-Length", str(len(data) - start))
        handler.send_header("ETag", f'"{item.etag}"')
        handler.send_header("X-Repo-Commit", COMMIT)
        handler.end_headers()
        if not body:
            return
        handler.wfile.write(data[start:])
