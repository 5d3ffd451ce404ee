"""The capability matrix: each generation lists exactly what its header and runtime can do."""

from __future__ import annotations

import itertools

from rkio.runtime.base import Feature
from rkio.runtime.rkllm.features import features_of
from rkio.runtime.rkllm.layouts import Generation


def test_features_only_grow_with_the_generation() -> None:
    ordered = [features_of(g, None) for g in Generation]
    assert all(older <= newer for older, newer in itertools.pairwise(ordered))


def test_landmark_features() -> None:
    v11, v120, v121, v130 = (features_of(g, None) for g in (
        Generation.V1_1, Generation.V1_2_0, Generation.V1_2_1, Generation.V1_3_0))
    assert Feature.LORA in v11 and Feature.CHAT_TEMPLATE not in v11
    assert Feature.CLEAR_KV_CACHE in v120 and Feature.CLEAR_KV_CACHE_RANGES not in v120
    assert {Feature.PAUSE, Feature.PERF_STATS, Feature.FUNCTION_TOOLS} <= v121
    assert Feature.PER_RUN_SAMPLING not in v121 and Feature.PER_RUN_SAMPLING in v130
    assert Feature.RUN_ASYNC not in v130


def test_multi_instance_needs_1_2_2_inside_the_1_2_1_generation() -> None:
    assert Feature.MULTI_INSTANCE not in features_of(Generation.V1_2_1, "1.2.1")
    assert Feature.MULTI_INSTANCE not in features_of(Generation.V1_2_1, None)
    assert Feature.MULTI_INSTANCE in features_of(Generation.V1_2_1, "1.2.2")
    assert Feature.MULTI_INSTANCE in features_of(Generation.V1_3_0, None)
