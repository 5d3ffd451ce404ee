"""What the API reports for image requests: a text model leaves images out; an old runtime merges them."""

from __future__ import annotations

from dataclasses import replace

from engine_fakes import spec

from rkio.engine.run_plan import IMAGES, SEPARATE_IMAGES, plan_for
from rkio.engine.runner.messages import RunnerGeneration
from rkio.engine.types import ChatMessage
from rkio.engine.vision_spec import VisionSpec
from rkio.runtime.base import Feature, GenerateParams

OLD = frozenset({Feature.MULTIMODAL_INPUT.value})
NEW = OLD | {Feature.MULTIPLE_IMAGES.value}


def gen(*images: bytes) -> RunnerGeneration:
    return RunnerGeneration(GenerateParams(), messages=(ChatMessage("user", "x", images=images),))


def test_plans_for_images() -> None:
    text, vision = spec("t"), replace(spec("v"), vision=VisionSpec("/m/v.rknn", 1))
    assert IMAGES in plan_for(text, gen(b"a"), NEW).not_applied
    assert plan_for(vision, gen(b"a"), OLD).not_applied == ()
    assert plan_for(vision, gen(b"a", b"b"), NEW).not_applied == ()
    assert plan_for(vision, gen(b"a", b"b"), OLD).not_applied == (SEPARATE_IMAGES,)
