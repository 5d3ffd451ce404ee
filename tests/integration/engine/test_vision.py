"""Vision models on the simulators: the RKNN encoder in the runner, images as rkllm multimodal input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from engine_sim import EngineFactory, Reply, SimModels, collect

import simkit
from rkio.engine.engine import ModelEngine
from rkio.engine.types import ChatMessage
from rkio.errors import InvalidRequest
from simkit.vision import add_vision_model, png, sim_rknn_library

pytestmark = pytest.mark.timeout(120)

IMAGE_WORD = re.compile(r"image:[0-9a-f]{8}")


@pytest.fixture(autouse=True)
def rknn_lib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RKIO_RKNN_LIB", str(sim_rknn_library()))


def chat(*turns: tuple[str, tuple[bytes, ...]]) -> tuple[ChatMessage, ...]:
    return tuple(ChatMessage("user", text, images=images) for text, images in turns)


async def ask(engine: ModelEngine, model: str, messages: tuple[ChatMessage, ...]) -> Reply:
    return await collect(engine, model, None, messages=messages)  # type: ignore[arg-type]


async def test_replies_depend_on_their_own_image(models: SimModels, engines: EngineFactory) -> None:
    add_vision_model(models.root, "vl")
    engine = await engines()
    red, blue = png((255, 0, 0)), png((0, 0, 255))
    first = await ask(engine, "vl", chat(("what is this", (red,))))
    second = await ask(engine, "vl", chat(("what is this", (blue,))))
    again = await ask(engine, "vl", chat(("what is this", (red,))))
    words = [set(IMAGE_WORD.findall(r.text)) for r in (first, second, again)]
    assert all(len(w) == 1 for w in words), [r.text for r in (first, second, again)]  # the reply echoes it
    assert words[0] != words[1]  # two pictures, two answers
    assert words[0] == words[2]  # the same picture, the same answer


async def test_several_images_in_one_request_each_reach_the_model(models: SimModels,
                                                                  engines: EngineFactory) -> None:
    add_vision_model(models.root, "vl")
    engine = await engines()
    red, blue = png((255, 0, 0)), png((0, 0, 255), fmt="JPEG")
    both = await ask(engine, "vl", chat(("compare [[n=40]]", (red, blue))))
    alone = [IMAGE_WORD.findall((await ask(engine, "vl", chat(("compare", (img,))))).text)[0]
             for img in (red, blue)]
    assert IMAGE_WORD.findall(both.text)[:2] == alone  # in the order the images came


async def test_a_non_image_is_a_clear_invalid_request(models: SimModels, engines: EngineFactory) -> None:
    add_vision_model(models.root, "vl")
    engine = await engines()
    reply = await ask(engine, "vl", chat(("look", (b"not a picture",))))
    assert isinstance(reply.error, InvalidRequest), reply
    assert "not an image" in reply.error.message
    # the runner survived: the next request is answered
    ok = await ask(engine, "vl", chat(("look", (png((1, 2, 3)),))))
    assert ok.error is None and IMAGE_WORD.search(ok.text)


async def test_too_many_images_are_refused(models: SimModels, engines: EngineFactory) -> None:
    add_vision_model(models.root, "vl", toml_extra="max_images = 1\n")
    engine = await engines()
    reply = await ask(engine, "vl", chat(("two", (png((1, 1, 1)), png((2, 2, 2))))))
    assert isinstance(reply.error, InvalidRequest) and "at most 1" in reply.error.message


async def test_encoder_lives_in_domain_0_and_the_llm_above_it(models: SimModels, engines: EngineFactory,
                                                             sim: simkit.SimEnv, tmp_path: Path) -> None:
    add_vision_model(models.root, "vl", encoder_bytes=300 * simkit.MiB)
    engine = await engines()
    reply = await ask(engine, "vl", chat(("hi", (png((9, 9, 9)),))))
    assert reply.error is None
    state = sim.read_state()
    by_model = {Path(r["model"]).suffix: r for r in state["reservations"]}
    assert by_model[".rknn"]["domains"].keys() == {"0"}
    assert by_model[".rkllm"]["base_domain"] >= 1
    assert state["overcommits"] == 0


async def test_an_encoder_crash_costs_one_request_not_the_server(models: SimModels,
                                                                 engines: EngineFactory) -> None:
    add_vision_model(models.root, "vl", fault="run_segv")
    models.add("text", 64 * simkit.MiB)
    engine = await engines()
    reply = await ask(engine, "vl", chat(("look", (png((5, 5, 5)),))))
    assert reply.error is not None and "crash" in reply.error.message.lower(), reply.error
    text = await collect(engine, "text", "[[n=2]] still here")
    assert text.error is None and text.text


async def test_an_encoder_that_cannot_init_fails_the_load_with_its_reason(models: SimModels,
                                                                         engines: EngineFactory) -> None:
    add_vision_model(models.root, "vl", fault="init_fail")
    engine = await engines()
    reply = await ask(engine, "vl", chat(("look", (png((5, 5, 5)),))))
    assert reply.error is not None and "rknn_init failed" in reply.error.message


@pytest.mark.parametrize("flavour", ["1.1.4", "1.2.0", "1.3.0"])
async def test_images_reach_the_model_on_every_multimodal_layout(models: SimModels, engines: EngineFactory,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 flavour: str) -> None:
    # 1.1 / 1.2.0: {prompt, image_embed, n_image_tokens}; 1.2.1+: + n_image and size; 1.3.0: nested image
    # and video structs with the image tags per run (rkllm-runtime.md §1.1 struct table)
    monkeypatch.setenv("RKIO_RKLLM_LIB", str(simkit.sim_library(flavour)))
    monkeypatch.setenv("RKIO_RKLLM_ABI", flavour)
    add_vision_model(models.root, "vl")
    engine = await engines()
    red, blue = png((255, 0, 0)), png((0, 0, 255))
    words = [set(IMAGE_WORD.findall((await ask(engine, "vl", chat(("what", (img,))))).text))
             for img in (red, blue, red)]
    assert len(words[0]) == 1 and words[0] == words[2] != words[1]
    both = await ask(engine, "vl", chat(("two", (red, blue))))
    if flavour == "1.3.0":
        assert len(set(IMAGE_WORD.findall(both.text))) == 2
    else:  # one image per input before 1.2.1b1: both go in as one (reported as "separate images")
        assert both.error is None and len(set(IMAGE_WORD.findall(both.text))) == 1
