"""``rkio.models.hub.pull`` through the real ``huggingface_hub`` against a local stand-in for the hub."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubkit import StandInHub
from rkio.engine.registry import ModelRegistry
from rkio.errors import InvalidRequest, ModelNotFound
from rkio.models.hub import PullCancelled, PullFailed, parse_reference, pull
from rkio.models.store import ModelExists, ModelStore

REPO = "someone/tiny-GGUF"
BIG = 12 << 20  # more than huggingface_hub's 10 MiB download chunk: a download takes two chunks


@pytest.fixture
def hub() -> Iterator[StandInHub]:
    server = StandInHub().start()
    yield server
    server.stop()


def _data(size: int) -> bytes:
    return hashlib.sha256(b"seed").digest() * (size // 32) + b"x" * (size % 32)


def _pull(store: ModelStore, hub: StandInHub, path: str, name: str | None = None,
          **kwargs: object) -> tuple[Path, list[tuple[str, int, int]]]:
    seen: list[tuple[str, int, int]] = []
    ref = parse_reference(f"hf.co/{REPO}:{path}")
    target = pull(store, ref, name or ref.default_name(), lambda *e: seen.append(e),
                  endpoint=hub.url, **kwargs)  # type: ignore[arg-type]
    return target, seen


def test_pull_lfs_file_verified_and_served_by_the_registry(hub: StandInHub, tmp_path: Path) -> None:
    data = _data(3 << 20)
    hub.add(REPO, "tiny-Q4.gguf", data)
    store = ModelStore(tmp_path)
    target, seen = _pull(store, hub, "tiny-Q4.gguf")
    assert target == tmp_path / "tiny-Q4" / "tiny-Q4.gguf" and target.read_bytes() == data
    statuses = [s for s, _, _ in seen]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert "verifying digest" in statuses and ("downloading", len(data), len(data)) in seen
    assert ModelRegistry(tmp_path).get("tiny-Q4").path == str(target.resolve())
    assert not list((tmp_path / ".partial").iterdir())  # nothing left behind
    requests = len(hub.requests)
    _pull(store, hub, "tiny-Q4.gguf")  # again: verified in place, not downloaded again
    assert [m for m, _, _ in hub.requests[requests:]] == ["HEAD", "HEAD"]  # resolve + its redirect


def test_a_small_git_file_is_checked_against_its_git_blob_id(hub: StandInHub, tmp_path: Path) -> None:
    hub.add(REPO, "sub/small.gguf", b"GGUF small file", lfs=False)
    target, _ = _pull(ModelStore(tmp_path), hub, "sub/small.gguf", name="small")
    assert target == tmp_path / "small" / "small.gguf" and target.read_bytes() == b"GGUF small file"


def test_an_interrupted_pull_resumes_with_a_range_request(hub: StandInHub, tmp_path: Path) -> None:
    data = _data(BIG)
    item = hub.add(REPO, "big.gguf", data)
    store = ModelStore(tmp_path)
    calls = 0

    def cancelled() -> bool:
        nonlocal calls
        calls += 1
        return calls > 1  # the first chunk is written, the second is refused

    with pytest.raises(PullCancelled):
        _pull(store, hub, "big.gguf", cancelled=cancelled)
    partial = tmp_path / ".partial" / f"{item.etag}.partial"
    have = partial.stat().st_size
    assert 0 < have < len(data) and not (tmp_path / "big").exists()  # nothing half-written in place
    target, seen = _pull(store, hub, "big.gguf")
    assert target.read_bytes() == data
    assert hub.requests[-1] == ("GET", f"/storage/{item.etag}", f"bytes={have}-")
    assert ("downloading", have, len(data)) in seen  # progress starts where the partial file ended


def test_corrupted_bytes_are_refused_and_the_partial_file_removed(hub: StandInHub, tmp_path: Path) -> None:
    hub.add(REPO, "bad.gguf", _data(1 << 20))
    hub.corrupt = True
    with pytest.raises(PullFailed, match="checksum mismatch"):
        _pull(ModelStore(tmp_path), hub, "bad.gguf")
    assert not (tmp_path / "bad").exists() and not list((tmp_path / ".partial").iterdir())


def test_missing_repo_or_file_is_model_not_found(hub: StandInHub, tmp_path: Path) -> None:
    hub.add(REPO, "there.gguf", b"GGUF")
    with pytest.raises(ModelNotFound, match="not found"):
        _pull(ModelStore(tmp_path), hub, "missing.gguf")
    ref = parse_reference("hf.co/nobody/nothing:x.gguf")
    with pytest.raises(ModelNotFound, match="repository nobody/nothing not found"):
        pull(ModelStore(tmp_path), ref, "x", lambda *e: None, endpoint=hub.url)


def test_an_existing_model_of_that_name_with_another_file_is_kept(hub: StandInHub, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "other.gguf").write_bytes(b"GGUF mine")
    hub.add(REPO, "new.gguf", b"GGUF theirs", lfs=False)
    with pytest.raises(ModelExists):
        _pull(ModelStore(tmp_path), hub, "new.gguf", name="taken")
    assert (tmp_path / "taken" / "other.gguf").read_bytes() == b"GGUF mine"
    assert not (tmp_path / "taken" / "new.gguf").exists()


def test_a_quantization_tag_picks_the_one_matching_gguf(hub: StandInHub, tmp_path: Path) -> None:
    data = _data(1 << 20)
    for name in ("tiny-Q4_K_S.gguf", "tiny-Q8_0.gguf", "mmproj-tiny-Q4_K_M.gguf",
                 "big-Q4_K_M-00001-of-00002.gguf", "README.md"):
        hub.add(REPO, name, b"GGUF " + name.encode(), lfs=False)
    hub.add(REPO, "sub/tiny-Q4_K_M.gguf", data)
    store = ModelStore(tmp_path)
    ref = parse_reference(f"hf.co/{REPO}")  # no tag: Q4_K_M, as Ollama
    assert ref.tag == "Q4_K_M" and ref.default_name() == "tiny-GGUF-Q4_K_M"
    target = pull(store, ref, ref.default_name(), lambda *e: None, endpoint=hub.url)
    assert target == tmp_path / "tiny-GGUF-Q4_K_M" / "tiny-Q4_K_M.gguf" and target.read_bytes() == data
    q8 = parse_reference(f"hf.co/{REPO}:q8_0")
    assert pull(store, q8, "q8", lambda *e: None, endpoint=hub.url).name == "tiny-Q8_0.gguf"
    with pytest.raises(ModelNotFound, match=r"no \.gguf files match 'IQ2_XS'.*tiny-Q4_K_S\.gguf"):
        pull(store, parse_reference(f"hf.co/{REPO}:IQ2_XS"), "x", lambda *e: None, endpoint=hub.url)
    hub.add(REPO, "other-Q8_0.gguf", b"GGUF other", lfs=False)
    with pytest.raises(InvalidRequest, match=r"2 \.gguf files match 'q8_0'"):
        pull(store, q8, "q8b", lambda *e: None, endpoint=hub.url)
