"""Pooling, normalisation, truncation and yes/no scoring of run outputs (pure), and their model.toml keys."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest

from rkio.engine.embedding import normalise, pool, rerank_prompt, rerank_tokens, rows, score
from rkio.engine.registry import ModelConfigError, parse_config
from rkio.engine.types import ModelSpec
from rkio.errors import InvalidRequest, RuntimeFailure
from rkio.runtime.base import LoadParams, RunOutputs


def _block(matrix: list[list[float]], kind: str = "hidden") -> RunOutputs:
    flat = [v for row in matrix for v in row]
    return RunOutputs(kind, struct.pack(f"<{len(flat)}f", *flat), (len(matrix), len(matrix[0])))  # type: ignore


def _spec(**fields: object) -> ModelSpec:
    return ModelSpec(name="m", path="/m.rkllm", runtime="rkllm", size_bytes=1, mtime_ns=0,
                     load=LoadParams(model_path="/m.rkllm"), **fields)  # type: ignore[arg-type]


def test_last_and_mean_pooling_of_little_endian_rows() -> None:
    block = rows(_block([[1.0, 2.0], [3.0, 6.0]]))
    assert pool(block, "last") == [3.0, 6.0] and pool(block, "mean") == [2.0, 4.0]


def test_a_block_whose_size_does_not_match_its_shape_is_a_runtime_failure() -> None:
    with pytest.raises(RuntimeFailure):
        rows(RunOutputs("hidden", struct.pack("<3f", 1, 2, 3), (2, 2)))


def test_normalise_and_matryoshka_truncation() -> None:
    assert normalise([3.0, 4.0]) == [0.6, 0.8]
    assert normalise([3.0, 4.0, 12.0], dimensions=2) == [0.6, 0.8]  # truncated first, then normalised
    assert normalise([0.0, 0.0]) == [0.0, 0.0]  # no division by zero
    for bad in (0, 4):
        with pytest.raises(InvalidRequest, match="between 1 and 3"):
            normalise([1.0, 2.0, 3.0], dimensions=bad)


def test_yes_no_score_is_the_two_way_softmax_of_the_last_row() -> None:
    logits = _block([[9.0, 9.0, 9.0], [0.0, 2.0, -1.0]], "logits")
    assert score(logits, yes=1, no=2) == pytest.approx(1 / (1 + math.exp(-3)))
    assert score(logits, yes=2, no=1) == pytest.approx(1 / (1 + math.exp(3)))
    with pytest.raises(InvalidRequest, match="vocabulary"):
        score(logits, yes=3, no=0)


def test_rerank_needs_both_tokens_and_fills_the_template() -> None:
    with pytest.raises(InvalidRequest, match="rerank_yes_token"):
        rerank_tokens(_spec(rerank_yes_token=1))
    spec = _spec(rerank_yes_token=1, rerank_no_token=2, rerank_template="Q={query} D={document}")
    assert rerank_tokens(spec) == (1, 2)
    assert rerank_prompt(spec, "a {document}", "b") == "Q=a {document} D=b"  # the query is not re-expanded
    assert "<Query>: q\n<Document>: d" in rerank_prompt(_spec(), "q", "d")  # Qwen3-Reranker's format


@pytest.mark.parametrize("text, key", [('pooling = "cls"', "pooling"),
                                       ("rerank_yes_token = -1", "rerank_yes"),
                                       ('rerank_template = "{query} only"', "rerank_template")])
def test_model_toml_refuses_bad_embedding_keys(text: str, key: str, tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match=key):
        parse_config(text, tmp_path / "model.toml", tmp_path)


def test_model_toml_embedding_keys_reach_the_spec(tmp_path: Path) -> None:
    config = parse_config('pooling = "mean"\nrerank_yes_token = 9693\nrerank_no_token = 2152\n',
                          tmp_path / "model.toml", tmp_path)
    assert config.spec == {"pooling": "mean", "rerank_yes_token": 9693, "rerank_no_token": 2152}
