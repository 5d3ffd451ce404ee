"""Uploaded model files (Ollama's ``/api/blobs/sha256:<hex>``), kept in ``<models_dir>/.blobs/``.

The ``ollama`` client's way to make a model from a file on the client's machine: it uploads the file
(``create_blob``), then names it by digest in ``/api/create``'s ``files``. A blob is written to a partial
file while it is hashed, refused when it would leave less than ``DISK_RESERVE`` free, and renamed to its
digest only when the hash matches, so a blob that exists is always complete and correct.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from pathlib import Path

from rkio.errors import InvalidRequest, PayloadTooLarge

BLOBS_DIR = ".blobs"
DIGEST = re.compile(r"^sha256[:-]([0-9a-f]{64})$")
DISK_RESERVE = 1 << 30  # an upload never fills the disk: this much stays free


def blob_path(models_dir: Path, digest: str) -> Path:
    """Where the blob ``sha256:<hex>`` lives; InvalidRequest for anything that is not such a digest."""
    match = DIGEST.match(digest)
    if match is None:
        raise InvalidRequest(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return Path(models_dir) / BLOBS_DIR / f"sha256-{match.group(1)}"


class BlobWriter:
    """Receives one upload in chunks; ``finish`` checks the digest and makes the blob visible."""

    def __init__(self, models_dir: Path, digest: str, declared_size: int | None) -> None:
        self.target = blob_path(models_dir, digest)
        self.expected = digest.split(":", 1)[-1].removeprefix("sha256-")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.room = shutil.disk_usage(self.target.parent).free - DISK_RESERVE
        if declared_size is not None and declared_size > self.room:
            raise PayloadTooLarge(f"the upload of {declared_size} bytes does not fit: {max(self.room, 0)} "
                                  "bytes may be used in the models directory")
        self.partial = self.target.with_name(f".{self.target.name}.{uuid.uuid4().hex}.partial")
        self._file = self.partial.open("wb")
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.room:
            raise PayloadTooLarge(f"the upload exceeds the {max(self.room, 0)} bytes that may be used in the "
                                  "models directory")
        self._hash.update(chunk)
        self._file.write(chunk)

    def finish(self) -> Path:
        self._file.close()
        if self._hash.hexdigest() != self.expected:
            self.abort()
            raise InvalidRequest(f"the upload's sha256 is {self._hash.hexdigest()}, not {self.expected}")
        os.replace(self.partial, self.target)
        return self.target

    def abort(self) -> None:
        self._file.close()
        self.partial.unlink(missing_ok=True)
