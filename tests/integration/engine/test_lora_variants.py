"""LoRA adapters as model variants: ``base:adapter`` runs on the loaded base with the adapter selected,
and clients alternating between variants never reload the model."""

from __future__ import annotations

import pytest
from engine_sim import EngineFactory, SimModels, collect

import simkit

pytestmark = pytest.mark.timeout(60)

MiB = simkit.MiB


async def test_variants_alternate_on_one_loaded_base(engines: EngineFactory, models: SimModels) -> None:
    models.add("base", 64 * MiB, '[[lora]]\nname = "style"\npath = "style.lora"\n')
    (models.root / "base" / "style.lora").write_bytes(b"adapter")
    engine = await engines()
    assert [id_ for id_, _ in engine.model_ids()] == ["base", "base:style"]
    prompt = "[[n=4]] one two three"
    for model, lora in (("base:style", "style"), ("base", None), ("base:style", "style")):
        reply = await collect(engine, model, prompt)
        assert reply.error is None, reply.error
        assert reply.text == "".join(simkit.expected_reply(simkit.apply_default_template(prompt), 4, lora))
    status = engine.status()
    assert [m.name for m in status.loaded] == ["base"]
    assert status.counters["loads"] == 1
