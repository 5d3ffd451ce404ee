"""Finding librkllmrt and detecting its ABI generation: sure answers only, refusals that say what to set."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_elf import build_elf

from rkio.errors import RkioError
from rkio.runtime.rkllm import detect
from rkio.runtime.rkllm.detect import (
    detect_abi,
    embedded_version,
    find_library,
    generations_for_symbols,
    parse_abi,
    resolve,
    runtime_version,
)
from rkio.runtime.rkllm.elf import NotElf, dynamic_symbols
from rkio.runtime.rkllm.errors import AbiUndetectable, LibraryNotFound, RkllmSetupError
from rkio.runtime.rkllm.layouts import Generation, build_layout
from rkio.runtime.rkllm.prototypes import signatures


def exports(generation: Generation) -> list[str]:
    return sorted(signatures(build_layout(generation)))


def write_library(tmp_path: Path, generation: Generation, version: str | None = None, **elf: bool) -> Path:
    data = b"\0E rkllm: failed\0"
    if version is not None:
        data += f"\0I rkllm: rkllm-runtime version: {version}, rknpu driver version: %s\0".encode()
    path = tmp_path / "librkllmrt.so"
    path.write_bytes(build_elf([*exports(generation), "rkllm_sim_state", "_ZN3foo3barEv"],
                               undefined=("malloc",), data=data, **elf))
    return path


@pytest.mark.parametrize("elf", [{}, {"sections": False}, {"sections": False, "hash_table": True}])
def test_exported_functions_are_read_from_the_dynamic_symbol_table(
    tmp_path: Path, elf: dict[str, bool]
) -> None:
    path = write_library(tmp_path, Generation.V1_2_0, **elf)
    symbols = dynamic_symbols(path)
    assert set(exports(Generation.V1_2_0)) <= symbols
    assert "malloc" not in symbols  # imported, not exported


def test_a_non_elf_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "librkllmrt.so"
    path.write_bytes(b"#!/bin/sh\n" * 20)
    with pytest.raises(NotElf):
        dynamic_symbols(path)
    with pytest.raises(AbiUndetectable, match="cannot read"):
        detect_abi(path)


def test_function_sets_map_to_generation_classes() -> None:
    def fits(generation: Generation) -> set[str]:
        return {g.label for g in generations_for_symbols(frozenset(exports(generation)))}

    assert fits(Generation.V1_1) == {"1.1"}
    assert fits(Generation.V1_2_0) == {"1.2.0", "1.2.1b1"}
    assert fits(Generation.V1_2_1) == {"1.2.1", "1.3.0"}
    assert generations_for_symbols(frozenset({"rkllm_init", "rkllm_run", "rkllm_destroy"})) == frozenset()


@pytest.mark.parametrize(
    ("generation", "version", "expected"),
    [
        (Generation.V1_1, None, "1.1"),
        (Generation.V1_1, "1.1.4", "1.1"),
        (Generation.V1_2_0, "1.2.0", "1.2.0"),
        (Generation.V1_2_0, "1.2.1b1", "1.2.1b1"),
        (Generation.V1_2_1, "1.2.1", "1.2.1"),
        (Generation.V1_2_1, "1.2.3", "1.2.1"),
        (Generation.V1_3_0, "1.3.0", "1.3.0"),
    ],
)
def test_detection_when_functions_and_version_agree(
    tmp_path: Path, generation: Generation, version: str | None, expected: str
) -> None:
    assert detect_abi(write_library(tmp_path, generation, version)) == expected


@pytest.mark.parametrize(
    ("generation", "version", "complaint"),
    [
        (Generation.V1_2_1, None, "cannot tell 1.2.1 or 1.3.0 apart"),
        (Generation.V1_2_0, None, "cannot tell 1.2.0 or 1.2.1b1 apart"),
        (Generation.V1_2_1, "1.2.0", "contradicts"),
        (Generation.V1_2_1, "1.3.1", "not one rkio knows"),
    ],
)
def test_detection_refuses_when_unsure_and_says_what_to_set(
    tmp_path: Path, generation: Generation, version: str | None, complaint: str
) -> None:
    with pytest.raises(AbiUndetectable, match=complaint) as raised:
        detect_abi(write_library(tmp_path, generation, version))
    assert "RKIO_RKLLM_ABI" in raised.value.message
    assert isinstance(raised.value, RkioError)


def test_a_library_without_rkllm_functions_is_not_taken_for_one(tmp_path: Path) -> None:
    path = tmp_path / "libother.so"
    path.write_bytes(build_elf(["rkllm_init", "rkllm_run", "deflate"]))
    with pytest.raises(AbiUndetectable, match=r"not an rkllm 1\.1"):
        detect_abi(path)


def test_embedded_version_inline_standalone_and_ambiguous() -> None:
    assert embedded_version(b"\0rkllm-runtime version: 1.2.3, rknpu driver\0") == "1.2.3"
    standalone = b"\0I rkllm: rkllm-runtime version: %s, rknpu driver version: %s\0" + b"\x00v1.3.0\x00"
    assert embedded_version(standalone) == "1.3.0"
    two = b"\0rkllm-runtime version: %s\0" + b"\x001.2.1\x00" + b"\x001.2.3\x00"
    assert embedded_version(two) is None
    far = b"\0rkllm-runtime version: %s\0" + bytes(10_000) + b"1.2.11\0"  # e.g. a bundled zlib's version
    assert embedded_version(far) is None
    assert embedded_version(b"\x001.2.0\x00 no marker") is None


def test_runtime_version_reads_the_file(tmp_path: Path) -> None:
    assert runtime_version(write_library(tmp_path, Generation.V1_2_1, "1.2.2")) == "1.2.2"
    assert runtime_version(write_library(tmp_path, Generation.V1_1)) is None


def test_abi_choice_accepts_labels_versions_and_auto() -> None:
    assert parse_abi("auto") is None
    assert parse_abi(" ") is None
    assert parse_abi("1.1") is Generation.V1_1
    assert parse_abi("1.1.2") is Generation.V1_1
    assert parse_abi("v1.2.2") is Generation.V1_2_1
    assert parse_abi("1.3.0") is Generation.V1_3_0
    with pytest.raises(RkllmSetupError, match=r"RKIO_RKLLM_ABI='1\.4'"):
        parse_abi("1.4")


def test_explicit_abi_overrides_detection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_library(tmp_path, Generation.V1_2_1)  # undetectable by itself
    monkeypatch.setenv("RKIO_RKLLM_ABI", "1.3.0")
    assert resolve(path, None)[1] is Generation.V1_3_0
    assert resolve(path, "1.2.1")[1] is Generation.V1_2_1  # the argument beats the environment
    monkeypatch.setenv("RKIO_RKLLM_ABI", "auto")
    with pytest.raises(AbiUndetectable):
        resolve(path, None)


def test_explicit_abi_contradicting_the_embedded_version_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_library(tmp_path, Generation.V1_2_1, "1.3.0")
    with caplog.at_level("WARNING"):
        assert resolve(path, "1.2.1") == (path, Generation.V1_2_1, "1.3.0")
    assert "rkllm runtime 1.3.0 (ABI 1.3.0) but ABI 1.2.1 was chosen" in caplog.text


def test_find_library_prefers_the_environment_and_never_falls_back_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for directory in (first, second):
        directory.mkdir()
    (second / "librkllmrt.so").write_bytes(b"x")
    monkeypatch.setattr(detect, "SEARCH_DIRS", (str(first), str(second)))
    monkeypatch.delenv("RKIO_RKLLM_LIB", raising=False)
    assert find_library() == second / "librkllmrt.so"
    (first / "librkllmrt.so").write_bytes(b"x")
    assert find_library() == first / "librkllmrt.so"
    custom = tmp_path / "custom.so"
    custom.write_bytes(b"x")
    monkeypatch.setenv("RKIO_RKLLM_LIB", str(custom))
    assert find_library() == custom
    monkeypatch.setenv("RKIO_RKLLM_LIB", str(tmp_path / "missing.so"))
    assert find_library() is None
    with pytest.raises(LibraryNotFound, match="RKIO_RKLLM_LIB="):
        resolve(None, None)


def test_missing_library_error_lists_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detect, "SEARCH_DIRS", (str(tmp_path),))
    monkeypatch.delenv("RKIO_RKLLM_LIB", raising=False)
    with pytest.raises(LibraryNotFound, match=f"{tmp_path}; set RKIO_RKLLM_LIB"):
        resolve(None, None)
    with pytest.raises(LibraryNotFound, match="does not exist"):
        resolve(tmp_path / "nope.so", None)
